"""`ddrm-fast bench`: end-to-end sampling throughput of the modes side by side, each with a quality check.

Every mode restores the same measurements with the same per-image Philox noise (identical numbers on every backend),
so a fast mode's output can be compared with the reference mode's: the PSNR between them shows whether speed
changed the result (float32 modes agree to rounding; bfloat16 networks differ a little), and the PSNR against the
clean image shows what the restoration is worth.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from typing import Callable, Dict, List, NamedTuple, Optional

import torch
import torch.nn.functional as F

from .. import probes, restoration, sampler, speed, tasks
from ..files import atomic_write, refuse_foreign, write_text
from ..metrics import psnr
from ..sampler import COMPILE_MODES, clear_graphs, ddrm_sample
from .args import device_arg, positive_int, unit_float
from .options import choose_device

# mode -> ddrm_sample options; "reference" is the plain-PyTorch loop in float32, as the original runs.
# "graphs" needs CUDA; "compiled_bf16" adds CUDA graphs on CUDA.
MODES: Dict[str, dict] = {
    "reference": dict(backend="reference"),
    "fused": dict(backend="auto"),
    "fused_bf16": dict(backend="auto", model_dtype=torch.bfloat16, channels_last=True),
    "graphs": dict(backend="auto", cuda_graph=True),
    "compiled_bf16": dict(backend="auto", model_dtype=torch.bfloat16, channels_last=True, compile=True,
                          cuda_graph=True),
    # the command line's automatic choice for the device (ddrm_fast.speed.auto): opt in with --modes fused,auto
    "auto": dict(backend="auto"),
}
CUDA_ONLY = ("graphs",)
OPT_IN = ("auto",)


def _options(mode: str, device, compile_mode: str) -> dict:
    opts = dict(MODES[mode])
    if mode == "auto":
        way = speed.auto(device)
        opts.update(model_dtype=way.model_dtype, channels_last=way.channels_last, compile=way.compile)
    if device.type != "cuda":
        opts.pop("cuda_graph", None)
    if opts.get("compile"):
        opts["compile"] = compile_mode
    return opts


class _NullEps(torch.nn.Module):
    """eps = 0 at no cost: the same loop with it times the DDRM update alone (same mode, graphs included)."""

    def forward(self, x, t):
        return torch.zeros_like(x)


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="time the sampling modes side by side (images/s, ms/step, quality)")
    p.add_argument("--model", default="small", help="small (the embedded model), adm256 (ImageNet-256 ADM "
                                                     "architecture, random weights) or a checkpoint path")
    p.add_argument("--task", default="sr4", choices=tasks.TASKS)
    p.add_argument("--batch", type=batch_sizes, default=[1, 8], help="comma-separated batch sizes")
    p.add_argument("--size", type=positive_int, default=None, help="image side (default 256 on CUDA, 32 on the CPU)")
    p.add_argument("--steps", type=positive_int, default=20)
    p.add_argument("--modes", default=None, help=f"comma-separated, from {', '.join(MODES)} (default: all but "
                                                 f"{', '.join(OPT_IN)}; on the CPU also but {', '.join(CUDA_ONLY)}); "
                                                 f"auto is the command line's automatic choice")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed runs per mode after one warm-up run")
    p.add_argument("--sigma-y", type=unit_float, default=0.05, help="[0, 1] pixel units")
    p.add_argument("--device", type=device_arg, default=None)
    p.add_argument("--compile-mode", default="default", choices=COMPILE_MODES,
                   help="torch.compile mode of compiled_bf16 (with CUDA graphs: default or max-autotune-no-cudagraphs)")
    p.add_argument("--out", default=None, help="folder for bench.md, bench.csv, bench.png")


def _clean_batch(batch: int, size: int) -> torch.Tensor:
    from ..imageio import read_image

    img = read_image(os.path.join(os.path.dirname(__file__), "..", "data", "astronaut.png"))
    img = F.interpolate(img[None], size=(2 * size, 2 * size), mode="bilinear", antialias=True)[0]
    g = torch.Generator().manual_seed(0)
    crops = []
    for _ in range(batch):  # different crops of the photo, so a batch is not one image repeated
        top, left = (int(v) for v in torch.randint(size + 1, (2,), generator=g))
        crops.append(img[:, top:top + size, left:left + size])
    return torch.stack(crops)


def batch_sizes(text: str) -> List[int]:
    """``--batch``: comma-separated positive integers."""
    try:
        return [positive_int(b.strip()) for b in text.split(",")]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (in {text!r}: comma-separated batch sizes >= 1)") from None


_OUTPUTS = {"bench.csv": "bench csv", "bench.md": "bench md", "bench.png": "png"}  # file -> its kind (files.KINDS)


def check_out(out: Optional[str]) -> None:
    """Refuse, before measuring, an --out that is a file or that holds bench files this command did not write."""
    if out is None:
        return
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out}: exists and is not a folder")
    for name, kind in _OUTPUTS.items():
        refuse_foreign(os.path.join(out, name), kind, f"--out {out}: {name} exists and was not written by ddrm-fast "
                                                      f"bench; it is not overwritten")


def _modes(args, device) -> List[str]:
    """The modes to run, checked, the reference first (the others are compared with its output)."""
    if args.modes is None:
        modes = [m for m in MODES if (device.type == "cuda" or m not in CUDA_ONLY) and m not in OPT_IN]
    else:
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"--modes: unknown {', '.join(bad)}; known: {', '.join(MODES)}")
    if device.type != "cuda" and any(m in CUDA_ONLY for m in modes):
        raise ValueError(f"--modes: {', '.join(CUDA_ONLY)} needs a CUDA device")
    if any(MODES[m].get("compile") for m in modes):  # a mode the sampler refuses with its graphs fails now, not later
        sampler.compile_mode(args.compile_mode, device.type == "cuda")
    return sorted(modes, key=lambda m: m != "reference")


class _Bench(NamedTuple):
    """One batch's problem and the run's settings."""

    model: torch.nn.Module
    betas: torch.Tensor
    device: torch.device
    timer: Callable
    clean: torch.Tensor
    op: object
    y: torch.Tensor
    sigma: torch.Tensor
    steps: int
    repeats: int
    compile_mode: str


def _measure(bench: _Bench, mode: str) -> dict:
    """A mode's time (median of the repeats after a warm-up), its update's time alone (a zero network), its memory
    peak beyond the weights and inputs and the network's own peak, and its output."""
    opts = _options(mode, bench.device, bench.compile_mode)
    b, device, out = bench.clean.shape[0], bench.device, {}

    def sample(m=bench.model, o=opts, key="x"):
        with torch.no_grad():
            out[key] = ddrm_sample(m, bench.y, bench.op, bench.sigma, steps=bench.steps, schedule=bench.betas.float(),
                                   noise="philox", generator=torch.Generator().manual_seed(2), **o)

    def forward(o):  # the network alone as this mode runs it: its own activations
        net = sampler.network(bench.model, o.get("model_dtype"), o.get("channels_last", False),
                              sampler.compile_mode(o.get("compile", False), False), device)
        with torch.no_grad():
            net(bench.clean, torch.full((b,), 500.0, device=device))

    clear_graphs()  # graphs of earlier modes would hold their memory through this one
    eager = {k: v for k, v in opts.items() if k != "compile"}
    if device.type == "cuda":  # the first call: compilation, autotuning and graph capture (its pool) included
        peak = probes.peak_mib(device, lambda: bench.timer(sample))
    else:  # LiveBytes sees no buffers inside compiled code (and spoils a compiled model): the eager network
        bench.timer(sample)
        out.clear()  # no earlier output alive while memory is measured
        peak = probes.peak_mib(device, lambda: sample(o=eager, key="memory"))
    model_mib = probes.peak_mib(device, lambda: forward(opts if device.type == "cuda" else eager))
    total = statistics.median(bench.timer(sample) for _ in range(bench.repeats))
    null_opts = {k: v for k, v in opts.items() if k not in ("compile", "model_dtype", "channels_last")}
    update = lambda: sample(_NullEps().to(device), null_opts, "null")  # noqa: E731
    bench.timer(update)
    update_s = statistics.median(bench.timer(update) for _ in range(bench.repeats))
    return {"total": total, "update_s": update_s, "peak": peak, "model_mib": model_mib, "x": out["x"]}


def _row(b: int, mode: str, m: dict, flops: int, steps: int, matmul: float, clean, ref_out) -> dict:
    network_tflops = flops * steps / max(m["total"] - m["update_s"], 1e-9) / 1e12
    row = {"batch": b, "mode": mode, "images_per_s": b / m["total"], "ms_per_step": 1000 * m["total"] / steps,
           "network_share": max(0.0, 1 - m["update_s"] / m["total"]), "network_tflops": network_tflops,
           "network_vs_matmul": network_tflops / matmul, "peak_mib": m["peak"], "model_mib": m["model_mib"],
           "buffers_per_sample": probes.buffers_per_sample(m["peak"], m["model_mib"], b, clean[0].numel()),
           "psnr_vs_reference": psnr(m["x"], ref_out.clamp(-1, 1)) if ref_out is not None else float("nan"),
           "psnr_vs_clean": psnr(m["x"], clean)}
    print(f"batch {b:3d} {mode:14s} {row['images_per_s']:8.2f} img/s {row['ms_per_step']:9.2f} ms/step "
          f"network {100 * row['network_share']:5.1f}% at {network_tflops:7.2f} TFLOP/s "
          f"({100 * row['network_vs_matmul']:.0f}% of bf16 GEMM)  peak {m['peak']:.0f} MiB "
          f"({row['buffers_per_sample']:.1f} images/sample beyond the network)  PSNR vs reference "
          f"{row['psnr_vs_reference']:6.2f}  vs clean {row['psnr_vs_clean']:6.2f}", flush=True)
    return row


class BenchRun(NamedTuple):
    """What :func:`run` measured: a row per batch size and mode, on which device, at which image size, beside the
    bfloat16 GEMM rate measured in the same run (TFLOP/s)."""

    rows: List[dict]
    device: torch.device
    size: int
    matmul: float


def run(args) -> BenchRun:
    device = choose_device(args.device)
    size = args.size or (256 if device.type == "cuda" else 32)
    modes = _modes(args, device)
    model, betas = probes.benchmark_model(args.model, device)
    divisor = max(restoration.model_divisor(model), tasks.task_divisor(args.task))
    if size % divisor:
        raise ValueError(f"--size {size} must be a multiple of {divisor}")
    timer = probes.timer(device)
    matmul = probes.matmul_tflops(device, timer)
    print(f"bfloat16 matrix rate on {device}: {matmul:.1f} TFLOP/s", flush=True)
    rows = []
    for b in args.batch:
        clean = _clean_batch(b, size)
        # each crop measured as `ddrm-fast restore` measures an image (its own seed: its own mask for inpainting)
        op, y, sigma = restoration.stack([restoration.measure(args.task, img, sigma_y=args.sigma_y, seed=i)
                                          for i, img in enumerate(clean)])
        clean = clean.to(device)
        bench = _Bench(model, betas, device, timer, clean, op.to(device), y.to(device), sigma.to(device), args.steps,
                       args.repeats, args.compile_mode)
        flops = probes.forward_flops(model, clean)  # per network call on the batch
        ref_out = None
        for mode in modes:
            m = _measure(bench, mode)
            ref_out = m["x"] if mode == "reference" else ref_out
            rows.append(_row(b, mode, m, flops, args.steps, matmul, clean, ref_out))
            del m
        clear_graphs()
    for b in args.batch:  # speed-ups against the reference loop measured in the same run
        ref = [r for r in rows if r["batch"] == b and r["mode"] == "reference"]
        for r in rows:
            if r["batch"] == b:
                r["speedup"] = r["images_per_s"] / ref[0]["images_per_s"] if ref else float("nan")
    return BenchRun(rows, device, size, matmul)


def write(rows: List[dict], out: str, header: str) -> None:
    os.makedirs(out, exist_ok=True)

    def write_csv(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)

    atomic_write(os.path.join(out, "bench.csv"), write_csv)
    lines = [header, "", "| batch | mode | images/s | speed-up | ms/step | network share | network TFLOP/s "
             "(of bf16 GEMM) | peak MiB | network MiB | images/sample beyond the network | PSNR vs reference | "
             "PSNR vs clean |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['mode']} | {r['images_per_s']:.2f} | {r['speedup']:.2f}x | "
                     f"{r['ms_per_step']:.2f} | {100 * r['network_share']:.0f}% | {r['network_tflops']:.2f} "
                     f"({100 * r['network_vs_matmul']:.0f}%) | {r['peak_mib']:.1f} | {r['model_mib']:.1f} | "
                     f"{r['buffers_per_sample']:.1f} | {r['psnr_vs_reference']:.2f} | {r['psnr_vs_clean']:.2f} |")
    write_text(os.path.join(out, "bench.md"), "\n".join(lines) + "\n")
    probes.bar_chart(rows, os.path.join(out, "bench.png"))


def main(args) -> int:
    check_out(args.out)
    rows, device, size, matmul = run(args)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    try:
        import triton

        tv = triton.__version__
    except ImportError:
        tv = "none"
    header = (f"{time.strftime('%Y-%m-%d')}, {name}, torch {torch.__version__}, triton {tv}; model {args.model}, "
              f"task {args.task}, {size}x{size}, {args.steps} steps, median of {args.repeats} after a warm-up; "
              f"compile mode {args.compile_mode}; bfloat16 GEMM rate measured in this run {matmul:.1f} TFLOP/s")
    print(header)
    if args.out:
        write(rows, args.out, header)
        print(f"wrote {args.out}/bench.md, bench.csv, bench.png")
    return 0
