"""Restore a synthetic image with the exact Gaussian-prior model: DDRM end to end with no weights to download.

The image is drawn from the prior N(mean, std^2 I) whose mean is a smooth synthetic picture; the model is that
prior's exact noise predictor, so DDRM's restoration can use what the prior knows while the pseudo-inverse cannot.
"""
from __future__ import annotations

import time

import torch

from .. import ddrm_sample, tasks
from ..metrics import psnr
from ..models import GaussianPriorEps
from ..sampler import BACKENDS
from .args import nonnegative_float, nonnegative_int, positive_int

TASKS = ("deno", "inp", "sr4", "color", "deblur_uni")  # of ddrm_fast.tasks


def add_parser(sub) -> None:
    d = sub.add_parser("demo", help="restore a synthetic image with the exact Gaussian-prior model and print PSNR")
    d.add_argument("--task", choices=TASKS + ("all",), default="all")
    d.add_argument("--sigma-y", type=nonnegative_float, default=0.05, help="measurement noise std, images in [-1, 1]")
    d.add_argument("--steps", type=positive_int, default=20)
    d.add_argument("--size", type=positive_int, default=64, help="image side (a multiple of 4)")
    d.add_argument("--seed", type=nonnegative_int, default=0)
    d.add_argument("--backend", default="auto", choices=BACKENDS)


def synthetic_mean(size: int) -> torch.Tensor:
    """A smooth colour picture in [-1, 1]: gradients, a disc and a ring."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    r = (xx**2 + yy**2).sqrt()
    red = 0.8 * torch.tanh(6 * (0.45 - r))
    green = 0.7 * torch.sin(3 * xx) * torch.cos(2 * yy)
    blue = 0.8 * torch.tanh(8 * (0.08 - (r - 0.7).abs())) + 0.3 * yy
    return torch.stack([red, green, blue]).clamp(-1, 1)


def run(task: str = "sr4", sigma_y: float = 0.05, steps: int = 20, size: int = 64, seed: int = 0,
        backend: str = "auto", std: float = 0.15) -> dict:
    """Degrade, restore and score one synthetic image; returns the numbers it prints."""
    g = torch.Generator().manual_seed(seed)
    mean = synthetic_mean(size)
    x = (mean + std * torch.randn(3, size, size, generator=g))[None]
    op = tasks.make_operator(task, (3, size, size), None, g)
    y = op.H(x)
    y = y + sigma_y * torch.randn(y.shape, generator=g)
    model = GaussianPriorEps(std=std, mean=mean)
    t0 = time.perf_counter()
    out = ddrm_sample(model, y, op, sigma_y, steps=steps, generator=g, backend=backend)
    seconds = time.perf_counter() - t0
    name, base = tasks.baseline(task, op, y, sigma_y)
    return {"task": task, "sigma_y": sigma_y, "steps": steps, "psnr_pinv": psnr(op.H_pinv(y), x), "baseline": name,
            "psnr_baseline": psnr(base, x), "psnr_ddrm": psnr(out, x), "seconds": seconds}


def main(args) -> int:
    names = TASKS if args.task == "all" else (args.task,)
    print(f"ddrm_fast demo: {args.size}x{args.size} synthetic image, exact Gaussian-prior model, "
          f"sigma_y={args.sigma_y}, {args.steps} steps, backend {args.backend}")
    print(f"  {'task':10s} {'baseline':>15s} {'PSNR baseline':>14s} {'PSNR DDRM':>10s} {'difference':>11s} "
          f"{'seconds':>8s}")
    for task in names:
        r = run(task, args.sigma_y, args.steps, args.size, args.seed, args.backend)
        print(f"  {task:10s} {r['baseline']:>15s} {r['psnr_baseline']:14.2f} {r['psnr_ddrm']:10.2f} "
              f"{r['psnr_ddrm'] - r['psnr_baseline']:+10.2f}  {r['seconds']:8.2f}")
    return 0
