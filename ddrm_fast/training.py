"""DDPM training (Ho et al. 2020, Algorithm 1) of a small ADM UNet on random crops: the embedded default model.

The data are the colour images bundled with scikit-image (no download): :data:`TRAIN_PHOTOS` for training,
:data:`HELDOUT_PHOTOS` kept out for evaluation. Crops are taken at a random scale with random horizontal flips (and,
optionally, random 90-degree rotations).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import torch
import torch.nn.functional as F

from .diffusion import GaussianDiffusion
from .files import FolderLock, LineLog, atomic_write, check_output_path, recognise, refuse_foreign
from .models.adm import ADMUNet
from .models.loader import save

__all__ = ["TRAIN_PHOTOS", "HELDOUT_PHOTOS", "SMALL_ADM", "skimage_photos", "random_crops", "heldout_photos",
           "heldout_loss", "train"]

# scikit-image's bundled colour images (skimage.data names; "stereo_motorcycle" gives two views), each view drawn
# equally often. The astronomy, microscopy and retina images stay: measured on the held-out photos (benchmarks/
# RESULTS.md, "training data"), leaving them out raised the held-out loss, and so did adding the gray photos and
# textures as a quarter of the crops.
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
                 min_scale: float = 0.5, rot90: bool = False) -> Iterator[torch.Tensor]:
    """Endless batches (batch, 3, size, size): a uniformly chosen photo, downscaled (antialiased) by a factor drawn
    uniformly from [max(min_scale, size / its short side), 1] (``min_scale`` 0: down to the whole photo's short side
    in one crop), a random crop, a random horizontal flip and, with ``rot90``, a rotation by a random multiple of
    90 degrees (drawn after the flip, so without it the stream of crops is what it always was)."""
    if not images:
        raise ValueError("images: need at least one photo")
    if not 0 <= min_scale <= 1:
        raise ValueError(f"min_scale must lie in [0, 1], got {min_scale}")
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
            if rot90:
                crop = crop.rot90(int(torch.randint(4, (1,), generator=generator)), (-2, -1))
            crops.append(crop)
        yield torch.stack(crops).clamp(-1, 1)


def heldout_photos(short_side: int = 256) -> List[torch.Tensor]:
    """:data:`HELDOUT_PHOTOS` as the evaluation restores them: resized (bicubic, antialiased) to ``short_side`` on
    the short side, each side a multiple of 8 (astronaut 256x256, coffee 256x384)."""
    out = []
    for img in skimage_photos(HELDOUT_PHOTOS):
        h, w = img.shape[-2:]
        s = short_side / min(h, w)
        size = (round(h * s / 8) * 8, round(w * s / 8) * 8)
        out.append(F.interpolate(img[None], size=size, mode="bicubic", antialias=True, align_corners=False)
                   .clamp(-1, 1)[0])
    return out


def heldout_loss(model: torch.nn.Module, diffusion: GaussianDiffusion, images: Sequence[torch.Tensor],
                 levels: int = 10, draws: int = 2, seed: int = 0) -> float:
    """DDPM's simple loss on each whole image (as sampling sees it: the network's group norms and attention then
    span what they span when it restores that image, not a training crop's extent) at ``levels`` evenly spaced
    timesteps with ``draws`` fixed noise draws each: a validation curve for training runs."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    total = 0.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for x0 in images:
            x0 = x0[None].to(device)
            for _ in range(draws):
                for k in range(levels):  # one image a forward: the memory of sampling, not of a batch of them
                    t = torch.full((1,), (2 * k + 1) * diffusion.num_timesteps // (2 * levels), device=device)
                    noise = torch.randn(x0.shape, generator=g).to(device)
                    total += float(diffusion.loss(model, x0, t=t, noise=noise))
    model.train(was_training)
    return total / (len(images) * draws * levels)


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1 - decay)


def train(model: ADMUNet, betas: torch.Tensor, images: Sequence[torch.Tensor], out_dir: str, *,
          min_scale: float = 0.5, steps: int = 2000, batch_size: int = 16, crop: int = 64, lr: float = 2e-4,
          weight_decay: float = 0.0, ema_decay: float = 0.999, warmup: int = 100, seed: int = 0,
          checkpoint_every: int = 500, device="cpu", bf16: bool = False, rot90: bool = False, resume: bool = False,
          init: str = "", heldout: Sequence[torch.Tensor] = (), progress: bool = True,
          log: Optional[Callable[[Dict], None]] = None, info: Optional[dict] = None) -> ADMUNet:
    """Train ``model`` with DDPM's simple loss on random crops of ``images`` (:func:`random_crops` with
    ``min_scale`` and ``rot90``); returns the EMA model.

    Writes ``out_dir/model.safetensors`` (EMA weights, architecture and schedule: loadable with
    :func:`ddrm_fast.models.load`) and ``out_dir/state.pt`` (weights, EMA, optimizer, step, the crop generator and
    the recipe) every ``checkpoint_every`` steps, at the end and when interrupted (Ctrl-C), and appends
    ``out_dir/log.jsonl`` (with :func:`heldout_loss` of the EMA model on ``heldout`` at each checkpoint).
    ``resume=True`` continues ``out_dir/state.pt`` when there is one (the same recipe: a resumed run draws the
    crops and noise an uninterrupted one would); without it an existing state is refused, never overwritten.
    AdamW with linear warm-up then cosine decay of the learning rate; EMA decay ramps up as
    min(ema_decay, (1 + k)/(10 + k)); ``bf16``: the network runs under bfloat16 autocast (the loss, the optimizer
    and the weights stay float32). ``init``: names the weights ``model`` arrives with when they are not a fresh
    initialisation (fine-tuning: the SHA-256 of their file); it is part of the recipe, so a resume starts from the
    same weights.
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
    check_output_path(out_dir, "-o")
    recipe = {"steps": steps, "batch_size": batch_size, "crop": crop, "lr": lr, "weight_decay": weight_decay,
              "ema_decay": ema_decay, "warmup": warmup, "seed": seed, "bf16": bf16, "images": len(images),
              "min_scale": min_scale, "rot90": rot90, "init_sha256": init,
              "config": json.dumps(model.config.__dict__, sort_keys=True, default=list)}
    with FolderLock(out_dir):
        state = _check_out_dir(out_dir, resume, recipe)
        return _train(model, betas, images, out_dir, state, recipe, heldout=heldout,
                      checkpoint_every=checkpoint_every, device=device, progress=progress, log=log, info=info)


def _check_out_dir(out_dir: str, resume: bool, recipe: dict) -> Optional[dict]:
    """The training state to resume from (None: start), after checking that every file the run writes in
    ``out_dir`` is absent or one a training run wrote: the user's own files are never overwritten."""
    model_path = os.path.join(out_dir, "model.safetensors")
    refuse_foreign(model_path, "model", f"{model_path} exists and was not written by ddrm-fast; it is not overwritten")
    log_path = os.path.join(out_dir, "log.jsonl")
    refuse_foreign(log_path, "training log", f"{log_path} exists and is not a ddrm-fast training log; it is not "
                                             f"appended to")
    state_path = os.path.join(out_dir, "state.pt")
    if not os.path.lexists(state_path):
        if os.path.lexists(model_path) and not resume:
            raise ValueError(f"{model_path} exists (an earlier run); --resume continues it, or choose another -o")
        return None
    state = recognise(state_path, "training state")
    if state is None:
        raise ValueError(f"{state_path} exists and is not a ddrm-fast training state; it is not overwritten")
    if not resume:
        raise ValueError(f"{out_dir} holds a training run at step {state['step']}: --resume continues it, or "
                         f"choose another -o")
    differ = [k for k in recipe if k in state.get("recipe", {}) and state["recipe"][k] != recipe[k]]
    if differ or "recipe" not in state:
        raise ValueError(f"{state_path} was trained with another recipe ({', '.join(differ) or 'unrecorded'}); "
                         f"resume with the same arguments, or choose another -o")
    return state


def _lr_at(k: int, recipe: dict) -> float:
    lr, warmup, steps = recipe["lr"], recipe["warmup"], recipe["steps"]
    if k < warmup:
        return lr * (k + 1) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (k - warmup) / max(1, steps - warmup)))


def _train(model, betas, images, out_dir, state, recipe, *, heldout, checkpoint_every, device, progress,
           log, info) -> ADMUNet:
    device = torch.device(device)
    model = model.to(device).train()
    ema = ADMUNet(model.config).to(device).eval()
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    diffusion = GaussianDiffusion(betas)
    state_path = os.path.join(out_dir, "state.pt")
    gen = torch.Generator().manual_seed(recipe["seed"])
    start, seconds = 0, 0.0
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            opt.load_state_dict(state["opt"])
            gen.set_state(state["generator"])
            start, seconds = int(state["step"]), float(state.get("seconds", 0.0))
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{state_path}: does not fit this model ({str(exc).splitlines()[0][:160]}); choose "
                             f"another -o") from None
        print(f"resuming from {state_path} at step {start}")
    steps, batch_size = recipe["steps"], recipe["batch_size"]
    batches = random_crops(images, recipe["crop"], batch_size, gen, recipe["min_scale"], recipe["rot90"])
    t0 = time.perf_counter() - seconds

    def checkpoint(k: int) -> None:
        # the model file records its recipe (the architecture it records itself), the steps it had and its time
        recipe_meta = {key: v for key, v in recipe.items() if key != "config"}
        meta = {"training": {**(info or {}), **recipe_meta, "steps": k, "seconds": round(time.perf_counter() - t0)}}
        save(ema, os.path.join(out_dir, "model.safetensors"), betas, **meta)
        snapshot = {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": k,
                    "generator": gen.get_state(), "recipe": recipe, "seconds": time.perf_counter() - t0}
        atomic_write(state_path, lambda tmp: torch.save(snapshot, tmp))

    from tqdm.auto import tqdm

    bar = tqdm(range(start, steps), initial=start, total=steps, desc="train", disable=not progress)
    running = None
    with LineLog(os.path.join(out_dir, "log.jsonl")) as logf, _deferred_interrupt() as interrupted:
        for k in bar:
            running = _train_step(model, ema, opt, diffusion, next(batches), gen, k, recipe, device, running)
            bar.set_postfix(loss=f"{running:.4f}")
            done = k + 1
            if done % 50 == 0 or done == steps or done % checkpoint_every == 0:
                rec = {"step": done, "loss": running, "lr": _lr_at(k, recipe), "seconds": time.perf_counter() - t0}
                if heldout and (done % checkpoint_every == 0 or done == steps):
                    rec["heldout_loss"] = heldout_loss(ema, diffusion, heldout)
                logf.write(json.dumps(rec))  # a whole line: one a kill cut short is cut off on the next run
                if log is not None:
                    log(rec)
            if done % checkpoint_every == 0 or done == steps or interrupted:
                checkpoint(done)
            if interrupted and done < steps:
                bar.close()
                print(f"interrupted: the state after step {done} is saved in {state_path}; --resume continues it")
                raise KeyboardInterrupt
    return ema


@contextlib.contextmanager
def _deferred_interrupt():
    """While training: Ctrl-C (SIGINT) only sets a flag, read between steps, so that the state saved is that of
    a whole step (a resumed run then equals an uninterrupted one). Yields the list the handler appends to."""
    flags: List[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield flags
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: flags.append(signum))
    try:
        yield flags
    finally:
        signal.signal(signal.SIGINT, previous)


def _train_step(model, ema, opt, diffusion, x0, gen, k, recipe, device, running) -> float:
    """One optimizer step on the batch x0; returns the running mean of the loss."""
    for group in opt.param_groups:
        group["lr"] = _lr_at(k, recipe)
    x0 = x0.to(device)
    t = torch.randint(0, diffusion.num_timesteps, (len(x0),), generator=gen).to(device)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe["bf16"]):  # the loss itself is float32
        loss = diffusion.loss(model, x0, t=t, noise=noise)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    _ema_update(ema, model, min(recipe["ema_decay"], (1 + k) / (10 + k)))
    value = float(loss.detach())
    return value if running is None else 0.98 * running + 0.02 * value
