"""ddrm_fast.imageio: images and masks open as every image viewer shows them (EXIF orientation applied)."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from ddrm_fast import batch
from ddrm_fast.imageio import image_size, read_image, read_mask
from ddrm_fast.models import GaussianPriorEps
from ddrm_fast.restoration import Settings

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "ddrm_fast", "data", "astronaut.png")


def _pixels(x):
    return ((x.permute(1, 2, 0) + 1) * 127.5).round().numpy()


def _turned(upright: Image.Image, orientation: int) -> Image.Image:
    """The pixels a camera stores for an image that viewers show as ``upright`` under ``orientation``."""
    inverse = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
               4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
               7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}
    return upright.transpose(inverse[orientation])


def _save_with_orientation(image, path, orientation, **kw):
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, **kw)


@pytest.mark.parametrize("orientation", range(2, 9))
@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_images_and_masks_open_upright(tmp_path, orientation, fmt):
    upright = Image.open(EXAMPLE).convert("RGB").crop((64, 32, 128, 160))  # 64 wide, 128 tall
    path = tmp_path / f"phone.{fmt}"
    _save_with_orientation(_turned(upright, orientation), path, orientation, quality=100)
    assert image_size(str(path)) == (128, 64)
    x = read_image(str(path))
    assert x.shape == (3, 128, 64)
    tol = 0 if fmt == "png" else 4  # JPEG's rounding
    assert np.abs(_pixels(x) - np.asarray(upright, dtype=float)).mean() <= tol
    mask = Image.new("L", (64, 128), 0)
    mask.paste(255, (0, 0, 64, 32))  # the top quarter, as viewers show it
    _save_with_orientation(_turned(mask, orientation), tmp_path / "mask.png", orientation)
    m = read_mask(str(tmp_path / "mask.png"), (128, 64))
    assert m[:32].min() == 1 and m[32:].max() == 0


def test_a_folder_job_restores_a_phone_photo_upright(tmp_path):
    # the same photo stored lying with its orientation, and stored upright: the same restoration (same name, seed)
    upright = Image.open(EXAMPLE).convert("RGB").crop((64, 32, 96, 96))  # 32 wide, 64 tall
    for folder, orientation in (("phone", 6), ("plain", None)):
        (tmp_path / folder).mkdir()
        if orientation is None:
            upright.save(tmp_path / folder / "photo.png")
        else:
            _save_with_orientation(_turned(upright, orientation), tmp_path / folder / "photo.png", orientation)
        batch.restore_dir(GaussianPriorEps(std=0.5), torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64),
                          batch.FolderJob(str(tmp_path / folder), str(tmp_path / f"{folder}_out"), "sr2", num_workers=0,
                                          progress=False, settings=Settings(steps=3)))
    phone, plain = (Image.open(tmp_path / f"{f}_out" / "photo.png") for f in ("phone", "plain"))
    assert phone.size == (32, 64) and np.array_equal(np.asarray(phone), np.asarray(plain))
