"""The kernel backends, in one table: name -> whether it runs on a device here, and its two steps.

Every backend's ``spectral_step`` and ``group_step`` take the same arguments, in the order of the op schemas
(:mod:`ddrm_fast.ops`, which generates the wrappers of the compiled and Triton ops): the sampler, the kernel tests and
``benchmarks/bench_step.py`` call them alike. Adding a
backend is one entry in :data:`BACKENDS`. ``"reference"`` is plain PyTorch (:mod:`ddrm_fast.reference`), the oracle:
the sampler runs every operator through its explicit SVD on it; the fused backends take the one-pass group step for
rank-one-per-group operators.
"""
from __future__ import annotations

from typing import Callable, Dict, NamedTuple

import torch

from . import ops, reference
from .triton import available as triton_available

__all__ = ["Backend", "BACKENDS", "NAMES", "get", "resolve"]


class Backend(NamedTuple):
    name: str
    #: whether it runs on tensors of this device here (extension built, GPU present, triton installed, ...)
    available: Callable[[torch.device], bool]
    #: what it needs, for the error when it is asked for and unavailable
    needs: str
    #: (xbar, epsbar, z, uty, s, sigma_y, coef, eta, eta_b, eta_c=None, legacy_zero_singulars=False, seeds=None,
    #: offset=0) -> (sqrt(abar') new, x0bar)
    spectral_step: Callable
    #: (x, eps, y, weights, observed, sigma_y, coef, z, seeds, offset, group_shape, eta, eta_b, want_x0=False,
    #: clip_x0=False) -> (x_{t'}, x0)
    group_step: Callable
    #: takes the one-pass group step for group operators (the reference goes through their explicit SVD)
    fused: bool


def _triton_ready() -> None:
    from . import triton  # imported on first use: triton is optional

    triton.load()


BACKENDS: Dict[str, Backend] = {
    "reference": Backend("reference", lambda device: True, "", reference.spectral_step, reference.group_step,
                         fused=False),
    "cpu": Backend("cpu", lambda device: device.type == "cpu" and ops.has_cpu(),
                   "CPU tensors and the compiled extension (ddrm_fast._C)", ops.spectral_step, ops.group_step,
                   fused=True),
    "cuda": Backend("cuda", lambda device: device.type == "cuda" and ops.has_cuda(),
                    "CUDA tensors and the extension built with CUDA", ops.spectral_step, ops.group_step, fused=True),
    "triton": Backend("triton", lambda device: triton_available(),
                      "triton and a CUDA device (or TRITON_INTERPRET=1 on the CPU)",
                      ops.function("ddrm_fast_triton", "spectral_step", _triton_ready),
                      ops.function("ddrm_fast_triton", "group_step", _triton_ready), fused=True),
}
#: what ``backend=`` accepts: "auto" picks the fastest available
NAMES = ("auto",) + tuple(BACKENDS)
_AUTO = {"cuda": ("cuda", "triton", "reference"), "cpu": ("cpu", "reference")}


def get(name: str) -> Backend:
    """The backend called ``name`` (not "auto")."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {NAMES}, got {name!r}")
    return BACKENDS[name]


def resolve(name: str, device: torch.device) -> Backend:
    """The backend for tensors on ``device``: ``name`` itself, checked to be available, or for "auto" the first
    available of the device's preference order (cuda, triton, reference on a GPU; cpu, reference on the CPU)."""
    if name == "auto":
        for candidate in _AUTO.get(device.type, ("reference",)):
            if BACKENDS[candidate].available(device):
                return BACKENDS[candidate]
        return BACKENDS["reference"]
    backend = get(name)
    if not backend.available(device):
        raise ValueError(f"backend={name!r} needs {backend.needs}")
    return backend
