"""sink_squeeze: the Squeeze after a 1-D convolution moved past the channel-wise steps after it.

TF computes a 1-D convolution (Keras' Conv1D, SeparableConv1D, DepthwiseConv1D,
Conv1DTranspose) as a 2-D one: ``ExpandDims``, ``Conv2D`` (or ``DepthwiseConv2dNative``,
``Conv2DBackpropInput``), then a ``Squeeze`` of the added axis, and Keras adds the bias and
activation after the ``Squeeze``. ``fuse_conv`` follows a convolution only into steps that read
its result directly, so those chains stayed unfused: a full-size pass for each step (an audio
model's Conv1D layers at batch 32: BiasAdd 0.9 ns and Relu 0.5 ns a value, against the
fused epilogue's in-cache blocks).

Here, when a ``Squeeze`` of explicit spatial axes reads an NHWC convolution's result (its only
reader) and the steps after it are elementwise (``_UNARY``), or binary with a constant that
is a scalar or a vector along the channels (1 in every dim but the last, of at most the
squeezed rank), those steps read the convolution's result instead and the ``Squeeze`` moves
after the last of them. Squeezing axes of size 1 before or after such steps gives the same
values: the channels stay last, and each constant broadcasts the same way against either
rank. Only one value may leave the group (read by another step, fetched); the moved steps'
values get new ids (their shapes, where ``specialize`` recorded them, with the axes back).
Steps are matched by op type, and only where each runs tfdeploy's own numpy kernel.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.compiler.patterns import builtin
from tfdeploy.compiler.plan import Plan, Step

_CONVS = ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput")
#: elementwise steps of one input
_UNARY = ("Relu", "Relu6", "LeakyRelu", "Elu", "Selu", "Sigmoid", "Tanh", "_Gelu",
          "_RoundHalf", "Softplus", "Neg", "Abs", "Square")
#: elementwise steps of two inputs (one may be a constant, see the module docstring)
_BINARY = ("BiasAdd", "AddV2", "Add", "Sub", "Mul", "RealDiv", "Maximum", "Minimum")


def _squeezed_axes(st: Step, rank: int) -> tuple[int, ...] | None:
    """The axes (non-negative) a Squeeze of a rank-``rank`` NHWC tensor removes, if they are
    given and spatial (neither the batch nor the channels)."""
    dims = st.attrs.get("squeeze_dims")
    if not dims or len(st.ins) != 1 or len(st.outs) != 1 or st.outs[0][0] != 0:
        return None
    try:
        axes = sorted({int(d) + rank if int(d) < 0 else int(d) for d in dims})
    except (TypeError, ValueError):
        return None
    if not all(0 < a < rank - 1 for a in axes):
        return None
    return tuple(axes)


def _channel_constant(c, rank: int) -> bool:
    """``c`` broadcasts along the channels only, against a channels-last tensor of ``rank``."""
    return isinstance(c, np.ndarray) and c.ndim <= rank and all(d == 1 for d in c.shape[:-1])


def _joins(st: Step, inside: set[int], constants, rank: int) -> bool:
    """Step ``st`` is elementwise over values in ``inside`` (and channel constants)."""
    if not builtin(st) or len(st.outs) != 1 or st.outs[0][0] != 0:
        return False
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


def run(plan: Plan, ctx=None) -> Plan:
    """The plan with each such Squeeze moved after the channel-wise steps reading it."""
    steps, constants = plan.steps, plan.constants
    pinned = set(plan.fetch_values) | set(plan.feed_values)
    readers: dict[int, list[int]] = {}
    maker: dict[int, int] = {}
    for k, st in enumerate(steps):
        for v in st.ins:
            readers.setdefault(v, []).append(k)
        for _, v in st.outs:
            maker[v] = k
    moves = []
    for k, st in enumerate(steps):
        if st.op != "Squeeze" or not builtin(st):
            continue
        src = st.ins[0] if len(st.ins) == 1 else None
        conv = steps[maker[src]] if src in maker else None
        if conv is None or conv.op not in _CONVS or not builtin(conv) or \
                conv.attrs.get("data_format", "NHWC") != "NHWC" or src in pinned or \
                readers.get(src) != [k]:
            continue
        axes = _squeezed_axes(st, 4)
        if axes is None:
            continue
        rank = 4 - len(axes)
        head = st.outs[0][1]
        inside, group = {head}, []
        grew = True
        while grew:  # (the steps reading only the group's values and channel constants)
            grew = False
            for v in list(inside):
                for j in readers.get(v, ()):
                    if j not in group and _joins(steps[j], inside, constants, rank):
                        group.append(j)
                        inside.add(steps[j].outs[0][1])
                        grew = True
        leaving = [v for v in inside
                   if v in pinned or any(j not in group for j in readers.get(v, ()))]
        if not group or len(leaving) != 1 or leaving[0] == head:
            continue
        moves.append((k, axes, sorted(group), leaving[0]))
    if not moves:
        return plan
    drop, after = set(), {}
    for k, axes, group, tail in moves:
        sq = steps[k]
        head = sq.outs[0][1]
        new = {head: sq.ins[0]}  # (the moved steps read the convolution's own result)
        for j in group:
            v = steps[j].outs[0][1]
            new[v] = plan.new_value()
            shape = plan.shapes.get(v)
            if shape is not None:
                shape = list(shape)
                for a in axes:
                    shape.insert(a, 1)
                plan.shapes[new[v]] = tuple(shape)
            if v in plan.refs:
                plan.refs[new[v]] = plan.refs[v]
        for j in group:
            st = steps[j]
            steps[j] = Step(st.op, st.name, tuple(new.get(v, v) for v in st.ins),
                            ((0, new[st.outs[0][1]]),), st.attrs, st.members)
        drop.add(k)
        after[maker[tail]] = Step("Squeeze", sq.name, (new[tail],), ((0, tail),), sq.attrs)
    out = []
    for k, st in enumerate(steps):
        if k not in drop:
            out.append(st)
        if k in after:
            out.append(after[k])
    plan.steps = out
    return plan
