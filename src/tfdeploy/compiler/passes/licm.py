"""licm: loop-invariant code motion for While bodies.

A loop variable the body returns unchanged is invariant, and so is every pure node computed only
from invariants and constants. Those nodes run once per loop (a prologue plan, run before the
first iteration), and the body plan is fed their results instead of recomputing them each
iteration. ``hoistable`` finds them in the body's graph; ``compiler/loops.py`` builds the plans.
``run``, a pass, does the same on the body's plan after the other passes, for the steps they
made (the body's ``Plan.prologue``).
"""

from __future__ import annotations

from tfdeploy import registry
from tfdeploy.compiler.passes import liveness
from tfdeploy.compiler.plan import Plan
from tfdeploy.ir.graph import ALIAS_OPS, Graph, canonical_ref, parse_ref
from tfdeploy.ir.traverse import input_deps, topological
from tfdeploy.ir.verify import verify_plan

# status of a node: computed from constants only, from invariants (and constants), or variant
_CONSTANT, _INVARIANT, _VARIANT = 0, 1, 2


def _pure(op_type: str) -> bool:
    d = registry.get_opdef(op_type)
    return d is not None and not d.stateful


def _status(g: Graph, order: list[str], invariant_inputs: set[str]):
    """(status, computes) per node: its status, and whether an invariant node does real work
    (not an alias of an input)."""
    by = g.by_name()
    status: dict[str, int] = {}
    computes: dict[str, bool] = {}
    for name in order:
        node = by.get(name)
        if node is None:
            status[name] = _VARIANT
            continue
        if node.op == "Const":
            status[name], computes[name] = _CONSTANT, False
            continue
        if node.op in ("Placeholder", "PlaceholderWithDefault") and not node.inputs:
            status[name] = _INVARIANT if f"{name}:0" in invariant_inputs else _VARIANT
            computes[name] = False
            continue
        ins = [status.get(parse_ref(r)[0], _VARIANT) for r in node.inputs]
        if node.op in ALIAS_OPS:
            status[name] = max(ins, default=_CONSTANT)
            computes[name] = any(computes.get(parse_ref(r)[0], False) for r in node.inputs)
        elif ins and max(ins) <= _INVARIANT and _pure(node.op):
            status[name] = max(ins)
            computes[name] = max(ins) == _INVARIANT
        else:
            status[name] = _VARIANT
    return status, computes


def hoistable(g: Graph, fetches: list[str], invariant_inputs: set[str]) -> list[str]:
    """Refs computed from ``invariant_inputs`` (and constants) only that ``fetches`` need, at
    the boundary where loop-variant computation starts reading them."""
    by = g.by_name()
    order = topological([parse_ref(r)[0] for r in fetches], input_deps(by))
    status, computes = _status(g, order, invariant_inputs)
    hoisted: list[str] = []
    seen: set[str] = set()

    def consider(r: str) -> None:
        r = canonical_ref(r)
        n = parse_ref(r)[0]
        if status.get(n) == _INVARIANT and computes.get(n) and r not in seen:
            seen.add(r)
            hoisted.append(r)

    for name in order:
        node = by.get(name)
        if node is not None and status[name] == _VARIANT:
            for r in node.inputs:
                consider(r)
    for r in fetches:
        consider(r)
    return hoisted


# ---------------------------------------------------------------------------- plans

def run(plan: Plan, ctx=None) -> Plan:
    """The plan-level pass: a loop body's steps computed from its invariant feeds (and
    constants) only, moved to its prologue (``Plan.prologue``, run once per loop); the values
    the body still reads from them become its last feeds.

    The graph-level hoisting above runs before the body is compiled; this catches what the
    passes made since (the input projection of a fused RNN cell, ``passes/project_inputs.py``).
    """
    if not plan.invariant_feeds:
        return plan
    constants = plan.constants
    invariant = set(plan.invariant_feeds)
    moved, kept = [], []
    for st in plan.steps:
        d = registry.get_opdef(st.op)
        if d is not None and not d.stateful and st.ins and \
                all(v in invariant or v in constants for v in st.ins) and \
                not all(v in constants for v in st.ins):
            moved.append(st)
            invariant.update(v for _, v in st.outs)
        else:
            kept.append(st)
    if not moved:
        return plan
    read = {v for st in kept for v in st.ins} | set(plan.fetch_values)
    outs = tuple(v for st in moved for _, v in st.outs if v in read)
    used = {v for st in moved for v in st.ins}
    feeds = tuple(dict.fromkeys(v for v in plan.feed_values if v in used))
    prologue = Plan(plan.graph, plan.root, [], [], feeds, outs,
                    {v: constants[v] for v in used if v in constants}, moved, plan.n_values,
                    refs=plan.refs, feed_checks=[None] * len(feeds), nested=True)
    liveness.run(prologue)
    plan.steps = kept
    plan.feed_values = tuple(plan.feed_values) + outs
    plan.feed_checks = list(plan.feed_checks) + [None] * len(outs)
    plan.invariant_feeds = plan.invariant_feeds | frozenset(outs)
    plan.prologue = prologue
    if ctx is not None and getattr(ctx, "verify", False):
        verify_plan(prologue)
    return plan
