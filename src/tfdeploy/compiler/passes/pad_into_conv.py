"""pad_into_conv: a zero ``Pad`` of the spatial dims folded into the convolution reading it.

Keras writes a strided "valid" convolution after a ZeroPadding2D layer (MobileNetV2's and
EfficientNet's stride-2 depthwise convolutions, ResNet's stem) as ``Pad`` then a VALID
``Conv2D``/``DepthwiseConv2dNative``: a full copy of the feature map, which the convolution's
kernel then pads again. When the padded value has no other reader (and is neither fetched
nor fed), the convolution reads the ``Pad``'s input with EXPLICIT padding instead (its own
EXPLICIT pads plus the Pad's), which TF defines to compute the same values. SAME convolutions
are left alone (their padding depends on the input size). Only a constant ``Pad``/``PadV2``
of zeros on the spatial dims, with both ops running tfdeploy's own kernels
(``registry.runs_builtin``), is folded.
"""

from __future__ import annotations

import numpy as np

from tfdeploy import registry
from tfdeploy.compiler.plan import Plan, Step

_PADS = ("Pad", "PadV2")
_CONVS = ("Conv2D", "DepthwiseConv2dNative")


def _pad_pairs(st: Step, constants) -> list[list[int]] | None:
    """The (before, after) pairs of a constant zero Pad/PadV2 of a rank-4 tensor, or None."""
    if len(st.outs) != 1 or st.outs[0][0] != 0 or len(st.ins) != (2 if st.op == "Pad" else 3):
        return None
    if any(v not in constants for v in st.ins[1:]) or st.ins[0] in constants:
        return None
    p = constants[st.ins[1]]
    if not isinstance(p, np.ndarray) or p.dtype.kind not in "iu" or p.shape != (4, 2):
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
        pairs = _pad_pairs(st, constants)
        out = st.outs[0][1] if st.outs else None
        r = readers.get(out, ())
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
        steps[r[0]] = Step(conv.op, conv.name, (st.ins[0], conv.ins[1]), conv.outs, attrs)
        drop.add(k)
    if drop:
        plan.steps = [st for k, st in enumerate(steps) if k not in drop]
    return plan
