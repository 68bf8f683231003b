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

Convolutions alike: several ``Conv2D`` (NHWC) of one input by constant filters of one size,
with the same strides, padding and dilations (Keras 3's ConvLSTM2D convolves its input and
its state once per gate; Inception's branches open with 1x1 convolutions of one input;
detection heads) become one convolution by the filters concatenated along their output
channels: the input's patches are copied once and the product is wider. The channel-wise
steps every branch applies next, the same in each (a constant per-channel Mul, Add or Sub,
BiasAdd, the same activation: a folded batch norm and its ReLU), are concatenated too, so
that ``fuse_conv`` still makes them the convolution's epilogue; the ``SplitV`` comes where
the branches part. A ConvLSTM2D step (4 + 4 convolutions of 32 x 32 maps) went from 0.98 to
0.40 ms.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.compiler.patterns import Dataflow, builtin, other_input
from tfdeploy.compiler.plan import Plan, Step
from tfdeploy.dtypes import from_numpy
from tfdeploy.runtime.constants import derived

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


def _joined(weights: list[np.ndarray], axis: int) -> np.ndarray:
    """The weights concatenated along ``axis``, read-only; kept with the first of them
    (``runtime.constants.derived``: every input shape's plan shares it), keyed by the others'
    identities, which the kept entry holds so that no other array can take their ids."""
    def join():
        w = np.concatenate(weights, axis=axis)
        w.setflags(write=False)
        return tuple(weights[1:]), w
    key = ("joined", axis, tuple(id(w) for w in weights[1:]))
    return derived(weights[0], key, join)[1]


def _fuse(plan: Plan, flow: Dataflow, x: int, group) -> None:
    dt = group[0][1].dtype
    biases = [_bias(flow, st.outs[0][1], w.shape[1], dt) for st, w in group]
    if not all(b is not None for b in biases):
        biases = [None] * len(group)
    weight = _joined([w for _, w in group], 1)
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


# -- convolutions ------------------------------------------------------------------------------

#: channel-wise steps with a constant per-channel operand, and where the branch's value goes
_CHANNEL_BINARY = {"Mul": (0, 1), "AddV2": (0, 1), "Add": (0, 1), "Sub": (0,),
                   "BiasAdd": (0,)}
_CHANNEL_UNARY = ("Relu", "Relu6", "Sigmoid", "Tanh", "Elu", "Selu", "Softplus", "LeakyRelu")


def _conv_weight(st: Step, flow: Dataflow) -> np.ndarray | None:
    """The constant [KH, KW, C, N] filter of a built-in NHWC ``Conv2D`` ``st``, or None."""
    if st.op != "Conv2D" or len(st.ins) != 2 or len(st.outs) != 1 or not builtin(st) or \
            st.attrs.get("data_format", "NHWC") != "NHWC":
        return None
    w = flow.const(st.ins[1])
    if w is None or w.ndim != 4 or w.dtype.kind != "f" or not w.shape[3]:
        return None
    return w


def _conv_key(st: Step, w: np.ndarray) -> tuple:
    a = st.attrs
    return (w.shape[:3], w.dtype, tuple(a.get("strides", ())), a.get("padding"),
            tuple(a.get("explicit_paddings", ())), tuple(a.get("dilations", (1, 1, 1, 1))))


def _channel_step(flow: Dataflow, y: int, n: int, dtype):
    """The step channel-wise on ``y`` (its only reader) with its description: ("binary", op,
    position of ``y``, the per-channel vector) or ("unary", op, attrs); else None."""
    st = flow.only_reader(y)
    if st is None or not builtin(st) or len(st.outs) != 1 or \
            flow.shape(st.outs[0][1]) != flow.shape(y):
        return None
    if st.op in _CHANNEL_UNARY and st.ins == (y,):
        return st, ("unary", st.op, tuple(sorted((k, repr(v)) for k, v in st.attrs.items())))
    sides = _CHANNEL_BINARY.get(st.op)
    if sides is None or len(st.ins) != 2 or st.ins.count(y) != 1 or \
            st.ins.index(y) not in sides:
        return None
    if st.op == "BiasAdd" and st.attrs.get("data_format", "NHWC") != "NHWC":
        return None
    c = flow.const(st.ins[1 - st.ins.index(y)])
    if c is None or c.dtype != dtype or c.size != n or c.shape[-1:] != (n,) or c.ndim > 4:
        return None
    return st, ("binary", st.op, st.ins.index(y), c.reshape(n))


def _conv_groups(flow: Dataflow, x: int) -> list[list[tuple[Step, np.ndarray]]]:
    """The convolutions of ``x`` by constant filters, grouped by filter size and attributes
    (groups of two or more)."""
    groups: dict[tuple, list] = {}
    for st in flow.readers.get(x, ()):
        if st.ins and st.ins[0] == x and (w := _conv_weight(st, flow)) is not None:
            groups.setdefault(_conv_key(st, w), []).append((st, w))
    return [g for g in groups.values() if len(g) >= 2]


def _fuse_convs(plan: Plan, flow: Dataflow, x: int, group) -> None:
    dt = group[0][1].dtype
    sizes = [w.shape[3] for _, w in group]
    # the channel-wise steps all branches share, in order, until they part
    chains: list[list[tuple[Step, tuple]]] = [[] for _ in group]
    ends = [st.outs[0][1] for st, _ in group]
    while True:
        nxt = [_channel_step(flow, y, n, dt) for y, n in zip(ends, sizes)]
        if any(s is None for s in nxt) or \
                len({d[:3] if d[0] == "binary" else d for _, d in nxt}) != 1:
            break
        for chain, s in zip(chains, nxt):
            chain.append(s)
        ends = [s.outs[0][1] for s, _ in nxt]
    weight = _joined([w for _, w in group], 3)
    first = min(plan.steps.index(st) for st, _ in group)
    name, t = group[0][0].name, from_numpy(dt)
    shape = flow.shape(group[0][0].outs[0][1])
    wide = None if shape is None else tuple(shape[:-1]) + (weight.shape[3],)

    def value(c=None) -> int:
        v = plan.new_value()
        if c is not None:
            plan.constants[v] = c
        elif wide is not None:
            plan.shapes[v] = wide
        return v

    y = value()
    new = [Step("Conv2D", name, (x, value(weight)), ((0, y),), dict(group[0][0].attrs))]
    for k, (st0, d) in enumerate(chains[0]):
        z = value()
        if d[0] == "unary":
            new.append(Step(st0.op, st0.name, (y,), ((0, z),), dict(st0.attrs)))
        else:
            c = np.concatenate([chain[k][1][3] for chain in chains])
            c.setflags(write=False)
            ins = (y, value(c)) if d[2] == 0 else (value(c), y)
            new.append(Step(st0.op, st0.name, ins, ((0, z),), dict(st0.attrs)))
        y = z
    sv, av = value(np.array(sizes, np.int32)), value(np.array(-1, np.int32))
    new.append(Step("SplitV", name, (y, sv, av), tuple(enumerate(ends)),
                    {"num_split": len(group), "T": t}))
    drop = {id(st) for st, _ in group} | {id(s) for chain in chains for s, _ in chain}
    plan.steps = [s for s in plan.steps[:first] if id(s) not in drop] + new + \
        [s for s in plan.steps[first:] if id(s) not in drop]


def _split_sizes(flow: Dataflow, st: Step) -> tuple | None:
    """(sizes, axis) of a built-in SplitV along the last axis into known sizes, or None."""
    if st.op != "SplitV" or len(st.ins) != 3 or not builtin(st):
        return None
    sizes, axis = flow.const(st.ins[1]), flow.const(st.ins[2])
    if sizes is None or axis is None or axis.size != 1 or int(axis.reshape(-1)[0]) != -1 or \
            sizes.ndim != 1 or np.any(sizes < 0) or len(st.outs) != sizes.size:
        return None
    return tuple(int(v) for v in sizes)


def _channels(flow: Dataflow, v: int) -> int | None:
    """How many channels (last dim) ``v`` has, when its producers say so: a Conv2D by a
    constant filter, through channel-wise steps by per-channel constants of as many; or its
    known shape. None if unknown."""
    shape = flow.shape(v)
    if shape is not None:
        return shape[-1] if len(shape) else None
    st = flow.step(v)
    if st is None or len(st.outs) != 1:
        return None
    if st.op == "Conv2D" and (w := _conv_weight(st, flow)) is not None:
        return w.shape[3]
    if st.op in _CHANNEL_UNARY and len(st.ins) == 1:
        return _channels(flow, st.ins[0])
    if st.op in _CHANNEL_BINARY and len(st.ins) == 2:
        for i in (0, 1):
            c = flow.const(st.ins[1 - i])
            if c is not None and flow.const(st.ins[i]) is None:
                n = _channels(flow, st.ins[i])
                return n if c.ndim <= 4 and c.shape[-1:] == (n,) and c.size == n else None
    return None


def _merge_split_adds(plan: Plan) -> None:
    """``AddV2(SplitV(a)[g], SplitV(b)[g])`` for every part g, the splits alike: as
    ``SplitV(AddV2(a, b))``, one addition instead of one per part, on whole arrays instead of
    strided views (a ConvLSTM2D gate's input and state convolutions: the addition then joins
    the input convolution's epilogue)."""
    flow = Dataflow(plan)
    for s1 in list(plan.steps):
        sizes = _split_sizes(flow, s1)
        if sizes is None or any(i != g for g, (i, _) in enumerate(s1.outs)):
            continue
        adds, s2 = [], None
        for g, (_, v) in enumerate(s1.outs):
            add = flow.only_reader(v)
            o = other_input(add, v)
            if add is None or add.op not in ("AddV2", "Add") or not builtin(add) or o is None \
                    or flow.only_reader(o) is not add or len(add.outs) != 1:
                break
            p = flow.producer.get(o)
            if p is None or p[1] != g or (s2 is not None and p[0] is not s2):
                break
            s2 = p[0]
            adds.append(add)
        else:
            # (both wholes must have the parts' channels: a whole that would broadcast in
            # the addition makes its own SplitV fail unmerged, and must still)
            if s2 is None or s2 is s1 or _split_sizes(flow, s2) != sizes or \
                    s1.attrs.get("T") != s2.attrs.get("T") or \
                    not _channels(flow, s1.ins[0]) == _channels(flow, s2.ins[0]) == sum(sizes):
                continue
            z = plan.new_value()
            if s1.ins[0] in plan.shapes:
                plan.shapes[z] = plan.shapes[s1.ins[0]]
            k = max(plan.steps.index(s1), plan.steps.index(s2))
            merged = [Step(adds[0].op, adds[0].name, (s1.ins[0], s2.ins[0]), ((0, z),),
                           dict(adds[0].attrs)),
                      Step("SplitV", s1.name, (z,) + s1.ins[1:],
                           tuple((g, a.outs[0][1]) for g, a in enumerate(adds)),
                           dict(s1.attrs))]
            drop = {id(s1), id(s2)} | {id(a) for a in adds}
            plan.steps = [st for st in plan.steps[:k + 1] if id(st) not in drop] + merged + \
                [st for st in plan.steps[k + 1:] if id(st) not in drop]
            flow = Dataflow(plan)


def run(plan: Plan, ctx=None) -> Plan:
    shaped = bool(plan.shapes)  # (the products need shapes; the convolutions do not: a
    if shaped:                  # loop body, compiled for any shape, has their gates)
        _bias_before_reshape(plan)
    flow = Dataflow(plan)
    for x in list(flow.readers):
        group = _group(plan, flow, x) if shaped else None
        if group is not None:
            _fuse(plan, flow, x, group)
            flow = Dataflow(plan)
        for group in _conv_groups(flow, x):
            _fuse_convs(plan, flow, x, group)
            flow = Dataflow(plan)
    _merge_split_adds(plan)
    return plan
