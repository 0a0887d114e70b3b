"""`ddrm-fast restore`: degrade a clean image (or take a measurement with --observed) and restore it with DDRM."""
from __future__ import annotations

import os
import sys
import time
from typing import Dict, Optional

import torch

from .. import tasks
from ..imageio import psnr_ssim, read_image, read_mask, write_png
from ..sampler import BACKENDS, COMPILE_MODES, ddrm_sample


def add_parser(sub) -> None:
    p = sub.add_parser("restore", help="restore an image with DDRM (the embedded model unless --model)",
                       description="With a clean INPUT: degrade it (sigma in [0, 1] pixel units, like the original "
                                   "runner), restore, write restored/degraded/pinv PNGs and print PSNR/SSIM. With "
                                   "--observed: INPUT is the measurement itself; writes the restoration.")
    p.add_argument("input", metavar="INPUT", nargs="?", help="a PNG/JPEG image (or --input-dir)")
    p.add_argument("-o", "--out", "--output-dir", required=True, metavar="OUT_DIR", help="output folder (created)")
    p.add_argument("--task", required=True, choices=tasks.TASKS, help="the task (a manifest may set one per image)")
    p.add_argument("--sigma-y", type=float, default=0.05, help="measurement noise std in [0, 1] pixel units")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--eta", type=float, default=0.85)
    p.add_argument("--eta-b", type=float, default=1.0)
    p.add_argument("--mask", help="inpainting mask PNG of the image's size: white (nonzero) = observed pixels")
    p.add_argument("--model", help="checkpoint file or diffusers folder (default: the embedded model)")
    p.add_argument("--class-label", type=int, default=None, help="the class for a class-conditional model")
    p.add_argument("--observed", action="store_true", help="INPUT is the measurement, not a clean image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--no-progress", action="store_true")
    add_speed_arguments(p)
    b = p.add_argument_group("directories (a data set; resumable; torchrun shards it over ranks)")
    b.add_argument("--input-dir", help="restore every image in this folder into OUT_DIR/<name>.png")
    b.add_argument("--batch-size", type=int, default=8, help="images of equal size per sampler call")
    b.add_argument("--masks-dir", help="inpainting masks matched by file name (white = observed)")
    b.add_argument("--manifest", help="CSV/JSON with name[, task, sigma_y, seed, noise_map] per image")
    b.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes decoding images")


def add_speed_arguments(p) -> None:
    """The speed options (also used by benchmarks/bench_batch.py); :func:`sampler_options` turns them into keywords."""
    f = p.add_argument_group("speed (GPU): the network's precision and layout, compilation, noise")
    f.add_argument("--dtype", default="float32", choices=tuple(_DTYPES),
                   help="run the network under autocast in this dtype; the DDRM update stays float32")
    f.add_argument("--channels-last", action="store_true", help="hand the network channels_last images")
    f.add_argument("--compile", action="store_true", help="run the network through torch.compile")
    f.add_argument("--compile-mode", default="default", choices=COMPILE_MODES, help="the torch.compile mode")
    f.add_argument("--cuda-graph", action="store_true",
                   help="capture the sampling loop in a CUDA graph and replay it for every batch of the same shape")
    f.add_argument("--noise", default="torch", choices=("torch", "philox"),
                   help="sampler noise from the image's seed: torch's generator (drawn on the CPU) or counter-based "
                        "Philox generated inside the fused kernels (no host work, no noise buffers)")


_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def sampler_options(args, device: torch.device) -> Dict[str, object]:
    """The ddrm_sample keywords of the speed options (results equal float32's to the network's precision)."""
    if args.cuda_graph and device.type != "cuda":
        raise ValueError(f"--cuda-graph needs a CUDA device, not {device}")
    return {"model_dtype": _DTYPES[args.dtype], "channels_last": args.channels_last,
            "compile": args.compile_mode if args.compile else False, "noise": args.noise,
            "cuda_graph": args.cuda_graph}


def load_model(path, device, class_label: Optional[int] = None):
    """The user's checkpoint, or the embedded model when ``path`` is None: (model, betas). A class-conditional
    ADM needs ``class_label`` and is bound to it."""
    from ..models import ADMUNet, ClassConditional, default_model, load

    model, betas = load(path, device=device) if path else default_model(device)
    conditional = isinstance(model, ADMUNet) and model.config.num_classes is not None
    if conditional and class_label is None:
        raise ValueError(f"{path} is class-conditional ({model.config.num_classes} classes): give --class-label")
    if class_label is not None and not conditional:
        raise ValueError("--class-label is for class-conditional models; this one is not")
    return (ClassConditional(model, class_label) if conditional else model), betas


def restore(args) -> Dict[str, object]:
    """Everything the command computes, before anything is written: the images to save and the scores."""
    if args.mask is not None and args.task != "inp":
        raise ValueError(f"--mask is for --task inp, not {args.task}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    options = sampler_options(args, device)
    # the input first: a bad image fails fast, before the model is loaded
    modes = ("L", "RGB") if args.observed and args.task == "color" else ("RGB",)
    image = read_image(args.input, modes)
    mask = None if args.mask is None else read_mask(args.mask, image.shape[-2:])
    g = torch.Generator().manual_seed(args.seed)
    sigma = 2 * args.sigma_y  # [0, 1] pixel units -> [-1, 1] image units
    if args.observed:
        op, y = tasks.measurement_from_observed(args.task, image, mask)
        clean = None
    else:
        op = tasks.make_operator(args.task, image.shape, mask, generator=g)
        clean = image[None]
        y = tasks.degrade(clean, op, sigma, g)
    model, betas = load_model(args.model, device, args.class_label)
    divisor = getattr(model, "divisor", 1)
    _, h, w = op.image_shape
    if h % divisor or w % divisor:
        raise ValueError(f"image size {w}x{h}: this model needs sides that are multiples of {divisor}")
    out = {"clean": clean}
    if clean is not None:  # the baseline and the picture of y, on the CPU before the operator moves
        pinv = op.H_pinv(y)[0]
        out["degraded"] = tasks.measurement_view(args.task, op, y[0], pinv)
        out["pinv"] = pinv
    t0 = time.perf_counter()
    with torch.no_grad():
        x = ddrm_sample(model, y.to(device), op.to(device), sigma, steps=args.steps, eta=args.eta,
                        eta_b=args.eta_b, schedule=betas.float(), generator=g, backend=args.backend,
                        progress=not (args.no_progress or args.cuda_graph), **options)
    out["seconds"] = time.perf_counter() - t0
    out["restored"] = x[0].cpu()
    if clean is not None:
        out["scores"] = {"pinv": psnr_ssim(out["pinv"], clean[0]), "ddrm": psnr_ssim(out["restored"], clean[0])}
    return out


def main(args) -> int:
    if (args.input is None) == (args.input_dir is None):
        raise ValueError("give either INPUT (one image) or --input-dir (a folder)")
    if not 0 <= args.sigma_y <= 1:
        raise ValueError(f"--sigma-y must lie in [0, 1] (pixel units), got {args.sigma_y}")
    if args.input_dir is not None:
        from .restore_dir import main as restore_dir_main

        return restore_dir_main(args)
    r = restore(args)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.splitext(os.path.basename(args.input))[0]
    files = {"restored": os.path.join(args.out, f"{stem}_{args.task}_restored.png")}
    if r["clean"] is not None:
        files["degraded"] = os.path.join(args.out, f"{stem}_{args.task}_degraded.png")
        files["pinv"] = os.path.join(args.out, f"{stem}_{args.task}_pinv.png")
    for key, path in files.items():
        write_png(r[key], path)
    print(f"{args.task}, sigma_y {args.sigma_y}, {args.steps} steps: restored in {r['seconds']:.1f} s")
    if "scores" in r:
        for name, label in (("pinv", "pseudo-inverse"), ("ddrm", "DDRM")):
            psnr, ssim = r["scores"][name]
            print(f"  {label:15s} PSNR {psnr:6.2f} dB  SSIM {ssim:.4f}")
    for path in files.values():
        print(f"  wrote {path}")
    sys.stdout.flush()
    return 0
