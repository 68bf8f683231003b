"""simplify: steps that only move data around, where the shapes say they change nothing.

- a ``Transpose`` by the identity permutation, a ``Reshape`` to the shape its input already
  has, an ``ExpandDims``/``Squeeze`` that is such a reshape of a static shape: aliases;
- a ``Reshape`` of a ``Reshape`` (nothing else reading the inner one): one ``Reshape``;
- the ``Tensordot`` of a Keras Dense layer on a 3-D or higher input, ``Reshape(x, [M, K])``,
  ``MatMul`` by a constant ``[K, N]`` weight, ``Reshape`` to ``x.shape[:-1] + [N]``: one
  ``BatchMatMulV2`` of ``x`` by the weight (numpy's matmul takes the leading dims as a batch),
  which ``fuse_conv`` then fuses with its bias and activation;
- an ``Einsum`` of x by a constant weight contracting x's trailing axes with the weight's
  leading ones (tf_keras' ``EinsumDense``, its MultiHeadAttention's projections:
  ``abc,cde->abde``, ``abcd,cde->abe``): a ``BatchMatMulV2`` by the weight as [K, N],
  between Reshapes where several axes are contracted or produced, which ``fuse_projections``
  and ``fuse_conv`` then take as they take Keras 3's;
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


def _einsum_dense(st: Step, flow: Dataflow) -> tuple[int, np.ndarray, tuple] | None:
    """(x, weight [K, N], (shape of x as [..., K] or None, shape of the product or None))
    when ``st`` is an ``Einsum`` of ``x`` by a constant weight contracting x's trailing axes
    with the weight's leading ones, in order (tf_keras' ``EinsumDense``: ``abc,cde->abde``,
    ``abcd,cde->abe``); a None shape needs no Reshape. Else None."""
    if st.op != "Einsum" or not builtin(st) or len(st.ins) != 2 or len(st.outs) != 1:
        return None
    eq = st.attrs.get("equation")
    w = flow.const(st.ins[1])
    xs, out = flow.shape(st.ins[0]), flow.shape(st.outs[0][1])
    if not isinstance(eq, str) or "." in eq or "->" not in eq or w is None or \
            w.dtype.kind != "f" or xs is None or out is None:
        return None
    lhs, o = eq.replace(" ", "").split("->")
    ops = lhs.split(",")
    if len(ops) != 2 or len(ops[0]) != len(xs) or len(ops[1]) != w.ndim or \
            len(set(lhs.replace(",", ""))) != len(ops[0]) + len(ops[1]) - \
            len(set(ops[0]) & set(ops[1])):
        return None
    a, b = ops
    k = len(set(a) & set(b))
    if not k or k == len(b) or k == len(a) or a[len(a) - k:] != b[:k] or \
            o != a[:len(a) - k] + b[k:] or tuple(xs[len(a) - k:]) != w.shape[:k]:
        return None
    kk = int(np.prod(w.shape[:k]))
    n = int(np.prod(w.shape[k:]))
    lead = tuple(xs[:len(a) - k])
    return st.ins[0], w.reshape(kk, n), (lead + (kk,) if k > 1 else None,
                                        lead + (n,) if w.ndim - k > 1 else None)


def _reshape(plan: Plan, name: str, x: int, shape: tuple, out: int, t: str) -> Step:
    """A Reshape of ``x`` (dtype ``t``) to the static ``shape`` as value ``out``."""
    sv = plan.new_value()
    plan.constants[sv] = np.array(shape, np.int32)
    plan.shapes[out] = tuple(shape)
    return Step("Reshape", name, (x, sv), ((0, out),), {"T": t, "Tshape": "int32"})


def _as_matmul(st: Step, found, plan: Plan) -> list[Step]:
    """``st`` (an EinsumDense, ``_einsum_dense``) as [Reshape], BatchMatMulV2, [Reshape]."""
    x, w, (x_shape, y_shape) = found
    t = st.attrs.get("T", "float32")
    steps = []
    if x_shape is not None:
        xv = plan.new_value()
        steps.append(_reshape(plan, st.name, x, x_shape, xv, t))
        x = xv
    wv = plan.new_value()
    w = np.ascontiguousarray(w)
    w.setflags(write=False)
    plan.constants[wv] = w
    y = st.outs[0][1] if y_shape is None else plan.new_value()
    steps.append(Step("BatchMatMulV2", st.name, (x, wv), ((0, y),),
                      {"T": t, "adj_x": False, "adj_y": False}))
    if y_shape is not None:
        plan.shapes[y] = tuple(y_shape)
        steps.append(_reshape(plan, st.name, y, plan.shapes[st.outs[0][1]], st.outs[0][1], t))
    return steps


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
        ed = _einsum_dense(st, flow)
        if ed is not None:
            steps.extend(_as_matmul(st, ed, plan))
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
