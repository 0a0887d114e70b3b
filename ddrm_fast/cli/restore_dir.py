"""`ddrm-fast restore --input-dir`: a data set, one process or many (torchrun: one rank per GPU or CPU process)."""
from __future__ import annotations

import os
import sys
from typing import Optional

import torch
import torch.distributed as dist

from .. import batch
from ..files import DiskFull, FolderLock
from ..schedules import ddrm_timesteps
from .options import announce, automatic, choose_device, load_model, network_way, settings, task_options


def _distributed():
    """(rank, world, local_rank) from torchrun's environment, the process group initialised when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), local


def _check_folders(args) -> None:
    """The folders and the manifest the command names, before a model is loaded or an image is read."""
    if not os.path.isdir(args.input_dir):
        raise ValueError(f"--input-dir {args.input_dir}: no such folder")
    if args.masks_dir is not None and not os.path.isdir(args.masks_dir):
        raise ValueError(f"--masks-dir {args.masks_dir}: no such folder")
    if args.manifest is not None:
        batch.read_manifest(args.manifest)  # a file that is no manifest at all is a bad invocation; bad entries are not


def _lock_on_rank0(out: str, rank: int, world: int) -> Optional[FolderLock]:
    """Rank 0 locks the output folder for the whole job (summary included) and, under torchrun, removes the
    temporaries a killed run left (a single process's restore_dir does that itself); every rank learns whether it
    could, so all stop together when another job holds the folder."""
    lock, error = None, None
    if rank == 0:
        try:
            lock = FolderLock(out)
            lock.acquire()
            if world > 1:
                batch.clean_partial(out)
        except (ValueError, DiskFull) as exc:
            if lock is not None:
                lock.release()
            lock, error = None, exc
    if world > 1:
        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error is not None:
        raise error
    return lock


def main(args) -> int:
    _check_folders(args)
    rank, world, local = _distributed()
    lock = None
    try:
        batch.check_output_folder(args.out, args.input_dir, args.masks_dir, world)
        device = choose_device(args.device, local)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        way = network_way(args, device)
        spec = batch.FolderJob(args.input_dir, args.out, args.task, sigma_y=args.sigma_y, batch_size=args.batch_size,
                               manifest=args.manifest, masks_dir=args.masks_dir, observed=args.observed,
                               num_workers=args.num_workers, rank=rank, world=world, progress=not args.no_progress,
                               compare=args.compare is not None, device=device,
                               settings=settings(args, device, way=way), network_per_task=automatic(args),
                               options=task_options(args, manifest=args.manifest is not None), samples=args.samples)
        model, betas = load_model(args.model, device, args.class_label)
        way.prepare(model)  # channels_last weights, once
        ddrm_timesteps(args.steps, len(betas))  # more steps than the schedule has: refused before any image
        lock = _lock_on_rank0(args.out, rank, world)
        if world > 1:
            dist.barrier()
        if rank == 0:
            announce(args, way, device, per_task=True)
        try:
            stats = batch.restore_dir(model, betas, spec)
        except DiskFull as exc:
            if world == 1:
                raise
            stats = {"disk_full": (exc.done or 0, exc.total or 0)}  # every rank reaches the gather
        all_stats = [stats]
        if world > 1:
            all_stats = [None] * world
            dist.all_gather_object(all_stats, stats)
        return _finish(args.out, all_stats, rank, world)
    finally:
        if lock is not None:
            lock.release()
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _finish(out: str, all_stats: list, rank: int, world: int) -> int:
    """The job's last word, from rank 0: the summary and its line, or, when a rank found the disk full, the counts of
    all ranks in one line (no summary: the rerun writes it). Exit code 1 when anything failed."""
    if any("disk_full" in s for s in all_stats):
        done = sum(s["disk_full"][0] if "disk_full" in s else s["done_before"] + s["ok"] for s in all_stats)
        total = sum(s["disk_full"][1] if "disk_full" in s else s["items"] for s in all_stats)
        if rank == 0:
            raise DiskFull(out, f"{done} of {total} done; free space and rerun to finish")
        return 1
    failed_now = sum(s["failed"] for s in all_stats)
    if rank == 0:
        s = batch.summarize(out, all_stats, world)
        psnr = "n/a" if s["mean_psnr"] is None else f"{s['mean_psnr']:.2f} dB over {s['scored']} images"
        if s["mean_psnr_both"] is not None:
            both = s["mean_psnr_both"]
            psnr += (f" (DDRM {both['ddrm']:.2f} dB vs baseline {both['baseline']:.2f} dB, "
                     f"{both['ddrm'] - both['baseline']:+.2f} dB, over {both['images']})")
        rate = "n/a" if s["images_per_s"] is None else f"{s['images_per_s']:.2f}"
        print(f"{s['images']} images restored ({s['restored_this_run']} this run), {failed_now} failed, "
              f"mean PSNR {psnr}, {rate} images/s; summary in {os.path.join(out, 'summary.json')}")
        sys.stdout.flush()
    return 1 if failed_now else 0
