"""What ``tfdeploy graph`` draws: the IR turned into boxes and arrows a reader can follow.

Constants (Const nodes, and whatever computes only from constants: a variable's
ReadVariableOp, a folded batch norm) are not drawn: each is listed with the node that consumes
it. Large graphs are grouped by name scope (one box per Keras layer, say), whose details list
the member nodes. Each function (While/If bodies, called functions) is a graph of its own, drawn
as a cluster beside its caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import registry
from ._common import called_functions
from ._ir import ALIAS_OPS, FuncAttr, Graph, Node, parse_ref

#: above this many visible nodes, ``--group auto`` groups by name scope
GROUP_THRESHOLD = 150
CHAR_W = 6.6
LINE_H = 14.0
MAX_LABEL = 34


@dataclass
class VNode:
    id: str
    name: str
    #: "input", "output", "op" or "group"
    kind: str
    #: first line: the op type (a group: the scope's name)
    title: str
    #: second line: the node's short name (a group: its op types)
    label: str
    #: third line: the output shape(s), or "" when nothing is known
    shape: str
    info: dict = field(default_factory=dict)
    #: names of the functions this node calls
    calls: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[float, float]:
        lines = [t for t in (self.title, self.label, self.shape) if t]
        w = max(len(t) for t in lines) * CHAR_W + 20
        return max(w, 60.0), len(lines) * LINE_H + 12


@dataclass
class VGraph:
    key: str
    title: str
    nodes: list[VNode]
    edges: list[tuple[int, int]]


def _short(name: str) -> str:
    parts = name.split("/")
    s = "/".join(parts[-2:]) if len(parts) > 1 and len(parts[-1]) < 12 else parts[-1]
    return s if len(s) <= MAX_LABEL else "…" + s[-(MAX_LABEL - 1):]


def fmt_dims(shape) -> str:
    if shape is None:
        return "?"  # unknown rank
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def _shape_text(outputs: list | None) -> str:
    if outputs is None:
        return "shape unknown"
    if not outputs:
        return ""
    shown = [fmt_dims(shape) for _dtype, shape in outputs[:2]]
    return " ".join(shown) + (f" +{len(outputs) - 2}" if len(outputs) > 2 else "")


def _attr_text(v) -> str:
    if isinstance(v, np.ndarray):
        if v.size <= 8 and v.dtype.kind != "O":
            return f"{v.dtype} {v.tolist()}"
        return f"{v.dtype} array {fmt_dims(v.shape)}"
    if isinstance(v, FuncAttr):
        return f"function {v.name}"
    if isinstance(v, bytes):
        return repr(v[:60])
    if isinstance(v, str):
        return v if len(v) <= 200 else v[:197] + "..."
    if isinstance(v, list) and len(v) > 16:
        return repr(v[:16])[:-1] + ", ...]"
    text = repr(v)
    return text if len(text) <= 200 else text[:197] + "..."


def topological(g: Graph) -> list[Node]:
    """The nodes, producers before consumers (Kahn's algorithm; nodes on a cycle last)."""
    by = g.by_name()
    consumers: dict[str, list[str]] = {}
    indeg = {}
    for n in g.nodes:
        srcs = {parse_ref(r)[0] for r in n.inputs} & by.keys()
        indeg[n.name] = len(srcs)
        for s in srcs:
            consumers.setdefault(s, []).append(n.name)
    order = [n.name for n in g.nodes if indeg[n.name] == 0]
    for name in order:  # grows while walked
        for c in consumers.get(name, ()):
            indeg[c] -= 1
            if indeg[c] == 0:
                order.append(c)
    seen = set(order)
    return [by[x] for x in order] + [n for n in g.nodes if n.name not in seen]


def constant_nodes(g: Graph) -> set[str]:
    """Nodes whose value is known without any input: Const, and deterministic ops of those."""
    const: set[str] = set()
    for n in topological(g):
        if n.op == "Const":
            const.add(n.name)
        elif n.inputs and not n.op.startswith("Placeholder") and not called_functions(n) and \
                all(parse_ref(r)[0] in const for r in n.inputs):
            d = registry.get_opdef(n.op)
            if d is not None and not d.stateful or n.op in ALIAS_OPS:
                const.add(n.name)
    return const


def build(g: Graph, key: str, title: str, tensors: dict | None, fold_consts: bool = True,
          group: str = "auto", outputs: bool = True) -> VGraph:
    """The view of one graph (top level or function); ``tensors`` maps node names to
    ``[[dtype, shape], ...]`` (TF's static shapes recorded at conversion), or is None."""
    const = constant_nodes(g) if fold_consts else set()
    by = g.by_name()
    nodes: list[VNode] = []
    index: dict[str, int] = {}
    for n in g.nodes:
        if n.name in const:
            continue
        outs = tensors.get(n.name) if tensors is not None else None
        kind = "input" if n.op in ("Placeholder", "PlaceholderWithDefault") else "op"
        info = {"name": n.name, "op": n.op, "inputs": list(n.inputs), "outputs": outs,
                "attrs": {k: _attr_text(v) for k, v in sorted(n.attrs.items())
                          if not (n.op == "Const" and k == "value")},
                "constants": []}
        if n.op == "Const":
            v = n.attrs.get("value")
            info["outputs"] = outs or ([[str(v.dtype), list(v.shape)]] if v is not None else None)
        index[n.name] = len(nodes)
        nodes.append(VNode(f"{key}:{len(nodes)}", n.name, kind, n.op, _short(n.name),
                           _shape_text(info["outputs"]), info, called_functions(n)))
    edges: list[tuple[int, int]] = []
    for n in g.nodes:
        if n.name not in index:
            continue
        dst = index[n.name]
        for r in n.inputs:
            src = parse_ref(r)[0]
            if src in index:
                edges.append((index[src], dst))
            elif src in by:
                c = by[src]
                outs = tensors.get(src) if tensors is not None else None
                v = c.attrs.get("value") if c.op == "Const" else None
                if outs is None and isinstance(v, np.ndarray):
                    outs = [[str(v.dtype), list(v.shape)]]
                nodes[dst].info["constants"].append(
                    {"name": src, "op": c.op, "outputs": outs,
                     "value": _attr_text(v) if v is not None and v.size <= 8 else None})
    if outputs:
        for s in g.outputs:
            src = parse_ref(s.ref)[0]
            if src not in index:
                continue
            nodes.append(VNode(f"{key}:{len(nodes)}", f"output {s.name}", "output", "output",
                               _short(s.name), fmt_dims(s.shape) if s.shape is not None else "",
                               {"name": s.name, "op": "output", "tensor": s.ref,
                                "outputs": [[s.dtype, s.shape]]}))
            edges.append((index[src], len(nodes) - 1))
    view = VGraph(key, title, nodes, list(dict.fromkeys(edges)))
    if group == "scope" or (group == "auto" and len(nodes) > GROUP_THRESHOLD):
        view = group_by_scope(view)
    return view


def _scope_key(name: str, prefix_len: int) -> str | None:
    parts = name.split("/")
    if len(parts) <= prefix_len + 1:
        return None
    return "/".join(parts[:prefix_len + 1])


def _common_prefix(names: list[str]) -> int:
    """How many leading scope components every scoped name shares."""
    scoped = [n.split("/")[:-1] for n in names if "/" in n]
    if not scoped:
        return 0
    k = 0
    while all(len(s) > k and s[k] == scoped[0][k] for s in scoped):
        k += 1
    return k


def group_by_scope(view: VGraph) -> VGraph:
    """One box per name scope (below the scope every node shares): Keras layers, blocks."""
    ops = [v for v in view.nodes if v.kind == "op"]
    prefix = _common_prefix([v.name for v in ops])
    members: dict[str, list[int]] = {}
    for i, v in enumerate(view.nodes):
        k = _scope_key(v.name, prefix) if v.kind == "op" else None
        if k is not None:
            members.setdefault(k, []).append(i)
    target = list(range(len(view.nodes)))
    nodes: list[VNode] = []
    new_index: dict[int, int] = {}
    groups = {k: m for k, m in members.items() if len(m) > 1}
    first_of = {m[0]: k for k, m in groups.items()}
    for i, v in enumerate(view.nodes):
        k = _scope_key(v.name, prefix) if v.kind == "op" else None
        if k in groups and i != groups[k][0]:
            continue
        if i in first_of:
            v = _group_node(view, first_of[i], groups[first_of[i]], prefix, len(nodes))
        else:
            v = VNode(f"{view.key}:{len(nodes)}", v.name, v.kind, v.title, v.label, v.shape,
                      v.info, v.calls)
        new_index[i] = len(nodes)
        nodes.append(v)
    for m in groups.values():
        for i in m:
            target[i] = new_index[m[0]]
    for i in range(len(view.nodes)):
        if i in new_index:
            target[i] = new_index[i]
    edges = [(target[a], target[b]) for a, b in view.edges if target[a] != target[b]]
    return VGraph(view.key, view.title, nodes, list(dict.fromkeys(edges)))


def _group_node(view: VGraph, key: str, idx: list[int], prefix: int, pos: int) -> VNode:
    inside = set(idx)
    mem = [view.nodes[i] for i in idx]
    # the group's shape: that of its last member read from outside the group
    leaving = [a for a, b in view.edges if a in inside and b not in inside]
    exit_node = view.nodes[max(leaving)] if leaving else mem[-1]
    op_types = list(dict.fromkeys(v.title for v in mem))
    label = "+".join(op_types[:3]) + ("+…" if len(op_types) > 3 else "")
    name = "/".join(key.split("/")[prefix:])
    info = {"name": key, "op": "group", "members": [v.info for v in mem],
            "outputs": exit_node.info.get("outputs"), "exit": exit_node.name}
    calls = [f for v in mem for f in v.calls]
    return VNode(f"{view.key}:{pos}", key, "group", _short(name), label, exit_node.shape, info,
                 calls)
