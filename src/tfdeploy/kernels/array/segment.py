"""Segment and sparse kernels: (Unsorted/Sparse)Segment reductions, bincounts, Bucketize,
Unique, SparseToDense, softmax cross-entropy."""

from __future__ import annotations

import numpy as np

from tfdeploy.kernels.common import low_precision, op
from tfdeploy.runtime.limits import check_array

# -- segment reductions ---------------------------------------------------------------------

_UFUNCS = {"sum": np.add, "prod": np.multiply, "max": np.maximum, "min": np.minimum,
           "mean": np.add, "sqrtn": np.add}


def _identity(kind: str, dtype: np.dtype, unsorted: bool):
    """The value of an empty segment: TF fills unsorted max/min with lowest/highest."""
    if kind == "prod":
        return dtype.type(1)
    if unsorted and kind in ("max", "min"):
        info = np.iinfo(dtype) if dtype.kind in "iu" else _finfo(dtype)
        return info.min if kind == "max" else info.max
    return dtype.type(0)


def _finfo(dtype: np.dtype):
    try:
        return np.finfo(dtype)
    except ValueError:  # bfloat16
        import ml_dtypes

        return ml_dtypes.finfo(dtype)


def _int_div(s: np.ndarray, n: np.ndarray) -> np.ndarray:
    """C integer division (truncating toward zero) by positive counts ``n``: numpy's floor
    division, one up where a negative ``s`` leaves a remainder (|s| would overflow at the
    type's minimum)."""
    q = s // n
    return (q + ((s < 0) & (q * n != s))).astype(s.dtype)


def _reduce(data: np.ndarray, ids: np.ndarray, num: int, kind: str, unsorted: bool,
            rows: np.ndarray | None = None) -> np.ndarray:
    """Reduce rows of ``data`` (or ``data[rows]``) into ``num`` segments given by ``ids``.

    ``ids`` is 1-D with one entry per reduced row; negative ids are dropped."""
    t = data.dtype
    inner = data.shape[1:] if rows is not None else data.shape[ids.ndim:]
    flat = data.reshape((data.shape[0] if rows is not None else ids.size,
                         int(np.prod(inner, dtype=np.int64))))
    ids = ids.reshape(-1).astype(np.int64)
    if rows is not None:
        rows = rows.reshape(-1).astype(np.int64)
    keep = ids >= 0
    order = np.argsort(ids[keep], kind="stable") if unsorted else None
    sel = np.flatnonzero(keep)
    if order is not None:
        sel = sel[order]
    sid = ids[sel]
    src = rows[sel] if rows is not None else sel
    work = np.float32 if low_precision(t) else t
    # (a hostile segment id or num_segments sets the rows: within the tensor limit first)
    check_array((max(num, 0), *inner), work, "the segments")
    out = np.full((num, flat.shape[1]), _identity(kind, np.dtype(t), unsorted), work)
    if sid.size:
        vals = flat[src].astype(work, copy=False)
        starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
        # (in the data's type, as TF sums: numpy's reduceat widens small integers, and an
        # integer mean divides the wrapped sum)
        red = _UFUNCS[kind].reduceat(vals, starts, axis=0).astype(work, copy=False)
        seg = sid[starts]
        if kind in ("mean", "sqrtn"):
            counts = np.diff(np.r_[starts, sid.size])[:, None]
            if kind == "sqrtn":
                red = red / np.sqrt(counts).astype(work)
            elif np.dtype(work).kind in "iu":
                red = _int_div(red, counts.astype(work))
            else:
                red = red / counts.astype(work)
        out[seg] = red
    return out.astype(t, copy=False).reshape((num,) + inner)


def _check_sorted_ids(ids: np.ndarray, n: int) -> None:
    if ids.ndim != 1 or ids.shape[0] != n:
        raise ValueError(f"segment_ids should be a vector of length {n} (the size of data's "
                         f"first dimension), got shape {ids.shape}")
    if ids.size:
        if ids[0] < 0:
            raise ValueError(f"segment ids must be non-negative, got {ids[0]}")
        if np.any(ids[1:] < ids[:-1]):
            raise ValueError("segment ids are not increasing")


def _sorted_segment(kind):
    def kernel(data, segment_ids):
        if data.ndim < 1:
            raise ValueError("data must be at least rank 1")
        _check_sorted_ids(segment_ids, data.shape[0])
        num = int(segment_ids[-1]) + 1 if segment_ids.size else 0
        return _reduce(data, segment_ids, num, kind, unsorted=False)
    return kernel


@op("SegmentSum")
def SegmentSum(data, segment_ids):
    """SegmentSum: sums of data rows over sorted segment ids (empty segments are 0)."""
    return _sorted_segment("sum")(data, segment_ids)


@op("SegmentProd")
def SegmentProd(data, segment_ids):
    """SegmentProd: products of data rows over sorted segment ids (empty segments are 1)."""
    return _sorted_segment("prod")(data, segment_ids)


@op("SegmentMax")
def SegmentMax(data, segment_ids):
    """SegmentMax: maxima of data rows over sorted segment ids (empty segments are 0)."""
    return _sorted_segment("max")(data, segment_ids)


@op("SegmentMin")
def SegmentMin(data, segment_ids):
    """SegmentMin: minima of data rows over sorted segment ids (empty segments are 0)."""
    return _sorted_segment("min")(data, segment_ids)


@op("SegmentMean")
def SegmentMean(data, segment_ids):
    """SegmentMean: means of data rows over sorted segment ids (integers truncate)."""
    return _sorted_segment("mean")(data, segment_ids)


def _unsorted(data, segment_ids, num_segments, kind):
    num = int(np.asarray(num_segments))
    if num < 0:
        raise ValueError(f"num_segments must be non-negative, got {num}")
    check_array((num,) + data.shape[segment_ids.ndim:], np.float64, "the segments")
    if data.shape[:segment_ids.ndim] != segment_ids.shape:
        raise ValueError(f"data.shape {data.shape} must start with segment_ids.shape "
                         f"{segment_ids.shape}")
    if segment_ids.size and segment_ids.max() >= num:
        raise ValueError(f"segment_ids has value {int(segment_ids.max())} outside "
                         f"[0, {num})")
    return _reduce(data, segment_ids, num, kind, unsorted=True)


@op("UnsortedSegmentSum")
def UnsortedSegmentSum(data, segment_ids, num_segments):
    """UnsortedSegmentSum: sums into num_segments by segment id (negative ids dropped)."""
    return _unsorted(data, segment_ids, num_segments, "sum")


@op("UnsortedSegmentProd")
def UnsortedSegmentProd(data, segment_ids, num_segments):
    """UnsortedSegmentProd: products into num_segments by segment id (empty: 1)."""
    return _unsorted(data, segment_ids, num_segments, "prod")


@op("UnsortedSegmentMax")
def UnsortedSegmentMax(data, segment_ids, num_segments):
    """UnsortedSegmentMax: maxima into num_segments by segment id (empty: dtype's lowest)."""
    return _unsorted(data, segment_ids, num_segments, "max")


@op("UnsortedSegmentMin")
def UnsortedSegmentMin(data, segment_ids, num_segments):
    """UnsortedSegmentMin: minima into num_segments by segment id (empty: dtype's highest)."""
    return _unsorted(data, segment_ids, num_segments, "min")


def _sparse_segment(data, indices, segment_ids, num_segments, kind):
    if data.ndim < 1:
        raise ValueError("data must be at least rank 1")
    if indices.ndim != 1 or segment_ids.shape != indices.shape:
        raise ValueError(f"indices and segment_ids must be vectors of the same length, got "
                         f"{indices.shape} and {segment_ids.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= data.shape[0]):
        raise ValueError(f"indices must be in [0, {data.shape[0]})")
    if segment_ids.size and (segment_ids[0] < 0 or np.any(segment_ids[1:] < segment_ids[:-1])):
        raise ValueError("segment ids are not increasing")
    if num_segments is None:
        num = int(segment_ids[-1]) + 1 if segment_ids.size else 0
    else:
        num = int(np.asarray(num_segments))
        if segment_ids.size and segment_ids[-1] >= num:
            raise ValueError(f"segment ids must be < num_segments ({num})")
    return _reduce(data, segment_ids, num, kind, unsorted=False, rows=indices)


@op("SparseSegmentSum")
def SparseSegmentSum(data, indices, segment_ids):
    """SparseSegmentSum: SegmentSum over the rows data[indices]."""
    return _sparse_segment(data, indices, segment_ids, None, "sum")


@op("SparseSegmentMean")
def SparseSegmentMean(data, indices, segment_ids):
    """SparseSegmentMean: SegmentMean over the rows data[indices]."""
    return _sparse_segment(data, indices, segment_ids, None, "mean")


@op("SparseSegmentSqrtN")
def SparseSegmentSqrtN(data, indices, segment_ids):
    """SparseSegmentSqrtN: sums over the rows data[indices] divided by sqrt(segment size)."""
    return _sparse_segment(data, indices, segment_ids, None, "sqrtn")


@op("SparseSegmentSumWithNumSegments")
def SparseSegmentSumWithNumSegments(data, indices, segment_ids, num_segments):
    """SparseSegmentSumWithNumSegments: SparseSegmentSum with num_segments outputs."""
    return _sparse_segment(data, indices, segment_ids, num_segments, "sum")


@op("SparseSegmentMeanWithNumSegments")
def SparseSegmentMeanWithNumSegments(data, indices, segment_ids, num_segments):
    """SparseSegmentMeanWithNumSegments: SparseSegmentMean with num_segments outputs."""
    return _sparse_segment(data, indices, segment_ids, num_segments, "mean")


@op("SparseSegmentSqrtNWithNumSegments")
def SparseSegmentSqrtNWithNumSegments(data, indices, segment_ids, num_segments):
    """SparseSegmentSqrtNWithNumSegments: SparseSegmentSqrtN with num_segments outputs."""
    return _sparse_segment(data, indices, segment_ids, num_segments, "sqrtn")


# -- counting -------------------------------------------------------------------------------

def _bincount(values: np.ndarray, size, weights: np.ndarray, binary: bool, dtype,
              batched: bool) -> np.ndarray:
    size = int(np.asarray(size))
    if size < 0:
        raise ValueError(f"size must be non-negative, got {size}")
    if values.size and values.min() < 0:
        raise ValueError("input values must be non-negative")
    if weights.size and weights.shape != values.shape:
        raise ValueError(f"weights shape {weights.shape} must equal the input shape "
                         f"{values.shape} (or be empty)")
    check_array(((values.shape[0] if batched else 1), size), dtype, "the counts")
    v = values.reshape(values.shape[0] if batched else 1, -1).astype(np.int64)
    rows = np.broadcast_to(np.arange(v.shape[0])[:, None], v.shape)
    keep = v < size
    out = np.zeros((v.shape[0], size), dtype)
    if binary:
        out[rows[keep], v[keep]] = 1
    elif weights.size:
        np.add.at(out, (rows[keep], v[keep]), weights.reshape(v.shape)[keep].astype(dtype))
    else:
        np.add.at(out, (rows[keep], v[keep]), dtype.type(1))
    return out if batched else out[0]


@op("Bincount")
def Bincount(arr, size, weights):
    """Bincount: counts (or summed weights) of each value of arr in [0, size)."""
    return _bincount(arr, size, weights, False, weights.dtype, batched=False)


@op("DenseBincount")
def DenseBincount(input, size, weights, *, binary_output=False):
    """DenseBincount: Bincount of a vector or of each row of a matrix; binary_output marks
    presence."""
    if input.ndim > 2:
        raise ValueError(f"input must be 1-D or 2-D, got shape {input.shape}")
    return _bincount(input, size, weights, binary_output, weights.dtype,
                     batched=input.ndim == 2)


@op("Bucketize")
def Bucketize(input, *, boundaries):
    """Bucketize: index of the bucket of each value: the number of boundaries <= value."""
    b = np.asarray(boundaries, np.float32)
    if b.size > 1 and np.any(b[1:] < b[:-1]):
        raise ValueError("boundaries must be sorted in ascending order")
    # TF compares integer inputs with the float boundaries as floats
    x = input.astype(np.float32) if input.dtype.kind in "iu" else input
    return np.searchsorted(b, x, side="right").astype(np.int32).reshape(input.shape)


# -- unique ---------------------------------------------------------------------------------

def _unique_rows(keys: np.ndarray):
    """Unique rows of keys [n, m] in first-occurrence order: (first index, idx, counts)."""
    n = keys.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    check_array((n,), np.int64, "the unique indices")  # (before any table of the n rows)
    if keys.shape[1] == 0:  # (empty rows are all one row)
        return np.zeros(1, np.int64), np.zeros(n, np.int64), np.int64([n])
    if keys.shape[1] == 1:
        perm = np.argsort(keys[:, 0], kind="stable")
    else:
        perm = np.lexsort(keys.T[::-1])
    ks = keys[perm]
    new = np.ones(n, bool)
    new[1:] = np.any(ks[1:] != ks[:-1], axis=1)
    group = np.cumsum(new) - 1
    first = perm[new]
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    idx = np.empty(n, np.int64)
    idx[perm] = rank[group]
    return first[order], idx, np.bincount(idx, minlength=order.size)


def _keys(rows: np.ndarray) -> np.ndarray:
    """What makes rows equal: their values, and for single float16 and bfloat16 values also
    the sign of a zero (TF hashes those by their bits, so 0 and -0 are two values there, one
    in float32 and float64, and one in rows of several values, which TF compares by value)."""
    if rows.shape[1] == 1 and (rows.dtype == np.float16 or low_precision(rows.dtype)):
        f = rows.astype(np.float32)
        return np.concatenate([f, ((f == 0) & np.signbit(f)).astype(np.float32)], axis=1)
    return rows


def _unique(x: np.ndarray, axis, out_idx: str):
    from tfdeploy.kernels.common import np_dtype

    it = np_dtype(out_idx)
    if axis is None:
        if x.ndim != 1:
            raise ValueError(f"unique expects a 1-D vector, got shape {x.shape}")
        first, idx, counts = _unique_rows(_keys(x.reshape(-1, 1)))
        return x[first], idx.astype(it), counts.astype(it)
    moved = np.moveaxis(x, axis, 0)
    # (the row width spelled out: -1 is ambiguous when there are no rows)
    width = int(np.prod(moved.shape[1:], dtype=np.int64))
    first, idx, counts = _unique_rows(_keys(moved.reshape(moved.shape[0], width)))
    return np.take(x, first, axis=axis), idx.astype(it), counts.astype(it)


def _axis_of(x: np.ndarray, axis) -> int | None:
    a = np.asarray(axis)
    if a.ndim > 1 or a.size > 1:
        raise ValueError(f"axis must be a vector of at most one element, got {a.tolist()}")
    if a.size == 0:
        return None
    v = int(a.reshape(-1)[0])
    if not -x.ndim <= v < x.ndim:
        raise ValueError(f"axis {v} is out of range for a tensor of rank {x.ndim}")
    return v % x.ndim


@op("Unique")
def Unique(x, *, out_idx="int32"):
    """Unique: distinct values of a vector in first-occurrence order, and each value's index."""
    y, idx, _ = _unique(x, None, out_idx)
    return y, idx


@op("UniqueV2")
def UniqueV2(x, axis, *, out_idx="int32"):
    """UniqueV2: Unique of slices along axis (a 0- or 1-element vector)."""
    y, idx, _ = _unique(x, _axis_of(x, axis), out_idx)
    return y, idx


@op("UniqueWithCounts")
def UniqueWithCounts(x, *, out_idx="int32"):
    """UniqueWithCounts: Unique plus the number of occurrences of each value."""
    return _unique(x, None, out_idx)


@op("UniqueWithCountsV2")
def UniqueWithCountsV2(x, axis, *, out_idx="int32"):
    """UniqueWithCountsV2: UniqueV2 plus the number of occurrences of each slice."""
    return _unique(x, _axis_of(x, axis), out_idx)


# -- sparse to dense ------------------------------------------------------------------------

@op("SparseToDense")
def SparseToDense(sparse_indices, output_shape, sparse_values, default_value, *,
                  validate_indices=True):
    """SparseToDense: a dense tensor of default_value with sparse_values at sparse_indices."""
    shape = tuple(int(d) for d in np.asarray(output_shape).reshape(-1))
    check_array(shape, np.asarray(sparse_values).dtype)
    idx = np.asarray(sparse_indices).astype(np.int64)
    if idx.ndim > 2:
        raise ValueError(f"sparse_indices must be at most 2-D, got shape {idx.shape}")
    if idx.ndim < 2:  # a scalar or a vector of indices into a 1-D output
        idx = idx.reshape(-1, 1)
    n, rank = idx.shape
    if rank != len(shape):
        raise ValueError(f"sparse_indices has {rank} columns, output_shape has {len(shape)} "
                         "dimensions")
    vals = np.asarray(sparse_values)
    if vals.ndim == 0:
        vals = np.broadcast_to(vals, (n,))
    elif vals.shape != (n,):
        raise ValueError(f"sparse_values must be a scalar or a vector of length {n}, got "
                         f"shape {vals.shape}")
    dv = np.asarray(default_value)
    if dv.ndim != 0:
        raise ValueError("default_value must be a scalar")
    if n and (np.any(idx < 0) or np.any(idx >= np.asarray(shape))):
        raise ValueError(f"sparse_indices are out of bounds for output shape {list(shape)}")
    if validate_indices and n > 1:
        flat = np.ravel_multi_index(idx.T, shape) if rank else np.zeros(n, np.int64)
        if np.any(flat[1:] <= flat[:-1]):
            raise ValueError("sparse_indices are not in lexicographic order or repeat an index")
    out = np.full(shape, dv, dtype=vals.dtype if vals.size else dv.dtype)
    if n:
        out[tuple(idx.T)] = vals
    return out


# -- cross-entropy --------------------------------------------------------------------------

def _log_softmax(f: np.ndarray) -> np.ndarray:
    m = np.max(f, axis=-1, keepdims=True)
    z = f - m
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


@op("SoftmaxCrossEntropyWithLogits")
def SoftmaxCrossEntropyWithLogits(features, labels):
    """SoftmaxCrossEntropyWithLogits: per-row cross-entropy of softmax(features) against label
    distributions (broadcast together to 2-D), and its gradient."""
    t = features.dtype
    f, lab = np.broadcast_arrays(features, labels)
    if f.ndim != 2:
        raise ValueError(f"features and labels must be 2-D, got {features.shape} and "
                         f"{labels.shape}")
    work = np.float32 if low_precision(t) else t
    check_array(f.shape[:1], work, "the losses")
    check_array(f.shape, work, "the gradient")  # (features and labels broadcast to it)
    if f.shape[1] == 0:  # (no classes: a loss of 0, as TF; no max over them)
        return np.zeros(f.shape[:1], t), np.zeros(f.shape, t)
    f, lab = f.astype(work), lab.astype(work)
    logp = _log_softmax(f)
    loss = -np.sum(lab * logp, axis=-1)
    return loss.astype(t), (np.exp(logp) - lab).astype(t)


@op("SparseSoftmaxCrossEntropyWithLogits")
def SparseSoftmaxCrossEntropyWithLogits(features, labels):
    """SparseSoftmaxCrossEntropyWithLogits: per-row cross-entropy of softmax(features) against
    class indices, and its gradient."""
    t = features.dtype
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"features must be [batch, classes] and labels [batch], got "
                         f"{features.shape} and {labels.shape}")
    n, c = features.shape
    if labels.size and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"received a label value outside the valid range [0, {c})")
    work = np.float32 if low_precision(t) else t
    logp = _log_softmax(features.astype(work))
    rows = np.arange(n)
    loss = -logp[rows, labels]
    back = np.exp(logp)
    back[rows, labels] -= 1
    return loss.astype(t), back.astype(t)
