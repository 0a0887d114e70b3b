"""The original runner's degradations (its runners/diffusion.py), by its ``--deg`` names, as a table of records: each
builds the ``H_functions`` the original builds, drawing from torch's global generator where the original does. A new
degradation is one record of :data:`DEGRADATIONS`; :func:`runner_operator` and :func:`check_runner_degradation` read
the table."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch

from .functions import (Colorization, Deblurring, Deblurring2D, Denoising, H_functions, Inpainting, SRConv,
                        SuperResolution, WalshHadamardCS)

__all__ = ["Degradation", "DEGRADATIONS", "runner_operator", "check_runner_degradation", "find_degradation"]


def _bicubic_kernel(factor: int) -> torch.Tensor:
    """The original's bicubic downsampling kernel (a = -0.5, 4 * factor taps), normalised, float32."""
    def cubic(x: float, a: float = -0.5) -> float:
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        if x < 2:
            return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
        return 0.0

    taps = torch.tensor([cubic((i - (factor * 4) // 2 + 0.5) / factor) for i in range(factor * 4)],
                        dtype=torch.float64)
    return (taps / taps.sum()).float()


def _gaussian_taps(sigma: float, half: int) -> torch.Tensor:
    """exp(-x^2 / (2 sigma^2)) at x = -half..half, float32 (normalised by the caller, as the original does)."""
    return torch.tensor([math.exp(-0.5 * (x / sigma) ** 2) for x in range(-half, half + 1)], dtype=torch.float32)


def _inpainting(channels: int, s: int, device, mask: Optional[torch.Tensor], random_half: bool) -> Inpainting:
    """The original's pixel-major missing indices: a random half of the pixels (``inp``), or a mask file's zeros."""
    if random_half:
        missing_r = torch.randperm(s**2)[: s**2 // 2].to(device).long() * 3
    else:
        missing_r = torch.nonzero(mask.to(device).reshape(-1) == 0).long().reshape(-1) * 3
    missing = torch.cat([missing_r, missing_r + 1, missing_r + 2], dim=0)
    return Inpainting(channels, s, missing, device)


def _deblur_gauss(channels: int, s: int, device) -> Deblurring:
    kernel = _gaussian_taps(10, 2).to(device)
    return Deblurring(kernel / kernel.sum(), channels, s, device)


def _deblur_aniso(channels: int, s: int, device) -> Deblurring2D:
    k2, k1 = _gaussian_taps(20, 4).to(device), _gaussian_taps(1, 4).to(device)
    return Deblurring2D(k1 / k1.sum(), k2 / k2.sum(), channels, s, device)


def _sr_bicubic(channels: int, s: int, device, factor: int) -> SRConv:
    kernel = _bicubic_kernel(factor).to(device)
    return SRConv(kernel / kernel.sum(), channels, s, device, stride=factor)


#: (channels, image size, device, N of the name or None, mask or None) -> the original's operator
Build = Callable[[int, int, object, Optional[int], Optional[torch.Tensor]], H_functions]


@dataclass(frozen=True)
class Degradation:
    """One ``--deg`` of the original runner: its name (``N`` at the end stands for a positive integer: ``sr4``,
    ``cs2``), how to build its operator, and whether it needs a mask file."""

    name: str
    build: Build
    needs_mask: bool = False


DEGRADATIONS: Tuple[Degradation, ...] = (
    Degradation("deno", lambda c, s, dev, n, mask: Denoising(c, s, dev)),
    Degradation("inp", lambda c, s, dev, n, mask: _inpainting(c, s, dev, None, random_half=True)),
    Degradation("inp_lolcat", lambda c, s, dev, n, mask: _inpainting(c, s, dev, mask, False), needs_mask=True),
    Degradation("inp_lorem", lambda c, s, dev, n, mask: _inpainting(c, s, dev, mask, False), needs_mask=True),
    Degradation("srN", lambda c, s, dev, n, mask: SuperResolution(c, s, n, dev)),
    Degradation("sr_bicubicN", lambda c, s, dev, n, mask: _sr_bicubic(c, s, dev, n)),
    Degradation("deblur_uni", lambda c, s, dev, n, mask: Deblurring(torch.tensor([1 / 9] * 9, device=dev), c, s, dev)),
    Degradation("deblur_gauss", lambda c, s, dev, n, mask: _deblur_gauss(c, s, dev)),
    Degradation("deblur_aniso", lambda c, s, dev, n, mask: _deblur_aniso(c, s, dev)),
    Degradation("color", lambda c, s, dev, n, mask: Colorization(s, dev)),
    Degradation("csN", lambda c, s, dev, n, mask: WalshHadamardCS(c, s, n, torch.randperm(s**2, device=dev), dev)),
)


def find_degradation(deg: str) -> Tuple[Optional[Degradation], Optional[int]]:
    """(the record, N) of ``deg``: an exact name, or a name ending in N with a positive integer in its place (no
    leading zero, as the original's parser); (None, None) for anything else."""
    for record in DEGRADATIONS:
        if record.name == deg:
            return record, None
        prefix = record.name[:-1]
        if record.name.endswith("N") and deg.startswith(prefix):
            digits = deg[len(prefix):]
            if digits.isdigit() and digits.isascii() and digits[0] != "0":
                return record, int(digits)
    return None, None


def check_runner_degradation(deg: str, mask_given: bool) -> None:
    """A ValueError unless ``deg`` is one of the original runner's --deg values (with its mask when it needs one)."""
    record, _ = find_degradation(deg)
    if record is None:
        names = ", ".join(r.name for r in DEGRADATIONS)
        raise ValueError(f"--deg {deg!r}: not a degradation of the original runner ({names})")
    if record.needs_mask and not mask_given:
        raise ValueError(f"--deg {deg} needs its mask file (--mask)")


def runner_operator(deg: str, channels: int, image_size: int, device, mask: Optional[torch.Tensor] = None):
    """The ``H_functions`` the original runner builds for ``--deg`` (see :data:`DEGRADATIONS`), drawing from torch's
    global generator where the original does (the random half of the pixels of ``inp``, the permutation of ``csN``).
    ``mask`` (image_size^2 values, 0 = missing) is the mask file of ``inp_lolcat`` / ``inp_lorem``."""
    check_runner_degradation(deg, mask is not None)
    record, n = find_degradation(deg)
    return record.build(channels, image_size, device, n, mask)
