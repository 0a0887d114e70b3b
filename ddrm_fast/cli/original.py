"""`ddrm-fast original`: the original DDRM runner's command line (its main.py), as a drop-in that writes its files.

The original's own command runs unchanged: ``--config`` (a path, or a name in ./configs/), ``--doc``, ``--exp``,
``-i``, ``--ni``, ``--deg``, ``--sigma_0``, ``--timesteps``, ``--eta``, ``--etaB``, ``--subset_start/--subset_end``,
``--seed``. As the original does, it seeds torch before it builds the config's network (and, for a class-conditional
one, its classifier) from the checkpoints under ``EXP/logs``, reads the config's data set under ``EXP/datasets`` in
the order of its seeded DataLoader (:mod:`ddrm_fast.compat.datasets`), degrades with the original's operators and
draws (:mod:`ddrm_fast.compat`), samples with classifier guidance where the original does, and writes
``orig_{idx}.png``, ``y0_{idx}.png`` and ``{idx}_-1.png`` into ``EXP/image_samples/IMAGE_FOLDER`` with the printed
"Total Average PSNR". Added, not in the original: ``--input-dir`` (a folder of images instead of the data set),
``--model``/``--classifier`` (other checkpoints, or ``embedded``), ``--labels``/``--class-label``, ``--device``,
``--backend``. Differences on purpose: docs/compat.md, "The original runner".
"""
from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace
from typing import List, Tuple

import numpy as np
import torch

from .. import compat
from .._utils import one_line
from ..compat import datasets, networks
from ..files import FolderLock, open_regular, read_npy, refuse_foreign
from ..imageio import write_png_uint8
from ..sampler import BACKENDS
from .args import device_arg, nonnegative_int, positive_int, unit_float
from .options import choose_device

__all__ = ["add_parser", "main", "load_config"]


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
    p.add_argument("--input-dir", help="restore this folder's images instead of the config's data set (an "
                                       "ImageFolder: class folders, or the images themselves, class 0)")
    p.add_argument("--mask", help="the mask file of inp_lolcat / inp_lorem (.npy of image_size^2 values, 0 = missing; "
                                  "default: where the original reads it, inp_masks/)")
    p.add_argument("--model", help="checkpoint path, or 'embedded' (default: where the original keeps it in EXP/logs)")
    p.add_argument("--classifier", help="the classifier checkpoint of a class-conditional model (default: where the "
                                        "original keeps it in EXP/logs)")
    p.add_argument("--class-label", type=nonnegative_int, default=None,
                   help="one class for every image (instead of the data set's)")
    p.add_argument("--labels", help="CSV (name,label) or JSON {name: label}: a class per image file name (instead of "
                                    "the data set's)")
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


def load_config(path: str) -> Tuple[SimpleNamespace, str]:
    """(the original's yml config, checked for the fields this command reads; the path it was read from)."""
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
    return cfg, path


def _networks(args, cfg, device):
    """(model(x, t[, y]), betas, cls_fn or None). Built as the original builds them (advancing torch's generator the
    same way) unless --model names a checkpoint the config does not describe, or 'embedded'."""
    from ..models import ADMUNet, default_model, load
    from ..schedules import runner_betas

    d = cfg.diffusion
    betas = runner_betas(d.beta_schedule, d.beta_start, d.beta_end, d.num_diffusion_timesteps)
    model_path, classifier_path = networks.checkpoint_paths(cfg, args.exp)
    if args.model == "embedded":
        model = default_model(device).model
    elif networks.model_complete(cfg):
        model = networks.load_network(networks.build_model(cfg), args.model or model_path)
    elif args.model is not None:
        heads = dict(num_heads=getattr(cfg.model, "num_heads", 4),
                     num_head_channels=getattr(cfg.model, "num_head_channels", 64))
        model = load(args.model, schedule=betas, **heads).model
    else:
        raise ValueError("--config: the model section does not say what network to build (create_model needs "
                         "image_size, num_channels, num_res_blocks); give them, or --model")
    cls_fn = None
    if isinstance(model, ADMUNet) and model.config.num_classes is not None:  # the original guides it, always
        classifier = networks.load_network(networks.build_classifier(cfg), args.classifier or classifier_path)
        cls_fn = networks.classifier_guidance(classifier.to(device),
                                              float(getattr(cfg.classifier, "classifier_scale", 1.0)))
    if getattr(cfg.model, "use_fp16", False) and isinstance(model, ADMUNet) and device.type == "cuda":
        model.to_dtype(torch.float16)  # guided-diffusion's convert_to_fp16; on the CPU the drop-in stays float32
    return model.to(device).eval(), betas, cls_fn


def _labels(args, images: List[Tuple[str, int]]) -> List[int]:
    """The class of every image: the data set's, or --class-label / --labels (by file name) instead."""
    if args.class_label is not None:
        return [args.class_label] * len(images)
    if args.labels is None:
        return [label for _, label in images]
    with open_regular(args.labels, "--labels", "r") as f:
        text = f.read()
    try:
        table = json.loads(text) if args.labels.lower().endswith(".json") else dict(
            (row.split(",")[0].strip(), int(row.split(",")[1])) for row in text.splitlines()[1:] if row.strip())
    except (ValueError, IndexError) as exc:
        raise ValueError(f"--labels {args.labels}: unreadable ({exc})") from None
    names = [os.path.basename(path) for path, _ in images]
    bad = [n for n in names if not isinstance(table.get(n), int) or isinstance(table.get(n), bool)]
    if bad:
        raise ValueError(f"--labels: no class label for {', '.join(bad[:3])}")
    return [table[n] for n in names]


def _quantise(x01: torch.Tensor) -> np.ndarray:
    """torchvision's save_image rounding of a (C, H, W) image in [0, 1]."""
    a = x01.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    return a[..., 0] if a.shape[2] == 1 else a


# --- the run ----------------------------------------------------------------------------------------------------------
def _subset(args, count: int) -> None:
    """The original's --subset_start/--subset_end checks; without them the indices count from 0."""
    if args.subset_start >= 0:
        if args.subset_end <= args.subset_start:
            raise ValueError(f"--subset_end ({args.subset_end}) must exceed --subset_start ({args.subset_start})")
        if args.subset_end > count:
            raise ValueError(f"--subset_end ({args.subset_end}) is past the data set's {count} images")
    else:
        args.subset_start, args.subset_end = 0, count


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


#: the mask files the original reads (relative to its working directory) for inp_lolcat and inp_lorem
_MASKS = {"inp_lolcat": os.path.join("inp_masks", "lolcat_extra.npy"),
          "inp_lorem": os.path.join("inp_masks", "lorem3.npy")}


def main(args) -> int:
    cfg, config_path = load_config(args.config)
    networks.check_config(cfg, config_path)
    mask_path = args.mask or (_MASKS.get(args.deg) if os.path.lexists(_MASKS.get(args.deg, "")) else None)
    compat.check_runner_degradation(args.deg, mask_path is not None)
    device = choose_device(args.device)
    images = datasets.runner_images(cfg, args.exp, args.input_dir)
    print(f"Dataset has size {len(images)}")
    _subset(args, len(images))
    folder = os.path.join(args.exp, "image_samples", args.image_folder)
    _outputs(folder, args.subset_start, args.subset_end - args.subset_start)
    torch.manual_seed(args.seed)  # as the original: before its networks are built, which draw from it
    np.random.seed(args.seed % 2**32)
    model, betas, cls_fn = _networks(args, cfg, device)
    labels = _labels(args, images)
    mask = None if mask_path is None else torch.from_numpy(read_npy(mask_path, "--mask", cfg.data.image_size**2))
    H = compat.runner_operator(args.deg, cfg.data.channels, cfg.data.image_size, device, mask)
    batches = datasets.loader_batches(len(images), cfg.sampling.batch_size, args.seed, args.subset_start,
                                      args.subset_end)
    sigma_0 = 2 * args.sigma_0  # [0, 1] pixel units -> [-1, 1]
    print(f"Start from {args.subset_start}")
    job = _Job(args, cfg, H, model, cls_fn, betas.to(device), sigma_0, folder, device)
    with FolderLock(folder):
        _outputs(folder, args.subset_start, args.subset_end - args.subset_start)
        total, count, failed = job.run(images, labels, batches)
    if count:
        print("Total Average PSNR: %.2f" % (total / count))
    print("Number of samples: %d" % count)
    sys.stdout.flush()
    return 1 if failed else 0


class _Job:
    """The original's loop over the loader's batches: measure, save orig/y0, sample, save the result, add its PSNR."""

    def __init__(self, args, cfg, H, model, cls_fn, betas, sigma_0, folder, device):
        self.args, self.cfg, self.H, self.model, self.cls_fn = args, cfg, H, model, cls_fn
        self.betas, self.sigma_0, self.folder, self.device = betas, sigma_0, folder, device
        self.seq = range(0, betas.numel(), betas.numel() // args.timesteps)

    def run(self, images, labels, batches):
        from tqdm.auto import tqdm

        total, count, failed, idx = 0.0, 0, 0, self.args.subset_start
        bar = tqdm(batches, disable=self.args.no_progress, desc="original")
        for batch in bar:
            loaded, kept = [], []
            for i in batch:
                try:
                    loaded.append(datasets.preprocess(images[i][0], self.cfg))
                    kept.append(i)
                except Exception as exc:  # noqa: BLE001 - a bad image is reported and left out of its batch
                    print(f"ddrm-fast: {images[i][0]}: {one_line(exc)}", file=sys.stderr)
                    failed += 1
            if not loaded:
                continue
            total += self._batch(torch.stack(loaded).to(self.device), torch.tensor([labels[i] for i in kept]), idx)
            idx += len(loaded)
            count += len(loaded)
            bar.set_description("PSNR: %.2f" % (total / count))
        return total, count, failed

    def _batch(self, x01: torch.Tensor, classes: torch.Tensor, idx: int) -> float:
        x_orig = x01 * 2 - 1  # data_transform: rescaled to [-1, 1]
        y_0, pinv = _measure(self.H, self.args.deg, x_orig, self.sigma_0, self.cfg)
        info = {"kind": "original", "seed": self.args.seed, "deg": self.args.deg}
        for j in range(x_orig.shape[0]):  # the original writes these before it samples
            write_png_uint8(_quantise(((pinv[j] + 1) / 2).clamp(0, 1)), os.path.join(self.folder, f"y0_{idx + j}.png"),
                            info)
            write_png_uint8(_quantise(((x_orig[j] + 1) / 2).clamp(0, 1)),
                            os.path.join(self.folder, f"orig_{idx + j}.png"), info)
        x = torch.randn(*x_orig.shape, device=self.device)
        classes = classes.to(self.device)
        xs, _ = compat.efficient_generalized_steps(x, self.seq, self.model, self.betas, self.H, y_0, self.sigma_0,
                                                   etaB=self.args.etaB, etaA=self.args.eta, etaC=self.args.eta,
                                                   cls_fn=self.cls_fn, classes=classes, backend=self.args.backend)
        total = 0.0
        for j in range(x_orig.shape[0]):
            out = ((xs[-1][j] + 1) / 2).clamp(0, 1)
            write_png_uint8(_quantise(out.clone()), os.path.join(self.folder, f"{idx + j}_-1.png"), info)
            mse = torch.mean((out - (x_orig[j] + 1) / 2) ** 2)
            total += float(10 * torch.log10(1 / mse))
        return total
