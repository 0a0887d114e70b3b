"""Triton kernels as torch.library custom ops (namespace ``ddrm_fast_triton``): the same math as the compiled ops.

They run on CUDA, and on the CPU under ``TRITON_INTERPRET=1`` (set before triton is imported) for tests.
"""
from __future__ import annotations

import os


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
