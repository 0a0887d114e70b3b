"""Image files in and out: PNG/JPEG to float tensors in [-1, 1] and back, with atomic writes.

Only regular files are opened; an image's size is read from its header and checked (PIL's decompression-bomb limit,
a mask's expected size) before its pixels are decoded. PNGs this package writes carry a ``ddrm-fast`` text chunk
(what was restored, with its scores), by which a job recognises its own outputs.
"""
from __future__ import annotations

import contextlib
import json
import warnings
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np
import torch

from .files import atomic_write, open_regular

__all__ = ["open_image", "read_image", "read_mask", "image_size", "to_uint8", "write_png", "write_png_uint8",
           "read_png_info", "PNG_KEY"]

PNG_KEY = "ddrm-fast"  # the text chunk of the PNGs this package writes


class _Refused(ValueError):
    """A reason of our own (as opposed to a decoder's exception)."""


@contextlib.contextmanager
def open_image(path: str, what: str = "image") -> Iterator:
    """The PIL image of ``path``, header read and its size checked against PIL's decompression-bomb limit (the
    warning band included); any decoder exception inside the block becomes a one-line ValueError naming the file."""
    from PIL import Image

    with open_regular(path, what) as f:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(f) as im:
                    yield im
        except _Refused:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ValueError(f"{what} {path}: too large to decode safely ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - whatever a decoder raises, the file is what is wrong
            detail = str(exc).splitlines()[0][:160] if str(exc) else "corrupt data"
            raise ValueError(f"{what} {path}: not a readable image ({type(exc).__name__}: {detail})") from None


def image_size(path: str, what: str = "image") -> Tuple[int, int]:
    """(H, W) of an image file, from its header alone."""
    with open_image(path, what) as im:
        return im.height, im.width


def _decode(path: str, what: str, modes: Sequence[str], size: Optional[Tuple[int, int]]) -> np.ndarray:
    """The pixels of ``path`` as uint8 (H, W[, C]), after its header has been checked: the mode, and ``size``
    (H, W) when given."""
    with open_image(path, what) as im:
        if size is not None and (im.height, im.width) != tuple(size):
            raise _Refused(f"{what} {path}: size {im.width}x{im.height} does not match the image's "
                           f"{size[1]}x{size[0]}")
        if im.mode not in modes:
            raise _Refused(f"{what} {path}: image mode {im.mode} is not supported here (expected "
                           f"{' or '.join(modes)})")
        im.load()
        return np.asarray(im, dtype=np.uint8)


def read_image(path: str, modes: Sequence[str] = ("RGB",), what: str = "input",
               size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """The image at ``path`` as float32 (C, H, W) in [-1, 1]; its mode must be one of ``modes`` ("RGB", "L"), its
    (H, W) ``size`` when given (both checked from the header, before decoding).

    Raises ValueError with a one-line reason for a missing, non-regular, unreadable, oversized or wrong-mode file.
    """
    a = _decode(path, what, modes, size)
    a = a[..., None] if a.ndim == 2 else a
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 127.5 - 1


def read_mask(path: str, size: Tuple[int, int]) -> torch.Tensor:
    """An inpainting mask file as float32 (H, W): 1 where any channel is nonzero (observed), else 0.

    ``size`` is the image's (H, W); a mask of another size is a ValueError naming both (read from its header).
    """
    m = read_image(path, ("L", "1", "RGB"), what="mask", size=size)
    return (m.amax(0) > -1).float()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W, C) uint8, rounded (C = 1 gives (H, W))."""
    a = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return a[..., 0] if a.shape[2] == 1 else a


def write_png(x: torch.Tensor, path: str, info: Optional[dict] = None) -> None:
    """Write (C, H, W) in [-1, 1] as PNG, atomically (a temporary in the same folder, then a rename), marked as
    written by ddrm-fast with ``info`` (JSON-serialisable) in its text chunk."""
    write_png_uint8(to_uint8(x), path, info)


def write_png_uint8(pixels: np.ndarray, path: str, info: Optional[dict] = None) -> None:
    """:func:`write_png` of pixels already quantised: (H, W) or (H, W, C) uint8."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_text(PNG_KEY, json.dumps(dict(info or {})))
    image = Image.fromarray(pixels)
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=meta))


def read_png_info(path: str) -> Optional[dict]:
    """The ``info`` a PNG written by :func:`write_png` carries; None for any other file (or none at all)."""
    from PIL import Image

    try:
        with open_regular(path, "file") as f, Image.open(f) as im:
            text = im.info.get(PNG_KEY) if im.format == "PNG" else None  # text chunks before the pixel data
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return None
    if text is None:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    return info if isinstance(info, dict) else None
