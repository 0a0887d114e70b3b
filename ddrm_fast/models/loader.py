"""Load a noise-prediction model and its schedule from the user's files: ``model, betas = load(path)``.

Formats, detected from the path and the keys:
- guided-diffusion ADM checkpoints (``.pt``: ``input_blocks.*``, ``time_embed.*``) -> :class:`ADMUNet`;
- DDPM/DDIM "simple" checkpoints (``.ckpt``/``.pth``: ``temb.dense.*``, ``conv_in``, ``down.*``) -> :class:`DDPMUNet`,
  also the DDIM code's saved ``[state_dict, optimizer, epoch, step, ema]`` lists (the EMA weights are taken);
- ddrm_fast's own ``.safetensors`` (``save``), whose metadata carries the architecture and the schedule;
- a diffusers ``UNet2DModel`` folder (``config.json`` + weights, or a pipeline folder with ``unet/`` and
  ``scheduler/``), when diffusers is installed, with its scheduler's betas.

Architectures are read off the tensor shapes; what shapes cannot tell (the attention head count of ADM) defaults to
the public checkpoints' value and can be overridden. Nothing is downloaded; ``.pt`` files load with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import os
import re
from typing import Dict, NamedTuple, Optional, Union

import torch
from torch import nn

from ..files import atomic_write, check_regular, open_regular
from ..schedules import MAX_TIMESTEPS, get_betas, linear_betas
from ._config import resolve_config
from .diffusers_folder import is_diffusers_folder, load_diffusers
from .errors import CheckpointError
from .adm import ADMConfig, ADMUNet
from .ddpm import DDPMConfig, DDPMUNet

__all__ = ["load", "load_weights", "save", "metadata", "default_model", "Loaded", "CheckpointError", "infer_adm_config",
           "infer_ddpm_config"]

PathLike = Union[str, os.PathLike]
_META_KEY = "ddrm_fast"


class Loaded(NamedTuple):
    """``model`` (``model(x_t, t) -> eps``, in eval mode) and ``betas`` (T,) float64, its training schedule."""

    model: nn.Module
    betas: torch.Tensor


# --- state dicts: unwrap the containers people save --------------------------------------------------------------
def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _unwrap(obj, path: str, ema: bool) -> Dict[str, torch.Tensor]:
    """The model's tensors from what a training script saved; strips DataParallel's ``module.`` prefix."""
    if isinstance(obj, (list, tuple)):
        # the DDIM code: [model, optimizer, epoch, step] + [ema] when EMA was on; the EMA copy has the model's keys
        dicts = [o for o in obj if _is_state_dict(o)]
        if not dicts:
            raise CheckpointError(f"{path}: a list without a state_dict in it")
        sd = dicts[-1] if ema and len(dicts) > 1 and set(dicts[-1]) == set(dicts[0]) else dicts[0]
    elif _is_state_dict(obj):
        sd = obj
    elif isinstance(obj, dict):
        for key in (("ema", "ema_model", "state_dict", "model") if ema else ("state_dict", "model", "ema")):
            if _is_state_dict(obj.get(key)):
                sd = obj[key]
                break
        else:
            raise CheckpointError(f"{path}: no state_dict found (top-level keys: {sorted(obj)[:8]})")
    else:
        raise CheckpointError(f"{path}: expected a state_dict, got {type(obj).__name__}")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _need(sd: Dict[str, torch.Tensor], key: str, what: str, ndim: int = 4) -> torch.Tensor:
    """``sd[key]``, which must exist, be ``ndim``-dimensional and have no zero-sized dimension."""
    if key not in sd:
        raise CheckpointError(f"{what} checkpoint is missing {key!r}")
    t = sd[key]
    if t.dim() != ndim or 0 in t.shape:
        raise CheckpointError(f"{what} checkpoint: {key} has shape {tuple(t.shape)}, expected {ndim} non-empty "
                              f"dimensions")
    return t


def _indices(sd, pattern: str) -> list:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd for m in [rx.match(k)] if m})


# --- architecture inference from shapes -----------------------------------------------------------------------------
def infer_adm_config(sd: Dict[str, torch.Tensor], num_heads: int = 4, num_head_channels: int = 64,
                     use_new_attention_order: bool = False) -> ADMConfig:
    """An :class:`ADMConfig` read off an ADM state_dict's shapes. Head counts are not in the weights: the defaults
    are the public 256x256 checkpoints' (``num_head_channels=64``)."""
    w = "ADM"
    mc = _need(sd, "time_embed.0.weight", w, ndim=2).shape[1]
    if mc % 32:
        raise CheckpointError(f"ADM checkpoint: time_embed.0.weight has {mc} input channels, not a multiple of 32")
    in_ch = _need(sd, "input_blocks.0.0.weight", w).shape[1]
    out_ch = _need(sd, "out.2.weight", w).shape[0]
    outputs = _indices(sd, r"output_blocks\.(\d+)\.")
    if not outputs:
        raise CheckpointError("ADM checkpoint has no output_blocks")

    def block_has_upsampler(k: int) -> bool:
        # the block's last layer is Upsample (conv) or a second ResBlock (resblock_updown)
        layers = _indices(sd, rf"output_blocks\.{k}\.(\d+)\.")
        return any(f"output_blocks.{k}.{j}.conv.weight" in sd or f"output_blocks.{k}.{j}.in_layers.0.weight" in sd
                   for j in layers if j > 0)

    ups = [k for k in outputs if block_has_upsampler(k)]
    per_level = ups[0] + 1 if ups else len(outputs)
    if len(outputs) % per_level:
        raise CheckpointError(f"ADM checkpoint: {len(outputs)} output blocks do not split into levels of {per_level}")
    levels = len(outputs) // per_level
    mult = []
    for level in range(levels):  # output blocks run from the deepest level up
        k = (levels - 1 - level) * per_level
        mult.append(_need(sd, f"output_blocks.{k}.0.in_layers.2.weight", w).shape[0] // mc)
    # attention: at the input blocks' downsampling factors where a block has a qkv
    attention_ds, ds, k = set(), 1, 1
    for level in range(levels):
        for _ in range(per_level - 1):
            if f"input_blocks.{k}.1.qkv.weight" in sd:
                attention_ds.add(ds)
            k += 1
        if level != levels - 1:
            k += 1
            ds *= 2
    resblock_updown = levels > 1 and f"input_blocks.{per_level}.0.in_layers.0.weight" in sd
    conv_resample = levels == 1 or resblock_updown or f"input_blocks.{per_level}.0.op.weight" in sd
    e = _need(sd, "input_blocks.1.0.emb_layers.1.weight", w, ndim=2).shape[0]
    c = _need(sd, "input_blocks.1.0.in_layers.2.weight", w).shape[0]
    label = sd.get("label_emb.weight")
    if label is not None:
        label = _need(sd, "label_emb.weight", w, ndim=2)
    return ADMConfig(in_channels=in_ch, model_channels=mc, out_channels=out_ch, num_res_blocks=per_level - 1,
                     attention_ds=tuple(sorted(attention_ds)), channel_mult=tuple(mult), conv_resample=conv_resample,
                     num_classes=None if label is None else label.shape[0], num_heads=num_heads,
                     num_head_channels=num_head_channels, use_scale_shift_norm=e == 2 * c,
                     resblock_updown=resblock_updown, use_new_attention_order=use_new_attention_order)


def infer_ddpm_config(sd: Dict[str, torch.Tensor]) -> DDPMConfig:
    """A :class:`DDPMConfig` read off a DDPM "simple" state_dict's shapes (attention expressed at resolution 2^L)."""
    w = "DDPM"
    ch = _need(sd, "conv_in.weight", w).shape[0]
    if ch % 32:
        raise CheckpointError(f"DDPM checkpoint: conv_in has {ch} channels, not a multiple of 32")
    levels = len(_indices(sd, r"down\.(\d+)\."))
    nrb = len(_indices(sd, r"down\.0\.block\.(\d+)\."))
    if levels == 0 or nrb == 0:
        raise CheckpointError("DDPM checkpoint has no down.0.block.0")
    mult = tuple(_need(sd, f"down.{i}.block.0.conv1.weight", w).shape[0] // ch for i in range(levels))
    resolution = 2 ** (levels + 3)  # any value works: attention is placed by level
    attn = tuple(resolution // 2**i for i in range(levels) if f"down.{i}.attn.0.q.weight" in sd)
    return DDPMConfig(ch=ch, out_ch=_need(sd, "conv_out.weight", w).shape[0], ch_mult=mult, num_res_blocks=nrb,
                      attn_resolutions=attn, in_channels=sd["conv_in.weight"].shape[1], resolution=resolution,
                      resamp_with_conv=levels == 1 or "down.0.downsample.conv.weight" in sd)


def _check_state(model: nn.Module, sd: Dict[str, torch.Tensor], path: str) -> None:
    """That ``sd`` has exactly ``model``'s keys and shapes; an error names what is missing, unexpected or
    mis-shaped. ``model`` may live on the meta device (nothing allocated)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
              if k in sd and sd[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    if extra:
        problems.append(f"{len(extra)} unexpected keys ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches ({'; '.join(shapes[:2])})")
    if problems:
        raise CheckpointError(f"{path}: does not match {type(model).__name__}: " + "; ".join(problems))


def _load_strict(model: nn.Module, sd: Dict[str, torch.Tensor], path: str) -> nn.Module:
    """load_state_dict with an error that names what is missing, unexpected or mis-shaped."""
    _check_state(model, sd, path)
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()})
    return model


def _schedule(schedule, default: torch.Tensor) -> torch.Tensor:
    if schedule is None:
        return default
    if isinstance(schedule, str):
        return get_betas(schedule).double()
    return torch.as_tensor(schedule, dtype=torch.float64)


# --- the formats ----------------------------------------------------------------------------------------------------
def _read_tensors(path: str):
    """(state, metadata) of a .safetensors file or a torch pickle (weights_only). Tensor sizes in a safetensors
    header are checked against the file's length by the reader before anything is allocated."""
    if path.endswith(".safetensors"):
        try:
            from safetensors import safe_open
        except ImportError:  # pragma: no cover - safetensors is a dependency
            raise CheckpointError("reading .safetensors needs the safetensors package") from None
        try:
            with safe_open(path, framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, (f.metadata() or {})
        except Exception as exc:  # noqa: BLE001 - a corrupt header, truncated data, anything: the file's fault
            raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    try:
        with open_regular(path, "model file") as f:
            return torch.load(f, map_location="cpu", weights_only=True), {}
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - as above
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or not a torch/safetensors file: "
                              f"{_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:160]


def _metadata(meta: dict, path: str) -> dict:
    """ddrm_fast's own metadata of a .safetensors file, checked: an object whose ``arch``, ``config`` and ``betas``
    have the right types (``{}`` for other files)."""
    if _META_KEY not in meta:
        return {}
    try:
        info = json.loads(meta[_META_KEY])
    except ValueError as exc:
        raise CheckpointError(f"{path}: its {_META_KEY!r} metadata is not JSON ({_first_line(exc)})") from None
    if not isinstance(info, dict):
        raise CheckpointError(f"{path}: its {_META_KEY!r} metadata is not an object")
    if "arch" in info and info["arch"] not in ("adm", "ddpm"):
        raise CheckpointError(f"{path}: metadata arch {info['arch']!r} is not 'adm' or 'ddpm'")
    if "config" in info and not isinstance(info["config"], dict):
        raise CheckpointError(f"{path}: metadata config is not an object")
    if "betas" in info:
        betas = info["betas"]
        ok = isinstance(betas, list) and 0 < len(betas) <= MAX_TIMESTEPS and all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and 0 < b < 1 for b in betas)
        if not ok:
            raise CheckpointError(f"{path}: metadata betas must be a list of at most {MAX_TIMESTEPS} numbers in "
                                  f"(0, 1)")
    return info


# fields of each architecture that the tensors' shapes determine: a configuration that disagrees is refused before
# anything is built
_SHAPE_FIELDS = {"adm": ("in_channels", "model_channels", "out_channels", "num_res_blocks", "channel_mult",
                         "num_classes", "use_scale_shift_norm", "resblock_updown"),
                 "ddpm": ("ch", "out_ch", "ch_mult", "num_res_blocks", "in_channels")}


def _checked_model(arch: str, config: Optional[dict], sd: Dict[str, torch.Tensor], path: str, num_heads: int,
                   num_head_channels: int) -> nn.Module:
    """The network of ``arch`` with ``sd`` loaded. Its configuration (given, or read off the shapes) is checked
    against the shapes first, and the network is built on the meta device and compared key by key, so a file
    whose configuration claims a huge network allocates nothing."""
    try:
        inferred = (infer_adm_config(sd, num_heads, num_head_channels) if arch == "adm" else infer_ddpm_config(sd))
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError) as exc:
        raise CheckpointError(f"{path}: its tensors do not describe an {arch.upper()} UNet ({_first_line(exc)})") \
            from None
    if config is None:
        config = inferred.to_dict()
    else:
        try:
            given = resolve_config(type(inferred), {}, config, {})
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: configuration {_first_line(exc)}") from None
        for name in _SHAPE_FIELDS[arch]:
            if getattr(given, name) != getattr(inferred, name):
                raise CheckpointError(f"{path}: configuration {name}={getattr(given, name)!r} does not match the "
                                      f"weights ({getattr(inferred, name)!r})")
        config = given.to_dict()
    try:
        with torch.device("meta"):
            skeleton = _build(arch, config)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: configuration {_first_line(exc)}") from None
    _check_state(skeleton, sd, path)
    # the weights come from the file: memory without a random initialisation, so loading draws nothing from torch's
    # generator (a caller's seeded stream is the same with or without a model loaded)
    return _load_strict(skeleton.to_empty(device="cpu"), sd, path)


def _build(arch: str, config: dict) -> nn.Module:
    if arch == "adm":
        return ADMUNet(config)
    if arch == "ddpm":
        return DDPMUNet(config)
    raise CheckpointError(f"unknown architecture {arch!r}: expected 'adm' or 'ddpm'")


def load(path: PathLike, *, arch: Optional[str] = None, config: Optional[dict] = None, schedule=None,
         device: Union[str, torch.device] = "cpu", dtype: Optional[torch.dtype] = None, ema: bool = True,
         num_heads: int = 4, num_head_channels: int = 64) -> Loaded:
    """Load an eps-model and its schedule from a checkpoint file or a diffusers folder.

    Args:
        path: a ``.pt``/``.pth``/``.ckpt``/``.safetensors`` file or a diffusers folder.
        arch: ``"adm"`` or ``"ddpm"`` to skip detection; ``config``: that architecture's fields (else read off the
            shapes).
        schedule: override the betas: a tensor, or ``"linear"``/``"cosine"`` (1000 steps). Default: the file's own
            (ddrm_fast and diffusers files), else DDPM's linear schedule, that of the public ADM and DDPM checkpoints.
        device, dtype: where the model goes; ``dtype`` float16/bfloat16 converts an ADM torso (``to_dtype``).
        ema: take the EMA weights when the file holds both.
        num_heads, num_head_channels: ADM attention heads, not recorded in the weights (defaults: the public
            256x256 checkpoints).

    Returns:
        ``Loaded(model, betas)``, unpackable as ``model, betas = load(path)``; the model is in eval mode.
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        raise CheckpointError(f"model file not found: {path}")
    if os.path.isdir(path):
        if not is_diffusers_folder(path):
            raise CheckpointError(f"{path}: a folder but not a diffusers model (no config.json or unet/config.json)")
        model, betas = load_diffusers(path)
        betas = _schedule(schedule, betas)
    else:
        try:
            check_regular(path, "model file")
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
        obj, meta = _read_tensors(path)
        info = _metadata(meta, path)
        sd = _unwrap(obj, path, ema)
        arch = arch or info.get("arch")
        if arch is None:
            if "input_blocks.0.0.weight" in sd or "time_embed.0.weight" in sd:
                arch = "adm"
            elif "temb.dense.0.weight" in sd or "conv_in.weight" in sd:
                arch = "ddpm"
            else:
                raise CheckpointError(f"{path}: neither an ADM (input_blocks.*, time_embed.*) nor a DDPM "
                                      f"(temb.dense.*, conv_in.*) state_dict; first keys: {sorted(sd)[:4]}")
        if arch not in ("adm", "ddpm"):
            raise CheckpointError(f"unknown architecture {arch!r}: expected 'adm' or 'ddpm'")
        model = _checked_model(arch, config or info.get("config"), sd, path, num_heads, num_head_channels)
        default = (torch.tensor(info["betas"], dtype=torch.float64) if "betas" in info else linear_betas().double())
        betas = _schedule(schedule, default)
        model.eval()
    if dtype is not None:
        if not isinstance(model, ADMUNet):
            raise ValueError("dtype: half-precision conversion is offered for ADM models; use autocast for others")
        model.to_dtype(dtype)
    return Loaded(model.to(device), betas)


def load_weights(model: nn.Module, path: PathLike, ema: bool = True) -> nn.Module:
    """``model`` with the weights of the checkpoint at ``path`` (a ``.pt``/``.ckpt`` loaded with
    ``weights_only``, or ``.safetensors``; the containers training scripts save unwrapped), loaded strictly: a
    file whose keys or shapes differ is a one-line :class:`CheckpointError` naming what. Returns ``model`` in
    eval mode."""
    path = os.fspath(path)
    if not os.path.lexists(path):
        raise CheckpointError(f"model file not found: {path}")
    try:
        check_regular(path, "model file")
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    obj, _ = _read_tensors(path)
    return _load_strict(model, _unwrap(obj, path, ema), path).eval()


def save(model: nn.Module, path: PathLike, betas: torch.Tensor, **info) -> None:
    """Save an ADM/DDPM model as ``.safetensors`` with its architecture and schedule in the metadata, so that
    ``load(path)`` rebuilds it exactly. Extra keyword arguments (JSON-serialisable) are stored alongside."""
    from safetensors.torch import save_file

    if isinstance(model, ADMUNet):
        arch = "adm"
    elif isinstance(model, DDPMUNet):
        arch = "ddpm"
    else:
        raise ValueError(f"model must be an ADMUNet or DDPMUNet, got {type(model).__name__}")
    meta = {"arch": arch, "config": model.config.to_dict(),
            "betas": torch.as_tensor(betas, dtype=torch.float64).tolist(), **info}
    state = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(os.fspath(path), lambda tmp: save_file(state, tmp, metadata={_META_KEY: json.dumps(meta)}))


def metadata(path: PathLike) -> dict:
    """What ddrm_fast recorded in a model file it saved (``arch``, ``config``, ``betas``, ``training``, ...), checked
    as :func:`load` checks it; ``{}`` for other files."""
    path = os.fspath(path)
    try:
        check_regular(path, "model file")
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    if not path.endswith(".safetensors"):
        return {}
    try:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - as in _read_tensors
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    return _metadata(meta, path)


DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "small_adm.safetensors")


def default_model(device: Union[str, torch.device] = "cpu") -> Loaded:
    """The small ADM UNet embedded in the package (trained on scikit-image's photos; docs/models.md says how)."""
    if not os.path.isfile(DEFAULT_MODEL):
        raise CheckpointError(f"the embedded model is missing from this installation ({DEFAULT_MODEL})")
    return load(DEFAULT_MODEL, device=device)
