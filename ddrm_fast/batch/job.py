"""A folder job run: its settings record (:class:`FolderJob`), the loader that decodes batches in worker processes,
and the job itself: measure each batch (:mod:`ddrm_fast.restoration`), sample it, score and write each image, report
it; a batch that runs out of GPU memory is split in halves and retried, down to single images; a full disk stops the
job with its counts."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Union

import torch

from .. import restoration, speed, tasks
from ..figures import comparison_panels, std_panel, write_comparison, write_std
from ..files import DiskFull, FolderLock, LineLog, is_disk_full, read_npy, refuse_foreign, remove_own_temporaries
from ..imageio import read_image, read_mask, write_png
from ..restoration import Measurement, Settings
from .plan import Item, batches, plan, reason
from .report import check_output_folder, item_record, png_info, report_name, resume

__all__ = ["FolderJob", "Job", "restore_dir", "clean_partial"]


@dataclass(frozen=True)
class FolderJob:
    """Everything a folder job is asked to do, in one record: built once (``ddrm-fast restore --input-dir`` builds it
    from its arguments) and passed whole. ``settings`` is how DDRM samples (:class:`ddrm_fast.restoration.Settings`);
    ``rank``/``world`` are this process's place in a torchrun job."""

    input_dir: str
    out_dir: str
    task: str
    sigma_y: float = 0.05
    batch_size: int = 8
    manifest: Optional[str] = None
    masks_dir: Optional[str] = None
    observed: bool = False
    num_workers: int = 2
    rank: int = 0
    world: int = 1
    progress: bool = True
    #: also write OUT/compare/<stem>.png (clean | degraded | baseline | DDRM) per image
    compare: bool = False
    device: Union[str, torch.device] = "cpu"
    settings: Settings = Settings()
    #: run the network as :func:`ddrm_fast.speed.auto` chooses for each batch's task (the command line's default)
    network_per_task: bool = False
    #: the blur kernel of ``deblur``, the scale and 1-D kernel of ``resize``
    options: tasks.Options = tasks.Options()
    #: K > 1: each image's output is the mean of K posterior samples, its spread OUT/std/<stem>.png
    samples: int = 1

    def __post_init__(self):
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"--batch-size must be an integer >= 1, got {self.batch_size!r}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise ValueError(f"--samples must be an integer >= 1, got {self.samples!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"--num-workers must be an integer >= 0, got {self.num_workers!r}")
        if self.settings.progress:  # the job's bar counts images; a per-step bar would interleave with it
            object.__setattr__(self, "settings", dataclasses.replace(self.settings, progress=False))


# --- loading: runs in the DataLoader's worker processes --------------------------------------------------------------
class _Batches(torch.utils.data.Dataset):
    """Batch i: its items decoded (image, mask, noise map) or each with the reason it cannot be used."""

    def __init__(self, batches: List[List[Item]], observed: bool, divisor: int, options: tasks.Options):
        self.batches, self.observed, self.divisor, self.options = batches, observed, divisor, options

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        t0 = time.perf_counter()
        out = []
        for it in self.batches[i]:
            try:
                out.append((it, self._load(it), None))
            except Exception as exc:  # noqa: BLE001 - whatever an item raises (MemoryError too) is its own failure
                out.append((it, None, reason(exc)))
        return out, time.perf_counter() - t0

    def _load(self, it: Item) -> dict:
        img = read_image(it.path, tasks.input_modes(it.task, self.observed), what="image")
        _, h, w = img.shape
        d = tasks.task_divisor(it.task)
        if not self.observed and (h % d or w % d):
            raise ValueError(f"size {w}x{h} is not divisible by the ratio {d} of task {it.task}")
        out_h, out_w = tasks.restored_size(it.task, h, w, self.observed, self.options)
        restoration.check_size(self.divisor, out_h, out_w)
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


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


@dataclass
class Job:
    """A running folder job: it samples groups of measured items, writes and reports each image."""

    model: Callable
    betas: torch.Tensor
    spec: FolderJob
    report: LineLog
    sampler: Optional[Callable] = None
    stats: Dict[str, float] = field(default_factory=lambda: {"ok": 0, "failed": 0, "psnr_sum": 0.0, "psnr_n": 0,
                                                             "sampler_s": 0.0, "io_s": 0.0, "done_before": 0})

    @property
    def rank(self) -> int:
        return self.spec.rank

    def log(self, rec: dict) -> None:
        self.report.write(json.dumps(rec))  # a whole line or, on a full disk, nothing and DiskFull

    def fail(self, it: Item, why: str) -> None:
        self.stats["failed"] += 1
        self.log({**item_record(it), "status": "error", "error": why, "rank": self.rank})
        print(f"ddrm-fast: {it.name}: {why}", file=sys.stderr, flush=True)

    def run(self, group: List[tuple]) -> None:
        """Sample one group of measured items [(item, measurement)], splitting on OOM."""
        try:
            t0 = time.perf_counter()
            settings = self.spec.settings
            if self.spec.network_per_task:  # the batch's task decides (float32 where the network invents most)
                settings = speed.auto(torch.device(self.spec.device), group[0][0].task).settings(settings)
            x, spreads = self.sample(group, settings)
            seconds = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - OOM splits; anything else fails these items, the job goes on
            if is_disk_full(exc):
                raise
            if _is_oom(exc):
                if torch.device(self.spec.device).type == "cuda":
                    torch.cuda.empty_cache()
                if len(group) > 1:  # the halves restart their measurements' streams: the same noise
                    half = len(group) // 2
                    self.run(group[:half])
                    self.run(group[half:])
                    return
                self.fail(group[0][0], "out of memory even alone")
                return
            for it, _ in group:
                self.fail(it, f"sampling failed: {type(exc).__name__}: {exc}")
            return
        self.stats["sampler_s"] += seconds
        t1 = time.perf_counter()
        for (it, m), xi, std in zip(group, x, spreads):
            rec = {**item_record(it), "status": "ok", "seconds": seconds / len(group), "batch": len(group),
                   "rank": self.rank}
            if std is not None:
                rec["samples"] = self.spec.samples
            try:  # the scores travel inside the PNG: a resumed job reports them even if this line is cut off
                panels = self.score(rec, it, m, xi)
                if std is not None:  # first: the restoration's PNG marks the item done
                    panels = self.write_std(it, std, panels)
                if panels:
                    self.write_comparison(it, panels)
                write_png(xi, os.path.join(self.spec.out_dir, it.stem + ".png"), png_info(rec))
            except Exception as exc:  # noqa: BLE001 - this image fails; nothing partial stays behind
                if is_disk_full(exc):
                    raise  # not this image's fault: the job stops, everything finished stays
                self.fail(it, f"could not write {it.stem}.png: {reason(exc)}")
                continue
            self.done(rec)
        self.stats["io_s"] += time.perf_counter() - t1

    def sample(self, group: List[tuple], settings) -> tuple:
        """(restorations, per-image standard deviations or Nones): one sampler call for the group, or with
        ``samples`` K > 1 each image's K samples in chunks of the batch size (:func:`restoration.posterior`)."""
        measurements = [m for _, m in group]
        if self.spec.samples == 1:
            x = restoration.restore(self.model, self.betas, measurements, settings, self.spec.device,
                                    sampler=self.sampler)
            return x, [None] * len(group)
        stats = [restoration.posterior(self.model, self.betas, m, settings, self.spec.device, self.spec.samples,
                                       chunk=self.spec.batch_size, sampler=self.sampler) for m in measurements]
        return torch.cat([s.mean for s in stats]), [s.std[0] for s in stats]

    def write_std(self, it: Item, std: torch.Tensor, panels: list) -> list:
        """OUT/std/<stem>.png, the posterior's spread with its scale (unless a file this package did not write is
        there); returns the comparison panels with the spread's added when there are any."""
        path = os.path.join(self.spec.out_dir, "std", it.stem + ".png")
        refuse_foreign(path, "png", f"std/{it.stem}.png exists and was not written by ddrm-fast; not overwritten")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_std(std, path, dict(png_info(item_record(it)), samples=self.spec.samples))
        return panels + [std_panel(std, self.spec.samples)] if panels else panels

    def score(self, rec: dict, it: Item, m: Measurement, xi: torch.Tensor) -> list:
        """Add the PSNR/SSIM of the restoration and of the task's classical baseline (bicubic, Wiener or the
        pseudo-inverse) to ``rec`` when the clean image is known; returns the comparison figure's panels when
        ``compare`` asks for one (else [])."""
        if m.clean is None and not self.spec.compare:
            return []
        base = restoration.baseline(m)
        scores = restoration.score(m, xi, base)
        if scores is not None:
            rec.update(scores._asdict())
        if not self.spec.compare:
            return []
        return comparison_panels(m.clean, restoration.view(m), base[0], base[1], xi,
                                 f"({it.task}, sigma_y {it.sigma_y:g})")

    def write_comparison(self, it: Item, panels: list) -> None:
        """OUT/compare/<stem>.png, unless a file this package did not write is there."""
        path = os.path.join(self.spec.out_dir, "compare", it.stem + ".png")
        refuse_foreign(path, "png", f"compare/{it.stem}.png exists and was not written by ddrm-fast; not overwritten")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_comparison(panels, path, png_info(item_record(it)))

    def done(self, rec: dict, this_run: bool = True) -> None:
        """Report a finished image (``this_run`` False: one a killed run finished, recovered now)."""
        self.stats["ok"] += int(this_run)
        if this_run and "psnr" in rec:
            self.stats["psnr_sum"] += rec["psnr"]
            self.stats["psnr_n"] += 1
        self.log(rec)


def _identity(batch):
    return batch


def restore_dir(model, betas: torch.Tensor, spec: FolderJob, sampler: Optional[Callable] = None) -> dict:
    """Restore every image of ``spec.input_dir`` into ``spec.out_dir/<stem>.png`` (this rank's share); returns this
    rank's counts: ``ok``, ``failed``, ``psnr_sum``/``psnr_n``, ``sampler_s``, ``io_s``, ``load_s``, ``seconds``,
    ``items``, ``done_before``. Clean inputs are scored against the task's classical baseline too
    (:func:`ddrm_fast.tasks.baseline`); ``spec.compare`` also writes ``out_dir/compare/<stem>.png`` per image.
    ``sampler``: a stand-in for :func:`ddrm_fast.ddrm_sample` (tests, benchmarks).

    A single process (``world == 1``) holds the output folder's lock for the whole job and first removes the
    temporaries a killed run left; under torchrun the caller does both on rank 0 (see ``ddrm-fast restore``). A full
    disk raises :class:`~ddrm_fast.files.DiskFull` with this rank's counts of images done and of all."""
    check_output_folder(spec.out_dir, spec.input_dir, spec.masks_dir, spec.world)
    with FolderLock(spec.out_dir) if spec.world == 1 else contextlib.nullcontext():
        if spec.world == 1:
            remove_own_temporaries(spec.out_dir)
        return _restore_items(model, betas, spec, sampler)


def _restore_items(model, betas: torch.Tensor, spec: FolderJob, sampler: Optional[Callable]) -> dict:
    t_start = time.perf_counter()
    items = plan(spec.input_dir, task=spec.task, sigma_y=spec.sigma_y, manifest=spec.manifest,
                 masks_dir=spec.masks_dir, rank=spec.rank, world=spec.world)
    os.makedirs(spec.out_dir, exist_ok=True)
    report_path = os.path.join(spec.out_dir, report_name(spec.rank, spec.world))
    job = None
    try:
        with LineLog(report_path) as report:  # a line a killed run left half-written is cut off first
            job = Job(model, betas, spec, report, sampler)
            for it in [i for i in items if i.error]:
                job.fail(it, it.error)
            state = resume(spec.out_dir, report_path, [i for i in items if not i.error], spec.rank)
            for it, why in state.foreign:
                job.fail(it, why)
            job.stats["done_before"] = state.finished
            for rec in state.recovered:
                job.done(rec, this_run=False)
            todo = state.todo
            load_s = _sample_all(job, todo, restoration.model_divisor(model))
    except DiskFull:
        done = 0 if job is None else job.stats["done_before"] + job.stats["ok"]
        raise DiskFull(spec.out_dir, f"{done} of {len(items)} done; free space and rerun to finish",
                       done=done, total=len(items)) from None
    return dict(job.stats, load_s=load_s, seconds=time.perf_counter() - t_start, todo=len(todo), items=len(items))


def _sample_all(job: Job, todo: List[Item], divisor: int) -> float:
    """Decode, measure and restore ``todo`` batch by batch; returns the seconds the loaders spent."""
    spec = job.spec
    loader = torch.utils.data.DataLoader(_Batches(batches(todo, spec.batch_size), spec.observed, divisor, spec.options),
                                         batch_size=None, shuffle=False, num_workers=spec.num_workers,
                                         collate_fn=_identity)
    from tqdm.auto import tqdm

    load_s = 0.0
    desc = "restore" if spec.world == 1 else f"restore rank {spec.rank}"
    with tqdm(total=len(todo), unit="img", desc=desc, disable=not spec.progress) as bar:
        for loaded, seconds in loader:
            load_s += seconds
            measured = []
            for it, data, err in loaded:
                if err is not None:
                    job.fail(it, err)
                    continue
                try:  # the same measurement as the one-image command: a given seed gives the same restoration
                    measured.append((it, restoration.measure(it.task, data["image"], sigma_y=it.sigma_y,
                                                             seed=it.seed, observed=spec.observed,
                                                             mask=data["mask"], noise_map=data["noise"],
                                                             options=spec.options)))
                except Exception as exc:  # noqa: BLE001 - a bad item fails alone, whatever it raised
                    job.fail(it, reason(exc))
            if measured:  # one sampler call: a batch shares its task and size
                job.run(measured)
            bar.update(len(loaded))
    return load_s


def clean_partial(out_dir: str) -> int:
    """Remove the temporaries a killed run left in ``out_dir`` (only names :func:`ddrm_fast.files.atomic_write`
    makes); returns how many. Call it while holding the folder's lock."""
    return remove_own_temporaries(out_dir)
