"""The IR: graphs of nodes carrying TensorFlow raw op types. Pure data, no behaviour.

A tensor is referred to as ``"node"`` (output 0) or ``"node:i"``. Node attributes are plain
Python values (the JSON types) except tensor attributes, which hold numpy arrays, and function
attributes, which hold :class:`FuncAttr`. Functions (While/If bodies, call targets) are graphs
too, kept by name in ``Graph.functions`` of the top-level graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import GraphError


def parse_ref(ref: str) -> tuple[str, int]:
    """``"node:i"`` -> ``("node", i)``; ``"node"`` -> ``("node", 0)``."""
    name, sep, idx = ref.rpartition(":")
    if sep and idx.isdigit():
        return name, int(idx)
    return ref, 0


def format_ref(name: str, index: int = 0) -> str:
    return f"{name}:{index}"


def canonical_ref(ref: str) -> str:
    return format_ref(*parse_ref(ref))


@dataclass(frozen=True)
class FuncAttr:
    """A function-valued attribute: the function's name and its own attributes."""

    name: str
    attrs: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TensorSpec:
    """A signature entry: a public name, the tensor it refers to, its dtype and shape."""

    name: str
    ref: str
    dtype: str
    #: list of dims (None = unknown), or None for an unknown rank
    shape: list[int | None] | None = None

    def __repr__(self) -> str:
        shape = "?" if self.shape is None else "(" + ", ".join(
            "None" if d is None else str(d) for d in self.shape) + ")"
        return f"TensorSpec({self.name!r}, {self.dtype}, shape={shape})"


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    #: functions referenced by FuncAttr attributes (only on top-level graphs)
    functions: dict[str, Graph] = field(default_factory=dict)
    _by_name: dict[str, Node] | None = field(default=None, repr=False, compare=False)

    def node(self, name: str) -> Node:
        by = self.by_name()
        try:
            return by[name]
        except KeyError:
            raise GraphError(f"graph has no node named {name!r}") from None

    def by_name(self) -> dict[str, Node]:
        if self._by_name is None or len(self._by_name) != len(self.nodes):
            by: dict[str, Node] = {}
            for n in self.nodes:
                if n.name in by:
                    raise GraphError(f"two nodes are named {n.name!r}")
                by[n.name] = n
            self._by_name = by
        return self._by_name

    def invalidate(self) -> None:
        self._by_name = None

    def op_types(self) -> set[str]:
        """Op types used by this graph and every function it holds."""
        types = {n.op for n in self.nodes}
        for f in self.functions.values():
            types |= {n.op for n in f.nodes}
        return types
