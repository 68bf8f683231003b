"""Pooling: MaxPool, MaxPoolV2, AvgPool, their 3-D forms, MaxPoolWithArgmax, LRN."""

from __future__ import annotations

import numpy as np

from . import Case, adder, rand
from . import raw as _raw

CASES: list[Case] = []
add = adder(CASES, "pool", rtol=1e-5, atol=1e-5)


def _bf16(x):
    import ml_dtypes

    return x.astype(ml_dtypes.bfloat16)


def _channels_last(fn):
    """``fn`` (a channels-last pooling of one input) run on a channels-first input: the form
    TF's CPU kernels run on every machine (without oneDNN they refuse NCHW and NCDHW)."""
    def oracle(x):
        import tensorflow as tf

        r = len(x.shape)
        y = fn(tf.transpose(x, [0, *range(2, r), 1]))
        return tf.transpose(y, [0, r - 1, *range(1, r - 1)])
    return oracle


# (id, input NHWC, window (kh, kw), strides (sh, sw), padding)
POOL2D = [
    ("2x2_s2_valid", (2, 8, 8, 3), (2, 2), (2, 2), "VALID"),
    ("2x2_s2_same_odd", (2, 7, 9, 3), (2, 2), (2, 2), "SAME"),
    ("3x3_s2_same", (1, 9, 8, 4), (3, 3), (2, 2), "SAME"),
    ("3x3_s1_same", (1, 6, 7, 2), (3, 3), (1, 1), "SAME"),
    ("3x2_s21_valid", (2, 7, 8, 3), (3, 2), (2, 1), "VALID"),
    ("5x5_s3_same", (1, 7, 8, 2), (5, 5), (3, 3), "SAME"),
    ("global", (2, 5, 6, 3), (5, 6), (1, 1), "VALID"),
    ("1x1_s2", (1, 5, 6, 3), (1, 1), (2, 2), "SAME"),
    ("big_window_same", (1, 3, 4, 2), (4, 5), (1, 2), "SAME"),
]


def _pool_case(kind, id, xs, k, s, pad, fmt="NHWC", dtype="float32", **kw):
    ksize, strides = [1, *k, 1], [1, *s, 1]
    if fmt == "NCHW":
        ksize, strides = [1, 1, *k], [1, 1, *s]
        xs = (xs[0], xs[3], xs[1], xs[2])
    def pool(fmt, ksize, strides):
        if kind == "max":
            return lambda x: _raw().MaxPool(input=x, ksize=ksize, strides=strides, padding=pad,
                                            data_format=fmt)
        return lambda x: _raw().AvgPool(value=x, ksize=ksize, strides=strides, padding=pad,
                                        data_format=fmt)

    fn = pool(fmt, ksize, strides)
    if fmt == "NCHW":
        kw["oracle"] = _channels_last(pool("NHWC", [1, *k, 1], [1, *s, 1]))

    def inputs(r):
        if dtype == "bfloat16":
            return [_bf16(rand(r, xs))]
        return [rand(r, xs, dtype, -100, 100)]

    add(f"{kind}_{id}" + ("" if fmt == "NHWC" else "_nchw") +
        ("" if dtype == "float32" else f"_{dtype}"),
        ["MaxPool" if kind == "max" else "AvgPool"], fn, inputs, **kw)


for kind in ("max", "avg"):
    for c in POOL2D:
        _pool_case(kind, *c, dynamic=c[0] in ("2x2_s2_same_odd", "3x3_s2_same", "global"))
    for c in POOL2D[:6]:
        _pool_case(kind, *c, fmt="NCHW")
    for dt, tol in [("float64", 1e-12), ("float16", 1e-2), ("bfloat16", 2e-2)]:
        _pool_case(kind, *POOL2D[2], dtype=dt, rtol=tol, atol=tol)
for dt in ("int8", "uint8", "int16", "uint16", "int32", "int64"):
    _pool_case("max", *POOL2D[2], dtype=dt)
add("max_explicit", ["MaxPool"],
    lambda x: _raw().MaxPool(input=x, ksize=[1, 2, 3, 1], strides=[1, 1, 2, 1],
                             padding="EXPLICIT", explicit_paddings=[0, 0, 1, 1, 2, 0, 0, 0]),
    lambda r: [rand(r, (2, 6, 7, 3))], dynamic=True)
add("max_depth", ["MaxPool"],
    lambda x: _raw().MaxPool(input=x, ksize=[1, 1, 1, 2], strides=[1, 1, 1, 2], padding="VALID"),
    lambda r: [rand(r, (2, 3, 4, 6))])
for _dt in ("float32", "float64"):  # (depth pooling: a NaN wins where it comes first)
    add(f"max_depth_non_finite_{_dt}", ["MaxPool"],
        lambda x: _raw().MaxPool(input=x, ksize=[1, 1, 1, 3], strides=[1, 1, 1, 3],
                                 padding="VALID"),
        lambda r, dt=_dt: [_non_finite(r, dt)])
add("max_v2", ["MaxPoolV2"],
    lambda x, k, s: _raw().MaxPoolV2(input=x, ksize=k, strides=s, padding="SAME"),
    lambda r: [rand(r, (2, 7, 8, 3)), np.array([1, 3, 3, 1], np.int32),
               np.array([1, 2, 2, 1], np.int32)], dynamic=True)
add("max_v2_valid", ["MaxPoolV2"],
    lambda x, k, s: _raw().MaxPoolV2(input=x, ksize=k, strides=s, padding="VALID"),
    lambda r: [rand(r, (1, 6, 6, 2), "float64"), np.array([1, 2, 3, 1], np.int32),
               np.array([1, 2, 1, 1], np.int32)])



def _non_finite(r, dtype="float32", depth=0):
    """A map [2, 6, 7, 3] (with ``depth``, [2, depth, 6, 7, 3] repeated along it) holding NaN,
    inf and -inf: alone in windows, a window of NaN only, one of -inf only, one of both."""
    x = rand(r, (2, 6, 7, 3), "float32")
    x[0, 0, 0, 0], x[0, 3, 4, 1], x[1, 5, 6, 2] = np.nan, np.nan, np.nan
    x[0, 2, 2, 2], x[1, 0, 3, 0] = np.inf, -np.inf
    x[1, 2:4, 0:2, 1] = np.nan
    x[0, 4:6, 0:3, 0] = -np.inf
    x[1, 4:6, 3:5, 2] = [[np.nan, -np.inf], [-np.inf, np.nan]]
    if depth:
        x = np.repeat(x[:, None], depth, axis=1)
    return x.astype(dtype) if dtype != "bfloat16" else _bf16(x)


# TF's MaxPool skips NaN, and a window of only NaN and -inf gives the dtype's lowest finite value
for _dt in ("float32", "float64", "float16", "bfloat16"):
    for _k, _s, _pad in (((2, 2), (1, 1), "VALID"), ((3, 3), (2, 2), "SAME"), ((2, 3), (2, 1),
                                                                               "SAME")):
        add(f"max_non_finite_{_k[0]}x{_k[1]}_{_pad}_{_dt}", ["MaxPool"],
            lambda x, k=_k, st=_s, pad=_pad: _raw().MaxPool(
                input=x, ksize=[1, *k, 1], strides=[1, *st, 1], padding=pad),
            lambda r, dt=_dt: [_non_finite(r, dt)],
            onednn="gives -inf where its reference kernel gives bfloat16's lowest finite value "
                   "(a window of only NaN and -inf)" if _dt == "bfloat16" else
                   "gives -inf where its reference kernel gives float16's lowest finite value "
                   "(a window of only NaN and -inf), on CPUs with AVX512-FP16 (Sapphire Rapids "
                   "and later: elsewhere oneDNN leaves float16 pooling to the reference kernel)"
                   if _dt == "float16" else None)
add("max_v2_non_finite", ["MaxPoolV2"],
    lambda x, k, s: _raw().MaxPoolV2(input=x, ksize=k, strides=s, padding="SAME"),
    lambda r: [_non_finite(r), np.array([1, 3, 3, 1], np.int32), np.array([1, 2, 2, 1], np.int32)])
add("max3d_infinities", ["MaxPool3D"],
    lambda x: _raw().MaxPool3D(input=x, ksize=[1, 2, 2, 2, 1], strides=[1, 1, 2, 2, 1],
                               padding="SAME"),
    lambda r: [np.nan_to_num(_non_finite(r, depth=2), nan=-np.inf, posinf=np.inf,
                             neginf=-np.inf)],
    onednn="gives float32's lowest finite value for a window of only -inf, where its reference "
           "kernel gives -inf")

# (id, input NDHWC, window, strides, padding)
POOL3D = [
    ("2x2x2_valid", (2, 4, 6, 6, 2), (2, 2, 2), (2, 2, 2), "VALID"),
    ("3x3x3_same", (1, 5, 6, 7, 2), (3, 3, 3), (2, 2, 1), "SAME"),
    ("2x3x1_same", (1, 5, 4, 3, 3), (2, 3, 1), (1, 2, 2), "SAME"),
]


def _pool3d_case(kind, id, xs, k, s, pad, fmt="NDHWC", dtype="float32", **kw):
    ksize, strides = [1, *k, 1], [1, *s, 1]
    if fmt == "NCDHW":
        ksize, strides = [1, 1, *k], [1, 1, *s]
        xs = (xs[0], xs[4], *xs[1:4])
    raw = "MaxPool3D" if kind == "max" else "AvgPool3D"

    def pool(fmt, ksize, strides):
        return lambda x: getattr(_raw(), raw)(input=x, ksize=ksize, strides=strides,
                                              padding=pad, data_format=fmt)

    fn = pool(fmt, ksize, strides)
    if fmt == "NCDHW":
        kw["oracle"] = _channels_last(pool("NDHWC", [1, *k, 1], [1, *s, 1]))

    def inputs(r):
        if dtype == "bfloat16":
            return [_bf16(rand(r, xs))]
        return [rand(r, xs, dtype)]

    add(f"{kind}3d_{id}" + ("" if fmt == "NDHWC" else "_ncdhw") +
        ("" if dtype == "float32" else f"_{dtype}"), [raw], fn, inputs, **kw)


for kind in ("max", "avg"):
    for c in POOL3D:
        _pool3d_case(kind, *c, dynamic=c[0] == "3x3x3_same")
        _pool3d_case(kind, *c, fmt="NCDHW")
    # TF's CPU kernels take float32 and bfloat16 only
    _pool3d_case(kind, *POOL3D[1], dtype="bfloat16", rtol=2e-2, atol=2e-2)

# unit-stride average pools sum each tap as one run of the flattened padded input, running
# over the padding's columns and into the next row or image (sums then dropped): batches,
# windows near the edges, 3-D, and inf and NaN beside those columns
for _id, _xs, _k, _pad in [("3x3_same_batch", (3, 9, 10, 5), (3, 3), "SAME"),
                           ("4x2_valid_batch", (2, 7, 6, 3), (4, 2), "VALID"),
                           ("1x4_same", (2, 5, 6, 3), (1, 4), "SAME")]:
    add(f"avg_flat_{_id}", ["AvgPool"],
        lambda x, k=_k, pad=_pad: _raw().AvgPool(value=x, ksize=[1, *k, 1], strides=[1, 1, 1, 1],
                                                 padding=pad),
        lambda r, xs=_xs: [rand(r, xs)], dynamic=_id == "3x3_same_batch")
# column-strided average pools of few channels read their taps from phase copies of the
# columns (NASNetMobile's reduction cells): strides 2 and 3, odd widths, SAME and VALID
for _id, _xs, _k, _s, _pad in [("3x3s2_valid", (2, 11, 13, 5), (3, 3), (2, 2), "VALID"),
                               ("3x3s2_same", (1, 12, 9, 7), (3, 3), (2, 2), "SAME"),
                               ("5x4s3_same", (1, 10, 14, 3), (5, 4), (1, 3), "SAME")]:
    add(f"avg_phases_{_id}", ["AvgPool"],
        lambda x, k=_k, st=_s, pad=_pad: _raw().AvgPool(value=x, ksize=[1, *k, 1],
                                                        strides=[1, *st, 1], padding=pad),
        lambda r, xs=_xs: [rand(r, xs)])
for _dt in ("float32", "float64"):
    for _k, _pad in (((3, 3), "SAME"), ((2, 2), "VALID")):
        add(f"avg_non_finite_{_k[0]}x{_k[1]}_{_pad}_{_dt}", ["AvgPool"],
            lambda x, k=_k, pad=_pad: _raw().AvgPool(value=x, ksize=[1, *k, 1],
                                                     strides=[1, 1, 1, 1], padding=pad),
            lambda r, dt=_dt: [_non_finite(r, dt)])
add("avg3d_flat_same", ["AvgPool3D"],
    lambda x: _raw().AvgPool3D(input=x, ksize=[1, 3, 2, 3, 1], strides=[1, 1, 1, 1, 1],
                               padding="SAME"),
    lambda r: [rand(r, (2, 4, 5, 6, 2))], dynamic=True)
add("avg3d_non_finite", ["AvgPool3D"],
    lambda x: _raw().AvgPool3D(input=x, ksize=[1, 2, 2, 2, 1], strides=[1, 1, 1, 1, 1],
                               padding="SAME"),
    lambda r: [_non_finite(r, depth=3)])

# --- max pool with argmax, LRN ------------------------------------------------------------------

for i, (xs, k, s, pad, incl) in enumerate([((2, 6, 7, 3), (2, 2), (2, 2), "VALID", False),
                                          ((2, 7, 7, 2), (3, 3), (2, 2), "SAME", True),
                                          ((1, 5, 6, 2), (3, 2), (1, 2), "SAME", False)]):
    for targ in ("int64", "int32"):
        add(f"max_with_argmax_{i}_{targ}", ["MaxPoolWithArgmax"],
            lambda x, k=k, s=s, pad=pad, incl=incl, targ=targ: _raw().MaxPoolWithArgmax(
                input=x, ksize=[1, *k, 1], strides=[1, *s, 1], padding=pad, Targmax=targ,
                include_batch_in_index=incl),
            lambda r, xs=xs: [rand(r, xs)], dynamic=targ == "int64")
add("max_with_argmax_ties_int", ["MaxPoolWithArgmax"],
    lambda x: _raw().MaxPoolWithArgmax(input=x, ksize=[1, 2, 2, 1], strides=[1, 1, 1, 1],
                                       padding="SAME"),
    lambda r: [rand(r, (1, 4, 5, 2), "int32", 0, 2)])
# padding is never read and the first value of a window starts its maximum: a NaN wins only
# where it comes first, a window of -inf (or of int32's lowest) names its first value
for _dt in ("float32", "float64", "float16", "bfloat16"):
    add(f"max_with_argmax_non_finite_{_dt}", ["MaxPoolWithArgmax"],
        lambda x: _raw().MaxPoolWithArgmax(input=x, ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1],
                                           padding="SAME", include_batch_in_index=True),
        lambda r, dt=_dt: [_non_finite(r, dt)])
add("max_with_argmax_all_lowest_int", ["MaxPoolWithArgmax"],
    lambda x: _raw().MaxPoolWithArgmax(input=x, ksize=[1, 3, 2, 1], strides=[1, 1, 2, 1],
                                       padding="SAME"),
    lambda r: [np.full((1, 4, 5, 2), np.iinfo(np.int32).min, np.int32)])
add("max_with_argmax_float64", ["MaxPoolWithArgmax"],
    lambda x: _raw().MaxPoolWithArgmax(input=x, ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1],
                                       padding="VALID", include_batch_in_index=True),
    lambda r: [rand(r, (2, 7, 6, 3), "float64")])
for i, (r_, b, a, be) in enumerate([(5, 1.0, 1.0, 0.5), (2, 2.0, 1e-4, 0.75), (0, 1.0, 0.5, 1.0),
                                   (10, 0.5, 0.1, 0.3)]):
    add(f"lrn_{i}", ["LRN"],
        lambda x, r_=r_, b=b, a=a, be=be: _raw().LRN(input=x, depth_radius=r_, bias=b, alpha=a,
                                                     beta=be),
        lambda r: [rand(r, (2, 3, 4, 7))], dynamic=i == 0)

def _lrn_non_finite(r, c):
    """[2, 3, 4, c] with an inf, a NaN and a huge value (its square overflows) in windows."""
    x = rand(r, (2, 3, 4, c))
    x[0, 0, 0, 1], x[0, 1, 2, c // 2] = np.inf, np.nan
    x[1, 2, 3, c - 1], x[1, 0, 1, 0] = 3e19, -np.inf
    return [x]


# a window sum is a product with a band matrix: an inf gives NaN outside its windows; over 384
# channels with beta 0.5 or 1, a running sum: NaN after its windows, nothing before them
for _c, _beta in ((7, 0.5), (7, 0.75), (400, 0.5), (400, 1.0), (400, 0.75)):
    add(f"lrn_non_finite_{_c}_{_beta}", ["LRN"],
        lambda x, b=_beta: _raw().LRN(input=x, depth_radius=3, bias=2.0, alpha=0.1, beta=b),
        lambda r, c=_c: _lrn_non_finite(r, c), rtol=1e-5, atol=1e-6)
add("lrn_float16", ["LRN"], lambda x: _raw().LRN(input=x, depth_radius=2),
    lambda r: [rand(r, (1, 2, 2, 6), "float16")], rtol=2e-3, atol=2e-3)
