"""Kernel backends under test, read off the backend table (ddrm_fast.backends): each fused backend on the device it
runs on here. Triton runs on CUDA, or on the CPU under TRITON_INTERPRET=1 in its own pytest process (`make
triton-test`), which then tests Triton only."""
import os

import pytest
import torch

from ddrm_fast.backends import BACKENDS as TABLE

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def _device(name: str) -> str:
    """Where a backend's kernels run: the CPU for "cpu" (and for Triton's interpreter without a GPU), else CUDA."""
    return "cpu" if name == "cpu" or (name == "triton" and INTERPRET and not torch.cuda.is_available()) else "cuda"


def backends():
    """(name, device) pairs: each fused backend on the device it runs on here."""
    out = []
    for name, backend in TABLE.items():
        if not backend.fused or (INTERPRET and name != "triton"):  # the interpreter run tests Triton only
            continue
        device = _device(name)
        if (device == "cpu" or torch.cuda.is_available()) and backend.available(torch.device(device)):
            out.append((name, device))
    return out


BACKENDS = backends()
needs_backend = pytest.mark.skipif(not BACKENDS, reason="no fused backend built or runnable here")
