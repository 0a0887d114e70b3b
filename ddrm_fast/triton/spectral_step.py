"""Triton spectral DDRM step: the elementwise three-case update on V^T-space rows, fused with the x0 prediction
(reference: ddrm_fast.reference.spectral_step)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from . import register
from .common import philox_normal, three_cases


@triton.jit
def _spectral_step_kernel(xb_ptr, eb_ptr, z_ptr, seeds_ptr, off_lo, off_hi, u_ptr, s_ptr, s_bs, sy_ptr, sy_bs, sy_js,
                          coef_ptr, out_ptr, x0_ptr, N, M, eta, eta_b, eta_c, LEGACY: tl.constexpr,
                          HAS_Z: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(1).to(tl.int64)
    j = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    mask = j < N
    in_m = j < M
    sqa = tl.load(coef_ptr)
    sq1m = tl.load(coef_ptr + 1)
    sn = tl.load(coef_ptr + 2)
    sqan = tl.load(coef_ptr + 3)
    xb = tl.load(xb_ptr + row * N + j, mask=mask, other=0.0)
    eb = tl.load(eb_ptr + row * N + j, mask=mask, other=0.0)
    if HAS_Z:
        zz = tl.load(z_ptr + row * N + j, mask=mask, other=0.0)
    else:  # element j of the row's Philox stream
        zz = philox_normal(tl.load(seeds_ptr + row), off_lo, off_hi, j.to(tl.uint32))
    s = tl.load(s_ptr + row * s_bs + j, mask=in_m, other=0.0)
    sy = tl.load(sy_ptr + row * sy_bs + j * sy_js, mask=in_m, other=1.0)
    u = tl.load(u_ptr + row * M + j, mask=in_m, other=0.0)
    x0 = (xb - sq1m * eb) / sqa
    new = x0 + tl.sqrt(1.0 - eta_c * eta_c) * sn * eb + eta_c * sn * zz
    if LEGACY:
        measured = in_m
    else:
        measured = in_m & (s > 0)
    new = three_cases(x0, zz, u, s, sy, sn, eta, eta_b, new, measured)
    tl.store(out_ptr + row * N + j, sqan * new, mask=mask)
    tl.store(x0_ptr + row * N + j, x0, mask=mask)


def _launch(xbar, epsbar, z, uty, s, sigma_y, coef, eta, eta_b, eta_c, legacy, seeds=None, offset=0):
    for name, t in (("xbar", xbar), ("epsbar", epsbar), ("z", z)):
        if t is None:
            continue
        if t.dim() != 2 or t.shape != xbar.shape or t.dtype != torch.float32 or not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous float32 of shape {tuple(xbar.shape)}")
    B, N = xbar.shape
    if z is None and (seeds is None or seeds.shape != (B,) or seeds.dtype != torch.int64):
        raise ValueError("seeds must be an int64 (B,) tensor when z is not given")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    M = uty.shape[1]
    if uty.shape[0] != B or M > N or s.shape[1] != M or s.shape[0] not in (1, B):
        raise ValueError(f"uty must be (B, m) and s (1|B, m), got {tuple(uty.shape)} and {tuple(s.shape)}")
    if sigma_y.dim() != 2 or sigma_y.shape[0] not in (1, B) or sigma_y.shape[1] not in (1, M):
        raise ValueError(f"sigma_y must be (1|B, 1|m), got {tuple(sigma_y.shape)}")
    out, x0 = torch.empty_like(xbar), torch.empty_like(xbar)
    block = 1024
    dummy = coef  # any valid pointer for the argument a variant does not read
    _spectral_step_kernel[(triton.cdiv(N, block), B)](
        xbar, epsbar, z if z is not None else dummy, seeds.contiguous() if z is None else dummy, offset & 0xFFFFFFFF,
        (offset >> 32) & 0xFFFFFFFF, uty.contiguous(), s.contiguous(), 0 if s.shape[0] == 1 else M,
        sigma_y.contiguous(), 0 if sigma_y.shape[0] == 1 else sigma_y.shape[1], 0 if sigma_y.shape[1] == 1 else 1,
        coef, out, x0, N, M,
        float(eta), float(eta_b), float(eta_c), LEGACY=bool(legacy), HAS_Z=z is not None, BLOCK=block)
    return out, x0


def spectral_step(xbar: torch.Tensor, epsbar: torch.Tensor, z: Optional[torch.Tensor], uty: torch.Tensor,
                  s: torch.Tensor, sigma_y: torch.Tensor, coef: torch.Tensor, eta: float, eta_b: float,
                  eta_c: Optional[float] = None, legacy_zero_singulars: bool = False,
                  seeds: Optional[torch.Tensor] = None, offset: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """The kernel of ``ddrm_fast_triton::spectral_step`` (schema and documentation: :mod:`ddrm_fast.ops`)."""
    return _launch(xbar, epsbar, z, uty, s, sigma_y, coef, eta, eta_b, eta if eta_c is None else eta_c,
                   legacy_zero_singulars, seeds, offset)


register("spectral_step", spectral_step)
