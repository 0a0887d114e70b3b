"""Small helpers shared across the package: the ``Model`` and ``Generator`` types, noise drawing, the optional
progress bar, and an exception as the one line a user sees."""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence, Union

import torch

#: ``model(x_t, t) -> eps``: what every sampler and loader here calls a model
Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: None (torch's global generator), one generator, or one per sample (each sample's noise from its own stream)
Generator = Union[None, torch.Generator, Sequence[torch.Generator]]


def randn(shape: Sequence[int], generator: Generator = None, *, like: Optional[torch.Tensor] = None,
          device=None, dtype=None) -> torch.Tensor:
    """Standard normal noise of ``shape`` from ``generator``.

    ``generator`` is None (torch's global generator), one ``torch.Generator``, or a sequence with one generator per
    sample (``shape[0]`` of them): then sample i's noise comes from its own stream alone, so it does not depend on
    the batch it sits in. Noise is drawn on the generator's device and moved, so a CPU generator serves CUDA data
    (through pinned memory, a queued copy: the host never waits for the device).
    """
    if like is not None:
        device = like.device if device is None else device
        dtype = like.dtype if dtype is None else dtype
    dtype = dtype or torch.float32
    shape = tuple(int(s) for s in shape)
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    if isinstance(generator, torch.Generator):
        return _move(torch.randn(shape, generator=generator, device=generator.device, dtype=dtype), device)
    gens = list(generator)
    if len(gens) != shape[0]:
        raise ValueError(f"generator: got {len(gens)} per-sample generators for a batch of {shape[0]}")
    return _move(torch.stack([torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype) for g in gens]), device)


def _move(t: torch.Tensor, device) -> torch.Tensor:
    """``t`` on ``device``; host noise goes to a GPU through pinned memory without blocking (a pageable copy would
    make the host wait for all queued device work, every step)."""
    if device is None or t.device == torch.device(device):
        return t
    if t.device.type == "cpu" and torch.device(device).type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def progress_bar(it: Iterable, enabled: bool, desc: str):
    """``tqdm`` over ``it`` when enabled (a per-step bar), else ``it`` unchanged."""
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc)


def check_same_device(tensors: dict) -> None:
    """Every tensor of ``tensors`` (name -> tensor or None) on the device of the first: the ops' fake (meta)
    implementations call it, since a meta tensor among real ones routes a call to them and they must not answer
    with uninitialised memory."""
    items = [(k, v) for k, v in tensors.items() if isinstance(v, torch.Tensor)]
    first, ref = items[0]
    for name, t in items[1:]:
        if t.device != ref.device:
            raise RuntimeError(f"{name} must be on {ref.device} (where {first} is), got {t.device}")


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a user is shown."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
