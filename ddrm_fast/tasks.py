"""The restoration tasks of the original DDRM runner, as data: one :class:`Task` record per ``--deg`` name, read by
``ddrm-fast restore`` (one image and folders), ``eval``, ``bench`` and the demo. A new task is one record.

Names and operators follow the original: ``deno``, ``inp`` (a random half of the pixels missing, or a given mask),
``sr2``/``sr4`` (block averaging), ``color``, ``deblur_uni`` (9-tap uniform), ``deblur_gauss`` (5-tap Gaussian, sigma
10), ``sr_bicubic4``, ``cs4`` (Walsh-Hadamard compressed sensing, ratio 4).
Images are (C, H, W) in [-1, 1]; a noise level ``sigma`` in [0, 1] pixel units is 2 sigma here (as the original).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from . import operators as O

__all__ = ["Task", "TASKS", "REGISTRY", "get", "make_operator", "degrade", "measurement_from_observed",
           "measurement_view", "baseline", "task_divisor"]

Shape = Tuple[int, int, int]

#: the prior standard deviation of an image coordinate in [-1, 1] units assumed by the Wiener baseline
WIENER_SIGNAL_STD = 0.5


def pseudo_inverse(op: O.LinearOperator, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """The pseudo-inverse V S^+ U^T y: the baseline of every task without a better-known classical one."""
    return op.H_pinv(y)


def bicubic(op: O.LinearOperator, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """Bicubic upsampling of the low-res image y to the operator's image size: the super-resolution baseline."""
    y = y.reshape(y.shape[0], *op.y_shape)
    return F.interpolate(y.float(), size=op.image_shape[1:], mode="bicubic", align_corners=False).clamp(-1, 1)


def wiener(op: O.LinearOperator, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """Wiener deconvolution with a white prior of std WIENER_SIGNAL_STD, in the operator's singular basis:
    V diag(s / (s^2 + (sigma / std)^2)) U^T y (the pseudo-inverse when sigma = 0): the deblurring baseline."""
    uty, s = op.Ut(y), op.singulars()
    gain = torch.where(s > 0, s / (s * s + (sigma / WIENER_SIGNAL_STD) ** 2), torch.zeros_like(s))  # 0/0 -> 0
    return op.V(op.add_zeros(uty * gain)).reshape(uty.shape[0], *op.image_shape)


@dataclass(frozen=True)
class Task:
    """One task: its operator for an image shape, and what an observed image (the measurement itself) means."""

    name: str
    #: what H and W must be divisible by (the ratio of super-resolution)
    divisor: int
    #: (image shape, mask (H, W) or (1|C, H, W) or None, generator) -> the operator
    operator: Callable[[Shape, Optional[torch.Tensor], Optional[torch.Generator]], O.LinearOperator]
    #: an observed image (C, H, W) and mask -> (operator, y with a batch dimension); None: y is not an image
    from_observed: Optional[Callable[[torch.Tensor, Optional[torch.Tensor]], tuple]] = None
    #: (operator, y of one image, pseudo-inverse) -> the measurement as a picture
    view: Callable[[O.LinearOperator, torch.Tensor, torch.Tensor], torch.Tensor] = lambda op, y, pinv: y
    #: (operator, y with a batch dimension, sigma) -> the classical restoration a user compares DDRM with
    baseline: Callable[[O.LinearOperator, torch.Tensor, float], torch.Tensor] = pseudo_inverse
    baseline_name: str = "pseudo-inverse"


def _gauss_kernel() -> torch.Tensor:
    x = torch.arange(-2, 3, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / 10) ** 2)
    return (k / k.sum()).float()


def _inpaint(shape: Shape, mask: Optional[torch.Tensor], generator) -> O.Inpaint:
    c, h, w = shape
    if mask is None:  # a random half of the pixels, all channels
        mask = (torch.rand(h, w, generator=generator) >= 0.5).float()
    mask = mask.float()
    if mask.dim() == 2:
        mask = mask[None]
    if mask.dim() != 3 or mask.shape[-2:] != (h, w) or mask.shape[0] not in (1, c):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the image ({c}, {h}, {w})")
    return O.Inpaint(mask[None], channels=c)


def _colorize(shape: Shape, mask, generator) -> O.Colorize:
    if shape[0] != 3:
        raise ValueError(f"task color needs a 3-channel image, got {shape[0]} channels")
    return O.Colorize(shape)


def _same(task: str):
    """from_observed of tasks whose y is an image of the restoration's size (deno, deblur_*)."""
    return lambda observed, mask: (get(task).operator(tuple(observed.shape), None, None), observed[None])


def _low_res(task: str, ratio: int):
    """from_observed of super-resolution: the restoration is ``ratio`` times larger."""
    def observe(observed, mask):
        c, h, w = observed.shape
        return get(task).operator((c, h * ratio, w * ratio), None, None), observed[None]
    return observe


def _observed_inpaint(observed, mask):
    if mask is None:
        raise ValueError("task inp with --observed needs --mask (white = observed pixels)")
    op = _inpaint(tuple(observed.shape), mask, None)
    return op, op.H(observed[None])


def _observed_gray(observed, mask):
    # a gray image g (any channel count, equal channels) is H applied to (g, g, g): sum(weights) * g
    op = O.Colorize((3, *observed.shape[1:]))
    return op, (observed.mean(0, keepdim=True) * op.weights.sum())[None]


REGISTRY: Dict[str, Task] = {t.name: t for t in (
    Task("deno", 1, lambda shape, mask, g: O.Denoise(shape), _same("deno")),
    Task("inp", 1, _inpaint, _observed_inpaint),
    Task("sr2", 2, lambda shape, mask, g: O.SuperRes(2, shape), _low_res("sr2", 2), baseline=bicubic,
         baseline_name="bicubic"),
    Task("sr4", 4, lambda shape, mask, g: O.SuperRes(4, shape), _low_res("sr4", 4), baseline=bicubic,
         baseline_name="bicubic"),
    Task("color", 1, _colorize, _observed_gray, view=lambda op, y, pinv: (y / op.weights.sum()).expand(3, -1, -1)),
    Task("deblur_uni", 1, lambda shape, mask, g: O.Blur([1 / 9] * 9, shape), _same("deblur_uni"), baseline=wiener,
         baseline_name="Wiener"),
    Task("deblur_gauss", 1, lambda shape, mask, g: O.Blur(_gauss_kernel(), shape), _same("deblur_gauss"),
         baseline=wiener, baseline_name="Wiener"),
    Task("sr_bicubic4", 4, lambda shape, mask, g: O.SRBicubic(4, shape), _low_res("sr_bicubic4", 4),
         baseline=bicubic, baseline_name="bicubic"),
    Task("cs4", 1, lambda shape, mask, g: O.WalshHadamardCS(4, shape), view=lambda op, y, pinv: pinv),
)}
TASKS = tuple(REGISTRY)


def get(task: str) -> Task:
    """The record of ``task``; a ValueError lists the known names."""
    if task not in REGISTRY:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    return REGISTRY[task]


def task_divisor(task: str) -> int:
    """What H and W must be divisible by for ``task``."""
    return get(task).divisor


def make_operator(task: str, image_shape: Sequence[int], mask: Optional[torch.Tensor] = None,
                  generator: Optional[torch.Generator] = None) -> O.LinearOperator:
    """The operator of ``task`` for images of ``image_shape`` (C, H, W).

    ``mask`` (H, W) or (1|C, H, W), nonzero = observed, is used by ``inp``; without one, a random half of the pixels
    (all channels) is missing, drawn from ``generator``.
    """
    record = get(task)
    shape = tuple(int(v) for v in image_shape)
    if shape[1] % record.divisor or shape[2] % record.divisor:
        raise ValueError(f"task {task}: image size {shape[1]}x{shape[2]} is not divisible by the ratio "
                         f"{record.divisor}")
    return record.operator(shape, mask, generator)


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
    record = get(task)
    if record.from_observed is None:
        raise ValueError(f"task {task}: its measurement is not an image; give the clean image instead (without "
                         f"--observed)")
    return record.from_observed(observed, mask)


def measurement_view(task: str, operator: O.LinearOperator, y: torch.Tensor, pinv: torch.Tensor) -> torch.Tensor:
    """The measurement of one image (y without its batch dimension) as a picture: y itself where it is an image
    (noisy, masked with zeros where missing, low-res, blurred), the gray image for color, else the pseudo-inverse."""
    return get(task).view(operator, y, pinv)


def baseline(task: str, operator: O.LinearOperator, y: torch.Tensor,
             sigma: Union[float, torch.Tensor]) -> Tuple[str, torch.Tensor]:
    """(name, images) of the classical restoration a user compares DDRM with for ``task``: bicubic upsampling for
    super-resolution, Wiener deconvolution for deblurring, the pseudo-inverse otherwise. ``y`` has a batch
    dimension; ``sigma`` is its noise std in [-1, 1] units (a per-pixel map counts as its root mean square)."""
    record = get(task)
    if isinstance(sigma, torch.Tensor):
        sigma = float(sigma.float().pow(2).mean().sqrt())
    return record.baseline_name, record.baseline(operator, y, float(sigma))
