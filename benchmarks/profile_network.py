"""Where the network's time goes, by layer kind, beside the GEMM rate measured in the same run.

    python benchmarks/profile_network.py [--models small,adm256] [--batch 1,2] [--size 256] [--ways fp32,bf16_cl]
                                         [--repeats 2] [--out benchmarks/results/profile.md]

For each model (``small``: the embedded model; ``adm256``: guided-diffusion's ImageNet-256 architecture with random
weights, 256 channels, attention at 32/16/8, 64 channels per head, learned sigma), batch size and way of running it
(``ddrm_fast.speed.WAYS``), one network call is profiled with ``torch.profiler`` after a warm-up: the self time of
every aten op, grouped by layer kind (convolution, group norm and SiLU, attention, resampling, memory-format
conversions and copies, elementwise, other), with each kind's FLOP rate (FLOPs counted by
``torch.utils.flop_counter`` for the convolutions and matrix products) against the float32 and bfloat16 GEMM rates
of this machine measured in the same run. Prints a table and writes it as Markdown.
"""
from __future__ import annotations

import argparse
import copy
import os
import time
from collections import defaultdict

import torch

from ddrm_fast import probes, speed

KINDS = (
    ("convolution", ("conv", "mkldnn_convolution", "_convolution", "convolution")),
    ("attention", ("scaled_dot_product", "_scaled_dot_product", "bmm", "baddbmm", "softmax", "_softmax")),
    ("matmul (time embedding)", ("addmm", "mm", "linear", "matmul")),
    ("group norm + SiLU", ("group_norm", "native_group_norm", "silu", "sigmoid")),
    ("resampling", ("upsample", "avg_pool", "max_pool", "interpolate")),
    ("memory format, copies, casts", ("copy_", "to_copy", "_to_copy", "contiguous", "clone", "cat", "empty_strided",
                                      "as_strided")),
    ("elementwise", ("add", "mul", "div", "sub", "exp", "cos", "sin", "neg", "pad", "constant_pad")),
)


def kind_of(name: str) -> str:
    op = name.split("::")[-1]
    for kind, keys in KINDS:
        if any(op == k or op.startswith(k + "_") or op == "_" + k for k in keys):
            return kind
    return "other"


def profile(model, x, t, repeats):
    """(seconds per call, {kind: self seconds per call}) of ``model(x, t)``."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch.no_grad():
        model(x, t)
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(x, t)
        wall = (time.perf_counter() - t0) / repeats
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x, t)
    kinds = defaultdict(float)
    for event in prof.key_averages():
        if event.key.startswith("aten::"):
            kinds[kind_of(event.key)] += event.self_cpu_time_total / 1e6
    return wall, dict(kinds)


def conv_flops(model, x, t) -> dict:
    """FLOPs of one call by kind (convolution, attention, the rest of the matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, t)
    out = defaultdict(int)
    for module_counts in [counter.get_flop_counts().get("Global", {})]:
        for op, n in module_counts.items():
            name = str(op)
            out["convolution" if "convolution" in name else "attention" if ("bmm" in name or "attention" in name)
                else "matmul (time embedding)"] += n
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="small,adm256")
    p.add_argument("--batch", default="1,2")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--ways", default="fp32,bf16_cl")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    device = torch.device("cpu")
    timer = probes.timer(device)
    rates = {"float32": probes.matmul_tflops(device, timer, torch.float32),
             "bfloat16": probes.matmul_tflops(device, timer, torch.bfloat16)}
    lines = [f"{time.strftime('%Y-%m-%d')}, CPU ({os.cpu_count()} cores, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads); GEMM rate measured in this run: float32 "
             f"{rates['float32'] * 1000:.0f} GFLOP/s, bfloat16 {rates['bfloat16'] * 1000:.0f} GFLOP/s.", "",
             "| model | batch | way | ms per call | " + " | ".join(k for k, _ in KINDS) + " | other | conv GFLOP/s "
             "(of the way's GEMM rate) |", "|---|---|---|---|" + "---|" * (len(KINDS) + 2)]
    for name in args.models.split(","):
        base, _ = probes.benchmark_model(name, device)
        for b in (int(v) for v in args.batch.split(",")):
            x, t = torch.randn(b, 3, args.size, args.size), torch.full((b,), 500.0)
            flops = conv_flops(base, x, t)
            for way in args.ways.split(","):
                net = speed.WAYS[way].network(copy.deepcopy(base), device)  # the loaded model stays as it is
                wall, kinds = profile(net, x, t, args.repeats)
                total = sum(kinds.values()) or 1.0
                rate = rates["bfloat16" if "bf16" in way else "float32"]
                conv_rate = flops["convolution"] / max(kinds.get("convolution", 0.0) * wall / total, 1e-9) / 1e9
                cells = [f"{100 * kinds.get(k, 0.0) / total:.0f}%" for k, _ in KINDS] + \
                        [f"{100 * kinds.get('other', 0.0) / total:.0f}%"]
                lines.append(f"| {name} | {b} | {way} | {1000 * wall:.0f} | " + " | ".join(cells) +
                             f" | {conv_rate:.0f} ({100 * conv_rate / (rate * 1000):.0f}%) |")
                print(lines[-1], flush=True)
    probes.publish(lines, args.out, append=False)


if __name__ == "__main__":
    main()
