"""fuse_gated: a gated feed-forward layer's activation as one ``_Gated`` step.

Llama-, Mistral-, Qwen- and Gemma-style feed-forward layers compute ``act(x W_g) * (x W_u)``
(SwiGLU: act = swish, ``g * sigmoid(beta g)``; GeGLU: act = GELU). ``fuse_projections`` makes
the two products one, cut by a SplitV; what follows is then four or five small steps: for
SwiGLU ``Mul(beta, g)``, ``Sigmoid``, ``Mul(g, s)`` and ``Mul(a, u)``, for GeGLU ``_Gelu``
(``fuse_gelu``) and ``Mul(a, u)``. They become one ``_Gated`` step reading the product:
the gate's columns copied once into the result, the activation in place (the fused chains'
own: ``kernels/nn/fused.py``'s epilogue ops, swish as ``g / (1 + e ** (-beta g))`` by exp2
or exp, whichever is cheaper on the CPU: ``numerics/ufunc_speed.py``),
then the up columns multiplied in.

Taken: a SplitV (or a Split in two: Keras' ``ops.split``) of a value along its last axis (the
shape known), one part read only by the activation (and, for swish, by its final Mul), another
of the same width only by the final Mul, each directly or through a Reshape of its last axis
(to the same shape: a mixture of experts' [..., experts x width] as [..., experts, width]); a third
part read elsewhere (a router's logits) keeps the split a step. Swish's beta a scalar constant
(or none: ``g * sigmoid(g)``). The fused step keeps the steps it replaces as its fallback
(another dtype than float32/float64).
"""

from __future__ import annotations

import math

from tfdeploy.compiler.patterns import (
    Dataflow,
    builtin,
    fused_step,
    other_input,
    replace,
    split_bounds,
    static_shape,
)
from tfdeploy.compiler.plan import Plan, Step


def _op(st: Step | None, op: str) -> bool:
    return st is not None and st.op == op and builtin(st) and len(st.outs) == 1


def _swish(flow: Dataflow, g: int):
    """(members, beta or None, the product g * sigmoid(beta g)) when ``g`` is read only by a
    swish, else None."""
    readers = flow.readers.get(g, ())
    if g in flow.pinned or len(readers) != 2 or readers[0] is readers[1]:
        return None
    for first, last in (readers, readers[::-1]):
        beta, sig = None, first
        if _op(first, "Mul") and len(first.ins) == 2:  # (beta g, then its sigmoid)
            c = flow.const(other_input(first, g))
            if c is None or c.size != 1:
                continue
            beta, sig = c.reshape(()), flow.only_reader(first.outs[0][1])
        src = g if beta is None else first.outs[0][1]
        if not _op(sig, "Sigmoid") or list(sig.ins) != [src] or not _op(last, "Mul") or \
                flow.only_reader(sig.outs[0][1]) is not last or \
                sorted(last.ins) != sorted((g, sig.outs[0][1])):
            continue
        return [first, *([sig] if beta is not None else []), last], beta, last.outs[0][1]
    return None


def _activation(flow: Dataflow, g: int):
    """(members, act, arg, result) of the activation reading ``g``, or None."""
    r = flow.only_reader(g)
    if _op(r, "_Gelu") and list(r.ins) == [g]:
        return [r], "gelu", r.attrs.get("approximate", "erfc"), r.outs[0][1]
    found = _swish(flow, g)
    if found is None:
        return None
    members, beta, out = found
    return members, "swish", beta, out


def _halves(flow: Dataflow, sp: Step):
    """(the value split, [start, stop) of each part) of a SplitV, or a Split in two (Keras'
    ``ops.split``), along the last axis of a value of known shape; else None."""
    if sp.op == "SplitV":
        return sp.ins[0], split_bounds(flow, sp)
    shape, axis = flow.shape(sp.ins[1]), flow.scalar(sp.ins[0])
    if sp.attrs.get("num_split") != 2 or not static_shape(shape) or not shape or \
            axis is None or int(axis) % len(shape) != len(shape) - 1 or shape[-1] % 2:
        return None
    n = shape[-1] // 2
    return sp.ins[1], [[0, n], [n, 2 * n]]


def _reshaped(flow: Dataflow, v: int):
    """(the Reshape reading ``v`` and nothing else reading it, its result) when there is one,
    else (None, v)."""
    r = flow.only_reader(v)
    if r is not None and r.op == "Reshape" and builtin(r) and r.ins[0] == v and \
            static_shape(flow.shape(r.outs[0][1])):
        return r, r.outs[0][1]
    return None, v


def _gated(flow: Dataflow, sp: Step):
    """(members, input, attrs, output) of the gated activation after a split ``sp``, or
    None. Each part may go through a Reshape splitting its last axis (a mixture of experts'
    [..., experts x width] as [..., experts, width]), both the same; the split stays a step
    when another of its parts is read elsewhere (a router's logits)."""
    if not builtin(sp):
        return None
    x, bounds = _halves(flow, sp) or (None, None)
    outs = dict(sp.outs)
    if bounds is None or len(outs) != len(sp.outs) or len(outs) < 2:
        return None
    lead = flow.shape(x)[:-1]
    parts = {i: _reshaped(flow, v) for i, v in outs.items()}  # index -> (Reshape, value)
    for gi in outs:
        rg, g = parts[gi]
        act = _activation(flow, g)
        if act is None:
            continue
        members, kind, arg, a = act
        last = flow.only_reader(a)
        if not _op(last, "Mul"):
            continue
        ui = next((i for i in outs if i != gi and parts[i][1] in last.ins and
                   parts[i][1] != a), None)
        if ui is None:
            continue
        ru, u = parts[ui]
        (g0, g1), (u0, u1) = bounds[gi], bounds[ui]
        shape = flow.shape(g)
        if sorted(last.ins) != sorted((a, u)) or flow.only_reader(u) is not last or \
                g1 - g0 != u1 - u0 or shape is None or shape != flow.shape(u) or \
                tuple(shape[:len(lead)]) != lead:
            continue
        tail = tuple(shape[len(lead):])
        if not tail or math.prod(tail) != g1 - g0:
            continue
        attrs = {"act": kind, "arg": arg, "gate": bounds[gi], "up": bounds[ui]}
        if tail != (g1 - g0,):
            attrs["tail"] = list(tail)
        whole = len(outs) == 2
        steps = [*([sp] if whole else []), *(r for r in (rg, ru) if r is not None), *members,
                 last]
        return steps, x, attrs, last.outs[0][1]
    return None


def run(plan: Plan, ctx=None) -> Plan:
    flow = Dataflow(plan)
    groups = [g for g in (_gated(flow, st) for st in plan.steps
                          if st.op in ("SplitV", "Split"))
              if g is not None]
    for members, x, attrs, out in groups:
        replace(plan, members, fused_step("_Gated", members, (x,), out, attrs))
    return plan
