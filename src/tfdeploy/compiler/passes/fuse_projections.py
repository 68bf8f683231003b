"""fuse_projections: several products of one input by constant weights as one product.

Attention's query, key and value projections (and a gated MLP's two up-projections) multiply
the same input by different constant ``[K, N_i]`` weights. On a transformer's small tensors
each product costs mostly its call, so this pass makes them one ``BatchMatMulV2`` by the
concatenated ``[K, sum N_i]`` weight (plus the concatenated bias, when each product is
followed by one), then a ``SplitV`` into the column blocks the old steps computed (views, no
copy). ``fuse_conv`` then fuses the product with its bias.

A bias added after a reshape that only splits the last axis (Keras' ``EinsumDense`` of the
attention projections: ``Reshape(x @ W, [..., heads, width]) + b[heads, width]``) is first
moved before the reshape, where it is a plain per-column bias.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.compiler.patterns import Dataflow, builtin
from tfdeploy.compiler.plan import Plan, Step
from tfdeploy.dtypes import from_numpy

_MATMULS = ("MatMul", "BatchMatMulV2", "BatchMatMul")
_ADDS = ("AddV2", "Add", "BiasAdd")


def _weight(st: Step, flow: Dataflow) -> np.ndarray | None:
    """The ``[K, N]`` constant weight ``st`` multiplies its first input by, or None."""
    if st.op not in _MATMULS or len(st.ins) != 2 or len(st.outs) != 1 or not builtin(st):
        return None
    a = st.attrs
    if a.get("transpose_a") or a.get("adj_x"):
        return None
    w = flow.const(st.ins[1])
    if w is None or w.ndim != 2 or w.dtype.kind != "f":
        return None
    return w.T if a.get("transpose_b") or a.get("adj_y") else w


def _bias(flow: Dataflow, y: int, n: int, dtype) -> tuple[Step, np.ndarray] | None:
    """(the step, the vector) when ``y``'s only reader adds a constant per-column vector."""
    st = flow.only_reader(y)
    if st is None or st.op not in _ADDS or len(st.ins) != 2 or not builtin(st):
        return None
    if st.op == "BiasAdd" and st.attrs.get("data_format", "NHWC") != "NHWC":
        return None
    other = st.ins[1] if st.ins[0] == y else st.ins[0]
    if st.op == "BiasAdd" and st.ins[0] != y:
        return None
    c = flow.const(other)
    if c is None or c.dtype != dtype or c.shape[-1:] != (n,) or c.size != n:
        return None
    return st, c.reshape(n)


def _bias_before_reshape(plan: Plan) -> None:
    """``Reshape(y, [..., h, w]) + b[h, w]`` as ``Reshape(y + b.reshape(h * w))`` when the
    reshape only splits ``y``'s last axis (so the bias stays per column)."""
    flow = Dataflow(plan)
    for st in list(plan.steps):
        if st.op != "Reshape" or not builtin(st) or len(st.outs) != 1:
            continue
        r = st.outs[0][1]
        add = flow.only_reader(r)
        ys, rs = flow.shape(st.ins[0]), flow.shape(r)
        if add is None or add.op not in ("AddV2", "Add") or not builtin(add) or \
                ys is None or rs is None or len(rs) < len(ys) or \
                tuple(rs[:len(ys) - 1]) != tuple(ys[:-1]):
            continue
        other = add.ins[1] if add.ins[0] == r else add.ins[0]
        c = flow.const(other)
        tail = tuple(rs[len(ys) - 1:])
        if c is None or add.ins.count(r) != 1 or c.shape != tail or \
                int(np.prod(tail)) != ys[-1] or flow.shape(add.outs[0][1]) != tuple(rs):
            continue
        v = plan.new_value()
        plan.constants[v] = np.ascontiguousarray(c.reshape(ys[-1]))
        plan.shapes[v] = (ys[-1],)
        moved = plan.new_value()
        plan.shapes[moved] = tuple(ys)
        k = plan.steps.index(st)
        plan.steps[k] = Step(add.op, add.name, (st.ins[0], v), ((0, moved),), dict(add.attrs))
        plan.steps.insert(k + 1, Step("Reshape", st.name, (moved,) + st.ins[1:],
                                      add.outs, dict(st.attrs)))
        plan.steps.remove(add)
        flow = Dataflow(plan)


def _group(plan: Plan, flow: Dataflow, x: int) -> list[tuple[Step, np.ndarray]] | None:
    """The products of ``x`` by constant weights of one dtype and depth (two or more)."""
    found = [(st, w) for st in flow.readers.get(x, ())
             if st.ins and st.ins[0] == x and (w := _weight(st, flow)) is not None]
    if len(found) < 2:
        return None
    k, dt = found[0][1].shape[0], found[0][1].dtype
    found = [(st, w) for st, w in found if w.shape[0] == k and w.dtype == dt]
    return found if len(found) >= 2 else None


def _fuse(plan: Plan, flow: Dataflow, x: int, group) -> None:
    dt = group[0][1].dtype
    biases = [_bias(flow, st.outs[0][1], w.shape[1], dt) for st, w in group]
    if not all(b is not None for b in biases):
        biases = [None] * len(group)
    weight = np.concatenate([w for _, w in group], axis=1)
    weight.setflags(write=False)
    sizes = [w.shape[1] for _, w in group]
    wv, sv, av = plan.new_value(), plan.new_value(), plan.new_value()
    plan.constants[wv] = weight
    plan.constants[sv] = np.array(sizes, np.int32)
    plan.constants[av] = np.array(-1, np.int32)
    first = min(plan.steps.index(st) for st, _ in group)
    name, t = group[0][0].name, from_numpy(dt)
    y = plan.new_value()
    new = [Step("BatchMatMulV2", name, (x, wv), ((0, y),), {"T": t})]
    if biases[0] is not None:
        bv, yb = plan.new_value(), plan.new_value()
        bias = np.concatenate([b for _, b in biases])
        bias.setflags(write=False)
        plan.constants[bv] = bias
        new.append(Step("BiasAdd", name, (y, bv), ((0, yb),), {"T": t}))
        y = yb
    outs = tuple((i, (b[0] if b is not None else st).outs[0][1])
                 for i, ((st, _), b) in enumerate(zip(group, biases)))
    new.append(Step("SplitV", name, (y, sv, av), outs, {"num_split": len(group), "T": t}))
    xs = flow.shape(x)
    if xs is not None:
        for step in new[:-1]:
            plan.shapes[step.outs[0][1]] = tuple(xs[:-1]) + (weight.shape[1],)
    drop = {id(st) for st, _ in group} | {id(b[0]) for b in biases if b is not None}
    steps = [s for s in plan.steps[:first] if id(s) not in drop] + new + \
        [s for s in plan.steps[first:] if id(s) not in drop]
    plan.steps = steps


def run(plan: Plan, ctx=None) -> Plan:
    if not plan.shapes:
        return plan
    _bias_before_reshape(plan)
    flow = Dataflow(plan)
    for x in list(flow.readers):
        group = _group(plan, flow, x)
        if group is not None:
            _fuse(plan, flow, x, group)
            flow = Dataflow(plan)
    return plan
