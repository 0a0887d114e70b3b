"""The network call of the sampling loop: ``model(x_t, t)`` optionally compiled (once per model and mode, kept),
fed channels_last, run under autocast in a lower precision. ``ddrm-fast bench`` times the network through it."""
from __future__ import annotations

import weakref
from typing import Optional, Union

import torch

from .._utils import Model

__all__ = ["COMPILE_MODES", "compile_mode", "network", "Model"]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_OWN_GRAPHS = ("reduce-overhead", "max-autotune")  # modes that capture CUDA graphs of their own
_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> {mode: compiled model}


def compile_mode(compile: Union[bool, str], cuda_graph: bool) -> Optional[str]:
    """``compile`` (False, True or a mode name) as a torch.compile mode, None when not compiled; a mode that
    captures CUDA graphs itself is refused together with the sampler's own graphs."""
    if compile is False:
        return None
    mode = "default" if compile is True else compile
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be True, False or one of {COMPILE_MODES}, got {compile!r}")
    if cuda_graph and mode in _OWN_GRAPHS:
        raise ValueError(f"compile={mode!r} captures CUDA graphs itself; with cuda_graph=True use 'default' or "
                         f"'max-autotune-no-cudagraphs' (the sampler captures the whole loop)")
    return mode


def network(model: Model, dtype: Optional[torch.dtype], channels_last: bool, mode: Optional[str],
            device: torch.device) -> Model:
    """The model call of the loop: compiled in ``mode`` (None: eager), fed channels_last, under autocast in
    ``dtype`` (None or float32: none)."""
    if dtype not in (None, torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"model_dtype must be None, torch.float32, torch.float16 or torch.bfloat16, got {dtype}")
    if mode is not None:
        if not isinstance(model, torch.nn.Module):
            raise ValueError("compile needs the model to be a torch.nn.Module")
        compiled = _COMPILED.setdefault(model, {})
        if mode not in compiled:
            compiled[mode] = torch.compile(model, mode=mode)
        model = compiled[mode]
    if dtype in (None, torch.float32) and not channels_last:
        return model

    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if dtype in (None, torch.float32):
            return model(x, t)
        # no weight-cast cache: each call is its own autocast region anyway, and CUDA graph capture forbids it
        with torch.autocast(device.type, dtype=dtype, cache_enabled=False):
            return model(x, t)

    return net
