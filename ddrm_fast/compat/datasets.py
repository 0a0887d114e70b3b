"""The original runner's data (its datasets/__init__.py ``get_dataset`` and its DataLoader), read as it reads them:
where the config says, in the order its seeded DataLoader gives, prepared as its transforms prepare each image.

- :func:`runner_images`: the (path, class) list of the config's data set under ``--exp``: an out-of-distribution
  ``ImageFolder`` (``datasets/ood_celeba`` for CelebA_HQ and FFHQ, ``datasets/ood_<category>`` for LSUN,
  ``datasets/ood`` for ImageNet), or ImageNet's ``subset_1k`` list (``imagenet_val_1k.txt`` naming
  ``datasets/imagenet/imagenet/<stem>.jpeg``); or a folder of the user's (``--input-dir``, an ``ImageFolder`` of its
  own when it has class folders).
- :func:`loader_batches`: the batches of indices of ``DataLoader(dataset, batch_size, shuffle=True,
  generator=torch.Generator().manual_seed(seed))``, over the ``Subset`` of ``--subset_start``/``--subset_end``.
- :func:`preprocess`: an image as the data set hands it over, (C, S, S) in [0, 1].
"""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

import numpy as np
import torch

from ..files import open_regular
from ..imageio import open_image, upright

__all__ = ["runner_images", "image_folder", "loader_batches", "preprocess", "IMG_EXTENSIONS"]

#: torchvision's ImageFolder extensions (compared in lower case)
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_MAX_LIST = 1 << 24  # bytes of a subset list: ImageNet's 50000 lines are 1.5 MB


def image_folder(root: str) -> List[Tuple[str, int]]:
    """torchvision's ``ImageFolder`` listing: class folders in sorted order (class i), the images under each in
    sorted walk order; a folder without class folders lists its own images, all class 0."""
    if not os.path.isdir(root):
        raise ValueError(f"{root}: no such folder")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        return [(os.path.join(root, n), 0) for n in sorted(os.listdir(root))
                if n.lower().endswith(IMG_EXTENSIONS) and os.path.isfile(os.path.join(root, n))]
    out = []
    for index, name in enumerate(classes):
        for folder, _, files in sorted(os.walk(os.path.join(root, name), followlinks=True)):
            out += [(os.path.join(folder, f), index) for f in sorted(files) if f.lower().endswith(IMG_EXTENSIONS)]
    return out


def _subset_list(root: str, meta: str) -> List[Tuple[str, int]]:
    """ImageNet's ``subset_1k`` data set: a line ``<stem> <class>`` (or ``<stem>``: class -1) per image, the file
    ``<root>/<stem>.jpeg``. The original prints what it reads."""
    with open_regular(meta, "subset list", "rb") as f:
        data = f.read(_MAX_LIST + 1)
    if len(data) > _MAX_LIST:
        raise ValueError(f"subset list {meta}: larger than {_MAX_LIST} bytes")
    print(f"building dataset from {meta}")
    out = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            label = int(parts[1]) if len(parts) == 2 else -1
        except ValueError:
            raise ValueError(f"subset list {meta}, line {number}: the class {parts[1]!r} is not a number") from None
        out.append((root + "/" + parts[0] + ".jpeg", label))
    print("read meta done")
    return out


def runner_images(cfg, exp: str, input_dir: Optional[str] = None) -> List[Tuple[str, int]]:
    """(path, class) of every image of the config's data set, in the data set's own order (see the module)."""
    if input_dir is not None:
        return image_folder(input_dir)
    data, datasets = cfg.data, os.path.join(exp, "datasets")
    ood = getattr(data, "out_of_dist", False)
    if data.dataset == "ImageNet" and getattr(data, "subset_1k", False):
        return _subset_list(os.path.join(datasets, "imagenet", "imagenet"), os.path.join(exp, "imagenet_val_1k.txt"))
    if data.dataset == "ImageNet" and ood:
        return image_folder(os.path.join(datasets, "ood"))
    if data.dataset in ("CelebA_HQ", "FFHQ") and ood:
        return image_folder(os.path.join(datasets, "ood_celeba"))
    if data.dataset == "LSUN" and ood:
        return image_folder(os.path.join(datasets, f"ood_{getattr(data, 'category', '')}"))
    raise ValueError(f"data set {data.dataset} (out_of_dist: {ood}): the original reads it through torchvision or an "
                     f"LMDB, which the drop-in does not; give --input-dir (a folder of the images), or use an "
                     f"out-of-distribution folder (out_of_dist: True)")


def loader_batches(count: int, batch_size: int, seed: int, start: int = -1, end: int = -1) -> List[List[int]]:
    """The batches of data-set indices the original's loader yields: ``Subset(range(start, end))`` when
    ``start >= 0``, shuffled by a DataLoader whose generator is seeded with ``seed`` (torch's own DataLoader here,
    so the order is torch's whatever its version)."""
    indices = list(range(count)) if start < 0 else list(range(start, end if end >= 0 else count))
    loader = torch.utils.data.DataLoader(indices, batch_size=batch_size, shuffle=True, num_workers=0,
                                         generator=torch.Generator().manual_seed(seed))
    return [[int(i) for i in batch] for batch in loader]


def preprocess(path: str, cfg) -> torch.Tensor:
    """An image as the original's data set hands it over: (C, S, S) in [0, 1], from torchvision's transforms on the
    PIL image (bilinear with Pillow's antialiasing, as torchvision resizes PIL images):

    - ImageNet ``subset_1k``: ``CenterCropLongEdge`` (a square of the short side, torchvision's centre: offsets
      rounded half to even) then ``Resize(S)``;
    - ImageNet otherwise: guided-diffusion's ``center_crop_arr`` (halved by BOX while twice the size, bicubic to S on
      the short side, centre crop);
    - CelebA_HQ, FFHQ, LSUN out of distribution: ``Resize([S, S])``; LSUN: ``Resize(S)`` then ``CenterCrop(S)``;
      any other data set: the image must be S x S.
    """
    from PIL import Image

    s, dataset = cfg.data.image_size, cfg.data.dataset
    with open_image(path) as im:  # a regular file, its header's size checked before decoding
        im = upright(im).convert("RGB" if cfg.data.channels == 3 else "L")
    if dataset == "ImageNet" and getattr(cfg.data, "subset_1k", False):
        side = min(im.size)
        left, top = int(round((im.size[0] - side) / 2.0)), int(round((im.size[1] - side) / 2.0))
        im = im.crop((left, top, left + side, top + side)).resize((s, s), resample=Image.BILINEAR)
    elif dataset == "ImageNet":
        while min(*im.size) >= 2 * s:
            im = im.resize(tuple(x // 2 for x in im.size), resample=Image.BOX)
        scale = s / min(*im.size)
        im = im.resize(tuple(round(x * scale) for x in im.size), resample=Image.BICUBIC)
        a = np.asarray(im)
        top, left = (a.shape[0] - s) // 2, (a.shape[1] - s) // 2
        im = Image.fromarray(a[top:top + s, left:left + s])
    elif dataset == "LSUN" and not getattr(cfg.data, "out_of_dist", False):  # Resize(S), CenterCrop(S)
        w, h = im.size
        im = im.resize((s, int(s * h / w)) if w <= h else (int(s * w / h), s), resample=Image.BILINEAR)
        left, top = int(round((im.size[0] - s) / 2.0)), int(round((im.size[1] - s) / 2.0))
        im = im.crop((left, top, left + s, top + s))
    elif dataset in ("CelebA_HQ", "FFHQ", "LSUN"):
        im = im.resize((s, s), resample=Image.BILINEAR)
    a = np.asarray(im)
    if a.shape[:2] != (s, s):
        raise ValueError(f"image {path}: {a.shape[1]}x{a.shape[0]}, the config's data set {dataset!r} needs {s}x{s}")
    a = a[..., None] if a.ndim == 2 else a
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255
