"""Restore a directory of images: per-image operators, resumable, sharded over torch.distributed ranks.

The job is planned from the file names alone (sorted, sharded ``names[rank::world]``), then streamed: a DataLoader
with worker processes decodes one batch of equal-size images at a time, and each batch is one ``ddrm_sample`` call
with per-sample masks, noise levels and random streams. Every image's randomness (its inpainting mask when drawn,
its measurement noise, the sampler's noise) comes from a generator seeded by the image's own seed, so its result
does not depend on batch size, neighbours, worker count or rank count.

Nothing is lost or written partially: a result is written under a temporary name and renamed; finished images are
skipped on rerun; each finished or failed image appends a line to the report as it happens. A bad item (unreadable,
wrong mode, size not divisible, mask of the wrong size) is reported and skipped. A batch that runs out of GPU memory
is split in halves and retried, down to single images.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import operators as O
from . import tasks
from .imageio import psnr_ssim, read_image, read_mask, write_png
from .sampler import ddrm_sample

__all__ = ["Item", "plan", "read_manifest", "restore_dir", "default_seed", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_TMP_MARK = ".tmp"


def default_seed(name: str) -> int:
    """A stable 62-bit seed from an image's file name (not Python's salted hash)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little") >> 2


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


def read_manifest(path: str) -> Dict[str, dict]:
    """name -> settings from a CSV (header: name[,task][,sigma_y][,seed][,noise_map]) or a JSON list of objects."""
    if not os.path.isfile(path):
        raise ValueError(f"manifest {path}: no such file")
    try:
        if path.lower().endswith(".json"):
            with open(path) as f:
                rows = json.load(f)
            if isinstance(rows, dict):
                rows = [{"name": k, **v} for k, v in rows.items()]
        else:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
    except (OSError, ValueError, csv.Error) as exc:
        raise ValueError(f"manifest {path}: unreadable ({exc})") from None
    out = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not row.get("name"):
            raise ValueError(f"manifest {path}: entry {i + 1} has no name")
        entry = {}
        try:
            if row.get("task"):
                entry["task"] = str(row["task"])
            if row.get("sigma_y") not in (None, ""):
                entry["sigma_y"] = float(row["sigma_y"])
            if row.get("seed") not in (None, ""):
                entry["seed"] = int(row["seed"])
        except ValueError as exc:
            raise ValueError(f"manifest {path}: entry {row['name']!r}: {exc}") from None
        if row.get("noise_map"):
            entry["noise_map"] = os.path.join(os.path.dirname(os.path.abspath(path)), str(row["noise_map"]))
        out[str(row["name"])] = entry
    return out


def _find_mask(masks_dir: Optional[str], item_name: str) -> Optional[str]:
    if masks_dir is None:
        return None
    stem = os.path.splitext(item_name)[0]
    for cand in [item_name] + [stem + ext for ext in IMAGE_EXTENSIONS]:
        p = os.path.join(masks_dir, cand)
        if os.path.isfile(p):
            return p
    return None


def plan(input_dir: str, *, task: str, sigma_y: float, manifest: Optional[str] = None,
         masks_dir: Optional[str] = None, rank: int = 0, world: int = 1) -> List[Item]:
    """This rank's items, sorted by name: the images of ``input_dir`` (and the manifest's names), each with its
    task, sigma_y, seed, mask and noise map. Items whose settings are already wrong carry ``error``."""
    if not os.path.isdir(input_dir):
        raise ValueError(f"--input-dir {input_dir}: no such folder")
    if masks_dir is not None and not os.path.isdir(masks_dir):
        raise ValueError(f"--masks-dir {masks_dir}: no such folder")
    entries = read_manifest(manifest) if manifest else {}
    names = sorted(n for n in os.listdir(input_dir) if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS
                   and _TMP_MARK not in n)
    by_stem = {}
    for n in names:
        by_stem.setdefault(os.path.splitext(n)[0], []).append(n)
    resolved = {}
    for key in entries:  # manifest names may be given with or without the extension
        hit = key if key in names else (by_stem.get(key, [None])[0])
        resolved[hit or key] = entries[key]
    all_names = sorted(set(names) | set(resolved))
    items = []
    for n in all_names[rank::world]:
        e = resolved.get(n, {})
        it = Item(name=n, path=os.path.join(input_dir, n), task=e.get("task", task),
                  sigma_y=e.get("sigma_y", sigma_y), seed=e.get("seed", default_seed(n)),
                  mask=_find_mask(masks_dir, n), noise_map=e.get("noise_map"))
        if n not in names:
            it.error = "listed in the manifest but not found in the input folder"
        elif len(by_stem[it.stem]) > 1:
            it.error = f"several inputs share the output name {it.stem}.png: {', '.join(by_stem[it.stem])}"
        elif it.task not in tasks.TASKS:
            it.error = f"unknown task {it.task!r}"
        elif not 0 <= it.sigma_y <= 1:
            it.error = f"sigma_y {it.sigma_y} outside [0, 1]"
        elif masks_dir is not None and it.mask is None and it.task == "inp":
            it.error = f"no mask for it in {masks_dir}"
        else:
            try:
                from PIL import Image

                with Image.open(it.path) as im:  # the header only: sizes for batching
                    it.size = (im.height, im.width)
            except Exception as exc:  # noqa: BLE001 - any decoder failure is this item's problem
                it.error = f"not a readable image ({exc})"
        items.append(it)
    return items


# --- loading: runs in the DataLoader's worker processes --------------------------------------------------------------
class _Batches(torch.utils.data.Dataset):
    """Batch i: its items decoded (image, mask, noise map) or each with the reason it cannot be used."""

    def __init__(self, batches: List[List[Item]], observed: bool, divisor: int):
        self.batches, self.observed, self.divisor = batches, observed, divisor

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        t0 = time.perf_counter()
        out = []
        for it in self.batches[i]:
            try:
                out.append((it, self._load(it), None))
            except ValueError as exc:
                out.append((it, None, str(exc)))
        return out, time.perf_counter() - t0

    def _load(self, it: Item) -> dict:
        modes = ("L", "RGB") if self.observed and it.task == "color" else ("RGB",)
        img = read_image(it.path, modes, what="image")
        _, h, w = img.shape
        d = tasks.task_divisor(it.task)
        if not self.observed and (h % d or w % d):
            raise ValueError(f"size {w}x{h} is not divisible by the ratio {d} of task {it.task}")
        out_h, out_w = (h * d, w * d) if self.observed else (h, w)
        if out_h % self.divisor or out_w % self.divisor:
            raise ValueError(f"size {w}x{h}: the model needs sides that are multiples of {self.divisor}")
        mask = None
        if it.mask is not None and it.task == "inp":
            mask = read_mask(it.mask, (h, w))
        elif self.observed and it.task == "inp":
            raise ValueError("an observed inpainting input needs its mask (--masks-dir)")
        noise = None
        if it.noise_map is not None:
            try:
                noise = torch.from_numpy(np.load(it.noise_map).astype(np.float32))
            except (OSError, ValueError) as exc:
                raise ValueError(f"noise map {it.noise_map}: unreadable ({exc})") from None
            if not bool(torch.isfinite(noise).all()) or bool((noise < 0).any()):
                raise ValueError(f"noise map {it.noise_map}: values must be finite and >= 0")
        return {"image": img, "mask": mask, "noise": noise}


# --- one batch: operator, measurements, sampling -------------------------------------------------------------------
def _measure(it: Item, data: dict, observed: bool):
    """(operator, y (1, ...), sigma (scalar or y-shaped map, [-1, 1] units), clean or None, generator state)."""
    g = torch.Generator().manual_seed(it.seed)
    img = data["image"]
    if observed:
        op, y = tasks.measurement_from_observed(it.task, img, data["mask"])
        clean = None
    else:
        op = tasks.make_operator(it.task, img.shape, data["mask"], generator=g)
        clean = img
        y = None
    sigma = torch.tensor(2 * it.sigma_y)
    if data["noise"] is not None:
        if not op.identity_U:
            raise ValueError(f"a per-pixel noise map needs a task whose measurements are pixels; not {it.task}")
        try:
            sigma = 2 * torch.broadcast_to(data["noise"], op.y_shape).clone()
        except RuntimeError:
            raise ValueError(f"noise map of shape {tuple(data['noise'].shape)} does not fit y's shape "
                             f"{op.y_shape}") from None
    if y is None:  # the same draws as the one-image command: a given seed gives the same restoration
        y = tasks.degrade(clean[None], op, float(sigma) if sigma.dim() == 0 else sigma, g)
    return op, y, sigma, clean, g.get_state()


def _batch_operator(task: str, ops: Sequence[O.LinearOperator]) -> O.LinearOperator:
    """One operator for the batch: per-sample masks stacked for inpainting, else the (shared) first one."""
    if task == "inp":
        c, h, w = ops[0].image_shape
        masks = torch.stack([o.observed.reshape(-1, c, h, w)[0] for o in ops])
        return O.Inpaint(masks, channels=c)
    return ops[0]


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


@dataclass
class _Job:
    model: Callable
    betas: torch.Tensor
    out_dir: str
    observed: bool
    steps: int
    eta: float
    eta_b: float
    device: torch.device
    backend: str
    report: "object"
    rank: int
    sampler: Callable = ddrm_sample
    options: Dict[str, object] = field(default_factory=dict)
    stats: Dict[str, float] = field(default_factory=lambda: {"ok": 0, "failed": 0, "psnr_sum": 0.0, "psnr_n": 0,
                                                             "sampler_s": 0.0, "io_s": 0.0})

    def log(self, rec: dict) -> None:
        self.report.write(json.dumps(rec) + "\n")
        self.report.flush()

    def fail(self, it: Item, reason: str) -> None:
        self.stats["failed"] += 1
        self.log({"name": it.name, "task": it.task, "sigma_y": it.sigma_y, "seed": it.seed, "status": "error",
                  "error": reason, "rank": self.rank})
        print(f"ddrm-fast: {it.name}: {reason}", file=sys.stderr, flush=True)

    def run(self, group: List[tuple]) -> None:
        """Sample one group of measured items [(item, op, y, sigma, clean, gen_state)], splitting on OOM."""
        try:
            t0 = time.perf_counter()
            op = _batch_operator(group[0][0].task, [g[1] for g in group]).to(self.device)  # measured on the CPU
            y = torch.cat([g[2] for g in group]).to(self.device)
            sig = [g[3] for g in group]
            if all(s.dim() == 0 for s in sig):
                sigma = torch.stack(sig).to(self.device)
            else:
                sigma = torch.stack([torch.broadcast_to(s, op.y_shape) for s in sig]).to(self.device)
            gens = []
            for g in group:  # fresh generators at the post-measurement state: a retried half draws the same noise
                gen = torch.Generator()
                gen.set_state(g[5])
                gens.append(gen)
            with torch.no_grad():
                x = self.sampler(self.model, y, op, sigma, steps=self.steps, eta=self.eta, eta_b=self.eta_b,
                                 schedule=self.betas.float(), generator=gens, backend=self.backend,
                                 **self.options).cpu()
            seconds = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - OOM splits; anything else fails these items, the job goes on
            if _is_oom(exc):
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if len(group) > 1:
                    half = len(group) // 2
                    self.run(group[:half])
                    self.run(group[half:])
                    return
                self.fail(group[0][0], "out of memory even alone")
                return
            for g in group:
                self.fail(g[0], f"sampling failed: {type(exc).__name__}: {exc}")
            return
        self.stats["sampler_s"] += seconds
        t1 = time.perf_counter()
        for (it, _, _, _, clean, _), xi in zip(group, x):
            write_png(xi, os.path.join(self.out_dir, it.stem + ".png"))
            rec = {"name": it.name, "task": it.task, "sigma_y": it.sigma_y, "seed": it.seed, "status": "ok",
                   "seconds": seconds / len(group), "batch": len(group), "rank": self.rank}
            if clean is not None:
                rec["psnr"], rec["ssim"] = psnr_ssim(xi, clean)
                self.stats["psnr_sum"] += rec["psnr"]
                self.stats["psnr_n"] += 1
            self.stats["ok"] += 1
            self.log(rec)
        self.stats["io_s"] += time.perf_counter() - t1


def _identity(batch):
    return batch


def _batches(items: List[Item], batch_size: int) -> List[List[Item]]:
    """Items grouped by (task, size) in name order, cut into batches of at most batch_size."""
    groups: Dict[tuple, List[Item]] = {}
    for it in items:
        groups.setdefault((it.task, it.size), []).append(it)
    return [g[i:i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]


def _finished(out_dir: str, report_path: str, items: List[Item], rank: int, report) -> List[Item]:
    """Items still to do; finished ones whose report line a kill cut off get a 'recovered' line."""
    reported = set()
    if os.path.exists(report_path):
        with open(report_path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill
                if rec.get("status") == "ok":
                    reported.add(rec["name"])
    todo = []
    for it in items:
        if os.path.exists(os.path.join(out_dir, it.stem + ".png")):
            if it.name not in reported:
                report.write(json.dumps({"name": it.name, "task": it.task, "sigma_y": it.sigma_y, "seed": it.seed,
                                         "status": "ok", "recovered": True, "rank": rank}) + "\n")
        else:
            todo.append(it)
    report.flush()
    return todo


def restore_dir(model, betas: torch.Tensor, input_dir: str, out_dir: str, *, task: str, sigma_y: float,
                batch_size: int = 8, manifest: Optional[str] = None, masks_dir: Optional[str] = None,
                observed: bool = False, steps: int = 20, eta: float = 0.85, eta_b: float = 1.0, device="cpu",
                backend: str = "auto", num_workers: int = 2, rank: int = 0, world: int = 1, progress: bool = True,
                sampler: Callable = ddrm_sample, sampler_options: Optional[Dict[str, object]] = None) -> dict:
    """Restore every image of ``input_dir`` into ``out_dir/<stem>.png`` (this rank's share); returns this rank's
    counts: ``ok``, ``failed``, ``psnr_sum``/``psnr_n``, ``sampler_s``, ``io_s``, ``load_s``, ``seconds``.
    ``sampler_options`` are further ``ddrm_sample`` keywords (``noise``, ``model_dtype``, ``channels_last``,
    ``compile``, ``cuda_graph``)."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    t_start = time.perf_counter()
    items = plan(input_dir, task=task, sigma_y=sigma_y, manifest=manifest, masks_dir=masks_dir, rank=rank,
                 world=world)
    os.makedirs(out_dir, exist_ok=True)
    report_path = os.path.join(out_dir, "report.jsonl" if world == 1 else f"report.rank{rank}.jsonl")
    with open(report_path, "a") as report:
        job = _Job(model, betas, out_dir, observed, steps, eta, eta_b, torch.device(device), backend, report, rank,
                   sampler, dict(sampler_options or {}))
        for it in [i for i in items if i.error]:
            job.fail(it, it.error)
        todo = _finished(out_dir, report_path, [i for i in items if not i.error], rank, report)
        batches = _batches(todo, batch_size)
        loader = torch.utils.data.DataLoader(_Batches(batches, observed, getattr(model, "divisor", 1)),
                                             batch_size=None, shuffle=False, num_workers=num_workers,
                                             collate_fn=_identity)
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), unit="img", desc=f"restore{'' if world == 1 else f' rank {rank}'}",
                   disable=not progress)
        load_s = 0.0
        for loaded, seconds in loader:
            load_s += seconds
            measured = []
            for it, data, err in loaded:
                if err is not None:
                    job.fail(it, err)
                    continue
                try:
                    measured.append((it,) + _measure(it, data, observed))
                except ValueError as exc:
                    job.fail(it, str(exc))
            # one sampler call: a batch shares its task and size; scalar noise levels are broadcast to any maps
            if measured:
                job.run(measured)
            bar.update(len(loaded))
        bar.close()
    stats = dict(job.stats, load_s=load_s, seconds=time.perf_counter() - t_start, todo=len(todo))
    return stats


def clean_partial(out_dir: str) -> int:
    """Remove the temporary files a killed run left in ``out_dir`` (names with ``.tmp``); returns how many."""
    n = 0
    if os.path.isdir(out_dir):
        for name in os.listdir(out_dir):
            if _TMP_MARK in name:
                os.remove(os.path.join(out_dir, name))
                n += 1
    return n


def summarize(out_dir: str, stats: List[dict], world: int) -> dict:
    """Merge the ranks' counts and reports into ``out_dir/summary.json``; returns the summary."""
    names, failed = {}, {}
    for r in range(world):
        path = os.path.join(out_dir, "report.jsonl" if world == 1 else f"report.rank{r}.jsonl")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("status") == "ok":
                    names[rec["name"]] = rec
                    failed.pop(rec["name"], None)
                else:
                    failed[rec["name"]] = rec
    psnrs = [r["psnr"] for r in names.values() if "psnr" in r]
    seconds = max(s["seconds"] for s in stats)
    done_now = sum(s["ok"] for s in stats)
    summary = {"images": len(names), "failures": len(failed), "failed": sorted(failed),
               "mean_psnr": sum(psnrs) / len(psnrs) if psnrs else None,
               "restored_this_run": done_now, "seconds": seconds,
               "images_per_s": done_now / seconds if seconds > 0 else None,
               "sampler_s": sum(s["sampler_s"] for s in stats), "io_s": sum(s["io_s"] for s in stats),
               "load_s": sum(s["load_s"] for s in stats)}
    tmp = os.path.join(out_dir, f"summary.json{_TMP_MARK}")
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(tmp, os.path.join(out_dir, "summary.json"))
    return summary
