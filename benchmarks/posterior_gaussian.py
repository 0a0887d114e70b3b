"""How close DDRM's posterior statistics come to the exact posterior, on the analytic Gaussian model.

    python benchmarks/posterior_gaussian.py [--samples 64] [--out benchmarks/results]

Data x ~ N(0, s^2 I) (s = 0.5), y = H x + sigma_y z, the exact noise predictor of that prior
(``models.GaussianPriorEps``). The posterior is Gaussian and known per pixel: where a pixel is measured,
N(s^2 y / (s^2 + sigma_y^2), s^2 sigma_y^2 / (s^2 + sigma_y^2)); where it is not (inpainting), the prior N(0, s^2).
For denoising and inpainting (half the pixels), at sigma_y 0.05 and 0.2, with 20 and 100 steps and eta 0.85 (the
default) and 1.0, K samples of a 3x32x32 image through ``ddrm_fast.posterior`` give:

- mean error: the RMS over pixels of (the mean of K samples - the exact posterior mean), in units of the Monte
  Carlo error an exact sampler would have (the exact std / sqrt(K)): about 1 for an exact sampler;
- std ratio: the RMS over pixels of the K samples' std over the exact std: 1 for an exact sampler.

Writes posterior_gaussian.md (and prints it).
"""
from __future__ import annotations

import argparse
import os

import torch

import ddrm_fast
from ddrm_fast import operators as O
from ddrm_fast.models import GaussianPriorEps

PRIOR_STD = 0.5


def run(task: str, sigma_y: float, steps: int, eta: float, samples: int) -> dict:
    g = torch.Generator().manual_seed(0)
    shape = (3, 32, 32)
    if task == "deno":
        op = O.Denoise(shape)
        measured = torch.ones(1, *shape, dtype=torch.bool)
    else:
        mask = (torch.rand(1, 1, *shape[1:], generator=g) > 0.5).float()
        op = O.Inpaint(mask, channels=3)
        measured = mask.expand(1, *shape) > 0
    x = PRIOR_STD * torch.randn(1, *shape, generator=g)
    y = op.H(x) + sigma_y * torch.randn(1, *op.y_shape, generator=g)
    stats = ddrm_fast.posterior(GaussianPriorEps(std=PRIOR_STD), y, op, sigma_y, samples=samples, chunk=32,
                                steps=steps, eta=eta, generator=g)
    s2, v2 = PRIOR_STD**2, sigma_y**2
    y_img = y.reshape(1, *shape)
    exact_mean = torch.where(measured, s2 * y_img / (s2 + v2), torch.zeros(()))
    exact_std = torch.where(measured, torch.tensor((s2 * v2 / (s2 + v2)) ** 0.5), torch.tensor(PRIOR_STD))
    row = {}
    for part, sel in (("measured", measured), ("unmeasured", ~measured)):
        if not bool(sel.any()):
            continue
        mc = exact_std[sel] / samples**0.5
        row[part] = (float(((stats.mean - exact_mean)[sel] / mc).pow(2).mean().sqrt()),
                     float(stats.std[sel].pow(2).mean().sqrt() / exact_std[sel].pow(2).mean().sqrt()))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args()
    lines = [f"K = {args.samples} samples, prior std {PRIOR_STD}, 3x32x32; mean error in Monte Carlo units (1: as an "
             "exact sampler), std ratio (1: exact)", "",
             "| task | sigma_y | steps | eta | mean error, measured | std ratio, measured | mean error, unmeasured "
             "| std ratio, unmeasured |", "|---|---|---|---|---|---|---|---|"]
    for task in ("deno", "inp"):
        for sigma_y in (0.05, 0.2):
            for steps in (20, 100):
                for eta in (0.85, 1.0):
                    row = run(task, sigma_y, steps, eta, args.samples)
                    cells = []
                    for part in ("measured", "unmeasured"):
                        cells += [f"{row[part][0]:.2f}", f"{row[part][1]:.2f}"] if part in row else ["-", "-"]
                    lines.append(f"| {task} | {sigma_y} | {steps} | {eta} | " + " | ".join(cells) + " |")
                    print(lines[-1], flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "posterior_gaussian.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
