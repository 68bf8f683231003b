"""Segment and sparse ops: segment reductions, bincounts, Bucketize, Unique, SparseToDense,
softmax cross-entropy."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from . import Case, adder, rand

CASES: list[Case] = []
add = adder(CASES, "segment")
raw = tf.raw_ops

REAL = ("float32", "float64", "float16", "bfloat16", "int8", "int16", "int32", "int64", "uint8",
        "uint16", "uint32", "uint64")
COMPLEX = ("complex64", "complex128")


def _dt(name):
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def data(shape, dtype="float32", low=-3, high=3):
    def gen(rng):
        if dtype == "bfloat16":
            return rand(rng, shape, "float32", low, high).astype(_dt(dtype))
        lo = 0 if np.dtype(dtype).kind == "u" else low
        return rand(rng, shape, dtype, lo, high)
    return gen


def inputs(*gens):
    def make(rng):
        return [g(rng) if callable(g) else np.asarray(g) for g in gens]
    return make


def tol(dtype):
    if dtype in ("float16", "bfloat16"):
        return dict(rtol=2e-2, atol=2e-2)
    return dict(rtol=1e-5, atol=1e-5)


# -- sorted segment reductions --------------------------------------------------------------

SORTED_IDS = np.array([0, 0, 1, 3, 3, 3, 6], np.int32)
for _op in ("SegmentSum", "SegmentProd", "SegmentMean", "SegmentMax", "SegmentMin"):
    _types = REAL + (COMPLEX if _op in ("SegmentSum", "SegmentProd", "SegmentMean") else ())
    for _t in _types:
        add(f"{_op}_{_t}", [_op],
            lambda d, i, _op=_op: getattr(raw, _op)(data=d, segment_ids=i),
            inputs(data((7, 3), _t), SORTED_IDS), dynamic=_t == "float32", **tol(_t))
    add(f"{_op}_int64_ids_3d", [_op],
        lambda d, i, _op=_op: getattr(raw, _op)(data=d, segment_ids=i),
        inputs(data((7, 2, 3)), SORTED_IDS.astype(np.int64)), **tol("float32"))
    add(f"{_op}_empty", [_op],
        lambda d, i, _op=_op: getattr(raw, _op)(data=d, segment_ids=i),
        inputs(np.zeros((0, 3), np.float32), np.zeros(0, np.int32)))
# integer means divide the sum as TF keeps it, in the data's type (wrapped), truncating
for _t in ("int8", "uint8", "int32", "int64"):
    _lo, _hi = np.iinfo(_t).min, np.iinfo(_t).max
    add(f"SegmentMean_{_t}_wraps", ["SegmentMean"],
        lambda d, i: raw.SegmentMean(data=d, segment_ids=i),
        inputs(np.array([[_lo, _hi, 3], [-2 if _lo else 2, _hi, 1], [_lo, 7, 9], [_hi, _hi, 0],
                         [_hi, 1, 5]], _t), np.array([0, 0, 1, 2, 2], np.int32)))
add("SegmentSum_public_1d", ["SegmentSum"], lambda d, i: tf.math.segment_sum(d, i),
    inputs(data((7,)), np.array([1, 1, 2, 2, 2, 4, 4], np.int32)))

# -- unsorted segment reductions ------------------------------------------------------------

UNSORTED_IDS = np.array([3, -1, 0, 3, 1, 0, 3], np.int32)
for _op in ("UnsortedSegmentSum", "UnsortedSegmentProd", "UnsortedSegmentMax",
            "UnsortedSegmentMin"):
    _types = REAL + (COMPLEX if _op in ("UnsortedSegmentSum", "UnsortedSegmentProd") else ())
    for _t in _types:
        add(f"{_op}_{_t}", [_op],
            lambda d, i, n, _op=_op: getattr(raw, _op)(data=d, segment_ids=i, num_segments=n),
            inputs(data((7, 3), _t), UNSORTED_IDS, np.int32(5)), dynamic=_t == "float32",
            **tol(_t))
    add(f"{_op}_2d_ids_int64", [_op],
        lambda d, i, n, _op=_op: getattr(raw, _op)(data=d, segment_ids=i, num_segments=n),
        inputs(data((2, 4, 3)), np.array([[0, 2, 2, -1], [5, 0, 1, 2]], np.int64),
               np.int64(7)), **tol("float32"))
    add(f"{_op}_all_dropped", [_op],
        lambda d, i, n, _op=_op: getattr(raw, _op)(data=d, segment_ids=i, num_segments=n),
        inputs(data((3, 2)), np.array([-1, -1, -2], np.int32), np.int32(2)))
add("UnsortedSegmentSum_int16_ids", ["UnsortedSegmentSum"],
    lambda d, i, n: raw.UnsortedSegmentSum(data=d, segment_ids=i, num_segments=n),
    inputs(data((5,), "int32"), np.array([2, 0, 2, 2, 1], np.int16), np.int32(4)))
add("UnsortedSegmentMax_public", ["UnsortedSegmentMax"],
    lambda d, i: tf.math.unsorted_segment_max(d, i, 6),
    inputs(data((6, 2), "float32"), np.array([5, 0, 5, 2, 2, 0], np.int32)))

# -- sparse segment reductions --------------------------------------------------------------

SP_IDX = np.array([4, 0, 2, 2, 1, 5], np.int32)
SP_SEG = np.array([0, 0, 2, 2, 2, 4], np.int32)
for _op, _types in (("SparseSegmentSum", REAL), ("SparseSegmentMean", REAL[:4]),
                    ("SparseSegmentSqrtN", REAL[:4])):
    for _t in _types:
        add(f"{_op}_{_t}", [_op],
            lambda d, i, s, _op=_op: getattr(raw, _op)(data=d, indices=i, segment_ids=s),
            inputs(data((6, 3), _t), SP_IDX, SP_SEG), dynamic=_t == "float32", **tol(_t))
        _wn = _op + "WithNumSegments"
        add(f"{_wn}_{_t}", [_wn],
            lambda d, i, s, n, _wn=_wn: getattr(raw, _wn)(data=d, indices=i, segment_ids=s,
                                                          num_segments=n),
            inputs(data((6, 3), _t), SP_IDX, SP_SEG, np.int32(7)), **tol(_t))
    add(f"{_op}_int64_indices", [_op],
        lambda d, i, s, _op=_op: getattr(raw, _op)(data=d, indices=i, segment_ids=s),
        inputs(data((6, 2, 2)), SP_IDX.astype(np.int64), SP_SEG.astype(np.int64)),
        **tol("float32"))
    add(f"{_op}WithNumSegments_int64_ids", [_op + "WithNumSegments"],
        lambda d, i, s, n, _op=_op: getattr(raw, _op + "WithNumSegments")(
            data=d, indices=i, segment_ids=s, num_segments=n),
        inputs(data((6, 2)), SP_IDX.astype(np.int64), SP_SEG, np.int64(5)), **tol("float32"))
add("SparseSegmentMean_public", ["SparseSegmentMean"],
    lambda d, i, s: tf.sparse.segment_mean(d, i, s),
    inputs(data((6, 3)), SP_IDX, SP_SEG), **tol("float32"))
add("SparseSegmentSum_empty", ["SparseSegmentSum"],
    lambda d, i, s: raw.SparseSegmentSum(data=d, indices=i, segment_ids=s),
    inputs(data((4, 3)), np.zeros(0, np.int32), np.zeros(0, np.int32)))

# -- bincounts and buckets ------------------------------------------------------------------

for _t in ("int32", "int64", "float32", "float64"):
    add(f"Bincount_weights_{_t}", ["Bincount"],
        lambda a, s, w: raw.Bincount(arr=a, size=s, weights=w),
        inputs(data((12,), "int32", 0, 8), np.int32(6), data((12,), _t)), **tol(_t))
add("Bincount_counts", ["Bincount"],
    lambda a, s, w: raw.Bincount(arr=a, size=s, weights=w),
    inputs(data((3, 4), "int32", 0, 8), np.int32(7), np.zeros(0, np.float32)), dynamic=True)
add("DenseBincount_public", ["DenseBincount"], lambda a: tf.math.bincount(a, minlength=3),
    inputs(data((9,), "int32", 0, 5)))
for _tidx in ("int32", "int64"):
    for _t in ("int32", "int64", "float32", "float64"):
        for _bin in (False, True):
            add(f"DenseBincount_{_tidx}_{_t}_{'binary' if _bin else 'count'}",
                ["DenseBincount"],
                lambda a, s, w, _bin=_bin: raw.DenseBincount(input=a, size=s, weights=w,
                                                             binary_output=_bin),
                inputs(data((3, 5), _tidx, 0, 7), np.array(6, _tidx), data((3, 5), _t)),
                **tol(_t))
    add(f"DenseBincount_{_tidx}_1d_noweights", ["DenseBincount"],
        lambda a, s, w: raw.DenseBincount(input=a, size=s, weights=w),
        inputs(data((8,), _tidx, 0, 4), np.array(4, _tidx), np.zeros(0, np.float32)),
        dynamic=True)

for _t in ("int32", "int64", "float32", "float64"):
    add(f"Bucketize_{_t}", ["Bucketize"],
        lambda x: raw.Bucketize(input=x, boundaries=[-2.0, -0.5, 0.0, 1.0, 1.0, 2.5]),
        inputs(data((4, 5), _t)), dynamic=_t == "float32")
add("Bucketize_exact_boundaries", ["Bucketize"],
    lambda x: raw.Bucketize(input=x, boundaries=[0.0, 1.5, 3.0]),
    inputs(np.array([-1.0, 0.0, 1.5, 1.4999, 3.0, 3.5], np.float32)))
add("Bucketize_no_boundaries", ["Bucketize"],
    lambda x: raw.Bucketize(input=x, boundaries=[]), inputs(data((3,), "float32")))

# -- unique ---------------------------------------------------------------------------------

for _t in REAL + ("bool",):
    add(f"Unique_{_t}", ["Unique"], lambda x: tuple(raw.Unique(x=x)),
        inputs(data((15,), _t)), dynamic=_t == "float32")
add("Unique_out_idx_int64", ["Unique"], lambda x: tuple(raw.Unique(x=x, out_idx=tf.int64)),
    inputs(data((10,), "int32")))
add("Unique_signed_zero", ["Unique"], lambda x: tuple(raw.Unique(x=x)),
    inputs(np.array([1.0, -0.0, 2.0, 0.0, 1.0], np.float32)))
# float16 and bfloat16 keep 0 and -0 apart (TF hashes their bits), and each NaN; rows of
# several values it compares by value
for _half in ("float16", "bfloat16"):
    add(f"Unique_signed_zero_{_half}", ["Unique"],
        lambda x, _h=_half: tuple(raw.Unique(x=tf.cast(x, _h))),
        inputs(np.array([1.0, -0.0, 2.0, 0.0, np.nan, -0.0, np.nan, 1.0], np.float32)))
add("UniqueWithCounts_signed_zero_float16", ["UniqueWithCounts"],
    lambda x: tuple(raw.UniqueWithCounts(x=x)),
    inputs(np.array([0.0, -0.0, 0.0, 3.0], np.float16)))
add("UniqueV2_rows_signed_zero_float16", ["UniqueV2"],
    lambda x: tuple(raw.UniqueV2(x=x, axis=np.array([0], np.int64))),
    inputs(np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 1.0], [-0.0, 1.0]], np.float16)))
add("Unique_empty", ["Unique"], lambda x: tuple(raw.Unique(x=x)),
    inputs(np.zeros(0, np.float32)))
add("Unique_string", ["Unique"], lambda x: tuple(raw.Unique(x=x)),
    inputs(np.array([b"b", b"a", b"b", b"", b"a"], dtype=object)))
for _t in ("float32", "int64", "bool"):
    add(f"UniqueWithCounts_{_t}", ["UniqueWithCounts"],
        lambda x: tuple(raw.UniqueWithCounts(x=x)), inputs(data((12,), _t)))
add("UniqueWithCounts_int64_idx", ["UniqueWithCounts"],
    lambda x: tuple(raw.UniqueWithCounts(x=x, out_idx=tf.int64)), inputs(data((12,), "int8")))


def rows_with_repeats(shape, dtype, axis):
    def gen(rng):
        x = rand(rng, shape, dtype, -1, 1)
        x = np.moveaxis(x, axis, 0).copy()
        x[2] = x[0]
        x[-1] = x[1]
        return np.moveaxis(x, 0, axis)
    return gen


for _axis in (0, 1, -1):
    for _t in ("float32", "int32"):
        add(f"UniqueV2_axis{_axis}_{_t}", ["UniqueV2"],
            lambda x, a: tuple(raw.UniqueV2(x=x, axis=a)),
            inputs(rows_with_repeats((5, 6, 4), _t, _axis), np.array([_axis], np.int64)),
            dynamic=_axis == 1 and _t == "float32")
        add(f"UniqueWithCountsV2_axis{_axis}_{_t}", ["UniqueWithCountsV2"],
            lambda x, a: tuple(raw.UniqueWithCountsV2(x=x, axis=a, out_idx=tf.int64)),
            inputs(rows_with_repeats((5, 6, 4), _t, _axis), np.array([_axis], np.int32)))
add("UniqueV2_no_axis", ["UniqueV2"], lambda x, a: tuple(raw.UniqueV2(x=x, axis=a)),
    inputs(data((9,), "int32"), np.zeros(0, np.int64)))
for _axis in (0, 1):  # no rows: the row width is spelled out, never inferred
    add(f"UniqueV2_no_rows_axis{_axis}", ["UniqueV2"],
        lambda x, a: tuple(raw.UniqueV2(x=x, axis=a)),
        inputs(np.zeros((0, 3), np.float32), np.array([_axis], np.int64)), dynamic=True)
add("UniqueV2_zero_width_rows", ["UniqueV2"], lambda x, a: tuple(raw.UniqueV2(x=x, axis=a)),
    inputs(np.zeros((4, 0), np.float32), np.array([0], np.int64)))

# -- SparseToDense --------------------------------------------------------------------------

_SP2 = np.array([[0, 1], [1, 3], [2, 0], [2, 2]], np.int32)
for _t in REAL + COMPLEX + ("bool",):
    add(f"SparseToDense_{_t}", ["SparseToDense"],
        lambda i, s, v, d: raw.SparseToDense(sparse_indices=i, output_shape=s, sparse_values=v,
                                             default_value=d),
        inputs(_SP2, np.array([3, 4], np.int32), data((4,), _t), data((), _t)),
        dynamic=_t == "float32")
for _validate in (True, False):
    add(f"SparseToDense_int64_{'validate' if _validate else 'novalidate'}", ["SparseToDense"],
        lambda i, s, v, d, _val=_validate: raw.SparseToDense(
            sparse_indices=i, output_shape=s, sparse_values=v, default_value=d,
            validate_indices=_val),
        inputs(_SP2.astype(np.int64), np.array([3, 5], np.int64), data((4,)), np.float32(-1)))
add("SparseToDense_scalar_value", ["SparseToDense"],
    lambda i, s, v, d: raw.SparseToDense(sparse_indices=i, output_shape=s, sparse_values=v,
                                         default_value=d),
    inputs(np.array([[0, 0, 1], [1, 2, 0]], np.int32), np.array([2, 3, 2], np.int32),
           np.float32(5), np.float32(0)))
add("SparseToDense_1d_indices", ["SparseToDense"],
    lambda i, s, v, d: raw.SparseToDense(sparse_indices=i, output_shape=s, sparse_values=v,
                                         default_value=d),
    inputs(np.array([1, 4, 5], np.int64), np.array([7], np.int64), data((3,), "int32"),
           np.int32(9)))
add("SparseToDense_scalar_index", ["SparseToDense"],
    lambda i, s, v, d: raw.SparseToDense(sparse_indices=i, output_shape=s, sparse_values=v,
                                         default_value=d),
    inputs(np.int32(2), np.array([4], np.int32), np.float32(3), np.float32(1)))
add("SparseToDense_unsorted_duplicates_novalidate", ["SparseToDense"],
    lambda i, s, v, d: raw.SparseToDense(sparse_indices=i, output_shape=s, sparse_values=v,
                                         default_value=d, validate_indices=False),
    inputs(np.array([[2, 1], [0, 0], [2, 1]], np.int32), np.array([3, 2], np.int32),
           np.array([1.0, 2.0, 3.0], np.float32), np.float32(0)))
add("SparseToDense_string", ["SparseToDense"],
    lambda i, s, v, d: raw.SparseToDense(sparse_indices=i, output_shape=s, sparse_values=v,
                                         default_value=d),
    inputs(np.array([0, 2], np.int32), np.array([3], np.int32),
           np.array([b"x", b"yz"], dtype=object), np.array(b"-", dtype=object)))

# -- softmax cross-entropy ------------------------------------------------------------------

for _t in ("float16", "bfloat16", "float32", "float64"):
    add(f"SoftmaxCrossEntropyWithLogits_{_t}", ["SoftmaxCrossEntropyWithLogits"],
        lambda f, lab: tuple(raw.SoftmaxCrossEntropyWithLogits(features=f, labels=lab)),
        inputs(data((4, 6), _t, -5, 5),
               lambda rng, _t=_t: (lambda p: (p / p.sum(-1, keepdims=True)))(
                   rng.uniform(0, 1, (4, 6))).astype(np.float32).astype(_dt(_t))),
        dynamic=_t == "float32", **tol(_t))
    for _tl in ("int32", "int64"):
        add(f"SparseSoftmaxCrossEntropyWithLogits_{_t}_{_tl}",
            ["SparseSoftmaxCrossEntropyWithLogits"],
            lambda f, lab: tuple(raw.SparseSoftmaxCrossEntropyWithLogits(features=f,
                                                                         labels=lab)),
            inputs(data((5, 7), _t, -5, 5), data((5,), _tl, 0, 6)),
            dynamic=_t == "float32" and _tl == "int64", **tol(_t))
add("SoftmaxCrossEntropyWithLogits_broadcast", ["SoftmaxCrossEntropyWithLogits"],
    lambda f, lab: tuple(raw.SoftmaxCrossEntropyWithLogits(features=f, labels=lab)),
    inputs(data((3, 5), "float32", -5, 5), np.array([[0.1, 0.2, 0.3, 0.4, 0.0]], np.float32)),
    **tol("float32"))
add("SoftmaxCrossEntropyWithLogits_public", ["SoftmaxCrossEntropyWithLogits"],
    lambda f, lab: tf.nn.softmax_cross_entropy_with_logits(lab, f),
    inputs(data((2, 3, 4), "float32", -5, 5),
           lambda rng: np.eye(4, dtype=np.float32)[rng.integers(0, 4, (2, 3))]),
    **tol("float32"))
add("SparseSoftmaxCrossEntropyWithLogits_large_logits",
    ["SparseSoftmaxCrossEntropyWithLogits"],
    lambda f, lab: tuple(raw.SparseSoftmaxCrossEntropyWithLogits(features=f, labels=lab)),
    inputs(np.array([[1000.0, 0.0, -1000.0], [5.0, 5.0, 5.0]], np.float32),
           np.array([2, 1], np.int32)), **tol("float32"))
