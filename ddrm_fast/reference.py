"""Plain-PyTorch DDRM math: the oracle every fused kernel is tested against (docs/ddrm.md).

Spectral tensors are (B, N); the measurement-side tensors ``uty`` (U^T y), ``s`` (singular values) and ``sigma_y``
cover the first m coordinates (any batch that broadcasts); coordinates m..N-1 are unmeasured. A coordinate below m
is measured where s > 0 (``legacy_zero_singulars``: always, as in the original). Everything is computed with
``torch.where`` (no boolean indexing, no host syncs), in float32.

Per-step scalars travel as a float32 tensor ``coef`` = [sqrt(abar_t), sqrt(1 - abar_t), sigma', sqrt(abar')] so a
loop can keep them on the device.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .operators.group import gather_groups, scatter_groups

__all__ = ["step_coefficients", "initial_coefficients", "initial_spectral", "spectral_step", "group_step",
           "clipped_prediction", "philox_normal"]


def step_coefficients(abar: torch.Tensor, seq, seq_next) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-step scalars for the walk t -> t' (``abar`` from :func:`ddrm_fast.schedules.abar_table`, index t + 1).

    Returns (coef (steps, 4) = [sqrt(abar_t), sqrt(1 - abar_t), sigma_{t'}, sqrt(abar_{t'})], sigma_T), computed in
    the table's dtype with the original's operations so the case tests (s sigma' > sigma_y) decide alike.
    """
    t = torch.as_tensor(list(seq), dtype=torch.long) + 1
    tn = torch.as_tensor(list(seq_next), dtype=torch.long) + 1
    at, an = abar[t], abar[tn]
    coef = torch.stack([at.sqrt(), (1 - at).sqrt(), (1 - an).sqrt() / an.sqrt(), an.sqrt()], dim=1)
    a_T = abar[t[0]]
    return coef, (1 - a_T).sqrt() / a_T.sqrt()


def _safe(d: torch.Tensor) -> torch.Tensor:
    return torch.where(d > 0, d, torch.ones_like(d))


def _measured(s: torch.Tensor, legacy_zero_singulars: bool) -> torch.Tensor:
    # a zero singular value is an unmeasured direction; the original DDRM counts it as measured (with noise)
    return torch.ones_like(s, dtype=torch.bool) if legacy_zero_singulars else s > 0


def initial_coefficients(sigma_T: torch.Tensor) -> torch.Tensor:
    """The step coefficients that turn a step into the initial draw: with x = eps = 0, eta = eta_b = 1 and
    coef = [1, 0, sigma_T, 1/sigma_T], a step yields (ybar + sqrt(sigma_T^2 - sigma_y^2/s^2) z) / sigma_T where
    s sigma_T > sigma_y and z elsewhere (docs/ddrm.md, "The initial state"): one definition of the math for both."""
    one = torch.ones_like(sigma_T)
    return torch.stack([one, torch.zeros_like(sigma_T), sigma_T, one / sigma_T])


def initial_spectral(z: torch.Tensor, uty: torch.Tensor, s: torch.Tensor, sigma_y: torch.Tensor,
                     sigma_T: torch.Tensor, legacy_zero_singulars: bool = False) -> torch.Tensor:
    """xbar_T (B, N): (ybar + sqrt(sigma_T^2 - sigma_y^2/s^2) z) / sigma_T where s sigma_T > sigma_y, else z."""
    zeros = torch.zeros_like(z)
    return spectral_step(zeros, zeros, z, uty, s, sigma_y, initial_coefficients(sigma_T), 1.0, 1.0,
                         legacy_zero_singulars=legacy_zero_singulars)[0]


def _three_cases(x0: torch.Tensor, eps: torch.Tensor, z: torch.Tensor, uty: torch.Tensor, s: torch.Tensor,
                 sigma_y: torch.Tensor, sn: torch.Tensor, eta: float, eta_b: float, eta_c: float,
                 legacy_zero_singulars: bool) -> torch.Tensor:
    """The update of measured coordinates (x0bar, epsbar, z along them; U^T y, s, sigma_y) by DDRM's three cases."""
    measured = _measured(s, legacy_zero_singulars)
    s_sn = s * sn
    ss = _safe(s)
    # case 1, noisier than y: pull toward ybar = U^T y / s
    new1 = eta_b * (uty / ss) + (1 - eta_b) * x0 + (sn**2 - (eta_b * sigma_y / ss) ** 2).clamp_min(0).sqrt() * z
    # case 2, less noisy than y: move along the residual, scaled by s / sigma_y
    new2 = x0 + (1 - eta * eta) ** 0.5 * sn * (uty - s * x0) / _safe(sigma_y) + eta * sn * z
    # case 3: DDIM in this coordinate
    new3 = x0 + (1 - eta_c * eta_c) ** 0.5 * sn * eps + eta_c * sn * z
    return torch.where(measured & (s_sn > sigma_y), new1, torch.where(measured & (s_sn < sigma_y), new2, new3))


def spectral_step(xbar: torch.Tensor, epsbar: torch.Tensor, z: Optional[torch.Tensor], uty: torch.Tensor,
                  s: torch.Tensor, sigma_y: torch.Tensor, coef: torch.Tensor, eta: float, eta_b: float,
                  eta_c: Optional[float] = None, legacy_zero_singulars: bool = False,
                  seeds: Optional[torch.Tensor] = None, offset: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """One DDRM step in spectral space, fused with the x0 prediction (docs/ddrm.md, "The update").

    Args:
        xbar, epsbar, z: V^T x_t, V^T eps and the step's noise, (B, N); ``z`` None: the Philox stream of ``seeds``
            (B,) at ``offset``, element j of a row being coordinate j (as the compiled kernels generate it).
        uty: U^T y, (B, m); coordinates m..N-1 are unmeasured.
        s: singular values, (1|B, m); sigma_y: measurement noise std, (1|B, 1|m).
        coef: [sqrt(abar_t), sqrt(1 - abar_t), sigma', sqrt(abar')].
        eta, eta_b, eta_c: eta_A (case 2), eta_B (case 1) and eta_C (case 3, default eta).
        legacy_zero_singulars: treat zero singular values as measured, as the original does.
    Returns:
        (sqrt(abar') * new, x0bar), both (B, N): V of the first is x_{t'}, V of the second is x0.
    """
    sqa, sq1m, sn, sqan = coef[0], coef[1], coef[2], coef[3]
    eta_c = eta if eta_c is None else eta_c
    if z is None:
        z = philox_normal(seeds, offset, xbar.shape[1])
    x0bar = (xbar - sq1m * epsbar) / sqa
    # case 3 (unmeasured, or sigma' s = sigma_y): DDIM in this coordinate
    new = x0bar + (1 - eta_c * eta_c) ** 0.5 * sn * epsbar + eta_c * sn * z
    m = uty.shape[1]
    head = _three_cases(x0bar[:, :m], epsbar[:, :m], z[:, :m], uty, s, sigma_y, sn, eta, eta_b, eta_c,
                        legacy_zero_singulars)
    return sqan * torch.cat([head, new[:, m:]], dim=1), x0bar


def clipped_prediction(x: torch.Tensor, eps: torch.Tensor, coef: torch.Tensor,
                       clip_x0: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) from x_t and eps (float32): with ``clip_x0``, x0 clamped to [-1, 1] and eps made consistent with it,
    eps' = (x_t - sqrt(abar) x0) / sqrt(1 - abar) (DDPM's clip_denoised; docs/ddrm.md, "Clipping x0")."""
    sqa, sq1m = coef[0], coef[1]
    x, eps = x.float(), eps.float()
    x0 = (x - sq1m * eps) / sqa
    if not clip_x0:
        return x0, eps
    x0 = x0.clamp(-1, 1)
    return x0, (x - sqa * x0) / sq1m


def group_step(x: torch.Tensor, eps: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
               observed: Optional[torch.Tensor], sigma_y: torch.Tensor, coef: torch.Tensor, z: Optional[torch.Tensor],
               seeds: Optional[torch.Tensor], offset: int, group_shape, eta: float, eta_b: float,
               want_x0: bool = False, clip_x0: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """One DDRM step for a rank-one-per-group operator in pixel space, with no explicit V (docs/ddrm.md,
    "Rank one per group"): per group g, with v = k/|k| and s = |k| observed_g,
    new_g = P(x0_g + sqrt(1-eta^2) sigma' eps_g + eta sigma' z_g) + v new_1, P w = w - v (v . w),
    where new_1 is the three-case update of the measured coordinate (x0bar_1 = v . x0_g, epsbar_1 = v . eps_g,
    z_1 = v . z_g). Equal to :func:`spectral_step` with zbar = V^T z. Arguments in the order of the op schema.

    Args:
        x, eps: (B, C, H, W) (any float dtype; computed in float32).
        y: (B, G) measurements in y's natural order; weights: k, (n,); observed: (1|B, G) or None.
        sigma_y: (1|B, 1|G); coef as for :func:`spectral_step`.
        z: (B, C, H, W) noise, or None: the Philox stream of ``seeds`` (B,) at ``offset`` in image layout.
        group_shape: (cg, rh, rw). want_x0: also return x0 (else an empty tensor in its place).
        clip_x0: clamp x0 to [-1, 1] and take eps' = (x_t - sqrt(abar) x0) / sqrt(1 - abar) (docs/ddrm.md,
            "Clipping x0").
    Returns:
        (x_{t'}, x0), float32 (B, C, H, W).
    """
    sn, sqan = coef[2], coef[3]
    shape = tuple(x.shape[1:])
    if z is None:
        z = philox_normal(seeds, offset, x[0].numel()).reshape(x.shape)
    k = weights.float()
    k_norm = k.norm()
    v = k / k_norm

    def groups(t):
        return gather_groups(t.float(), shape, group_shape)

    x0, e = clipped_prediction(groups(x), groups(eps), coef, clip_x0)
    zz = groups(z)
    wv = x0 + (1 - eta * eta) ** 0.5 * sn * e + eta * sn * zz  # case 3 for every direction
    s = k_norm * (observed.float() if observed is not None else torch.ones_like(y[:1]))
    # the measured coordinate along v; its case 3 is w's own component w_1 = v . w
    new_1 = _three_cases(x0 @ v, e @ v, zz @ v, y, s, sigma_y, sn, eta, eta_b, eta, False)
    w_1 = wv @ v
    out = sqan * (wv + v * (new_1 - w_1).unsqueeze(-1))
    x0_image = scatter_groups(x0, shape, group_shape) if want_x0 else out.new_empty((0,))
    return scatter_groups(out, shape, group_shape), x0_image


# --- counter-based noise (Philox4x32-10), the same numbers as the compiled and Triton kernels ----------------------
_M0, _M1, _W0, _W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
_MASK = 0xFFFFFFFF


def _mulhilo(a: int, x: torch.Tensor):
    # x < 2**32 held in int64: the product wraps modulo 2**64, and both 32-bit halves survive the wrap
    p = x * a
    return (p >> 32) & _MASK, p & _MASK


def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 (Salmon et al. 2011) on int64 tensors holding 32-bit words; returns the four output words."""
    for r in range(10):
        hi0, lo0 = _mulhilo(_M0, c0)
        hi1, lo1 = _mulhilo(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        if r < 9:
            k0, k1 = (k0 + _W0) & _MASK, (k1 + _W1) & _MASK
    return c0, c1, c2, c3


def philox_normal(seeds: torch.Tensor, offset: int, numel: int) -> torch.Tensor:
    """Standard normals (B, numel) from Philox4x32-10: sample b, element e use key = seeds[b] (two 32-bit halves)
    and counter = (e, 0, offset low, offset high); Box-Muller on the first two words, 24 bits each, so every
    backend computes the same uniforms exactly. A sample's noise depends only on its seed, offset and element."""
    seeds = seeds.to(torch.int64).reshape(-1, 1)
    k0, k1 = seeds & _MASK, (seeds >> 32) & _MASK
    e = torch.arange(numel, device=seeds.device, dtype=torch.int64).reshape(1, -1)
    c0, c1 = e.expand(seeds.shape[0], -1), torch.zeros_like(e).expand(seeds.shape[0], -1)
    c2 = torch.full_like(c0, offset & _MASK)
    c3 = torch.full_like(c0, (offset >> 32) & _MASK)
    c0, c1, _, _ = philox4x32(c0, c1, c2, c3, k0, k1)
    u1 = ((c0 >> 8) + 1).float() * 2.0**-24  # (0, 1]
    u2 = (c1 >> 8).float() * 2.0**-24        # [0, 1)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(6.2831855 * u2)
