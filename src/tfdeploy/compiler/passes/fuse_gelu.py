"""fuse_gelu: the GELU activation as one ``_Gelu`` step, in the form the graph computes it.

- ``"erfc"`` (Keras 3, ``tf.nn.gelu``): ``Mul(0.5, x) * Erfc(Mul(Neg(x), 1/sqrt 2))``;
- ``"erf"``: ``Mul(0.5, x) * AddV2(1, Erf(Mul(x, 1/sqrt 2)))``;
- ``"tanh"`` (``approximate=True``): ``Mul(0.5, x) * AddV2(1, Tanh(Mul(sqrt(2/pi),
  AddV2(x, Mul(0.044715, Pow(x, 3))))))``.

``fuse_conv`` then takes the ``_Gelu`` after a matmul or convolution into its epilogue.
"""

from __future__ import annotations

import math

import numpy as np

from tfdeploy.compiler.patterns import Dataflow, builtin, fused_step, other_input, replace
from tfdeploy.compiler.plan import Plan, Step


def _is(flow: Dataflow, v: int | None, b: float) -> bool:
    """``v`` is a constant of one element ``b``, or a float16 one of ``b`` rounded to float16
    (a mixed_float16 model's float16 GELU: half_region computes its ``_Gelu`` in float32 with
    the exact constants and rounds once, a float16 rounding from TF's values, which round after
    each op)."""
    c = flow.const(v) if v is not None else None
    if c is None or c.size != 1 or c.dtype.kind not in "fiu":
        return False
    a = float(c.reshape(-1)[0])
    return abs(a - b) <= 1e-6 * abs(b) or c.dtype == np.float16 and a == float(np.float16(b))


def _mul_by(flow: Dataflow, st: Step | None, v: int, c: float) -> bool:
    return st is not None and st.op == "Mul" and _is(flow, other_input(st, v), c)


def _erfc_form(flow: Dataflow, x: int, half: Step):
    """(members, out) of 0.5 x * Erfc(-x / sqrt 2), ``half`` being the Mul(0.5, x)."""
    neg = next((s for s in flow.readers.get(x, ()) if s.op == "Neg"), None)
    if neg is None:
        return None
    scale = flow.only_reader(neg.outs[0][1])
    if not _mul_by(flow, scale, neg.outs[0][1], math.sqrt(0.5)):
        return None
    erfc = flow.only_reader(scale.outs[0][1])
    if erfc is None or erfc.op != "Erfc":
        return None
    out = flow.only_reader(erfc.outs[0][1])
    if out is None or out.op != "Mul" or sorted(out.ins) != sorted(
            (half.outs[0][1], erfc.outs[0][1])):
        return None
    return [half, neg, scale, erfc, out], "erfc"


def _one_plus(flow: Dataflow, st: Step, half: Step):
    """The final Mul of ``0.5 x * (1 + st)``, or None."""
    add = flow.only_reader(st.outs[0][1])
    if add is None or add.op not in ("AddV2", "Add") or \
            not _is(flow, other_input(add, st.outs[0][1]), 1.0):
        return None, None
    out = flow.only_reader(add.outs[0][1])
    if out is None or out.op != "Mul" or sorted(out.ins) != sorted(
            (half.outs[0][1], add.outs[0][1])):
        return None, None
    return add, out


def _erf_form(flow: Dataflow, x: int, half: Step):
    scale = next((s for s in flow.readers.get(x, ())
                  if _mul_by(flow, s, x, math.sqrt(0.5))), None)
    erf = flow.only_reader(scale.outs[0][1]) if scale is not None else None
    if erf is None or erf.op != "Erf":
        return None
    add, out = _one_plus(flow, erf, half)
    return ([half, scale, erf, add, out], "erf") if out is not None else None


def _tanh_form(flow: Dataflow, x: int, half: Step):
    cube = next((s for s in flow.readers.get(x, ()) if s.op == "Pow" and s.ins[0] == x and
                 _is(flow, s.ins[1], 3.0)), None)
    if cube is None:
        return None
    c = flow.only_reader(cube.outs[0][1])
    if not _mul_by(flow, c, cube.outs[0][1], 0.044715):
        return None
    inner = flow.only_reader(c.outs[0][1])
    if inner is None or inner.op not in ("AddV2", "Add") or other_input(inner, c.outs[0][1]) != x:
        return None
    k = flow.only_reader(inner.outs[0][1])
    if not _mul_by(flow, k, inner.outs[0][1], math.sqrt(2 / math.pi)):
        return None
    tanh = flow.only_reader(k.outs[0][1])
    if tanh is None or tanh.op != "Tanh":
        return None
    add, out = _one_plus(flow, tanh, half)
    return ([half, cube, c, inner, k, tanh, add, out], "tanh") if out is not None else None


def run(plan: Plan, ctx=None) -> Plan:
    flow = Dataflow(plan)
    groups = []
    taken: set[int] = set()
    for half in plan.steps:
        if half.op != "Mul" or len(half.ins) != 2 or id(half) in taken:
            continue
        for x in set(half.ins):
            if not _is(flow, other_input(half, x), 0.5):
                continue
            found = _erfc_form(flow, x, half) or _erf_form(flow, x, half) or \
                _tanh_form(flow, x, half)
            if found is None:
                continue
            members, form = found
            inside = {id(m) for m in members}
            out = members[-1].outs[0][1]
            if inside & taken or not all(builtin(m) for m in members) or not all(
                    flow.internal(v, inside) for m in members for _, v in m.outs if v != out):
                continue
            taken |= inside
            groups.append((members, x, out, form))
            break
    for members, x, out, form in groups:
        ordered = [st for st in plan.steps if id(st) in {id(m) for m in members}]
        replace(plan, ordered, fused_step("_Gelu", ordered, (x,), out, {"approximate": form}))
    return plan
