"""A folder job's manifest: per-image task, noise level, seed and noise map, from CSV or JSON, each entry checked
alone (a bad entry is that image's failure, not the job's), and the default seed of an image from its name."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from typing import Dict, List, Tuple

from ..files import open_regular

__all__ = ["read_manifest", "default_seed", "FIELDS"]

_SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed accepts
FIELDS = ("name", "task", "sigma_y", "seed", "noise_map")  # a manifest entry's


def default_seed(name: str) -> int:
    """A stable 62-bit seed from an image's file name (not Python's salted hash)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little") >> 2


def _entry(row: dict, base: str) -> dict:
    """One manifest row's settings, checked: a ValueError names the field that is wrong."""
    entry = {}
    for key in row:
        if key is None:  # a CSV row with more values than the header has columns
            raise ValueError(f"more values than columns ({row[None]!r} left over)")
        if key not in FIELDS:
            raise ValueError(f"unknown field {key!r} (known: {', '.join(FIELDS)})")
    task = row.get("task")
    if task not in (None, ""):
        if not isinstance(task, str):
            raise ValueError(f"task {task!r} is not a task name")
        entry["task"] = task
    sigma = row.get("sigma_y")
    if sigma not in (None, ""):
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float, str)):
            raise ValueError(f"sigma_y {sigma!r} is not a number")
        try:
            entry["sigma_y"] = float(sigma)
        except ValueError:
            raise ValueError(f"sigma_y {sigma!r} is not a number") from None
    seed = row.get("seed")
    if seed not in (None, ""):
        if isinstance(seed, bool) or not isinstance(seed, (int, str)):
            raise ValueError(f"seed {seed!r} is not an integer")
        try:
            entry["seed"] = int(seed)
        except ValueError:
            raise ValueError(f"seed {seed!r} is not an integer") from None
        if not _SEED_RANGE[0] <= entry["seed"] <= _SEED_RANGE[1]:
            raise ValueError(f"seed {seed} is outside [-2^63, 2^64)")
    noise_map = row.get("noise_map")
    if noise_map not in (None, ""):
        if not isinstance(noise_map, str):
            raise ValueError(f"noise_map {noise_map!r} is not a file name")
        entry["noise_map"] = os.path.join(base, noise_map)
    return entry


def read_manifest(path: str) -> Tuple[Dict[str, dict], List[Tuple[str, str]]]:
    """Per-image settings from a CSV (header: name[,task][,sigma_y][,seed][,noise_map]) or JSON (a list of objects,
    or an object of name: settings).

    Returns (name -> settings, bad entries as (label, reason)): an entry that cannot be used is a bad item of the
    job, reported by name. A file that is not a manifest at all is a ValueError (a bad invocation).
    """
    try:
        with open_regular(path, "--manifest", "rb") as f:
            text = f.read().decode("utf-8-sig")
        if path.lower().endswith(".json"):
            rows = json.loads(text)
            if isinstance(rows, dict):  # name: settings; a value that is not an object is that entry's error
                rows = [{**v, "name": k} if isinstance(v, dict) else (k, v) for k, v in rows.items()]
            elif not isinstance(rows, list):
                raise ValueError(f"expected a list of objects or an object of name: settings, got "
                                 f"{type(rows).__name__}")
        else:
            reader = csv.DictReader(io.StringIO(text, newline=""))
            unknown = [c for c in (reader.fieldnames or []) if c not in FIELDS]
            if unknown or "name" not in (reader.fieldnames or []):
                raise ValueError(f"the header must name the columns name[, {', '.join(FIELDS[1:])}]; got "
                                 f"{reader.fieldnames}")
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error, json.JSONDecodeError) as exc:
        raise ValueError(f"--manifest {path}: unreadable ({str(exc).splitlines()[0][:160]})") from None
    except ValueError as exc:
        msg = str(exc)
        raise ValueError(msg if msg.startswith("--manifest") else f"--manifest {path}: {msg}") from None
    out: Dict[str, dict] = {}
    bad: List[Tuple[str, str]] = []
    seen = set()
    base = os.path.dirname(os.path.abspath(path))
    for i, row in enumerate(rows):
        if isinstance(row, tuple):  # {"name": <not an object>}
            bad.append((str(row[0]), f"manifest entry: expected an object of settings, got {type(row[1]).__name__}"))
            continue
        if not isinstance(row, dict):
            bad.append((f"manifest entry {i + 1}", f"expected an object, got {type(row).__name__}"))
            continue
        name = row.get("name")
        if not isinstance(name, str) or not name:
            bad.append((f"manifest entry {i + 1}", "has no name"))
            continue
        if name in seen:
            if out.pop(name, None) is not None:
                bad.append((name, "listed more than once in the manifest"))
            continue
        seen.add(name)
        try:
            out[name] = _entry(row, base)
        except ValueError as exc:
            bad.append((name, f"manifest entry: {exc}"))
    return out, bad
