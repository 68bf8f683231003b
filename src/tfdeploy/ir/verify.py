"""Consistency checks of a graph and of a plan, run after every compiler pass in the tests
(``compile_plan(..., verify=True)``): a pass that breaks an invariant fails there, not later
as a wrong answer."""

from __future__ import annotations

from tfdeploy import registry
from tfdeploy.errors import GraphError
from tfdeploy.ir.graph import ALIAS_OPS, SOURCE_OPS, FuncAttr, Graph, parse_ref
from tfdeploy.ir.traverse import input_deps, topological


def _func_names(v) -> list[str]:
    if isinstance(v, FuncAttr):
        return [v.name]
    if isinstance(v, (list, tuple)):
        return [n for x in v for n in _func_names(x)]
    return []


def verify_graph(g: Graph, root: Graph | None = None) -> None:
    """Unique node names, references to existing nodes and functions, no cycle; functions
    checked too."""
    root = root if root is not None else g
    by = g.by_name()  # raises on duplicate names
    for n in g.nodes:
        for r in n.inputs:
            if parse_ref(r)[0] not in by:
                raise GraphError(f"node {n.name!r} ({n.op}) reads {r!r}: no such node")
        for k, v in n.attrs.items():
            for f in _func_names(v):
                if f not in root.functions:
                    raise GraphError(f"node {n.name!r} ({n.op}) attribute {k!r} names "
                                     f"function {f!r}, which the graph does not hold")
    for s in g.inputs + g.outputs:
        if parse_ref(s.ref)[0] not in by:
            raise GraphError(f"signature entry {s.name!r} refers to {s.ref!r}: no such node")
    topological([n.name for n in g.nodes], input_deps(by))
    if g is root:
        for f in g.functions.values():
            verify_graph(f, root)


def verify_plan(plan) -> None:
    """Every value defined once before it is read, freed only after its last read and never
    if fetched, every op known, every step of a lowered plan bound to a kernel."""
    where = f"plan (after {plan.passes[-1]})" if plan.passes else "plan"
    defined = set(plan.feed_values) | set(plan.constants)
    freed: set[int] = set()
    lowered = "lower" in plan.passes
    for k, st in enumerate(plan.steps):
        d = registry.get_opdef(st.op)
        if d is None and st.op not in SOURCE_OPS | ALIAS_OPS:
            raise GraphError(f"{where}: step {k} ({st.name!r}) runs unknown op {st.op!r}")
        for v in st.ins:
            if v not in defined:
                raise GraphError(f"{where}: step {k} ({st.name!r}, {st.op}) reads %{v} "
                                 "before it is defined")
            if v in freed:
                raise GraphError(f"{where}: step {k} ({st.name!r}, {st.op}) reads %{v} "
                                 "after it was freed")
        for _, v in st.outs:
            if v in defined:
                raise GraphError(f"{where}: step {k} ({st.name!r}) defines %{v} again")
            defined.add(v)
        for v in st.free:
            if v in plan.fetch_values or v in plan.constants:
                raise GraphError(f"{where}: step {k} frees %{v}, which is fetched or constant")
            freed.add(v)
        if lowered and st.kernel is None:
            raise GraphError(f"{where}: step {k} ({st.name!r}, {st.op}) has no kernel")
    for v in plan.fetch_values:
        if v not in defined:
            raise GraphError(f"{where}: fetched value %{v} is never defined")
