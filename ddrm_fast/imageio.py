"""Image files in and out: PNG/JPEG to float tensors in [-1, 1] and back, with atomic writes."""
from __future__ import annotations

import os
from typing import Sequence, Tuple

import numpy as np
import torch

__all__ = ["read_image", "read_mask", "to_uint8", "write_png", "psnr_ssim"]


def read_image(path: str, modes: Sequence[str] = ("RGB",), what: str = "input") -> torch.Tensor:
    """The image at ``path`` as float32 (C, H, W) in [-1, 1]; its mode must be one of ``modes`` ("RGB", "L").

    Raises ValueError with a one-line reason for a missing, unreadable or wrong-mode file.
    """
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise ValueError(f"{what} {path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode not in modes:
                raise ValueError(f"{what} {path}: image mode {mode} is not supported here (expected "
                                 f"{' or '.join(modes)})")
            a = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{what} {path}: not a readable image ({exc})") from None
    a = a[..., None] if a.ndim == 2 else a
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 127.5 - 1


def read_mask(path: str, size: Tuple[int, int]) -> torch.Tensor:
    """An inpainting mask file as float32 (H, W): 1 where any channel is nonzero (observed), else 0.

    ``size`` is the image's (H, W); a mask of another size is a ValueError naming both.
    """
    m = read_image(path, ("L", "1", "RGB"), what="mask")
    if tuple(m.shape[-2:]) != tuple(size):
        raise ValueError(f"mask {path}: size {m.shape[2]}x{m.shape[1]} does not match the image's "
                         f"{size[1]}x{size[0]}")
    return (m.amax(0) > -1).float()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W, C) uint8, rounded (C = 1 gives (H, W))."""
    a = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return a[..., 0] if a.shape[2] == 1 else a


def write_png(x: torch.Tensor, path: str) -> None:
    """Write (C, H, W) in [-1, 1] as PNG, atomically: a temporary name in the same folder, then a rename."""
    from PIL import Image

    tmp = f"{path}.tmp{os.getpid()}.png"
    try:
        Image.fromarray(to_uint8(x)).save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def psnr_ssim(restored: torch.Tensor, clean: torch.Tensor) -> Tuple[float, float]:
    """PSNR (dB) and SSIM of two (C, H, W) images in [-1, 1], computed by scikit-image on their 8-bit versions
    (what is written to disk), SSIM with its default 7x7 window over the channels."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = to_uint8(restored), to_uint8(clean)
    psnr = peak_signal_noise_ratio(b, a, data_range=255)
    ssim = structural_similarity(b, a, data_range=255, channel_axis=2 if a.ndim == 3 else None)
    return float(psnr), float(ssim)
