"""One restoration pipeline, in the shape of deepinv's ``physics(x) -> model(y, physics) -> metric``: measure an image,
restore it, score it against the task's classical baseline. ``ddrm-fast restore`` (one image and folders), ``bench``
and ``benchmarks/eval_quality.py`` all run it (``ddrm-fast original`` keeps the original's own measurement: its
operators and its global generator's draws, which it reproduces).

- :func:`measure` makes a :class:`Measurement` from a clean image (degraded here: y = H x + noise) or an observed one
  (the measurement itself), with a mask and a per-pixel noise map, all randomness from the image's own seed.
- :func:`stack` puts measurements of one task and size into one batch (per-image masks and noise levels).
- :func:`restore` samples a batch with DDRM as :class:`Settings` say (or K samples of one measurement, averaged);
  :func:`posterior` gives the per-pixel mean and standard deviation of K samples; :func:`restore_image` does all of
  it for one image, as the command line and the web page show it.
- :func:`baseline`, :func:`view` and :func:`score`: the classical restoration a user compares with (bicubic,
  Wiener, the pseudo-inverse), the measurement as a picture, and PSNR/SSIM of both against the clean image.
"""
from __future__ import annotations

import copy
import functools
import time
from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from . import operators as O
from . import tasks
from .metrics import psnr_ssim
from .sampler import Posterior, ddrm_sample
from .sampler import posterior as sample_posterior
from ._utils import Model

__all__ = ["Settings", "Measurement", "measure", "stack", "restore", "posterior", "restore_image", "Restored",
           "baseline", "view", "score", "Scores",
           "model_divisor", "check_size"]


@dataclass(frozen=True)
class Settings:
    """How DDRM restores: its steps and etas, the backend, and how the network runs. Built once (the command line's
    ``cli.options.settings``) and passed whole; :meth:`sampler_kwargs` are the ``ddrm_sample`` keywords."""

    steps: int = 20
    eta: float = 0.85
    eta_b: float = 1.0
    backend: str = "auto"
    clip_x0: bool = False
    noise: str = "torch"
    model_dtype: Optional[torch.dtype] = None
    channels_last: bool = False
    compile: Union[bool, str] = False
    cuda_graph: bool = False
    progress: bool = False

    def sampler_kwargs(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Measurement:
    """One image measured: ``y = H x + z`` and what restoring and scoring it need."""

    task: str
    operator: O.LinearOperator
    #: (1, *operator.y_shape)
    y: torch.Tensor
    #: the noise std in [-1, 1] units: a float, or a per-pixel map of y's shape (*y_shape)
    sigma: Union[float, torch.Tensor]
    #: the clean image (C, H, W) when the input was one (None: the input was the measurement)
    clean: Optional[torch.Tensor]
    #: the noise level as given, [0, 1] pixel units, and the image's seed (for labels and records)
    sigma_y: float
    seed: int
    #: the image's generator state after measuring: its sampler noise continues this stream
    state: torch.Tensor

    def generator(self) -> torch.Generator:
        """A fresh generator where the image's stream stands after measuring (a retried batch draws the same)."""
        g = torch.Generator()
        g.set_state(self.state)
        return g


def measure(task: str, image: torch.Tensor, *, sigma_y: float, seed: int, observed: bool = False,
            mask: Optional[torch.Tensor] = None, noise_map: Optional[torch.Tensor] = None,
            options: Optional[tasks.Options] = None) -> Measurement:
    """Measure ``image`` (C, H, W) in [-1, 1] for ``task``. A clean image is degraded: the operator (an inpainting
    mask, when none is given, drawn), then the noise of std ``sigma_y`` (pixel units; or ``noise_map``, y's spatial
    shape, per pixel), all from a generator seeded with ``seed``; an ``observed`` image is the measurement itself.
    ``options``: the blur kernel of ``deblur``, the scale and 1-D kernel of ``resize`` (:class:`tasks.Options`)."""
    g = torch.Generator().manual_seed(seed)
    if observed:
        op, y = tasks.measurement_from_observed(task, image, mask, options)
        clean = None
    else:
        op = tasks.make_operator(task, image.shape, mask, generator=g, options=options)
        clean, y = image, None
    sigma: Union[float, torch.Tensor] = 2 * float(sigma_y)  # [0, 1] pixel units -> [-1, 1] image units
    if noise_map is not None:
        if not op.identity_U:
            raise ValueError(f"a per-pixel noise map needs a task whose measurements are pixels; not {task}")
        try:
            sigma = 2 * torch.broadcast_to(noise_map, op.y_shape).clone()
        except RuntimeError:
            raise ValueError(f"noise map of shape {tuple(noise_map.shape)} does not fit y's shape "
                             f"{op.y_shape}") from None
    if y is None:  # the same draws for one image and for a folder: a given seed gives the same restoration
        y = tasks.degrade(clean[None], op, sigma, g)
    return Measurement(task, op, y, sigma, clean, float(sigma_y), int(seed), g.get_state())


def stack(measurements: Sequence[Measurement]) -> Tuple[O.LinearOperator, torch.Tensor, torch.Tensor]:
    """(operator, y, sigma) of one batch of measurements of one task and size: per-image masks stacked for
    inpainting, else the (shared) first operator; sigma (B,) or, with any noise map, (B, *y_shape)."""
    first = measurements[0]
    op = first.operator
    if first.task == "inp":
        c, h, w = op.image_shape
        masks = torch.stack([m.operator.observed.reshape(-1, c, h, w)[0] for m in measurements])
        op = O.Inpaint(masks, channels=c)
    y = torch.cat([m.y for m in measurements])
    sigmas = [torch.as_tensor(m.sigma, dtype=torch.float32) for m in measurements]
    if all(s.dim() == 0 for s in sigmas):
        return op, y, torch.stack(sigmas)
    return op, y, torch.stack([torch.broadcast_to(s, op.y_shape) for s in sigmas])  # scalars spread over the maps


def restore(model: Model, betas: torch.Tensor, measurements: Sequence[Measurement], settings: Settings,
            device: Union[str, torch.device] = "cpu", samples: int = 1,
            sampler: Optional[Callable] = None) -> torch.Tensor:
    """The DDRM restorations (B, C, H, W), on the CPU, of a batch of measurements (:func:`stack`), each image's
    noise from its own stream. With ``samples`` K > 1 (one measurement): the mean of K samples of the same y
    (:func:`posterior`), an estimate of the posterior mean. ``sampler``: a stand-in for
    :func:`ddrm_fast.ddrm_sample` with its signature (tests, benchmarks)."""
    if samples > 1:
        if len(measurements) != 1:
            raise ValueError("samples > 1 averages the samples of one measurement")
        # a sample's squared error is the posterior mean's plus the posterior variance; the mean of K samples keeps
        # 1/K of that variance (benchmarks/RESULTS.md, "Rotations, and the mean of two samples")
        return posterior(model, betas, measurements[0], settings, device, samples, sampler=sampler).mean
    device, sampler = torch.device(device), sampler or ddrm_sample
    op, y, sigma = stack(measurements)
    generator = [m.generator() for m in measurements] if len(measurements) > 1 else measurements[0].generator()
    with torch.no_grad():  # a copy of the operator moves: the measurement's stays where it is, for its baseline
        sigma = sigma.to(device) if isinstance(sigma, torch.Tensor) else sigma
        x = sampler(model, y.to(device), copy.copy(op).to(device), sigma, schedule=betas.float(),
                    generator=generator, **settings.sampler_kwargs())
    return x.cpu()


def posterior(model: Model, betas: torch.Tensor, m: Measurement, settings: Settings,
              device: Union[str, torch.device] = "cpu", samples: int = 8, chunk: Optional[int] = None,
              sampler: Optional[Callable] = None) -> Posterior:
    """The per-pixel mean and standard deviation (on the CPU) of K DDRM samples of ``m``
    (:func:`ddrm_fast.posterior`): the seeds of the K streams come from the image's own stream, so a given seed
    gives the same statistics whatever the chunk."""
    device = torch.device(device)
    sigma = m.sigma.to(device) if isinstance(m.sigma, torch.Tensor) else m.sigma
    stats = sample_posterior(model, m.y.to(device), copy.copy(m.operator).to(device), sigma, samples=samples,
                             chunk=chunk, generator=m.generator(), sampler=sampler, schedule=betas.float(),
                             **settings.sampler_kwargs())
    return Posterior(stats.mean.cpu(), stats.std.cpu(), stats.samples)


class Restored(NamedTuple):
    """One image restored, with everything shown beside it (what ``ddrm-fast restore`` writes and the web page
    shows): images are (C, H, W) on the CPU."""

    restored: torch.Tensor
    #: the per-pixel standard deviation of the K samples (None for one sample)
    std: Optional[torch.Tensor]
    baseline_name: str
    baseline: torch.Tensor
    #: the measurement as a picture
    degraded: torch.Tensor
    #: PSNR/SSIM of DDRM and of the baseline (None when the input was the measurement itself)
    scores: Optional["Scores"]
    samples: int
    seconds: float


def restore_image(model: Model, betas: torch.Tensor, m: Measurement, settings: Settings,
                  device: Union[str, torch.device] = "cpu", samples: int = 1,
                  callback: Optional[Callable[[dict], None]] = None) -> Restored:
    """Restore one measurement as the command line and the web page do: one sample, or with ``samples`` K > 1 the
    mean and standard deviation of K (:func:`posterior`); its baseline, its picture and the scores. ``callback`` is
    called after every DDRM step (``ddrm_sample``'s), for progress or to cancel by raising."""
    sampler = None if callback is None else functools.partial(ddrm_sample, callback=callback)
    t0 = time.perf_counter()
    if samples > 1:  # K samples of one y, each with its own stream: their mean and per-pixel spread
        stats = posterior(model, betas, m, settings, device, samples, sampler=sampler)
        restored, std = stats.mean[0], stats.std[0]
    else:
        restored, std = restore(model, betas, [m], settings, device, sampler=sampler)[0], None
    seconds = time.perf_counter() - t0
    base = baseline(m)
    return Restored(restored, std, base[0], base[1], view(m), score(m, restored, base), samples, seconds)


def baseline(m: Measurement) -> Tuple[str, torch.Tensor]:
    """(name, image (C, H, W)) of the task's classical restoration of ``m`` (:func:`ddrm_fast.tasks.baseline`)."""
    name, images = tasks.baseline(m.task, m.operator, m.y, m.sigma)
    return name, images[0]


def view(m: Measurement) -> torch.Tensor:
    """The measurement as a picture (:func:`ddrm_fast.tasks.measurement_view`)."""
    return tasks.measurement_view(m.task, m.operator, m.y[0], m.operator.H_pinv(m.y)[0])


class Scores(NamedTuple):
    """PSNR (dB) and SSIM of DDRM's restoration and of the task's baseline against the clean image (scikit-image's,
    on the 8-bit images that are written)."""

    psnr: float
    ssim: float
    baseline: str
    psnr_baseline: float
    ssim_baseline: float


def score(m: Measurement, restored: torch.Tensor, base: Optional[Tuple[str, torch.Tensor]] = None) -> Optional[Scores]:
    """The :class:`Scores` of ``restored`` (C, H, W) and of the baseline (``base``, or computed) against ``m``'s clean
    image; None when the input was the measurement itself."""
    if m.clean is None:
        return None
    name, image = base if base is not None else baseline(m)
    return Scores(*psnr_ssim(restored, m.clean), name, *psnr_ssim(image, m.clean))


def model_divisor(model: Model) -> int:
    """What the sides of an image must be multiples of for ``model`` (its depth; 1 for a model that does not say)."""
    return int(getattr(model, "divisor", 1))


def check_size(divisor: int, height: int, width: int) -> None:
    """A ValueError unless an image of ``height`` x ``width`` suits a model of this :func:`model_divisor`."""
    if height % divisor or width % divisor:
        raise ValueError(f"image size {width}x{height}: this model needs sides that are multiples of {divisor}")
