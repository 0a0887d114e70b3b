"""Public wrappers of the compiled ops in ``ddrm_fast._C`` (namespace ``torch.ops.ddrm_fast``).

The extension is optional: without it (``DDRM_FAST_SKIP_EXT=1`` at install, or no compiler) the package works on the
reference backend, and :func:`has_cpu` / :func:`has_cuda` say False.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ._utils import check_same_device

# --- load the extension (registers torch.ops.ddrm_fast.*) ------------------------------------------------------------
try:
    from . import _C  # noqa: F401
    _EXT_ERROR: Optional[str] = None
except ImportError as exc:  # built without the extension, or a broken build: the reference backend still works
    _C = None
    _EXT_ERROR = str(exc)

__all__ = ["has_cpu", "has_cuda", "extension_error", "spectral_step", "group_step"]


def has_cpu() -> bool:
    """True when the compiled CPU kernels are loaded."""
    return _C is not None


def has_cuda() -> bool:
    """True when the extension was built with its CUDA kernels and a GPU is visible."""
    return _C is not None and bool(_C.built_with_cuda()) and torch.cuda.is_available()


def extension_error() -> Optional[str]:
    """Why ``ddrm_fast._C`` did not load (None when it did)."""
    return _EXT_ERROR


# --- spectral_step: the three-case DDRM update on V^T-space tensors, fused with the x0 prediction -------------------
if _C is not None:
    @torch.library.register_fake("ddrm_fast::spectral_step")
    def _spectral_step_fake(xbar, epsbar, z, uty, s, sigma_y, coef, eta, eta_b, eta_c, legacy_zero_singulars,
                            seeds=None, offset=0):
        # shapes only: two (B, N) float32 outputs
        check_same_device(dict(xbar=xbar, epsbar=epsbar, z=z, uty=uty, s=s, sigma_y=sigma_y, coef=coef, seeds=seeds))
        return torch.empty_like(xbar, dtype=torch.float32), torch.empty_like(xbar, dtype=torch.float32)


def spectral_step(xbar: torch.Tensor, epsbar: torch.Tensor, z: Optional[torch.Tensor], uty: torch.Tensor,
                  s: torch.Tensor, sigma_y: torch.Tensor, coef: torch.Tensor, eta: float, eta_b: float,
                  eta_c: Optional[float] = None, legacy_zero_singulars: bool = False,
                  seeds: Optional[torch.Tensor] = None, offset: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """The compiled :func:`ddrm_fast.reference.spectral_step` (same arguments, same results to float32 rounding).

    xbar, epsbar, z: (B, N); uty: (B, m); s: (1|B, m); sigma_y: (1|B, 1|m); coef: (4,) on the same device.
    Noise: ``z``, or (z None) in-kernel Philox from per-sample ``seeds`` (B,) int64 at ``offset``, element j of a
    row being coordinate j (the numbers of ``reference.philox_normal(seeds, offset, N)``).
    Returns (sqrt(abar') * new, x0bar), float32 (B, N).
    """
    if _C is None:
        raise RuntimeError(f"ddrm_fast._C is not available: {_EXT_ERROR}")
    eta_c = eta if eta_c is None else eta_c
    return torch.ops.ddrm_fast.spectral_step(xbar, epsbar, z, uty, s, sigma_y, coef, float(eta), float(eta_b),
                                             float(eta_c), bool(legacy_zero_singulars), seeds, int(offset))


# --- group_step: the one-pass step for rank-one-per-group operators (no explicit V) ---------------------------------
if _C is not None:
    @torch.library.register_fake("ddrm_fast::group_step")
    def _group_step_fake(x, eps, y, weights, observed, sigma_y, coef, z, seeds, offset, group_shape, eta, eta_b,
                         want_x0, clip_x0=False):
        # float32 outputs laid out like x; x0 is empty unless asked for
        check_same_device(dict(x=x, eps=eps, y=y, weights=weights, observed=observed, sigma_y=sigma_y, coef=coef, z=z,
                               seeds=seeds))
        out = torch.empty_like(x, dtype=torch.float32)
        return out, (torch.empty_like(out) if want_x0 else x.new_empty((0,), dtype=torch.float32))


def group_step(x: torch.Tensor, eps: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
               observed: Optional[torch.Tensor], sigma_y: torch.Tensor, coef: torch.Tensor, z: Optional[torch.Tensor],
               seeds: Optional[torch.Tensor], offset: int, group_shape, eta: float, eta_b: float,
               want_x0: bool = False, clip_x0: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """The compiled :func:`ddrm_fast.reference.group_step`: one read of x_t and eps, one write of x_{t'}. Arguments
    in the order of the op schema; ``clip_x0`` clamps x0 to [-1, 1] (eps made consistent with it) in the same pass.

    x, eps: (B, C, H, W) float32/float16/bfloat16, any strides (eps may be the first C channels of a 2C output).
    y: (B, G) float32; weights (n,); observed (1|B, G) or None; sigma_y (1|B, 1|G); coef (4,).
    Noise: ``z`` (B, C, H, W) float32, or (z None) in-kernel Philox from per-sample ``seeds`` (B,) int64 at
    ``offset`` (the numbers of :func:`ddrm_fast.reference.philox_normal`). Returns (x_{t'}, x0 or an empty tensor),
    float32.
    """
    if _C is None:
        raise RuntimeError(f"ddrm_fast._C is not available: {_EXT_ERROR}")
    return torch.ops.ddrm_fast.group_step(x, eps, y, weights, observed, sigma_y, coef, z, seeds, int(offset),
                                          [int(v) for v in group_shape], float(eta), float(eta_b), bool(want_x0),
                                          bool(clip_x0))
