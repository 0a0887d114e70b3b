"""Side-by-side comparison figures: the clean image, the measurement, the classical baseline and DDRM in one row,
each captioned with its PSNR/SSIM against the clean image (what `make demo` and `ddrm-fast restore --compare`
write)."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .imageio import to_uint8, write_png, write_png_uint8
from .metrics import psnr_ssim

__all__ = ["Panel", "comparison_panels", "render", "write_comparison", "std_picture", "std_panel", "write_std",
           "viridis"]

#: (title, image (C, H, W) in [-1, 1], caption under the title or None)
Panel = Tuple[str, torch.Tensor, Optional[str]]

_PAD, _TEXT = 6, 30  # pixels between panels; caption band under them (two lines of PIL's default font)


def full_size(view: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """A measurement picture shown at the restoration's size: a low-res y is enlarged by pixel replication (nearest),
    so that its pixels stay visible as such."""
    if tuple(view.shape[-2:]) == tuple(size):
        return view
    return F.interpolate(view[None].float(), size=size, mode="nearest")[0]


#: matplotlib's viridis at 0, 1/8, ..., 1 (perceptually uniform, readable in gray and by colour-blind readers)
_VIRIDIS = torch.tensor([[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129],
                         [92, 200, 99], [170, 220, 50], [253, 231, 37]], dtype=torch.float32) / 255


def viridis(values: torch.Tensor) -> torch.Tensor:
    """values in [0, 1], any shape S -> colours (3, *S) in [0, 1], interpolated linearly between the anchors."""
    pos = values.clamp(0, 1).float() * (len(_VIRIDIS) - 1)
    lo = pos.floor().long().clamp(max=len(_VIRIDIS) - 2)
    frac = (pos - lo).unsqueeze(-1)
    colours = _VIRIDIS[lo] * (1 - frac) + _VIRIDIS[lo + 1] * frac
    return colours.movedim(-1, 0)


_BAR, _LABELS = 10, 44  # the scale's colour bar and the room for its numbers, in pixels


def std_picture(std: torch.Tensor) -> Tuple[torch.Tensor, float]:
    """The posterior's per-pixel standard deviation as a picture with its scale: ``std`` (C, H, W) in image units
    ([-1, 1] images) -> ((3, H, W + 56) in [-1, 1]: the root mean square over channels, in [0, 1] pixel units,
    colour-mapped (viridis) from 0 to its maximum, then a colour bar labelled with both), that maximum)."""
    from PIL import Image, ImageDraw

    pixel = std.float().pow(2).mean(0).sqrt() / 2  # [-1, 1] units -> [0, 1] pixel units
    top = float(pixel.max())
    h, w = pixel.shape
    canvas = torch.ones(3, h, w + 4 + _BAR + _LABELS)
    canvas[:, :, :w] = viridis(pixel / top if top > 0 else pixel)
    canvas[:, :, w + 4:w + 4 + _BAR] = viridis(torch.linspace(1, 0, h)).unsqueeze(-1)
    image = Image.fromarray((canvas.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.text((w + 6 + _BAR, 0), f"{top:.3f}", fill="black")
    draw.text((w + 6 + _BAR, max(h - 11, 12)), "0", fill="black")
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 127.5 - 1, top


def write_std(std: torch.Tensor, path: str, info: Optional[dict] = None) -> None:
    """Write :func:`std_picture` of ``std`` to ``path`` atomically, marked as ddrm-fast's (``info``, kind "std", and
    the scale's maximum as ``std_max``)."""
    picture, top = std_picture(std)
    write_png(picture, path, dict(info or {}, kind="std", std_max=round(top, 6)))


def std_panel(std: torch.Tensor, samples: int) -> Panel:
    """The comparison figure's panel of the posterior's standard deviation (:func:`std_picture`)."""
    picture, top = std_picture(std)
    return (f"std of {samples} samples", picture, f"0 to {top:.3f} (pixel units)")


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
