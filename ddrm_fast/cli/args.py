"""Argument types for the command line: each refuses a bad value at parse time, with a message naming the value,
so every command checks its arguments up front (exit 2, one line) before it reads a file or loads a model."""
from __future__ import annotations

import argparse
import math
import sys
from typing import Callable, NoReturn

__all__ = ["Parser", "positive_int", "nonnegative_int", "unit_float", "nonnegative_float", "positive_float",
           "scale_float",
           "device_arg"]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (no usage block: ``--help`` shows it) and exit code 2,
    like every other error of the command; its subcommand parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        print(f"ddrm-fast: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _number(text: str, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{'an integer' if kind is int else 'a number'} expected, got "
                                         f"{text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"a finite number expected, got {text!r}")
    return value


def _ranged(kind, ok: Callable[[float], bool], rule: str, name: str) -> Callable[[str], object]:
    """An argparse type: ``kind`` (int or float) parsed from the text, then held to ``ok`` (``rule`` says how)."""
    def parse(text: str):
        value = _number(text, kind)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must {rule}, got {value}")
        return value

    parse.__name__ = name  # argparse names the type in its messages
    return parse


positive_int = _ranged(int, lambda v: v >= 1, "be >= 1", "positive_int")
nonnegative_int = _ranged(int, lambda v: v >= 0, "be >= 0", "nonnegative_int")
unit_float = _ranged(float, lambda v: 0 <= v <= 1, "lie in [0, 1]", "unit_float")
nonnegative_float = _ranged(float, lambda v: v >= 0, "be >= 0", "nonnegative_float")
positive_float = _ranged(float, lambda v: v > 0, "be > 0", "positive_float")
scale_float = _ranged(float, lambda v: 1 < v <= 64, "lie in (1, 64]", "scale_float")


def device_arg(text: str):
    """A torch.device that exists here: ``cpu``, or ``cuda[:i]`` with such a GPU visible."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a device: {text!r} (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: only {torch.cuda.device_count()} GPU(s) are visible")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text}: only cpu and cuda devices are supported")
    return device
