"""Architecture configs given as a preset name, a config dataclass or a dict, with keyword overrides."""
from __future__ import annotations

import dataclasses
from typing import Dict, Type, TypeVar

C = TypeVar("C")


def resolve_config(cls: Type[C], presets: Dict[str, C], config, overrides: dict) -> C:
    """``cls`` from ``config`` (a preset name, a ``cls`` or a dict of its fields) with ``overrides`` applied;
    unknown names are ValueErrors that list what is known."""
    if isinstance(config, str):
        if config not in presets:
            raise ValueError(f"config: unknown preset {config!r}; known: {sorted(presets)}")
        config = presets[config]
    fields = dataclasses.asdict(config) if isinstance(config, cls) else dict(config)
    fields.update(overrides)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"config: unknown {cls.__name__} fields {unknown}; known: {sorted(known)}")
    return cls(**fields)
