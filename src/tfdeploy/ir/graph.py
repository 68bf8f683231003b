"""The IR: graphs of nodes carrying TensorFlow raw op types. Pure data, printable.

A tensor is referred to as ``"node"`` (output 0) or ``"node:i"``. Node attributes are plain
Python values (the JSON types) except tensor attributes, which hold numpy arrays, and function
attributes, which hold :class:`FuncAttr`. Functions (While/If bodies, call targets) are graphs
too, kept by name in ``Graph.functions`` of the top-level graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfdeploy.errors import GraphError

#: ops whose outputs are their inputs: plans alias them instead of calling anything
ALIAS_OPS = frozenset({"Identity", "IdentityN", "StopGradient", "Snapshot", "PreventGradient"})
#: ops a plan itself understands (no kernel)
SOURCE_OPS = frozenset({"Const", "Placeholder", "PlaceholderWithDefault"})
#: calls of a function, which the converter inlines where it can
CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})


def parse_ref(ref: str) -> tuple[str, int]:
    """``"node:i"`` -> ``("node", i)``; ``"node"`` -> ``("node", 0)``."""
    name, sep, idx = ref.rpartition(":")
    if sep and idx.isdigit() and idx.isascii():  # ("W:²" is a name, as "²".isdigit())
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

    def __str__(self) -> str:
        return format_graph(self)

    def op_types(self) -> set[str]:
        """Op types used by this graph and every function it holds."""
        types = {n.op for n in self.nodes}
        for f in self.functions.values():
            types |= {n.op for n in f.nodes}
        return types


def node_dtype(node: Node, index: int = 0) -> str | None:
    """The dtype name a node's attributes give its output (``dtype``, ``T``...), if any."""
    a = node.attrs
    for k in ("dtype", "T", "DstT", "out_type"):
        if isinstance(a.get(k), str):
            return a[k]
    return None


def node_shape(node: Node):
    """A Placeholder's declared shape (list, None dims unknown), or None."""
    s = node.attrs.get("shape")
    return s if isinstance(s, list) else None


# ---------------------------------------------------------------------------- printing

def format_shape(shape) -> str:
    """``[?,224,224,3]`` (unknown dims as ?), or ``[*]`` for an unknown rank."""
    if shape is None:
        return "[*]"
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def format_value(v: Any) -> str:
    """An attribute or constant as one short line: small arrays by value, others by type."""
    if isinstance(v, np.ndarray):
        if v.dtype != object and v.size <= 8 and v.ndim <= 1:
            body = np.array2string(v, separator=",", threshold=8).replace("\n", "")
            return f"{v.dtype}{body}" if v.ndim else f"{v.dtype} {body}"
        kind = "string" if v.dtype == object else str(v.dtype)
        return f"{kind}{format_shape(v.shape)}"
    if isinstance(v, FuncAttr):
        return f"@{v.name}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(format_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{format_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (str, bytes)):
        return repr(v) if len(v) <= 40 else repr(v[:37]) + "..."
    return repr(v)


def format_attrs(attrs: dict, skip=("T", "_class")) -> str:
    return " ".join(f"{k}={format_value(v)}" for k, v in attrs.items() if k not in skip)


def _spec_line(s: TensorSpec) -> str:
    return f"{s.name} = {s.ref} {s.dtype}{format_shape(s.shape)}"


def format_graph(g: Graph, title: str = "graph") -> str:
    """One line per node: ``%name = Op(%in, %in:1) attr=value ...``, then each function."""
    lines = [f"{title} ({len(g.nodes)} nodes"
             + (f", {len(g.functions)} functions)" if g.functions else ")")]
    lines += [f"  input  {_spec_line(s)}" for s in g.inputs]
    for n in g.nodes:
        ins = ", ".join("%" + (r[:-2] if r.endswith(":0") else r) for r in n.inputs)
        attrs = format_attrs(n.attrs)
        lines.append(f"  %{n.name} = {n.op}({ins})" + (f" {attrs}" if attrs else ""))
    lines += [f"  output {_spec_line(s)}" for s in g.outputs]
    for name, f in g.functions.items():
        lines.append("")
        lines.append(format_graph(f, f"function {name}"))
    return "\n".join(lines)
