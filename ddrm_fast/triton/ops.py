"""Python wrappers of the Triton ops (namespace ``ddrm_fast_triton``), with the signatures of :mod:`ddrm_fast.ops`:
the backend table (:mod:`ddrm_fast.backends`) holds one signature for every backend."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import group_step as _group_module  # noqa: F401  (importing registers the ops)
from . import spectral_step as _spectral_module  # noqa: F401

__all__ = ["spectral_step", "group_step"]


def spectral_step(xbar: torch.Tensor, epsbar: torch.Tensor, z: Optional[torch.Tensor], uty: torch.Tensor,
                  s: torch.Tensor, sigma_y: torch.Tensor, coef: torch.Tensor, eta: float, eta_b: float,
                  eta_c: Optional[float] = None, legacy_zero_singulars: bool = False,
                  seeds: Optional[torch.Tensor] = None, offset: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Triton :func:`ddrm_fast.ops.spectral_step` (same arguments, same numbers)."""
    return torch.ops.ddrm_fast_triton.spectral_step(xbar, epsbar, z, uty, s, sigma_y, coef, float(eta), float(eta_b),
                                                    float(eta if eta_c is None else eta_c),
                                                    bool(legacy_zero_singulars), seeds, int(offset))


def group_step(x: torch.Tensor, eps: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
               observed: Optional[torch.Tensor], sigma_y: torch.Tensor, coef: torch.Tensor, z: Optional[torch.Tensor],
               seeds: Optional[torch.Tensor], offset: int, group_shape, eta: float, eta_b: float,
               want_x0: bool = False, clip_x0: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Triton :func:`ddrm_fast.ops.group_step` (same arguments, same numbers)."""
    return torch.ops.ddrm_fast_triton.group_step(x, eps, y, weights, observed, sigma_y, coef, z, seeds, int(offset),
                                                 [int(v) for v in group_shape], float(eta), float(eta_b),
                                                 bool(want_x0), bool(clip_x0))
