"""The original's sampling loop (its functions/denoising.py ``efficient_generalized_steps``): the same random draws,
case tests and quirks, on the fused kernels and the sampler's timestep walk."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from .. import backends
from .. import operators as O
from ..diffusion import take_eps
from ..sampler.steps import build_step
from ..sampler.walk import Walk
from .functions import Colorization, Denoising, Inpainting, SuperResolution
from .noise import CompatNoise

__all__ = ["efficient_generalized_steps"]


def efficient_generalized_steps(x, seq, model, b, H_funcs, y_0, sigma_0, etaB, etaA, etaC, cls_fn=None,
                                classes=None, backend: str = "auto") -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """DDRM sampling exactly as the original ``efficient_generalized_steps`` computes it (same random draws, same
    case tests, same quirks), on any device and for any ``H_functions`` subclass, on the fused kernels.

    ``backend`` (the one addition to the original's signature): ``"auto"`` (the fastest available), ``"reference"``
    (plain PyTorch, the oracle), ``"cpu"``, ``"cuda"`` or ``"triton"``. The original's rank-one-per-group classes
    (Denoising, Inpainting, SuperResolution, Colorization, with etaA == etaC) take the one-pass group step, with the
    original's draws mapped into pixels by the class's own V; every other ``H_functions`` (the original's Deblurring,
    SRConv, WalshHadamardCS, GeneralH, a user's own subclass) takes the fused spectral step between its own V and V^T.

    Returns ``(xs, x0_preds)``: ``xs[0]`` is the initial state x_T and ``xs[i + 1]`` the state after step i;
    ``x0_preds[i]`` is step i's x0 prediction. Unlike the original, which copies every step to the CPU, the
    trajectory stays on ``x``'s device (one tensor per step, nothing moved or synchronised inside the loop); move
    ``xs[-1]`` yourself when you need it on the host. Sampling records no autograd history.
    """
    with torch.no_grad():
        kernels = backends.resolve(backend, x.device)
        batch, n, device = x.shape[0], x[0].numel(), x.device
        singulars = H_funcs.singulars().to(device)
        uty = H_funcs.Ut(y_0)
        m = uty.shape[1]
        if singulars.shape[0] != m:
            raise ValueError(f"H_funcs.singulars() has {singulars.shape[0]} values but H_funcs.Ut(y_0) has {m}")
        sigma_0 = float(sigma_0)
        walk = Walk.of(b, seq, device)  # the sampler's walk, abar in b's dtype as the original computes it
        coef = walk.coef
        sy = torch.full((1, 1), sigma_0, device=device)
        group_op = _group_operator(H_funcs, tuple(x.shape[1:])) if kernels.fused and etaA == etaC else None
        to_pixels = (lambda z: H_funcs.V(z).reshape(x.shape)) if group_op is not None else None  # noqa: E731
        noise = CompatNoise(singulars, sigma_0, coef[:, 2], batch, n, None, device, to_pixels)
        init_coef = walk.init_coef
        if group_op is not None:
            initial, advance = _group_steps(kernels, group_op.to(device), H_funcs, y_0, sy, init_coef, etaA, etaB)
        else:
            initial, advance = _spectral_steps(kernels, H_funcs, uty, singulars.reshape(1, m).to(uty.dtype), sy,
                                               init_coef, x.shape, etaA, etaB, etaC)
        xs = [initial(noise.initial(x))]
        x0_preds = []
        for i in range(len(walk.rev)):
            xt, t = xs[-1], walk.ts[i].expand(batch)
            if cls_fn is None:
                et = model(xt, t)
            else:
                et = model(xt, t, classes)[:, :3]
                # the original evaluates the classifier at x (the initial state), not at x_t; kept for equal results
                et = et - coef[i, 1] * cls_fn(xs[0], t, classes)
            et = take_eps(et, x.shape[1])
            x0_preds.append((xt - et * coef[i, 1]) / coef[i, 0])
            xs.append(advance(xt, et, noise.step(i), coef[i]))
    return xs, x0_preds


def _group_operator(H_funcs, image_shape) -> Optional[O.GroupOperator]:
    """The ddrm_fast operator with the H of one of the original's rank-one-per-group classes (exactly these classes:
    a subclass may have changed its transforms), whose one-pass step then serves it; else None."""
    kind = type(H_funcs)
    if kind is Denoising:
        return O.Denoise(image_shape)
    if kind is Inpainting:
        return O.Inpaint.from_missing_indices(torch.as_tensor(H_funcs.missing_indices).cpu(), image_shape)
    if kind is SuperResolution:
        return O.SuperRes(H_funcs.ratio, image_shape)
    if kind is Colorization and image_shape[0] == 3:
        return O.Colorize(image_shape, weights=H_funcs.weights)
    return None


def _group_steps(kernels, operator: O.GroupOperator, H_funcs, y_0, sy, init_coef, eta, eta_b):
    """(initial(z), advance(x_t, eps, z, coef)) by the sampler's one-pass group step, z the original's draw mapped
    into pixels."""
    # each group's measurement, through the class's own pseudo-inverse: its layout and signs need no knowing
    y = operator.Ut(operator.H(H_funcs.H_pinv(y_0).reshape(y_0.shape[0], *operator.image_shape))).contiguous()
    step = build_step(kernels, operator, y, sy, None, init_coef, owned=False)
    return step.initial, lambda xt, et, z, cf: step.advance(xt, et, z, cf, eta, eta_b, 0)


def _spectral_steps(kernels, H_funcs, uty, s, sy, init_coef, shape, eta_a, eta_b, eta_c):
    """(initial(z), advance(x_t, eps, z, coef)) by the fused spectral step between the class's own V^T and V."""
    def initial(z):
        zeros = torch.zeros(shape[0], z.shape[1], device=z.device)
        xbar = kernels.spectral_step(zeros, zeros, z, uty, s, sy, init_coef, 1.0, 1.0, 1.0, True)[0]
        return H_funcs.V(xbar).view(*shape)

    def advance(xt, et, z, cf):
        xbar = kernels.spectral_step(H_funcs.Vt(xt), H_funcs.Vt(et), z, uty, s, sy, cf, eta_a, eta_b, eta_c, True)[0]
        return H_funcs.V(xbar).view(*shape)

    return initial, advance
