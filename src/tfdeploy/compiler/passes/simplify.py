"""simplify: steps that only move data around, where the shapes say they change nothing.

- a ``Transpose`` by the identity permutation, a ``Reshape`` to the shape its input already
  has, an ``ExpandDims``/``Squeeze`` that is such a reshape of a static shape: aliases;
- a ``Reshape`` of a ``Reshape`` (nothing else reading the inner one): one ``Reshape``;
- the ``Tensordot`` of a Keras Dense layer on a 3-D or higher input, ``Reshape(x, [M, K])``,
  ``MatMul`` by a constant ``[K, N]`` weight, ``Reshape`` to ``x.shape[:-1] + [N]``: one
  ``BatchMatMulV2`` of ``x`` by the weight (numpy's matmul takes the leading dims as a batch),
  which ``fuse_conv`` then fuses with its bias and activation;
- Keras 3 Embedding's lookup, ``GatherV2(table, SelectV2(Less(i, 0), AddV2(i, n), i), 0)``
  with n the table's length: one ``_WrappedGather(i)`` (``np.take`` wraps a negative index).

Except the last, these need the shapes ``specialize`` records, so they rewrite specialized
plans only.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.compiler.patterns import Dataflow, builtin, fused_step, rename, replace
from tfdeploy.compiler.plan import Plan, Step

_NOOP = ("Transpose", "Reshape", "ExpandDims", "Squeeze")


def _is_noop(st: Step, flow: Dataflow) -> bool:
    if st.op not in _NOOP or not builtin(st) or len(st.outs) != 1:
        return False
    x, y = st.ins[0], st.outs[0][1]
    xs, ys = flow.shape(x), flow.shape(y)
    if xs is None or ys is None or xs != ys:
        return False
    if st.op == "Transpose":
        perm = flow.const(st.ins[1]) if len(st.ins) == 2 else None
        return perm is not None and list(perm.reshape(-1)) == list(range(len(xs)))
    return True  # a reshape (or expand/squeeze) to the same shape moves nothing


def _tensordot(st: Step, flow: Dataflow, plan: Plan):
    """``(x, weight, out)`` when ``st`` is the last Reshape of a Tensordot over the last axis of
    ``x`` by a constant weight (see the module docstring), else None."""
    if st.op != "Reshape" or not builtin(st):
        return None
    mm = flow.step(st.ins[0], "MatMul")
    if mm is None or flow.only_reader(mm.outs[0][1]) is not st or \
            mm.attrs.get("transpose_a") or len(mm.ins) != 2:
        return None
    w = flow.const(mm.ins[1])
    inner = flow.step(mm.ins[0], "Reshape")
    if w is None or w.ndim != 2 or inner is None or \
            flow.only_reader(inner.outs[0][1]) is not mm:
        return None
    if mm.attrs.get("transpose_b"):
        w = np.ascontiguousarray(w.T)
    x = inner.ins[0]
    xs, out = flow.shape(x), flow.shape(st.outs[0][1])
    if xs is None or out is None or len(xs) < 3 or xs[-1] != w.shape[0] or \
            tuple(out) != tuple(xs[:-1]) + (w.shape[1],):
        return None
    return x, w, (inner, mm, st)


def _wrapped_gathers(plan: Plan) -> None:
    """Keras 3 Embedding's negative-index fix-up and its gather as one ``_WrappedGather``."""
    flow = Dataflow(plan)
    for st in list(plan.steps):
        if st.op != "GatherV2" or not builtin(st) or len(st.ins) != 3 or \
                st.attrs.get("batch_dims", 0) != 0:
            continue
        table, axis = flow.const(st.ins[0]), flow.const(st.ins[2])
        sel = flow.step(st.ins[1], "SelectV2")
        if table is None or table.ndim < 1 or table.dtype.kind == "O" or axis is None or \
                axis.ndim or int(axis) not in (0, -table.ndim) or sel is None or \
                flow.only_reader(st.ins[1]) is not st:
            continue
        cond, shifted, i = sel.ins
        less, add = flow.step(cond, "Less"), flow.step(shifted, "AddV2")
        if less is None or add is None or less.ins[0] != i or \
                flow.only_reader(cond) is not sel or flow.only_reader(shifted) is not sel:
            continue
        zero, n = flow.const(less.ins[1]), None
        if add.ins[0] == i:
            n = flow.const(add.ins[1])
        elif add.ins[1] == i:
            n = flow.const(add.ins[0])
        if zero is None or n is None or zero.ndim or n.ndim or zero.dtype.kind != "i" or \
                n.dtype.kind != "i" or int(zero) != 0 or int(n) != table.shape[0]:
            continue
        members = [less, add, sel, st]
        replace(plan, members, fused_step("_WrappedGather", members, (i,), st.outs[0][1],
                                          {"params": table}))


def run(plan: Plan, ctx=None) -> Plan:
    _wrapped_gathers(plan)
    if not plan.shapes:
        return plan
    flow = Dataflow(plan)
    alias: dict[int, int] = {}
    steps = []
    for st in plan.steps:
        if _is_noop(st, flow) and st.outs[0][1] not in flow.pinned:
            alias[st.outs[0][1]] = st.ins[0]
            continue
        td = _tensordot(st, flow, plan)
        if td is not None:
            x, w, (inner, mm, last) = td
            wv = plan.new_value()
            w.setflags(write=False)
            plan.constants[wv] = w
            steps = [s for s in steps if s is not inner and s is not mm]
            steps.append(Step("BatchMatMulV2", mm.name, (x, wv), last.outs,
                              {"T": mm.attrs.get("T", "float32"), "adj_x": False,
                               "adj_y": False}))
            continue
        steps.append(st)
    plan.steps = steps
    rename(plan, alias)
    return _merge_reshapes(plan)


def _merge_reshapes(plan: Plan) -> Plan:
    """Reshape(Reshape(x, a), b) -> Reshape(x, b) where nothing else reads the inner one."""
    flow = Dataflow(plan)
    drop = set()
    for st in plan.steps:
        if st.op != "Reshape" or not builtin(st):
            continue
        inner = flow.step(st.ins[0], "Reshape")
        if inner is not None and flow.only_reader(inner.outs[0][1]) is st:
            st.ins = (inner.ins[0],) + st.ins[1:]
            drop.add(id(inner))
    plan.steps = [st for st in plan.steps if id(st) not in drop]
    return plan
