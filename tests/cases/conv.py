"""Convolutions: Conv2D, DepthwiseConv2dNative, Conv3D and the transposed convolutions."""

from __future__ import annotations

import numpy as np

from . import Case, adder, rand
from . import raw as _raw

CASES: list[Case] = []
add = adder(CASES, "conv", rtol=1e-4, atol=1e-4)


def _bf16(x):
    import ml_dtypes

    return x.astype(ml_dtypes.bfloat16)


def _nchw(v):
    """A spatial attribute [1, h, w, 1] in NCHW order."""
    return [v[0], v[3], v[1], v[2]]


# --- oracles: the same values in the form TF's CPU kernels run on every machine -------------
# Without oneDNN (TF's default on CPUs without AVX-512), TF refuses channels-first layouts, and
# dilations or unequal strides in some kernels. The oracles compute the same convolution
# channels-last, with the dilation written into the filter (zeros between its taps) and unequal
# strides taken as stride 1 then a strided slice.


def _tf():
    import tensorflow as tf

    return tf


def _to_last(x):
    r = len(x.shape)
    return _tf().transpose(x, [0, *range(2, r), 1])


def _to_first(y):
    r = len(y.shape)
    return _tf().transpose(y, [0, r - 1, *range(1, r - 1)])


def _dilate(w, dil):
    """Filter ``w`` (spatial axes first) with ``d - 1`` zeros between taps along each axis."""
    tf = _tf()
    for axis, d in enumerate(dil):
        k = w.shape[axis]
        if d == 1 or k == 1:
            continue
        spread = tf.stack([w] + [tf.zeros_like(w)] * (d - 1), axis=axis + 1)
        shape = list(w.shape)
        shape[axis] = k * d
        w = tf.gather(tf.reshape(spread, shape), list(range((k - 1) * d + 1)), axis=axis)
    return w


def _pads(pad, ex, sizes, ks, st):
    """[(lo, hi)] per spatial axis for ``pad`` (SAME, VALID or EXPLICIT with ``ex``)."""
    if pad == "EXPLICIT":
        return [tuple(ex[2 * i:2 * i + 2]) for i in range(len(sizes))]
    if pad == "VALID":
        return [(0, 0)] * len(sizes)
    out = []
    for n, k, s in zip(sizes, ks, st):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        out.append((total // 2, total - total // 2))
    return out


def _conv_oracle(op, st, dl, pad, ex, channels_first):
    """``op(input, filter)`` channels-last and undilated; a depthwise convolution whose strides
    differ runs at stride 1 with explicit padding, then sliced. ``st``, ``dl``, ``ex`` as in
    the case tables."""
    def oracle(x, w):
        tf = _tf()
        x = _to_last(x) if channels_first else x
        n = len(st)
        w = _dilate(w, dl)
        ks = [int(w.shape[i]) for i in range(n)]
        split = op == "DepthwiseConv2dNative" and len(set(st)) > 1
        if split:
            pads = _pads(pad, ex, list(x.shape[1:1 + n]), ks, st)
            kw = {"padding": "EXPLICIT",
                  "explicit_paddings": [0, 0, *[p for lh in pads for p in lh], 0, 0]}
            strides = [1] * (n + 2)
        else:
            kw = {"padding": pad}
            if pad == "EXPLICIT":
                kw["explicit_paddings"] = [0, 0, *ex, 0, 0]
            strides = [1, *st, 1]
        y = getattr(tf.raw_ops, op)(input=x, filter=w, strides=strides, **kw)
        if split:
            y = y[(slice(None), *[slice(None, None, s) for s in st])]
        return _to_first(y) if channels_first else y
    return oracle


def _needs_oracle(fmt, st, dl):
    return not fmt.endswith("C") or any(d != 1 for d in dl) or len(set(st)) > 1


# (id, input NHWC, filter, strides, dilations, padding, explicit paddings NHWC)
CONV2D = [
    ("same", (2, 7, 8, 3), (3, 3, 3, 4), (1, 1), (1, 1), "SAME", None),
    ("valid", (2, 7, 8, 3), (3, 3, 3, 4), (1, 1), (1, 1), "VALID", None),
    ("same_s2", (1, 9, 8, 4), (3, 3, 4, 5), (2, 2), (1, 1), "SAME", None),
    ("valid_s21", (1, 9, 8, 4), (2, 3, 4, 5), (2, 1), (1, 1), "VALID", None),
    ("same_dil", (1, 9, 10, 2), (3, 3, 2, 3), (1, 1), (2, 3), "SAME", None),
    ("valid_dil_s2", (1, 11, 10, 2), (3, 2, 2, 3), (2, 2), (2, 2), "VALID", None),
    ("explicit", (2, 6, 7, 3), (3, 3, 3, 2), (1, 2), (1, 1), "EXPLICIT", (1, 2, 0, 3)),
    ("explicit_dil", (1, 6, 7, 3), (2, 3, 3, 2), (2, 1), (1, 2), "EXPLICIT", (2, 0, 1, 1)),
    ("1x1", (2, 5, 5, 8), (1, 1, 8, 6), (1, 1), (1, 1), "VALID", None),
    ("1x1_s2", (2, 5, 6, 8), (1, 1, 8, 6), (2, 2), (1, 1), "SAME", None),
    ("7x7_s2", (1, 16, 16, 3), (7, 7, 3, 8), (2, 2), (1, 1), "SAME", None),
    ("group2", (1, 6, 6, 4), (3, 3, 2, 6), (1, 1), (1, 1), "SAME", None),
    ("group4_s2", (2, 7, 7, 8), (3, 3, 2, 8), (2, 2), (1, 1), "VALID", None),
    # one input channel a group (ConvNeXt's Conv2D(groups=C)): run as a depthwise conv
    ("group_depthwise", (2, 9, 8, 6), (7, 7, 1, 6), (1, 1), (1, 1), "SAME", None),
    ("group_depthwise_m2_s2", (1, 9, 9, 4), (3, 3, 1, 8), (2, 2), (1, 1), "VALID", None),
    # groups of 2-4 channels: depthwise convolutions summed; of more: one product per group
    ("group_sum_dil", (1, 10, 9, 12), (3, 3, 3, 8), (1, 1), (2, 1), "SAME", None),
    ("group_wide", (2, 10, 9, 16), (3, 3, 8, 6), (1, 1), (1, 1), "SAME", None),
    ("group_wide_s2", (1, 11, 10, 16), (3, 2, 8, 4), (2, 2), (1, 1), "VALID", None),
    ("big_kernel", (1, 3, 3, 2), (5, 5, 2, 2), (1, 1), (1, 1), "SAME", None),
    # taps that read only padding (cut: ``trim_taps``): a dilation past the input, padding
    # past what the strided rows reach, and every tap on padding (a zero result)
    ("dil_past_input", (1, 5, 6, 3), (3, 3, 3, 4), (1, 1), (6, 7), "SAME", None),
    ("explicit_past_input", (1, 4, 5, 2), (3, 3, 2, 3), (4, 1), (1, 1), "EXPLICIT",
     (6, 0, 0, 4)),
    ("explicit_only_padding", (1, 4, 5, 2), (3, 3, 2, 3), (20, 1), (1, 1), "EXPLICIT",
     (10, 0, 0, 0)),
    ("empty_batch", (0, 5, 5, 2), (3, 3, 2, 2), (1, 1), (1, 1), "SAME", None),
    # large enough for several im2col blocks (by rows, by images, channel-major, grouped)
    ("blocks_rows", (2, 64, 48, 16), (3, 3, 16, 8), (1, 1), (1, 1), "SAME", None),
    ("blocks_images", (3, 24, 24, 32), (3, 3, 32, 4), (1, 1), (1, 1), "VALID", None),
    ("blocks_narrow", (1, 200, 160, 3), (3, 3, 3, 4), (1, 1), (1, 1), "SAME", None),
    ("blocks_narrow_images", (3, 40, 40, 3), (5, 5, 3, 4), (1, 1), (1, 1), "SAME", None),
    ("blocks_group", (1, 64, 64, 8), (3, 3, 4, 8), (1, 1), (1, 1), "SAME", None),
]


def _conv2d_case(id, xs, ws, st, dl, pad, ex, fmt="NHWC", dtype="float32", **kw):
    strides, dil = [1, *st, 1], [1, *dl, 1]
    explicit = [0, 0, ex[0], ex[1], ex[2], ex[3], 0, 0] if ex else []
    if fmt == "NCHW":
        strides, dil = _nchw(strides), _nchw(dil)
        explicit = explicit[:2] + explicit[6:] + explicit[2:6] if ex else []
        xs = (xs[0], xs[3], xs[1], xs[2])

    def fn(x, w):
        return _raw().Conv2D(input=x, filter=w, strides=strides, padding=pad,
                             explicit_paddings=explicit, data_format=fmt, dilations=dil)

    def inputs(r):
        if dtype == "bfloat16":
            return [_bf16(rand(r, xs)), _bf16(rand(r, ws))]
        return [rand(r, xs, dtype), rand(r, ws, dtype)]

    if _needs_oracle(fmt, st, dl):
        kw["oracle"] = _conv_oracle("Conv2D", st, dl, pad, ex, fmt == "NCHW")
    add(f"conv2d_{id}" + ("" if fmt == "NHWC" else "_nchw") +
        ("" if dtype == "float32" else f"_{dtype}"), ["Conv2D"], fn, inputs, **kw)


for c in CONV2D:
    _conv2d_case(*c, dynamic=c[0] in ("same", "same_s2", "explicit", "group2"))
for c in CONV2D[:8] + CONV2D[11:13]:
    _conv2d_case(*c, fmt="NCHW")
for dt, tol in [("float64", 1e-10), ("float16", 2e-2), ("bfloat16", 1e-1), ("int32", 0)]:
    _conv2d_case(*CONV2D[2], dtype=dt, rtol=tol, atol=tol * 4)
_conv2d_case(*CONV2D[8], dtype="float16", rtol=2e-2, atol=5e-2)


def _conv1d(x, w):
    import tensorflow as tf

    return tf.nn.conv1d(x, w, stride=2, padding="SAME", dilations=1)


add("conv1d", ["Conv2D"], _conv1d, lambda r: [rand(r, (2, 9, 3)), rand(r, (3, 3, 4))],
    dynamic=True)

# (id, input NHWC, filter [kh, kw, c, m], strides, dilations, padding, explicit)
DEPTHWISE = [
    ("same", (2, 7, 8, 3), (3, 3, 3, 1), (1, 1), (1, 1), "SAME", None),
    ("valid_m2", (2, 7, 8, 3), (3, 3, 3, 2), (1, 1), (1, 1), "VALID", None),
    ("same_s2", (1, 9, 8, 4), (3, 3, 4, 1), (2, 2), (1, 1), "SAME", None),
    ("dil", (1, 9, 10, 2), (3, 3, 2, 3), (1, 1), (2, 2), "SAME", None),
    ("explicit", (1, 6, 7, 3), (2, 3, 3, 2), (2, 1), (1, 1), "EXPLICIT", (1, 2, 0, 1)),
    ("5x5_s2", (1, 10, 9, 4), (5, 5, 4, 1), (2, 2), (1, 1), "VALID", None),
    ("m2_s2", (1, 9, 9, 3), (3, 3, 3, 2), (2, 2), (1, 1), "SAME", None),
    ("wide", (1, 6, 7, 260), (3, 3, 260, 1), (1, 1), (1, 1), "SAME", None),
    ("dil_past_input", (1, 4, 5, 3), (3, 3, 3, 2), (1, 1), (5, 9), "SAME", None),
    # large enough for several blocks: of rows (padded at the seams), of single images
    ("blocks_rows", (1, 260, 270, 16), (3, 3, 16, 1), (1, 1), (1, 1), "SAME", None),
    ("blocks_images_s2", (3, 130, 140, 32), (5, 5, 32, 1), (2, 2), (1, 1), "VALID", None),
]


def _dw_case(id, xs, ws, st, dl, pad, ex, fmt="NHWC", dtype="float32", **kw):
    strides, dil = [1, *st, 1], [1, *dl, 1]
    explicit = [0, 0, ex[0], ex[1], ex[2], ex[3], 0, 0] if ex else []
    if fmt == "NCHW":
        strides, dil = _nchw(strides), _nchw(dil)
        explicit = explicit[:2] + explicit[6:] + explicit[2:6] if ex else []
        xs = (xs[0], xs[3], xs[1], xs[2])

    def fn(x, w):
        return _raw().DepthwiseConv2dNative(input=x, filter=w, strides=strides, padding=pad,
                                            explicit_paddings=explicit, data_format=fmt,
                                            dilations=dil)

    def inputs(r):
        if dtype == "bfloat16":
            return [_bf16(rand(r, xs)), _bf16(rand(r, ws))]
        return [rand(r, xs, dtype), rand(r, ws, dtype)]

    if _needs_oracle(fmt, st, dl):
        kw["oracle"] = _conv_oracle("DepthwiseConv2dNative", st, dl, pad, ex, fmt == "NCHW")
    add(f"depthwise_{id}" + ("" if fmt == "NHWC" else "_nchw") +
        ("" if dtype == "float32" else f"_{dtype}"), ["DepthwiseConv2dNative"], fn, inputs, **kw)


for c in DEPTHWISE:
    _dw_case(*c, dynamic=c[0] in ("same", "valid_m2", "explicit"))
for c in DEPTHWISE[:5]:
    _dw_case(*c, fmt="NCHW")
for dt, tol in [("float64", 1e-10), ("float16", 2e-2), ("bfloat16", 1e-1)]:
    _dw_case(*DEPTHWISE[1], dtype=dt, rtol=tol, atol=tol * 4)

# (id, input NDHWC, filter, strides, dilations, padding)
CONV3D = [
    ("same", (2, 4, 5, 6, 2), (2, 3, 3, 2, 3), (1, 1, 1), (1, 1, 1), "SAME"),
    ("valid_s2", (1, 6, 5, 7, 3), (3, 2, 3, 3, 2), (2, 1, 2), (1, 1, 1), "VALID"),
    ("same_dil", (1, 6, 6, 6, 2), (2, 2, 3, 2, 2), (1, 2, 1), (2, 1, 2), "SAME"),
    ("dil_past_input", (1, 3, 4, 4, 2), (3, 2, 3, 2, 2), (1, 1, 1), (4, 1, 5), "SAME"),
    # an even kernel dilated past the input: both taps on padding, a zero result
    ("dil_all_padding", (1, 2, 4, 4, 2), (2, 2, 2, 2, 2), (1, 1, 1), (1, 100, 1), "SAME"),
    ("blocks", (1, 12, 20, 20, 8), (3, 3, 3, 8, 4), (1, 1, 1), (1, 1, 1), "SAME"),
]


def _conv3d_case(id, xs, ws, st, dl, pad, fmt="NDHWC", dtype="float32", **kw):
    strides, dil = [1, *st, 1], [1, *dl, 1]
    if fmt == "NCDHW":
        strides, dil = [1, 1, *st], [1, 1, *dl]
        xs = (xs[0], xs[4], *xs[1:4])

    def fn(x, w):
        return _raw().Conv3D(input=x, filter=w, strides=strides, padding=pad, data_format=fmt,
                             dilations=dil)

    if _needs_oracle(fmt, st, dl):
        kw["oracle"] = _conv_oracle("Conv3D", st, dl, pad, None, fmt == "NCDHW")
    add(f"conv3d_{id}" + ("" if fmt == "NDHWC" else "_ncdhw") +
        ("" if dtype == "float32" else f"_{dtype}"), ["Conv3D"], fn,
        lambda r: [rand(r, xs, dtype), rand(r, ws, dtype)], **kw)


for c in CONV3D:
    _conv3d_case(*c, dynamic=c[0] == "same")
    _conv3d_case(*c, fmt="NCDHW")
_conv3d_case(*CONV3D[0], dtype="float64", rtol=1e-10, atol=1e-10)
_conv3d_case(*CONV3D[1], dtype="float16", rtol=2e-2, atol=8e-2)

# --- transposed convolutions --------------------------------------------------------------------

# (id, input NHWC, filter, strides, dilations, padding, explicit)
BACKPROP2D = [
    ("same_s2", (2, 8, 7, 3), (3, 3, 3, 4), (2, 2), (1, 1), "SAME", None),
    ("valid_s2", (1, 9, 8, 3), (3, 3, 3, 4), (2, 2), (1, 1), "VALID", None),
    ("valid_s3_leftover", (1, 10, 11, 2), (2, 3, 2, 3), (3, 2), (1, 1), "VALID", None),
    ("same_s1", (1, 5, 6, 2), (3, 2, 2, 3), (1, 1), (1, 1), "SAME", None),
    ("dil", (1, 9, 9, 2), (3, 3, 2, 2), (1, 1), (2, 2), "SAME", None),
    ("explicit", (1, 6, 7, 3), (3, 3, 3, 2), (2, 1), (1, 1), "EXPLICIT", (1, 2, 0, 1)),
    # stride = kernel: the taps interleave in one copy (Conv2DTranspose's upsampling)
    ("same_k2s2", (2, 8, 6, 3), (2, 2, 3, 4), (2, 2), (1, 1), "SAME", None),
    ("valid_k3s3", (1, 9, 12, 2), (3, 3, 2, 3), (3, 3), (1, 1), "VALID", None),
    ("valid_k3s3_leftover", (1, 10, 9, 2), (3, 3, 2, 3), (3, 3), (1, 1), "VALID", None),
    ("1x1", (2, 4, 4, 5), (1, 1, 5, 3), (1, 1), (1, 1), "VALID", None),
]


def _out_size(n, k, s, d, pad, lo_hi=(0, 0)):
    ek = (k - 1) * d + 1
    if pad == "SAME":
        return -(-n // s)
    n = n + sum(lo_hi)
    return (n - ek) // s + 1


def _backprop_oracle(st, dl, pad, ex, channels_first):
    """Conv2DBackpropInput channels-last with the dilation written into the filter (its CPU
    kernel takes unequal strides)."""
    def oracle(sizes, w, dy):
        tf = _tf()
        if channels_first:
            sizes, dy = tf.gather(sizes, [0, 2, 3, 1]), _to_last(dy)
        y = tf.raw_ops.Conv2DBackpropInput(
            input_sizes=sizes, filter=_dilate(w, dl), out_backprop=dy, strides=[1, *st, 1],
            padding=pad, explicit_paddings=[0, 0, *ex, 0, 0] if ex else [])
        return _to_first(y) if channels_first else y
    return oracle


def _backprop2d_case(id, xs, ws, st, dl, pad, ex, fmt="NHWC", dtype="float32", **kw):
    strides, dil = [1, *st, 1], [1, *dl, 1]
    explicit = [0, 0, ex[0], ex[1], ex[2], ex[3], 0, 0] if ex else []
    oh = _out_size(xs[1], ws[0], st[0], dl[0], pad, ex[:2] if ex else (0, 0))
    ow = _out_size(xs[2], ws[1], st[1], dl[1], pad, ex[2:] if ex else (0, 0))
    ys = (xs[0], oh, ow, ws[3])
    sizes = np.array(xs, np.int32)
    if fmt == "NCHW":
        strides, dil = _nchw(strides), _nchw(dil)
        explicit = explicit[:2] + explicit[6:] + explicit[2:6] if ex else []
        ys = (ys[0], ys[3], ys[1], ys[2])
        sizes = sizes[[0, 3, 1, 2]]

    def fn(s, w, dy):
        return _raw().Conv2DBackpropInput(
            input_sizes=s, filter=w, out_backprop=dy, strides=strides, padding=pad,
            explicit_paddings=explicit, data_format=fmt, dilations=dil)

    def inputs(r):
        if dtype == "bfloat16":
            return [sizes, _bf16(rand(r, ws)), _bf16(rand(r, ys))]
        return [sizes, rand(r, ws, dtype), rand(r, ys, dtype)]

    if _needs_oracle(fmt, st, dl) and not (fmt == "NHWC" and all(d == 1 for d in dl)):
        kw["oracle"] = _backprop_oracle(st, dl, pad, ex, fmt == "NCHW")
    add(f"backprop_input_{id}" + ("" if fmt == "NHWC" else "_nchw") +
        ("" if dtype == "float32" else f"_{dtype}"), ["Conv2DBackpropInput"], fn, inputs, **kw)


for c in BACKPROP2D:
    _backprop2d_case(*c, dynamic=c[0] in ("same_s2", "explicit"))
for c in BACKPROP2D[:3]:
    _backprop2d_case(*c, fmt="NCHW")
_backprop2d_case(*[c for c in BACKPROP2D if c[0] == "same_k2s2"][0], fmt="NCHW")
_backprop2d_case(*BACKPROP2D[0], dtype="float64", rtol=1e-10, atol=1e-10)
_backprop2d_case(*BACKPROP2D[0], dtype="float16", rtol=2e-2, atol=8e-2)
_backprop2d_case(*BACKPROP2D[1], dtype="int32", rtol=0, atol=0)
_backprop2d_case(*BACKPROP2D[2], dtype="bfloat16", rtol=1e-1, atol=2e-1)


def _conv2d_transpose(x, w):
    import tensorflow as tf

    return tf.nn.conv2d_transpose(x, w, output_shape=[2, 9, 8, 3], strides=2, padding="SAME")


add("conv2d_transpose_api", ["Conv2DBackpropInput"], _conv2d_transpose,
    lambda r: [rand(r, (2, 5, 4, 4)), rand(r, (3, 3, 3, 4))])
add("backprop_input_batch_mismatch", ["Conv2DBackpropInput"],  # (TF with oneDNN aborts, its
    lambda dy, w, n: _raw().Conv2DBackpropInput(  # reference kernel refuses: both an error)
        input_sizes=n, filter=w, out_backprop=dy, strides=[1, 2, 2, 1], padding="SAME"),
    lambda r: [rand(r, (1, 5, 4, 4)), rand(r, (3, 3, 3, 4)), np.array([2, 9, 8, 3], np.int32)],
    rejects="input and out_backprop must have the same batch size: input_sizes says 2, "
            "out_backprop has 1")

# (id, input NDHWC, filter, strides, padding)
BACKPROP3D = [
    ("same_s2", (1, 5, 6, 4, 2), (3, 3, 2, 2, 3), (2, 2, 1), "SAME"),
    ("valid", (2, 5, 4, 6, 2), (2, 2, 3, 2, 2), (1, 2, 2), "VALID"),
    ("k2s2", (1, 4, 6, 4, 2), (2, 2, 2, 2, 3), (2, 2, 2), "SAME"),
]
for id, xs, ws, st, pad in BACKPROP3D:
    outs = tuple(_out_size(n, k, s, 1, pad) for n, k, s in zip(xs[1:4], ws[:3], st))
    ys = (xs[0], *outs, ws[4])
    add(f"backprop_input_3d_{id}", ["Conv3DBackpropInputV2"],
        lambda s, w, dy, st=st, pad=pad: _raw().Conv3DBackpropInputV2(
            input_sizes=s, filter=w, out_backprop=dy, strides=[1, *st, 1], padding=pad),
        lambda r, xs=xs, ws=ws, ys=ys: [np.array(xs, np.int64), rand(r, ws), rand(r, ys)],
        dynamic=id == "same_s2")


def _conv3d_transpose(x, w):
    import tensorflow as tf

    return tf.nn.conv3d_transpose(x, w, output_shape=[1, 6, 6, 5, 2], strides=2, padding="SAME")


add("conv3d_transpose_api", ["Conv3DBackpropInputV2"], _conv3d_transpose,
    lambda r: [rand(r, (1, 3, 3, 3, 4)), rand(r, (3, 3, 3, 2, 4))])

DEPTHWISE_BACKPROP = [
    BACKPROP2D[0], BACKPROP2D[1], BACKPROP2D[3],
    ("explicit", (1, 6, 7, 3), (3, 3, 3, 2), (2, 2), (1, 1), "EXPLICIT", (1, 2, 0, 1)),
    # TF's CPU kernel ignores dilations here
    ("dil_ignored", (1, 9, 9, 2), (3, 3, 2, 2), (1, 1), (2, 2), "SAME", None),
]
for id, xs, ws, st, dl, pad, ex in DEPTHWISE_BACKPROP:
    ws = ws[:3] + (2,)
    oh = _out_size(xs[1], ws[0], st[0], 1, pad, ex[:2] if ex else (0, 0))
    ow = _out_size(xs[2], ws[1], st[1], 1, pad, ex[2:] if ex else (0, 0))
    explicit = [0, 0, ex[0], ex[1], ex[2], ex[3], 0, 0] if ex else []
    add(f"depthwise_backprop_input_{id}", ["DepthwiseConv2dNativeBackpropInput"],
        lambda s, w, dy, st=st, dl=dl, pad=pad, explicit=explicit:
            _raw().DepthwiseConv2dNativeBackpropInput(
                input_sizes=s, filter=w, out_backprop=dy, strides=[1, *st, 1], padding=pad,
                explicit_paddings=explicit, dilations=[1, *dl, 1]),
        lambda r, xs=xs, ws=ws, oh=oh, ow=ow: [np.array(xs, np.int32), rand(r, ws),
                                               rand(r, (xs[0], oh, ow, xs[3] * 2))])
