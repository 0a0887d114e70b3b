"""The original DDRM's random draws for ``ddrm_sample(noise="compat")``: its draws in its order and shapes, mapped
into the basis of the ddrm_fast operator with the same H (:func:`equivalent`), so the same seed gives the original's
numbers. The sampler loads this module when ``noise="compat"`` is first asked for (:data:`ddrm_fast.sampler.noise.
NOISE_SOURCES`), so it does not depend on it being imported."""
from __future__ import annotations

import functools
from typing import Callable, List, Optional, Sequence

import torch

from .. import operators as O
from .._utils import Generator, randn
from ..sampler.source import NoiseRequest
from .functions import Colorization, Denoising, H_functions, Inpainting, SuperResolution

__all__ = ["CompatNoise", "equivalent", "compat_noise"]


class CompatNoise:
    """The original DDRM's draws, in its order and shapes, expressed in another operator's spectral layout.

    Per step the original draws (B, N) for case 3, (B, #case 2) for case 2, then (B, m) whose case-1 entries it
    uses. Case memberships depend only on the singular values and scalars, so they are found once, on the host,
    before the loop. ``to_layout`` maps a spectral vector of the original's basis to the layout the step consumes
    (None: the original's own).
    """

    seeds = None

    def __init__(self, singulars: torch.Tensor, sigma_0: float, sigma_next: torch.Tensor, batch: int, n: int,
                 generator: Generator, device, to_layout: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 image_shape: Optional[Sequence[int]] = None):
        s = singulars.detach().to("cpu", torch.float32).reshape(-1)
        self.m = s.numel()
        self.batch, self.n, self.generator, self.device = batch, n, generator, device
        self.to_layout = to_layout
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.after: List[torch.Tensor] = []
        self.before: List[torch.Tensor] = []
        for sn in sigma_next.detach().to("cpu", torch.float32):
            self.after.append(torch.nonzero(s * sn < sigma_0).flatten().to(device))
            self.before.append(torch.nonzero(s * sn > sigma_0).flatten().to(device))

    def _map(self, zc: torch.Tensor) -> torch.Tensor:
        return zc if self.to_layout is None else self.to_layout(zc)

    def initial(self, x_T: Optional[torch.Tensor] = None) -> torch.Tensor:
        if x_T is None:  # the original's caller draws torch.randn(B, C, H, W) first
            x_T = randn((self.batch, *self.image_shape), self.generator, device=self.device)
        return self._map(x_T.reshape(self.batch, self.n))

    def step(self, i: int) -> torch.Tensor:
        b = self.batch
        after, before = self.after[i], self.before[i]
        z = randn((b, self.n), self.generator, device=self.device)
        z_after = randn((b, after.numel()), self.generator, device=self.device)
        z_meas = randn((b, self.m), self.generator, device=self.device)
        z = z.index_copy(1, after, z_after).index_copy(1, before, z_meas.index_select(1, before))
        return self._map(z)


@functools.singledispatch
def equivalent(operator: O.LinearOperator) -> Optional[H_functions]:
    """The original DDRM's operator with the same H as a ddrm_fast operator, or None: the spectral basis
    ``noise='compat'`` takes the original's draws from."""
    return None


@equivalent.register
def _(operator: O.Denoise):
    c, h, w = operator.image_shape
    return Denoising(c, h, operator.device) if h == w else None


@equivalent.register
def _(operator: O.Inpaint):
    c, h, w = operator.image_shape
    if h != w or operator.observed.shape[0] != 1:
        return None
    missing = operator.missing_order
    if missing is None:  # the original indexes pixels pixel-major: index = pixel * C + channel
        pixel_major = operator.observed[0].reshape(c, h * w).t().reshape(-1)
        missing = torch.nonzero(pixel_major == 0).flatten()
    return Inpainting(c, h, missing.to(operator.device), operator.device)


@equivalent.register
def _(operator: O.SuperRes):
    c, h, w = operator.image_shape
    return SuperResolution(c, h, operator.ratio, operator.device) if h == w and operator.observed is None else None


@equivalent.register
def _(operator: O.Colorize):
    c, h, w = operator.image_shape
    if h != w or c != 3 or operator.observed is not None:
        return None
    return Colorization(h, operator.device, weights=operator.weights.tolist())


def compat_noise(request: NoiseRequest) -> CompatNoise:
    """``noise='compat'``: the original's draws mapped into the layout the sampler's step consumes."""
    operator = request.operator
    legacy = equivalent(operator)
    if legacy is None:
        raise ValueError(f"noise='compat': {operator!r} has no equivalent in the original DDRM code")
    if request.sigma_y.numel() != 1:
        raise ValueError("noise='compat' needs a scalar sigma_y (the original has one noise level)")
    layout = tuple(request.shape)
    if len(layout) == 4:  # image-layout noise (group operators)
        to_layout = lambda z: legacy.V(z).reshape(layout)  # noqa: E731
    else:
        to_layout = lambda z: operator.Vt(legacy.V(z))  # noqa: E731
    return CompatNoise(legacy.singulars(), float(request.sigma_y), request.sigma_next, layout[0], operator.n,
                       request.generator, request.device, to_layout, operator.image_shape)
