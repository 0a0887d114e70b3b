"""Directory restoration throughput: images/s per batch size, peak memory, and the share of time outside the sampler.

    python benchmarks/bench_batch.py --device cuda --images 256 --size 256 --batch 1,8,32      # the GPU table
    python benchmarks/bench_batch.py --device cpu --images 16 --size 64 --batch 1,8            # a small CPU set
    python benchmarks/bench_batch.py --dtype bfloat16 --channels-last --cuda-graph --noise philox   # the fast path

Builds a folder of ``--images`` crops of scikit-image's photos (``--size`` square), then runs the same job as
``ddrm-fast restore --input-dir`` (``ddrm_fast.batch.restore_dir``: DataLoader workers decode, one sampler call per
batch, atomic PNG writes, PSNR/SSIM against the clean image, the report) once per batch size into a fresh folder.
"Outside the sampler" is everything but the sampler calls: planning, decoding, measuring, encoding, scoring, writing.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from ddrm_fast import batch
from ddrm_fast.imageio import write_png
from ddrm_fast.cli.restore import add_quality_arguments, add_speed_arguments, load_model, sampler_options
from ddrm_fast.restoration import Settings
from ddrm_fast.training import HELDOUT_PHOTOS, TRAIN_PHOTOS, skimage_photos


def make_folder(folder: str, n: int, size: int, seed: int = 0) -> None:
    photos = skimage_photos(HELDOUT_PHOTOS + TRAIN_PHOTOS)
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        img = photos[i % len(photos)]
        scale = size / min(img.shape[-2:]) * (1 + float(torch.rand((), generator=g)))
        img = F.interpolate(img[None], scale_factor=scale, mode="bilinear", antialias=True)[0]
        top = int(torch.randint(img.shape[1] - size + 1, (1,), generator=g))
        left = int(torch.randint(img.shape[2] - size + 1, (1,), generator=g))
        write_png(img[:, top:top + size, left:left + size], os.path.join(folder, f"img{i:04d}.png"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", default=None, help="default: the embedded model")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", default="1,8,32")
    p.add_argument("--task", default="sr4")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--out", default=None, help="Markdown file to append the table to (default: print only)")
    add_quality_arguments(p)  # the options of `ddrm-fast restore`
    add_speed_arguments(p)
    args = p.parse_args()
    device = torch.device(args.device)
    settings = Settings(steps=args.steps, **sampler_options(args, device))  # the command's speed and quality options
    model, betas = load_model(args.model, device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "in")
        os.makedirs(inp)
        make_folder(inp, args.images, args.size)
        for bs in (int(b) for b in args.batch.split(",")):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            out = os.path.join(tmp, f"out{bs}")
            t0 = time.perf_counter()
            spec = batch.FolderJob(inp, out, args.task, sigma_y=0.05, batch_size=bs, num_workers=args.workers,
                                   progress=False, device=device, settings=settings)
            s = batch.restore_dir(model, betas, spec)
            wall = time.perf_counter() - t0
            peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                    else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            rows.append((bs, s["ok"] / wall, 1000 * s["sampler_s"] / s["ok"], 1 - s["sampler_s"] / wall, peak,
                         s["psnr_sum"] / max(1, s["psnr_n"])))
            print(f"batch {bs:3d}: {rows[-1][1]:7.2f} img/s, sampler {rows[-1][2]:8.1f} ms/img, outside sampler "
                  f"{100 * rows[-1][3]:5.1f}%, peak {peak:8.0f} MiB, PSNR {rows[-1][5]:.2f}", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    mem = "peak GPU MiB (allocated)" if device.type == "cuda" else "peak RSS MiB"
    lines = [f"{time.strftime('%Y-%m-%d')}, {name}, torch {torch.__version__}, {args.images} images of "
             f"{args.size}x{args.size}, task {args.task}, {args.steps} steps, {args.workers} workers, model "
             f"{args.model or 'embedded'}; " + ", ".join(f"{k}={v}" for k, v in settings.sampler_kwargs().items()), "",
             f"| batch | images/s | sampler ms/image | time outside the sampler | {mem} | mean PSNR |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {b} | {r:.2f} | {ms:.1f} | {100 * o:.1f}% | {m:.0f} | {q:.2f} |" for b, r, ms, o, m, q in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    sys.exit(main())
