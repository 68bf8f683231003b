"""pad_into_conv: a zero ``Pad`` of the spatial dims folded into the convolution reading it.

Keras writes a strided "valid" convolution after a ZeroPadding2D layer (MobileNetV2's and
EfficientNet's stride-2 depthwise convolutions, ResNet's stem) as ``Pad`` then a VALID
``Conv2D``/``DepthwiseConv2dNative``: a full copy of the feature map, which the convolution's
kernel then pads again. When the padded value has no other reader (and is neither fetched
nor fed), the convolution reads the ``Pad``'s input with EXPLICIT padding instead (its own
EXPLICIT pads plus the Pad's), which TF defines to compute the same values. A 1-D
convolution's Pad of [N, W, C] (Keras' causal Conv1D), read by the ExpandDims at axis 1 TF
puts before the 2-D convolution, folds the same way (the ExpandDims then reads the Pad's
input). SAME convolutions are left alone (their padding depends on the input size). Only a
constant ``Pad``/``PadV2`` of zeros on the spatial dims, with both ops running tfdeploy's own
kernels (``registry.runs_builtin``), is folded.
"""

from __future__ import annotations

import numpy as np

from tfdeploy import registry
from tfdeploy.compiler.plan import Plan, Step

_PADS = ("Pad", "PadV2")
_CONVS = ("Conv2D", "DepthwiseConv2dNative")


def pad_pairs(st: Step, constants, rank: int = 4) -> list[list[int]] | None:
    """The (before, after) pairs of a constant zero Pad/PadV2 of a rank-``rank`` tensor, or
    None."""
    if len(st.outs) != 1 or st.outs[0][0] != 0 or len(st.ins) != (2 if st.op == "Pad" else 3):
        return None
    if any(v not in constants for v in st.ins[1:]) or st.ins[0] in constants:
        return None
    p = constants[st.ins[1]]
    if not isinstance(p, np.ndarray) or p.dtype.kind not in "iu" or p.shape != (rank, 2):
        return None
    if st.op == "PadV2":
        c = constants[st.ins[2]]
        if not isinstance(c, np.ndarray) or c.size != 1 or c.reshape(()) != 0:
            return None
    pairs = p.tolist()
    if any(v < 0 for pr in pairs for v in pr):
        return None
    return pairs


def _conv_pads(conv: Step, pairs: list[list[int]]) -> list[int] | None:
    """The convolution's ``explicit_paddings`` once the Pad's ``pairs`` are added, or None
    when they pad the batch or channels, or the convolution is not VALID/EXPLICIT."""
    a = conv.attrs
    fmt, padding = a.get("data_format", "NHWC"), a.get("padding")
    if fmt not in ("NHWC", "NCHW") or padding not in ("VALID", "EXPLICIT"):
        return None
    spatial = (2, 3) if fmt == "NCHW" else (1, 2)
    if any(pairs[d] != [0, 0] for d in range(4) if d not in spatial):
        return None
    own = [0] * 8
    if padding == "EXPLICIT":
        own = [int(v) for v in a.get("explicit_paddings", ())]
        if len(own) != 8:
            return None
    for d in spatial:
        own[2 * d] += int(pairs[d][0])
        own[2 * d + 1] += int(pairs[d][1])
    return own


def _expanded(st: Step, steps, readers, constants, pinned):
    """(the pairs as a rank-4 Pad's, the ExpandDims' output) when ``st`` is a constant zero
    Pad of a rank-3 [N, W, C] value whose only reader is an ExpandDims at axis 1 (TF's 1-D
    convolution: Keras' causal Conv1D pads so): the axis added is unpadded; else None."""
    pairs = pad_pairs(st, constants, 3)
    out = st.outs[0][1] if st.outs else None
    r = readers.get(out, ())
    if pairs is None or out in pinned or len(r) != 1:
        return None
    ed = steps[r[0]]
    axis = constants.get(ed.ins[1]) if ed.op == "ExpandDims" and len(ed.ins) == 2 else None
    if not registry.runs_builtin("ExpandDims") or not isinstance(axis, np.ndarray) or \
            axis.size != 1 or axis.dtype.kind not in "iu" or \
            int(axis.reshape(())) not in (1, -3) or len(ed.outs) != 1 or ed.outs[0][0] != 0:
        return None
    return [pairs[0], [0, 0], pairs[1], pairs[2]], ed.outs[0][1]


def run(plan: Plan, ctx=None) -> Plan:
    """The plan with each foldable Pad removed and its convolution padding explicitly."""
    steps, constants = plan.steps, plan.constants
    pinned = set(plan.fetch_values) | set(plan.feed_values)
    readers: dict[int, list[int]] = {}
    for k, st in enumerate(steps):
        for v in st.ins:
            readers.setdefault(v, []).append(k)
    drop: set[int] = set()
    for k, st in enumerate(steps):
        if st.op not in _PADS or not registry.runs_builtin(st.op):
            continue
        pairs = pad_pairs(st, constants)
        out = st.outs[0][1] if st.outs else None
        r = readers.get(out, ())
        if pairs is None:  # a 1-D convolution's: Pad [N, W, C], ExpandDims at 1, the conv
            pairs = _expanded(st, steps, readers, constants, pinned)
            if pairs is not None:
                out, r = pairs[1], readers.get(pairs[1], ())
                pairs = pairs[0]
        if pairs is None or out in pinned or len(r) != 1:
            continue
        conv = steps[r[0]]
        if conv.op not in _CONVS or not registry.runs_builtin(conv.op) or \
                len(conv.ins) != 2 or conv.ins[0] != out or conv.ins[1] == out:
            continue
        explicit = _conv_pads(conv, pairs)
        if explicit is None:
            continue
        attrs = {**conv.attrs, "padding": "EXPLICIT", "explicit_paddings": explicit}
        src = st.ins[0]
        if out != st.outs[0][1]:  # (the ExpandDims now reads the Pad's input)
            ed = readers[st.outs[0][1]][0]
            steps[ed] = Step("ExpandDims", steps[ed].name, (src, steps[ed].ins[1]),
                             steps[ed].outs, steps[ed].attrs)
            xs = plan.shapes.get(src)
            if xs is not None:
                plan.shapes[out] = (xs[0], 1, *xs[1:])
            else:
                plan.shapes.pop(out, None)
            src = out
        steps[r[0]] = Step(conv.op, conv.name, (src, conv.ins[1]), conv.outs, attrs)
        drop.add(k)
    if drop:
        plan.steps = [st for k, st in enumerate(steps) if k not in drop]
    return plan
