"""What circular boundaries cost when a photo's real blur was not circular.

    python benchmarks/eval_boundary.py [--steps 20] [--out benchmarks/results]

``ddrm-fast restore --task deblur`` models the blur as circular (``operators.Convolution``): the frame wraps around.
A lens blurs a photo with the scene beyond the frame, which the photo does not have. This script blurs each held-out
photo (astronaut 256x256, coffee 256x384) with the 9-pixel motion kernel at 30 degrees two ways, circularly (what
the operator assumes) and with the photo's edge pixels repeated beyond the frame (``F.pad(mode='replicate')``, a
stand-in for the scene), adds noise of sigma_y 0.05, restores both with the circular model (DDRM, and Wiener
deconvolution with the same kernel), and reports PSNR in the frame's band (the outer 16 pixels) and inside it.
Writes boundary.md.
"""
from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F

from ddrm_fast import restoration, tasks
from ddrm_fast.cli.options import load_model
from ddrm_fast.training import HELDOUT_PHOTOS, heldout_photos

BAND = 16


def replicate_blur(clean: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The convolution of ``clean`` (C, H, W) with ``kernel`` (centre at kh // 2, kw // 2), the image's edge pixels
    repeated beyond the frame."""
    kh, kw = kernel.shape
    padded = F.pad(clean[None], (kw - 1 - kw // 2, kw // 2, kh - 1 - kh // 2, kh // 2), mode="replicate")
    c = clean.shape[0]
    return F.conv2d(padded, kernel.flip(0, 1).expand(c, 1, kh, kw), groups=c)[0]


def psnr_parts(x: torch.Tensor, clean: torch.Tensor) -> tuple:
    """PSNR (dB, images in [-1, 1]) in the frame's band and inside it."""
    inner = torch.zeros_like(clean, dtype=torch.bool)
    inner[:, BAND:-BAND, BAND:-BAND] = True
    err = (x.clamp(-1, 1) - clean) ** 2
    to_db = lambda mse: float(10 * torch.log10(4 / mse))  # noqa: E731 - peak-to-peak 2
    return to_db(err[~inner].mean()), to_db(err[inner].mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args()
    model, betas = load_model(None, "cpu")
    kernel = tasks.motion_kernel(9, 30)
    options = tasks.Options(kernel=kernel)
    settings = restoration.Settings(steps=args.steps, clip_x0=True)
    lines = ["| photo | blur | Wiener, frame | Wiener, inside | DDRM, frame | DDRM, inside |",
             "|---|---|---|---|---|---|"]
    for name, clean in zip(HELDOUT_PHOTOS, heldout_photos()):
        m = restoration.measure("deblur", clean, sigma_y=0.05, seed=0, options=options)
        noise = m.y[0] - m.operator.H(clean[None])[0]  # the same noise for both blurs
        for blur, blurred in (("circular", m.operator.H(clean[None])[0]), ("replicated edges",
                                                                            replicate_blur(clean, kernel))):
            observed = restoration.measure("deblur", blurred + noise, sigma_y=0.05, seed=0, observed=True,
                                           options=options)
            x = restoration.restore(model, betas, [observed], settings)[0]
            _, wiener = restoration.baseline(observed)
            cells = [*psnr_parts(wiener, clean), *psnr_parts(x, clean)]
            lines.append(f"| {name} | {blur} | " + " | ".join(f"{v:.2f}" for v in cells) + " |")
            print(lines[-1], flush=True)
    head = (f"PSNR (dB) in the outer {BAND} pixels (frame) and inside, deblur with the 9-pixel motion kernel at 30 "
            f"degrees, sigma_y 0.05, {args.steps} steps, x0 clipped, seed 0, the embedded model in float32\n\n")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "boundary.md"), "w") as f:
        f.write(head + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
