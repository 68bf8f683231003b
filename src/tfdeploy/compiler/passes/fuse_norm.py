"""fuse_norm: layer normalization and RMS normalization as one ``_LayerNorm`` step.

Keras 3's ``LayerNormalization`` traces to moments then an affine map::

    mean = Mean(x, -1, keep_dims)        var = Mean(SquaredDifference(x, mean), -1, keep_dims)
    s = Rsqrt(var + eps) [* gamma]       out = x * s + (-mean * s [+ beta])

and RMS normalization (``rms_scaling``, Llama-style layers) to
``x * Rsqrt(Mean(Square(x), -1, keep_dims) + eps) [* gamma]``. Both normalize over the last
axis with constant ``eps``, ``gamma`` and ``beta`` broadcasting along it.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.compiler.patterns import Dataflow, builtin, fused_step, other_input, replace
from tfdeploy.compiler.plan import Plan, Step
from tfdeploy.errors import TFDeployError

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _dtype(st: Step) -> np.dtype | None:
    from tfdeploy.dtypes import to_numpy

    try:
        return to_numpy(st.attrs.get("T", "float32"))
    except TFDeployError:
        return None


def _last_axis_mean(st: Step | None, flow: Dataflow) -> int | None:
    """The input of ``st`` if it is a Mean over the last axis keeping dims, else None."""
    if st is None or st.op != "Mean" or not st.attrs.get("keep_dims", False) or \
            len(st.ins) != 2:
        return None
    axes = flow.const(st.ins[1])
    shape = flow.shape(st.ins[0])
    if axes is None or axes.size != 1 or shape is None:
        return None
    a = int(axes.reshape(-1)[0])
    return st.ins[0] if a in (-1, len(shape) - 1) else None



def _vector(flow: Dataflow, v: int, x: int, dtype) -> np.ndarray | None:
    """Constant ``v`` as a vector along the last axis of ``x`` (a scalar broadcasts)."""
    c = flow.const(v)
    n = (flow.shape(x) or (None,))[-1]
    if c is None or c.dtype != dtype or n is None or any(d != 1 for d in c.shape[:-1]):
        return None
    if c.size == 1:
        return np.full(n, c.reshape(()), dtype)
    return c.reshape(-1) if c.shape[-1] == n else None


def _rsqrt(flow: Dataflow, var: int) -> tuple[Step, Step, float] | None:
    """(add, rsqrt, eps) where ``var`` flows only into ``Rsqrt(var + eps)``."""
    add = flow.only_reader(var)
    if add is None or add.op not in ("AddV2", "Add"):
        return None
    eps = flow.scalar(other_input(add, var) or -1)
    r = flow.only_reader(add.outs[0][1])
    if eps is None or r is None or r.op != "Rsqrt":
        return None
    return add, r, eps


def _scaled(flow: Dataflow, r: Step, x: int, dtype):
    """(s value, gamma or None, the Mul step or None): ``Rsqrt * gamma`` if it is there."""
    rv = r.outs[0][1]
    mul = flow.only_reader(rv)
    if mul is not None and mul.op == "Mul":
        g = _vector(flow, other_input(mul, rv) or -1, x, dtype)
        if g is not None:
            return mul.outs[0][1], g, mul
    return rv, None, None


def _layer_norm(mean: Step, flow: Dataflow) -> tuple[list[Step], dict, int, int] | None:
    """(members, attrs, x, out) of the Keras 3 layer normalization starting at ``mean``."""
    x = _last_axis_mean(mean, flow)
    m = mean.outs[0][1]
    readers = flow.readers.get(m, [])
    sd = next((st for st in readers if st.op == "SquaredDifference"), None)
    neg = next((st for st in readers if st.op == "Neg"), None)
    dtype = _dtype(mean)
    if x is None or sd is None or neg is None or len(readers) != 2 or m in flow.pinned or \
            sorted(sd.ins) != sorted((x, m)) or dtype not in _FLOATS:
        return None
    mean2 = flow.only_reader(sd.outs[0][1])
    if _last_axis_mean(mean2, flow) != sd.outs[0][1]:
        return None
    rs = _rsqrt(flow, mean2.outs[0][1])
    if rs is None:
        return None
    add, r, eps = rs
    s, gamma, gmul = _scaled(flow, r, x, dtype)
    sr = flow.readers.get(s, [])
    xs = next((st for st in sr if st.op == "Mul" and other_input(st, s) == x), None)
    ns = next((st for st in sr if st.op == "Mul" and other_input(st, s) == neg.outs[0][1]), None)
    if xs is None or ns is None or len(sr) != 2 or s in flow.pinned:
        return None
    tail = flow.only_reader(ns.outs[0][1])
    beta, badd = None, None
    if tail is not None and tail.op in ("AddV2", "Add") and \
            other_input(tail, ns.outs[0][1]) not in (None, xs.outs[0][1]):
        beta = _vector(flow, other_input(tail, ns.outs[0][1]), x, dtype)
        badd = tail if beta is not None else None
    shift = badd.outs[0][1] if badd is not None else ns.outs[0][1]
    final = flow.only_reader(xs.outs[0][1])
    if final is None or final.op not in ("AddV2", "Add") or \
            sorted(final.ins) != sorted((xs.outs[0][1], shift)):
        return None
    members = [mean, sd, mean2, add, r, gmul, xs, neg, ns, badd, final]
    attrs = {"epsilon": eps, "gamma": gamma, "beta": beta}
    return [st for st in members if st is not None], attrs, x, final.outs[0][1]


def _rms_norm(mean: Step, flow: Dataflow) -> tuple[list[Step], dict, int, int] | None:
    """(members, attrs, x, out) of an RMS normalization whose Mean of squares is ``mean``."""
    sq_v = _last_axis_mean(mean, flow)
    sq = flow.step(sq_v, ("Square", "Mul")) if sq_v is not None else None
    if sq is None or flow.only_reader(sq_v) is not mean or \
            (sq.op == "Mul" and sq.ins[0] != sq.ins[1]):
        return None
    x = sq.ins[0]
    dtype = _dtype(mean)
    rs = _rsqrt(flow, mean.outs[0][1]) if dtype in _FLOATS else None
    if rs is None:
        return None
    add, r, eps = rs
    xm = flow.only_reader(r.outs[0][1])
    if xm is None or xm.op != "Mul" or other_input(xm, r.outs[0][1]) != x:
        return None
    out, gamma, gmul = _scaled(flow, xm, x, dtype)
    members = [sq, mean, add, r, xm] + ([gmul] if gmul is not None else [])
    return members, {"epsilon": eps, "gamma": gamma, "beta": None, "rms": True}, x, out


def run(plan: Plan, ctx=None) -> Plan:
    if not plan.shapes:  # (the axis checks need the shapes of a specialized plan)
        return plan
    flow = Dataflow(plan)
    taken: set[int] = set()
    groups = []
    for st in plan.steps:
        if st.op != "Mean" or id(st) in taken or flow.step(st.outs[0][1]) is None:
            continue
        found = _layer_norm(st, flow) or _rms_norm(st, flow)
        if found is None or any(id(m) in taken for m in found[0]):
            continue
        members, attrs, x, out = found
        if not all(builtin(m) for m in members):
            continue
        inside = {id(m) for m in members}
        inner = [v for m in members for _, v in m.outs if v != out]
        if not all(flow.internal(v, inside) for v in inner):
            continue
        taken |= inside
        groups.append((members, attrs, x, out))
    for members, attrs, x, out in groups:
        ordered = [st for st in plan.steps if id(st) in {id(m) for m in members}]
        replace(plan, ordered, fused_step("_LayerNorm", ordered, (x,), out,
                                          {k: v for k, v in attrs.items() if v is not None}))
    return plan
