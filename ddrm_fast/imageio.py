"""Image files in and out: PNG/JPEG to float tensors in [-1, 1] and back, with atomic writes.

Only regular files are opened; an image's size is read from its header and checked (PIL's decompression-bomb limit,
a mask's expected size) before its pixels are decoded. Images and masks come out as every image viewer shows them:
a photo's EXIF orientation is applied. PNGs this package writes carry a ``ddrm-fast`` text chunk
(what was restored, with its scores), by which a job recognises its own outputs.
"""
from __future__ import annotations

import contextlib
import json
import warnings
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np
import torch

from .files import PNG_KEY, atomic_write, open_regular, png_record, read_npy

__all__ = ["open_image", "read_image", "read_mask", "read_kernel", "MAX_KERNEL_SIDE", "image_size", "upright",
           "to_uint8", "write_png", "write_png_uint8", "read_png_info", "PNG_KEY"]



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


_EXIF_ORIENTATION = 0x0112
#: EXIF orientation -> the transpose that shows the image as viewers do (Pillow's ImageOps.exif_transpose table)
_UPRIGHT = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
            7: "TRANSVERSE", 8: "ROTATE_90"}


def _orientation(im) -> int:
    """The EXIF orientation (1 to 8) from what the header holds, without decoding pixels (a PNG's eXIf chunk counts
    when it comes before the image data, where writers put it)."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - unreadable EXIF: show the pixels as stored
        return 1
    return value if isinstance(value, int) and value in _UPRIGHT else 1


def _upright_size(im) -> Tuple[int, int]:
    """(H, W) as viewers show the image: orientations 5 to 8 turn it by 90 degrees."""
    return (im.width, im.height) if _orientation(im) >= 5 else (im.height, im.width)


def image_size(path: str, what: str = "image") -> Tuple[int, int]:
    """(H, W) of an image file as viewers show it (EXIF orientation applied), from its header alone."""
    with open_image(path, what) as im:
        return _upright_size(im)


def _decode(path: str, what: str, modes: Sequence[str], size: Optional[Tuple[int, int]]) -> np.ndarray:
    """The pixels of ``path`` as uint8 (H, W[, C]), turned upright as its EXIF orientation says (what every image
    viewer shows), after its header has been checked: the mode, and ``size`` (H, W, upright) when given."""
    with open_image(path, what) as im:
        h, w = _upright_size(im)
        if size is not None and (h, w) != tuple(size):
            raise _Refused(f"{what} {path}: size {w}x{h} does not match the image's {size[1]}x{size[0]}")
        if im.mode not in modes:
            raise _Refused(f"{what} {path}: image mode {im.mode} is not supported here (expected "
                           f"{' or '.join(modes)})")
        return np.asarray(upright(im), dtype=np.uint8)


def upright(im):
    """The pixels of an opened PIL image, loaded and turned as its EXIF orientation says (as viewers show it)."""
    from PIL import Image

    orientation = _orientation(im)  # from the header, as image_size reads it
    im.load()
    return im if orientation == 1 else im.transpose(getattr(Image.Transpose, _UPRIGHT[orientation]))


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


#: the largest side a blur kernel file may have (checked from its header, before its values are read)
MAX_KERNEL_SIDE = 257


def read_kernel(path: str, what: str = "--kernel") -> torch.Tensor:
    """A blur kernel (point-spread function) file as float32 (kh, kw), normalised to sum 1: a ``.npy`` array (2-D,
    real) or a gray or RGB image (PNG/JPEG: its brightness is the weight). Each side at most
    :data:`MAX_KERNEL_SIDE`; the values finite, >= 0 and not all zero. A ValueError names the file otherwise."""
    if path.lower().endswith(".npy"):
        k = torch.from_numpy(read_npy(path, what, MAX_KERNEL_SIDE**2))
        if k.dim() != 2:
            raise ValueError(f"{what} {path}: a 2-D array expected, got shape {tuple(k.shape)}")
    else:
        h, w = image_size(path, what)
        if max(h, w) > MAX_KERNEL_SIDE:
            raise ValueError(f"{what} {path}: {w}x{h} is larger than a kernel may be ({MAX_KERNEL_SIDE} per side)")
        k = (read_image(path, ("L", "RGB"), what=what).mean(0) + 1) / 2
    if max(k.shape) > MAX_KERNEL_SIDE:
        raise ValueError(f"{what} {path}: shape {tuple(k.shape)} is larger than a kernel may be "
                         f"({MAX_KERNEL_SIDE} per side)")
    if not bool(torch.isfinite(k).all()) or bool((k < 0).any()):
        raise ValueError(f"{what} {path}: the weights must be finite and >= 0")
    total = float(k.double().sum())
    if total <= 0:
        raise ValueError(f"{what} {path}: all weights are zero")
    return (k.double() / total).float()


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


#: the record of a PNG this package wrote, None for any other file (the ownership recogniser of PNGs)
read_png_info = png_record
