"""The drop-in loop's speed: compat.efficient_generalized_steps on the fused backend against the same loop on the
reference backend (the plain-PyTorch loop over the original's V and V^T), side by side in one run.

    python benchmarks/bench_compat.py [--device cpu] [--sizes 64,256] [--batches 1,8] [--steps 20] [--out FILE.md]

Update alone: the model returns a fixed tensor, so the time is the DDRM loop itself (the original's random draws,
its transforms or the one-pass step); the original's tasks deno, inp, sr4, color, deblur_uni, sr_bicubic4. End to end:
the embedded model, batch 1. Both paths draw the same numbers (same seed), and the table shows how far apart their
results are (max |difference| over max |reference|), so a faster path that computed something else would show.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from ddrm_fast import compat
from ddrm_fast.models import default_model
from ddrm_fast.schedules import linear_betas

TASKS = ("deno", "inp", "sr4", "color", "deblur_uni", "sr_bicubic4")
GROUP = ("deno", "inp", "sr4", "color")


def loop_time(H, x, y, model, steps: int, backend: str, repeats: int, device) -> tuple:
    """(median seconds of the whole loop, its final image) with the draws of seed 0."""
    betas = linear_betas().to(device)
    seq = range(0, 1000, 1000 // steps)

    def run():
        torch.manual_seed(0)
        return compat.efficient_generalized_steps(x, seq, model, betas, H, y, 0.1, etaB=1.0, etaA=0.85, etaC=0.85,
                                                  backend=backend)[0][-1]

    out = run()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def problem(task: str, size: int, batch: int, device):
    """The original runner's operator for ``task`` and a measurement of random images."""
    torch.manual_seed(1)
    H = compat.runner_operator(task, 3, size, device)
    x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    y = H.H(x)
    return H, y + 0.1 * torch.randn_like(y), torch.randn(batch, 3, size, size, device=device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", default="64,256")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--e2e-sizes", default="64,256", help="sizes of the end-to-end rows (batch 1, embedded model)")
    p.add_argument("--out", default=None, help="Markdown file to append the tables to")
    args = p.parse_args()
    device = torch.device(args.device)
    fused = "auto"
    rows = []
    for size in (int(s) for s in args.sizes.split(",") if s):
        for batch in (int(b) for b in args.batches.split(",")):
            for task in TASKS:
                H, y, x = problem(task, size, batch, device)
                eps = torch.randn(x.shape, device=device) * 0.5  # update alone: a network that costs nothing

                def fixed(x_t, t, eps=eps):
                    return eps

                ref, ref_out = loop_time(H, x, y, fixed, args.steps, "reference", args.repeats, device)
                fast, fast_out = loop_time(H, x, y, fixed, args.steps, fused, args.repeats, device)
                rows.append(("update", size, batch, task, ref, fast, _rel(fast_out, ref_out)))
                print(_line(rows[-1], args.steps), flush=True)
    model = default_model(device).model
    for size in (int(s) for s in args.e2e_sizes.split(",") if s):
        for task in TASKS:
            H, y, x = problem(task, size, 1, device)
            ref, ref_out = loop_time(H, x, y, model, args.steps, "reference", 1, device)
            fast, fast_out = loop_time(H, x, y, model, args.steps, fused, 1, device)
            rows.append(("embedded model", size, 1, task, ref, fast, _rel(fast_out, ref_out)))
            print(_line(rows[-1], args.steps), flush=True)
    table = _table(rows, args, device)
    print(table)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + table)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: how far the fused result is from the reference's, relative to its size."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def _line(row, steps: int) -> str:
    kind, size, batch, task, ref, fast, diff = row
    path = "one-pass group step" if task in GROUP else "fused spectral step"
    return (f"{kind:15s} {size:4d}px B={batch:2d} {task:12s} reference {1000 * ref / steps:8.2f} ms/step  fused "
            f"{1000 * fast / steps:8.2f} ms/step  {ref / fast:5.2f}x  ({path}; relative difference {diff:.1e})")


def _table(rows, args, device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    head = (f"{time.strftime('%Y-%m-%d')}, {name}, torch {torch.__version__}; compat.efficient_generalized_steps, "
            f"{args.steps} steps, the original's draws (seed 0), eta 0.85, etaB 1.0, sigma_0 0.1; median of "
            f"{args.repeats} after a warm-up (end to end: one run)")
    lines = [head, "", "| loop | size | batch | task | path | reference ms/step | fused ms/step | speed-up | "
             "relative difference |", "|---|---|---|---|---|---|---|---|---|"]
    for kind, size, batch, task, ref, fast, diff in rows:
        path = "group" if task in GROUP else "spectral"
        lines.append(f"| {kind} | {size} | {batch} | {task} | {path} | {1000 * ref / args.steps:.2f} | "
                     f"{1000 * fast / args.steps:.2f} | {ref / fast:.2f}x | {diff:.1e} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
