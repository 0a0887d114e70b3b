"""``@triton.jit`` helpers both Triton kernels share, mirroring csrc/kernels/philox.h and ddrm_update.h: one
definition of the noise stream and of the three-case update (docs/ddrm.md, "The update" and "Noise")."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def philox_normal(seed, offset_lo, offset_hi, element):
    """Philox4x32-10 normals, the numbers of ddrm_fast.reference.philox_normal (key = seed, counter = (element, 0,
    offset lo, offset hi); Box-Muller on 24-bit uniforms)."""
    zero = element * 0
    r0, r1, _, _ = tl.philox(seed, element, zero, zero + offset_lo, zero + offset_hi)
    u1 = ((r0 >> 8) + 1).to(tl.float32) * 5.9604645e-08
    u2 = (r1 >> 8).to(tl.float32) * 5.9604645e-08
    return tl.sqrt(-2.0 * tl.log(u1)) * tl.cos(6.2831855 * u2)


@triton.jit
def three_cases(x0, zz, u, s, sy, sn, eta, eta_b, case3, measured):
    """DDRM's update of a coordinate: case 1 (s sigma' > sigma_y, noisier than y: pulled to ybar = u / s), case 2
    (s sigma' < sigma_y: moved along the residual) where ``measured``, else ``case3`` (DDIM in the coordinate)."""
    s_safe = tl.where(s > 0, s, 1.0)
    sy_safe = tl.where(sy > 0, sy, 1.0)
    r = eta_b * sy / s_safe
    new1 = eta_b * (u / s_safe) + (1.0 - eta_b) * x0 + tl.sqrt(tl.maximum(sn * sn - r * r, 0.0)) * zz
    new2 = x0 + tl.sqrt(1.0 - eta * eta) * sn * (u - s * x0) / sy_safe + eta * sn * zz
    return tl.where(measured & (s * sn > sy), new1, tl.where(measured & (s * sn < sy), new2, case3))
