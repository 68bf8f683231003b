"""Peephole optimisation of a compiled plan's steps (fusion); see :func:`fuse`."""

from __future__ import annotations

from typing import Any


def fuse(steps: list, constants: dict[int, Any], pinned: set[int]) -> list:
    """Steps with fusable chains rewritten; ``constants`` maps slot -> load-time value,
    ``pinned`` are slots that must keep their values (fetched or fed). Identity for now."""
    return steps
