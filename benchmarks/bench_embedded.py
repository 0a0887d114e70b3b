"""Sampling time of embedded-model candidates, side by side in one run: one 256x256 image, sr4 at sigma_y 0.05,
20 DDRM steps, on the CPU (the budget of the embedded model: at most twice the time of the one it replaces).

    python benchmarks/bench_embedded.py MODEL [MODEL ...] [--repeats 5]

The models are timed in turn, repeat after repeat (interleaved, so that a busy machine slows them alike); the
table gives each one's median seconds, parameters, file size and its ratio to the first model.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from ddrm_fast import ddrm_sample, tasks
from ddrm_fast.models import load


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="model files; the first is the reference of the ratio")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args()
    loaded = [load(path) for path in args.models]
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 3, args.size, args.size, generator=g) * 2 - 1
    op = tasks.make_operator("sr4", clean.shape[1:])
    y = tasks.degrade(clean, op, 0.1, g)
    times = [[] for _ in loaded]
    for r in range(args.repeats + 1):  # the first round warms up
        for i, (model, betas) in enumerate(loaded):
            t0 = time.perf_counter()
            ddrm_sample(model, y, op, 0.1, steps=20, schedule=betas.float(), generator=torch.Generator().manual_seed(r))
            if r:
                times[i].append(time.perf_counter() - t0)
    print(f"{args.size}x{args.size}, sr4, 20 steps, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"median of {args.repeats}\n")
    print("| model | parameters | file MB | seconds | vs first |\n|---|---|---|---|---|")
    first = statistics.median(times[0])
    for path, (model, _), ts in zip(args.models, loaded, times):
        params = sum(q.numel() for q in model.parameters())
        print(f"| {os.path.basename(path)} | {params / 1e6:.2f}M | {os.path.getsize(path) / 1e6:.1f} | "
              f"{statistics.median(ts):.2f} | {statistics.median(ts) / first:.2f}x |")


if __name__ == "__main__":
    main()
