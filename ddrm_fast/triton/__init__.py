"""Triton kernels of the ops in namespace ``ddrm_fast_triton``: the same schemas (:mod:`ddrm_fast.ops`) and the same
math as the compiled ops. Importing a kernel module registers its kernel.

They run on CUDA, and on the CPU under ``TRITON_INTERPRET=1`` (set before triton is imported) for tests.
"""
from __future__ import annotations

import os
from typing import Callable, Dict

from ..ops import OPS


def available() -> bool:
    """True when triton imports and can run here (a CUDA device, or the interpreter)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    import torch

    return torch.cuda.is_available() or interpreting()


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


_KERNELS: Dict[str, object] = {}  # op name -> the Library holding its kernels (kept alive)


def register(name: str, kernel: Callable) -> None:
    """Register ``kernel`` as op ``ddrm_fast_triton::<name>`` on CUDA, and on the CPU for the interpreter."""
    import torch

    from ..ops import define

    define("ddrm_fast_triton")

    def on_cpu(*args, **kwargs):
        # CPU tensors only under the Triton interpreter (tests); the compiled C++ op is the CPU backend
        if not interpreting():
            raise RuntimeError("ddrm_fast_triton ops run on CUDA, or on the CPU with TRITON_INTERPRET=1")
        return kernel(*args, **kwargs)

    lib = torch.library.Library("ddrm_fast_triton", "IMPL")
    lib.impl(name, kernel, "CUDA")
    lib.impl(name, on_cpu, "CPU")
    _KERNELS[name] = lib


def load() -> None:
    """Import the kernel modules (registering the kernels); a RuntimeError when Triton cannot run here."""
    if set(_KERNELS) == set(OPS):  # every op's kernel registered
        return
    if not available():
        raise RuntimeError("the triton backend needs triton and a CUDA device (or TRITON_INTERPRET=1 on the CPU)")
    from . import group_step, spectral_step  # noqa: F401  (importing registers them)
