"""Noise schedules of DDPM/DDRM and the timestep sequence DDRM walks.

Conventions (docs/ddrm.md, "The schedule"): ``betas[t]`` for t = 0..T-1; ``abar(t) = prod_{s<=t} (1 - beta_s)``,
with the extra value ``abar(-1) = 1`` that DDRM uses after the last step. :func:`abar_table` returns the table
shifted by one so that ``table[t + 1] == abar(t)`` for every t in -1..T-1.
"""
from __future__ import annotations

import math
from typing import List

import torch

__all__ = ["linear_betas", "cosine_betas", "abar_table", "ddrm_timesteps", "get_betas", "runner_betas", "MAX_TIMESTEPS"]

#: the longest schedule a file (a checkpoint's metadata, a diffusers scheduler, a runner config) may declare: real
#: ones have 1000 to 4000 steps; the bound keeps a crafted file from allocating gigabytes
MAX_TIMESTEPS = 100_000


def linear_betas(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear schedule, computed in float64 and returned as float32 (as the original DDRM does)."""
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}")
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64).float()


def cosine_betas(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021): abar(t) = f(t)/f(0), f(t) = cos(((t/T + s)/(1 + s)) pi/2)^2.

    betas are 1 - abar(t+1)/abar(t), clipped at ``max_beta`` to avoid the singularity at t = T; float64, then float32.
    """
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
    if not 0.0 < max_beta < 1.0:
        raise ValueError(f"max_beta must lie in (0, 1), got {max_beta}")

    def f(t: float) -> float:
        return math.cos((t / num_timesteps + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - f(i + 1) / f(i), max_beta) for i in range(num_timesteps)]
    return torch.tensor(betas, dtype=torch.float64).float()


def get_betas(name: str, num_timesteps: int = 1000) -> torch.Tensor:
    """Schedule by name: ``"linear"`` or ``"cosine"``."""
    if name == "linear":
        return linear_betas(num_timesteps)
    if name == "cosine":
        return cosine_betas(num_timesteps)
    raise ValueError(f"schedule must be 'linear' or 'cosine', got {name!r}")


def runner_betas(beta_schedule: str, beta_start: float, beta_end: float, num_diffusion_timesteps: int) -> torch.Tensor:
    """The betas of an original DDRM/DDIM config's ``diffusion`` section (``linear``, ``quad``, ``const``, ``jsd``,
    ``sigmoid``), computed in float64 and returned as float32 as the original runner does."""
    n = int(num_diffusion_timesteps)
    if not 1 <= n <= MAX_TIMESTEPS:
        raise ValueError(f"num_diffusion_timesteps must lie in [1, {MAX_TIMESTEPS}], got {num_diffusion_timesteps}")
    start, end = float(beta_start), float(beta_end)
    if beta_schedule == "linear":
        betas = torch.linspace(start, end, n, dtype=torch.float64)
    elif beta_schedule == "quad":
        betas = torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2
    elif beta_schedule == "const":
        betas = torch.full((n,), end, dtype=torch.float64)
    elif beta_schedule == "jsd":  # 1/T, 1/(T-1), ..., 1
        betas = 1.0 / torch.linspace(n, 1, n, dtype=torch.float64)
    elif beta_schedule == "sigmoid":
        betas = torch.sigmoid(torch.linspace(-6, 6, n, dtype=torch.float64)) * (end - start) + start
    else:
        raise ValueError(f"beta_schedule must be linear, quad, const, jsd or sigmoid, got {beta_schedule!r}")
    return betas.float()


def abar_table(betas: torch.Tensor) -> torch.Tensor:
    """``cumprod(1 - [0, betas])`` in the dtype of ``betas``: entry t + 1 is abar(t), entry 0 is abar(-1) = 1.

    This is the exact float arithmetic of the original DDRM ``compute_alpha``, done once instead of every step.
    """
    if betas.dim() != 1 or betas.numel() == 0:
        raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
    if not torch.is_floating_point(betas):
        raise ValueError(f"betas must be floating point, got {betas.dtype}")
    return (1 - torch.cat([betas.new_zeros(1), betas])).cumprod(dim=0)


def ddrm_timesteps(steps: int, num_timesteps: int = 1000) -> List[int]:
    """DDRM's (and DDIM's uniform) sequence ``range(0, T, T // steps)``, walked from the last to the first."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if steps > num_timesteps:
        raise ValueError(f"steps ({steps}) cannot exceed the number of diffusion timesteps ({num_timesteps})")
    return list(range(0, num_timesteps, num_timesteps // steps))
