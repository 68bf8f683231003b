"""fuse_rotary: rotary position embeddings as one ``_Rotary`` step.

Llama-, Gemma-, Mistral- and Qwen-style attention rotate queries and keys as
``x * cos + rotate_half(x) * sin``, ``rotate_half(x) = concat(-x[..., h:], x[..., :h])`` over
the last axis (h: half of it), cos and sin constant tables. As graph ops: two StridedSlices, a
Neg, a ConcatV2, two Muls and an AddV2 (seven steps, each a numpy call or more). The fused
kernel (``kernels/nn/transformer.py``) computes the same values bit for bit in four numpy calls
on whole rows.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.compiler.patterns import Dataflow, builtin, fused_step, other_input, replace
from tfdeploy.compiler.plan import Plan, Step


def _half_slice(flow: Dataflow, st: Step, x: int) -> tuple[str, int] | None:
    """("upper", h) for ``x[..., h:]``, ("lower", h) for ``x[..., :h]`` (h > 0), as Keras and
    TF write them (an ellipsis, then the last axis, unit strides), or None."""
    if st.op != "StridedSlice" or len(st.ins) != 4 or st.ins[0] != x:
        return None
    a = st.attrs
    if a.get("ellipsis_mask", 0) != 1 or a.get("new_axis_mask", 0) or \
            a.get("shrink_axis_mask", 0):
        return None
    begin, end, strides = (flow.const(v) for v in st.ins[1:])
    if begin is None or end is None or strides is None or begin.shape != (2,) or \
            end.shape != (2,) or strides.shape != (2,) or list(strides) != [1, 1]:
        return None
    bm, em = a.get("begin_mask", 0), a.get("end_mask", 0)
    if bm in (0, 1) and em & 2 and int(begin[1]) > 0:
        return "upper", int(begin[1])
    if bm & 2 and em in (0, 1) and int(end[1]) > 0:
        return "lower", int(end[1])
    return None


def _float_const(flow: Dataflow, v: int | None) -> np.ndarray | None:
    c = flow.const(v) if v is not None else None
    return c if c is not None and c.dtype.kind == "f" and c.ndim >= 1 else None


def _match(flow: Dataflow, add: Step):
    """(members, x, cos, sin, h) of ``x * cos + rotate_half(x) * sin`` ending at ``add``."""
    if add.op not in ("AddV2", "Add") or len(add.ins) != 2 or add.ins[0] == add.ins[1]:
        return None
    muls = [flow.step(v, "Mul") for v in add.ins]
    if any(m is None or len(m.ins) != 2 for m in muls):
        return None
    for m_cos, m_sin in (muls, muls[::-1]):
        for r in m_sin.ins:
            concat = flow.step(r, "ConcatV2")
            sin = _float_const(flow, other_input(m_sin, r))
            if concat is None or sin is None or len(concat.ins) != 3:
                continue
            axis = flow.scalar(concat.ins[2])
            neg = flow.step(concat.ins[0], "Neg")
            if neg is None or axis is None:
                continue
            upper = flow.step(neg.ins[0], "StridedSlice")
            lower = flow.step(concat.ins[1], "StridedSlice")
            if upper is None or lower is None or upper.ins[0] != lower.ins[0]:
                continue
            x = upper.ins[0]
            hu, hl = _half_slice(flow, upper, x), _half_slice(flow, lower, x)
            if hu is None or hl is None or hu[0] != "upper" or hl[0] != "lower" or \
                    hu[1] != hl[1]:
                continue
            cos = _float_const(flow, other_input(m_cos, x))
            if cos is None or cos.dtype != sin.dtype:
                continue
            h = hu[1]
            shape = flow.shape(x)
            if int(axis) != -1 and (shape is None or int(axis) != len(shape) - 1):
                continue
            return [m_cos, upper, neg, lower, concat, m_sin, add], x, cos, sin, h
    return None


def run(plan: Plan, ctx=None) -> Plan:
    flow = Dataflow(plan)
    groups = []
    taken: set[int] = set()
    for st in plan.steps:
        if st.op not in ("AddV2", "Add") or id(st) in taken:
            continue
        found = _match(flow, st)
        if found is None:
            continue
        members, x, cos, sin, h = found
        inside = {id(m) for m in members}
        out = st.outs[0][1]
        if inside & taken or not all(builtin(m) for m in members) or not all(
                flow.internal(v, inside) for m in members for _, v in m.outs if v != out):
            continue
        taken |= inside
        groups.append((members, x, out, cos, sin, h))
    for members, x, out, cos, sin, h in groups:
        ordered = [s for s in plan.steps if id(s) in {id(m) for m in members}]
        replace(plan, ordered, fused_step("_Rotary", ordered, (x,), out,
                                          {"cos": cos, "sin": sin, "half": h}))
    return plan
