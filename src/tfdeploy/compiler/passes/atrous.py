"""atrous: ``SpaceToBatchND``, an undilated convolution and ``BatchToSpaceND`` as one dilated
convolution.

TF computes a dilated convolution (Keras' ``dilation_rate`` on Conv1D, Conv2D,
DepthwiseConv2D, SeparableConv1D/2D) by moving the input's phases into the batch
(``SpaceToBatchND`` with block b, padding the spatial dims by [p0, p1]), convolving them
VALID, and interleaving the results back (``BatchToSpaceND``, cropping [c0, c1]); a 1-D one
has ``ExpandDims`` before and ``Squeeze`` after the 2-D convolution, and a causal one a
``Pad`` before. Output position r of that is the convolution dilated by b of the input padded
by [p0 - c0, p1 - c1]: here, when the pads and crops are constants (a plan specialized to its
input's shape folds them) with p - c >= 0, the block divides the padded size, and each value
on the way has that one reader, the steps become the dilated convolution with EXPLICIT
padding (a zero ``Pad`` of the spatial dims before folds in too). Two copies of the map
fewer, and the bias and activation after it fuse (``sink_moves``, ``fuse_conv``).

A 2-D ``Conv2D`` keeps its phases when F(2x2, 3x3) would run them (``winograd.applies`` on a
phase): Winograd takes no dilation, and saves more than the copies cost. Steps are matched by
op type, and only where each runs tfdeploy's own numpy kernel.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.compiler.passes.pad_into_conv import pad_pairs
from tfdeploy.compiler.passes.sink_moves import squeezed_axes
from tfdeploy.compiler.patterns import SoleReaders, const_ints, rewrite_each
from tfdeploy.compiler.plan import Plan, Step

_CONVS = ("Conv2D", "DepthwiseConv2dNative")
_PADS = ("Pad", "PadV2")


def _zero_pad(plan: Plan, st: Step, rank: int, spatial: int) -> list | None:
    """The (before, after) pairs of the spatial dims of a constant zero Pad/PadV2 of a
    rank-``rank`` value padding nothing else (``pad_into_conv.pad_pairs``), or None."""
    pairs = pad_pairs(st, plan.constants, rank)
    if pairs is None or pairs[0] != [0, 0] or any(pr != [0, 0] for pr in pairs[1 + spatial:]):
        return None
    return pairs[1:1 + spatial]


def _steps(flow: SoleReaders, k: int):
    """(conv, ExpandDims, Squeeze, SpaceToBatchND) step indices (None for the 1-D steps of a
    2-D convolution) of the dilated convolution ending at BatchToSpaceND step ``k``, or
    None."""
    steps = flow.plan.steps
    b2s = steps[k]
    if len(b2s.ins) != 3 or len(b2s.outs) != 1 or b2s.outs[0][0] != 0:
        return None
    y = b2s.ins[0]
    sq = flow.only(y, "Squeeze", k)
    conv_k = flow.only(steps[sq].ins[0] if sq is not None else y, _CONVS,
                       sq if sq is not None else k)
    if conv_k is None:
        return None
    conv = steps[conv_k]
    a = conv.attrs
    if len(conv.ins) != 2 or a.get("data_format", "NHWC") != "NHWC" or \
            a.get("padding") != "VALID" or list(a.get("strides", ())) != [1, 1, 1, 1] or \
            list(a.get("dilations", [1, 1, 1, 1])) != [1, 1, 1, 1]:
        return None
    ed = None
    if sq is not None:  # 1-D: ExpandDims -> conv -> Squeeze of the added axis
        ed = flow.only(conv.ins[0], "ExpandDims", conv_k)
        axis = const_ints(flow.plan, steps[ed].ins[1], ()) if ed is not None else None
        if ed is None or axis not in (1, -3) or squeezed_axes(steps[sq], 4) != (1,):
            return None
    s2b_out = steps[ed].ins[0] if ed is not None else conv.ins[0]
    s2b_k = flow.only(s2b_out, "SpaceToBatchND", ed if ed is not None else conv_k)
    if s2b_k is None or len(steps[s2b_k].ins) != 3:
        return None
    return conv_k, ed, sq, s2b_k


def _match(flow: SoleReaders, k: int):
    """The rewrite of the dilated convolution ending at BatchToSpaceND step ``k``: (steps
    replaced, new steps), or None."""
    found = _steps(flow, k)
    if found is None:
        return None
    plan = flow.plan
    steps = plan.steps
    conv_k, ed, sq, s2b_k = found
    b2s, conv, s2b = steps[k], steps[conv_k], steps[s2b_k]
    spatial = 1 if sq is not None else 2
    w = plan.constants.get(conv.ins[1])
    if not isinstance(w, np.ndarray) or w.ndim != 4 or spatial == 1 and w.shape[0] != 1:
        return None
    block = const_ints(plan, s2b.ins[1], (spatial,))
    pads = const_ints(plan, s2b.ins[2], (spatial, 2))
    crops = const_ints(plan, b2s.ins[2], (spatial, 2))
    if block is None or pads is None or crops is None or \
            const_ints(plan, b2s.ins[1], (spatial,)) != block or min(block) < 1:
        return None
    x, replaced = s2b.ins[0], [s2b_k, conv_k, k] + [j for j in (ed, sq) if j is not None]
    pad_k = flow.only(x, _PADS, s2b_k)
    if pad_k is not None:
        extra = _zero_pad(plan, steps[pad_k], spatial + 2, spatial)
        if extra is not None:
            pads = [[p[0] + e[0], p[1] + e[1]] for p, e in zip(pads, extra)]
            x = steps[pad_k].ins[0]
            replaced.append(pad_k)
    explicit = [[p[0] - c[0], p[1] - c[1]] for p, c in zip(pads, crops)]
    xs = plan.shapes.get(x)
    if xs is None or len(xs) != spatial + 2 or any(p < 0 for pr in explicit for p in pr):
        return None
    if any(d is None or (d + p[0] + p[1]) % b for d, p, b in zip(xs[1:], pads, block)):
        return None  # (SpaceToBatchND raises its own error on such a shape)
    phase = plan.shapes.get(s2b.outs[0][1])
    from tfdeploy.kernels.nn import winograd  # (compiling loads the kernels anyway)

    if conv.op == "Conv2D" and spatial == 2 and (phase is None or winograd.applies(
            phase, w.shape, w.dtype, [1, 1], [1, 1], ((0, 0), (0, 0)))):
        return None
    if spatial == 1:
        explicit, block = [[0, 0], *explicit], [1, *block]
    attrs = {**conv.attrs, "padding": "EXPLICIT", "dilations": [1, *block, 1],
             "explicit_paddings": [0, 0, *(p for pr in explicit for p in pr), 0, 0]}
    return replaced, _rewritten(plan, x, xs, (ed, conv_k, sq), b2s.outs[0][1], attrs)


def _rewritten(plan: Plan, x: int, xs, parts, out: int, attrs: dict) -> list[Step]:
    """The dilated convolution's steps: [ExpandDims,] the convolution of ``x`` (of shape
    ``xs``) with ``attrs``, [Squeeze,] making ``out``; ``parts``: the old ExpandDims, conv
    and Squeeze step indices (None in 2-D)."""
    steps = plan.steps
    ed, conv_k, sq = parts
    conv = steps[conv_k]
    new, src = [], x
    if ed is not None:
        src = plan.new_value()
        new.append(Step("ExpandDims", steps[ed].name, (x, steps[ed].ins[1]), ((0, src),),
                        steps[ed].attrs))
        plan.shapes[src] = (xs[0], 1, *xs[1:])
    y4 = out if sq is None else plan.new_value()
    new.append(Step(conv.op, conv.name, (src, conv.ins[1]), ((0, y4),), attrs))
    if sq is not None:
        ys = plan.shapes.get(out)
        if ys is not None:
            plan.shapes[y4] = (ys[0], 1, *ys[1:])
        new.append(Step("Squeeze", steps[sq].name, (y4,), ((0, out),), steps[sq].attrs))
    return new


def run(plan: Plan, ctx=None) -> Plan:
    """The plan with each such dilated convolution in one step."""
    return rewrite_each(plan, "BatchToSpaceND", _match)
