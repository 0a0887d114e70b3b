"""`ddrm-fast train`: DDPM training of a small ADM UNet on scikit-image's photos (the embedded model's recipe)."""
from __future__ import annotations

import hashlib
import os
import time

import torch

from ..files import open_regular
from ..models import CheckpointError, load, metadata
from ..models.adm import ADMUNet
from ..schedules import get_betas
from .. import training
from .args import device_arg, nonnegative_int, positive_float, positive_int, unit_float


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a small ADM UNet on scikit-image's bundled photos (DDPM loss, EMA)",
                       description="Checkpoints every --checkpoint-every steps and on Ctrl-C; run the same command "
                                   "with --resume to continue (the run then equals an uninterrupted one).")
    p.add_argument("-o", "--out", required=True, help="output folder: model.safetensors, state.pt, log.jsonl")
    p.add_argument("--steps", type=positive_int, default=5000, help="total steps of the run (its cosine schedule)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--crop", type=positive_int, default=64, help="training crop side (a multiple of 8)")
    p.add_argument("--lr", type=positive_float, default=4e-4)
    p.add_argument("--min-scale", type=unit_float, default=0.5,
                   help="crops of the photos downscaled by a factor in [MIN_SCALE, 1]; 0: down to the whole photo")
    p.add_argument("--rot90", action="store_true",
                   help="also rotate each crop by a random multiple of 90 degrees (more views of the few photos)")
    p.add_argument("--ema-decay", type=unit_float, default=0.999)
    p.add_argument("--schedule", choices=["linear", "cosine"], help="the noise schedule (default: linear)")
    p.add_argument("--model-channels", type=positive_int,
                   help=f"the UNet's base width (default: {training.SMALL_ADM['model_channels']})")
    p.add_argument("--init", metavar="FILE", help="start from this model file's weights, architecture and schedule "
                                                  "(fine-tuning) instead of a fresh initialisation")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--device", type=device_arg, default="cpu")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the network (faster on CPUs with "
                                                       "AVX512-BF16/AMX and on GPUs; weights stay float32)")
    p.add_argument("--checkpoint-every", type=positive_int, default=500)
    p.add_argument("--resume", action="store_true", help="continue OUT/state.pt (start if there is none)")
    p.add_argument("--no-heldout", action="store_true", help="skip the loss on the whole held-out photos at each "
                                                             "checkpoint (about 20 s on 2 CPU cores)")
    p.add_argument("--no-progress", action="store_true")


def main(args) -> int:
    torch.manual_seed(args.seed)
    if args.init is None:
        model = ADMUNet(dict(training.SMALL_ADM, model_channels=args.model_channels or training.SMALL_ADM[
            "model_channels"]))
        betas, init = get_betas(args.schedule or "linear").double(), None
    else:
        model, betas, init = _init_from(args)
    photos = training.skimage_photos(training.TRAIN_PHOTOS)
    heldout = [] if args.no_heldout else training.heldout_photos()
    params = sum(p.numel() for p in model.parameters())
    print(f"training a {params / 1e6:.2f}M-parameter ADM UNet on {len(photos)} scikit-image images "
          f"({', '.join(training.TRAIN_PHOTOS)}), held out: {', '.join(training.HELDOUT_PHOTOS)}")
    info = {"data": list(training.TRAIN_PHOTOS), "heldout": list(training.HELDOUT_PHOTOS),
            "device": str(args.device), "torch": torch.__version__}
    # a fine-tuned model records the file it started from (whose own record says how that one was trained)
    info.update({"schedule": args.schedule or "linear"} if init is None else {"init": init})
    t0 = time.perf_counter()
    training.train(model, betas, photos, args.out, steps=args.steps, batch_size=args.batch_size,
                   crop=args.crop, min_scale=args.min_scale, lr=args.lr, ema_decay=args.ema_decay, seed=args.seed,
                   checkpoint_every=args.checkpoint_every, device=args.device, bf16=args.bf16, rot90=args.rot90,
                   resume=args.resume, init=init["sha256"] if init else "", heldout=heldout,
                   progress=not args.no_progress, info=info)
    print(f"done in {time.perf_counter() - t0:.0f} s: {args.out}/model.safetensors")
    return 0


def _init_from(args):
    """The model, betas and lineage (file name, SHA-256, the file's own training record) of ``--init``."""
    if args.model_channels is not None or args.schedule is not None:
        raise ValueError("--init: the architecture and schedule come from that file; drop --model-channels and "
                         "--schedule")
    try:
        digest = hashlib.sha256()
        with open_regular(args.init, "--init") as f:
            for block in iter(lambda: f.read(1 << 20), b""):  # a public checkpoint can be gigabytes
                digest.update(block)
        sha256 = digest.hexdigest()
        model, betas = load(args.init)
    except CheckpointError as exc:
        raise ValueError(f"--init: {exc}") from None
    if not isinstance(model, ADMUNet):
        raise ValueError(f"--init {args.init}: an ADM UNet is needed (ddrm-fast trains ADM UNets), got "
                         f"{type(model).__name__}")
    lineage = {"file": os.path.basename(args.init), "sha256": sha256}
    trained = metadata(args.init).get("training")
    if trained:
        lineage["training"] = trained
    return model.train(), betas.double(), lineage
