"""Plain-PyTorch DDRM math: the oracle every fused kernel is tested against (spec: "DDRM sampling").

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

__all__ = ["step_coefficients", "initial_spectral", "spectral_step"]


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


def initial_spectral(z: torch.Tensor, uty: torch.Tensor, s: torch.Tensor, sigma_y: torch.Tensor,
                     sigma_T: torch.Tensor, legacy_zero_singulars: bool = False) -> torch.Tensor:
    """xbar_T (B, N): (ybar + sqrt(sigma_T^2 - sigma_y^2/s^2) z) / sigma_T where s sigma_T > sigma_y, else z."""
    m = uty.shape[1]
    zh = z[:, :m]
    large = _measured(s, legacy_zero_singulars) & (s * sigma_T > sigma_y)
    ss = _safe(s)
    rem = (sigma_T**2 - (sigma_y / ss) ** 2).clamp_min(0).sqrt()
    head = torch.where(large, (uty / ss + rem * zh) / sigma_T, zh)
    return torch.cat([head, z[:, m:]], dim=1)


def spectral_step(xbar: torch.Tensor, epsbar: torch.Tensor, z: torch.Tensor, uty: torch.Tensor, s: torch.Tensor,
                  sigma_y: torch.Tensor, coef: torch.Tensor, eta: float, eta_b: float,
                  eta_c: Optional[float] = None,
                  legacy_zero_singulars: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """One DDRM step in spectral space, fused with the x0 prediction.

    Args:
        xbar, epsbar, z: V^T x_t, V^T eps and the step's noise, (B, N).
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
    x0bar = (xbar - sq1m * epsbar) / sqa
    # case 3 (unmeasured, or sigma' s = sigma_y): DDIM in this coordinate
    new = x0bar + (1 - eta_c * eta_c) ** 0.5 * sn * epsbar + eta_c * sn * z
    m = uty.shape[1]
    x0h, zh = x0bar[:, :m], z[:, :m]
    measured = _measured(s, legacy_zero_singulars)
    s_sn = s * sn
    ss = _safe(s)
    # case 1, noisier than y: pull toward ybar = U^T y / s
    new1 = eta_b * (uty / ss) + (1 - eta_b) * x0h + (sn**2 - (eta_b * sigma_y / ss) ** 2).clamp_min(0).sqrt() * zh
    # case 2, less noisy than y: move along the residual, scaled by s / sigma_y
    new2 = x0h + (1 - eta * eta) ** 0.5 * sn * (uty - s * x0h) / _safe(sigma_y) + eta * sn * zh
    head = torch.where(measured & (s_sn > sigma_y), new1,
                       torch.where(measured & (s_sn < sigma_y), new2, new[:, :m]))
    return sqan * torch.cat([head, new[:, m:]], dim=1), x0bar
