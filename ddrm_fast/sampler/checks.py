"""Argument checks of :func:`ddrm_fast.ddrm_sample`: everything a bad argument can break is refused with a ValueError
naming it, before any work, on every backend alike."""
from __future__ import annotations

from typing import Callable, List, NamedTuple, Optional

import torch

from .. import backends
from ..diffusion import take_eps
from ..operators.base import LinearOperator
from ..schedules import ddrm_timesteps, linear_betas
from .graphs import GRAPHS, CudaGraph
from .noise import NOISE_SOURCES

__all__ = ["Call", "check_call", "check_scalar", "check_generator", "sigma_y_tensor", "model_eps", "check_result"]


class Call(NamedTuple):
    """A checked call: the measurements flat (B, m) float32, sigma_y (1|B, 1|m), the schedule and its walk."""

    y: torch.Tensor
    sigma_y: torch.Tensor
    batch: int
    device: torch.device
    eta: float
    eta_b: float
    betas: torch.Tensor
    seq: List[int]
    x_T: Optional[torch.Tensor]
    backend: backends.Backend


def check_scalar(name: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a float, got {type(value).__name__}")
    if not lo <= float(value) <= hi:
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {value}")
    return float(value)


def check_generator(generator, batch: int) -> None:
    """None, one torch.Generator, or a sequence of one per sample."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if isinstance(generator, (list, tuple)) and all(isinstance(g, torch.Generator) for g in generator):
        if len(generator) != batch:
            raise ValueError(f"generator: got {len(generator)} per-sample generators for a batch of {batch}")
        return
    raise ValueError(f"generator must be None, a torch.Generator or a list of one per sample, got "
                     f"{type(generator).__name__}" + (" of other things" if isinstance(generator, (list, tuple))
                                                       else ""))


def _check_real(t: torch.Tensor, name: str) -> None:
    """A tensor the sampler can read values from: real, and not on the meta device (shapes without values)."""
    if t.device.type == "meta":
        raise ValueError(f"{name} is on the meta device: it has a shape but no values")
    if t.is_complex():
        raise ValueError(f"{name} must be real, got {t.dtype}")


def check_result(x: torch.Tensor) -> torch.Tensor:
    """``x``, the restoration, when it is finite. The loop reads nothing back from the device; this is its one look
    at a value, once, at the end: a model whose output went NaN or Inf at any step would otherwise return an image
    of NaNs without a word."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError("model: its output (eps) was NaN or Inf at some step, so the restoration is not finite")
    return x


def sigma_y_tensor(sigma_y, operator: LinearOperator, batch: int, device) -> torch.Tensor:
    """sigma_y as a (1|B, m) float32 tensor: a float, a per-sample (B,) tensor or a map broadcastable to y."""
    if isinstance(sigma_y, bool) or not isinstance(sigma_y, (int, float, torch.Tensor)):
        raise ValueError(f"sigma_y must be a float or a tensor, got {type(sigma_y).__name__}")
    if isinstance(sigma_y, torch.Tensor):
        if sigma_y.device.type == "meta":
            _check_real(sigma_y, "sigma_y")
        if sigma_y.is_complex() or sigma_y.dtype == torch.bool:
            raise ValueError(f"sigma_y must be real numbers, got {sigma_y.dtype}")
    sy = torch.as_tensor(sigma_y, dtype=torch.float32, device=device)
    if not bool(torch.isfinite(sy).all()):
        raise ValueError("sigma_y must be finite")
    if bool((sy < 0).any()):
        raise ValueError("sigma_y must be >= 0")
    if sy.numel() == 1:
        return sy.reshape(1, 1)
    if sy.dim() == 1 and sy.shape[0] == batch:
        return sy.reshape(batch, 1)
    if not operator.identity_U:
        raise ValueError(f"sigma_y: a per-coordinate noise map needs an operator whose U is the identity "
                         f"({type(operator).__name__} mixes measurements); give a float or a per-sample (B,) tensor")
    try:
        full = torch.broadcast_to(sy, (batch, *operator.y_shape))
    except RuntimeError:
        raise ValueError(f"sigma_y of shape {tuple(sy.shape)} is neither a float, a per-sample ({batch},) tensor, nor "
                         f"broadcastable to y's shape {(batch, *operator.y_shape)}") from None
    return full.reshape(batch, operator.m).contiguous()  # the kernels read it densely


def _measurements(y, operator: LinearOperator) -> torch.Tensor:
    """y flat (B, m) float32, finite, with a batch."""
    y_flat = operator.check_y(y, "y")
    _check_real(y_flat, "y")  # before any value of it is read
    y_flat = y_flat.float()
    if y_flat.shape[0] == 0:
        raise ValueError("y has an empty batch (B = 0)")
    if not bool(torch.isfinite(y_flat).all()):
        raise ValueError("y contains NaN or Inf")
    return y_flat


def _schedule(schedule) -> torch.Tensor:
    betas = linear_betas() if schedule is None else torch.as_tensor(schedule)
    if not betas.is_floating_point() or betas.dim() != 1 or not bool(((betas > 0) & (betas < 1)).all()):
        raise ValueError("schedule must be a 1-D tensor of betas in (0, 1)")
    return betas


def _initial(x_T, operator: LinearOperator, batch: int) -> Optional[torch.Tensor]:
    if x_T is None:
        return None
    x_T = operator.check_x(x_T, "x_T")
    _check_real(x_T, "x_T")
    if x_T.shape[0] != batch:
        raise ValueError(f"x_T has batch {x_T.shape[0]}, y has {batch}")
    if not bool(torch.isfinite(x_T).all()):
        raise ValueError("x_T contains NaN or Inf")
    return x_T.float()


def check_call(model: Callable, y, operator, sigma_y, *, steps, eta, eta_b, schedule, generator, noise: str,
               backend: str, x_T, callback, progress, cuda_graph: bool) -> Call:
    """Every argument of ``ddrm_sample`` checked; returns them in the form the sampler uses."""
    if not isinstance(operator, LinearOperator):
        raise ValueError(f"operator must be a ddrm_fast.operators.LinearOperator, got {type(operator).__name__}")
    if not callable(model):
        raise ValueError("model must be callable as model(x_t, t)")
    y_flat = _measurements(y, operator)
    batch, device = y_flat.shape[0], y_flat.device
    check_generator(generator, batch)
    eta = check_scalar("eta", eta, 0.0, 1.0)
    eta_b = check_scalar("eta_b", eta_b, 0.0, 1.0)
    if noise not in NOISE_SOURCES:
        raise ValueError(f"noise must be one of {tuple(NOISE_SOURCES)}, got {noise!r}")
    betas = _schedule(schedule)
    seq = ddrm_timesteps(steps, betas.numel())
    sy = sigma_y_tensor(sigma_y, operator, batch, device)
    x_T = _initial(x_T, operator, batch)
    kernels = backends.resolve(backend, device)
    if cuda_graph:
        if device.type != "cuda" and GRAPHS.make is CudaGraph:  # (tests substitute a graph that runs anywhere)
            raise ValueError("cuda_graph=True needs CUDA tensors (y is on the CPU)")
        if callback is not None or progress:
            raise ValueError("cuda_graph=True runs the loop as one graph: no callback or progress bar")
        if not isinstance(model, torch.nn.Module):
            raise ValueError("cuda_graph=True needs the model to be a torch.nn.Module (its graph is cached per model)")
    return Call(y_flat, sy, batch, device, eta, eta_b, betas, seq, x_T, kernels)


def model_eps(out, x: torch.Tensor, channels: int) -> torch.Tensor:
    """eps from the model's output, checked by shape and dtype only (no value is read: the loop never waits)."""
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"model must return a tensor, got {type(out).__name__}")
    if not out.is_floating_point():
        raise ValueError(f"model returned {out.dtype}; expected a real floating-point tensor")
    if out.dim() != 4 or out.shape[0] != x.shape[0] or out.shape[2:] != x.shape[2:]:
        raise ValueError(f"model returned shape {tuple(out.shape)} for x_t of shape {tuple(x.shape)}; expected "
                         f"({x.shape[0]}, {channels} or {2 * channels}, {x.shape[2]}, {x.shape[3]})")
    eps = take_eps(out, channels)
    # the kernels read float32/16/bf16; a float64 model is honoured at float32, as every backend computes
    return eps.float() if eps.dtype == torch.float64 else eps
