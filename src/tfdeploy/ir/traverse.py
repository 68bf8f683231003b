"""The one way to walk a graph: topological order, reachability and consumers.

Graphs can be deep (a 10,000-op chain, an unrolled RNN), so nothing here recurses: every walk is
an explicit stack. A walk is given a ``deps(name)`` function naming what a node depends on, so
the same code serves plans (data inputs, minus fed tensors), the converter's TF1 raising (data
inputs, and control inputs of input-less nodes) and loop analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tfdeploy.errors import GraphError
from tfdeploy.ir.graph import Node, parse_ref

Deps = Callable[[str], Iterable[str]]


def topological(roots: Iterable[str], deps: Deps,
                on_cycle: Callable[[str], Exception] | None = None) -> list[str]:
    """The names ``roots`` depend on (``roots`` included), each after everything it depends
    on (an iterative post-order walk). A cycle raises ``on_cycle(name)`` (by default a
    GraphError naming a node on it); ``deps`` may raise for a bad reference."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(deps(root)))]
        while stack:
            name, it = stack[-1]
            for d in it:
                s = state.get(d)
                if s is None:
                    state[d] = 1
                    stack.append((d, iter(deps(d))))
                    break
                if s == 1:
                    raise (on_cycle or _cycle)(d)
            else:
                stack.pop()
                state[name] = 2
                order.append(name)
    return order


def _cycle(name: str) -> GraphError:
    return GraphError(f"the graph has a cycle through node {name!r}")


def reachable(roots: Iterable[str], deps: Deps) -> set[str]:
    """Every name ``roots`` depend on, ``roots`` included (in no particular order)."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(deps(name))
    return seen


def input_deps(by: dict[str, Node], fed: Iterable[tuple[str, int]] = (),
               strict: bool = False) -> Deps:
    """``deps`` over the data inputs of the nodes in ``by``: refs in ``fed`` are cut, names
    not in ``by`` have no deps (or, with ``strict``, raise a GraphError naming the reader)."""
    fed = frozenset(fed)

    def deps(name: str) -> list[str]:
        node = by.get(name)
        if node is None:
            return []
        out = []
        for r in node.inputs:
            ref = parse_ref(r)
            if ref in fed:
                continue
            if strict and ref[0] not in by:
                raise GraphError(f"node {name!r} ({node.op}) reads {r!r}, but the graph has "
                                 f"no node named {ref[0]!r}")
            out.append(ref[0])
        return out

    return deps


def prune(nodes: list[Node], outputs: Iterable[str], deps: Deps | None = None) -> list[Node]:
    """The nodes the refs ``outputs`` depend on, in their original order."""
    by = {n.name: n for n in nodes}
    keep = reachable([parse_ref(r)[0] for r in outputs], deps or input_deps(by))
    return [n for n in nodes if n.name in keep]


def consumers(nodes: Iterable[Node]) -> dict[str, list[str]]:
    """For each node name, the names of the nodes reading one of its outputs (in order)."""
    out: dict[str, list[str]] = {}
    for n in nodes:
        for r in n.inputs:
            out.setdefault(parse_ref(r)[0], []).append(n.name)
    return out
