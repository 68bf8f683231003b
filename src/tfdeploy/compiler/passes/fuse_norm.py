"""fuse_norm: layer, RMS, instance and group normalization as one step each.

Keras 3's ``LayerNormalization`` traces to moments then an affine map::

    mean = Mean(x, axes, keep_dims)      var = Mean(SquaredDifference(x, mean), axes, keep_dims)
    s = Rsqrt(var + eps) [* gamma]       out = x * s + (-mean * s [+ beta])

and RMS normalization (``rms_scaling``, Llama-style layers) to
``x * Rsqrt(Mean(Square(x), -1, keep_dims) + eps) [* gamma]``. Over the last axis (with
constant ``eps``, ``gamma`` and ``beta`` broadcasting along it) both become ``_LayerNorm``.

``tf.nn.batch_normalization(x, mean, var, beta, gamma, eps)`` after ``tf.nn.moments``
computes the same affine form with the shift ``beta - mean * s``: taken too.

The same moments over other axes become ``_GroupNorm`` (``kernels/nn/norm.py``): Keras'
``GroupNormalization`` (its input reshaped to [N, H, W, G, C / G], axes [1, 2, 4]; groups=-1
is instance normalization), ``LayerNormalization(axis=[1, 2, 3])``, and instance normalization
written with ``tf.nn.moments(x, [1, 2])`` as ``(x - mean) * Rsqrt(var + eps) [* gamma]
[+ beta]`` (that centred form is taken over the last axis too). Its ``gamma`` and ``beta`` are
constants broadcasting into x; the axes must be kept leading axes, reduced axes, then
optionally kept and reduced channel axes (``norm.layout``). An activation the normalized value
flows into alone (Relu, Relu6, LeakyRelu, Elu, Sigmoid, Tanh, or swish ``y * Sigmoid(y)``)
joins the step: it runs on each block while in cache.

tf_keras' ``LayerNormalization`` (over the last k axes) computes the same moments as a
training-mode ``FusedBatchNormV3`` of x reshaped to [1, R, C, 1] (NCHW: each row a channel,
scale ones and offset zeros), reshaped back, then ``* gamma + beta``: that becomes
``_LayerNorm`` (k = 1) or ``_GroupNorm``. tf_keras' ``GroupNormalization`` takes its moments
with ``tf.nn.weighted_moments`` by weights all ones (``OnesLike``, ``ZerosLike``, ``Sum``s,
``DivNoNan``): on a static shape with values each such mean is made a ``Mean`` first.
"""

from __future__ import annotations

import math

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


def _mean_axes(st: Step | None, flow: Dataflow) -> tuple[int, tuple[int, ...]] | None:
    """(input, reduced axes: sorted, non-negative) of ``st`` if it is a Mean keeping dims over
    constant axes of an input of known shape, else None."""
    if st is None or st.op != "Mean" or not st.attrs.get("keep_dims", False) or \
            len(st.ins) != 2:
        return None
    axes = flow.const(st.ins[1])
    shape = flow.shape(st.ins[0])
    if axes is None or axes.dtype.kind not in "iu" or not axes.size or shape is None:
        return None
    r = len(shape)
    red = sorted({int(a) + r if int(a) < 0 else int(a) for a in axes.reshape(-1)})
    if red[0] < 0 or red[-1] >= r:
        return None
    return st.ins[0], tuple(red)


def _vector(flow: Dataflow, v: int, x: int, dtype) -> np.ndarray | None:
    """Constant ``v`` as a vector along the last axis of ``x`` (a scalar broadcasts)."""
    c = flow.const(v)
    n = (flow.shape(x) or (None,))[-1]
    if c is None or c.dtype != dtype or n is None or any(d != 1 for d in c.shape[:-1]):
        return None
    if c.size == 1:
        return np.full(n, c.reshape(()), dtype)
    return c.reshape(-1) if c.shape[-1] == n else None


def _operand(flow: Dataflow, v: int, x: int, dtype) -> np.ndarray | None:
    """Constant ``v`` if it broadcasts into ``x``'s shape without widening it."""
    c = flow.const(v)
    shape = flow.shape(x)
    if c is None or c.dtype != dtype or shape is None or c.ndim > len(shape):
        return None
    try:
        return c if np.broadcast_shapes(c.shape, shape) == tuple(shape) else None
    except ValueError:
        return None


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


def _scaled(flow: Dataflow, r: Step, x: int, dtype, constant=_vector):
    """(s value, gamma or None, the Mul step or None): ``Rsqrt * gamma`` if it is there."""
    rv = r.outs[0][1]
    mul = flow.only_reader(rv)
    if mul is not None and mul.op == "Mul":
        g = constant(flow, other_input(mul, rv) or -1, x, dtype)
        if g is not None:
            return mul.outs[0][1], g, mul
    return rv, None, None


def _normalization(mean: Step, flow: Dataflow) -> tuple[list[Step], dict, int, int] | None:
    """(members, attrs, x, out) of the moments normalization starting at ``mean``: Keras 3's
    affine form, ``tf.nn.batch_normalization``'s or the centred form (see the module
    docstring); attrs carry ``axes`` unless they are the last axis alone."""
    found = _mean_axes(mean, flow)
    dtype = _dtype(mean)
    if found is None or dtype not in _FLOATS:
        return None
    x, axes = found
    last = axes == (len(flow.shape(x)) - 1,)
    constant = _vector if last else _operand
    m = mean.outs[0][1]
    readers = flow.readers.get(m, [])
    sd = next((st for st in readers if st.op == "SquaredDifference"), None)
    other = [st for st in readers if st is not sd]
    if sd is None or len(readers) != 2 or m in flow.pinned or \
            sorted(sd.ins) != sorted((x, m)):
        return None
    mean2 = flow.only_reader(sd.outs[0][1])
    if _mean_axes(mean2, flow) != (sd.outs[0][1], axes):
        return None
    rs = _rsqrt(flow, mean2.outs[0][1])
    if rs is None:
        return None
    add, r, eps = rs
    s, gamma, gmul = _scaled(flow, r, x, dtype, constant)
    if s in flow.pinned:
        return None
    attrs = {"epsilon": eps, "gamma": gamma}
    if not last:
        attrs["axes"] = list(axes)
    head = [mean, sd, mean2, add, r, gmul]
    o = other[0]
    if o.op == "Sub" and list(o.ins) == [x, m]:
        tail = _centred(flow, o, s, x, dtype, constant)
    elif o.op == "Neg" or o.op == "Mul" and other_input(o, m) == s:
        tail = _affine(flow, o, m, s, x, dtype, constant)
    else:
        return None
    if tail is None:
        return None
    members, out, beta = tail
    attrs["beta"] = beta
    return [st for st in head + members if st is not None], attrs, x, out


def _centred(flow: Dataflow, sub: Step, s: int, x: int, dtype, constant):
    """(members, out, beta) of ``(x - mean) * s [+ beta]``, from the Sub on."""
    d = sub.outs[0][1]
    sr = flow.readers.get(s, [])
    xs = sr[0] if len(sr) == 1 else None
    if xs is None or xs.op != "Mul" or other_input(xs, s) != d or \
            flow.only_reader(d) is not xs:
        return None
    out, beta, members = xs.outs[0][1], None, [sub, xs]
    tail = flow.only_reader(out)
    if tail is not None and tail.op in ("AddV2", "Add"):
        beta = constant(flow, other_input(tail, out) or -1, x, dtype)
        if beta is not None:
            members.append(tail)
            out = tail.outs[0][1]
    return members, out, beta


def _affine(flow: Dataflow, o: Step, m: int, s: int, x: int, dtype, constant):
    """(members, out, beta) of ``x * s + shift`` from ``o``, the mean's other reader: Keras
    3's ``Neg(mean) * s [+ beta]``, or ``tf.nn.batch_normalization``'s ``beta - mean * s``."""
    sr = flow.readers.get(s, [])
    xs = next((st for st in sr if st.op == "Mul" and other_input(st, s) == x), None)
    if o.op == "Neg":
        ms = next((st for st in sr if st.op == "Mul" and other_input(st, s) == o.outs[0][1]),
                  None)
    else:
        ms = o
    if xs is None or ms is None or len(sr) != 2 or not any(st is ms for st in sr):
        return None
    tail = flow.only_reader(ms.outs[0][1])
    beta, badd = None, None
    if o.op == "Neg" and tail is not None and tail.op in ("AddV2", "Add") and \
            other_input(tail, ms.outs[0][1]) not in (None, xs.outs[0][1]):
        beta = constant(flow, other_input(tail, ms.outs[0][1]), x, dtype)
        badd = tail if beta is not None else None
    elif o.op == "Mul":  # (tf.nn.batch_normalization: offset - mean * s, offset given)
        if tail is None or tail.op != "Sub":
            return None
        beta, badd = constant(flow, tail.ins[0], x, dtype), tail  # (None: ms - beta)
        if beta is None:
            return None
    shift = badd.outs[0][1] if badd is not None else ms.outs[0][1]
    final = flow.only_reader(xs.outs[0][1])
    if final is None or final.op not in ("AddV2", "Add") or \
            sorted(final.ins) != sorted((xs.outs[0][1], shift)):
        return None
    members = [xs, o if o is not ms else None, ms, badd, final]
    return [st for st in members if st is not None], final.outs[0][1], beta


_ACTIVATIONS = {"Relu": "relu", "Relu6": "relu6", "LeakyRelu": "leaky_relu", "Elu": "elu",
                "Sigmoid": "sigmoid", "Tanh": "tanh"}


def _activation(flow: Dataflow, v: int) -> tuple[list[Step], dict, int] | None:
    """(members, attrs, out) of the activation ``v`` flows into alone: one of
    ``_ACTIVATIONS``, or swish (``v`` read only by ``Sigmoid(v)``, or ``Sigmoid(beta * v)``
    with a scalar constant beta, and the ``Mul`` of ``v`` by it)."""
    if v in flow.pinned:
        return None
    rd = flow.readers.get(v, [])
    if len(rd) == 1 and rd[0].op in _ACTIVATIONS and list(rd[0].ins) == [v]:
        st = rd[0]
        attrs = {"activation": _ACTIVATIONS[st.op]}
        if st.op == "LeakyRelu":
            attrs["alpha"] = float(st.attrs.get("alpha", 0.2))
        return [st], attrs, st.outs[0][1]
    if len(rd) != 2:
        return None
    for first in rd:
        if first.op == "Sigmoid" and list(first.ins) == [v]:
            sig, pre, beta = first, [], None
        elif first.op == "Mul":  # (Keras' swish: Sigmoid(beta * v))
            beta = flow.scalar(other_input(first, v) or -1)
            sig = flow.only_reader(first.outs[0][1])
            if beta is None or sig is None or sig.op != "Sigmoid" or \
                    list(sig.ins) != [first.outs[0][1]]:
                continue
            pre = [first]
        else:
            continue
        mul = flow.only_reader(sig.outs[0][1])
        if mul is not None and mul.op == "Mul" and mul is not first and \
                any(st is mul for st in rd) and sorted(mul.ins) == sorted((v, sig.outs[0][1])):
            attrs = {"activation": "swish"}
            if beta is not None and beta != 1:
                attrs["alpha"] = beta
            return [*pre, sig, mul], attrs, mul.outs[0][1]
    return None


def _group_norm(found, flow: Dataflow):
    """``found`` (a normalization over other axes than the last alone) as a ``_GroupNorm``,
    with the activation after it, or None when the kernel cannot take its axes. A Reshape
    between the two (Keras' GroupNormalization reshapes its result back to the input's shape)
    joins too: the step then returns that shape."""
    from tfdeploy.kernels.nn.norm import layout

    members, attrs, x, out = found
    if layout(flow.shape(x), attrs["axes"]) is None:
        return None
    act = _activation(flow, out)
    back = flow.only_reader(out)
    if act is None and back is not None and back.op == "Reshape" and back.ins[0] == out:
        shape = flow.shape(back.outs[0][1])
        act = _activation(flow, back.outs[0][1]) if shape is not None else None
        if act is not None:
            members, attrs = members + [back], {**attrs, "shape": list(shape)}
    if act is not None:
        members, attrs, out = members + act[0], {**attrs, **act[1]}, act[2]
    return members, attrs, x, out


_BATCH_NORMS = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")


def _batch_norm_form(st: Step, flow: Dataflow) -> tuple[list[Step], dict, int, int] | None:
    """(members, attrs, x, out) of tf_keras' LayerNormalization over the last k axes, which
    it computes as a training-mode FusedBatchNorm: x reshaped to [1, R, C, 1] (NCHW: each of
    the R rows a channel), scale ones and offset zeros of length R, reshaped back to x's
    shape, then ``* gamma`` and ``+ beta``; attrs carry ``axes`` (the last k) unless k is 1."""
    a = st.attrs
    if st.op not in _BATCH_NORMS or not a.get("is_training", True) or \
            a.get("data_format", "NHWC") != "NCHW" or len(st.ins) < 5:
        return None
    y = next((v for i, v in st.outs if i == 0), None)
    if y is None:  # (its other outputs, the batch statistics, must be unread: run() checks)
        return None
    r1 = flow.step(st.ins[0], "Reshape")
    shape5 = flow.shape(st.ins[0])
    if r1 is None or flow.only_reader(st.ins[0]) is not st or shape5 is None or \
            len(shape5) != 4 or shape5[0] != 1 or shape5[3] != 1:
        return None
    x = r1.ins[0]
    shape = flow.shape(x)
    dtype = _dtype(st)
    scale, offset = flow.const(st.ins[1]), flow.const(st.ins[2])
    r2 = flow.only_reader(y)
    if shape is None or not shape or dtype not in _FLOATS or scale is None or \
            offset is None or not (scale == 1).all() or not (offset == 0).all() or \
            r2 is None or r2.op != "Reshape" or r2.ins[0] != y or \
            flow.shape(r2.outs[0][1]) != shape:
        return None
    rows, width, k = shape5[1], shape5[2], 0
    while k < len(shape) and math.prod(shape[len(shape) - k:]) < width:
        k += 1
    if not k or math.prod(shape[len(shape) - k:]) != width or \
            math.prod(shape[:len(shape) - k]) != rows:
        return None
    last = k == 1
    constant = _vector if last else _operand
    members, out = [r1, st, r2], r2.outs[0][1]
    attrs = {"epsilon": float(a.get("epsilon", 1e-4)), "gamma": None, "beta": None}
    if not last:
        attrs["axes"] = list(range(len(shape) - k, len(shape)))
    for key, ops in (("gamma", ("Mul",)), ("beta", ("AddV2", "Add"))):
        nxt = flow.only_reader(out)
        if nxt is not None and nxt.op in ops:
            c = constant(flow, other_input(nxt, out) or -1, x, dtype)
            if c is not None:
                members.append(nxt)
                out, attrs[key] = nxt.outs[0][1], c
    return members, attrs, x, out


def _rms_norm(mean: Step, flow: Dataflow) -> tuple[list[Step], dict, int, int] | None:
    """(members, attrs, x, out) of an RMS normalization whose Mean of squares is ``mean``."""
    found = _mean_axes(mean, flow)
    if found is None or found[1] != (len(flow.shape(found[0])) - 1,):
        return None
    sq_v = found[0]
    sq = flow.step(sq_v, ("Square", "Mul"))
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


def _ones(flow: Dataflow, w: int) -> list[Step] | None:
    """The steps making ``w`` if it is ``OnesLike`` of something, or a Reshape of that."""
    r = flow.step(w, "Reshape")
    ones = flow.step(r.ins[0] if r is not None else w, "OnesLike")
    return None if ones is None else [ones] + ([r] if r is not None else [])


def _weighted_mean(d: Step, flow: Dataflow):
    """(y, the axes value, the weights' steps) when ``d`` is ``tf.nn.weighted_moments``' mean
    of ``y`` by weights all ones (tf_keras' GroupNormalization): ``DivNoNan(Sum(Mul(w, y),
    axes), Sum(AddV2(w, ZerosLike(y)), axes))``, w ``OnesLike`` (reshaped), on a static shape
    with values (DivNoNan's 0 for nothing would differ from a mean's NaN). Else None."""
    num = flow.step(d.ins[0], "Sum") if len(d.ins) == 2 else None
    den = flow.step(d.ins[1], "Sum") if num is not None else None
    axes = flow.const(num.ins[1]) if den is not None else None
    if axes is None or not np.array_equal(axes, flow.const(den.ins[1])) or \
            not num.attrs.get("keep_dims") or not den.attrs.get("keep_dims"):
        return None
    mul, add = flow.step(num.ins[0], "Mul"), flow.step(den.ins[0], ("AddV2", "Add"))
    w = next((v for v in mul.ins if _ones(flow, v)), None) if mul is not None else None
    if w is None or add is None or w not in add.ins:
        return None
    y = other_input(mul, w)
    zeros = flow.step(other_input(add, w), "ZerosLike")
    shape = flow.shape(y)
    if zeros is None or shape is None or flow.shape(w) != shape or not all(shape) or \
            flow.shape(d.ins[0]) != flow.shape(d.outs[0][1]):
        return None
    return y, num.ins[1], [mul, num, den, add, zeros, *_ones(flow, w)]


def _unweighted(plan: Plan) -> None:
    """Each weighted mean by weights all ones (``_weighted_mean``) made a ``Mean``, which the
    normalization patterns then read; the weights' steps, no longer read, go."""
    flow = Dataflow(plan)
    means = {}
    for st in plan.steps:
        if st.op == "DivNoNan" and builtin(st):
            found = _weighted_mean(st, flow)
            if found is not None:
                means[id(st)] = found
    if not means:
        return
    candidates = {id(m) for _, _, ms in means.values() for m in ms}
    steps = []
    for st in plan.steps:
        found = means.get(id(st))
        if found is None:
            steps.append(st)
        else:
            steps.append(Step("Mean", st.name, (found[0], found[1]), st.outs,
                              {"T": st.attrs.get("T", "float32"), "keep_dims": True,
                               "Tidx": "int32"}))
    pinned = set(plan.fetch_values) | set(plan.feed_values)
    while True:  # (a weights' step another step still reads stays)
        read = {v for st in steps for v in st.ins} | pinned
        dead = {id(st) for st in steps if id(st) in candidates and
                not any(v in read for _, v in st.outs)}
        if not dead:
            break
        steps = [st for st in steps if id(st) not in dead]
    plan.steps = steps


def run(plan: Plan, ctx=None) -> Plan:
    if not plan.shapes:  # (the axis checks need the shapes of a specialized plan)
        return plan
    _unweighted(plan)
    flow = Dataflow(plan)
    taken: set[int] = set()
    groups = []
    for st in plan.steps:
        if id(st) in taken:
            continue
        if st.op in _BATCH_NORMS:
            found = _batch_norm_form(st, flow)
        elif st.op != "Mean" or flow.step(st.outs[0][1]) is None:
            continue
        else:
            found = _normalization(st, flow) or _rms_norm(st, flow)
        if found is not None and "axes" in found[1]:
            found = _group_norm(found, flow)
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
        op = "_GroupNorm" if "axes" in attrs else "_LayerNorm"
        groups.append((op, members, attrs, x, out))
    for op, members, attrs, x, out in groups:
        ordered = [st for st in plan.steps if id(st) in {id(m) for m in members}]
        replace(plan, ordered, fused_step(op, ordered, (x,), out,
                                          {k: v for k, v in attrs.items() if v is not None}))
    return plan
