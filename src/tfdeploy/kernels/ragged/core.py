"""Ragged tensor ops: RaggedTensorToTensor, RaggedTensorToSparse, RaggedBincount, RaggedRange,
RaggedGather.

A ragged tensor is flat ``values`` plus one row partition per ragged dimension (row splits, or
value row ids with the number of rows), as in TF; these kernels work on those arrays directly,
vectorised.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.kernels.common import np_dtype, op
from tfdeploy.runtime.limits import check_array


def _check_splits(s: np.ndarray, n_children: int, what: str) -> None:
    if s.ndim != 1 or s.size < 1:
        raise ValueError(f"{what} must be a non-empty vector, got shape {list(s.shape)}")
    if s[0] != 0 or s[-1] != n_children or np.any(np.diff(s) < 0):
        raise ValueError(f"{what} must start at 0, be non-decreasing and end at "
                         f"{n_children}; got {s.tolist()[:10]}")


def _positions(partition: np.ndarray, kind: str, n_children: int, n_parents: int | None):
    """(parent of each child, its position in the parent, number of parents, max row length)
    for one row partition."""
    p = np.asarray(partition).astype(np.int64)
    if kind == "ROW_SPLITS":
        _check_splits(p, n_children, "row_splits")
        parent = np.repeat(np.arange(p.size - 1), np.diff(p))
        pos = np.arange(n_children) - p[parent]
        lens = np.diff(p)
        return parent, pos, p.size - 1, int(lens.max()) if lens.size else 0
    if kind == "VALUE_ROWIDS":
        if p.shape != (n_children,):
            raise ValueError(f"value_rowids has {p.size} entries for {n_children} values")
        if p.size and (p[0] < 0 or np.any(np.diff(p) < 0) or
                       (n_parents is not None and p[-1] >= n_parents)):
            raise ValueError("value_rowids must be non-negative, sorted and less than the "
                             "number of rows")
        n_parents = n_parents if n_parents is not None else (int(p[-1]) + 1 if p.size else 0)
        lens = np.bincount(p, minlength=n_parents) if p.size else np.zeros(n_parents, np.int64)
        starts = np.cumsum(lens) - lens
        pos = np.arange(n_children) - starts[p] if p.size else p
        return p, pos, n_parents, int(lens.max()) if lens.size else 0
    raise ValueError(f"unsupported row partition type {kind!r}")


def _coordinates(partitions, kinds, n_values):
    """The ragged coordinates (n_values, ragged_rank + 1) of each value and the natural
    (minimal) shape of those dimensions."""
    kinds = [k.decode() if isinstance(k, bytes) else k for k in kinds]
    first_dim = None
    if kinds and kinds[0] == "FIRST_DIM_SIZE":
        first_dim = int(np.asarray(partitions[0]).reshape(()))
        kinds, partitions = kinds[1:], partitions[1:]
    # sizes of each level, innermost first: the values, then each partition's parents
    levels = []
    n_children = n_values
    for j in range(len(partitions) - 1, -1, -1):
        n_parents = first_dim if j == 0 else None
        if kinds[j] == "VALUE_ROWIDS" and j > 0:  # the parent count is the next level's size
            n_parents = _level_size(partitions, kinds, j - 1, first_dim)
        parent, pos, n_parents, width = _positions(partitions[j], kinds[j], n_children,
                                                   n_parents)
        levels.append((parent, pos, width))
        n_children = n_parents
    levels.reverse()
    nrows = n_children
    # walk down from the values: coordinate at each level
    coords = np.zeros((n_values, len(levels) + 1), np.int64)
    idx = np.arange(n_values)
    for j in range(len(levels) - 1, -1, -1):
        parent, pos, _ = levels[j]
        coords[:, j + 1] = pos[idx]
        idx = parent[idx]
    coords[:, 0] = idx
    return coords, [nrows] + [w for _, _, w in levels]


def _level_size(partitions, kinds, j, first_dim):
    """Number of elements at level j + 1 (children of partition j)."""
    p = np.asarray(partitions[j])
    if kinds[j] == "ROW_SPLITS":
        return int(p[-1])
    return p.size


@op("RaggedTensorToTensor")
def RaggedTensorToTensor(shape, values, default_value, *row_partition_tensors,
                         row_partition_types):
    """RaggedTensorToTensor: a dense tensor from a ragged one, padded with default_value and
    cropped to ``shape`` (dims of -1, or an unknown-rank shape, take the natural size)."""
    values = np.asarray(values)
    coords, natural = _coordinates(list(row_partition_tensors), row_partition_types,
                                   values.shape[0] if values.ndim else 0)
    inner = values.shape[1:]
    full = natural + list(inner)
    want = np.asarray(shape).reshape(-1).tolist() if np.asarray(shape).ndim else []
    if want:
        if len(want) != len(full):
            raise ValueError(f"shape {want} has rank {len(want)}, the ragged tensor has rank "
                             f"{len(full)}")
        for k, (w, f) in enumerate(zip(want, full)):
            if k >= len(natural) and w >= 0 and w != f:
                raise ValueError(f"shape {want} does not match the values' inner shape "
                                 f"{list(inner)}")
        out_shape = [f if w < 0 else int(w) for w, f in zip(want, full)]
    else:
        out_shape = full
    default = np.asarray(default_value, dtype=values.dtype)
    check_array(out_shape, values.dtype, "the dense tensor")  # (a hostile shape)
    try:
        out = np.empty(out_shape, values.dtype)
        out[...] = np.broadcast_to(default, out_shape[:len(natural)] + list(inner)) \
            if default.ndim else default
    except ValueError:
        raise ValueError(f"default_value of shape {list(default.shape)} does not broadcast "
                         f"to the values' inner shape {list(inner)}") from None
    keep = np.all(coords < np.asarray(out_shape[:len(natural)]), axis=1)
    out[tuple(coords[keep].T)] = values[keep]
    return out


@op("RaggedTensorToSparse")
def RaggedTensorToSparse(*inputs, RAGGED_RANK=None):
    """RaggedTensorToSparse: (indices, values, dense_shape) of a ragged tensor given by its
    nested row splits and flat values."""
    *splits, values = inputs
    values = np.asarray(values)
    coords, natural = _coordinates(splits, ["ROW_SPLITS"] * len(splits), values.shape[0])
    inner = values.shape[1:]
    if inner:
        n_inner = int(np.prod(inner))
        inner_idx = np.indices(inner).reshape(len(inner), -1).T
        coords = np.concatenate([np.repeat(coords, n_inner, axis=0),
                                 np.tile(inner_idx, (values.shape[0], 1))], axis=1)
    return (coords.astype(np.int64), values.reshape(-1),
            np.array(natural + list(inner), np.int64))


@op("RaggedBincount")
def RaggedBincount(splits, values, size, weights, *, binary_output=False):
    """RaggedBincount: per-row counts (or weight sums) of the values in [0, size), as a dense
    (rows, size) tensor of the weights' dtype."""
    splits = np.asarray(splits).astype(np.int64)
    vals = np.asarray(values)
    w = np.asarray(weights)
    size = int(np.asarray(size))
    if size < 0:
        raise ValueError(f"size must be non-negative, got {size}")
    _check_splits(splits, vals.size, "splits")
    if vals.size and vals.min() < 0:
        raise ValueError("values must be non-negative")
    nrows = splits.size - 1
    check_array((max(nrows, 0), size), np.int64, "the counts")  # (a hostile size)
    rows = np.repeat(np.arange(nrows), np.diff(splits))
    v = vals.reshape(-1).astype(np.int64)
    ok = v < size
    flat = rows[ok] * size + v[ok]
    if binary_output or w.size == 0:
        counts = np.bincount(flat, minlength=nrows * size)
        if binary_output:
            counts = counts > 0
        out = counts.astype(w.dtype)
    else:
        if w.shape != vals.shape:
            raise ValueError(f"weights of shape {list(w.shape)} do not match values of shape "
                             f"{list(vals.shape)}")
        out = np.zeros(nrows * size, np.float64 if w.dtype.kind == "f" else w.dtype)
        np.add.at(out, flat, w.reshape(-1)[ok])
        out = out.astype(w.dtype)
    return out.reshape(nrows, size)


def _range_sizes(s: np.ndarray, lim: np.ndarray, d: np.ndarray, most: int) -> np.ndarray:
    """Each row's length as TF's RaggedRange computes it: 0 where the range runs the wrong
    way, else ceil(|limit - start| / |delta|) for integers (exactly: no overflow), and
    ceil(|(limit - start) / delta|) in the inputs' float type for floats (float32 rounding
    decides the count where the limit is a multiple of delta away); a count past ``most``
    (the splits' largest value: an inf, NaN or huge range) is an error, as in TF."""
    if not s.size:
        return np.zeros(0, np.int64)
    empty = ((d > 0) & (lim < s)) | ((d < 0) & (lim > s))
    if s.dtype.kind == "f" or s.dtype.kind == "V":
        with np.errstate(all="ignore"):
            q = np.ceil(np.abs((lim - s) / d)).astype(np.float64)
        q[empty] = 0
        if not (q < float(most) + 1).all():  # (NaN fails too)
            raise ValueError(f"Requires ((limit - start) / delta) <= {most}")
        return q.astype(np.int64)
    if max(np.abs(s.astype(np.float64)).max(), np.abs(lim.astype(np.float64)).max()) < 2 ** 62:
        n = -(-np.abs(lim.astype(np.int64) - s.astype(np.int64)) // np.abs(d.astype(np.int64)))
    else:  # (int64 extremes: |limit - start| may not fit in int64: Python's integers)
        n = np.array([-(-abs(int(b) - int(a)) // abs(int(c))) for a, b, c in
                      zip(s.tolist(), lim.tolist(), d.tolist())], dtype=object)
    n[empty] = 0
    if (n > most).any():
        raise ValueError(f"Requires ((limit - start) / delta) <= {most}")
    return n.astype(np.int64)


@op("RaggedRange")
def RaggedRange(starts, limits, deltas, *, Tsplits="int64"):
    """RaggedRange: one range(start, limit, delta) per row (scalars broadcast); returns
    (row_splits, values). Row lengths as TF counts them (``_range_sizes``)."""
    s, lim, d = np.broadcast_arrays(np.asarray(starts), np.asarray(limits), np.asarray(deltas))
    if s.ndim > 1:
        raise ValueError("starts, limits and deltas must be scalars or vectors")
    s, lim, d = s.reshape(-1), lim.reshape(-1), d.reshape(-1)
    if np.any(d == 0):
        raise ValueError("Requires delta != 0")
    dt = np.asarray(starts).dtype
    split_dt = np_dtype(Tsplits)
    n = _range_sizes(s, lim, d, int(np.iinfo(split_dt).max))
    total = sum(n.tolist())  # (exact: int64 row lengths may sum past int64)
    if total > np.iinfo(split_dt).max:
        raise ValueError("The total range size overflowed. Consider using int64 instead of "
                         "int32 for row_splits_dtype.")
    check_array((total,), dt, "RaggedRange's values")
    splits = np.concatenate([[0], np.cumsum(n)]).astype(split_dt)
    width = int(n.max()) if n.size else 0
    # TF adds delta repeatedly (which rounds differently from start + k * delta for floats):
    # accumulate along each padded row, sequentially in the dtype
    check_array((n.size, width), dt, "RaggedRange's rows")
    steps = np.empty((n.size, width), dt)
    if width:
        steps[:, 0] = s
        steps[:, 1:] = d[:, None]
    vals = np.add.accumulate(steps, axis=1, dtype=dt) if width else steps
    return splits, vals[np.arange(width) < n[:, None]]


def _check_nested_splits(splits: list, n_values: int) -> None:
    """TF's checks of a ragged tensor's nested splits (RaggedGather's ValidateSplits): each
    level non-empty, starting at 0 or later, sorted, and its last split within the next
    level's rows (the values, for the last level)."""
    for level, sp in enumerate(splits):
        bound = splits[level + 1].size - 1 if level + 1 < len(splits) else n_values
        if sp.ndim != 1 or sp.size == 0:
            raise ValueError(f"Ragged splits may not be empty (level {level}: shape "
                             f"{list(sp.shape)})")
        if sp[0] < 0:
            raise ValueError(f"Ragged splits must be non-negative (level {level} starts at "
                             f"{int(sp[0])})")
        if sp[-1] > bound:
            raise ValueError(f"Ragged splits must not point past values (level {level} ends "
                             f"at {int(sp[-1])}, past {bound})")
        if sp.size > 1 and (np.diff(sp) < 0).any():
            raise ValueError(f"Ragged splits must be sorted (level {level}: "
                             f"{sp.tolist()[:10]})")


@op("RaggedGather")
def RaggedGather(*inputs, PARAMS_RAGGED_RANK=1, OUTPUT_RAGGED_RANK=1):
    """RaggedGather: gather rows of a ragged tensor (nested splits + values) by ``indices``;
    returns the output's nested splits and values."""
    *splits, values, indices = inputs
    values = np.asarray(values)
    idx = np.asarray(indices)
    sdt = np.asarray(splits[0]).dtype
    splits = [np.asarray(sp).astype(np.int64) for sp in splits]
    _check_nested_splits(splits, values.shape[0] if values.ndim else 0)
    nrows = splits[0].size - 1
    flat = idx.reshape(-1).astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= nrows):
        raise ValueError(f"indices must be in [0, {nrows}), got {flat.min()}..{flat.max()}")
    out_splits = []
    rows = flat
    for sp in splits:  # each level: the selected rows' children, in order
        lens = sp[rows + 1] - sp[rows]
        out_splits.append(np.concatenate([[0], np.cumsum(lens)]))
        rows = np.repeat(sp[rows], lens) + (np.arange(int(lens.sum())) -
                                            np.repeat(np.cumsum(lens) - lens, lens))
    out_values = values[rows]
    # extra dimensions of the indices become uniform outer row partitions
    outer = []
    for k in range(idx.ndim - 1, 0, -1):
        n = int(np.prod(idx.shape[:k]))
        outer.insert(0, np.arange(n + 1, dtype=np.int64) * idx.shape[k])
    return tuple(s.astype(sdt) for s in outer + out_splits) + (out_values,)
