"""The DDRM step of the sampling loop, built once per call from a backend and an operator (docs/ddrm.md):

- the one-pass group step (fused backends, rank-one-per-group operators): x_t and eps in, x_{t'} out, in pixel
  space, no V ever formed;
- the spectral step between the operator's own V^T and V (every other case, and every operator on the reference).

Either way ``initial(z)`` makes x_T (a step from x = eps = 0 with the initial coefficients) and ``advance(x, eps, z,
coef, eta, eta_b, offset)`` takes one step; ``z`` None means the kernels generate the noise from the seeds.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch

from .. import reference
from ..backends import Backend
from ..operators.base import LinearOperator
from ..operators.group import GroupOperator
from .noise import INIT_OFFSET

__all__ = ["Step", "build_step"]


class Step(NamedTuple):
    initial: Callable[[Optional[torch.Tensor]], torch.Tensor]
    advance: Callable[..., torch.Tensor]
    #: what a captured graph bakes in of the operator, the objects whose identity that key holds, and the operator
    #: tensors a graph reads as inputs (copied in on replay)
    graph_key: tuple
    owners: tuple
    graph_inputs: dict


def build_step(backend: Backend, operator: LinearOperator, uty: torch.Tensor, sigma_y: torch.Tensor,
               seeds: Optional[torch.Tensor], init_coef: torch.Tensor, owned: bool, clip_x0: bool = False) -> Step:
    """The step for ``operator`` on ``backend``; ``uty`` (B, m) and ``sigma_y`` are read at every step. ``owned``:
    the operator's tensors are copied (a captured graph reads them as inputs). ``clip_x0``: x0 clamped to [-1, 1]
    with eps consistent with it, inside the one-pass step, or in pixel space before V^T on the spectral path."""
    if isinstance(operator, GroupOperator) and backend.fused:
        return _group_step(backend, operator, uty, sigma_y, seeds, init_coef, owned, clip_x0)
    return _spectral_step(backend, operator, uty, sigma_y, seeds, init_coef, clip_x0)


def _group_step(backend, operator: GroupOperator, uty, sigma_y, seeds, init_coef, owned: bool, clip_x0: bool) -> Step:
    device = uty.device
    obs = operator.observed.to(device) if operator.observed is not None else None
    k = operator.weights.to(device)
    if owned:  # the step reads nothing else of the operator: a graph serves any operator of this structure
        obs, k = (None if obs is None else obs.clone()), k.clone()
    image = (uty.shape[0], *operator.image_shape)

    def advance(x, eps, z, cf, eta, eta_b, offset, clip=clip_x0):
        return backend.group_step(x, eps, uty, k, obs, sigma_y, cf, z, seeds, offset, operator.group_shape, eta,
                                  eta_b, False, clip)[0]

    def initial(z):  # x_t and eps are zero: their buffer lives for this call only
        zeros = torch.zeros(image, device=device)
        return advance(zeros, zeros, z, init_coef, 1.0, 1.0, INIT_OFFSET, clip=False)

    key = (type(operator).__name__, operator.image_shape, tuple(operator.group_shape),
           None if obs is None else tuple(obs.shape))
    return Step(initial, advance, key, (), {"k": k, "obs": obs})


def _spectral_step(backend, operator: LinearOperator, uty, sigma_y, seeds, init_coef, clip_x0: bool) -> Step:
    device, batch = uty.device, uty.shape[0]
    image = (batch, *operator.image_shape)
    s = operator.singulars().to(device).float().reshape(-1, operator.m)
    grouped = isinstance(operator, GroupOperator)

    def noise(z, offset):
        # group operators draw image-layout noise (that of the one-pass step), taken to the spectral layout here
        if z is None and grouped:
            z = reference.philox_normal(seeds, offset, operator.n).reshape(image)
        return operator.Vt(z) if grouped else z

    def spectral(xbar, epsbar, z, cf, eta, eta_b, offset):  # the transforms run in float32 whatever eps' dtype
        return operator.V(backend.spectral_step(xbar, epsbar, noise(z, offset), uty, s, sigma_y, cf, eta, eta_b,
                                                eta, False, seeds, offset)[0]).reshape(image)

    def advance(x, eps, z, cf, eta, eta_b, offset):
        if clip_x0:  # in pixel space: the eps of the clamped x0
            eps = reference.clipped_prediction(x, eps, cf, True)[1]
        return spectral(operator.Vt(x), operator.Vt(eps.float()), z, cf, eta, eta_b, offset)

    def initial(z):
        zeros = torch.zeros(batch, operator.n, device=device)
        return spectral(zeros, zeros, z, init_coef, 1.0, 1.0, INIT_OFFSET)

    # V, V^T and the singular values are baked into a captured graph: one per operator object
    return Step(initial, advance, (id(operator),), (operator,), {})
