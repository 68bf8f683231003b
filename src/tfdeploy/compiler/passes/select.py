"""select: the first pass, graph to plan. The nodes the fetches need (given the feeds), in
topological order, each output read later given a value; constants become plan constants,
identities alias their input, and op types without a kernel are refused, all in one error."""

from __future__ import annotations

import numpy as np

from tfdeploy import registry
from tfdeploy.errors import FeedError, GraphError, UnsupportedOpError
from tfdeploy.ir.graph import ALIAS_OPS, SOURCE_OPS, Graph, parse_ref
from tfdeploy.ir.traverse import input_deps, topological

from ..plan import Plan, Step


def run(graph: Graph, fetches: list[str], feeds: list[str], root: Graph | None = None,
        feed_checks: list | None = None, nested: bool = False) -> Plan:
    by = graph.by_name()
    fetch_refs = [parse_ref(r) for r in fetches]
    feed_refs = [parse_ref(r) for r in feeds]
    fed = set(feed_refs)
    for n, _ in fetch_refs + feed_refs:
        if n not in by:
            raise GraphError(f"graph has no tensor named {n!r}")
    order = topological([n for n, i in fetch_refs if (n, i) not in fed],
                        input_deps(by, fed, strict=True), on_cycle=_cycle)
    check_registered([by[name] for name in order])
    plan = Plan(graph, root if root is not None else graph, fetch_refs, feed_refs, (), (), {},
                [], 0, feed_checks=list(feed_checks or [None] * len(feed_refs)), nested=nested)
    value_of: dict[tuple[str, int], int] = {}
    feed_values = []
    for ref in feed_refs:
        if ref not in value_of:
            value_of[ref] = plan.new_value()
            plan.refs[value_of[ref]] = f"{ref[0]}:{ref[1]}"
        feed_values.append(value_of[ref])
    used = _used_outputs(by, order, fetch_refs)
    for name in order:
        _add_node(plan, by[name], sorted(used.get(name, ())), value_of)
    fetch_values = []
    for ref in fetch_refs:
        if ref not in value_of:
            raise GraphError(f"tensor {ref[0]}:{ref[1]} is not produced by the graph")
        fetch_values.append(value_of[ref])
    plan.feed_values, plan.fetch_values = tuple(feed_values), tuple(fetch_values)
    return plan


def _cycle(name: str) -> GraphError:
    return GraphError(f"the graph has a cycle through node {name!r}; cyclic (TF1 control "
                      "flow) graphs must be converted first")


def _used_outputs(by, order, fetch_refs) -> dict[str, set[int]]:
    """Which outputs of each node are read (by a later node or as a fetch)."""
    used: dict[str, set[int]] = {}
    for name in order:
        for r in by[name].inputs:
            n, i = parse_ref(r)
            used.setdefault(n, set()).add(i)
    for n, i in fetch_refs:
        used.setdefault(n, set()).add(i)
    return used


def _add_node(plan: Plan, node, outs_used: list[int], value_of: dict) -> None:
    name, op = node.name, node.op
    ins = [value_of[parse_ref(r)] for r in node.inputs]
    if op == "Const":
        value = node.attrs.get("value")
        if not isinstance(value, np.ndarray):
            raise GraphError(f"Const node {name!r} has no array value")
        value_of[(name, 0)] = v = plan.new_value()
        plan.constants[v] = read_only(value)
        plan.refs[v] = f"{name}:0"
        return
    if op == "Placeholder":
        raise FeedError(f"input {name!r} must be fed (dtype "
                        f"{node.attrs.get('dtype', '?')}, shape {node.attrs.get('shape')})")
    if op in ALIAS_OPS or op == "PlaceholderWithDefault":
        for i in outs_used:
            if i >= len(ins):
                raise GraphError(f"node {name!r} ({op}) has {len(ins)} inputs but output "
                                 f"{i} is read")
            value_of[(name, i)] = ins[i]
        return
    outs = []
    for i in outs_used:
        value_of[(name, i)] = v = plan.new_value()
        plan.refs[v] = f"{name}:{i}"
        outs.append((i, v))
    plan.steps.append(Step(op, name, tuple(ins), tuple(outs), dict(node.attrs)))


def read_only(value: np.ndarray) -> np.ndarray:
    """``value``, or a read-only view of it: the plan's constants (and every view a kernel
    makes of them) are never writeable, so the fetch can tell model memory from fresh
    results (``codegen._fetch_expr``) and a kernel writing into one fails loudly."""
    if not value.flags.writeable:
        return value
    view = value.view()
    view.flags.writeable = False
    return view


def check_registered(nodes) -> None:
    """Raise one UnsupportedOpError naming every op type of ``nodes`` without a kernel."""
    missing: dict[str, list[str]] = {}
    for n in nodes:
        if n.op not in SOURCE_OPS and n.op not in ALIAS_OPS and not registry.is_registered(n.op):
            missing.setdefault(n.op, []).append(n.name)
    if missing:
        raise UnsupportedOpError(unsupported_message(missing))


def unsupported_message(missing: dict[str, list[str]]) -> str:
    lines = [f"{len(missing)} op type(s) have no tfdeploy kernel:"]
    for op in sorted(missing):
        nodes = missing[op]
        shown = ", ".join(repr(n) for n in nodes[:5])
        more = f" and {len(nodes) - 5} more" if len(nodes) > 5 else ""
        lines.append(f"  {op}: used by {shown}{more}")
    lines.append("Add a kernel for each before converting or loading, e.g.\n"
                 "    @td.Operation.factory\n"
                 f"    def {sorted(missing)[0]}(x, ...):\n"
                 "        return np....(x),\n"
                 "(see the README, 'Custom ops'), or file an issue.")
    return "\n".join(lines)
