"""Kernel backends under test: the compiled C++/CUDA ops, and Triton (CUDA, or the CPU under TRITON_INTERPRET=1,
which runs in its own pytest process: `make triton-test`)."""
import os

import pytest
import torch

from ddrm_fast import ops

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def _triton_ok():
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() or INTERPRET


def backends():
    """(name, device) pairs: each fused backend on the device it runs on here."""
    out = []
    if not INTERPRET:  # the interpreter run tests Triton only
        if ops.has_cpu():
            out.append(("cpu", "cpu"))
        if ops.has_cuda():
            out.append(("cuda", "cuda"))
    if _triton_ok():
        out.append(("triton", "cuda" if torch.cuda.is_available() else "cpu"))
    return out


BACKENDS = backends()
needs_backend = pytest.mark.skipif(not BACKENDS, reason="no fused backend built or runnable here")
