"""While loops compiled: invariants, counters and constant invariants found, bodies compiled.

A While node's cond and body are function graphs. Building its executor
(``runtime.control.Loop``) here:

- loop variables the body returns unchanged are *invariant*; those whose values are load-time
  constants (an RNN's weights) are compiled into the cond and body as constants, so what
  depends on them alone is folded and the steps reading them specialize and fuse;
- the body's work on invariants alone is hoisted into a prologue (``passes/licm.py``);
- scalar integer variables the body steps by a constant are *counters*; when the condition is
  an elementwise function of counters and scalar invariants (every Keras RNN, ``tf.range``
  loops, ``maximum_iterations``) the loop is *counted*: its condition is evaluated on vectors
  of counter values, a chunk of iterations at a time, and its body runs inlined in a loop
  over each chunk (``compiler/loopgen.py``).
"""

from __future__ import annotations

import numpy as np

from tfdeploy.compiler import loopgen
from tfdeploy.compiler.passes.licm import hoistable
from tfdeploy.errors import GraphError
from tfdeploy.ir.graph import ALIAS_OPS, FuncAttr, Graph, Node, canonical_ref, parse_ref
from tfdeploy.ir.traverse import input_deps, topological
from tfdeploy.runtime.control import Loop, PartialLoop

#: ops a counted loop's condition may use: elementwise, so evaluating it on vectors of counter
#: values gives the condition of every one of those iterations at once
ELEMENTWISE = ALIAS_OPS | frozenset({
    "Less", "LessEqual", "Greater", "GreaterEqual", "Equal", "NotEqual", "LogicalAnd",
    "LogicalOr", "LogicalNot", "AddV2", "Add", "Sub", "Mul", "Minimum", "Maximum", "Cast"})


def _resolve(by: dict, ref: str) -> str:
    """``ref`` with identity nodes looked through, canonical (``node:i``)."""
    name, i = parse_ref(ref)
    seen = 0
    while True:
        node = by.get(name)
        if node is None or node.op not in ALIAS_OPS or seen > len(by):
            return f"{name}:{i}"
        j = i if node.op == "IdentityN" else 0
        if j >= len(node.inputs):
            return f"{name}:{i}"
        name, i = parse_ref(node.inputs[j])
        seen += 1


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
    for name in topological([parse_ref(g.outputs[0].ref)[0]], input_deps(by)):
        node = by.get(name)
        if name in inputs:
            used.add(inputs[name])
        elif node is None or (node.op != "Const" and node.op not in ELEMENTWISE):
            return None
    return used


def _with_constants(g: Graph, values: dict[int, np.ndarray]) -> Graph:
    """``g`` with its inputs at the positions of ``values`` turned into constants."""
    names = {parse_ref(g.inputs[i].ref)[0]: v for i, v in values.items()}
    nodes = [Node(n.name, "Const", [], {"value": names[n.name], "dtype": n.attrs.get("dtype")})
             if n.name in names else n for n in g.nodes]
    return Graph(nodes=nodes, inputs=g.inputs, outputs=g.outputs)


def _check(cg: Graph, bg: Graph) -> int:
    n = len(bg.inputs)
    if len(cg.inputs) != n or len(bg.outputs) != n:
        raise GraphError(f"While: cond takes {len(cg.inputs)} and body {n} inputs, body "
                         f"returns {len(bg.outputs)} values; all must be equal")
    if len(cg.outputs) != 1:
        raise GraphError(f"While: cond must return one value, returns {len(cg.outputs)}")
    return n


def build(ctx, cond: FuncAttr, body: FuncAttr, consts: list | None = None):
    """The executor of a While node: a Loop, or (``consts`` given: each loop variable's value
    if it is a load-time constant, else None) a PartialLoop called with the others, or None
    when no invariant is constant."""
    cg, bg = ctx.function(cond), ctx.function(body)
    n = _check(cg, bg)
    by = bg.by_name()
    b_in = [canonical_ref(s.ref) for s in bg.inputs]
    b_out = [s.ref for s in bg.outputs]
    fixed = [i for i in range(n) if _resolve(by, b_out[i]) == b_in[i]]
    const_fixed = [i for i in fixed if consts is not None and
                   isinstance(consts[i], np.ndarray) and consts[i].dtype != object]
    if consts is not None and not const_fixed:
        return None
    if const_fixed:
        bg = _with_constants(bg, {i: consts[i] for i in const_fixed})
        cg = _with_constants(cg, {i: consts[i] for i in const_fixed})
        by = bg.by_name()
        fixed = [i for i in fixed if i not in const_fixed]
    counters = {i: c for i in range(n) if i not in fixed and i not in const_fixed
                and (c := _counter(by, b_in[i], b_out[i])) is not None}
    moving = [i for i in range(n) if i not in fixed and i not in counters and
              i not in const_fixed]
    perm = moving + list(counters) + fixed
    fetches = [b_out[i] for i in moving]
    hoisted = hoistable(bg, fetches, {b_in[i] for i in fixed})
    c_in = [canonical_ref(s.ref) for s in cg.inputs]
    used = _elementwise_inputs(cg) if counters else None
    cond_invariants = None
    if used is not None and not any(i in moving for i in used) and \
            any(i in counters for i in used):
        cond_invariants = [perm.index(i) for i in used if i in fixed]
    kq = len(moving) + len(counters)
    body_plan = ctx.compile_graph(bg, fetches, [b_in[i] for i in perm] + hoisted,
                                  invariants=range(kq, n - len(const_fixed) + len(hoisted)))
    chunk = None
    if cond_invariants is not None and ctx.optimize:
        chunk = loopgen.generate(body_plan, len(moving), len(counters))
    cond_plan = ctx.compile_graph(cg, [cg.outputs[0].ref], [c_in[i] for i in perm])
    hoisted_plan = ctx.compile_graph(bg, hoisted, [b_in[i] for i in fixed]) if hoisted else None
    loop = Loop(
        perm=perm, inverse=[(perm + const_fixed).index(i) for i in range(n)], k=len(moving),
        counters=[(step, ctx.bind(node.op, node.attrs), first,
                   node.op == "Sub") for node, step, first in counters.values()],
        cond=cond_plan.run, body=body_plan.run,
        prologue=hoisted_plan.run if hoisted_plan is not None else None,
        cond_invariants=cond_invariants, const_vals=tuple(consts[i] for i in const_fixed),
        chunk=chunk, body_prologue=_body_prologue(body_plan, kq),
        plans=[("condition", cond_plan)] +
              ([("once per loop, its invariant work", hoisted_plan)] if hoisted_plan else []) +
              [("body", body_plan)])
    return PartialLoop(loop, consts) if consts is not None else loop


def _body_prologue(plan, kq: int):
    """(run, positions): the body plan's own prologue (``passes/licm.py``) and the positions
    of its feeds among the body's invariant feeds (those after the ``kq`` moving values and
    counters), or None."""
    if plan.prologue is None:
        return None
    feeds = list(plan.feed_values)
    return plan.prologue.run, tuple(feeds.index(v) - kq for v in plan.prologue.feed_values)
