"""The posterior's mean and spread: K DDRM samples of one measurement, streamed in chunks.

DDRM samples the posterior p(x | y) (approximately: docs/ddrm.md, "Posterior statistics"); one sample is one
plausible image, and the per-pixel mean and standard deviation of many say what the measurement pins down and what
the model invents. Samples are merged chunk by chunk with Welford's (Chan's) update, so memory holds one chunk, not
K images; sample k draws its noise from its own generator, seeded once from the caller's, so the result does not
depend on the chunk size.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Union

import torch

from .._utils import Model
from ..operators.base import LinearOperator
from .ddrm import ddrm_sample

__all__ = ["posterior", "Posterior", "sample_seeds"]


class Posterior(NamedTuple):
    """Per-pixel statistics of K samples, each (1, C, H, W) float32 on the measurement's device."""

    mean: torch.Tensor
    #: the sample standard deviation (K - 1 in the denominator)
    std: torch.Tensor
    samples: int


def sample_seeds(samples: int, generator: Optional[torch.Generator]) -> list:
    """One 62-bit seed per sample, drawn at once from ``generator`` (torch's global one when None)."""
    return [int(v) for v in torch.randint(0, 2**62, (samples,), generator=generator)]


def _rows(value, n: int, y_shape) -> Union[float, torch.Tensor]:
    """sigma_y for n rows: a float stays; a tensor of one sample ((), (1,), y's shape or (1, *y's shape)) repeats."""
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        return value
    if value.dim() == 1 and value.numel() == 1:
        return value.expand(n)
    if tuple(value.shape) == tuple(y_shape):
        value = value[None]
    if value.shape[0] != 1:
        raise ValueError(f"sigma_y must be one measurement's noise level (a number, or a map of shape "
                         f"{tuple(y_shape)}), got shape {tuple(value.shape)}")
    return value.expand(n, *value.shape[1:])


def posterior(model: Model, y: torch.Tensor, operator: LinearOperator, sigma_y, *, samples: int,
              chunk: Optional[int] = None, generator: Optional[torch.Generator] = None,
              sampler: Optional[Callable] = None, **kwargs) -> Posterior:
    """The per-pixel mean and standard deviation of ``samples`` DDRM samples of one measurement ``y``.

    Args:
        model, operator: as :func:`ddrm_fast.ddrm_sample`.
        y: one measurement, (1, *operator.y_shape) or (*operator.y_shape) (or flat).
        sigma_y: its noise std in y's units: a float or one map of y's shape.
        samples: K >= 2.
        chunk: samples per sampler call (default min(K, 8)); memory holds one chunk, and the result does not depend
            on it (each sample has its own random stream).
        generator: the seeds of the K streams are drawn from it (torch's global generator when None).
        sampler: a stand-in for :func:`ddrm_fast.ddrm_sample` with its signature (tests, benchmarks).
        **kwargs: the other keywords of :func:`ddrm_fast.ddrm_sample` (steps, eta, backend, ...); not ``x_T``.

    Returns:
        :class:`Posterior`: mean and std, (1, C, H, W) float32.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ValueError(f"samples must be an integer >= 2 (a standard deviation needs two), got {samples!r}")
    chunk = min(samples, 8) if chunk is None else chunk
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    if "x_T" in kwargs:
        raise ValueError("x_T: each posterior sample draws its own initial state; not accepted here")
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if tuple(y.shape) in (tuple(operator.y_shape), (operator.m,)):
        y = y[None]
    if y.shape[0] != 1:
        raise ValueError(f"y must be one measurement (batch 1), got batch {y.shape[0]}")
    sampler = sampler or ddrm_sample
    seeds = sample_seeds(samples, generator)
    count, mean, m2 = 0, None, None
    with torch.no_grad():
        for start in range(0, samples, chunk):
            n = min(chunk, samples - start)
            gens = [torch.Generator().manual_seed(s) for s in seeds[start:start + n]]
            x = sampler(model, y.expand(n, *y.shape[1:]), operator, _rows(sigma_y, n, operator.y_shape),
                        generator=gens, **kwargs).double()
            # Chan et al.'s pairwise update: merge this chunk's mean and sum of squares into the running ones
            c_mean = x.mean(0, keepdim=True)
            c_m2 = ((x - c_mean) ** 2).sum(0, keepdim=True)
            if mean is None:
                mean, m2 = c_mean, c_m2
            else:
                delta = c_mean - mean
                total = count + n
                mean = mean + delta * (n / total)
                m2 = m2 + c_m2 + delta**2 * (count * n / total)
            count += n
            del x
    return Posterior(mean.float(), (m2 / (count - 1)).sqrt().float(), count)
