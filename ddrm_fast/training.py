"""DDPM training (Ho et al. 2020, Algorithm 1) of a small ADM UNet on random crops: the embedded default model.

The data are the natural photographs bundled with scikit-image (no download): :data:`TRAIN_PHOTOS` for training,
:data:`HELDOUT_PHOTOS` kept out for evaluation. Crops are taken at a random scale with random flips.
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import torch
import torch.nn.functional as F

from .diffusion import GaussianDiffusion
from .files import FolderLock, atomic_write, check_regular, open_regular
from .models.adm import ADMUNet
from .models.loader import save

__all__ = ["TRAIN_PHOTOS", "HELDOUT_PHOTOS", "SMALL_ADM", "skimage_photos", "random_crops", "train"]

# scikit-image's bundled colour photographs (skimage.data names; "stereo_motorcycle" gives two views)
TRAIN_PHOTOS = ("chelsea", "rocket", "stereo_motorcycle", "hubble_deep_field", "immunohistochemistry", "retina")
HELDOUT_PHOTOS = ("astronaut", "coffee")

# the embedded model: a 4-level ADM UNet (scale-shift norm, resblock up/down) with attention at the lowest level
SMALL_ADM = dict(model_channels=32, out_channels=3, num_res_blocks=1, channel_mult=(1, 2, 2, 2), attention_ds=(8,),
                 num_head_channels=32, use_scale_shift_norm=True, resblock_updown=True)


def skimage_photos(names: Sequence[str]) -> List[torch.Tensor]:
    """The named scikit-image photos as float32 (3, H, W) tensors in [-1, 1]."""
    try:
        import skimage.data
    except ImportError:
        raise ImportError("the training photos come from scikit-image: pip install scikit-image") from None
    out = []
    for name in names:
        fn = getattr(skimage.data, name, None)
        if fn is None:
            raise ValueError(f"skimage.data has no photo {name!r}")
        arrays = fn()
        arrays = [a for a in arrays if getattr(a, "ndim", 0) == 3] if isinstance(arrays, tuple) else [arrays]
        for a in arrays:
            if a.ndim != 3 or a.shape[2] < 3:
                raise ValueError(f"skimage.data.{name} is not a colour photo (shape {a.shape})")
            out.append(torch.from_numpy(a[..., :3].copy()).permute(2, 0, 1).float() / 127.5 - 1)
    return out


def random_crops(images: Sequence[torch.Tensor], size: int, batch: int, generator: torch.Generator,
                 min_scale: float = 0.5) -> Iterator[torch.Tensor]:
    """Endless batches (batch, 3, size, size): a uniformly chosen photo, downscaled by a random factor in
    [min_scale, 1] (antialiased), a random crop, a random horizontal flip."""
    if not images:
        raise ValueError("images: need at least one photo")
    while True:
        crops = []
        for _ in range(batch):
            img = images[int(torch.randint(len(images), (1,), generator=generator))]
            h, w = img.shape[-2:]
            lo = max(min_scale, size / min(h, w))
            scale = lo + (1 - lo) * float(torch.rand((), generator=generator))
            if scale < 1:
                img = F.interpolate(img[None], scale_factor=scale, mode="bilinear", antialias=True,
                                    align_corners=False)[0]
            h, w = img.shape[-2:]
            top = int(torch.randint(h - size + 1, (1,), generator=generator))
            left = int(torch.randint(w - size + 1, (1,), generator=generator))
            crop = img[:, top:top + size, left:left + size]
            if bool(torch.rand((), generator=generator) < 0.5):
                crop = crop.flip(-1)
            crops.append(crop)
        yield torch.stack(crops).clamp(-1, 1)


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1 - decay)


def train(model: ADMUNet, betas: torch.Tensor, images: Sequence[torch.Tensor], out_dir: str, *, steps: int = 2000,
          batch_size: int = 16, crop: int = 64, lr: float = 2e-4, weight_decay: float = 0.0, ema_decay: float = 0.999,
          warmup: int = 100, seed: int = 0, checkpoint_every: int = 500, device="cpu", resume: bool = True,
          progress: bool = True, log: Optional[Callable[[Dict], None]] = None, info: Optional[dict] = None) -> ADMUNet:
    """Train ``model`` with DDPM's simple loss on random crops of ``images``; returns the EMA model.

    Writes ``out_dir/model.safetensors`` (EMA weights, architecture and schedule: loadable with
    :func:`ddrm_fast.models.load`) and ``out_dir/state.pt`` (weights, EMA, optimizer, step: ``resume`` picks it up)
    every ``checkpoint_every`` steps and at the end, and appends ``out_dir/log.jsonl``. AdamW with linear warm-up
    then cosine decay of the learning rate; EMA decay ramps up as min(ema_decay, (1 + k)/(10 + k)).
    """
    if steps < 1 or batch_size < 1 or checkpoint_every < 1:
        raise ValueError(f"steps, batch_size and checkpoint_every must be >= 1, got {steps}, {batch_size}, "
                         f"{checkpoint_every}")
    if crop < model.divisor or crop % model.divisor:
        raise ValueError(f"crop must be a positive multiple of {model.divisor} for this UNet, got {crop}")
    smallest = min(min(img.shape[-2:]) for img in images)
    if crop > smallest:
        raise ValueError(f"crop {crop} is larger than the smallest photo side ({smallest})")
    if not 0 <= ema_decay < 1 or not lr > 0:
        raise ValueError(f"ema_decay must lie in [0, 1) and lr be > 0, got {ema_decay}, {lr}")
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"-o {out_dir}: exists and is not a folder")
    with FolderLock(out_dir):
        state = _check_out_dir(out_dir, resume)
        return _train(model, betas, images, out_dir, state, steps=steps, batch_size=batch_size, crop=crop, lr=lr,
                      weight_decay=weight_decay, ema_decay=ema_decay, warmup=warmup, seed=seed,
                      checkpoint_every=checkpoint_every, device=device, progress=progress, log=log, info=info)


def _check_out_dir(out_dir: str, resume: bool) -> Optional[dict]:
    """The training state to resume from (None: start over), after checking that every file the run writes in
    ``out_dir`` is absent or one a training run wrote: the user's own files are never overwritten."""
    model_path = os.path.join(out_dir, "model.safetensors")
    if os.path.lexists(model_path):
        try:
            from safetensors import safe_open

            check_regular(model_path, "model file")
            with safe_open(model_path, framework="pt") as f:
                ours = "ddrm_fast" in (f.metadata() or {})
        except Exception:  # noqa: BLE001 - unreadable is not ours
            ours = False
        if not ours:
            raise ValueError(f"{model_path} exists and was not written by ddrm-fast; it is not overwritten")
    log_path = os.path.join(out_dir, "log.jsonl")
    if os.path.lexists(log_path):
        with open_regular(log_path, "training log", "r") as f:
            first = f.readline()
        try:
            ours = first == "" or {"step", "loss"} <= set(json.loads(first))
        except (ValueError, TypeError):
            ours = False
        if not ours:
            raise ValueError(f"{log_path} exists and is not a ddrm-fast training log; it is not appended to")
    state_path = os.path.join(out_dir, "state.pt")
    if not os.path.lexists(state_path):
        return None
    try:
        with open_regular(state_path, "training state") as f:
            state = torch.load(f, map_location="cpu", weights_only=True)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
        raise ValueError(f"{state_path}: not a readable training state ({type(exc).__name__})") from None
    if not (isinstance(state, dict) and {"model", "ema", "opt", "step"} <= set(state)):
        raise ValueError(f"{state_path} exists and is not a ddrm-fast training state; it is not overwritten")
    return state if resume else None


def _train(model, betas, images, out_dir, state, *, steps, batch_size, crop, lr, weight_decay, ema_decay, warmup,
           seed, checkpoint_every, device, progress, log, info) -> ADMUNet:
    device = torch.device(device)
    model = model.to(device).train()
    ema = ADMUNet(model.config).to(device).eval()
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    diffusion = GaussianDiffusion(betas)
    state_path = os.path.join(out_dir, "state.pt")
    start = 0
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            opt.load_state_dict(state["opt"])
            start = int(state["step"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{state_path}: does not fit this model ({str(exc).splitlines()[0][:160]}); give "
                             f"another -o or --no-resume") from None
        print(f"resuming from {state_path} at step {start}")
    gen = torch.Generator().manual_seed(seed + start)  # a resumed run continues with fresh, reproducible crops
    batches = random_crops(images, crop, batch_size, gen)

    def lr_at(k: int) -> float:
        if k < warmup:
            return lr * (k + 1) / warmup
        return lr * 0.5 * (1 + math.cos(math.pi * (k - warmup) / max(1, steps - warmup)))

    def checkpoint(k: int) -> None:
        meta = {"training": {**(info or {}), "steps": k, "batch_size": batch_size, "crop": crop, "lr": lr,
                             "ema_decay": ema_decay, "seed": seed}}
        save(ema, os.path.join(out_dir, "model.safetensors"), betas, **meta)
        snapshot = {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": k}
        atomic_write(state_path, lambda tmp: torch.save(snapshot, tmp))

    from tqdm.auto import tqdm

    bar = tqdm(range(start, steps), initial=start, total=steps, desc="train", disable=not progress)
    t0, running = time.perf_counter(), None
    with open(os.path.join(out_dir, "log.jsonl"), "a") as logf:
        for k in bar:
            for group in opt.param_groups:
                group["lr"] = lr_at(k)
            x0 = next(batches).to(device)
            t = torch.randint(0, diffusion.num_timesteps, (batch_size,), generator=gen).to(device)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            loss = diffusion.loss(model, x0, t=t, noise=noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            _ema_update(ema, model, min(ema_decay, (1 + k) / (10 + k)))
            value = float(loss.detach())
            running = value if running is None else 0.98 * running + 0.02 * value
            bar.set_postfix(loss=f"{running:.4f}")
            if (k + 1) % 50 == 0 or k + 1 == steps:
                rec = {"step": k + 1, "loss": running, "lr": lr_at(k), "seconds": time.perf_counter() - t0}
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                if log is not None:
                    log(rec)
            if (k + 1) % checkpoint_every == 0 or k + 1 == steps:
                checkpoint(k + 1)
    return ema
