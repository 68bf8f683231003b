"""Indexing kernels: gather, scatter, select, where, one-hot, set difference."""

from __future__ import annotations

import math

import numpy as np

from tfdeploy.kernels.common import normalize_axis, np_dtype, op, specializer
from tfdeploy.runtime.limits import check_array

_min, _max = np.minimum.reduce, np.maximum.reduce  # (ndarray.min/max: numpy's Python wrappers)


def _check_range(indices: np.ndarray, size: int, what: str) -> None:
    if indices.size and (_min(indices, None) < 0 or _max(indices, None) >= size):
        bad = indices[(indices < 0) | (indices >= size)].reshape(-1)[0]
        raise ValueError(f"{what}: index {bad} is not in [0, {size})")


# --- gather -------------------------------------------------------------------------------------


def _gather(params, indices, axis: int, batch_dims: int):
    if batch_dims == 0:
        _check_range(indices, params.shape[axis], "GatherV2")
        return np.asarray(np.take(params, indices, axis=axis))
    if params.shape[:batch_dims] != indices.shape[:batch_dims]:
        raise ValueError(f"GatherV2: params and indices must agree on the first {batch_dims} "
                         f"(batch) dims, got shapes {list(params.shape)} and "
                         f"{list(indices.shape)}")
    _check_range(indices, params.shape[axis], "GatherV2")
    bshape = params.shape[:batch_dims]
    nb = math.prod(bshape)
    p = params.reshape((nb,) + params.shape[batch_dims:])
    ix = indices.reshape((nb,) + indices.shape[batch_dims:])
    a = axis - batch_dims + 1  # the gathered axis in p
    mid = a - 1  # dims between the batch dims and the gathered axis
    if a != 1:
        p = np.moveaxis(p, a, 1)  # [nb, P, mid..., rest...]
    rows = np.arange(nb).reshape((nb,) + (1,) * (ix.ndim - 1))
    g = p[rows, ix]  # [nb, idx..., mid..., rest...]
    ni = ix.ndim - 1
    order = [0, *range(1 + ni, 1 + ni + mid), *range(1, 1 + ni), *range(1 + ni + mid, g.ndim)]
    g = g.transpose(order)
    return g.reshape(bshape + g.shape[1:])


@op("GatherV2")
def GatherV2(params, indices, axis, *, batch_dims=0):
    """GatherV2: slices of ``params`` along ``axis`` at ``indices`` (with batch dims)."""
    (a,) = normalize_axis(axis, params.ndim)
    b = batch_dims + indices.ndim if batch_dims < 0 else batch_dims
    if not 0 <= b <= min(a, indices.ndim):
        raise ValueError(f"GatherV2: batch_dims {batch_dims} must be in [0, min(axis {a}, rank "
                         f"of indices {indices.ndim})]")
    return _gather(params, indices, a, b)


@specializer("GatherV2")
def _gather_v2(consts, *, batch_dims=0):
    """Constant params and axis (an embedding table): one ``take``, which raises on an index
    too large; a negative one (np.take would wrap it) is out of bounds too as int32 indices
    are viewed as uint32 (int64 ones are checked by one reduction). The generic kernel then
    names the bad index. 5.2 -> 1.0 us for 16 tokens."""
    params, indices, axis = consts
    if params is None or axis is None or indices is not None or batch_dims != 0 or \
            not isinstance(params, np.ndarray) or params.dtype.kind == "O":
        return None
    try:
        (a,) = normalize_axis(axis, params.ndim)
    except (ValueError, TypeError):
        return None
    i32, u32, i64 = np.dtype(np.int32), np.dtype(np.uint32), np.dtype(np.int64)
    lowest = np.minimum.reduce

    def GatherV2_(indices):
        if indices.__class__ is np.ndarray:
            dt = indices.dtype
            if dt == i32:
                ix = indices.view(u32)
            elif dt == i64 and (not indices.size or lowest(indices, None) >= 0):
                ix = indices
            else:
                return GatherV2(params, indices, axis)
            try:
                r = params.take(ix, a)
                return r if r.__class__ is np.ndarray else np.asarray(r)
            except IndexError:
                pass  # (the generic kernel names the bad index)
        return GatherV2(params, indices, axis)

    return GatherV2_


@op("_WrappedGather", internal=True, needs_context=True)
def _WrappedGather(*, _ctx=None, params: np.ndarray, _fallback=None):
    """``params[i]`` along axis 0 for indices in [-n, n), a negative one counting from the
    end: Keras 3's Embedding, ``GatherV2(table, SelectV2(i < 0, i + n, i))`` (made by
    ``simplify``), as one ``take`` (which wraps a negative index and raises outside that
    range; the fused steps then raise TF's error, naming the index). 3 steps, ~3.5 us at 16
    tokens, into one of ~1."""
    take = params.take

    def WrappedGather(indices):
        if indices.__class__ is np.ndarray and indices.dtype.kind == "i":
            try:
                r = take(indices, 0)
                return r if r.__class__ is np.ndarray else np.asarray(r)
            except IndexError:
                pass
        return _fallback(indices)

    return WrappedGather


@op("Gather")
def Gather(params, indices, *, validate_indices=True):
    """Gather: slices of ``params`` along its first dim at ``indices``."""
    return _gather(params, indices, 0, 0)


def _nd_index(indices, shape, what, policy=""):
    """(index tuple over the first K dims, mask of valid rows or None) for ND indices."""
    k = indices.shape[-1] if indices.ndim else 0
    if indices.ndim == 0:
        raise ValueError(f"{what}: indices must be at least rank 1")
    if k > len(shape):
        raise ValueError(f"{what}: index depth {k} exceeds the rank {len(shape)}")
    lim = np.asarray(shape[:k], dtype=np.int64)
    rows = int(np.prod(indices.shape[:-1], dtype=np.int64))
    flat = indices.reshape(rows, k).astype(np.int64, copy=False)
    if k == 0:  # (nothing to range-check: no table of 2**31 rows' verdicts)
        return flat, None
    ok = ((flat >= 0) & (flat < lim)).all(axis=1)
    mask = None
    if not ok.all():
        if policy != "IGNORE":
            bad = flat[~ok][0].tolist()
            raise ValueError(f"{what}: index {bad} is out of bounds for shape "
                             f"{list(shape[:k])}")
        mask = ok
    return flat, mask


@op("GatherNd")
def GatherNd(params, indices, *, bad_indices_policy=""):
    """GatherNd: slices of ``params`` addressed by the last dim of ``indices``.

    With bad_indices_policy IGNORE, out-of-range indices give zeros, like TF.
    """
    k = indices.shape[-1] if indices.ndim else 0
    if params.ndim == 0:
        raise ValueError("GatherNd: params must be at least a vector, got a scalar")
    if indices.ndim and k <= params.ndim:
        slices = math.prod(indices.shape[:-1])
        if slices and params.size == 0:  # (TF refuses, whatever the policy)
            raise ValueError(f"GatherNd: requested {slices} slices (indices shape "
                             f"{list(indices.shape)}), but params of shape "
                             f"{list(params.shape)} is empty")
        # (2**31 empty indices: 2**31 copies of params)
        check_array(indices.shape[:-1] + params.shape[k:], params.dtype, "the gathered slices")
    flat, mask = _nd_index(indices, params.shape, "GatherNd", bad_indices_policy)
    if mask is not None:
        flat = np.where(mask[:, None], flat, 0)
    out = params[tuple(flat.T)] if k else np.broadcast_to(params, (flat.shape[0],) + params.shape)
    if mask is not None:
        out = np.where(mask.reshape((-1,) + (1,) * (out.ndim - 1)), out,
                       np.zeros((), params.dtype))
    return np.ascontiguousarray(out).reshape(indices.shape[:-1] + params.shape[k:])


# --- scatter ------------------------------------------------------------------------------------

_UFUNCS = {"add": np.add, "sub": np.subtract, "max": np.maximum, "min": np.minimum}


def _scatter(out, indices, updates, mode, what, policy=""):
    """Scatter ``updates`` into ``out`` (modified in place: a fresh array) at ND ``indices``."""
    if out.size == 0 and indices.size:  # (TF refuses this before any other check)
        raise ValueError(f"{what}: indices and updates specified for an empty output of shape "
                         f"{list(out.shape)} (indices shape {list(indices.shape)})")
    if indices.ndim == 0:
        raise ValueError(f"{what}: indices must be at least rank 1")
    k = indices.shape[-1]
    want = indices.shape[:-1] + out.shape[k:]
    if k <= out.ndim and updates.shape != want:  # (shapes first: no index table before)
        raise ValueError(f"{what}: updates must have shape {list(want)}, got "
                         f"{list(updates.shape)}")
    flat, mask = _nd_index(indices, out.shape, what, policy)
    if updates.size == 0:  # (nothing to scatter: no table of 2**31 empty rows' positions)
        return out
    n = flat.shape[0]
    upd = updates.reshape((n,) + out.shape[k:])
    if mask is not None:
        flat, upd = flat[mask], upd[mask]
    if k == 0:
        target = out.reshape((1,) + out.shape)
        lin = np.zeros(len(flat), dtype=np.int64)
    else:
        target = out.reshape((-1,) + out.shape[k:])
        lin = np.ravel_multi_index(tuple(flat.T), out.shape[:k]) if len(flat) else flat[:, 0]
    if mode == "update":
        target[lin] = upd
    else:
        _UFUNCS[mode].at(target, lin, upd)
    return out


@op("ScatterNd")
def ScatterNd(indices, updates, shape, *, bad_indices_policy=""):
    """ScatterNd: zeros of ``shape`` with ``updates`` summed in at ``indices``."""
    dims = [int(d) for d in np.asarray(shape).reshape(-1)]
    check_array(dims, updates.dtype)
    out = np.zeros(dims, dtype=updates.dtype)
    mode = "update" if updates.dtype == np.bool_ else "add"
    return _scatter(out, indices, updates, mode, "ScatterNd", bad_indices_policy)


def _inplace(x, i, v, what: str, mode: str) -> np.ndarray:
    """A copy of ``x`` with rows ``i`` set to / added / subtracted ``v`` (TF's Inplace* ops
    write into x; these never modify an input)."""
    idx = np.asarray(i).reshape(-1).astype(np.int64)
    if x.ndim == 0:
        raise ValueError(f"{what}: x must be at least 1-D, got a scalar")
    if v.shape != (idx.size,) + x.shape[1:] and not (np.ndim(i) == 0 and
                                                      v.shape == x.shape[1:]):
        raise ValueError(f"{what}: v must be of shape {[idx.size, *x.shape[1:]]} (i has "
                         f"{idx.size} rows, x shape {list(x.shape)}), got {list(v.shape)}")
    bad = (idx < 0) | (idx >= x.shape[0])
    if bad.any():
        raise ValueError(f"{what}: i[{int(np.argmax(bad))}] = {int(idx[bad][0])} is not in "
                         f"[0, {x.shape[0]})")
    out = x.copy()
    v = v.reshape((idx.size,) + x.shape[1:]).astype(x.dtype, copy=False)
    if mode == "update":
        out[idx] = v
    else:  # (repeated rows accumulate, as TF's row-by-row loop does)
        (np.add if mode == "add" else np.subtract).at(out, idx, v)
    return out


@op("InplaceUpdate")
def InplaceUpdate(x, i, v):
    """InplaceUpdate: x with rows i replaced by v (a copy: x is not changed)."""
    return _inplace(x, i, v, "InplaceUpdate", "update")


@op("InplaceAdd")
def InplaceAdd(x, i, v):
    """InplaceAdd: x with v added to rows i (a copy: x is not changed)."""
    return _inplace(x, i, v, "InplaceAdd", "add")


@op("InplaceSub")
def InplaceSub(x, i, v):
    """InplaceSub: x with v subtracted from rows i (a copy: x is not changed)."""
    return _inplace(x, i, v, "InplaceSub", "sub")


def _tensor_scatter(mode, what):
    def kernel(tensor, indices, updates, *, bad_indices_policy=""):
        return _scatter(tensor.copy(), indices, updates, mode, what, bad_indices_policy)

    kernel.__name__ = kernel.__qualname__ = what
    kernel.__doc__ = f"{what}: a copy of ``tensor`` with ``updates`` {mode} at ``indices``."
    return op(what)(kernel)


TensorScatterUpdate = _tensor_scatter("update", "TensorScatterUpdate")
TensorScatterAdd = _tensor_scatter("add", "TensorScatterAdd")
TensorScatterSub = _tensor_scatter("sub", "TensorScatterSub")
TensorScatterMax = _tensor_scatter("max", "TensorScatterMax")
TensorScatterMin = _tensor_scatter("min", "TensorScatterMin")


# --- select and where ---------------------------------------------------------------------------


@op("SelectV2")
def SelectV2(condition, t, e):
    """SelectV2: ``t`` where ``condition`` else ``e``, all broadcast together."""
    out = np.where(condition, t, e)
    return out if out.dtype == t.dtype else out.astype(t.dtype)


@op("Select")
def Select(condition, x, y):
    """Select: ``x`` where ``condition`` else ``y``; a vector condition picks whole rows."""
    if x.shape != y.shape:
        raise ValueError(f"Select: x and y must have the same shape, got {list(x.shape)} and "
                         f"{list(y.shape)}")
    c = condition
    if c.ndim == 1 and x.ndim > 1:
        if c.shape[0] != x.shape[0]:
            raise ValueError(f"Select: condition length {c.shape[0]} != first dim of x "
                             f"{x.shape[0]}")
        c = c.reshape((-1,) + (1,) * (x.ndim - 1))
    elif c.ndim and c.shape != x.shape:
        raise ValueError(f"Select: condition shape {list(c.shape)} must be a scalar, the "
                         f"shape of x {list(x.shape)}, or its first dim")
    out = np.where(c, x, y)
    return out if out.dtype == x.dtype else out.astype(x.dtype)


@op("Where")
def Where(input):
    """Where: the coordinates of the true (non-zero) elements, as int64 [count, rank]."""
    return np.argwhere(input).astype(np.int64, copy=False)


# --- one-hot, set difference, unravel -----------------------------------------------------------


@op("OneHot")
def OneHot(indices, depth, on_value, off_value, *, axis=-1):
    """OneHot: ``on_value`` where the new ``axis`` equals the index, else ``off_value``."""
    if np.ndim(depth) or np.asarray(depth).dtype.kind not in "iu":  # (TF's: an int32 scalar)
        raise ValueError(f"OneHot: depth must be an integer scalar, got "
                         f"{np.asarray(depth).dtype} of shape {list(np.shape(depth))}")
    d = int(depth)
    if d < 0:
        raise ValueError(f"OneHot: depth must be non-negative, got {d}")
    if not -1 <= axis <= indices.ndim:
        raise ValueError(f"OneHot: axis {axis} must be in [-1, {indices.ndim}]")
    check_array(indices.shape + (d,), np.float64, "the one-hot tensor")
    if indices.size:
        hot = indices[..., None] == np.arange(d)
        out = np.where(hot, on_value, off_value).astype(on_value.dtype, copy=False)
    else:  # (no range of the depth's values: a huge depth on no indices made 16 GB of it)
        out = np.empty(indices.shape + (d,), on_value.dtype)
    if axis != -1 and axis != indices.ndim:
        out = np.moveaxis(out, -1, axis)
    return out


@op("ListDiff")
def ListDiff(x, y, *, out_idx="int32"):
    """ListDiff: the values of ``x`` not in ``y`` (in order), and their positions in ``x``."""
    keep = ~np.isin(x, y)
    return x[keep], np.flatnonzero(keep).astype(np_dtype(out_idx))


@op("UnravelIndex")
def UnravelIndex(indices, dims):
    """UnravelIndex: flat ``indices`` as coordinates into an array of shape ``dims``."""
    shape = tuple(int(d) for d in dims)
    _check_range(indices, int(np.prod(shape, dtype=np.int64)), "UnravelIndex")
    coords = np.unravel_index(indices, shape)
    return np.stack(coords, axis=0).astype(indices.dtype, copy=False)
