"""sink_moves: the steps that move a convolution's result around (a 1-D convolution's
Squeeze, a dilated one's BatchToSpaceND) placed after the channel-wise steps reading it.

TF computes a 1-D convolution (Keras' Conv1D, SeparableConv1D, DepthwiseConv1D,
Conv1DTranspose) as a 2-D one: ``ExpandDims``, ``Conv2D`` (or ``DepthwiseConv2dNative``,
``Conv2DBackpropInput``), then a ``Squeeze`` of the added axis; a dilated convolution (Keras'
``dilation_rate``, 1-D and 2-D) as ``SpaceToBatchND``, the undilated convolution of the
phases, then ``BatchToSpaceND``. Keras adds the bias and activation after those, where
``fuse_conv``, which follows a convolution only into steps reading its result directly, could
not follow: each ran as a full-size pass (an audio model's Conv1D layers at batch 32: BiasAdd
0.9 ns and Relu 0.5 ns a value, against the fused epilogue's in-cache blocks).

Here, when such a mover (``_MOVERS``: a ``Squeeze`` of explicit spatial axes, or a
``BatchToSpaceND``) reads an NHWC convolution's result, through other movers, each value on the
way read by the next step alone, and the steps after it are elementwise (``_UNARY``), or
binary with a constant that is a scalar or a vector along the channels (1 in every dim but the
last, of at most the mover's rank), those steps read the mover's input instead and the mover
is placed after the last of them. Moving positions (squeezing axes of size 1, interleaving
phases, cropping) before or after such steps gives the same values: the channels stay last,
and each constant broadcasts the same way. Behind a Squeeze of one axis, a residual addition
(AddV2/Add, or Sub with the group's value first) of a value of exactly the group value's
recorded shape joins too, reading that value through an ExpandDims (a view): ``fuse_conv``
then adds it in its epilogue (a TCN's or a 1-D ResNet's skip connections). A step joins one
group only. Only one value may leave the group (read by another
step, fetched); the moved steps' values get new ids (with the mover's input's shape, where
``specialize`` recorded it). Run to a fixed point: a dilated 1-D convolution's BatchToSpaceND
sinks first, then its Squeeze. Steps are matched by op type, and only where each runs
tfdeploy's own numpy kernel.
"""

from __future__ import annotations

import math

import numpy as np

from tfdeploy.compiler.patterns import builtin, splice, step_index
from tfdeploy.compiler.plan import Plan, Step

_CONVS = ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput")
#: the steps that move: they rearrange positions (never channels) of a convolution's result
_MOVERS = ("Squeeze", "BatchToSpaceND")
#: elementwise steps of one input
_UNARY = ("Relu", "Relu6", "LeakyRelu", "Elu", "Selu", "Sigmoid", "Tanh", "_Gelu",
          "_RoundHalf", "Softplus", "Neg", "Abs", "Square")
#: a residual operand (of the group value's shape, expanded) may be added or subtracted
_RESIDUAL = ("AddV2", "Add", "Sub")
#: elementwise steps of two inputs (one may be a constant, see the module docstring)
_BINARY = ("BiasAdd", "AddV2", "Add", "Sub", "Mul", "RealDiv", "Maximum", "Minimum")


def squeezed_axes(st: Step, rank: int) -> tuple[int, ...] | None:
    """The axes (non-negative) a Squeeze of a rank-``rank`` NHWC tensor removes, if they are
    given and spatial (neither the batch nor the channels)."""
    dims = st.attrs.get("squeeze_dims")
    if not isinstance(dims, (list, tuple)) or not dims or len(st.ins) != 1 or \
            len(st.outs) != 1 or st.outs[0][0] != 0:
        return None
    try:
        axes = sorted({int(d) + rank if int(d) < 0 else int(d) for d in dims})
    except (TypeError, ValueError, OverflowError):
        return None
    if not all(0 < a < rank - 1 for a in axes):
        return None
    return tuple(axes)


def _channel_constant(c, rank: int) -> bool:
    """``c`` broadcasts along the channels only, against a channels-last tensor of ``rank``."""
    return isinstance(c, np.ndarray) and c.ndim <= rank and all(d == 1 for d in c.shape[:-1])


def _joins(st: Step, inside: set[int], constants, rank: int, same=None) -> bool:
    """Step ``st`` is elementwise over values in ``inside`` (and channel constants); or,
    with ``same(r, u)`` (a Squeeze of one axis), a residual addition of a value ``u`` inside
    and a value ``r`` of exactly its shape (which gets an ExpandDims)."""
    if not builtin(st) or len(st.outs) != 1 or st.outs[0][0] != 0:
        return False
    if same is not None and len(st.ins) == 2:  # (either side of an addition, Sub's first)
        a, b = st.ins
        for u, r, ops in ((a, b, _RESIDUAL), (b, a, ("AddV2", "Add"))):
            if st.op in ops and u in inside and r not in inside and r not in constants and \
                    same(r, u):
                return True
    if st.op in _UNARY:
        return len(st.ins) == 1 and st.ins[0] in inside
    if st.op not in _BINARY or len(st.ins) != 2:
        return False
    if st.op == "BiasAdd":
        fmt = st.attrs.get("data_format", "NHWC")
        if not isinstance(fmt, str) or fmt.startswith("NC") or st.ins[0] not in inside:
            return False
    if not any(v in inside for v in st.ins):
        return False
    return all(v in inside or _channel_constant(constants.get(v), rank) for v in st.ins)


def _source_rank(plan: Plan, k: int, readers, maker, pinned) -> int | None:
    """The rank of step ``k``'s result when ``k`` is a mover (``_MOVERS``) of an NHWC
    convolution's result, each value on the way read by the next step alone; else None."""
    steps = plan.steps
    chain, v, reader = [], steps[k].ins[0] if steps[k].ins else None, k
    while True:
        j = maker.get(v)
        if j is None or v in pinned or readers.get(v) != [reader]:
            return None
        st = steps[j]
        if not builtin(st):
            return None
        if st.op in _CONVS:
            if st.attrs.get("data_format", "NHWC") != "NHWC":
                return None
            break
        if st.op not in _MOVERS:
            return None
        chain.append(st)
        v, reader = st.ins[0], j
    rank = 4
    for st in [*reversed(chain), steps[k]]:  # (from the convolution on)
        if st.op == "Squeeze":
            axes = squeezed_axes(st, rank)
            if axes is None:
                return None
            rank -= len(axes)
        elif len(st.outs) != 1 or st.outs[0][0] != 0:
            return None
    return rank


def _moves(plan: Plan) -> list[tuple[int, list[int], int, int]]:
    """(mover step, the group's steps, the value leaving the group, the mover's rank) of
    every mover to sink."""
    steps, constants = plan.steps, plan.constants
    pinned = set(plan.fetch_values) | set(plan.feed_values)
    maker, readers = step_index(steps)
    moves, claimed = [], set()
    for k, st in enumerate(steps):
        if st.op not in _MOVERS or not builtin(st) or not st.ins:
            continue
        rank = _source_rank(plan, k, readers, maker, pinned)
        if rank is None:
            continue
        head = st.outs[0][1]
        inside, group = {head}, []
        same = _same_shape(plan) if st.op == "Squeeze" and \
            len(squeezed_axes(st, rank + 1) or ()) == 1 else None
        grew = True
        while grew:  # (the steps reading only the group's values and channel constants)
            grew = False
            for v in list(inside):
                for j in readers.get(v, ()):
                    if j not in group and j not in claimed and \
                            _joins(steps[j], inside, constants, rank, same):
                        group.append(j)
                        inside.add(steps[j].outs[0][1])
                        grew = True
        leaving = [v for v in inside
                   if v in pinned or any(j not in group for j in readers.get(v, ()))]
        if group and len(leaving) == 1 and leaving[0] != head:
            claimed.update(group)  # (a residual addition of two such groups joins one)
            moves.append((k, sorted(group), leaving[0], rank))
    return moves


#: a residual joins from this many values: below, a separate addition of two arrays still in
#: cache costs less than the fused epilogue's (a TCN's 1000 x 32 maps at batch 1: 1.02x its
#: time with them joined; at batch 8 and 32, 0.96x and 0.97x)
RESIDUAL_VALUES = 1 << 16


def _same_shape(plan: Plan):
    """``same(r, u)``: values ``r`` and ``u`` have one recorded shape, of at least
    ``RESIDUAL_VALUES`` values."""
    shapes = plan.shapes

    def same(r: int, u: int) -> bool:
        s = shapes.get(r)
        return s is not None and s == shapes.get(u) and \
            all(isinstance(d, int) for d in s) and math.prod(s) >= RESIDUAL_VALUES
    return same


def run(plan: Plan, ctx=None) -> Plan:
    """The plan with each such mover placed after the channel-wise steps reading it."""
    for _ in range(2 * len(_MOVERS)):  # (a 1-D dilated convolution has two movers to sink)
        moves = _moves(plan)
        if not moves:
            break
        _apply(plan, moves)
    return plan


def _apply(plan: Plan, moves) -> None:
    steps = plan.steps
    maker, _ = step_index(steps)
    drop, after, before = set(), {}, {}
    for k, group, tail, rank in moves:
        mover = steps[k]
        src, head = mover.ins[0], mover.outs[0][1]
        new = {head: src}  # (the moved steps read the mover's input)
        shape = plan.shapes.get(src)  # (each moved step keeps its chain input's shape)
        for j in group:
            v = steps[j].outs[0][1]
            new[v] = plan.new_value()
            if shape is not None:
                plan.shapes[new[v]] = shape
            if v in plan.refs:
                plan.refs[new[v]] = plan.refs[v]
        for j in group:
            st = steps[j]
            for r in st.ins:  # (a residual operand: expanded to the mover's input's rank)
                if r not in new and r not in plan.constants:
                    before.setdefault(j, []).append(_expanded(plan, r, new, mover, rank))
            steps[j] = Step(st.op, st.name, tuple(new.get(v, v) for v in st.ins),
                            ((0, new[st.outs[0][1]]),), st.attrs, st.members)
        drop.add(k)
        after[maker[tail]] = Step(mover.op, mover.name, (new[tail], *mover.ins[1:]),
                                  ((0, tail),), mover.attrs)
    splice(plan, drop, {k: [*before.get(k, ()), steps[k], *([after[k]] if k in after else ())]
                        for k in {*before, *after}})


def _expanded(plan: Plan, r: int, new: dict, mover: Step, rank: int) -> Step:
    """The ExpandDims of residual operand ``r`` by the axis Squeeze ``mover`` removes (its
    result recorded in ``new``)."""
    (axis,) = squeezed_axes(mover, rank + 1)
    c, v = plan.new_value(), plan.new_value()
    plan.constants[c] = np.array(axis, np.int32)
    shape = plan.shapes.get(r)
    if shape is not None:
        plan.shapes[v] = (*shape[:axis], 1, *shape[axis:])
    new[r] = v
    return Step("ExpandDims", mover.name, (r, c), ((0, v),),
                {"T": mover.attrs.get("T"), "Tdim": "int32"})
