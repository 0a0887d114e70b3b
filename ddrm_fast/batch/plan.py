"""A folder job's plan, from file names and headers alone: this rank's items (sorted, sharded ``names[rank::world]``),
each with its own task, noise level, seed, mask and noise map, the ones already known to be bad with their reason,
and their batches (one task and size each)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .. import tasks
from ..imageio import image_size
from .manifest import default_seed, read_manifest

__all__ = ["IMAGE_EXTENSIONS", "Item", "plan", "batches", "reason"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Item:
    """One image of the job and its own settings."""

    name: str
    path: str
    task: str
    sigma_y: float  # [0, 1] pixel units
    seed: int
    mask: Optional[str] = None
    noise_map: Optional[str] = None  # .npy of per-pixel sigma in pixel units, y's spatial shape
    size: Tuple[int, int] = (0, 0)  # (H, W)
    error: Optional[str] = None

    @property
    def stem(self) -> str:
        return os.path.splitext(self.name)[0]


def _find_mask(masks_dir: Optional[str], item_name: str) -> Optional[str]:
    if masks_dir is None:
        return None
    stem = os.path.splitext(item_name)[0]
    for cand in [item_name] + [stem + ext for ext in IMAGE_EXTENSIONS]:
        p = os.path.join(masks_dir, cand)
        if os.path.lexists(p):  # whatever it is: reading it decides whether it is a usable mask
            return p
    return None


def _item_error(it: Item, in_folder: bool, sharing: List[str], masks_dir: Optional[str]) -> Optional[str]:
    """Why an item cannot be restored, from its settings and its file's header alone (None: no reason yet)."""
    if not in_folder:
        return "listed in the manifest but not found in the input folder"
    if len(sharing) > 1:
        return f"several inputs share the output name {it.stem}.png: {', '.join(sharing)}"
    if it.task not in tasks.TASKS:
        return f"unknown task {it.task!r}"
    if not 0 <= it.sigma_y <= 1:
        return f"sigma_y {it.sigma_y} outside [0, 1]"
    if masks_dir is not None and it.mask is None and it.task == "inp":
        return f"no mask for it in {masks_dir}"
    try:
        it.size = image_size(it.path, "image")  # the header only: sizes for batching
    except Exception as exc:  # noqa: BLE001 - whatever reading the header raised, the file is what is wrong
        return reason(exc)
    return None


def plan(input_dir: str, *, task: str, sigma_y: float, manifest: Optional[str] = None,
         masks_dir: Optional[str] = None, rank: int = 0, world: int = 1) -> List[Item]:
    """This rank's items, sorted by name: the images of ``input_dir`` (and the manifest's names), each with its
    task, sigma_y, seed, mask and noise map. Items that are already known to be bad carry ``error``."""
    if not os.path.isdir(input_dir):
        raise ValueError(f"--input-dir {input_dir}: no such folder")
    if masks_dir is not None and not os.path.isdir(masks_dir):
        raise ValueError(f"--masks-dir {masks_dir}: no such folder")
    entries, bad_entries = read_manifest(manifest) if manifest else ({}, [])
    names = sorted(n for n in os.listdir(input_dir) if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS)
    by_stem: Dict[str, List[str]] = {}
    for n in names:
        by_stem.setdefault(os.path.splitext(n)[0], []).append(n)

    def resolve(key: str) -> str:  # manifest names may be given with or without the extension
        return key if key in names else by_stem.get(key, [key])[0]

    resolved = {resolve(k): v for k, v in entries.items()}
    bad = {resolve(label): reason for label, reason in bad_entries}
    items = []
    for n in sorted(set(names) | set(resolved) | set(bad))[rank::world]:
        e = resolved.get(n, {})
        it = Item(name=n, path=os.path.join(input_dir, n), task=e.get("task", task),
                  sigma_y=e.get("sigma_y", sigma_y), seed=e.get("seed", default_seed(n)),
                  mask=_find_mask(masks_dir, n), noise_map=e.get("noise_map"))
        it.error = bad.get(n) or _item_error(it, n in names, by_stem.get(it.stem, []), masks_dir)
        items.append(it)
    return items


def batches(items: List[Item], batch_size: int) -> List[List[Item]]:
    """Items grouped by (task, size) in name order, cut into batches of at most batch_size."""
    groups: Dict[tuple, List[Item]] = {}
    for it in items:
        groups.setdefault((it.task, it.size), []).append(it)
    return [g[i:i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]


def reason(exc: BaseException) -> str:
    """One line for a bad item: our own messages as they are, anything else with its exception type."""
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    if isinstance(exc, ValueError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
