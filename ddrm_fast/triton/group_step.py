"""Triton grouped DDRM step: kernel, launcher and op side by side (reference: ddrm_fast.reference.group_step).

A program handles BLOCK groups of one group row as a (BLOCK, n_pow2) tile: loaded once, reduced along the group for
v.x0, v.eps and v.z, and written once as sqrt(abar') (w + v delta).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import triton
import triton.language as tl

from . import register
from .common import philox_normal, three_cases


@triton.jit
def _group_step_kernel(x_ptr, sxb, sxc, sxh, sxw, e_ptr, seb, sec, seh, sew, z_ptr, szb, szc, szh, szw,
                       seeds_ptr, off_lo, off_hi, y_ptr, w_ptr, obs_ptr, obs_bs, sy_ptr, sy_bs, sy_js, coef_ptr,
                       out_ptr, sob, soc, soh, sow, x0_ptr, s0b, s0c, s0h, s0w,
                       GC, GH, GW, H, W, eta, eta_b,
                       CG: tl.constexpr, RH: tl.constexpr, RW: tl.constexpr, NP: tl.constexpr, HAS_Z: tl.constexpr,
                       HAS_OBS: tl.constexpr, WANT_X0: tl.constexpr, CLIP_X0: tl.constexpr, BLOCK: tl.constexpr):
    # program = (a block of group columns, one group row i, one (sample, channel group)): no index divisions per
    # element; the tile is (BLOCK groups, NP >= n pixels), loaded once and reduced along the group.
    j = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    i = tl.program_id(1).to(tl.int64)
    bz = tl.program_id(2)
    b = (bz // GC).to(tl.int64)
    cy = (bz % GC).to(tl.int64)
    t = tl.arange(0, NP)
    tmask = t < CG * RH * RW
    jmask = j < GW
    mask = jmask[:, None] & tmask[None, :]
    c = cy * CG + (t // (RH * RW)).to(tl.int64)
    h = i * RH + ((t // RW) % RH).to(tl.int64)
    w = (j * RW).to(tl.int64)[:, None] + (t % RW).to(tl.int64)[None, :]
    sqa = tl.load(coef_ptr)
    sq1m = tl.load(coef_ptr + 1)
    sn = tl.load(coef_ptr + 2)
    sqan = tl.load(coef_ptr + 3)
    k = tl.load(w_ptr + t, mask=tmask, other=0.0)
    k_norm = tl.sqrt(tl.sum(k * k, axis=0))
    v = (k / k_norm)[None, :]
    c3 = tl.sqrt(1.0 - eta * eta) * sn
    c3z = eta * sn

    ev = tl.load(e_ptr + b * seb + (c * sec + h * seh)[None, :] + w * sew, mask=mask, other=0.0).to(tl.float32)
    xv = tl.load(x_ptr + b * sxb + (c * sxc + h * sxh)[None, :] + w * sxw, mask=mask, other=0.0).to(tl.float32)
    if HAS_Z:
        zv = tl.load(z_ptr + b * szb + (c * szc + h * szh)[None, :] + w * szw, mask=mask, other=0.0)
    else:
        seed = tl.load(seeds_ptr + b)
        zv = philox_normal(seed, off_lo, off_hi, ((c * H + h)[None, :] * W + w).to(tl.uint32))
    x0 = (xv - sq1m * ev) / sqa
    if CLIP_X0:  # the clamped prediction, eps consistent with it (predict_x0 in csrc/kernels/group_step.h)
        x0 = tl.minimum(tl.maximum(x0, -1.0), 1.0)
        ev = (xv - sqa * x0) / sq1m
    d_x0 = tl.sum(v * x0, axis=1)
    d_e = tl.sum(v * ev, axis=1)
    d_z = tl.sum(tl.where(mask, v * zv, 0.0), axis=1)
    w1 = d_x0 + c3 * d_e + c3z * d_z

    g = (cy * GH + i) * GW + j
    if HAS_OBS:
        s = k_norm * tl.load(obs_ptr + b * obs_bs + g, mask=jmask, other=0.0)
    else:
        s = tl.zeros((BLOCK,), tl.float32) + k_norm
    sy = tl.load(sy_ptr + b * sy_bs + g * sy_js, mask=jmask, other=1.0)
    yv = tl.load(y_ptr + b * (GC * GH * GW) + g, mask=jmask, other=0.0)
    new = three_cases(d_x0, d_z, yv, s, sy, sn, eta, eta_b, w1, s > 0)
    delta = (new - w1)[:, None]

    res = sqan * (x0 + c3 * ev + c3z * zv + v * delta)
    tl.store(out_ptr + b * sob + (c * soc + h * soh)[None, :] + w * sow, res, mask=mask)
    if WANT_X0:
        tl.store(x0_ptr + b * s0b + (c * s0c + h * s0h)[None, :] + w * s0w, x0, mask=mask)


def _launch(x, eps, y, weights, observed, sigma_y, coef, z, seeds, offset, group_shape, eta, eta_b, want_x0,
            clip_x0=False):
    B, C, H, W = x.shape
    cg, rh, rw = group_shape
    GC, GH, GW = C // cg, H // rh, W // rw
    G = GC * GH * GW
    out = torch.empty_like(x, dtype=torch.float32)
    x0 = torch.empty_like(out) if want_x0 else x.new_empty((0,), dtype=torch.float32)
    n = cg * rh * rw
    npow = triton.next_power_of_2(n)
    block = max(16, min(256, 1024 // npow, triton.next_power_of_2(GW)))
    dummy = coef  # any valid pointer for the arguments a variant does not read
    grid = (triton.cdiv(GW, block), GH, B * GC)
    _group_step_kernel[grid](
        x, *x.stride(), eps, *eps.stride(), z if z is not None else dummy, *(z.stride() if z is not None else (0,) * 4),
        seeds if seeds is not None else dummy, offset & 0xFFFFFFFF, (offset >> 32) & 0xFFFFFFFF, y, weights,
        observed if observed is not None else dummy,
        G if (observed is not None and observed.shape[0] > 1) else 0,
        sigma_y, 0 if sigma_y.shape[0] == 1 else sigma_y.shape[1], 0 if sigma_y.shape[1] == 1 else 1, coef,
        out, *out.stride(), x0 if want_x0 else out, *(x0.stride() if want_x0 else (0,) * 4),
        GC, GH, GW, H, W, float(eta), float(eta_b),
        CG=cg, RH=rh, RW=rw, NP=npow, HAS_Z=z is not None, HAS_OBS=observed is not None, WANT_X0=want_x0,
        CLIP_X0=bool(clip_x0), BLOCK=block)
    return out, x0


def _check(x, eps, y, weights, observed, sigma_y, coef, z, seeds, offset, group_shape):
    if x.dim() != 4 or eps.shape != x.shape:
        raise ValueError(f"x and eps must be (B, C, H, W) of one shape, got {tuple(x.shape)} and {tuple(eps.shape)}")
    for name, t in (("x", x), ("eps", eps)):
        if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"{name} must be float32, float16 or bfloat16, got {t.dtype}")
    if len(group_shape) != 3 or any(d % gs for d, gs in zip(x.shape[1:], group_shape)):
        raise ValueError(f"group_shape {tuple(group_shape)} must divide the image shape {tuple(x.shape[1:])}")
    G = x[0].numel() // (group_shape[0] * group_shape[1] * group_shape[2])
    if y.numel() != x.shape[0] * G or not y.is_contiguous() or y.dtype != torch.float32:
        raise ValueError(f"y must be contiguous float32 with {G} measurements per sample, got {tuple(y.shape)}")
    if weights.numel() != group_shape[0] * group_shape[1] * group_shape[2]:
        raise ValueError(f"weights must have {group_shape[0] * group_shape[1] * group_shape[2]} values")
    if sigma_y.dim() != 2 or sigma_y.shape[0] not in (1, x.shape[0]) or sigma_y.shape[1] not in (1, G):
        raise ValueError(f"sigma_y must be (1|B, 1|G), got {tuple(sigma_y.shape)}")
    if z is None and (seeds is None or seeds.shape != (x.shape[0],) or seeds.dtype != torch.int64):
        raise ValueError("seeds must be an int64 (B,) tensor when z is not given")
    if z is not None and (z.shape != x.shape or z.dtype != torch.float32):
        raise ValueError("z must be float32 with the shape of x")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if x.shape[0] * (x.shape[1] // group_shape[0]) > 65535:
        raise ValueError("the Triton group step takes at most 65535 (sample, channel group) pairs; split the batch")


def group_step(x: torch.Tensor, eps: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
               observed: Optional[torch.Tensor], sigma_y: torch.Tensor, coef: torch.Tensor, z: Optional[torch.Tensor],
               seeds: Optional[torch.Tensor], offset: int, group_shape: List[int], eta: float, eta_b: float,
               want_x0: bool = False, clip_x0: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """The kernel of ``ddrm_fast_triton::group_step`` (schema and documentation: :mod:`ddrm_fast.ops`)."""
    _check(x, eps, y, weights, observed, sigma_y, coef, z, seeds, offset, group_shape)
    return _launch(x, eps, y, weights, observed, sigma_y, coef, z, seeds, offset, group_shape, eta, eta_b, want_x0,
                   clip_x0)


register("group_step", group_step)
