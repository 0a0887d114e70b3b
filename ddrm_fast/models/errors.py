"""The one error every model loader raises for the user's files."""
from __future__ import annotations

__all__ = ["CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, truncated, or does not match the architecture."""
