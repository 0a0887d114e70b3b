"""The network's speed, side by side in one run: float32 eager (the original's way, ``--exact``) against the automatic
choice (``ddrm_fast.speed.auto``), end to end, and the quality both give on the held-out photos.

    python benchmarks/bench_auto.py [--model PATH] [--steps 20] [--folder-images 16] [--out FILE]

1. Quality: the held-out photos (``ddrm_fast.training.HELDOUT_PHOTOS``), tasks sr4, deno, inp, color, deblur_uni at
   sigma_y 0.05, seed 0, x0 clipped (the command line's defaults), restored both ways (the automatic way is chosen per
   task: float32 for ``speed.PRECISE_TASKS``): PSNR of each against the clean photo and the difference; and the
   largest difference of the network's eps between float32 and bfloat16.
2. Speed: ``ddrm-fast restore``'s pipeline on one 256x256 photo (astronaut, sr4, batch 1) and a folder job of
   256x256 images at batch 8, both ways: images/s, the network's share of the time (the same loop with a zero
   network times the rest), the network's FLOP rate against the GEMM rate of its precision measured in this run.
Prints the tables (Markdown) and appends them to ``--out``.
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

import torch

from ddrm_fast import batch, probes, restoration, speed
from ddrm_fast.cli.options import load_model
from ddrm_fast.imageio import write_png
from ddrm_fast.training import HELDOUT_PHOTOS, heldout_photos

TASKS = ("sr4", "deno", "inp", "color", "deblur_uni")


class _NullEps(torch.nn.Module):
    def forward(self, x, t):
        return torch.zeros_like(x)


def quality(model, betas, steps) -> list:
    """Rows (photo, task, the automatic way, {"exact": PSNR, "auto": PSNR}) on the held-out photos."""
    rows = []
    for name, clean in zip(HELDOUT_PHOTOS, heldout_photos()):
        for task in TASKS:
            m = restoration.measure(task, clean, sigma_y=0.05, seed=0)
            chosen = speed.auto(torch.device("cpu"), task)
            psnr = {}
            for key, way in (("exact", speed.EXACT), ("auto", chosen)):
                settings = way.settings(restoration.Settings(steps=steps, clip_x0=True))
                x = restoration.restore(way.prepare(copy.deepcopy(model)), betas, [m], settings)[0]
                psnr[key] = restoration.score(m, x).psnr
            rows.append((name, task, chosen, psnr))
            print(name, task, chosen.name, {k: round(v, 3) for k, v in psnr.items()}, flush=True)
    return rows


def eps_difference(model, ways) -> float:
    """The largest |eps| difference between the ways on the held-out photos, noised at t = 50, 500, 950."""
    worst = 0.0
    for clean in heldout_photos():
        for t in (50.0, 500.0, 950.0):
            x = clean[None] + 0.5 * torch.randn_like(clean[None])
            with torch.no_grad():
                outs = [way.network(copy.deepcopy(model), torch.device("cpu"))(x, torch.tensor([t])).float()[:, :3]
                        for way in ways]
            worst = max(worst, float((outs[0] - outs[1]).abs().max()))
    return worst


def one_image(model, betas, way, steps, repeats=3) -> dict:
    """Seconds per image of the pipeline on the astronaut (sr4, 256x256), and of the same loop with a zero network."""
    clean = heldout_photos()[0][:, :256, :256]
    m = restoration.measure("sr4", clean, sigma_y=0.05, seed=0)
    settings = way.settings(restoration.Settings(steps=steps, clip_x0=True))
    net = way.prepare(copy.deepcopy(model))  # the model as loaded stays as it is for the other way

    def run(mdl):
        restoration.restore(mdl, betas, [m], settings)

    run(net)
    total = min(_time(lambda: run(net)) for _ in range(repeats))
    rest = min(_time(lambda: run(_NullEps())) for _ in range(repeats))
    return {"seconds": total, "network_s": total - rest}


def folder_job(model, betas, way, steps, images) -> dict:
    """Seconds per image of a folder job at batch 8 over ``images`` 256x256 crops of the held-out photos."""
    photos = heldout_photos()
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "in")
        os.makedirs(inp)
        for i in range(images):
            photo = photos[i % len(photos)]
            left = (i * 37) % max(1, photo.shape[2] - 255)
            write_png(photo[:, :256, left:left + 256], os.path.join(inp, f"img{i:03d}.png"))
        settings = way.settings(restoration.Settings(steps=steps, clip_x0=True))
        spec = batch.FolderJob(inp, os.path.join(tmp, "out"), "sr4", batch_size=8, num_workers=1, progress=False,
                               settings=settings)
        t0 = time.perf_counter()
        stats = batch.restore_dir(way.prepare(copy.deepcopy(model)), betas, spec)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds / stats["ok"], "network_s": None}


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="default: the embedded model")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--folder-images", type=int, default=16)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    cpu = torch.device("cpu")
    model, betas = load_model(args.model, cpu)
    exact, auto = speed.EXACT, speed.auto(cpu, "sr4")
    ways = (exact, auto)
    timer = probes.timer(cpu)
    gemm = {exact.name: probes.matmul_tflops(cpu, timer, torch.float32),
            auto.name: probes.matmul_tflops(cpu, timer, auto.model_dtype or torch.float32)}
    flops = probes.forward_flops(model, torch.zeros(1, 3, 256, 256))
    lines = [f"{time.strftime('%Y-%m-%d')}, CPU ({os.cpu_count()} cores; bfloat16 instructions: "
             f"{speed.cpu_has_bf16()}), torch {torch.__version__}; model {args.model or 'embedded'}; "
             f"{args.steps} steps; "
             f"automatic choice: {auto.describe()}.", "",
             "| run | way | images/s | speed-up | network share | network GFLOP/s (of its GEMM rate) |",
             "|---|---|---|---|---|---|"]
    for label, measure in (("one image, 256x256, batch 1", lambda w: one_image(model, betas, w, args.steps)),
                           (f"folder job, {args.folder_images} images of 256x256, batch 8",
                            lambda w: folder_job(model, betas, w, args.steps, args.folder_images))):
        results = {w.name: measure(w) for w in ways}
        for w in ways:
            r = results[w.name]
            share = "" if r["network_s"] is None else f"{100 * r['network_s'] / r['seconds']:.0f}%"
            rate = "" if r["network_s"] is None else (
                f"{flops * args.steps / r['network_s'] / 1e9:.0f} "
                f"({100 * flops * args.steps / r['network_s'] / 1e12 / gemm[w.name]:.0f}%)")
            lines.append(f"| {label} | {w.describe()} | {1 / r['seconds']:.3f} | "
                         f"{results[exact.name]['seconds'] / r['seconds']:.2f}x | {share} | {rate} |")
            print(lines[-1], flush=True)
    rows = quality(model, betas, args.steps)
    lines += ["", "| photo | task | float32 eager PSNR | automatic choice | its PSNR | difference (dB) |",
              "|---|---|---|---|---|---|"]
    worst = 0.0
    for name, task, chosen, psnr in rows:
        diff = psnr["auto"] - psnr["exact"]
        worst = max(worst, abs(diff))
        lines.append(f"| {name} | {task} | {psnr['exact']:.3f} | {chosen.describe()} | {psnr['auto']:.3f} | "
                     f"{diff:+.3f} |")
    lines += ["", f"Largest PSNR difference: {worst:.3f} dB; largest eps difference between the ways: "
                  f"{eps_difference(model, ways):.4f} (eps is unit-variance noise). GEMM rates measured in this run: "
                  f"float32 {gemm[exact.name] * 1000:.0f} GFLOP/s, {auto.describe().split(',')[0]} "
                  f"{gemm[auto.name] * 1000:.0f} GFLOP/s."]
    probes.publish(lines, args.out, append=True)


if __name__ == "__main__":
    main()
