"""`ddrm-fast original`: the original DDRM runner's command line (its main.py) as a drop-in, over a folder of images.

It takes the original's flags (``--config`` yml with its data / model / diffusion / sampling sections, ``--deg``,
``--sigma_0``, ``--timesteps``, ``--eta``, ``--etaB``, ``--subset_start``/``--subset_end``, ``-i``, ``--exp``,
``--seed``), runs :func:`ddrm_fast.compat.efficient_generalized_steps` (the original's operators and random draws, on
the fused kernels), writes the original's files into ``EXP/image_samples/IMAGE_FOLDER`` (``orig_{idx}.png``,
``y0_{idx}.png``, ``{idx}_-1.png``) and prints its average PSNR. For a given seed, model and images in the same
order and batches, the numbers are the original's. What differs, on purpose: the images come from ``--input-dir``
(sorted by name) instead of the original's data-set classes; nothing is downloaded (``--model``, or the checkpoint
where the original keeps it); an existing output folder is never deleted (only files this command wrote are
overwritten); a class-conditional model takes ``--class-label`` or ``--labels`` (the config's classifier guidance is
not applied).
"""
from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace
from typing import Dict, List, Optional

import numpy as np
import torch

from .. import compat
from ..batch import IMAGE_EXTENSIONS
from ..files import FolderLock, open_regular, read_npy, refuse_foreign
from ..imageio import open_image, upright, write_png_uint8
from ..sampler import BACKENDS
from .args import device_arg, nonnegative_int, positive_int, unit_float
from .options import choose_device

__all__ = ["add_parser", "main", "load_config", "preprocess"]


def add_parser(sub) -> None:
    p = sub.add_parser("original", help="the original DDRM runner's command line (main.py) over a folder of images",
                       description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="the original's yml config (a path, or a name in ./configs/)")
    p.add_argument("--deg", required=True, help="deno, inp, inp_lolcat, inp_lorem, sr2, sr4, sr_bicubic4, "
                                                "deblur_uni, deblur_gauss, deblur_aniso, color, cs4, ...")
    p.add_argument("--sigma_0", type=unit_float, required=True, help="noise std in [0, 1] pixel units")
    p.add_argument("--timesteps", type=positive_int, default=1000, help="number of DDRM steps")
    p.add_argument("--eta", type=unit_float, default=0.85)
    p.add_argument("--etaB", type=unit_float, default=1.0)
    p.add_argument("--subset_start", type=int, default=-1)
    p.add_argument("--subset_end", type=int, default=-1)
    p.add_argument("-i", "--image_folder", default="images", help="output folder name under EXP/image_samples/")
    p.add_argument("--exp", default="exp", help="the original's experiment folder (outputs, and checkpoints in "
                                                "EXP/logs/ when --model is not given)")
    p.add_argument("--seed", type=nonnegative_int, default=1234)
    p.add_argument("--input-dir", required=True, help="the images to restore (instead of the original's data sets)")
    p.add_argument("--mask", help="the mask file of inp_lolcat / inp_lorem (.npy of image_size^2 values, 0 = missing)")
    p.add_argument("--model", help="checkpoint path, or 'embedded' (default: where the original keeps it in EXP/logs)")
    p.add_argument("--class-label", type=nonnegative_int, default=None, help="the class of a class-conditional model")
    p.add_argument("--labels", help="CSV (name,label) or JSON {name: label} with a class per image")
    p.add_argument("--device", type=device_arg, default=None)
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--no-progress", action="store_true")
    for flag in ("--doc", "--comment", "--verbose"):  # the original's logging flags: accepted, not needed here
        p.add_argument(flag, default=None, help="accepted for the original's command lines; unused")
    p.add_argument("--ni", action="store_true", help="accepted; this command never asks (and never deletes)")
    p.add_argument("--sample", action="store_true", help="accepted; sampling is what this command does")


# --- the config -------------------------------------------------------------------------------------------------------
def _namespace(d: dict) -> SimpleNamespace:
    return SimpleNamespace(**{k: _namespace(v) if isinstance(v, dict) else v for k, v in d.items()})


def load_config(path: str) -> SimpleNamespace:
    """The original's yml config, checked for the fields this command reads."""
    import yaml

    if not os.path.lexists(path) and os.path.lexists(os.path.join("configs", path)):
        path = os.path.join("configs", path)  # the original reads configs/<name>
    with open_regular(path, "--config", "r") as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ValueError(f"--config {path}: not YAML ({str(exc).splitlines()[0]})") from None
    need = {"data": ("dataset", "image_size", "channels"), "model": ("type",),
            "diffusion": ("beta_schedule", "beta_start", "beta_end", "num_diffusion_timesteps"),
            "sampling": ("batch_size",)}
    for section, fields in need.items():
        if not isinstance(raw, dict) or not isinstance(raw.get(section), dict):
            raise ValueError(f"--config {path}: no {section} section")
        missing = [k for k in fields if k not in raw[section]]
        if missing:
            raise ValueError(f"--config {path}: {section} lacks {', '.join(missing)}")
    cfg = _namespace(raw)
    for name, value in (("data.image_size", cfg.data.image_size), ("data.channels", cfg.data.channels),
                        ("sampling.batch_size", cfg.sampling.batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"--config {path}: {name} must be a positive integer, got {value!r}")
    return cfg


def _model(args, cfg, device):
    """(model(x, t, labels), betas) from --model, or from where the original keeps its checkpoints."""
    from ..models import ADMUNet, default_model, load
    from ..schedules import runner_betas

    d = cfg.diffusion
    betas = runner_betas(d.beta_schedule, d.beta_start, d.beta_end, d.num_diffusion_timesteps)
    path = args.model
    if path is None:
        s = cfg.data.image_size
        if cfg.model.type == "simple":
            path = os.path.join(args.exp, "logs", "celeba", "celeba_hq.ckpt")
        elif getattr(cfg.model, "class_cond", False):
            path = os.path.join(args.exp, "logs", "imagenet", f"{s}x{s}_diffusion.pt")
        else:
            path = os.path.join(args.exp, "logs", "imagenet", "256x256_diffusion_uncond.pt")
        if not os.path.lexists(path):
            raise ValueError(f"no model: give --model (a checkpoint, or 'embedded'); the original's would be {path}")
    if path == "embedded":
        model = default_model(device).model
    else:
        heads = dict(num_heads=getattr(cfg.model, "num_heads", 4), num_head_channels=getattr(cfg.model,
                                                                                             "num_head_channels", 64))
        fp16 = getattr(cfg.model, "use_fp16", False) and device.type == "cuda"
        model = load(path, device=device, schedule=betas, dtype=torch.float16 if fp16 else None, **heads).model
    classes = model.config.num_classes if isinstance(model, ADMUNet) else None
    if classes is None and (args.class_label is not None or args.labels is not None):
        raise ValueError("--class-label and --labels are for class-conditional models; this one is not")
    if classes is not None and args.class_label is None and args.labels is None:
        raise ValueError(f"the model is class-conditional ({classes} classes): give --class-label or --labels")
    return model, betas, classes


def _labels(args, names: List[str], classes: Optional[int]) -> Optional[Dict[str, int]]:
    """name -> class label, for a class-conditional model."""
    if classes is None:
        return None
    if args.labels is None:
        table = {n: args.class_label for n in names}
    else:
        with open_regular(args.labels, "--labels", "r") as f:
            text = f.read()
        try:
            table = json.loads(text) if args.labels.lower().endswith(".json") else dict(
                (row.split(",")[0].strip(), int(row.split(",")[1])) for row in text.splitlines()[1:] if row.strip())
        except (ValueError, IndexError) as exc:
            raise ValueError(f"--labels {args.labels}: unreadable ({exc})") from None
    bad = [n for n in names if not isinstance(table.get(n), int) or not 0 <= table[n] < classes]
    if bad:
        raise ValueError(f"--labels: no class label in 0..{classes - 1} for {', '.join(bad[:3])}")
    return {n: table[n] for n in names}


# --- the images -----------------------------------------------------------------------------------------------------
def preprocess(path: str, cfg) -> torch.Tensor:
    """An image as the original's data set hands it over: (C, S, S) in [0, 1]. ImageNet: halved by BOX while twice the
    size, bicubic to S on the short side, centre crop (guided-diffusion's center_crop_arr); CelebA_HQ / FFHQ: bilinear
    to S x S; LSUN: bilinear to S on the short side, centre crop; any other data set: the image must be S x S."""
    from PIL import Image

    s = cfg.data.image_size
    with open_image(path) as im:  # a regular file, its header's size checked before decoding
        im = upright(im).convert("RGB" if cfg.data.channels == 3 else "L")
    dataset = cfg.data.dataset
    if dataset == "ImageNet":
        while min(*im.size) >= 2 * s:
            im = im.resize(tuple(x // 2 for x in im.size), resample=Image.BOX)
        scale = s / min(*im.size)
        im = im.resize(tuple(round(x * scale) for x in im.size), resample=Image.BICUBIC)
        a = np.asarray(im)
        top, left = (a.shape[0] - s) // 2, (a.shape[1] - s) // 2
        a = a[top:top + s, left:left + s]
    else:
        if dataset in ("CelebA_HQ", "FFHQ"):
            im = im.resize((s, s), resample=Image.BILINEAR)
        elif dataset == "LSUN":
            w, h = im.size
            short = s if w <= h else int(s * w / h)
            im = im.resize((short, int(s * h / w)) if w <= h else (short, s), resample=Image.BILINEAR)
            left, top = int(round((im.size[0] - s) / 2.0)), int(round((im.size[1] - s) / 2.0))
            im = im.crop((left, top, left + s, top + s))
        a = np.asarray(im)
        if a.shape[:2] != (s, s):
            raise ValueError(f"image {path}: {a.shape[1]}x{a.shape[0]}, the config's data set {dataset!r} needs "
                             f"{s}x{s}")
    a = a[..., None] if a.ndim == 2 else a
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255


def _quantise(x01: torch.Tensor) -> np.ndarray:
    """torchvision's save_image rounding of a (C, H, W) image in [0, 1]."""
    a = x01.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    return a[..., 0] if a.shape[2] == 1 else a


# --- the run ----------------------------------------------------------------------------------------------------------
def _subset(args) -> List[str]:
    if not os.path.isdir(args.input_dir):
        raise ValueError(f"--input-dir {args.input_dir}: no such folder")
    names = sorted(n for n in os.listdir(args.input_dir) if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS)
    if args.subset_start >= 0 and args.subset_end > 0:
        if args.subset_end <= args.subset_start:
            raise ValueError(f"--subset_end ({args.subset_end}) must exceed --subset_start ({args.subset_start})")
        return names[args.subset_start:args.subset_end]
    args.subset_start = 0
    return names


def _outputs(folder: str, start: int, count: int) -> List[str]:
    """The files the run writes; any that exists must be one this command wrote (the user's are never touched)."""
    paths = [os.path.join(folder, f"{kind}_{i}.png") for i in range(start, start + count) for kind in ("orig", "y0")]
    paths += [os.path.join(folder, f"{i}_-1.png") for i in range(start, start + count)]
    for path in paths:
        refuse_foreign(path, "png", f"{path} exists and was not written by ddrm-fast; it is not overwritten (choose "
                                    f"another -i or --exp)")
    return paths


def _measure(H, deg: str, x: torch.Tensor, sigma_0: float, cfg):
    """(y_0, the picture of y_0) as the original makes them: H x plus noise from the global generator."""
    y_0 = H.H(x)
    y_0 = y_0 + sigma_0 * torch.randn_like(y_0)
    b, c, s = x.shape[0], cfg.data.channels, cfg.data.image_size
    pinv = H.H_pinv(y_0).view(b, c, s, s)
    if deg.startswith("deblur"):
        pinv = y_0.view(b, c, s, s)
    elif deg == "color":
        pinv = y_0.view(b, 1, s, s).repeat(1, 3, 1, 1)
    elif deg.startswith("inp"):
        pinv = pinv + H.H_pinv(H.H(torch.ones_like(pinv))).reshape(*pinv.shape) - 1
    return y_0, pinv


def main(args) -> int:
    cfg = load_config(args.config)
    compat.check_runner_degradation(args.deg, args.mask is not None)
    names = _subset(args)
    device = choose_device(args.device)
    folder = os.path.join(args.exp, "image_samples", args.image_folder)
    _outputs(folder, args.subset_start, len(names))
    model, betas, classes = _model(args, cfg, device)
    labels = _labels(args, names, classes)
    mask = None
    if args.mask is not None:
        mask = torch.from_numpy(read_npy(args.mask, "--mask", cfg.data.image_size**2))
    torch.manual_seed(args.seed)  # as the original: every draw below comes from the global generators
    np.random.seed(args.seed % 2**32)
    H = compat.runner_operator(args.deg, cfg.data.channels, cfg.data.image_size, device, mask)
    sigma_0 = 2 * args.sigma_0  # [0, 1] pixel units -> [-1, 1]
    seq = range(0, betas.numel(), betas.numel() // args.timesteps)
    print(f"Dataset has size {len(names)}")
    print(f"Start from {args.subset_start}")
    with FolderLock(folder):
        _outputs(folder, args.subset_start, len(names))
        total, count, failed = _run(args, cfg, H, model, betas.to(device), seq, sigma_0, names, labels, folder,
                                    device)
    if count:
        print("Total Average PSNR: %.2f" % (total / count))
    print("Number of samples: %d" % count)
    sys.stdout.flush()
    return 1 if failed else 0


def _run(args, cfg, H, model, betas, seq, sigma_0, names, labels, folder, device):
    """The original's loop over batches: measure, save orig/y0, sample, save the result, add its PSNR."""
    from tqdm.auto import tqdm

    total, count, failed, idx = 0.0, 0, 0, args.subset_start
    bs = cfg.sampling.batch_size
    bar = tqdm(range(0, len(names), bs), disable=args.no_progress, desc="original")
    for start in bar:
        batch = names[start:start + bs]
        images = []
        for n in batch:
            try:
                images.append(preprocess(os.path.join(args.input_dir, n), cfg))
            except Exception as exc:  # noqa: BLE001 - a bad image is reported and left out of its batch
                print(f"ddrm-fast: {n}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                      file=sys.stderr)
                failed += 1
        if not images:
            continue
        x_orig = torch.stack(images).to(device) * 2 - 1  # data_transform: rescaled to [-1, 1]
        y_0, pinv = _measure(H, args.deg, x_orig, sigma_0, cfg)
        x = torch.randn(*x_orig.shape, device=device)
        net = model
        if labels is not None:
            y_cls = torch.tensor([labels[n] for n in batch[:len(images)]], device=device)
            net = lambda x_t, t: model(x_t, t, y_cls)  # noqa: E731
        xs, _ = compat.efficient_generalized_steps(x, seq, net, betas, H, y_0, sigma_0, etaB=args.etaB, etaA=args.eta,
                                                   etaC=args.eta, backend=args.backend)
        for j in range(len(images)):
            info = {"kind": "original", "seed": args.seed, "deg": args.deg}
            write_png_uint8(_quantise(((pinv[j] + 1) / 2).clamp(0, 1)), os.path.join(folder, f"y0_{idx + j}.png"), info)
            write_png_uint8(_quantise(((x_orig[j] + 1) / 2).clamp(0, 1)), os.path.join(folder, f"orig_{idx + j}.png"),
                            info)
            out = ((xs[-1][j] + 1) / 2).clamp(0, 1)
            write_png_uint8(_quantise(out.clone()), os.path.join(folder, f"{idx + j}_-1.png"), info)
            mse = torch.mean((out - (x_orig[j] + 1) / 2) ** 2)
            total += float(10 * torch.log10(1 / mse))
        idx += len(images)
        count += len(images)
        bar.set_description("PSNR: %.2f" % (total / count))
    return total, count, failed
