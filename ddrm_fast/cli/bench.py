"""`ddrm-fast bench`: end-to-end sampling throughput of the modes side by side, each with a quality check.

Every mode restores the same measurements with the same per-image Philox noise (identical numbers on every backend),
so a fast mode's output can be compared with the reference mode's: the PSNR between them shows whether speed
changed the result (float32 modes agree to rounding; bfloat16 networks differ a little), and the PSNR against the
clean image shows what the restoration is worth.
"""
from __future__ import annotations

import csv
import os
import statistics
import time
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

from .. import tasks
from ..sampler import ddrm_sample

# mode -> ddrm_sample options; "reference" is the plain-PyTorch loop in float32, as the original runs.
# "graphs" needs CUDA; "compiled_bf16" adds CUDA graphs on CUDA.
MODES: Dict[str, dict] = {
    "reference": dict(backend="reference"),
    "fused": dict(backend="auto"),
    "fused_bf16": dict(backend="auto", model_dtype=torch.bfloat16, channels_last=True),
    "graphs": dict(backend="auto", cuda_graph=True),
    "compiled_bf16": dict(backend="auto", model_dtype=torch.bfloat16, channels_last=True, compile=True,
                          cuda_graph=True),
}
CUDA_ONLY = ("graphs",)


def _options(mode: str, device) -> dict:
    opts = dict(MODES[mode])
    if device.type != "cuda":
        opts.pop("cuda_graph", None)
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
    p.add_argument("--batch", default="1,8", help="comma-separated batch sizes")
    p.add_argument("--size", type=int, default=None, help="image side (default 256 on CUDA, 32 on the CPU)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--modes", default=None, help=f"comma-separated, from {', '.join(MODES)} (default: all; on the "
                                                 f"CPU all but {', '.join(CUDA_ONLY)})")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per mode after one warm-up run")
    p.add_argument("--sigma-y", type=float, default=0.05, help="[0, 1] pixel units")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="folder for bench.md, bench.csv, bench.png")


def _model(name: str, device):
    from ..models import ADMUNet, default_model, load

    if name == "small":
        return default_model(device)
    if name == "adm256":
        torch.manual_seed(0)
        model = ADMUNet("imagenet256").to(device).eval()
        with torch.no_grad():  # random weights: time the real architecture, output not zero
            model.out[-1].weight.normal_(0, 1e-3)
        return model, torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    return load(name, device=device)


def _timer(device) -> Callable[[Callable[[], object]], float]:
    """Seconds of fn(): device events on CUDA (after a synchronize), the wall clock on the CPU."""
    def run(fn):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end) / 1000
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    return run


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float().clamp(-1, 1) - b.float().clamp(-1, 1)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(4.0 / mse)).item()


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


def run(args) -> List[dict]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size = args.size or (256 if device.type == "cuda" else 32)
    if args.modes is None:
        modes = [m for m in MODES if device.type == "cuda" or m not in CUDA_ONLY]
    else:
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"--modes: unknown {', '.join(bad)}; known: {', '.join(MODES)}")
    if device.type != "cuda" and any(m in CUDA_ONLY for m in modes):
        raise ValueError(f"--modes: {', '.join(CUDA_ONLY)} needs a CUDA device")
    modes.sort(key=lambda m: m != "reference")  # the reference first: the others are compared with its output
    batches = [int(b) for b in args.batch.split(",")]
    model, betas = _model(args.model, device)
    divisor = getattr(model, "divisor", 1)
    if size % max(divisor, tasks.task_divisor(args.task)):
        raise ValueError(f"--size {size} must be a multiple of {max(divisor, tasks.task_divisor(args.task))}")
    timer = _timer(device)
    null = _NullEps().to(device)
    sigma = 2 * args.sigma_y
    rows = []
    for b in batches:
        clean = _clean_batch(b, size).to(device)
        op = tasks.make_operator(args.task, clean.shape[1:], generator=torch.Generator().manual_seed(0)).to(device)
        y = tasks.degrade(clean, op, sigma, torch.Generator().manual_seed(1))
        ref_out = None
        for mode in modes:
            opts = _options(mode, device)
            out = {}

            def sample(m=model, o=opts, key="x"):
                with torch.no_grad():
                    out[key] = ddrm_sample(m, y, op, sigma, steps=args.steps, schedule=betas.float(),
                                           noise="philox", generator=torch.Generator().manual_seed(2), **o)

            null_opts = {k: v for k, v in opts.items() if k not in ("compile", "model_dtype", "channels_last")}
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            timer(sample)  # warm-up: compilation, graph capture, autotuning, allocator
            total = statistics.median(timer(sample) for _ in range(args.repeats))
            peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
            update = lambda: sample(null, null_opts, "null")  # noqa: E731
            timer(update)
            update_s = statistics.median(timer(update) for _ in range(args.repeats))
            x = out["x"]
            if mode == "reference":
                ref_out = x
            rows.append({"batch": b, "mode": mode, "images_per_s": b / total, "ms_per_step": 1000 * total / args.steps,
                         "network_share": max(0.0, 1 - update_s / total), "peak_mib": peak,
                         "psnr_vs_reference": _psnr(x, ref_out) if ref_out is not None else float("nan"),
                         "psnr_vs_clean": _psnr(x, clean)})
            r = rows[-1]
            print(f"batch {b:3d} {mode:14s} {r['images_per_s']:8.2f} img/s {r['ms_per_step']:9.2f} ms/step "
                  f"network {100 * r['network_share']:5.1f}%  PSNR vs reference {r['psnr_vs_reference']:6.2f}  "
                  f"vs clean {r['psnr_vs_clean']:6.2f}", flush=True)
    for b in batches:  # speed-ups against the reference loop measured in the same run
        ref = [r for r in rows if r["batch"] == b and r["mode"] == "reference"]
        for r in rows:
            if r["batch"] == b:
                r["speedup"] = r["images_per_s"] / ref[0]["images_per_s"] if ref else float("nan")
    return rows, device, size


def write(rows: List[dict], out: str, header: str) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "bench.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [header, "", "| batch | mode | images/s | speed-up | ms/step | network share | peak MiB | "
             "PSNR vs reference | PSNR vs clean |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['mode']} | {r['images_per_s']:.2f} | {r['speedup']:.2f}x | "
                     f"{r['ms_per_step']:.2f} | {100 * r['network_share']:.0f}% | {r['peak_mib']:.0f} | "
                     f"{r['psnr_vs_reference']:.2f} | {r['psnr_vs_clean']:.2f} |")
    with open(os.path.join(out, "bench.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    _plot(rows, os.path.join(out, "bench.png"))


def _plot(rows: List[dict], path: str) -> None:
    """A bar chart of images/s (log scale) per batch and mode, drawn with Pillow (no plotting dependency)."""
    import math

    from PIL import Image, ImageDraw

    batches = sorted({r["batch"] for r in rows})
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
    bw, gap, h, left, top = 22, 30, 300, 60, 30
    width = left + len(batches) * (len(modes) * bw + gap) + 160
    img = Image.new("RGB", (width, h + top + 40), "white")
    d = ImageDraw.Draw(img)
    vals = [r["images_per_s"] for r in rows]
    lo, hi = math.log10(min(vals)) - 0.2, math.log10(max(vals)) + 0.1
    y_of = lambda v: top + h - (math.log10(v) - lo) / (hi - lo) * h  # noqa: E731
    d.text((4, 4), "images/s (log scale)", fill="black")
    for k in range(math.floor(lo), math.ceil(hi) + 1):
        if lo <= k <= hi:
            d.line([(left - 5, y_of(10**k)), (width - 160, y_of(10**k))], fill="#dddddd")
            d.text((4, y_of(10**k) - 6), f"{10**k:g}", fill="black")
    for i, b in enumerate(batches):
        x0 = left + i * (len(modes) * bw + gap)
        for j, m in enumerate(modes):
            r = [r for r in rows if r["batch"] == b and r["mode"] == m]
            if r:
                d.rectangle([x0 + j * bw, y_of(r[0]["images_per_s"]), x0 + (j + 1) * bw - 3, top + h],
                            fill=colors[j % len(colors)])
        d.text((x0, top + h + 8), f"batch {b}", fill="black")
    for j, m in enumerate(modes):
        d.rectangle([width - 150, top + 18 * j, width - 138, top + 18 * j + 12], fill=colors[j % len(colors)])
        d.text((width - 132, top + 18 * j), m, fill="black")
    img.save(path)


def main(args) -> int:
    rows, device, size = run(args)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    try:
        import triton

        tv = triton.__version__
    except ImportError:
        tv = "none"
    header = (f"{time.strftime('%Y-%m-%d')}, {name}, torch {torch.__version__}, triton {tv}; model {args.model}, "
              f"task {args.task}, {size}x{size}, {args.steps} steps, median of {args.repeats} after a warm-up")
    print(header)
    if args.out:
        write(rows, args.out, header)
        print(f"wrote {args.out}/bench.md, bench.csv, bench.png")
    return 0
