"""An exact noise predictor for Gaussian data, for tests and the demo: no weights, no training.

For x0 ~ N(mean, std^2 I) and x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, the MMSE noise prediction is
E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) mean) / (std^2 abar + 1 - abar).
"""
from __future__ import annotations

from typing import Optional

import torch

from ..schedules import abar_table, linear_betas

__all__ = ["GaussianPriorEps"]


class GaussianPriorEps(torch.nn.Module):
    """``model(x_t, t) -> eps``, the exact E[eps | x_t] for data N(mean, std^2 I).

    Args:
        std: prior standard deviation (a float or a tensor broadcastable to the image).
        mean: prior mean image (broadcastable to the batch), default 0.
        betas: the schedule the model serves (default DDPM's linear one).
    """

    def __init__(self, std=1.0, mean: Optional[torch.Tensor] = None, betas: Optional[torch.Tensor] = None):
        super().__init__()
        std = torch.as_tensor(std, dtype=torch.float32)
        if not bool((std > 0).all()):
            raise ValueError("std must be > 0")
        betas = linear_betas() if betas is None else torch.as_tensor(betas)
        self.register_buffer("var", std**2)
        self.register_buffer("mean", torch.zeros(()) if mean is None else torch.as_tensor(mean, dtype=torch.float32))
        # abar(t) at index t + 1, computed in float64 for an accurate predictor
        self.register_buffer("abar", abar_table(betas.double()).float())

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.abar[t.long() + 1].reshape(-1, *([1] * (x_t.dim() - 1))).to(x_t.dtype)
        return (1 - a).sqrt() * (x_t - a.sqrt() * self.mean) / (self.var * a + 1 - a)
