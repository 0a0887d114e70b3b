"""The restoration tasks of the original DDRM runner, as data: one :class:`Task` record per ``--deg`` name, read by
``ddrm-fast restore`` (one image and folders), ``eval``, ``bench`` and the demo. A new task is one record.

Names and operators follow the original: ``deno``, ``inp`` (a random half of the pixels missing, or a given mask),
``sr2``/``sr4`` (block averaging), ``color``, ``deblur_uni`` (9-tap uniform), ``deblur_gauss`` (5-tap Gaussian, sigma
10), ``sr_bicubic4``, ``cs4`` (Walsh-Hadamard compressed sensing, ratio 4). Beyond the original, tasks that take
:class:`Options`: ``deblur`` (any 2-D kernel, circular boundary: ``operators.Convolution``), ``resize`` (downsizing by
any scale with a 1-D kernel: ``operators.Kronecker``) and ``color_sr4`` (a gray photo at a quarter of the size:
luma and 4x bicubic downsampling in one Kronecker operator).
Images are (C, H, W) in [-1, 1]; a noise level ``sigma`` in [0, 1] pixel units is 2 sigma here (as the original).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from . import operators as O

__all__ = ["Task", "TASKS", "REGISTRY", "Options", "get", "make_operator", "degrade", "measurement_from_observed",
           "measurement_view", "baseline", "task_divisor", "motion_kernel", "LUMA", "input_modes",
           "restored_size"]

Shape = Tuple[int, int, int]

#: ITU-R BT.601 luma, what a gray photo records of a colour scene (PIL's RGB -> L)
LUMA = (0.299, 0.587, 0.114)

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


def upsample(op: O.Resize, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """The low-res y enlarged with the 1-D kernel of the resize operator (``op.kernel_1d``) along rows and columns:
    the classical upsampling matching ``resize`` (gray y, from ``color_sr4``, spread over the three channels)."""
    c, h, w = op.y_shape
    big = op.image_shape
    up_h = O.resize_matrix(h, big[1], op.kernel_1d).float().to(y.device)
    up_w = O.resize_matrix(w, big[2], op.kernel_1d).float().to(y.device)
    out = up_h @ y.reshape(y.shape[0], c, h, w).float() @ up_w.t()
    return out.expand(-1, big[0], -1, -1).clamp(-1, 1)


@dataclass(frozen=True)
class Options:
    """What the tasks beyond the original's take: ``kernel`` (kh, kw), the blur of ``deblur`` (normalised to sum 1
    by :func:`ddrm_fast.imageio.read_kernel`); ``scale`` (> 1) and ``kernel_1d`` (box, bilinear, bicubic, lanczos3),
    the downsizing of ``resize``. The other tasks ignore them."""

    kernel: Optional[torch.Tensor] = None
    scale: float = 2.0
    kernel_1d: str = "bicubic"

    def __post_init__(self):
        if not (isinstance(self.scale, (int, float)) and self.scale >= 1):
            raise ValueError(f"scale must be a number >= 1, got {self.scale!r}")
        if self.kernel_1d not in O.KERNELS_1D:
            raise ValueError(f"kernel_1d must be one of {', '.join(O.KERNELS_1D)}, got {self.kernel_1d!r}")


@dataclass(frozen=True)
class Task:
    """One task: its operator for an image shape, and what an observed image (the measurement itself) means."""

    name: str
    #: what H and W must be divisible by (the ratio of super-resolution)
    divisor: int
    #: (image shape, mask (H, W) or (1|C, H, W) or None, generator, options) -> the operator
    operator: Callable[[Shape, Optional[torch.Tensor], Optional[torch.Generator], Options], O.LinearOperator]
    #: (an observed image (C, H, W), mask, options) -> (operator, y with a batch dimension); None: y is not an image
    from_observed: Optional[Callable[[torch.Tensor, Optional[torch.Tensor], Options], tuple]] = None
    #: what an observed image is, for the one-line error when it does not fit
    observed_means: str = "the degraded image"
    #: an observed image may be gray (mode L) as well as RGB
    gray_input: bool = False
    #: how much larger than an observed image its restoration is (default: the divisor, the ratio of SR)
    enlarges: Optional[Callable[[Options], float]] = None
    #: (operator, y of one image, pseudo-inverse) -> the measurement as a picture
    view: Callable[[O.LinearOperator, torch.Tensor, torch.Tensor], torch.Tensor] = lambda op, y, pinv: y
    #: (operator, y with a batch dimension, sigma) -> the classical restoration a user compares DDRM with
    baseline: Callable[[O.LinearOperator, torch.Tensor, float], torch.Tensor] = pseudo_inverse
    baseline_name: str = "pseudo-inverse"


def _gauss_kernel() -> torch.Tensor:
    x = torch.arange(-2, 3, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / 10) ** 2)
    return (k / k.sum()).float()


def _inpaint(shape: Shape, mask: Optional[torch.Tensor], generator, options=None) -> O.Inpaint:
    c, h, w = shape
    if mask is None:  # a random half of the pixels, all channels
        mask = (torch.rand(h, w, generator=generator) >= 0.5).float()
    mask = mask.float()
    if mask.dim() == 2:
        mask = mask[None]
    if mask.dim() != 3 or mask.shape[-2:] != (h, w) or mask.shape[0] not in (1, c):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the image ({c}, {h}, {w})")
    return O.Inpaint(mask[None], channels=c)


def _colorize(shape: Shape, mask, generator, options=None) -> O.Colorize:
    if shape[0] != 3:
        raise ValueError(f"task color needs a 3-channel image, got {shape[0]} channels")
    return O.Colorize(shape)


def _same(task: str):
    """from_observed of tasks whose y is an image of the restoration's size (deno, deblur_*)."""
    return lambda observed, mask, options: (get(task).operator(tuple(observed.shape), None, None, options),
                                            observed[None])


def _low_res(task: str, ratio: int):
    """from_observed of super-resolution: the restoration is ``ratio`` times larger."""
    def observe(observed, mask, options):
        c, h, w = observed.shape
        return get(task).operator((c, h * ratio, w * ratio), None, None, options), observed[None]
    return observe


def _observed_inpaint(observed, mask, options):
    if mask is None:
        raise ValueError("task inp with --observed needs --mask (white = observed pixels)")
    op = _inpaint(tuple(observed.shape), mask, None)
    return op, op.H(observed[None])


def _convolution(shape: Shape, mask, generator, options: Options) -> O.Convolution:
    if options.kernel is None:
        raise ValueError("task deblur needs a blur kernel (--kernel FILE: .npy or an image)")
    return O.Convolution(options.kernel, shape)


def _low_size(size: int, scale: float) -> int:
    return max(1, round(size / scale))


def _resize(shape: Shape, mask, generator, options: Options, out: Optional[Tuple[int, int]] = None) -> O.Resize:
    c, h, w = shape
    return O.Resize(shape, out or (_low_size(h, options.scale), _low_size(w, options.scale)), options.kernel_1d)


def _observed_resize(observed, mask, options: Options):
    c, h, w = observed.shape  # the restoration is scale times larger (rounded): y keeps the observed size
    return _resize((c, round(h * options.scale), round(w * options.scale)), None, None, options, (h, w)), observed[None]


def _color_sr(shape: Shape, mask, generator, options=None) -> O.Resize:
    if shape[0] != 3:
        raise ValueError(f"task color_sr4 needs a 3-channel image, got {shape[0]} channels")
    c, h, w = shape
    return O.Resize(shape, (h // 4, w // 4), "bicubic", A_c=[list(LUMA)])


def _observed_gray_low_res(observed, mask, options):
    gray = (observed * torch.tensor(LUMA).view(3, 1, 1)).sum(0, keepdim=True) if observed.shape[0] == 3 else observed
    c, h, w = gray.shape
    return _color_sr((3, 4 * h, 4 * w), None, None), gray[None]


def motion_kernel(length: int = 9, angle: float = 30.0, size: Optional[int] = None) -> torch.Tensor:
    """A linear motion blur: a line of ``length`` pixels at ``angle`` degrees (counter-clockwise from the x axis),
    drawn with anti-aliasing (each of 16 sub-steps per pixel shares its weight bilinearly) in a ``size`` x ``size``
    kernel (default: the smallest odd size holding it), normalised to sum 1. Not separable for angles other than
    multiples of 90 degrees."""
    size = size or (2 * math.ceil(length / 2) + 1)
    k = torch.zeros(size, size, dtype=torch.float64)
    c, a = (size - 1) / 2, math.radians(angle)
    for t in torch.linspace(-(length - 1) / 2, (length - 1) / 2, 16 * length).tolist():
        x, y = c + t * math.cos(a), c - t * math.sin(a)
        x0, y0 = math.floor(x), math.floor(y)
        for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
            wgt = (1 - abs(x - x0 - dx)) * (1 - abs(y - y0 - dy))
            if 0 <= y0 + dy < size and 0 <= x0 + dx < size:
                k[y0 + dy, x0 + dx] += wgt
    return (k / k.sum()).float()


def _observed_gray(observed, mask, options):
    # a gray image g (any channel count, equal channels) is H applied to (g, g, g): sum(weights) * g
    op = O.Colorize((3, *observed.shape[1:]))
    return op, (observed.mean(0, keepdim=True) * op.weights.sum())[None]


REGISTRY: Dict[str, Task] = {t.name: t for t in (
    Task("deno", 1, lambda shape, mask, g, o: O.Denoise(shape), _same("deno"), observed_means="the noisy image"),
    Task("inp", 1, _inpaint, _observed_inpaint, observed_means="the image with its missing pixels (and --mask)"),
    Task("sr2", 2, lambda shape, mask, g, o: O.SuperRes(2, shape), _low_res("sr2", 2), baseline=bicubic,
         baseline_name="bicubic", observed_means="the low-resolution image (the result is 2x larger)"),
    Task("sr4", 4, lambda shape, mask, g, o: O.SuperRes(4, shape), _low_res("sr4", 4), baseline=bicubic,
         baseline_name="bicubic", observed_means="the low-resolution image (the result is 4x larger)"),
    Task("color", 1, _colorize, _observed_gray, view=lambda op, y, pinv: (y / op.weights.sum()).expand(3, -1, -1),
         observed_means="the gray image", gray_input=True),
    Task("deblur_uni", 1, lambda shape, mask, g, o: O.Blur([1 / 9] * 9, shape), _same("deblur_uni"),
         baseline=wiener, baseline_name="Wiener", observed_means="the blurred image"),
    Task("deblur_gauss", 1, lambda shape, mask, g, o: O.Blur(_gauss_kernel(), shape), _same("deblur_gauss"),
         baseline=wiener, baseline_name="Wiener", observed_means="the blurred image"),
    Task("sr_bicubic4", 4, lambda shape, mask, g, o: O.SRBicubic(4, shape), _low_res("sr_bicubic4", 4),
         baseline=bicubic, baseline_name="bicubic",
         observed_means="the low-resolution image (the result is 4x larger)"),
    Task("cs4", 1, lambda shape, mask, g, o: O.WalshHadamardCS(4, shape), view=lambda op, y, pinv: pinv),
    Task("deblur", 1, _convolution, _same("deblur"), baseline=wiener, baseline_name="Wiener",
         observed_means="the blurred image (blurred by --kernel)"),
    Task("resize", 1, _resize, _observed_resize, baseline=upsample, baseline_name="upsampled",
         observed_means="the small image (the result is --scale times larger)", enlarges=lambda o: o.scale),
    Task("color_sr4", 4, _color_sr, _observed_gray_low_res, baseline=upsample, baseline_name="gray upsampled",
         view=lambda op, y, pinv: y.expand(3, -1, -1),
         observed_means="the gray low-resolution image (the result is in colour and 4x larger)", gray_input=True),
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


def input_modes(task: str, observed: bool) -> Tuple[str, ...]:
    """The image modes an input file of ``task`` may have: RGB, or gray too for an observed colourisation."""
    return ("L", "RGB") if observed and get(task).gray_input else ("RGB",)


def restored_size(task: str, height: int, width: int, observed: bool,
                  options: Optional[Options] = None) -> Tuple[int, int]:
    """(H, W) of the restoration of an input of ``height`` x ``width``: the same for a clean input; for an observed
    one, as much larger as the task enlarges (its ratio, or the scale of ``resize``)."""
    if not observed:
        return height, width
    record = get(task)
    factor = record.enlarges(options or Options()) if record.enlarges else record.divisor
    return round(height * factor), round(width * factor)


def make_operator(task: str, image_shape: Sequence[int], mask: Optional[torch.Tensor] = None,
                  generator: Optional[torch.Generator] = None, options: Optional[Options] = None) -> O.LinearOperator:
    """The operator of ``task`` for images of ``image_shape`` (C, H, W).

    ``mask`` (H, W) or (1|C, H, W), nonzero = observed, is used by ``inp``; without one, a random half of the pixels
    (all channels) is missing, drawn from ``generator``. ``options``: the kernel of ``deblur``, the scale and 1-D
    kernel of ``resize``.
    """
    record = get(task)
    shape = tuple(int(v) for v in image_shape)
    if shape[1] % record.divisor or shape[2] % record.divisor:
        raise ValueError(f"task {task}: image size {shape[1]}x{shape[2]} is not divisible by the ratio "
                         f"{record.divisor}")
    return record.operator(shape, mask, generator, options or Options())


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


def measurement_from_observed(task: str, observed: torch.Tensor, mask: Optional[torch.Tensor] = None,
                              options: Optional[Options] = None):
    """(operator, y) when the input file is the measurement itself: a noisy image (deno), a masked image plus its
    mask (inp), a low-res image (sr2, sr4, sr_bicubic4: the restoration is ratio times larger; resize: scale times),
    a gray image (color; color_sr4: gray and low-res), a blurred image (deblur_*, deblur). ``observed`` is (C, H, W)
    in [-1, 1]; returns y with a batch dimension."""
    record = get(task)
    if record.from_observed is None:
        raise ValueError(f"task {task}: its measurement is not an image; give the clean image instead (without "
                         f"--observed)")
    return record.from_observed(observed, mask, options or Options())


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
