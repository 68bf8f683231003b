"""Functional control flow: While, If, Case, For and function calls, as nested plans.

Each kernel here is a *factory* (``needs_context=True``): the plan calls it once at load with
the function attributes, it compiles every body once, and returns the callable run at each
evaluation. Values pass between the caller and the bodies as tuples, nothing else.

While loops get loop-invariant code motion: a loop variable the body returns unchanged is
invariant, and so is every pure node computed only from invariants and constants. Those nodes
run once per loop (a prologue plan, run lazily before the first iteration), and the body plan
is fed their results instead of recomputing them each iteration.
"""

from __future__ import annotations

import numpy as np

from .. import registry
from ..graph import FuncAttr, Graph, canonical_ref, parse_ref
from ..registry import op
from .lists import TensorList

_ALIASES = frozenset({"Identity", "IdentityN", "StopGradient", "Snapshot", "PreventGradient"})


def _truth(c) -> bool:
    """TF's ToBool of a predicate tensor: a scalar's value, else non-emptiness."""
    if c.ndim == 0:
        return bool(c)
    return c.size > 0


def _compile(ctx, g: Graph, fetches: list[str], feeds: list[str]):
    from ..plan import compile_plan

    return compile_plan(g, fetches, feeds, root=ctx.root).run


def _resolve(by: dict, ref: str) -> str:
    """``ref`` with identity nodes looked through, canonical (``node:i``)."""
    name, i = parse_ref(ref)
    seen = 0
    while True:
        node = by.get(name)
        if node is None or node.op not in _ALIASES or seen > len(by):
            return f"{name}:{i}"
        j = i if node.op == "IdentityN" else 0
        if j >= len(node.inputs):
            return f"{name}:{i}"
        name, i = parse_ref(node.inputs[j])
        seen += 1


def _topological(by: dict, roots: list[str]) -> list[str]:
    """Names of the nodes ``roots`` depend on, inputs first (iterative post-order DFS)."""
    order: list[str] = []
    state: dict[str, int] = {}

    def deps(name):
        node = by.get(name)
        return iter([parse_ref(r)[0] for r in node.inputs] if node is not None else [])

    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, deps(root))]
        while stack:
            name, it = stack[-1]
            for d in it:
                if d not in state:
                    state[d] = 1
                    stack.append((d, deps(d)))
                    break
            else:
                stack.pop()
                order.append(name)
    return order


def _pure(op_type: str) -> bool:
    d = registry.get_opdef(op_type)
    return d is not None and not d.stateful


def _hoistable(g: Graph, fetches: list[str], invariant_inputs: set[str]) -> list[str]:
    """Refs computed from ``invariant_inputs`` (and constants) only that ``fetches`` need, at
    the boundary where loop-variant computation starts reading them."""
    by = g.by_name()
    # status: 0 constant, 1 invariant, 2 variant; computed in topological order
    status: dict[str, int] = {}
    computes: dict[str, bool] = {}  # whether an invariant node does real work (not an alias)
    order = _topological(by, [parse_ref(r)[0] for r in fetches])
    for name in order:
        node = by.get(name)
        if node is None:
            status[name] = 2
            continue
        if node.op == "Const":
            status[name], computes[name] = 0, False
            continue
        if node.op in ("Placeholder", "PlaceholderWithDefault") and not node.inputs:
            status[name] = 1 if f"{name}:0" in invariant_inputs else 2
            computes[name] = False
            continue
        ins = [status.get(parse_ref(r)[0], 2) for r in node.inputs]
        if node.op in _ALIASES:
            status[name] = max(ins, default=0)
            computes[name] = any(computes.get(parse_ref(r)[0], False) for r in node.inputs)
        elif ins and max(ins) <= 1 and _pure(node.op):
            status[name] = max(ins)
            computes[name] = max(ins) == 1
        else:
            status[name] = 2
    hoisted: list[str] = []
    seen_refs: set[str] = set()

    def consider(r: str) -> None:
        r = canonical_ref(r)
        n = parse_ref(r)[0]
        if status.get(n) == 1 and computes.get(n) and r not in seen_refs:
            seen_refs.add(r)
            hoisted.append(r)

    for name in order:
        node = by.get(name)
        if node is not None and status[name] == 2:
            for r in node.inputs:
                consider(r)
    for r in fetches:
        consider(r)
    return hoisted


class _Loop:
    """One While node: its cond, body and invariant prologue, compiled once."""

    def __init__(self, ctx, cond: FuncAttr, body: FuncAttr):
        cg, bg = ctx.function(cond), ctx.function(body)
        n = len(bg.inputs)
        if len(cg.inputs) != n or len(bg.outputs) != n:
            raise ValueError(f"While: cond takes {len(cg.inputs)} and body {n} inputs, body "
                             f"returns {len(bg.outputs)} values; all must be equal")
        if len(cg.outputs) != 1:
            raise ValueError(f"While: cond must return one value, returns {len(cg.outputs)}")
        by = bg.by_name()
        b_in = [canonical_ref(s.ref) for s in bg.inputs]
        b_out = [s.ref for s in bg.outputs]
        fixed = [i for i in range(n) if _resolve(by, b_out[i]) == b_in[i]]
        moving = [i for i in range(n) if _resolve(by, b_out[i]) != b_in[i]]
        #: state tuples are kept in this order: loop-variant values first, invariants last
        self.perm = moving + fixed
        self.identity_perm = self.perm == list(range(n))
        self.inverse = [self.perm.index(i) for i in range(n)]
        self.k = len(moving)
        fetches = [b_out[i] for i in moving]
        hoisted = _hoistable(bg, fetches, {b_in[i] for i in fixed})
        c_in = [canonical_ref(s.ref) for s in cg.inputs]
        self.cond = _compile(ctx, cg, [cg.outputs[0].ref], [c_in[i] for i in self.perm])
        self.body = _compile(ctx, bg, fetches, [b_in[i] for i in self.perm] + hoisted)
        self.prologue = (_compile(ctx, bg, hoisted, [b_in[i] for i in fixed])
                         if hoisted else None)

    def __call__(self, *args):
        perm = self.perm
        vals = args if self.identity_perm else tuple(args[i] for i in perm)
        cond, body, k = self.cond, self.body, self.k
        c = cond(vals)[0]
        if not (c if c.ndim == 0 else c.size):
            return args
        if any(type(v) is TensorList for v in vals[:k]):
            # a list the loop updates gets a store of its own: the caller still holds the
            # initial version, which would otherwise keep every superseded element alive
            vals = tuple(v.copy() if type(v) is TensorList else v for v in vals[:k]) + vals[k:]
        extra = self.prologue(vals[k:]) if self.prologue is not None else ()
        if not extra and k == len(vals):
            while True:
                vals = body(vals)
                c = cond(vals)[0]
                if not (c if c.ndim == 0 else c.size):
                    break
        else:
            while True:
                vals = body(vals + extra) + vals[k:]
                c = cond(vals)[0]
                if not (c if c.ndim == 0 else c.size):
                    break
        if self.identity_perm:
            return vals
        return tuple(vals[j] for j in self.inverse)


@op("While", needs_context=True, stateful=True)
@op("StatelessWhile", needs_context=True)
def While(*, _ctx, cond: FuncAttr, body: FuncAttr):
    """While / StatelessWhile: run ``body`` on the loop variables while ``cond`` holds.

    parallel_iterations and shape invariants do not matter to a sequential evaluator and are
    ignored (TF has checked the shapes when tracing).
    """
    return _Loop(_ctx, cond, body)


@op("If", needs_context=True, stateful=True)
@op("StatelessIf", needs_context=True)
def If(*, _ctx, then_branch: FuncAttr, else_branch: FuncAttr):
    """If / StatelessIf: ``then_branch(*input)`` if ``cond`` is true, else ``else_branch``.

    ``cond`` follows TF's ToBool: a scalar's value, or non-emptiness for other shapes.
    """
    then_run = _ctx.compile_function(then_branch).run
    else_run = _ctx.compile_function(else_branch).run

    def run(cond, *inputs):
        return (then_run if _truth(cond) else else_run)(inputs)

    return run


@op("Case", needs_context=True, stateful=True)
@op("StatelessCase", needs_context=True)
def Case(*, _ctx, branches: list):
    """Case / StatelessCase: ``branches[branch_index](*input)``; an index out of range runs
    the last branch, as TF does."""
    runs = [_ctx.compile_function(b).run for b in branches]
    if not runs:
        raise ValueError("Case needs at least one branch")
    last = len(runs) - 1

    def run(branch_index, *inputs):
        i = int(branch_index)
        return runs[i if 0 <= i < last else last](inputs)

    return run


@op("StatefulPartitionedCall", needs_context=True, stateful=True)
@op("PartitionedCall", needs_context=True)
def PartitionedCall(*, _ctx, f: FuncAttr):
    """PartitionedCall / StatefulPartitionedCall: the function ``f`` applied to the inputs.

    The converter inlines these where it can; this kernel runs the ones left.
    """
    fn = _ctx.compile_function(f).run

    def run(*args):
        return fn(args)

    return run


@op("For", needs_context=True, stateful=True)
def For(*, _ctx, body: FuncAttr):
    """For: ``state = body(i, *state)`` for i in range(start, limit, delta)."""
    fn = _ctx.compile_function(body).run

    def run(start, limit, delta, *state):
        s, e, d = int(start), int(limit), int(delta)
        if d == 0 or (d > 0 and s > e) or (d < 0 and s < e):
            raise ValueError(f"For: invalid start/limit/delta: {s} {e} {d}")
        dt = start.dtype
        for i in range(s, e, d):
            state = fn((np.asarray(i, dtype=dt),) + tuple(state))
        return tuple(state)

    return run
