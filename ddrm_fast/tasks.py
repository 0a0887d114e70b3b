"""The restoration tasks of the original DDRM runner, by name: operator, degradation and the measurement itself.

Names and operators follow the original's ``--deg`` values: ``deno``, ``inp`` (random half of the pixels missing, or a
given mask), ``sr2``/``sr4`` (block averaging), ``color``, ``deblur_uni`` (9-tap uniform), ``deblur_gauss`` (5-tap
Gaussian, sigma 10), ``sr_bicubic4``, ``cs4`` (Walsh-Hadamard compressed sensing, ratio 4).
Images are (C, H, W) in [-1, 1]; a noise level ``sigma`` in [0, 1] pixel units is 2 sigma here (as the original).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from . import operators as O

__all__ = ["TASKS", "make_operator", "degrade", "measurement_from_observed", "measurement_view", "task_divisor"]

TASKS = ("deno", "inp", "sr2", "sr4", "color", "deblur_uni", "deblur_gauss", "sr_bicubic4", "cs4")


def task_divisor(task: str) -> int:
    """What H and W must be divisible by for ``task``."""
    return {"sr2": 2, "sr4": 4, "sr_bicubic4": 4}.get(task, 1)


def _gauss_kernel() -> torch.Tensor:
    x = torch.arange(-2, 3, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / 10) ** 2)
    return (k / k.sum()).float()


def make_operator(task: str, image_shape: Sequence[int], mask: Optional[torch.Tensor] = None,
                  generator: Optional[torch.Generator] = None) -> O.LinearOperator:
    """The operator of ``task`` for images of ``image_shape`` (C, H, W).

    ``mask`` (H, W) or (1|C, H, W), nonzero = observed, is used by ``inp``; without one, a random half of the pixels
    (all channels) is missing, drawn from ``generator``.
    """
    c, h, w = (int(v) for v in image_shape)
    shape = (c, h, w)
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    d = task_divisor(task)
    if h % d or w % d:
        raise ValueError(f"task {task}: image size {h}x{w} is not divisible by the ratio {d}")
    if task == "deno":
        return O.Denoise(shape)
    if task == "inp":
        if mask is None:
            mask = (torch.rand(h, w, generator=generator) >= 0.5).float()
        mask = mask.float()
        if mask.dim() == 2:
            mask = mask[None]
        if mask.dim() != 3 or mask.shape[-2:] != (h, w) or mask.shape[0] not in (1, c):
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the image ({c}, {h}, {w})")
        return O.Inpaint(mask[None], channels=c)
    if task in ("sr2", "sr4"):
        return O.SuperRes(d, shape)
    if task == "color":
        if c != 3:
            raise ValueError(f"task color needs a 3-channel image, got {c} channels")
        return O.Colorize(shape)
    if task == "deblur_uni":
        return O.Blur([1 / 9] * 9, shape)
    if task == "deblur_gauss":
        return O.Blur(_gauss_kernel(), shape)
    if task == "sr_bicubic4":
        return O.SRBicubic(4, shape)
    return O.WalshHadamardCS(4, shape)


def degrade(x: torch.Tensor, operator: O.LinearOperator, sigma: Union[float, torch.Tensor],
            generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """y = H x + sigma z for a batch x (B, C, H, W) in [-1, 1]; ``sigma`` in [-1, 1] units: a float, or a tensor
    broadcastable to y (a per-pixel noise map). Unmeasured entries of y stay zero, as H leaves them."""
    y = operator.H(x)
    if isinstance(sigma, torch.Tensor) or sigma > 0:
        y = y + sigma * torch.randn(y.shape, generator=generator).to(y.device)
        observed = getattr(operator, "observed", None)
        if observed is not None:
            y = y * observed.reshape(-1, *y.shape[1:]).to(y.dtype)
    return y


def measurement_from_observed(task: str, observed: torch.Tensor, mask: Optional[torch.Tensor] = None):
    """(operator, y) when the input file is the measurement itself: a noisy image (deno), a masked image plus its
    mask (inp), a low-res image (sr2, sr4, sr_bicubic4: the restoration is ratio times larger), a gray image (color),
    a blurred image (deblur_*). ``observed`` is (C, H, W) in [-1, 1]; returns y with a batch dimension."""
    c, h, w = observed.shape
    if task == "cs4":
        raise ValueError("task cs4: a compressed-sensing measurement is not an image; give the clean image instead "
                         "(without --observed)")
    if task in ("sr2", "sr4", "sr_bicubic4"):
        r = task_divisor(task)
        return make_operator(task, (c, h * r, w * r)), observed[None]
    if task == "color":
        op = O.Colorize((3, h, w))
        # a gray image g (any channel count, equal channels) is H applied to (g, g, g): sum(weights) * g
        return op, (observed.mean(0, keepdim=True) * op.weights.sum())[None]
    if task == "inp":
        if mask is None:
            raise ValueError("task inp with --observed needs --mask (white = observed pixels)")
        op = make_operator(task, (c, h, w), mask)
        return op, op.H(observed[None])
    return make_operator(task, (c, h, w)), observed[None]


def measurement_view(task: str, operator: O.LinearOperator, y: torch.Tensor, pinv: torch.Tensor) -> torch.Tensor:
    """The measurement of one image (y without its batch dimension) as a picture: y itself where it is an image
    (noisy, masked with zeros where missing, low-res, blurred), the gray image for color, else the pseudo-inverse."""
    if task in ("deno", "inp", "sr2", "sr4", "sr_bicubic4", "deblur_uni", "deblur_gauss"):
        return y
    if task == "color":
        return (y / operator.weights.sum()).expand(3, -1, -1)
    return pinv
