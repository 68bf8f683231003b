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
from ..graph import FuncAttr, Graph, Node, canonical_ref, parse_ref
from ..registry import op, specializer
from .lists import TensorList

_ALIASES = frozenset({"Identity", "IdentityN", "StopGradient", "Snapshot", "PreventGradient"})


def _truth(c) -> bool:
    """TF's ToBool of a predicate tensor: a scalar's value, else non-emptiness."""
    if c.ndim == 0:
        return bool(c)
    return c.size > 0


def _compile(ctx, g: Graph, fetches: list[str], feeds: list[str]):
    from ..plan import compile_plan

    return compile_plan(g, fetches, feeds, root=ctx.root, nested=True).run


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


#: ops a counted loop's condition may use: elementwise, so evaluating it on vectors of counter
#: values gives the condition of every one of those iterations at once
_ELEMENTWISE = _ALIASES | frozenset({
    "Less", "LessEqual", "Greater", "GreaterEqual", "Equal", "NotEqual", "LogicalAnd",
    "LogicalOr", "LogicalNot", "AddV2", "Add", "Sub", "Mul", "Minimum", "Maximum", "Cast"})
#: most iterations whose condition one evaluation decides
_MAX_CHUNK = 1024


def _counter(by: dict, var: str, out: str):
    """``(update node, step, var_first)`` if the body's next value of loop variable ``var`` is
    ``var + step`` or ``var - step`` for a scalar integer constant ``step``; else None."""
    name, i = parse_ref(_resolve(by, out))
    node = by.get(name)
    if i != 0 or node is None or node.op not in ("AddV2", "Add", "Sub") or \
            len(node.inputs) != 2:
        return None
    a, b = (_resolve(by, r) for r in node.inputs)
    if a == var:
        other, first = b, True
    elif b == var and node.op != "Sub":
        other, first = a, False
    else:
        return None
    const = by.get(parse_ref(other)[0])
    step = const.attrs.get("value") if const is not None and const.op == "Const" else None
    if not isinstance(step, np.ndarray) or step.ndim or step.dtype.kind not in "iu":
        return None
    return node, step, first


def _elementwise_inputs(g: Graph) -> set[int] | None:
    """Indices of the inputs ``g``'s first output depends on, if it is computed from them and
    constants by elementwise ops only; else None."""
    by = g.by_name()
    inputs = {parse_ref(s.ref)[0]: i for i, s in enumerate(g.inputs)}
    used: set[int] = set()
    for name in _topological(by, [parse_ref(g.outputs[0].ref)[0]]):
        node = by.get(name)
        if name in inputs:
            used.add(inputs[name])
        elif node is None or (node.op != "Const" and node.op not in _ELEMENTWISE):
            return None
    return used


class _Loop:
    """One While node: its cond, body and invariant prologue, compiled once.

    Loop variables are kept in state tuples ordered: loop-variant values, then *counters*, then
    invariants. A counter is a scalar integer the body steps by a constant (``i + 1``). When the
    condition is an elementwise function of counters and scalar invariants only (as in every
    Keras RNN, ``tf.range`` loop and ``maximum_iterations``), the loop is *counted*: the
    condition is evaluated once for a whole chunk of iterations, on vectors of the counters'
    values, and the body is fed each iteration's counters without computing them; this saves
    the condition plan and the counter updates, several kernel calls per iteration.
    """

    def __init__(self, ctx, cond: FuncAttr, body: FuncAttr, consts: list | None = None):
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
        #: invariants known at load time (``consts``, see _while_constants) are compiled into
        #: the cond and body as constants, and kept out of the state
        const_fixed = [i for i in fixed if consts is not None and
                       isinstance(consts[i], np.ndarray) and consts[i].dtype != object]
        if const_fixed:
            bg = _with_constants(bg, {i: consts[i] for i in const_fixed})
            cg = _with_constants(cg, {i: consts[i] for i in const_fixed})
            by = bg.by_name()
            fixed = [i for i in fixed if i not in const_fixed]
        self.const_vals = tuple(consts[i] for i in const_fixed)
        counters = {i: c for i in range(n) if i not in fixed and i not in const_fixed
                    and (c := _counter(by, b_in[i], b_out[i])) is not None}
        moving = [i for i in range(n)
                  if i not in fixed and i not in counters and i not in const_fixed]
        self.perm = moving + list(counters) + fixed
        self.identity_perm = self.perm == list(range(n))
        self.inverse = [(self.perm + const_fixed).index(i) for i in range(n)]
        self.k = len(moving)
        self.nq = len(counters)
        #: per counter: its step and the kernel of its update node, bound
        self.steps = [(step, registry.bind(registry.get_opdef(node.op), node.attrs), first,
                       node.op == "Sub") for node, step, first in counters.values()]
        fetches = [b_out[i] for i in moving]
        hoisted = _hoistable(bg, fetches, {b_in[i] for i in fixed})
        c_in = [canonical_ref(s.ref) for s in cg.inputs]
        self.cond = _compile(ctx, cg, [cg.outputs[0].ref], [c_in[i] for i in self.perm])
        self.body = _compile(ctx, bg, fetches, [b_in[i] for i in self.perm] + hoisted)
        self.prologue = (_compile(ctx, bg, hoisted, [b_in[i] for i in fixed])
                         if hoisted else None)
        used = _elementwise_inputs(cg) if counters else None
        #: positions (in state order) of the invariants the condition reads, when it can be
        #: evaluated on counter vectors; None when the loop is not counted
        self.cond_invariants = None
        if used is not None and not any(i in moving for i in used) and \
                any(i in counters for i in used):
            self.cond_invariants = [self.perm.index(i) for i in used if i in fixed]

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
        kq = k + self.nq
        extra = self.prologue(vals[kq:]) if self.prologue is not None else ()
        if self.nq:
            # the state goes in a box the loop empties: a reference kept here to the first
            # version of a list would keep every element the loop overwrites alive
            box = [vals]
            del vals
            vals = self._counted(box, extra) if self.cond_invariants is not None else None
            if vals is None:
                vals = self._stepped(box, extra)
        elif not extra and k == len(vals):
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
        vals += self.const_vals
        return tuple(vals[j] for j in self.inverse)

    def _stepped(self, box: list, extra: tuple) -> tuple:
        """The loop run one iteration at a time, counters updated by their own kernels."""
        cond, body, k, kq = self.cond, self.body, self.k, self.k + self.nq
        vals = box.pop()
        steps = self.steps
        while True:
            q = tuple(kernel(v, step) if first else kernel(step, v)
                      for v, (step, kernel, first, _) in zip(vals[k:kq], steps))
            vals = body(vals + extra) + q + vals[kq:]
            c = cond(vals)[0]
            if not (c if c.ndim == 0 else c.size):
                return vals

    def _counted(self, box: list, extra: tuple) -> tuple | None:
        """The loop run with its condition decided a chunk of iterations at a time, or None
        (``box`` untouched) if the values do not allow it: counters that are not integer
        scalars of their step's dtype, invariants of the condition that are not scalars."""
        k, kq = self.k, self.k + self.nq
        vals = box[0]
        q0 = vals[k:kq]
        for v, (step, *_) in zip(q0, self.steps):
            if type(v) is not np.ndarray or v.ndim or v.dtype != step.dtype:
                return None
        for j in self.cond_invariants:
            v = vals[j]
            if type(v) is not np.ndarray or v.ndim:
                return None
        cond, body = self.cond, self.body
        m, rest = vals[:k], vals[kq:]
        tail = rest + extra
        t, size = 0, 16
        while True:
            # counters of iterations t .. t + size - 1, wrapping as repeated integer adds do
            idx = np.arange(t, t + size)
            vecs = []
            for v, (step, _, _, sub) in zip(q0, self.steps):
                d = np.multiply(idx.astype(v.dtype), step)
                vecs.append(np.subtract(v, d) if sub else np.add(v, d))
            if t:
                c = cond(m + tuple(vecs) + rest)[0]
            else:
                try:
                    c = cond(m + tuple(vecs) + rest)[0]
                except Exception:  # noqa: BLE001  (not vectorisable after all: step instead)
                    return None
                if c.shape != (size,) or c.dtype != np.bool_:
                    return None
                del vals, box[0]  # from here on the loop owns the state (see __call__)
            stop = np.flatnonzero(~c)
            n = int(stop[0]) if stop.size else size
            if self.nq == 1:
                qs = [(vecs[0][j, ...],) for j in range(n)]
            else:
                qs = list(zip(*[[v[j, ...] for j in range(n)] for v in vecs]))
            for q in qs:
                m = body(m + q + tail)
            if n < size:
                return m + tuple(v[n, ...].copy() for v in vecs) + rest
            t += size
            size = min(2 * size, _MAX_CHUNK)


@op("While", needs_context=True, stateful=True)
@op("StatelessWhile", needs_context=True)
def While(*, _ctx, cond: FuncAttr, body: FuncAttr):
    """While / StatelessWhile: run ``body`` on the loop variables while ``cond`` holds.

    parallel_iterations and shape invariants do not matter to a sequential evaluator and are
    ignored (TF has checked the shapes when tracing).
    """
    return _Loop(_ctx, cond, body)


def _with_constants(g: Graph, values: dict[int, np.ndarray]) -> Graph:
    """``g`` with its inputs at the positions of ``values`` turned into constants."""
    names = {parse_ref(g.inputs[i].ref)[0]: v for i, v in values.items()}
    nodes = [Node(n.name, "Const", [], {"value": names[n.name], "dtype": n.attrs.get("dtype")})
             if n.name in names else n for n in g.nodes]
    return Graph(nodes=nodes, inputs=g.inputs, outputs=g.outputs)


@specializer("While", "StatelessWhile")
def _while_constants(consts, *, cond: FuncAttr, body: FuncAttr, _ctx=None):
    """While with loop invariants that are load-time constants (an RNN's weights and biases):
    the cond and body are compiled with them as constants, so what depends on them alone is
    folded and the kernels reading them specialize and fuse (a MatMul by constant weights, a
    BiasAdd...). Needs the plan's context as ``_ctx``; without it, or when no invariant is
    constant, the generic kernel runs."""
    if _ctx is None or all(c is None for c in consts):
        return None
    loop = _Loop(_ctx, cond, body, consts)
    if not loop.const_vals:
        return None
    template = list(consts)
    fed = [i for i, c in enumerate(consts) if c is None]

    def While(*args):
        full = template.copy()
        for i, a in zip(fed, args):
            full[i] = a
        return loop(*full)

    return While


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
