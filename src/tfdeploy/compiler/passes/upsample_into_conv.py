"""upsample_into_conv: a nearest-neighbour upsampling by whole factors, and the stride-1
convolution reading it, as one transposed convolution of the small map.

Keras' ``UpSampling2D`` (nearest) repeats each pixel s times along each axis: Keras 3 writes
it as ``ExpandDims``, ``Tile`` (or ``BroadcastTo``) and ``Reshape`` per axis, tf_keras as
``ResizeNearestNeighbor``. The Conv2D after it (a decoder's, a generator's, a U-Net's) then
computes on s^2 times the pixels, and each of its outputs reads a k x k window of the
upsampled map that holds only ceil-many distinct input pixels.

Along one axis, output ``y[p] = sum_d K[d] u[p + d - pt]`` with ``u[q] = x[q // s]`` is
``sum_m x[m] W'[p + lo - m s]`` with ``lo = k - 1 - pt`` and ``W'[t] = sum_d K[d]
[0 <= t + d - (k - 1) < s]`` (t < k + s - 1): a transposed convolution of ``x`` with stride s
by ``W'``, its output cropped by ``lo`` and ``hi``, which TF's ``Conv2DBackpropInput`` with
EXPLICIT padding defines. Each tap of ``W'`` is a sum of the taps of ``K`` that read the same
input pixel, summed in float64 and rounded once (the convolution multiplies each input once
by that sum where TF multiplies it by each tap: rounding differences only). For 3x3 and
s = 2 that is 16 multiply-adds a pixel and channel pair for 36: the transposed kernel runs
its four phases as one product (``conv.conv_transpose_nd``), and the bias and activation
after fuse with it (``fuse_conv``).

Keras' UpSampling1D then Conv1D (a repeat of [N, W, C], then ExpandDims at axis 1 and a
(1, k) Conv2D) joins the same way, the ExpandDims moved onto the small map: at 2000 steps of
32 channels to 16, 0.86x / 0.78x its time at batch 1 / 8.

An upsampling no convolution reads (a residual addition's operand, a concatenation's) that
copies the map more than once (two repeats, each a Tile's copy, or a resize's two gathers)
becomes one copy: the map reshaped to [N, H, 1, W, 1, C] and broadcast to [N, H, sy, W, sx, C]
(views), then reshaped to [N, sy H, sx W, C] (80 x 80 x 64 by 2: 0.54 -> 0.32 ms).

Here (a plan specialized to its input's shape, where every shape is known) the chain from the
small map to the convolution must have one reader at each step, the convolution a constant
float filter whose summed taps are finite, NHWC, unit strides and dilations (SAME, VALID, or
EXPLICIT padding of the spatial dims), and each op must run tfdeploy's own kernel.
"""

from __future__ import annotations

import numpy as np

from tfdeploy import registry
from tfdeploy.compiler.patterns import (
    SoleReaders,
    const_ints,
    rewrite_each,
    unit_stride_nhwc,
    unit_stride_pads,
)
from tfdeploy.compiler.plan import Plan, Step

_SPREAD = ("Tile", "BroadcastTo")


def _repeat(flow: SoleReaders, k: int, rank: int = 4):
    """(source value, axis, factor, step indices) of the repeat ``Reshape(Tile(ExpandDims(x,
    a + 1)))`` of a rank-``rank`` (4, or 3: [N, W, C]) ``x`` along a spatial axis a ending at
    Reshape step ``k``, or None."""
    plan, steps = flow.plan, flow.plan.steps
    rs = steps[k]
    if len(rs.ins) != 2:
        return None
    sp = flow.only(rs.ins[0], _SPREAD, k)
    ed = flow.only(steps[sp].ins[0], "ExpandDims", sp) if sp is not None else None
    if ed is None or len(steps[sp].ins) != 2 or len(steps[ed].ins) != 2:
        return None
    x = steps[ed].ins[0]
    xs, ys = plan.shapes.get(x), plan.shapes.get(rs.outs[0][1])
    e = const_ints(plan, steps[ed].ins[1], ())
    if xs is None or ys is None or len(xs) != rank or e is None or None in xs:
        return None
    e = e + rank + 1 if e < 0 else e
    if not 2 <= e < rank:
        return None
    a = e - 1
    arg = const_ints(plan, steps[sp].ins[1], (rank + 1,))
    if arg is None:
        return None
    rest = arg[:e] + arg[e + 1:]  # (Tile: multiples; BroadcastTo: the shape)
    if rest != ([1] * rank if steps[sp].op == "Tile" else list(xs)) or arg[e] < 1:
        return None
    s = arg[e]
    want = list(xs)
    want[a] *= s
    if list(ys) != want:
        return None
    return x, a, s, [ed, sp, k]


def _resize(flow: SoleReaders, k: int):
    """(source value, factors, [k]) of a ResizeNearestNeighbor step ``k`` that repeats each
    pixel a whole number of times along each axis (its index map is ``i // s``), or None."""
    from tfdeploy.kernels.image.resize import nearest_axis  # (the compiler loads kernels)

    plan, st = flow.plan, flow.plan.steps[k]
    if len(st.ins) != 2:
        return None
    xs = plan.shapes.get(st.ins[0])
    size = const_ints(plan, st.ins[1], (2,))
    if xs is None or len(xs) != 4 or None in xs or size is None or 0 in xs:
        return None
    factors = []
    for d, o in zip(xs[1:3], size):
        if o % d:
            return None
        s = o // d
        idx = nearest_axis(d, o, bool(st.attrs.get("align_corners", False)),
                           bool(st.attrs.get("half_pixel_centers", False)))
        if not np.array_equal(idx, np.arange(o) // s):
            return None
        factors.append(s)
    return st.ins[0], factors, [k]


def _step_up(flow: SoleReaders, k: int, rank: int = 4):
    """(source value, [sy, sx], step indices) of the repeat ending at Reshape step ``k`` or the
    whole-factor ResizeNearestNeighbor step ``k``, or None; of a rank-3 map [N, W, C], the
    factor is sx (its width is the convolution's after an ExpandDims at axis 1)."""
    if flow.plan.steps[k].op == "Reshape":
        r = _repeat(flow, k, rank)
        if r is None:
            return None
        v, a, s, ks = r
        return v, [s, 1] if a == 1 and rank == 4 else [1, s], ks
    return _resize(flow, k) if rank == 4 else None


def _upsampled(flow: SoleReaders, v: int, reader: int, rank: int = 4):
    """(source value, [sy, sx], step indices) when ``v``, read by step ``reader`` only, is a
    nearest upsampling of the source by whole factors (one or more repeats or resizes), or
    None."""
    factors, used = [1, 1], []
    while True:
        k = flow.only(v, ("Reshape", "ResizeNearestNeighbor"), reader)
        r = _step_up(flow, k, rank) if k is not None else None
        if r is None:
            break
        v, fs, ks = r
        factors = [f * g for f, g in zip(factors, fs)]
        used += ks
        reader = ks[0]
    return (v, factors, used) if used and factors != [1, 1] else None


def merged_filter(w: np.ndarray, factors) -> np.ndarray:
    """``W'`` of the module docstring for filter ``w`` [KH, KW, C, O] and upsampling
    ``factors``: [KH + sy - 1, KW + sx - 1, O, C] (the transposed convolution's layout),
    summed in float64."""
    def spread(k: int, s: int) -> np.ndarray:
        t = np.arange(k + s - 1)[:, None] + np.arange(k)[None, :] - (k - 1)
        return ((t >= 0) & (t < s)).astype(np.float64)

    (kh, kw), (sy, sx) = w.shape[:2], factors
    merged = np.einsum("yd,xe,deio->yxoi", spread(kh, sy), spread(kw, sx),
                       w.astype(np.float64))
    with np.errstate(over="ignore"):  # (an overflow: the caller's finite check)
        return np.ascontiguousarray(merged.astype(w.dtype))


def _match(flow: SoleReaders, k: int):
    """(steps replaced, new steps) for Conv2D step ``k`` reading an upsampled map, or None."""
    plan = flow.plan
    conv = plan.steps[k]
    a = conv.attrs
    if len(conv.ins) != 2 or len(conv.outs) != 1 or conv.outs[0][0] != 0 or \
            not unit_stride_nhwc(a):
        return None
    w = plan.constants.get(conv.ins[1])
    if not isinstance(w, np.ndarray) or w.ndim != 4 or w.size == 0 or \
            w.dtype not in (np.float32, np.float64):
        return None
    ed = flow.only(conv.ins[0], "ExpandDims", k)
    if ed is not None:  # (a Conv1D: ExpandDims at axis 1 of an upsampled [N, W, C])
        e = plan.steps[ed]
        if len(e.ins) != 2 or const_ints(plan, e.ins[1], ()) not in (1, -3):
            return None
        up = _upsampled(flow, e.ins[0], ed, rank=3)
    else:
        up = _upsampled(flow, conv.ins[0], k)
    if up is None:
        return None
    x, factors, used = up
    xs, ys = plan.shapes.get(x), plan.shapes.get(conv.outs[0][1])
    if ed is not None and xs is not None:
        xs = (xs[0], 1, *xs[1:])  # (the small map expanded as the conv's input was)
    pads = unit_stride_pads(a, w.shape[:2])
    if xs is None or ys is None or pads is None or len(ys) != 4 or None in ys or \
            xs[3] != w.shape[2]:
        return None
    explicit = []
    for d, s, kk, (pt, _), o in zip(xs[1:3], factors, w.shape[:2], pads, ys[1:3]):
        lo = kk - 1 - pt
        hi = (d - 1) * s + kk + s - 1 - lo - o
        if lo < 0 or hi < 0:
            return None
        explicit += [lo, hi]
    merged = merged_filter(w, factors)
    if not np.isfinite(merged).all():  # (an inf tap, or taps summed past the range)
        return None
    expand = []
    if ed is not None:  # (the ExpandDims moves onto the small map)
        x3, x = x, plan.new_value()
        plan.shapes[x] = xs
        expand = [Step("ExpandDims", e.name, (x3, e.ins[1]), ((0, x),), e.attrs)]
        used = used + [ed]
    sizes, filt = plan.new_value(), plan.new_value()
    plan.constants[sizes] = np.array(ys, np.int32)
    plan.constants[filt] = merged
    attrs = {"T": a.get("T", str(w.dtype)), "strides": [1, *factors, 1], "padding": "EXPLICIT",
             "explicit_paddings": [0, 0, *explicit, 0, 0], "data_format": "NHWC",
             "dilations": [1, 1, 1, 1], "use_cudnn_on_gpu": a.get("use_cudnn_on_gpu", True)}
    step = Step("Conv2DBackpropInput", conv.name, (sizes, filt, x), conv.outs, attrs)
    return [k, *used], [*expand, step]


def _one_copy(flow: SoleReaders, k: int):
    """(steps replaced, new steps) for an upsampling that ends at step ``k`` and copies the map
    more than once (two repeats or more, or a resize: two gathers), as one copy: the source
    reshaped to [N, H, 1, W, 1, C], broadcast to [N, H, sy, W, sx, C] (views), reshaped to
    [N, sy H, sx W, C] (the copy); or None."""
    plan = flow.plan
    first = _step_up(flow, k)
    if first is None:
        return None
    v, factors, used = first
    more = _upsampled(flow, v, used[0])
    if more is not None:
        v, fs, ks = more
        factors, used = [f * g for f, g in zip(factors, fs)], used + ks
    st = plan.steps[k]
    xs, y = plan.shapes.get(v), st.outs[0][1]
    if len(used) < 4 and st.op == "Reshape" or xs is None or None in xs or \
            v in plan.constants:
        return None
    n, h, w, c = xs
    (sy, sx), t = factors, st.attrs.get("T", "float32")
    shapes = [(n, h, 1, w, 1, c), (n, h, sy, w, sx, c), (n, h * sy, w * sx, c)]
    consts = []
    for shape in shapes:
        consts.append(plan.new_value())
        plan.constants[consts[-1]] = np.array(shape, np.int32)
    v1, v2 = plan.new_value(), plan.new_value()
    plan.shapes[v1], plan.shapes[v2] = shapes[:2]
    return used, [
        Step("Reshape", st.name, (v, consts[0]), ((0, v1),), {"T": t, "Tshape": "int32"}),
        Step("BroadcastTo", st.name, (v1, consts[1]), ((0, v2),), {"T": t, "Tidx": "int32"}),
        Step("Reshape", st.name, (v2, consts[2]), ((0, y),), {"T": t, "Tshape": "int32"})]


def run(plan: Plan, ctx=None) -> Plan:
    """The plan with each upsampled convolution as one transposed convolution, and each other
    upsampling of several copies as one copy."""
    if registry.runs_builtin("Conv2DBackpropInput"):
        plan = rewrite_each(plan, "Conv2D", _match)
    if registry.runs_builtin("BroadcastTo") and registry.runs_builtin("Reshape"):
        plan = rewrite_each(plan, "ResizeNearestNeighbor", _one_copy)
        plan = rewrite_each(plan, "Reshape", _one_copy)
    return plan
