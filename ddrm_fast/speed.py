"""How the network runs, and the automatic choice per device: the network is 92-99% of a sample, so this is the
project's speed (benchmarks/RESULTS.md, "The network's speed").

A :class:`Way` is a precision (autocast dtype), a memory layout (channels_last activations and weights) and a
compilation mode, applied to the sampler's :class:`~ddrm_fast.restoration.Settings` and, once, to the loaded model.
:func:`auto` is what the command line runs by default; :data:`EXACT` (float32, eager, the layout the model has) is
``--exact``: the original's numbers, what the compat path and the golden tests use. The library itself changes nothing
implicitly: ``ddrm_sample``'s defaults are :data:`EXACT`'s.

Measured on this project's 2-core AMD EPYC with AVX512-BF16 (RESULTS.md): bfloat16 autocast with channels_last
activations and weights runs the embedded model at 256x256 1.9x (batch 1) to 2.5x (batch 2) faster than float32 eager,
the ImageNet-256 ADM 2.2x, and the restorations on the held-out photos stay within 0.05 dB of float32's. CPUs
without bfloat16 instructions keep float32 with channels_last (1.2x here; bfloat16 would be emulated there), and a
GPU takes bfloat16 with channels_last (as ``ddrm-fast bench``'s ``fused_bf16``; not measured in this project yet).
``torch.compile`` (Inductor's C++ backend) takes 65-80 s per image shape on this CPU for 5-15% more: it is never
chosen automatically for one image; ``--compile`` opts in (folder jobs of thousands of images of one size).
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Dict, Optional, Union

import torch

from .restoration import Settings

__all__ = ["Way", "WAYS", "EXACT", "auto", "cpu_has_bf16", "PRECISE_TASKS"]


@dataclass(frozen=True)
class Way:
    """One way of running the network."""

    name: str
    #: autocast dtype of the network (None: float32); the DDRM update stays float32
    model_dtype: Optional[torch.dtype] = None
    #: channels_last activations, and the model's convolution weights converted once (:meth:`prepare`)
    channels_last: bool = False
    #: torch.compile mode, or False
    compile: Union[bool, str] = False

    def settings(self, settings: Settings) -> Settings:
        """``settings`` with this way's network options."""
        return dataclasses.replace(settings, model_dtype=self.model_dtype, channels_last=self.channels_last,
                                   compile=self.compile)

    def prepare(self, model):
        """``model`` made ready for this way, in place: its weights in channels_last when the way uses it (a
        convolution then reads them without reordering every call). Returns it."""
        if self.channels_last and isinstance(model, torch.nn.Module):
            model.to(memory_format=torch.channels_last)
        return model

    def describe(self) -> str:
        parts = ["bfloat16 autocast" if self.model_dtype == torch.bfloat16 else
                 "float16 autocast" if self.model_dtype == torch.float16 else "float32"]
        if self.channels_last:
            parts.append("channels_last")
        parts.append(f"torch.compile ({self.compile if isinstance(self.compile, str) else 'default'})"
                     if self.compile else "eager")
        return ", ".join(parts)

    def network(self, model, device: torch.device):
        """The network call this way makes (for profiling; the sampler builds the same one from its settings)."""
        from .sampler import compile_mode, network

        return network(self.prepare(model), self.model_dtype, self.channels_last,
                       compile_mode(self.compile, False), device)


EXACT = Way("fp32")
WAYS: Dict[str, Way] = {w.name: w for w in (
    EXACT,
    Way("fp32_cl", channels_last=True),
    Way("bf16", model_dtype=torch.bfloat16),
    Way("bf16_cl", model_dtype=torch.bfloat16, channels_last=True),
    Way("bf16_cl_compile", model_dtype=torch.bfloat16, channels_last=True, compile=True),
)}


@functools.lru_cache(maxsize=None)  # asked per batch of a folder job; the CPU does not change under it
def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX): read from /proc/cpuinfo (Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read(1 << 20)
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


#: tasks whose restorations the network invents most: the measurement leaves the colours (color) or most of the
#: image (cs4) to it, so a rounding difference takes the sampler down another path. There two seeds differ by 1.5 to
#: 2.3 dB and bfloat16 moved PSNR by 0.16 to 0.44 dB; on every other task by at most 0.004 dB (RESULTS.md). float32
#: keeps them within 0.05 dB. color_sr4 leaves the colours to the network as color does.
PRECISE_TASKS = ("color", "cs4", "color_sr4")


def auto(device: torch.device, task: Optional[str] = None) -> Way:
    """The fastest way measured to keep restorations within 0.05 dB PSNR of float32 eager, for ``device`` and
    ``task``: bfloat16 with channels_last on a GPU and on a CPU with bfloat16 instructions, float32 with channels_last
    on other CPUs and for :data:`PRECISE_TASKS`."""
    if (device.type == "cuda" or cpu_has_bf16()) and task not in PRECISE_TASKS:
        return WAYS["bf16_cl"]
    return WAYS["fp32_cl"]
