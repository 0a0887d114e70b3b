"""diffusers ``UNet2DModel`` folders (``config.json`` and weights, or a pipeline folder with ``unet/`` and
``scheduler/``) as ``model(x_t, t) -> eps`` with their scheduler's betas.

Everything a folder declares is checked before anything is allocated: its JSON files are objects of bounded size,
the schedule's length is bounded, and the network the config describes is built on the meta device first, where its
parameter count is compared with what the weights files can hold. diffusers' own log lines are kept off the
terminal: a bad folder is one :class:`~ddrm_fast.models.errors.CheckpointError` naming it.
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings
from typing import Iterator, Optional

import torch
from torch import nn

from ..files import open_regular
from ..schedules import MAX_TIMESTEPS, cosine_betas, linear_betas
from .errors import CheckpointError

__all__ = ["load_diffusers", "diffusers_betas", "DiffusersEps", "is_diffusers_folder"]

_MAX_JSON = 1 << 20  # bytes: a config is a few kB; trained_betas of MAX_TIMESTEPS values fit too
_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
            "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin")


def is_diffusers_folder(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, *parts)) for parts in (("config.json",), ("unet", "config.json")))


def _read_json(path: str) -> dict:
    """A JSON object from a regular file of at most 1 MiB."""
    try:
        with open_regular(path, "config") as f:
            data = f.read(_MAX_JSON + 1)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    if len(data) > _MAX_JSON:
        raise CheckpointError(f"{path}: larger than {_MAX_JSON} bytes, not a config")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got a {type(obj).__name__}")
    return obj


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """diffusers' logger and Python warnings silenced: what goes wrong is raised, once."""
    from diffusers.utils import logging as dlogging

    level = dlogging.get_verbosity()
    dlogging.set_verbosity_error()
    dlogging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        dlogging.set_verbosity(level)
        dlogging.enable_progress_bar()


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, with the next one when the first only announces it (torch's
    "Error(s) in loading state_dict for ...:")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    text = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return text[:240]


def _checked_unet(unet_dir: str, cfg: dict) -> None:
    """Build the config's network on the meta device (nothing allocated) and refuse it when it has more parameters
    than the folder's weights files hold (at 2 bytes each, float16): a config that declares a huge network."""
    from diffusers import UNet2DModel

    try:
        with _quiet(), torch.device("meta"):
            meta = UNet2DModel.from_config(cfg)
    except Exception as exc:  # noqa: BLE001 - whatever the config makes diffusers raise, the config is wrong
        raise CheckpointError(f"{unet_dir}/config.json: not a UNet2DModel config ({_first_line(exc)})") from None
    declared = sum(p.numel() for p in meta.parameters())
    stored = sum(os.path.getsize(os.path.join(unet_dir, n)) for n in _WEIGHTS
                 if os.path.isfile(os.path.join(unet_dir, n)))
    if stored == 0:
        raise CheckpointError(f"{unet_dir}: no weights file ({' or '.join(_WEIGHTS[:2])})")
    if declared * 2 > stored:
        raise CheckpointError(f"{unet_dir}/config.json: declares {declared} parameters, more than its weights files "
                              f"({stored} bytes) hold")


def load_diffusers(path: str, schedule_override=None):
    """``(DiffusersEps, betas float64)`` of a diffusers folder; ``schedule_override`` is applied by the caller."""
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise CheckpointError(f"{path}: a diffusers folder needs the diffusers package "
                              "(pip install 'ddrm_fast[diffusers]')") from None
    unet_dir = os.path.join(path, "unet") if os.path.isfile(os.path.join(path, "unet", "config.json")) else path
    cfg = _read_json(os.path.join(unet_dir, "config.json"))
    cls = cfg.get("_class_name", "UNet2DModel")
    if cls != "UNet2DModel":
        raise CheckpointError(f"{unet_dir}: a {cls}; only UNet2DModel (unconditional pixel-space) is supported")
    betas = _folder_betas(path, unet_dir)  # a bad schedule fails before the network is built
    _checked_unet(unet_dir, cfg)
    try:
        with _quiet():
            unet = UNet2DModel.from_pretrained(unet_dir, low_cpu_mem_usage=False)
    except Exception as exc:  # noqa: BLE001 - weights that do not fit the config, a corrupt file: the folder's fault
        raise CheckpointError(f"{unet_dir}: diffusers could not load it ({_first_line(exc)})") from None
    return DiffusersEps(unet).eval(), betas


def _folder_betas(path: str, unet_dir: str) -> torch.Tensor:
    for cand in (os.path.join(path, "scheduler", "scheduler_config.json"), os.path.join(path, "scheduler_config.json"),
                 os.path.join(os.path.dirname(os.path.abspath(unet_dir)), "scheduler", "scheduler_config.json")):
        if os.path.isfile(cand):
            try:
                return diffusers_betas(_read_json(cand))
            except CheckpointError as exc:
                raise CheckpointError(f"{cand}: {exc}" if not str(exc).startswith(cand) else str(exc)) from None
    return linear_betas().double()


def _number(cfg: dict, key: str, default: float) -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CheckpointError(f"scheduler {key} {value!r} is not a number")
    return float(value)


def diffusers_betas(cfg: dict) -> torch.Tensor:
    """betas (float64) of a diffusers DDPM/DDIM scheduler config; only eps-prediction models are usable here. The
    number of timesteps is bounded (at most ``MAX_TIMESTEPS``) before anything is allocated."""
    pred = cfg.get("prediction_type", "epsilon")
    if pred != "epsilon":
        raise CheckpointError(f"scheduler prediction_type {pred!r}: DDRM needs an eps-prediction model")
    n = cfg.get("num_train_timesteps", 1000)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_TIMESTEPS:
        raise CheckpointError(f"scheduler num_train_timesteps {n!r} must be an integer in [1, {MAX_TIMESTEPS}]")
    trained: Optional[list] = cfg.get("trained_betas")
    if trained is not None:
        ok = isinstance(trained, list) and 0 < len(trained) <= MAX_TIMESTEPS and all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and 0 < b < 1 for b in trained)
        if not ok:
            raise CheckpointError(f"scheduler trained_betas must be a list of at most {MAX_TIMESTEPS} numbers in "
                                  f"(0, 1)")
        return torch.tensor(trained, dtype=torch.float64)
    kind = cfg.get("beta_schedule", "linear")
    start, end = _number(cfg, "beta_start", 1e-4), _number(cfg, "beta_end", 0.02)
    if kind == "linear":
        return torch.linspace(start, end, n, dtype=torch.float64)
    if kind == "scaled_linear":
        return torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2
    if kind == "squaredcos_cap_v2":
        return cosine_betas(n).double()
    raise CheckpointError(f"scheduler beta_schedule {kind!r} is not supported")


class DiffusersEps(nn.Module):
    """A diffusers UNet2DModel as ``model(x_t, t) -> eps``."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t).sample
