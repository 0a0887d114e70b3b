"""`ddrm-fast restore --input-dir`: a data set, one process or many (torchrun: one rank per GPU or CPU process)."""
from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

from .. import batch


def _distributed():
    """(rank, world, local_rank) from torchrun's environment, the process group initialised when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), local


def main(args) -> int:
    from .restore import load_model, sampler_options

    if args.mask is not None:
        raise ValueError("--mask is for one image; give --masks-dir with --input-dir")
    rank, world, local = _distributed()
    try:
        if args.device:
            device = torch.device(args.device)
        elif torch.cuda.is_available():
            device = torch.device("cuda", local % torch.cuda.device_count())
        else:
            device = torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        options = sampler_options(args, device)
        model, betas = load_model(args.model, device, args.class_label)
        if rank == 0:
            batch.clean_partial(args.out)  # temporary files of a killed run
        if world > 1:
            dist.barrier()
        stats = batch.restore_dir(model, betas, args.input_dir, args.out, task=args.task, sigma_y=args.sigma_y,
                                  batch_size=args.batch_size, manifest=args.manifest, masks_dir=args.masks_dir,
                                  observed=args.observed, steps=args.steps, eta=args.eta, eta_b=args.eta_b,
                                  device=device, backend=args.backend, num_workers=args.num_workers, rank=rank,
                                  world=world, progress=not args.no_progress,
                                  sampler_options=options)
        all_stats = [stats]
        if world > 1:
            all_stats = [None] * world
            dist.all_gather_object(all_stats, stats)
        failed_now = sum(s["failed"] for s in all_stats)
        if rank == 0:
            s = batch.summarize(args.out, all_stats, world)
            psnr = "n/a" if s["mean_psnr"] is None else f"{s['mean_psnr']:.2f} dB"
            rate = "n/a" if s["images_per_s"] is None else f"{s['images_per_s']:.2f}"
            print(f"{s['images']} images restored ({s['restored_this_run']} this run), {failed_now} failed, "
                  f"mean PSNR {psnr}, {rate} images/s; summary in {os.path.join(args.out, 'summary.json')}")
            sys.stdout.flush()
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return 1 if failed_now else 0
