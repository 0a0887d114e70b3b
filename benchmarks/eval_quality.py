"""Restoration quality of DDRM with a model against each task's classical baseline, on the held-out photos.

    python benchmarks/eval_quality.py [--model PATH] [--steps 20] [--clip-x0 off|on|both] [--samples 1[,K...]]
                                      [--tasks ...|all|own] [--name quality] [--out benchmarks/results]

Held-out scikit-image photos (never seen in training: ``ddrm_fast.training.HELDOUT_PHOTOS``), resized to 256 on the
short side (astronaut 256x256, coffee 256x384); tasks deno, inp, sr4, color, deblur_uni by default (``--tasks all``:
every task of ``ddrm_fast.tasks``; ``--tasks own``: the tasks beyond the original's, deblur with a 9-pixel motion
blur at 30 degrees (``tasks.motion_kernel``, the bundled ``data/motion_blur.png``), resize by 3 with Lanczos-3 and
color_sr4; a task an image's size cannot take, cs4 on coffee, is skipped and said) at sigma_y
0 and 0.05 (pixel units, as the original runner), with x0 clipping off, on, or both (``--clip-x0``), one DDRM
sample or the mean of K samples of the same y (``--samples``, each value a column; ``ddrm-fast restore --samples``).
The baseline is the one a user has in mind (``ddrm_fast.tasks.baseline``): bicubic upsampling for super-resolution,
Wiener deconvolution for deblurring, the pseudo-inverse otherwise; the pseudo-inverse is in the CSV too. Writes
NAME.md / NAME.csv (PSNR/SSIM per photo and the mean) and NAME.png (a row per task at sigma_y 0.05: clean,
degraded, baseline, DDRM with the last clipping and samples setting); NAME is ``quality`` unless ``--name``.
"""
from __future__ import annotations

import argparse
import csv
import os
import time

from ddrm_fast import restoration, tasks
from ddrm_fast.figures import full_size
from ddrm_fast.imageio import to_uint8
from ddrm_fast.metrics import psnr_ssim
from ddrm_fast.cli.restore import load_model
from ddrm_fast.training import HELDOUT_PHOTOS, heldout_photos

TASKS = ("deno", "inp", "sr4", "color", "deblur_uni")
OWN_TASKS = ("deblur", "resize", "color_sr4")
#: what the tasks beyond the original's take here
OPTIONS = {"deblur": tasks.Options(kernel=tasks.motion_kernel(9, 30)),
           "resize": tasks.Options(scale=3.0, kernel_1d="lanczos3")}
SIGMAS = (0.0, 0.05)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="default: the embedded model")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clip-x0", choices=("off", "on", "both"), default="off")
    p.add_argument("--samples", default="1", help="comma-separated: DDRM's output is the mean of this many samples")
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated, 'all' or 'own'")
    p.add_argument("--name", default="quality", help="the output files' name")
    p.add_argument("--sigmas", default=",".join(map(str, SIGMAS)), help="comma-separated sigma_y, pixel units")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args()
    args.tasks = {"all": tasks.TASKS, "own": OWN_TASKS}.get(args.tasks) or tuple(args.tasks.split(","))
    args.sigmas = tuple(float(v) for v in args.sigmas.split(","))
    clips = {"off": (False,), "on": (True,), "both": (False, True)}[args.clip_x0]
    variants = [(clip, int(k)) for clip in clips for k in args.samples.split(",")]
    model, betas = load_model(args.model, "cpu")
    os.makedirs(args.out, exist_ok=True)
    rows, figure = [], {}
    t_all = time.perf_counter()
    for name, clean in zip(HELDOUT_PHOTOS, heldout_photos()):
        for task in args.tasks:
            for sigma_y in args.sigmas:
                for clip, k in variants:
                    row, images = restore_one(model, betas, clean, task, sigma_y, clip, k, args)
                    if row is None:
                        continue
                    rows.append(dict(photo=name, **row))
                    if name == HELDOUT_PHOTOS[0] and sigma_y == args.sigmas[-1]:
                        figure[task] = images
    write_tables(rows, args, variants)
    write_figure(figure, os.path.join(args.out, args.name + ".png"))
    print(f"total {time.perf_counter() - t_all:.0f} s")


def restore_one(model, betas, clean, task, sigma_y, clip, samples, args):
    """(the row of scores, [clean, degraded view, baseline, DDRM, the baseline's name]) of one photo, task, noise
    level, clipping setting and number of samples averaged, through the restoration pipeline `ddrm-fast restore`
    runs; (None, None) when the task cannot take the photo's size."""
    try:
        m = restoration.measure(task, clean, sigma_y=sigma_y, seed=args.seed, options=OPTIONS.get(task))
    except ValueError as exc:
        print(f"{task}: skipped for a {clean.shape[2]}x{clean.shape[1]} photo ({exc})")
        return None, None
    t0 = time.perf_counter()
    x = restoration.restore(model, betas, [m], restoration.Settings(steps=args.steps, clip_x0=clip),
                            samples=samples)[0]
    seconds = time.perf_counter() - t0
    base = restoration.baseline(m)
    scores = restoration.score(m, x, base)
    pp, ps = psnr_ssim(m.operator.H_pinv(m.y)[0], clean)
    print(f"{task:12s} sigma_y={sigma_y:4.2f} clip_x0={'on ' if clip else 'off'} samples={samples}  "
          f"{scores.baseline} {scores.psnr_baseline:6.2f} dB {scores.ssim_baseline:.3f}   "
          f"DDRM {scores.psnr:6.2f} dB {scores.ssim:.3f} ({scores.psnr - scores.psnr_baseline:+.2f} dB)   "
          f"{seconds:5.1f} s", flush=True)
    view = full_size(restoration.view(m), tuple(clean.shape[-2:]))
    row = dict(task=task, sigma_y=sigma_y, clip_x0=clip, samples=samples, baseline=scores.baseline,
               psnr_baseline=scores.psnr_baseline, ssim_baseline=scores.ssim_baseline, psnr_pinv=pp, ssim_pinv=ps,
               psnr_ddrm=scores.psnr, ssim_ddrm=scores.ssim, seconds=seconds)
    return row, [clean, view, base[1], x, scores.baseline]


def write_tables(rows, args, variants) -> None:
    with open(os.path.join(args.out, args.name + ".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    names = [("DDRM clip_x0" if clip else "DDRM") + ("" if k == 1 else f" mean of {k}") for clip, k in variants]
    lines = ["| task | sigma_y | photos | baseline | baseline PSNR | " +
             " | ".join(f"{n} PSNR (vs baseline)" for n in names) + " | baseline SSIM | " +
             " | ".join(f"{n} SSIM" for n in names) + " |",
             "|---|---|---|---|---|" + "---|" * (2 * len(variants) + 1)]
    for task in args.tasks:
        for sigma_y in args.sigmas:
            sel = [r for r in rows if r["task"] == task and r["sigma_y"] == sigma_y]
            if not sel:
                continue
            by = [[r for r in sel if (r["clip_x0"], r["samples"]) == v] for v in variants]
            mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
            base = mean(by[0], "psnr_baseline")
            lines.append(f"| {task} | {sigma_y:.2f} | {len(by[0])} | {sel[0]['baseline']} | {base:.2f} | "
                         + " | ".join(f"{mean(rs, 'psnr_ddrm'):.2f} ({mean(rs, 'psnr_ddrm') - base:+.2f})"
                                      for rs in by)
                         + f" | {mean(by[0], 'ssim_baseline'):.3f} | "
                         + " | ".join(f"{mean(rs, 'ssim_ddrm'):.3f}" for rs in by) + " |")
    head = (f"Mean PSNR (dB) and SSIM over the held-out photos ({', '.join(HELDOUT_PHOTOS)}); {args.steps} DDRM "
            f"steps, eta 0.85, eta_b 1.0, seed {args.seed}; model: {args.model or 'embedded'}.\n\n")
    with open(os.path.join(args.out, args.name + ".md"), "w") as f:
        f.write(head + "\n".join(lines) + "\n")
    print(head + "\n".join(lines))


def write_figure(figure, path: str) -> None:
    """A grid: a row per task, columns clean / degraded / baseline (named in the row's label) / DDRM."""
    from PIL import Image, ImageDraw

    cols = ("clean", "degraded", "baseline", "DDRM")
    h, w = next(iter(figure.values()))[0].shape[-2:]
    pad, label = 4, 16
    grid = Image.new("RGB", (len(figure) and (70 + len(cols) * (w + pad)), label + len(figure) * (h + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for j, c in enumerate(cols):
        draw.text((70 + j * (w + pad) + 4, 2), c, fill="black")
    for i, (task, images) in enumerate(figure.items()):
        top = label + i * (h + pad)
        draw.text((4, top + h // 2), task, fill="black")
        draw.text((4, top + h // 2 + 14), images[-1], fill="black")  # the baseline's name
        for j, img in enumerate(images[:-1]):
            grid.paste(Image.fromarray(to_uint8(img)), (70 + j * (w + pad), top))
    grid.save(path)


if __name__ == "__main__":
    main()
