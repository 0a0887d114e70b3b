"""The timesteps DDRM walks, t -> t', and their scalars on the device, computed once per call: the sampler's loop and
the original's loop (:func:`ddrm_fast.compat.efficient_generalized_steps`) both walk with it."""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from .. import reference
from ..schedules import abar_table

__all__ = ["Walk"]


class Walk(NamedTuple):
    """The timesteps walked (t -> t') and their scalars on the device: coef (steps, 4) = [sqrt(abar_t),
    sqrt(1 - abar_t), sigma_{t'}, sqrt(abar_{t'})], the initial draw's coefficients, and t as floats."""

    rev: list
    rev_next: list
    coef: torch.Tensor
    init_coef: torch.Tensor
    ts: torch.Tensor

    @classmethod
    def of(cls, betas: torch.Tensor, seq: Sequence[int], device) -> "Walk":
        """The walk over ``seq`` (ascending timesteps) down to -1; abar in the dtype of ``betas`` (the original
        computes it in its betas' dtype)."""
        seq = list(seq)
        rev, rev_next = list(reversed(seq)), list(reversed([-1] + seq[:-1]))
        coef, sigma_T = reference.step_coefficients(abar_table(betas), rev, rev_next)
        coef, sigma_T = coef.to(device), sigma_T.to(device)
        return cls(rev, rev_next, coef, reference.initial_coefficients(sigma_T),
                   torch.tensor(rev, dtype=torch.float32, device=device))
