"""Side-by-side comparison figures: the clean image, the measurement, the classical baseline and DDRM in one row,
each captioned with its PSNR/SSIM against the clean image (what `make demo` and `ddrm-fast restore --compare`
write)."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .imageio import to_uint8, write_png_uint8
from .metrics import psnr_ssim

__all__ = ["Panel", "comparison_panels", "render", "write_comparison"]

#: (title, image (C, H, W) in [-1, 1], caption under the title or None)
Panel = Tuple[str, torch.Tensor, Optional[str]]

_PAD, _TEXT = 6, 30  # pixels between panels; caption band under them (two lines of PIL's default font)


def full_size(view: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """A measurement picture shown at the restoration's size: a low-res y is enlarged by pixel replication (nearest),
    so that its pixels stay visible as such."""
    if tuple(view.shape[-2:]) == tuple(size):
        return view
    return F.interpolate(view[None].float(), size=size, mode="nearest")[0]


def comparison_panels(clean: Optional[torch.Tensor], degraded: torch.Tensor, baseline_name: str,
                      baseline: torch.Tensor, restored: torch.Tensor, label: str = "",
                      restored_name: str = "DDRM") -> List[Panel]:
    """The panels clean | degraded (at full size) | baseline | DDRM (titled ``restored_name``); with a clean image
    the last two are captioned with PSNR/SSIM (scikit-image's, on the 8-bit images) and the DDRM panel with its
    gain over the baseline."""
    size = tuple(restored.shape[-2:])
    panels: List[Panel] = []
    if clean is not None:
        panels.append(("clean", clean, None))
    panels.append((f"degraded {label}".strip(), full_size(degraded, size), None))
    if clean is None:
        return panels + [(baseline_name, baseline, None), (restored_name, restored, None)]
    (bp, bs), (dp, ds) = psnr_ssim(baseline, clean), psnr_ssim(restored, clean)
    return panels + [(baseline_name, baseline, f"{bp:.2f} dB  SSIM {bs:.3f}"),
                     (restored_name, restored, f"{dp:.2f} dB  SSIM {ds:.3f}  ({dp - bp:+.2f} dB)")]


def render(panels: Sequence[Panel]) -> np.ndarray:
    """The panels side by side on white, titles and captions under each: (H, W, 3) uint8."""
    from PIL import Image, ImageDraw

    h = max(int(p[1].shape[-2]) for p in panels)
    widths = [int(p[1].shape[-1]) for p in panels]
    canvas = Image.new("RGB", (sum(widths) + _PAD * (len(panels) + 1), h + _TEXT + 2 * _PAD), "white")
    draw = ImageDraw.Draw(canvas)
    left = _PAD
    for (title, image, caption), w in zip(panels, widths):
        pixels = to_uint8(image)
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        canvas.paste(Image.fromarray(pixels), (left, _PAD))
        draw.text((left + 2, h + _PAD + 2), title, fill="black")
        if caption:
            draw.text((left + 2, h + _PAD + 15), caption, fill="black")
        left += w + _PAD
    return np.asarray(canvas)


def write_comparison(panels: Sequence[Panel], path: str, info: Optional[dict] = None) -> None:
    """Render ``panels`` and write them to ``path`` atomically, marked as written by ddrm-fast (with ``info``)."""
    write_png_uint8(render(panels), path, dict(info or {}, kind="compare"))
