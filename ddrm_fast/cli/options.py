"""What the commands share: the device to run on, the speed flags of `ddrm-fast restore` (one image and folders,
and benchmarks/bench_batch.py) and the model to load."""
from __future__ import annotations

import argparse
from typing import Dict, Optional

import torch

from .. import tasks
from ..imageio import read_kernel
from ..operators import KERNELS_1D
from ..restoration import Settings
from ..speed import EXACT, PRECISE_TASKS, Way, auto
from ..sampler import COMPILE_MODES
from .args import scale_float

__all__ = ["choose_device", "add_task_arguments", "task_options", "add_speed_arguments", "add_quality_arguments",
           "settings", "sampler_options",
           "network_way", "automatic", "announce", "load_model", "CLIP_X0_DEFAULT"]


def choose_device(requested: Optional[torch.device], local_rank: int = 0) -> torch.device:
    """``--device`` when given, else the GPU of this process's local rank when there is one, else the CPU."""
    if requested is not None:
        return requested
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def add_task_arguments(p) -> None:
    """The options of the tasks beyond the original's; :func:`task_options` reads them."""
    g = p.add_argument_group("deblur with any kernel, resize by any scale")
    g.add_argument("--kernel", metavar="FILE", help="deblur: the blur kernel (point-spread function), a .npy array or "
                                                    "a gray image, normalised to sum 1; circular boundary")
    g.add_argument("--scale", type=scale_float, default=None,
                   help="resize: how many times smaller the measurement is (a number > 1; default 2)")
    g.add_argument("--kernel-1d", choices=tuple(KERNELS_1D), default=None,
                   help="resize: the 1-D kernel of the downsizing and of its baseline upsampling (default bicubic)")


def task_options(args, manifest: bool = False) -> tasks.Options:
    """The :class:`ddrm_fast.tasks.Options` of the command line: --kernel read and checked; each option refused for a
    task that does not take it (unless a ``manifest`` may name tasks per image)."""
    for flag, value, task in (("--kernel", args.kernel, "deblur"), ("--scale", args.scale, "resize"),
                              ("--kernel-1d", args.kernel_1d, "resize")):
        if value is not None and args.task != task and not manifest:
            raise ValueError(f"{flag} is for --task {task}, not {args.task}")
    kernel = None if args.kernel is None else read_kernel(args.kernel, "--kernel")
    return tasks.Options(kernel=kernel, scale=args.scale or 2.0, kernel_1d=args.kernel_1d or "bicubic")


def add_speed_arguments(p) -> None:
    """The speed options (also used by benchmarks/bench_batch.py); :func:`sampler_options` turns them into keywords."""
    f = p.add_argument_group("speed: the network's precision and layout, compilation, noise (default: the automatic "
                             "choice for the device, printed once)")
    f.add_argument("--exact", action="store_true",
                   help="run the network in float32, eager, as loaded: the original's numbers, bit for bit")
    f.add_argument("--dtype", default=None, choices=tuple(_DTYPES),
                   help="run the network under autocast in this dtype; the DDRM update stays float32")
    f.add_argument("--channels-last", action="store_true",
                   help="hand the network channels_last images (and convert its weights once)")
    f.add_argument("--compile", action="store_true", help="run the network through torch.compile")
    f.add_argument("--compile-mode", default="default", choices=COMPILE_MODES, help="the torch.compile mode")
    f.add_argument("--cuda-graph", action="store_true",
                   help="capture the sampling loop in a CUDA graph and replay it for every batch of the same shape")
    f.add_argument("--noise", default="torch", choices=("torch", "philox"),
                   help="sampler noise from the image's seed: torch's generator (drawn on the CPU) or counter-based "
                        "Philox generated inside the fused kernels (no host work, no noise buffers)")


_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


#: the command line's default for x0 clipping, chosen by measurement (benchmarks/RESULTS.md, "Clipping x0"); the
#: library's ddrm_sample keeps the original's (off)
CLIP_X0_DEFAULT = True


def add_quality_arguments(p) -> None:
    """The options that change the result (also used by benchmarks/bench_batch.py)."""
    p.add_argument("--clip-x0", action=argparse.BooleanOptionalAction, default=CLIP_X0_DEFAULT,
                   help="clamp each step's x0 prediction to the image range (DDPM's clip_denoised; default: on, "
                        "measured better on held-out photos)")


def automatic(args) -> bool:
    """Whether the network's way is the automatic choice: neither ``--exact`` nor a speed flag was given."""
    return not (args.exact or args.dtype is not None or args.channels_last or args.compile)


def network_way(args, device: torch.device) -> Way:
    """How the network runs: ``--exact`` (float32 eager), the speed flags when any is given, else the automatic
    choice for ``device`` and ``--task`` (:func:`ddrm_fast.speed.auto`; a folder job chooses per batch's task)."""
    if automatic(args):
        return auto(device, args.task)
    if args.exact:
        if args.dtype is not None or args.channels_last or args.compile:
            raise ValueError("--exact runs the network in float32, eager: drop --dtype, --channels-last and --compile")
        return EXACT
    return Way("flags", _DTYPES[args.dtype or "float32"], args.channels_last,
               args.compile_mode if args.compile else False)


def settings(args, device: torch.device, progress: bool = False, way: Optional[Way] = None) -> Settings:
    """The one :class:`~ddrm_fast.restoration.Settings` record of the command line's arguments: DDRM's (steps,
    etas, backend, x0 clipping) and how the network runs (:func:`network_way`; results equal float32's to the
    network's precision; ``way``: that way, when the caller has it already); ``progress``: a bar over the steps."""
    if args.cuda_graph and device.type != "cuda":
        raise ValueError(f"--cuda-graph needs a CUDA device, not {device}")
    base = Settings(steps=args.steps, eta=args.eta, eta_b=args.eta_b, backend=args.backend, clip_x0=args.clip_x0,
                    noise=args.noise, cuda_graph=args.cuda_graph, progress=progress and not args.cuda_graph)
    return (way or network_way(args, device)).settings(base)


def announce(args, way: Way, device: torch.device, per_task: bool = False) -> None:
    """The one line, before the work, that says how the network runs (``per_task``: a folder job's automatic choice,
    float32 for the tasks that need it)."""
    if not automatic(args):
        how = "--exact" if way is EXACT else "the speed flags"
    elif per_task and way.model_dtype is not None:
        how = f"automatic; float32 for {', '.join(PRECISE_TASKS)}; --exact for float32 eager"
    else:
        how = "automatic; --exact for float32 eager"
    print(f"network on {device}: {way.describe()} ({how})", flush=True)


_SPEED = ("model_dtype", "channels_last", "compile", "noise", "cuda_graph", "clip_x0")


def sampler_options(args, device: torch.device) -> Dict[str, object]:
    """The ddrm_sample keywords that the speed and quality options set (part of :func:`settings`)."""
    full = settings(args, device).sampler_kwargs()
    return {k: full[k] for k in _SPEED}


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
