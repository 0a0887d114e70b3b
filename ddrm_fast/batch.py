"""Restore a directory of images: per-image operators, resumable, sharded over torch.distributed ranks.

The job is planned from the file names alone (sorted, sharded ``names[rank::world]``), then streamed: a DataLoader
with worker processes decodes one batch of equal-size images at a time, and each batch is one ``ddrm_sample`` call
with per-sample masks, noise levels and random streams. Every image's randomness (its inpainting mask when drawn,
its measurement noise, the sampler's noise) comes from a generator seeded by the image's own seed, so its result
does not depend on batch size, neighbours, worker count or rank count.

Nothing is lost or written partially: a result is written under a temporary name and renamed; finished images are
skipped on rerun; each finished or failed image appends a line to the report as it happens. The output folder is the
user's: the job holds a lock on it (:class:`ddrm_fast.files.FolderLock`), overwrites only PNGs it wrote itself (they
carry a ``ddrm-fast`` text chunk) and removes only its own temporaries. A bad item (a file that is not a regular
file, unreadable, oversized, wrong mode, size not divisible, a mask or noise map of the wrong size, a bad manifest
entry, an existing output it did not write) is reported and skipped, whatever exception it raised. A batch that runs
out of GPU memory is split in halves and retried, down to single images.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from . import operators as O
from . import tasks
from .files import (DiskFull, FolderLock, LineLog, check_output_path, is_disk_full, open_regular, read_npy, recognise,
                    refuse_foreign, remove_own_temporaries, same_folder, write_text)
from .figures import comparison_panels, write_comparison
from .imageio import image_size, read_image, read_mask, write_png
from .metrics import psnr_ssim
from .sampler import ddrm_sample

__all__ = ["Item", "plan", "read_manifest", "restore_dir", "default_seed", "check_output_folder", "clean_partial",
           "summarize", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed accepts
_FIELDS = ("name", "task", "sigma_y", "seed", "noise_map")  # a manifest entry's


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


def _entry(row: dict, base: str) -> dict:
    """One manifest row's settings, checked: a ValueError names the field that is wrong."""
    entry = {}
    for key in row:
        if key is None:  # a CSV row with more values than the header has columns
            raise ValueError(f"more values than columns ({row[None]!r} left over)")
        if key not in _FIELDS:
            raise ValueError(f"unknown field {key!r} (known: {', '.join(_FIELDS)})")
    task = row.get("task")
    if task not in (None, ""):
        if not isinstance(task, str):
            raise ValueError(f"task {task!r} is not a task name")
        entry["task"] = task
    sigma = row.get("sigma_y")
    if sigma not in (None, ""):
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float, str)):
            raise ValueError(f"sigma_y {sigma!r} is not a number")
        try:
            entry["sigma_y"] = float(sigma)
        except ValueError:
            raise ValueError(f"sigma_y {sigma!r} is not a number") from None
    seed = row.get("seed")
    if seed not in (None, ""):
        if isinstance(seed, bool) or not isinstance(seed, (int, str)):
            raise ValueError(f"seed {seed!r} is not an integer")
        try:
            entry["seed"] = int(seed)
        except ValueError:
            raise ValueError(f"seed {seed!r} is not an integer") from None
        if not _SEED_RANGE[0] <= entry["seed"] <= _SEED_RANGE[1]:
            raise ValueError(f"seed {seed} is outside [-2^63, 2^64)")
    noise_map = row.get("noise_map")
    if noise_map not in (None, ""):
        if not isinstance(noise_map, str):
            raise ValueError(f"noise_map {noise_map!r} is not a file name")
        entry["noise_map"] = os.path.join(base, noise_map)
    return entry


def read_manifest(path: str) -> Tuple[Dict[str, dict], List[Tuple[str, str]]]:
    """Per-image settings from a CSV (header: name[,task][,sigma_y][,seed][,noise_map]) or JSON (a list of objects,
    or an object of name: settings).

    Returns (name -> settings, bad entries as (label, reason)): an entry that cannot be used is a bad item of the
    job, reported by name. A file that is not a manifest at all is a ValueError (a bad invocation).
    """
    try:
        with open_regular(path, "--manifest", "rb") as f:
            text = f.read().decode("utf-8-sig")
        if path.lower().endswith(".json"):
            rows = json.loads(text)
            if isinstance(rows, dict):  # name: settings; a value that is not an object is that entry's error
                rows = [{**v, "name": k} if isinstance(v, dict) else (k, v) for k, v in rows.items()]
            elif not isinstance(rows, list):
                raise ValueError(f"expected a list of objects or an object of name: settings, got "
                                 f"{type(rows).__name__}")
        else:
            reader = csv.DictReader(io.StringIO(text, newline=""))
            unknown = [c for c in (reader.fieldnames or []) if c not in _FIELDS]
            if unknown or "name" not in (reader.fieldnames or []):
                raise ValueError(f"the header must name the columns name[, {', '.join(_FIELDS[1:])}]; got "
                                 f"{reader.fieldnames}")
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error, json.JSONDecodeError) as exc:
        raise ValueError(f"--manifest {path}: unreadable ({str(exc).splitlines()[0][:160]})") from None
    except ValueError as exc:
        msg = str(exc)
        raise ValueError(msg if msg.startswith("--manifest") else f"--manifest {path}: {msg}") from None
    out: Dict[str, dict] = {}
    bad: List[Tuple[str, str]] = []
    seen = set()
    base = os.path.dirname(os.path.abspath(path))
    for i, row in enumerate(rows):
        if isinstance(row, tuple):  # {"name": <not an object>}
            bad.append((str(row[0]), f"manifest entry: expected an object of settings, got {type(row[1]).__name__}"))
            continue
        if not isinstance(row, dict):
            bad.append((f"manifest entry {i + 1}", f"expected an object, got {type(row).__name__}"))
            continue
        name = row.get("name")
        if not isinstance(name, str) or not name:
            bad.append((f"manifest entry {i + 1}", "has no name"))
            continue
        if name in seen:
            if out.pop(name, None) is not None:
                bad.append((name, "listed more than once in the manifest"))
            continue
        seen.add(name)
        try:
            out[name] = _entry(row, base)
        except ValueError as exc:
            bad.append((name, f"manifest entry: {exc}"))
    return out, bad


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
        return _reason(exc)
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
            except Exception as exc:  # noqa: BLE001 - whatever an item raises (MemoryError too) is its own failure
                out.append((it, None, _reason(exc)))
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
            # y never has more entries than the restored image: a larger declared shape is refused unread
            noise = torch.from_numpy(read_npy(it.noise_map, "noise map", max_elements=3 * out_h * out_w))
            if not bool(torch.isfinite(noise).all()) or bool((noise < 0).any()):
                raise ValueError(f"noise map {it.noise_map}: values must be finite and >= 0")
        return {"image": img, "mask": mask, "noise": noise}


def _reason(exc: BaseException) -> str:
    """One line for a bad item: our own messages as they are, anything else with its exception type."""
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    if isinstance(exc, ValueError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
    report: LineLog
    rank: int
    sampler: Callable = ddrm_sample
    options: Dict[str, object] = field(default_factory=dict)
    #: also write OUT/compare/<stem>.png (clean | degraded | baseline | DDRM) per image
    compare: bool = False
    stats: Dict[str, float] = field(default_factory=lambda: {"ok": 0, "failed": 0, "psnr_sum": 0.0, "psnr_n": 0,
                                                             "sampler_s": 0.0, "io_s": 0.0, "done_before": 0})

    def log(self, rec: dict) -> None:
        self.report.write(json.dumps(rec))  # a whole line or, on a full disk, nothing and DiskFull

    def fail(self, it: Item, reason: str) -> None:
        self.stats["failed"] += 1
        self.log({**_item_record(it), "status": "error", "error": reason, "rank": self.rank})
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
            if is_disk_full(exc):
                raise
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
        for (it, op_i, y_i, sigma_i, clean, _), xi in zip(group, x):
            rec = {**_item_record(it), "status": "ok", "seconds": seconds / len(group), "batch": len(group),
                   "rank": self.rank}
            try:  # the scores travel inside the PNG: a resumed job reports them even if this line is cut off
                panels = self.score(rec, it, op_i, y_i, sigma_i, clean, xi)
                if panels:  # first: the restoration's PNG marks the item done
                    self.write_comparison(it, panels)
                write_png(xi, os.path.join(self.out_dir, it.stem + ".png"), _png_info(rec))
            except Exception as exc:  # noqa: BLE001 - this image fails; nothing partial stays behind
                if is_disk_full(exc):
                    raise  # not this image's fault: the job stops, everything finished stays
                self.fail(it, f"could not write {it.stem}.png: {_reason(exc)}")
                continue
            self.done(rec)
        self.stats["io_s"] += time.perf_counter() - t1

    def score(self, rec: dict, it: Item, op, y, sigma, clean, xi) -> list:
        """Add the PSNR/SSIM of the restoration and of the task's classical baseline (bicubic, Wiener or the
        pseudo-inverse) to ``rec`` when the clean image is known; returns the comparison figure's panels when
        ``compare`` asks for one (else [])."""
        if clean is None and not self.compare:
            return []
        name, base = tasks.baseline(it.task, op, y, sigma)
        if clean is not None:
            rec["psnr"], rec["ssim"] = psnr_ssim(xi, clean)
            rec["baseline"] = name
            rec["psnr_baseline"], rec["ssim_baseline"] = psnr_ssim(base[0], clean)
        if not self.compare:
            return []
        view = tasks.measurement_view(it.task, op, y[0], op.H_pinv(y)[0])
        return comparison_panels(clean, view, name, base[0], xi, f"({it.task}, sigma_y {it.sigma_y:g})")

    def write_comparison(self, it: Item, panels: list) -> None:
        """OUT/compare/<stem>.png, unless a file this package did not write is there."""
        path = os.path.join(self.out_dir, "compare", it.stem + ".png")
        refuse_foreign(path, "png", f"compare/{it.stem}.png exists and was not written by ddrm-fast; not overwritten")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_comparison(panels, path, _png_info(_item_record(it)))

    def done(self, rec: dict, this_run: bool = True) -> None:
        """Report a finished image (``this_run`` False: one a killed run finished, recovered now)."""
        self.stats["ok"] += int(this_run)
        if this_run and "psnr" in rec:
            self.stats["psnr_sum"] += rec["psnr"]
            self.stats["psnr_n"] += 1
        self.log(rec)


#: what a report line and a restored PNG record of an image's quality (DDRM's, and its task's baseline's)
_SCORES = ("psnr", "ssim", "baseline", "psnr_baseline", "ssim_baseline")


def _item_record(it: Item) -> dict:
    """The item's identity, as its report line and PNG begin."""
    return {"name": it.name, "task": it.task, "sigma_y": it.sigma_y, "seed": it.seed}


def _png_info(rec: dict) -> dict:
    """What a restored PNG records of itself: the item and its scores."""
    return {k: rec[k] for k in ("name", "task", "sigma_y", "seed") + _SCORES if k in rec}


def _identity(batch):
    return batch


def _batches(items: List[Item], batch_size: int) -> List[List[Item]]:
    """Items grouped by (task, size) in name order, cut into batches of at most batch_size."""
    groups: Dict[tuple, List[Item]] = {}
    for it in items:
        groups.setdefault((it.task, it.size), []).append(it)
    return [g[i:i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]


def _record(line: str) -> Optional[dict]:
    """One report line's record, or None for a line that holds none. A record that an earlier version appended
    onto a line a kill had cut (``{"name": "a", "si{"name": "b", ...}``) is found after the cut."""
    for start in (0, line.rfind(_RECORD_START)):
        if start < 0:
            break
        try:
            rec = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(rec, dict) and "name" in rec and "status" in rec:
            return rec
    return None


_RECORD_START = '{"name": '  # how every report line begins (json.dumps of a record whose first key is the name)


def _report_records(path: str) -> List[dict]:
    """The records of a report this package wrote; lines a kill or a full disk cut short are skipped."""
    if not os.path.exists(path):
        return []
    with open_regular(path, "report", "r") as f:
        return [rec for rec in map(_record, f) if rec is not None]


def _finished(out_dir: str, report_path: str, items: List[Item], job: "_Job") -> List[Item]:
    """Items still to do. An existing output counts as finished only when this package wrote it for this item (its
    PNG text chunk says so); one whose report line a kill cut off gets a 'recovered' line with the scores stored in
    it. An existing file of that name that the job did not write is the user's: the item fails, the file stays."""
    reported = {rec.get("name") for rec in _report_records(report_path) if rec.get("status") == "ok"}
    todo = []
    for it in items:
        path = os.path.join(out_dir, it.stem + ".png")
        if not os.path.lexists(path):
            todo.append(it)
            continue
        info = recognise(path, "png")
        if info is None or info.get("name") != it.name:
            job.fail(it, f"{path} exists and was not written by ddrm-fast for this image; it is left as it is "
                         f"(move it away or choose another --output-dir)")
        else:
            job.stats["done_before"] += 1
            if it.name not in reported:
                job.done({**_item_record(it), "status": "ok", "recovered": True, "rank": job.rank,
                          **{k: info[k] for k in _SCORES if k in info}},
                         this_run=False)
    return todo


def check_output_folder(out_dir: str, input_dir: Optional[str] = None, masks_dir: Optional[str] = None,
                        world: int = 1) -> None:
    """Refuse an output folder the job could damage or cannot write, before anything is decoded or sampled: one that
    is a file or lies below one, one that cannot be written, that is the input (or masks) folder, or that holds a
    report or summary this package did not write."""
    check_output_path(out_dir, "--output-dir")  # a file, below a file, or in a folder that cannot be written
    for flag, other in (("--input-dir", input_dir), ("--masks-dir", masks_dir)):
        if other is not None and os.path.isdir(other) and os.path.isdir(out_dir) and same_folder(out_dir, other):
            raise ValueError(f"--output-dir {out_dir} is the {flag} folder: the results would mix with the inputs; "
                             f"choose another folder")
    if not os.path.isdir(out_dir):
        return
    names = ["summary.json"] + (["report.jsonl"] if world == 1 else [f"report.rank{r}.jsonl" for r in range(world)])
    for name in names:
        refuse_foreign(os.path.join(out_dir, name), "report" if name.endswith(".jsonl") else "summary",
                       f"--output-dir {out_dir}: {name} exists and was not written by ddrm-fast; it is not touched "
                       f"(choose another folder)")


def restore_dir(model, betas: torch.Tensor, input_dir: str, out_dir: str, *, task: str, sigma_y: float,
                batch_size: int = 8, manifest: Optional[str] = None, masks_dir: Optional[str] = None,
                observed: bool = False, steps: int = 20, eta: float = 0.85, eta_b: float = 1.0, device="cpu",
                backend: str = "auto", num_workers: int = 2, rank: int = 0, world: int = 1, progress: bool = True,
                sampler: Callable = ddrm_sample, sampler_options: Optional[Dict[str, object]] = None,
                compare: bool = False) -> dict:
    """Restore every image of ``input_dir`` into ``out_dir/<stem>.png`` (this rank's share); returns this rank's
    counts: ``ok``, ``failed``, ``psnr_sum``/``psnr_n``, ``sampler_s``, ``io_s``, ``load_s``, ``seconds``.
    ``sampler_options`` are further ``ddrm_sample`` keywords (``noise``, ``model_dtype``, ``channels_last``,
    ``compile``, ``cuda_graph``). Clean inputs are scored against the task's classical baseline too
    (:func:`ddrm_fast.tasks.baseline`); ``compare`` also writes ``out_dir/compare/<stem>.png`` per image.

    A single process (``world == 1``) holds the output folder's lock for the whole job and first removes the
    temporaries a killed run left; under torchrun the caller does both on rank 0 (see ``ddrm-fast restore``)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size must be an integer >= 1, got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"--num-workers must be an integer >= 0, got {num_workers!r}")
    check_output_folder(out_dir, input_dir, masks_dir, world)
    with FolderLock(out_dir) if world == 1 else contextlib.nullcontext():
        if world == 1:
            remove_own_temporaries(out_dir)
        return _restore_items(model, betas, input_dir, out_dir, task=task, sigma_y=sigma_y, batch_size=batch_size,
                              manifest=manifest, masks_dir=masks_dir, observed=observed, steps=steps, eta=eta,
                              eta_b=eta_b, device=device, backend=backend, num_workers=num_workers, rank=rank,
                              world=world, progress=progress, sampler=sampler, sampler_options=sampler_options,
                              compare=compare)


def _restore_items(model, betas, input_dir, out_dir, *, task, sigma_y, batch_size, manifest, masks_dir, observed,
                   steps, eta, eta_b, device, backend, num_workers, rank, world, progress, sampler,
                   sampler_options, compare) -> dict:
    t_start = time.perf_counter()
    items = plan(input_dir, task=task, sigma_y=sigma_y, manifest=manifest, masks_dir=masks_dir, rank=rank,
                 world=world)
    os.makedirs(out_dir, exist_ok=True)
    report_path = os.path.join(out_dir, "report.jsonl" if world == 1 else f"report.rank{rank}.jsonl")
    job = None
    try:
        with LineLog(report_path) as report:  # a line a killed run left half-written is cut off first
            job = _Job(model, betas, out_dir, observed, steps, eta, eta_b, torch.device(device), backend, report,
                       rank, sampler, dict(sampler_options or {}), compare)
            for it in [i for i in items if i.error]:
                job.fail(it, it.error)
            todo = _finished(out_dir, report_path, [i for i in items if not i.error], job)
            load_s = _sample_all(job, todo, batch_size, observed, getattr(model, "divisor", 1), num_workers,
                                 progress, "restore" if world == 1 else f"restore rank {rank}")
    except DiskFull:
        done = 0 if job is None else job.stats["done_before"] + job.stats["ok"]
        raise DiskFull(out_dir, f"{done} of {len(items)} done; free space and rerun to finish",
                       done=done, total=len(items)) from None
    return dict(job.stats, load_s=load_s, seconds=time.perf_counter() - t_start, todo=len(todo), items=len(items))


def _sample_all(job: _Job, todo: List[Item], batch_size: int, observed: bool, divisor: int, num_workers: int,
                progress: bool, desc: str) -> float:
    """Decode, measure and restore ``todo`` batch by batch; returns the seconds the loaders spent."""
    loader = torch.utils.data.DataLoader(_Batches(_batches(todo, batch_size), observed, divisor), batch_size=None,
                                         shuffle=False, num_workers=num_workers, collate_fn=_identity)
    from tqdm.auto import tqdm

    load_s = 0.0
    with tqdm(total=len(todo), unit="img", desc=desc, disable=not progress) as bar:
        for loaded, seconds in loader:
            load_s += seconds
            measured = []
            for it, data, err in loaded:
                if err is not None:
                    job.fail(it, err)
                    continue
                try:
                    measured.append((it,) + _measure(it, data, observed))
                except Exception as exc:  # noqa: BLE001 - a bad item fails alone, whatever it raised
                    job.fail(it, _reason(exc))
            # one sampler call: a batch shares its task and size; scalar noise levels are broadcast to any maps
            if measured:
                job.run(measured)
            bar.update(len(loaded))
    return load_s


def clean_partial(out_dir: str) -> int:
    """Remove the temporaries a killed run left in ``out_dir`` (only names :func:`ddrm_fast.files.atomic_write`
    makes); returns how many. Call it while holding the folder's lock."""
    return remove_own_temporaries(out_dir)


def summarize(out_dir: str, stats: List[dict], world: int) -> dict:
    """Merge the ranks' counts and reports into ``out_dir/summary.json``; returns the summary."""
    names, failed = {}, {}
    for r in range(world):
        path = os.path.join(out_dir, "report.jsonl" if world == 1 else f"report.rank{r}.jsonl")
        for rec in _report_records(path):
            if rec.get("status") == "ok":
                names[rec["name"]] = rec
                failed.pop(rec["name"], None)
            else:
                failed[rec["name"]] = rec
    psnrs = [r["psnr"] for r in names.values() if "psnr" in r]
    scored = [r for r in names.values() if "psnr" in r and "psnr_baseline" in r]
    seconds = max(s["seconds"] for s in stats)
    done_now = sum(s["ok"] for s in stats)
    summary = {"images": len(names), "failures": len(failed), "failed": sorted(failed),
               "mean_psnr": sum(psnrs) / len(psnrs) if psnrs else None, "scored": len(psnrs),
               # DDRM and the classical baseline over the images scored with both (each line names its baseline)
               "mean_psnr_both": ({"ddrm": sum(r["psnr"] for r in scored) / len(scored),
                                   "baseline": sum(r["psnr_baseline"] for r in scored) / len(scored),
                                   "images": len(scored)} if scored else None),
               "restored_this_run": done_now, "seconds": seconds,
               "images_per_s": done_now / seconds if seconds > 0 else None,
               "sampler_s": sum(s["sampler_s"] for s in stats), "io_s": sum(s["io_s"] for s in stats),
               "load_s": sum(s["load_s"] for s in stats)}
    write_text(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=1))
    return summary
