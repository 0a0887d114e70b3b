"""Noise sources of the sampler: per step, standard normal noise in the layout the step consumes (image layout for
the one-pass group step, spectral (B, N) otherwise), or None where the kernels generate it themselves from per-sample
``seeds`` (docs/ddrm.md, "Noise").

A source follows :class:`NoiseSource`; :data:`NOISE_SOURCES` maps ``ddrm_sample``'s ``noise=`` names to factories
(``"compat"``, the original's draws, loads :mod:`ddrm_fast.compat.noise` on first use), and :func:`register_noise`
adds one.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch

from .._utils import Generator, randn
from .source import NoiseRequest, NoiseSource

__all__ = ["TorchNoise", "PhiloxNoise", "philox_seeds", "NOISE_SOURCES",
           "register_noise", "make_noise", "INIT_OFFSET"]

INIT_OFFSET = 1 << 32  # Philox counter offset of the initial draw; step i uses offset i


class TorchNoise:
    """Noise from torch's generators, drawn in the step's layout."""

    seeds = None

    def __init__(self, request: NoiseRequest):
        self.shape, self.generator, self.device = tuple(request.shape), request.generator, request.device

    def initial(self, x_T: Optional[torch.Tensor] = None) -> torch.Tensor:
        return x_T.reshape(self.shape) if x_T is not None else randn(self.shape, self.generator, device=self.device)

    def step(self, i: int) -> torch.Tensor:
        return randn(self.shape, self.generator, device=self.device)


class PhiloxNoise:
    """Counter-based noise generated inside the steps from one 62-bit key per sample: sample b's draws depend only
    on seeds[b] and the step, never on the batch around it (the reference materialises the same numbers)."""

    def __init__(self, request: NoiseRequest):
        self.shape = tuple(request.shape)
        self.seeds = philox_seeds(request.generator, self.shape[0], request.device)

    def initial(self, x_T: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        return None if x_T is None else x_T.reshape(self.shape)

    def step(self, i: int) -> None:
        return None


def philox_seeds(generator: Generator, batch: int, device) -> torch.Tensor:
    """Per-sample 62-bit Philox keys: one from each per-sample generator (batch-independent), else B from the one
    generator (or torch's global one)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        seeds = torch.cat([torch.randint(0, 2**62, (1,), generator=g, device=g.device).cpu() for g in generator])
    elif generator is not None:
        seeds = torch.randint(0, 2**62, (batch,), generator=generator, device=generator.device).cpu()
    else:
        seeds = torch.randint(0, 2**62, (batch,))
    return seeds.to(device)


def _compat(request: NoiseRequest) -> NoiseSource:
    """The original DDRM's draws (:mod:`ddrm_fast.compat.noise`), loaded on first use: the sampler needs nothing of
    the drop-in unless asked for it."""
    from ..compat.noise import compat_noise

    return compat_noise(request)


NOISE_SOURCES: Dict[str, Callable[[NoiseRequest], NoiseSource]] = {"torch": TorchNoise, "philox": PhiloxNoise,
                                                                    "compat": _compat}


def register_noise(name: str, factory: Callable[[NoiseRequest], NoiseSource]) -> None:
    """Make ``ddrm_sample(noise=name)`` draw from ``factory(request)``."""
    NOISE_SOURCES[name] = factory


def make_noise(name: str, request: NoiseRequest) -> NoiseSource:
    return NOISE_SOURCES[name](request)
