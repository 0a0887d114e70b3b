"""Probes for benchmarks, measured in the run that reports them: a timer (device events on CUDA, the wall clock on
the CPU), the bfloat16 GEMM rate of the device, the FLOPs of a network call, peak memory (the allocator's on CUDA,
live tensor bytes anywhere: :class:`LiveBytes`), and a bar chart of images/s. ``ddrm-fast bench`` and the kernel
tests' memory budget use them."""
from __future__ import annotations

import gc
import math
import statistics
import time
import weakref
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .imageio import write_png_uint8

__all__ = ["benchmark_model", "publish", "timer", "matmul_tflops", "forward_flops", "LiveBytes", "peak_mib",
           "buffers_per_sample", "bar_chart"]


def timer(device) -> Callable[[Callable[[], object]], float]:
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


def matmul_tflops(device, timer, dtype: torch.dtype = torch.bfloat16) -> float:
    """The matrix rate of this device in ``dtype`` (bfloat16 by default), measured now: square GEMMs (8192 on CUDA,
    1024 on the CPU)."""
    n, reps = (8192, 10) if device.type == "cuda" else (1024, 2)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def gemms():
        for _ in range(reps):
            torch.mm(a, b)

    gemms()
    seconds = statistics.median(timer(gemms) for _ in range(3))
    return 2 * n**3 * reps / seconds / 1e12


def forward_flops(model, x: torch.Tensor) -> int:
    """FLOPs of one network call on x (convolutions, matrix products, attention), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    t = torch.full((x.shape[0],), 500.0, device=x.device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, t)
    return counter.get_total_flops()


class LiveBytes(TorchDispatchMode):
    """The peak bytes of tensor storage created by the ops run under it and still referenced: what a device
    allocator's peak would show, for any device (the CPU has no allocator statistics). Storages that existed before
    (weights, inputs, views of them) are not counted."""

    def __init__(self):
        super().__init__()
        self.live: Dict[int, list] = {}  # storage id -> [nbytes, number of live tensors on it]
        self.now = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        before = {t.untyped_storage()._cdata for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            key = t.untyped_storage()._cdata
            if key not in self.live:
                if key in before:
                    continue  # an input's storage (in-place op, view of an earlier tensor)
                self.live[key] = [t.untyped_storage().nbytes(), 0]
                self.now += self.live[key][0]
                self.peak = max(self.peak, self.now)
            self.live[key][1] += 1
            weakref.finalize(t, self._release, key)
        return out

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:  # the last tensor on this storage is gone: so is the storage
                self.now -= entry[0]
                del self.live[key]


def peak_mib(device, fn) -> float:
    """Peak memory of fn() above what was allocated before it (weights, inputs), in MiB: the allocator's peak on
    CUDA, the live tensor bytes (:class:`LiveBytes`) elsewhere."""
    if device.type != "cuda":
        gc.collect()
        with LiveBytes() as live:
            fn()
        return live.peak / 2**20
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def buffers_per_sample(peak_mib: float, model_mib: float, batch: int, image_numel: int) -> float:
    """The sampler's memory beyond the network's own activations, in float32 images per sample (the target is at
    most 3: x_t, x_{t'} and one more)."""
    return (peak_mib - model_mib) * 2**20 / (batch * image_numel * 4)


def bar_chart(rows: List[dict], path: str) -> None:
    """A bar chart of images/s (log scale) per batch and mode, drawn with Pillow (no plotting dependency)."""
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
    write_png_uint8(np.asarray(img), path, {"kind": "bench"})  # its record marks the figure as the command's own


def benchmark_model(name: str, device):
    """(model, betas) of the models the benchmarks run: ``small`` (the embedded model), ``adm256`` (guided-diffusion's
    ImageNet-256 architecture with random weights, its output layer not zero so that it moves the image), or a
    checkpoint path."""
    from .models import ADMUNet, default_model, load

    if name == "small":
        return default_model(device)
    if name == "adm256":
        torch.manual_seed(0)
        model = ADMUNet("imagenet256").to(device).eval()
        with torch.no_grad():  # random weights: time the real architecture, output not zero
            model.out[-1].weight.normal_(0, 1e-3)
        return model, torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    return load(name, device=device)


def publish(lines: List[str], path: Optional[str] = None, append: bool = False) -> str:
    """A benchmark's table: printed, and written to ``path`` when given (appended with ``append``). Returns it."""
    text = "\n".join(lines) + "\n"
    print(text)
    if path:
        with open(path, "a" if append else "w") as f:
            f.write(text)
    return text
