"""Image quality, one definition each: :func:`psnr` of float images (the sampler's outputs, before quantisation) and
:func:`psnr_ssim` of the 8-bit images that are written (scikit-image's, as papers report them)."""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import torch

from .imageio import to_uint8

__all__ = ["psnr", "psnr_ssim"]


def psnr(estimate: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR (dB) of ``estimate`` (clamped to [-1, 1], as it would be written) against ``target``, images in [-1, 1]
    (peak-to-peak 2); inf when they are equal."""
    mse = float(((estimate.float().clamp(-1, 1) - target.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


def psnr_ssim(restored: torch.Tensor, clean: torch.Tensor) -> Tuple[float, float]:
    """PSNR (dB) and SSIM of two (C, H, W) images in [-1, 1], computed by scikit-image on their 8-bit versions
    (what is written to disk), SSIM with its default 7x7 window over the channels."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = to_uint8(restored), to_uint8(clean)
    with np.errstate(divide="ignore"):  # equal images: inf dB, not a warning on the user's terminal
        psnr = peak_signal_noise_ratio(b, a, data_range=255)
    ssim = structural_similarity(b, a, data_range=255, channel_axis=2 if a.ndim == 3 else None)
    return float(psnr), float(ssim)
