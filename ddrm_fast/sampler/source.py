"""What a noise source of the sampler is (:class:`NoiseSource`) and what it is given (:class:`NoiseRequest`): the
interface between the sampler and the sources, in a module of its own so that a source written elsewhere (the
original's draws, :mod:`ddrm_fast.compat.noise`) depends on it and not on the sampler."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

import torch

from .._utils import Generator
from ..operators.base import LinearOperator

__all__ = ["NoiseSource", "NoiseRequest"]


class NoiseSource(Protocol):
    """What the sampler asks of a noise source."""

    #: per-sample Philox keys (B,) int64 the kernels generate from when a draw is None, else None
    seeds: Optional[torch.Tensor]

    def initial(self, x_T: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        """The initial draw (``x_T``: the caller's, (B, C, H, W), read in this source's layout)."""

    def step(self, i: int) -> Optional[torch.Tensor]:
        """Step i's draw."""


@dataclass
class NoiseRequest:
    """What a factory of :data:`NOISE_SOURCES` is given."""

    operator: LinearOperator
    shape: Sequence[int]  # the layout the step consumes: (B, C, H, W) or (B, N)
    generator: Generator
    device: torch.device
    sigma_y: torch.Tensor  # (1|B, 1|m)
    sigma_next: torch.Tensor  # sigma_{t'} of every step
