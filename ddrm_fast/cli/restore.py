"""`ddrm-fast restore`: degrade a clean image (or take a measurement with --observed) and restore it with DDRM."""
from __future__ import annotations

import os
import sys
from typing import Dict, Optional

from .. import restoration, tasks
from ..figures import comparison_panels, std_panel, write_comparison, write_std
from ..files import FolderLock, check_output_path, name_max, refuse_foreign
from ..imageio import read_image, read_mask, write_png
from ..sampler import BACKENDS
from ..schedules import ddrm_timesteps
from . import restore_dir
from .args import device_arg, nonnegative_int, positive_int, unit_float
from .options import (add_quality_arguments, add_speed_arguments, add_task_arguments, announce, choose_device,
                      load_model, network_way, sampler_options, settings, task_options)

__all__ = ["add_parser", "prepare", "restore", "main", "check_arguments", "add_speed_arguments",
           "add_quality_arguments",
           "load_model", "sampler_options"]


def add_parser(sub) -> None:
    p = sub.add_parser("restore", help="restore an image with DDRM (the embedded model unless --model)",
                       description="With a clean INPUT: degrade it (sigma in [0, 1] pixel units, like the original "
                                   "runner), restore, write the restored, degraded and baseline PNGs (bicubic for "
                                   "super-resolution, Wiener for deblurring, else the pseudo-inverse) and print "
                                   "PSNR/SSIM of both. With --observed: INPUT is the measurement itself.")
    p.add_argument("input", metavar="INPUT", nargs="?", help="a PNG/JPEG image (or --input-dir)")
    p.add_argument("-o", "--out", "--output-dir", required=True, metavar="OUT_DIR", help="output folder (created)")
    p.add_argument("--task", required=True, choices=tasks.TASKS, help="the task (a manifest may set one per image)")
    p.add_argument("--sigma-y", type=unit_float, default=0.05, help="measurement noise std in [0, 1] pixel units")
    p.add_argument("--steps", type=positive_int, default=20)
    p.add_argument("--eta", type=unit_float, default=0.85)
    p.add_argument("--eta-b", type=unit_float, default=1.0)
    p.add_argument("--mask", help="inpainting mask PNG of the image's size: white (nonzero) = observed pixels")
    p.add_argument("--model", help="checkpoint file or diffusers folder (default: the embedded model)")
    p.add_argument("--class-label", type=nonnegative_int, default=None,
                   help="the class for a class-conditional model")
    p.add_argument("--observed", action="store_true",
                   help="INPUT is the measurement, not a clean image: " + "; ".join(
                       f"{t.name}: {t.observed_means}" for t in tasks.REGISTRY.values() if t.from_observed)
                   + " (RGB, or gray for the colour tasks)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--samples", type=positive_int, default=1, metavar="K",
                   help="K posterior samples of the same y: write their mean (an estimate of the posterior mean, "
                        "higher PSNR and smoother than one sample) and their per-pixel standard deviation as a "
                        "colour-mapped image with its scale (_std.png; OUT_DIR/std/ for folders); K times the work")
    p.add_argument("--device", type=device_arg, default=None, help="default: cuda when available, else cpu")
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--compare", nargs="?", const="", default=None, metavar="FILE",
                   help="also write a side-by-side figure (clean | degraded | baseline | DDRM, captioned with "
                        "PSNR/SSIM): to FILE, or OUT_DIR/<name>_<task>_compare.png; with --input-dir, "
                        "OUT_DIR/compare/<name>.png per image")
    add_task_arguments(p)
    add_quality_arguments(p)
    add_speed_arguments(p)
    b = p.add_argument_group("directories (a data set; resumable; torchrun shards it over ranks)")
    b.add_argument("--input-dir", help="restore every image in this folder into OUT_DIR/<name>.png")
    b.add_argument("--batch-size", type=positive_int, default=8, help="images of equal size per sampler call")
    b.add_argument("--masks-dir", help="inpainting masks matched by file name (white = observed)")
    b.add_argument("--manifest", help="CSV/JSON with name[, task, sigma_y, seed, noise_map] per image")
    b.add_argument("--num-workers", type=nonnegative_int, default=2, help="DataLoader worker processes decoding images")


def prepare(args) -> Dict[str, object]:
    """What the command can check and compute before anything is written: the input read and measured
    (:func:`ddrm_fast.restoration.measure`), the model loaded, the baseline and the picture of y. Every bad argument
    or file fails here."""
    device = choose_device(args.device)
    way = network_way(args, device)
    chosen = settings(args, device, progress=not args.no_progress, way=way)
    options = task_options(args)
    # the input first: a bad image fails fast, before the model is loaded
    image = read_image(args.input, tasks.input_modes(args.task, args.observed))
    mask = None if args.mask is None else read_mask(args.mask, image.shape[-2:])
    m = _observed(args, lambda: restoration.measure(args.task, image, sigma_y=args.sigma_y, seed=args.seed,
                                                    observed=args.observed, mask=mask, options=options))
    model, betas = load_model(args.model, device, args.class_label)
    way.prepare(model)  # channels_last weights, once
    _observed(args, lambda: restoration.check_size(restoration.model_divisor(model), *m.operator.image_shape[1:]))
    ddrm_timesteps(args.steps, len(betas))  # more steps than the schedule has: refused before anything is written
    return {"measurement": m, "model": model, "betas": betas, "device": device, "settings": chosen, "way": way}


def _observed(args, step):
    """Run ``step``; with --observed, an error also says what INPUT must be for the task."""
    try:
        return step()
    except ValueError as exc:
        if args.observed:
            raise ValueError(f"{exc} (with --observed, INPUT is {tasks.get(args.task).observed_means})") from None
        raise


def restore(args, prepared: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """Everything the command computes, before anything is written: the images to save and the scores."""
    out = dict(prepared or prepare(args))
    m = out["measurement"]
    r = restoration.restore_image(out["model"], out["betas"], m, out["settings"], out["device"], args.samples)
    out.update(r._asdict(), clean=m.clean)
    return out


def _targets(args) -> Dict[str, str]:
    """The files the one-image command writes: kind -> path (the baseline's file is named after it: bicubic,
    wiener or pinv)."""
    stem = os.path.splitext(os.path.basename(args.input))[0]
    record = tasks.get(args.task)
    files = {"restored": f"{stem}_{args.task}_restored.png"}
    if not args.observed:  # an observed input is the degraded image itself
        files["degraded"] = f"{stem}_{args.task}_degraded.png"
    files["baseline"] = f"{stem}_{args.task}_{_FILE_NAMES.get(record.baseline_name, 'baseline')}.png"
    if args.samples > 1:
        files["std"] = f"{stem}_{args.task}_std.png"
    files = {k: os.path.join(args.out, v) for k, v in files.items()}
    if args.compare is not None:
        files["compare"] = args.compare or os.path.join(args.out, f"{stem}_{args.task}_compare.png")
    return files


_FILE_NAMES = {"bicubic": "bicubic", "Wiener": "wiener", "pseudo-inverse": "pinv", "upsampled": "upsampled",
               "gray upsampled": "gray_upsampled"}


def _check_targets(args, files: Dict[str, str]) -> None:
    """Refuse, before any work, to write where a file this package did not write already is: the user's files
    are never overwritten."""
    check_output_path(args.out, "-o")
    folder = os.path.dirname(files.get("compare", "")) or "."
    if "compare" in files and os.path.abspath(folder) != os.path.abspath(args.out):
        if not os.path.isdir(folder):
            raise ValueError(f"--compare {files['compare']}: folder {folder} does not exist")
        check_output_path(folder, "--compare")
    for path in files.values():
        name = os.path.basename(path)
        limit = name_max(os.path.dirname(path) or ".")
        if len(os.fsencode(name)) > limit:
            flag = "--compare" if path == files.get("compare") else "INPUT"
            raise ValueError(f"{flag}: the output name {name} would be {len(os.fsencode(name))} bytes, more than the "
                             f"{limit} its file system takes; rename the input (or give --compare a shorter name)")
        refuse_foreign(path, "png", f"{path} exists and was not written by ddrm-fast; it is not overwritten (move it "
                                    f"away or choose another -o)")


def check_arguments(args) -> None:
    """What the arguments alone can tell, for one image and for folders alike (their types checked the values)."""
    if (args.input is None) == (args.input_dir is None):
        raise ValueError("give either INPUT (one image) or --input-dir (a folder)")
    if args.input_dir is None:
        for flag, value in (("--masks-dir", args.masks_dir), ("--manifest", args.manifest)):
            if value is not None:
                raise ValueError(f"{flag} is for folders (--input-dir); give --mask for one image")
    elif args.mask is not None:
        raise ValueError("--mask is for one image; give --masks-dir with --input-dir")
    elif args.compare:
        raise ValueError("--compare takes no FILE with --input-dir (its figures go to OUT_DIR/compare/)")
    if args.mask is not None and args.task != "inp":
        raise ValueError(f"--mask is for --task inp, not {args.task}")


def main(args) -> int:
    check_arguments(args)
    if args.input_dir is not None:
        return restore_dir.main(args)
    files = _targets(args)
    _check_targets(args, files)
    prepared = prepare(args)
    ddrm = "DDRM" if args.samples == 1 else f"DDRM, mean of {args.samples}"
    # locked before sampling: a folder that cannot be written fails now, not after the work; not while a folder job
    # owns it; and the targets checked again, under the lock
    with FolderLock(args.out):
        _check_targets(args, files)
        announce(args, prepared["way"], prepared["device"])
        r = restore(args, prepared)
        info = {"name": os.path.basename(args.input), "task": args.task, "sigma_y": args.sigma_y, "seed": args.seed}
        if args.samples > 1:
            info["samples"] = args.samples
        for key, path in files.items():
            if key == "compare":
                panels = comparison_panels(r["clean"], r["degraded"], r["baseline_name"], r["baseline"],
                                           r["restored"], f"({args.task}, sigma_y {args.sigma_y:g})", ddrm)
                if args.samples > 1:
                    panels.append(std_panel(r["std"], args.samples))
                write_comparison(panels, path, info)
            elif key == "std":
                write_std(r["std"], path, info)
            else:
                write_png(r[key], path, dict(info, kind=key))
    samples = "" if args.samples == 1 else f", the mean of {args.samples} samples"
    print(f"{args.task}, sigma_y {args.sigma_y}, {args.steps} steps{samples}: restored in {r['seconds']:.1f} s")
    if r["scores"] is not None:
        dp, ds, _, bp, bs = r["scores"]
        width = max(15, len(ddrm))
        print(f"  {r['baseline_name']:{width}s} PSNR {bp:6.2f} dB  SSIM {bs:.4f}")
        print(f"  {ddrm:{width}s} PSNR {dp:6.2f} dB  SSIM {ds:.4f}  ({dp - bp:+.2f} dB vs {r['baseline_name']})")
    for path in files.values():
        print(f"  wrote {path}")
    sys.stdout.flush()
    return 0
