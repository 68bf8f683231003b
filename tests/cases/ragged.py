"""Ragged tensor ops: RaggedTensorToTensor, RaggedTensorToSparse, RaggedBincount, RaggedRange,
RaggedGather (raw, and as the public tf.ragged API emits them)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from . import Case, adder

CASES: list[Case] = []
add = adder(CASES, "ragged")
raw = tf.raw_ops


def _values(dtype, n, inner=()):
    if dtype == "string":
        a = np.empty((n,) + inner, object)
        a.reshape(-1)[:] = [f"v{i}".encode() for i in range(a.size)]
        return a
    return (np.arange(n * int(np.prod(inner, dtype=np.int64))) % 7 + 1).astype(dtype).reshape(
        (n,) + inner)


def _default(dtype, inner=()):
    if dtype == "string":
        a = np.empty(inner, object)
        a.reshape(-1)[:] = [b"pad"] * a.size
        return a
    return np.full(inner, -1 if np.dtype(dtype).kind in "if" else 0, dtype)


SPLITS = [0, 2, 2, 5, 6]
ROWIDS = [0, 0, 2, 2, 2, 3]
TYPES = ("float32", "float64", "int32", "int64", "uint8", "bool", "string", "float16")

# -- RaggedTensorToTensor ---------------------------------------------------------------------

for _t in TYPES:
    for _it in ("int32", "int64"):
        add(f"RaggedTensorToTensor_splits_{_t}_{_it}", ["RaggedTensorToTensor"],
            lambda v, d, s, _it=_it: raw.RaggedTensorToTensor(
                shape=np.asarray(-1, _it), values=v, default_value=d, row_partition_tensors=[s],
                row_partition_types=["ROW_SPLITS"]),
            [_values(_t, 6), _default(_t), np.array(SPLITS, _it)],
            dynamic=_t == "float32")
        add(f"RaggedTensorToTensor_rowids_{_t}_{_it}", ["RaggedTensorToTensor"],
            lambda v, d, n, r, _it=_it: raw.RaggedTensorToTensor(
                shape=np.asarray(-1, _it), values=v, default_value=d,
                row_partition_tensors=[n, r],
                row_partition_types=["FIRST_DIM_SIZE", "VALUE_ROWIDS"]),
            [_values(_t, 6), _default(_t), np.asarray(5, _it), np.array(ROWIDS, _it)],
            dynamic=_t == "float32")
for _name, _shape in (("crop", [2, 2]), ("pad", [6, 5]), ("mixed", [-1, 2]), ("rows", [3, -1]),
                      ("unknown", [-1, -1])):
    add(f"RaggedTensorToTensor_shape_{_name}", ["RaggedTensorToTensor"],
        lambda v, d, s, _shape=_shape: raw.RaggedTensorToTensor(
            shape=np.array(_shape, np.int64), values=v, default_value=d,
            row_partition_tensors=[s], row_partition_types=["ROW_SPLITS"]),
        [_values("int64", 6), _default("int64"), np.array(SPLITS, np.int64)], dynamic=True)
add("RaggedTensorToTensor_inner_dims", ["RaggedTensorToTensor"],
    lambda v, d, s: raw.RaggedTensorToTensor(
        shape=np.int64(-1), values=v, default_value=d, row_partition_tensors=[s],
        row_partition_types=["ROW_SPLITS"]),
    [_values("float32", 6, (3,)), np.array([9, 8, 7], np.float32), np.array(SPLITS, np.int64)])
add("RaggedTensorToTensor_scalar_default_inner", ["RaggedTensorToTensor"],
    lambda v, d, s: raw.RaggedTensorToTensor(
        shape=np.int64(-1), values=v, default_value=d, row_partition_tensors=[s],
        row_partition_types=["ROW_SPLITS"]),
    [_values("int32", 6, (2,)), np.int32(0), np.array(SPLITS, np.int64)])
add("RaggedTensorToTensor_empty", ["RaggedTensorToTensor"],
    lambda v, d, s: raw.RaggedTensorToTensor(
        shape=np.int64(-1), values=v, default_value=d, row_partition_tensors=[s],
        row_partition_types=["ROW_SPLITS"]),
    [_values("float32", 0), np.float32(0), np.array([0, 0, 0], np.int64)], dynamic=True)
add("RaggedTensorToTensor_no_rows", ["RaggedTensorToTensor"],
    lambda v, d, s: raw.RaggedTensorToTensor(
        shape=np.int64(-1), values=v, default_value=d, row_partition_tensors=[s],
        row_partition_types=["ROW_SPLITS"]),
    [_values("float32", 0), np.float32(0), np.array([0], np.int64)])

_RT3 = tf.ragged.constant([[[1, 2], [3]], [], [[4, 5, 6], [], [7]]], dtype=tf.int64)
_S1, _S2 = [t.numpy() for t in _RT3.nested_row_splits]
_R1, _R2 = _RT3.value_rowids().numpy(), _RT3.values.value_rowids().numpy()
_V3 = _RT3.flat_values.numpy()
add("RaggedTensorToTensor_2_levels_splits", ["RaggedTensorToTensor"],
    lambda v, d, s1, s2: raw.RaggedTensorToTensor(
        shape=np.int64(-1), values=v, default_value=d, row_partition_tensors=[s1, s2],
        row_partition_types=["ROW_SPLITS", "ROW_SPLITS"]),
    [_V3, np.int64(-9), _S1, _S2], dynamic=True)
add("RaggedTensorToTensor_2_levels_rowids", ["RaggedTensorToTensor"],
    lambda v, d, n, r1, r2: raw.RaggedTensorToTensor(
        shape=np.array([4, 2, 2], np.int64), values=v, default_value=d,
        row_partition_tensors=[n, r1, r2],
        row_partition_types=["FIRST_DIM_SIZE", "VALUE_ROWIDS", "VALUE_ROWIDS"]),
    [_V3, np.int64(-9), np.int64(3), _R1, _R2])
add("to_tensor_public", ["RaggedTensorToTensor"],
    lambda v, s: tf.RaggedTensor.from_row_splits(v, s).to_tensor(default_value=-1.0,
                                                                  shape=[None, 4]),
    [_values("float32", 6), np.array(SPLITS, np.int64)], dynamic=True)

# -- RaggedTensorToSparse ---------------------------------------------------------------------

for _t in ("float32", "int64", "string", "bool"):
    for _it in ("int32", "int64"):
        add(f"RaggedTensorToSparse_{_t}_{_it}", ["RaggedTensorToSparse"],
            lambda s, v: raw.RaggedTensorToSparse(rt_nested_splits=[s], rt_dense_values=v),
            [np.array(SPLITS, _it), _values(_t, 6)], dynamic=_t == "float32")
add("RaggedTensorToSparse_2_levels", ["RaggedTensorToSparse"],
    lambda s1, s2, v: raw.RaggedTensorToSparse(rt_nested_splits=[s1, s2], rt_dense_values=v),
    [_S1, _S2, _V3], dynamic=True)
add("RaggedTensorToSparse_inner", ["RaggedTensorToSparse"],
    lambda s, v: raw.RaggedTensorToSparse(rt_nested_splits=[s], rt_dense_values=v),
    [np.array(SPLITS, np.int64), _values("float32", 6, (2,))])
add("RaggedTensorToSparse_empty", ["RaggedTensorToSparse"],
    lambda s, v: raw.RaggedTensorToSparse(rt_nested_splits=[s], rt_dense_values=v),
    [np.array([0, 0], np.int64), _values("int32", 0)])

# -- RaggedBincount ---------------------------------------------------------------------------

_BV = [1, 1, 0, 7, 2, 3]
for _tidx in ("int32", "int64"):
    for _t in ("int32", "int64", "float32", "float64"):
        for _binary in (False, True):
            for _weighted in (False, True):
                if _binary and _weighted:
                    continue  # TF: binary_output and weights cannot both be set
                add(f"RaggedBincount_{_tidx}_{_t}_{'binary' if _binary else 'count'}_"
                    f"{'weighted' if _weighted else 'plain'}", ["RaggedBincount"],
                    lambda s, v, n, w, _binary=_binary: raw.RaggedBincount(
                        splits=s, values=v, size=n, weights=w, binary_output=_binary),
                    [np.array(SPLITS, np.int64), np.array(_BV, _tidx), np.asarray(4, _tidx),
                     (np.arange(6) * 0.5 + 1).astype(_t) if _weighted else np.zeros(0, _t)],
                    dynamic=_t == "float32")
add("RaggedBincount_size0", ["RaggedBincount"],
    lambda s, v, n, w: raw.RaggedBincount(splits=s, values=v, size=n, weights=w),
    [np.array(SPLITS, np.int64), np.array(_BV, np.int32), np.int32(0), np.zeros(0, np.int64)])

# -- RaggedRange ------------------------------------------------------------------------------

for _t in ("int32", "int64", "float32", "float64"):
    for _st in ("int32", "int64"):
        add(f"RaggedRange_{_t}_{_st}", ["RaggedRange"],
            lambda a, b, c, _st=_st: raw.RaggedRange(starts=a, limits=b, deltas=c, Tsplits=_st),
            [np.array([0, 2, 5, 3], _t), np.array([3, 2, 0, 10], _t), np.array([1, 1, -2, 3], _t)],
            dynamic=_t == "int32")
add("RaggedRange_broadcast", ["RaggedRange"],
    lambda a, b, c: raw.RaggedRange(starts=a, limits=b, deltas=c),
    [np.int64(0), np.array([3, 5, 0], np.int64), np.int64(2)])
add("RaggedRange_float_steps", ["RaggedRange"],
    lambda a, b, c: raw.RaggedRange(starts=a, limits=b, deltas=c),
    [np.array([0.5, 1.0], np.float32), np.float32(3.0), np.array([0.7, 0.1], np.float32)])


def _multiples(rng):
    """Float32 limits a whole number of deltas from their starts, as float32 rounds them: the
    row lengths are then ceil((limit - start) / delta) computed in float32, as TF counts."""
    s = rng.uniform(-2, 2, 12).astype(np.float32)
    d = rng.choice([0.1, 0.3, 0.7, 0.2, -0.1, -0.3], 12).astype(np.float32)
    return [s, (s + d * rng.integers(0, 12, 12)).astype(np.float32), d]


add("RaggedRange_float32_multiples", ["RaggedRange"],
    lambda a, b, c: raw.RaggedRange(starts=a, limits=b, deltas=c), _multiples, dynamic=True)
for _id, _ins in [("inf_limit", [np.float32(0), np.array([3, np.inf], np.float32), np.float32(1)]),
                  ("nan_start", [np.array([np.nan], np.float64), np.float64(1), np.float64(1)]),
                  ("int64_overflow", [np.int64(5e18), np.int64(-5e18), np.int64(-1)])]:
    add(f"RaggedRange_{_id}", ["RaggedRange"],
        lambda a, b, c: raw.RaggedRange(starts=a, limits=b, deltas=c), _ins,
        rejects=r"Requires \(\(limit - start\) / delta\) <= 9223372036854775807")
add("RaggedRange_int32_splits_row", ["RaggedRange"],  # (one row past int32's splits)
    lambda a, b, c: raw.RaggedRange(starts=a, limits=b, deltas=c, Tsplits="int32"),
    [np.float32(0), np.float32(3e9), np.float32(1)],
    rejects=r"Requires \(\(limit - start\) / delta\) <= 2147483647")
add("RaggedRange_no_rows", ["RaggedRange"],
    lambda a, b, c: raw.RaggedRange(starts=a, limits=b, deltas=c),
    [np.zeros(0, np.int64), np.zeros(0, np.int64), np.int64(1)], dynamic=True)
add("RaggedRange_int32_splits_overflow", ["RaggedRange"],
    lambda a, b, c: raw.RaggedRange(starts=a, limits=b, deltas=c, Tsplits="int32"),
    [np.int64(0), np.array([2 ** 30, 2 ** 30], np.int64), np.int64(1)],
    rejects="The total range size overflowed")
add("ragged_range_public", ["RaggedRange", "RaggedTensorToTensor"],
    lambda n: tf.ragged.range(n).to_tensor(), [np.array([3, 0, 5], np.int32)], dynamic=True)

def _flat(outputs):
    return tuple(tf.nest.flatten(outputs))


# -- RaggedGather -----------------------------------------------------------------------------

for _t in ("float32", "int64", "string"):
    for _ti in ("int32", "int64"):
        add(f"RaggedGather_{_t}_{_ti}", ["RaggedGather"],
            lambda s, v, i: _flat(raw.RaggedGather(params_nested_splits=[s], params_dense_values=v,
                                             indices=i, OUTPUT_RAGGED_RANK=1)),
            [np.array(SPLITS, np.int64), _values(_t, 6), np.array([3, 0, 0, 1], _ti)],
            dynamic=_t == "float32")
add("RaggedGather_2_levels", ["RaggedGather"],
    lambda s1, s2, v, i: _flat(raw.RaggedGather(
        params_nested_splits=[s1, s2], params_dense_values=v, indices=i, OUTPUT_RAGGED_RANK=2)),
    [_S1, _S2, _V3, np.array([2, 0, 2, 1], np.int32)], dynamic=True)
add("RaggedGather_2d_indices", ["RaggedGather"],
    lambda s, v, i: _flat(raw.RaggedGather(params_nested_splits=[s], params_dense_values=v,
                                     indices=i, OUTPUT_RAGGED_RANK=2)),
    [np.array(SPLITS, np.int32), _values("float32", 6, (2,)),
     np.array([[1, 2], [0, 3], [3, 3]], np.int64)])
add("RaggedGather_empty", ["RaggedGather"],
    lambda s, v, i: _flat(raw.RaggedGather(params_nested_splits=[s], params_dense_values=v,
                                     indices=i, OUTPUT_RAGGED_RANK=1)),
    [np.array(SPLITS, np.int64), _values("int32", 6), np.zeros(0, np.int32)])
# splits TF refuses (even when no row is gathered); a first split past 0 it accepts
for _id, _sp, _idx, _says in [
        ("negative", [-1, 2, 2, 5, 6], [0], "must be non-negative"),
        ("negative_none_gathered", [-5, 2, 2, 5, 6], [], "must be non-negative"),
        ("past_values", [0, 2, 2, 5, 9], [1], "must not point past values"),
        ("unsorted", [0, 3, 2, 5, 6], [3], "must be sorted")]:
    add(f"RaggedGather_splits_{_id}", ["RaggedGather"],
        lambda s, v, i: _flat(raw.RaggedGather(params_nested_splits=[s], params_dense_values=v,
                                         indices=i, OUTPUT_RAGGED_RANK=1)),
        [np.array(_sp, np.int64), _values("int32", 6), np.array(_idx, np.int32)],
        rejects=f"Ragged splits {_says}")
add("RaggedGather_splits_from_1", ["RaggedGather"],
    lambda s, v, i: _flat(raw.RaggedGather(params_nested_splits=[s], params_dense_values=v,
                                     indices=i, OUTPUT_RAGGED_RANK=1)),
    [np.array([1, 2, 2, 5, 6], np.int64), _values("int32", 6), np.array([3, 0, 1], np.int32)])
add("gather_public", ["RaggedGather", "RaggedTensorToTensor"],
    lambda v, s, i: tf.gather(tf.RaggedTensor.from_row_splits(v, s), i).to_tensor(),
    [_values("int32", 6), np.array(SPLITS, np.int64), np.array([2, 0], np.int32)], dynamic=True)
