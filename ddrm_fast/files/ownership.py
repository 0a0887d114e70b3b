"""Whether a file is ddrm-fast's: one recogniser per kind of file the package writes, one function to ask.

A file the package did not write is the user's: no command truncates, overwrites, renames or deletes it, and a command
that would write where it lies refuses up front. Every such decision asks :func:`recognise` (or :func:`is_own`):

==================  =================================================================================================
kind                ddrm-fast's when
==================  =================================================================================================
``png``             a PNG with a ``ddrm-fast`` text chunk holding a JSON object (restorations, degraded inputs,
                    baselines, figures, the original runner's files, ``bench.png``); recognised as that object
``report``          a folder job's JSON-lines report: empty, or its first line a record (``name``, ``status``), or
                    begun as one and cut short (a kill, a full disk) or followed by the next one (earlier versions)
``summary``         a folder job's ``summary.json``: an object with ``images``, ``failures``, ``restored_this_run``
``training log``    training's ``log.jsonl``: empty, or its first line a record (``step``, ``loss``), or begun as one
                    and cut short
``training state``  training's ``state.pt``: a dict with ``model``, ``ema``, ``opt``, ``step`` (loaded with
                    ``weights_only``); recognised as that dict
``model``           a ``.safetensors`` file whose metadata has ddrm_fast's record (``models.save``)
``bench csv``       ``bench.csv``: its header begins ``batch,mode,``
``bench md``        ``bench.md``: it holds the table header ``| batch | mode | images/s |``
``lock``            an output folder's ``.ddrm-fast.lock``: ddrm-fast's magic line and a pid
``temporary``       a regular file named as :func:`~ddrm_fast.files.atomic_write` names its temporaries
==================  =================================================================================================

Only regular files are read (symlinks followed, as every reader here does), and never more than a bounded prefix
except for a training state, whose whole content is the proof.
"""
from __future__ import annotations

import json
import os
from typing import Callable, Dict, Optional

from .lock import is_own_lock
from .reading import open_regular
from .writing import is_own_temporary

__all__ = ["PNG_KEY", "KINDS", "recognise", "is_own", "refuse_foreign", "png_record"]

PNG_KEY = "ddrm-fast"  # the text chunk of the PNGs this package writes
_PREFIX = 64 * 1024  # bytes read of a text file to recognise it


def png_record(path: str) -> Optional[dict]:
    """The record a PNG this package wrote carries (its ``ddrm-fast`` text chunk); None for any other file."""
    from PIL import Image

    try:
        with open_regular(path, "file") as f, Image.open(f) as im:
            text = im.info.get(PNG_KEY) if im.format == "PNG" else None  # text chunks before the pixel data
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return None
    try:
        record = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _text(path: str) -> Optional[str]:
    try:
        with open_regular(path, "file", "rb") as f:
            return f.read(_PREFIX).decode("utf-8")
    except (ValueError, OSError, UnicodeDecodeError):
        return None


def _json_lines(prefix: str, keys: set) -> Callable[[str], Optional[bool]]:
    """A JSON-lines log whose records begin ``{"<first key>": `` and hold ``keys``."""
    def recognise(path: str) -> Optional[bool]:
        text = _text(path)
        if text is None:
            return None
        first, newline, _ = text.partition("\n")
        if not first:
            return True if not newline else None  # empty: a job killed before its first line
        try:
            rec = json.loads(first)
        except ValueError:  # cut short by a kill or a full disk (or glued to the next line by earlier versions)
            return True if first.startswith(prefix) else None
        return True if isinstance(rec, dict) and keys <= set(rec) else None

    return recognise


def _summary(path: str) -> Optional[bool]:
    text = _text(path)
    try:
        obj = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return True if isinstance(obj, dict) and {"images", "failures", "restored_this_run"} <= set(obj) else None


def _training_state(path: str) -> Optional[dict]:
    import torch

    try:
        with open_regular(path, "training state") as f:
            state = torch.load(f, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable, truncated, a pickle that is not weights: not ours
        return None
    return state if isinstance(state, dict) and {"model", "ema", "opt", "step"} <= set(state) else None


def _model(path: str) -> Optional[bool]:
    try:
        from safetensors import safe_open

        open_regular(path, "model file").close()
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # noqa: BLE001 - not a readable safetensors file: not ours
        return None
    return True if "ddrm_fast" in meta else None


def _starts(test: Callable[[str], bool]) -> Callable[[str], Optional[bool]]:
    def recognise(path: str) -> Optional[bool]:
        text = _text(path)
        return True if text is not None and test(text) else None

    return recognise


def _lock(path: str) -> Optional[bool]:
    try:
        with open_regular(path, "lock file") as f:
            return True if is_own_lock(f.read(1024)) else None
    except (ValueError, OSError):
        return None


def _temporary(path: str) -> Optional[bool]:
    return True if is_own_temporary(os.path.basename(path)) and os.path.isfile(path) else None


KINDS: Dict[str, Callable[[str], Optional[object]]] = {
    "png": png_record,
    "report": _json_lines('{"name": ', {"name", "status"}),
    "summary": _summary,
    "training log": _json_lines('{"step": ', {"step", "loss"}),
    "training state": _training_state,
    "model": _model,
    "bench csv": _starts(lambda text: text.startswith("batch,mode,")),
    "bench md": _starts(lambda text: "| batch | mode | images/s |" in text),
    "lock": _lock,
    "temporary": _temporary,
}


def recognise(path: str, kind: str) -> Optional[object]:
    """What shows that the file at ``path`` is ddrm-fast's ``kind`` (the PNG's record, the training state, or
    True), or None when it is not (missing, not a regular file, unreadable, or someone else's)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if not os.path.lexists(path):
        return None
    return KINDS[kind](path)


def is_own(path: str, kind: str) -> bool:
    """Whether the file at ``path`` is one ddrm-fast wrote, as ``kind`` (see the module's table)."""
    return recognise(path, kind) is not None


def refuse_foreign(path: str, kind: str, message: str) -> None:
    """A ValueError with ``message`` when a file lies at ``path`` that is not ddrm-fast's ``kind``: the command would
    overwrite or append to the user's file."""
    if os.path.lexists(path) and not is_own(path, kind):
        raise ValueError(message)
