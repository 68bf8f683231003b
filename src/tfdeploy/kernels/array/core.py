"""Array kernels: identity, shape, reshape, slicing, joining, padding and casting."""

from __future__ import annotations

import math

import numpy as np

from tfdeploy.kernels.common import all_finite, normalize_axis, np_dtype, op, specializer
from tfdeploy.numerics import quiet
from tfdeploy.runtime.limits import check_array, check_elements

# --- identities ---------------------------------------------------------------------------------


@op("Identity", "StopGradient", "Snapshot", "PreventGradient")
def Identity(input):
    """Identity (and StopGradient, Snapshot, PreventGradient): the input itself."""
    return input


@op("EnsureShape")
def EnsureShape(input, *, shape=None):
    """EnsureShape: the input, after checking it matches ``shape`` (None: any size)."""
    if shape is not None and any(d is not None and d < -1 for d in shape):
        raise ValueError(f"EnsureShape: invalid shape {shape}: dims must be -1 (unknown) or "
                         "more")
    if shape is not None and (len(shape) != input.ndim or any(
            d is not None and d >= 0 and d != n for d, n in zip(shape, input.shape))):
        raise ValueError(f"EnsureShape: shape of tensor {list(input.shape)} is not compatible "
                         f"with expected shape {['?' if d is None else d for d in shape]}")
    return input


@op("IdentityN")
def IdentityN(*input):
    """IdentityN: every input, unchanged."""
    return tuple(input)


@op("NoOp")
def NoOp(*inputs):
    """NoOp: nothing (control dependencies only)."""
    return ()


@op("CheckNumerics", "CheckNumericsV2")
def CheckNumerics(tensor, *, message=""):
    """CheckNumerics: the input, after checking it holds no NaN or Inf (float16/32/64: by
    its min and max, no temporary; a fifth of the cost of ``isfinite(x).all()``)."""
    if not (all_finite(tensor) if tensor.dtype.kind == "f" else np.isfinite(tensor).all()):
        what = "NaN" if np.isnan(tensor).any() else "Inf"
        raise ValueError(f"{message} : Tensor had {what} values")
    return tensor


# --- shapes -------------------------------------------------------------------------------------


@op("Shape")
def Shape(input, *, out_type="int32"):
    """Shape: the shape of the input as a vector of ``out_type``."""
    return np.array(input.shape, dtype=np_dtype(out_type))


@op("ShapeN")
def ShapeN(*input, out_type="int32"):
    """ShapeN: the shape of every input."""
    dt = np_dtype(out_type)
    return tuple(np.array(x.shape, dtype=dt) for x in input)


@op("Size")
def Size(input, *, out_type="int32"):
    """Size: the number of elements of the input."""
    return np.array(input.size, dtype=np_dtype(out_type))


@op("Rank")
def Rank(input):
    """Rank: the number of dimensions of the input, as int32."""
    return np.array(input.ndim, dtype=np.int32)


def _shape_arg(shape, what="shape") -> tuple[int, ...]:
    """A shape, sizes or indices input as Python ints. TF's ops take them as int32 or int64
    only: a float tensor there (a hostile file's) is refused, not truncated."""
    s = np.asarray(shape)
    if s.ndim > 1:
        raise ValueError(f"{what} must be a vector, got a tensor of shape {s.shape}")
    if s.dtype.kind in "iu":  # (tolist gives Python ints: 4x faster than int() of each)
        return tuple(s.reshape(-1).tolist())
    if s.size:
        raise ValueError(f"{what} must be integers (int32 or int64), got {s.dtype}")
    return ()


@op("Reshape")
def Reshape(tensor, shape):
    """Reshape: the tensor with a new shape (one dim may be -1)."""
    s = _shape_arg(shape)
    if s.count(-1) > 1:
        raise ValueError(f"Reshape: only one dimension can be -1, got shape {list(s)}")
    if any(d < -1 for d in s):
        raise ValueError(f"Reshape: invalid shape {list(s)}")
    return _reshape_to(tensor, s)


def _reshape_to(tensor, s: tuple[int, ...]):
    try:
        return tensor.reshape(s)
    except ValueError:
        raise ValueError(f"Reshape: cannot reshape a tensor of shape {list(tensor.shape)} "
                         f"({tensor.size} elements) to {list(s)}") from None


@op("Squeeze")
def Squeeze(input, *, squeeze_dims=(), axis=None):
    """Squeeze: the input without the size-1 dims in ``squeeze_dims`` (all of them if empty)."""
    dims = squeeze_dims if axis is None else axis
    if not dims:
        return input.reshape([d for d in input.shape if d != 1])
    dims = normalize_axis(list(dims), input.ndim)
    for d in dims:
        if input.shape[d] != 1:
            raise ValueError(f"Squeeze: can not squeeze dim[{d}], expected a dimension of 1, "
                             f"got {input.shape[d]}")
    return input.reshape([n for i, n in enumerate(input.shape) if i not in dims])


@op("ExpandDims")
def ExpandDims(input, axis):
    """ExpandDims: the input with a size-1 dim inserted at ``axis`` (in [-rank-1, rank])."""
    a = np.asarray(axis).reshape(-1)
    if a.size != 1:
        raise ValueError(f"ExpandDims: axis must be a scalar, got {a.size} values")
    a = int(a[0])
    if not -input.ndim - 1 <= a <= input.ndim:
        raise ValueError(f"ExpandDims: axis {a} out of range for rank {input.ndim}")
    return np.expand_dims(input, a)


# --- slicing ------------------------------------------------------------------------------------


def _canonical(x: int, masked: int, c: int, stride: int, size: int) -> int:
    """A begin (c=0) or end (c=1) of a strided slice, clamped as TF does."""
    lo, hi = (0, size) if stride > 0 else (-1, size - 1)
    if masked:
        return (lo, hi)[c] if stride > 0 else (hi, lo)[c]
    x = x + size if x < 0 else x
    return min(max(x, lo), hi)


def strided_index(shape, begin, end, strides, begin_mask, end_mask, ellipsis_mask,
                   new_axis_mask, shrink_axis_mask) -> tuple:
    """A numpy basic index equivalent to TF's StridedSlice spec (ValidateStridedSliceOp)."""
    begin, end, strides = (np.asarray(v).reshape(-1).tolist() for v in (begin, end, strides))
    n = len(strides)
    if len(begin) != n or len(end) != n:
        raise ValueError("StridedSlice: expected begin, end, and strides to be 1D equal size "
                         f"tensors, got {len(begin)}, {len(end)} and {n} values")
    if ellipsis_mask & (ellipsis_mask - 1):
        raise ValueError("StridedSlice: multiple ellipses in slice spec not allowed")
    if not ellipsis_mask & ((1 << n) - 1):  # an implicit ellipsis at the end
        ellipsis_mask = 1 << n
        n += 1
    ell = ellipsis_mask.bit_length() - 1
    new_after = sum(1 for i in range(ell + 1, n) if new_axis_mask >> i & 1)
    ndim = len(shape)
    index: list = []
    dim = 0
    for i in range(n):
        if ellipsis_mask >> i & 1:
            stop = min(ndim - (n - i) + 1 + new_after, ndim)
            index.extend([slice(None)] * max(stop - dim, 0))
            dim = max(stop, dim)
            continue
        if new_axis_mask >> i & 1:
            index.append(None)
            continue
        if dim >= ndim:
            raise ValueError(f"StridedSlice: index out of range using input dim {dim}; "
                             f"input has only {ndim} dims")
        b, e, s, size = int(begin[i]), int(end[i]), int(strides[i]), shape[dim]
        if s == 0:
            raise ValueError(f"StridedSlice: strides[{i}] must be non-zero")
        if shrink_axis_mask >> i & 1:
            if s < 0:
                raise ValueError("StridedSlice: only stride 1 allowed on non-range indexing")
            fwd = b + size if b < 0 else b
            if not 0 <= fwd < size:
                raise ValueError(f"StridedSlice: slice index {b} of dimension {dim} out of "
                                 "bounds")
            index.append(fwd)
        else:
            b = _canonical(b, begin_mask >> i & 1, 0, s, size)
            e = _canonical(e, end_mask >> i & 1, 1, s, size)
            # -1 is "before the first element" here, not numpy's "last element"
            index.append(slice(0, 0) if b < 0 else slice(b, None if e < 0 else e, s))
        dim += 1
    return tuple(index)


@op("StridedSlice")
def StridedSlice(input, begin, end, strides, *, begin_mask=0, end_mask=0, ellipsis_mask=0,
                 new_axis_mask=0, shrink_axis_mask=0):
    """StridedSlice: ``input[begin:end:strides]`` with TF's mask semantics."""
    return np.asarray(input[strided_index(input.shape, begin, end, strides, begin_mask,
                                           end_mask, ellipsis_mask, new_axis_mask,
                                           shrink_axis_mask)])


@op("TensorStridedSliceUpdate")
def TensorStridedSliceUpdate(input, begin, end, strides, value, *, begin_mask=0, end_mask=0,
                             ellipsis_mask=0, new_axis_mask=0, shrink_axis_mask=0):
    """TensorStridedSliceUpdate: a copy of the input with ``value`` (broadcast to the slice's
    shape) written to the slice; an empty slice leaves the input as it is, whatever the value,
    as in TF."""
    out = input.copy()
    idx = strided_index(input.shape, begin, end, strides, begin_mask, end_mask, ellipsis_mask,
                        new_axis_mask, shrink_axis_mask)
    target = out[idx]
    if np.size(target) == 0:
        return out
    value = np.asarray(value)
    try:
        fits = np.broadcast_shapes(value.shape, np.shape(target)) == np.shape(target)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"TensorStridedSliceUpdate: cannot broadcast the value's shape "
                         f"{list(value.shape)} into the slice's shape {list(np.shape(target))}")
    out[idx] = value
    return out


@op("Slice")
def Slice(input, begin, size):
    """Slice: ``size`` elements from ``begin`` in every dim (size -1: to the end)."""
    b, s = _shape_arg(begin, "begin"), _shape_arg(size, "size")
    if len(b) != input.ndim or len(s) != input.ndim:
        raise ValueError(f"Slice: expected begin and size of length {input.ndim}, got "
                         f"{len(b)} and {len(s)}")
    idx = []
    for d, (lo, n, dim) in enumerate(zip(b, s, input.shape)):
        n = dim - lo if n == -1 else n
        if lo < 0 or n < 0 or lo + n > dim:
            raise ValueError(f"Slice: expected begin[{d}] + size[{d}] <= {dim} with both >= 0, "
                             f"got begin {lo}, size {s[d]}")
        idx.append(slice(lo, lo + n))
    return input[tuple(idx)]


# --- joining ------------------------------------------------------------------------------------


def _concat(values, axis):
    if not values:
        raise ValueError("Concat: expected at least one input")
    nd = values[0].ndim
    if nd == 0:
        raise ValueError("Concat: can't concatenate scalars (use tf.stack instead)")
    (a,) = normalize_axis(axis, nd)
    if len(values) == 1:
        return values[0]
    return np.concatenate(values, axis=a)


@op("ConcatV2")
def ConcatV2(*args):
    """ConcatV2: the values (all inputs but the last) joined along ``axis`` (the last)."""
    return _concat(args[:-1], args[-1])


@op("Concat")
def Concat(concat_dim, *values):
    """Concat: the values joined along ``concat_dim`` (the first input)."""
    return _concat(values, concat_dim)


@op("Pack")
def Pack(*values, axis=0):
    """Pack: the values stacked along a new dim ``axis``."""
    if not values:
        raise ValueError("Pack: expected at least one input")
    v0 = values[0]
    if v0.ndim == 0 and axis in (0, -1) and v0.dtype.kind in "biuf" and \
            all(v.__class__ is np.ndarray and v.ndim == 0 and v.dtype == v0.dtype
                for v in values):
        return np.array(values)  # scalars (shapes, in RNNs): 10x faster than np.stack
    (a,) = normalize_axis(axis, v0.ndim + 1)
    if all(v.__class__ is np.ndarray for v in values):
        # each value viewed with the new dim, joined: np.stack without its Python wrapper's
        # per-value work (a GRU's 100 steps stacked: ~3x faster); concatenate checks the shapes
        new = (slice(None),) * a + (None,)
        try:
            return np.concatenate([v[new] for v in values], axis=a)
        except ValueError:
            pass  # (np.stack's own error)
    return np.stack(values, axis=a)


@op("Transpose")
def Transpose(x, perm):
    """Transpose: the dims of ``x`` permuted by ``perm`` (a negative entry counts from the
    end, as TF takes it)."""
    p = _shape_arg(perm, "perm")
    n = x.ndim
    q = [d + n if -n <= d < 0 else d for d in p]
    if sorted(q) != list(range(n)):
        raise ValueError(f"Transpose: perm {list(p)} is not a permutation of the {n} dims")
    return np.transpose(x, q)


@op("ConjugateTranspose")
def ConjugateTranspose(x, perm):
    """ConjugateTranspose: the complex conjugate of ``Transpose(x, perm)``."""
    y = Transpose(x, perm)
    return np.conj(y) if y.dtype.kind == "c" else y


# --- padding ------------------------------------------------------------------------------------


def _paddings(paddings, ndim):
    p = np.asarray(paddings)
    if p.shape != (ndim, 2):
        raise ValueError(f"Pad: paddings must be of shape [{ndim}, 2], got {list(p.shape)}")
    if p.size and p.dtype.kind not in "iu":  # (TF's Tpaddings: int32 or int64)
        raise ValueError(f"Pad: paddings must be integers (int32 or int64), got {p.dtype}")
    p = p.tolist()
    if any(v < 0 for row in p for v in row):
        raise ValueError(f"Pad: paddings must be non-negative, got {p}")
    return p


def _pad_constant(x, paddings, value):
    p = _paddings(paddings, x.ndim)
    if not any(v for row in p for v in row):
        return x
    shape = [d + lo + hi for d, (lo, hi) in zip(x.shape, p)]
    check_array(shape, x.dtype, "the padded tensor")
    out = np.empty(shape, dtype=x.dtype)
    inner = tuple(slice(lo, lo + d) for d, (lo, _) in zip(x.shape, p))
    out[inner] = x
    # write each cell once: the border slabs only, not a full fill then the interior again
    for i, (d, (lo, hi)) in enumerate(zip(x.shape, p)):
        if lo:
            out[inner[:i] + (slice(0, lo),)] = value
        if hi:
            out[inner[:i] + (slice(lo + d, None),)] = value
    return out


@op("Pad")
def Pad(input, paddings):
    """Pad: the input padded with zeros (empty strings)."""
    return _pad_constant(input, paddings, b"" if input.dtype == object else 0)


@op("PadV2")
def PadV2(input, paddings, constant_values):
    """PadV2: the input padded with ``constant_values``."""
    c = np.asarray(constant_values)
    if c.size != 1:
        raise ValueError(f"PadV2: constant_values must be a scalar, got shape {list(c.shape)}")
    return _pad_constant(input, paddings, c.reshape(()))


@op("MirrorPad")
def MirrorPad(input, paddings, *, mode="REFLECT"):
    """MirrorPad: the input padded with its mirror image (REFLECT or SYMMETRIC)."""
    p = _paddings(paddings, input.ndim)
    if mode not in ("REFLECT", "SYMMETRIC"):
        raise ValueError(f"MirrorPad: mode must be REFLECT or SYMMETRIC, got {mode!r}")
    off = 1 if mode == "REFLECT" else 0
    for d, (lo, hi) in zip(input.shape, p):
        if lo > d - off or hi > d - off:
            raise ValueError(f"MirrorPad: paddings {p} must be no greater than the dim size "
                             f"{'minus 1 ' if off else ''}for mode {mode} (shape "
                             f"{list(input.shape)})")
    check_array([d + lo + hi for d, (lo, hi) in zip(input.shape, p)], input.dtype,
                "the padded tensor")
    return np.pad(input, p, mode="reflect" if off else "symmetric")


# --- casting ------------------------------------------------------------------------------------

#: low mantissa bits Cast(Truncate=True) zeroes before casting, by (SrcT, DstT), as TF's
#: LSBZeroSetter specialisations (complex sources: both parts; float64 -> complex64 really 53)
_TRUNCATE_BITS = {("float64", "float32"): 29, ("float64", "float16"): 42,
                  ("float32", "float16"): 13, ("float32", "bfloat16"): 16,
                  ("complex128", "float32"): 29, ("complex128", "complex64"): 29,
                  ("float64", "complex64"): 53, ("complex128", "float16"): 42,
                  ("complex64", "float16"): 13}
_UINT = {8: np.uint64, 4: np.uint32}


def _zero_low_bits(x: np.ndarray, bits: int) -> np.ndarray:
    if x.dtype.kind == "c":
        return _zero_low_bits(x.real, bits) + 1j * _zero_low_bits(x.imag, bits)
    u = _UINT[x.dtype.itemsize]
    mask = u(((1 << (8 * x.dtype.itemsize)) - 1) ^ ((1 << bits) - 1))
    return np.where(np.isnan(x), x, (x.view(u) & mask).view(x.dtype))


@op("Cast")
def Cast(x, *, DstT, Truncate=False):
    """Cast: ``x`` converted to ``DstT``.

    Complex to real keeps the real part (also for bool, like TF). Truncate zeroes low mantissa
    bits first for the casts TF truncates (float32 to bfloat16/float16, float64 to float32...).
    """
    dst = np_dtype(DstT)
    src = x.dtype
    if src == dst:
        return x
    if src.kind == "O" or dst.kind == "O":
        raise TypeError(f"Cast: unsupported cast from {src} to {dst}")
    if src.kind in "biu" and (dst.kind in "biu" or dst.kind in "fc" and dst.itemsize >= 4):
        return x.astype(dst)  # the common exact case: no warnings to silence
    with quiet():
        if Truncate and (src.name, dst.name) in _TRUNCATE_BITS:
            x = _zero_low_bits(x, _TRUNCATE_BITS[src.name, dst.name])
        if src.kind == "c" and dst.kind != "c":
            x = x.real
            src = x.dtype
        # (the kinds first: a dtype's name is a Python property, ~3 us a look)
        if dst.kind in "iub" and src.name == "bfloat16":
            x = x.astype(np.float32)
        if src.kind in "iub" and dst.name == "bfloat16":
            x = x.astype(np.float32)
        return np.asarray(x.astype(dst))


@op("Bitcast")
def Bitcast(input, *, type):
    """Bitcast: the input's bytes reinterpreted as ``type`` (the last dim grows or shrinks)."""
    dst = np_dtype(type)
    src = input.dtype
    x = input if input.flags.c_contiguous else np.ascontiguousarray(input)  # keeps 0-d
    if src.itemsize == dst.itemsize:
        return x.view(dst)
    if src.itemsize > dst.itemsize:
        return x.reshape(x.shape + (1,)).view(dst)  # [..., 1] of src -> [..., r] of dst
    r = dst.itemsize // src.itemsize
    if x.ndim == 0 or x.shape[-1] != r:
        raise ValueError(f"Bitcast: cannot bitcast {src} to {dst}: the last dim must be {r}, "
                         f"got shape {list(x.shape)}")
    return x.view(dst).reshape(x.shape[:-1])


# --- creation -----------------------------------------------------------------------------------


@op("Fill")
def Fill(dims, value):
    """Fill: a tensor of shape ``dims`` filled with the scalar ``value``."""
    if np.ndim(value) != 0:
        raise ValueError(f"Fill: value must be a scalar, got shape {list(np.shape(value))}")
    shape = _shape_arg(dims, "dims")
    check_array(shape, value.dtype)
    out = np.empty(shape, dtype=value.dtype)
    out.fill(value[()])  # (np.full is 4x slower on small arrays)
    return out


@op("Empty")
def Empty(shape, *, dtype, init=False):
    """Empty: a tensor of ``shape`` (always zero-initialised here)."""
    dt = np_dtype(dtype)
    s = _shape_arg(shape)
    check_array(s, dt)
    return np.full(s, b"", dtype=dt) if dt.kind == "O" else np.zeros(s, dtype=dt)


@op("ZerosLike")
def ZerosLike(x):
    """ZerosLike: zeros of the shape and dtype of ``x``."""
    return np.full(x.shape, b"", dtype=x.dtype) if x.dtype.kind == "O" else np.zeros_like(x)


@op("OnesLike")
def OnesLike(x):
    """OnesLike: ones of the shape and dtype of ``x``."""
    return np.ones_like(x)


@op("Range")
def Range(start, limit, delta):
    """Range: ``start + i * delta`` for every i with the value before ``limit``."""
    dt = np.result_type(start, limit, delta)
    s, lim, d = (np.asarray(v, dtype=dt).reshape(()) for v in (start, limit, delta))
    if d == 0:
        raise ValueError("Range: requires delta != 0")
    if (d > 0 and s > lim) or (d < 0 and s < lim):
        raise ValueError(f"Range: requires start {'<=' if d > 0 else '>='} limit when delta "
                         f"{'>' if d > 0 else '<'} 0, got start {s}, limit {lim}")
    if dt.kind in "iu":
        n = (abs(int(lim) - int(s)) + abs(int(d)) - 1) // abs(int(d))
        check_array((n,), np.int64, "the range")
        return np.asarray(int(s) + np.arange(n, dtype=np.int64) * int(d)).astype(dt)
    with np.errstate(all="ignore"):
        n = np.ceil(np.abs((lim - s) / d))
    if not np.isfinite(n):
        raise ValueError(f"Range: the number of values from {s} to {lim} by {d} is not finite")
    n = int(n)
    check_array((n,), np.float64, "the range")
    # TF computes each value in the dtype itself, rounding at each step: start + T(i) * delta
    return np.asarray(s + np.arange(n).astype(dt) * d, dtype=dt)


@op("LinSpace")
def LinSpace(start, stop, num):
    """LinSpace: ``num`` evenly spaced values from ``start`` to ``stop`` inclusive."""
    n = int(num)
    if n <= 0:
        raise ValueError(f"LinSpace: requires num > 0, got {n}")
    check_array((n,), np.float64, "the values")
    dt = start.dtype
    a, b = start.reshape(()), stop.reshape(())
    if n == 1:
        return a.reshape(1).copy()
    step = (b - a) / np.asarray(n - 1, dtype=dt)
    out = np.asarray(a + np.arange(n).astype(dt) * step, dtype=dt)
    out[-1] = b
    return out


# --- splitting, tiling, reversing ---------------------------------------------------------------


def _check_pieces(n: int, what: str) -> None:
    """``n`` output arrays of a split (an attribute, or a dim of an empty tensor): each costs
    ~100 bytes however empty, so a hostile count asks for terabytes of them."""
    if what == "Split" and n < 1:  # (not a ZeroDivisionError)
        raise ValueError(f"Split: num_split must be positive, got {n}")
    check_elements((n,), 128, f"{what}: the pieces")


@op("Split")
def Split(axis, value, *, num_split):
    """Split: ``value`` cut into ``num_split`` equal pieces along ``axis``."""
    (a,) = normalize_axis(axis, value.ndim)
    _check_pieces(num_split, "Split")
    if value.shape[a] % num_split:
        raise ValueError(f"Split: dim {a} of size {value.shape[a]} is not divisible into "
                         f"{num_split} pieces")
    return tuple(np.split(value, num_split, axis=a))


@op("SplitV")
def SplitV(value, size_splits, axis, *, num_split):
    """SplitV: ``value`` cut along ``axis`` into pieces of ``size_splits`` (one may be -1)."""
    (a,) = normalize_axis(axis, value.ndim)
    sizes = [int(v) for v in np.asarray(size_splits).reshape(-1)]
    if len(sizes) != num_split:
        raise ValueError(f"SplitV: expected {num_split} sizes, got {sizes}")
    n = value.shape[a]
    if sizes.count(-1) > 1:
        raise ValueError(f"SplitV: at most one size can be -1, got {sizes}")
    if -1 in sizes:
        sizes[sizes.index(-1)] = n - (sum(sizes) + 1)
    if sum(sizes) != n or any(v < 0 for v in sizes):
        raise ValueError(f"SplitV: sizes {sizes} must be non-negative and sum to {n}")
    return tuple(np.split(value, np.cumsum(sizes)[:-1], axis=a))


split_v = SplitV  # (for its specializer, which defines a SplitV of its own)
transpose, expand_dims = Transpose, ExpandDims  # (likewise)


@op("Unpack")
def Unpack(value, *, num=None, axis=0):
    """Unpack: the slices of ``value`` along ``axis``."""
    (a,) = normalize_axis(axis, value.ndim)
    if num is not None and value.shape[a] != num:
        raise ValueError(f"Unpack: dim {a} has size {value.shape[a]}, expected {num}")
    _check_pieces(value.shape[a], "Unpack")
    m = np.moveaxis(value, a, 0)
    return tuple(m[i, ...] for i in range(m.shape[0]))  # [i, ...]: 0-d arrays, not scalars


@op("Tile")
def Tile(input, multiples):
    """Tile: ``input`` repeated ``multiples[i]`` times along each dim i."""
    m = _shape_arg(multiples, "multiples")
    if len(m) != input.ndim or any(v < 0 for v in m):
        raise ValueError(f"Tile: expected {input.ndim} non-negative multiples, got {list(m)}")
    shape = [d * k for d, k in zip(input.shape, m)]
    check_array(shape, input.dtype, "the tiled tensor")
    if not math.prod(shape):  # (np.tile repeats dim by dim: a huge multiple before a zero one
        return np.empty(shape, input.dtype)  # made a huge intermediate for an empty result)
    return np.tile(input, m) if input.ndim else input.copy()


_tile_generic = Tile

@op("ReverseV2")
def ReverseV2(tensor, axis):
    """ReverseV2: ``tensor`` reversed along the dims in ``axis``."""
    axes = normalize_axis(axis, tensor.ndim)
    if len(set(axes)) != len(axes):
        raise ValueError(f"ReverseV2: axis {list(axes)} has duplicates")
    return _flip(tensor, axes) if axes else tensor


def _flip(tensor, axes) -> np.ndarray:
    """``tensor`` reversed along ``axes`` (non-negative): a view, as np.flip, by slicing."""
    if tensor.__class__ is not np.ndarray:
        return np.flip(tensor, axes)
    back = slice(None, None, -1)
    return tensor[tuple(back if i in axes else slice(None) for i in range(tensor.ndim))]


@op("Reverse")
def Reverse(tensor, dims):
    """Reverse: ``tensor`` reversed along the dims where ``dims`` is true."""
    d = np.asarray(dims).reshape(-1)
    if d.size != tensor.ndim:
        raise ValueError(f"Reverse: dims must have {tensor.ndim} entries, got {d.size}")
    axes = tuple(int(i) for i in np.flatnonzero(d))
    return _flip(tensor, axes) if axes else tensor


@op("Roll")
def Roll(input, shift, axis):
    """Roll: ``input`` rotated by ``shift`` along ``axis`` (shifts on one axis add up)."""
    sh = np.asarray(shift).reshape(-1).tolist()
    ax = normalize_axis(axis, input.ndim)
    if len(sh) != len(ax):
        raise ValueError(f"Roll: shift and axis must have the same size, got {sh} and "
                         f"{list(ax)}")
    return np.roll(input, sh, ax) if ax else input


@op("ReverseSequence")
def ReverseSequence(input, seq_lengths, *, seq_dim, batch_dim=0):
    """ReverseSequence: the first ``seq_lengths[b]`` entries along ``seq_dim`` reversed, per
    batch entry b along ``batch_dim``."""
    nd = input.ndim
    sd, bd = seq_dim % nd, batch_dim % nd
    if sd == bd:
        raise ValueError("ReverseSequence: seq_dim and batch_dim must differ")
    lens = np.asarray(seq_lengths).astype(np.int64).reshape(-1)
    n, t = input.shape[bd], input.shape[sd]
    if lens.size != n or (lens.size and (lens.min() < 0 or lens.max() > t)):
        raise ValueError(f"ReverseSequence: seq_lengths must be {n} values in [0, {t}], "
                         f"got {lens.tolist()}")
    if input.size == 0:  # (no [batch, time] index table for nothing to reverse)
        return input.copy()
    pos = np.arange(t)
    idx = np.where(pos < lens[:, None], lens[:, None] - 1 - pos, pos)  # [batch, time]
    if bd > sd:
        idx = idx.T
    shape = [1] * nd
    shape[bd], shape[sd] = n, t
    idx = np.broadcast_to(idx.reshape(shape), input.shape)
    return np.take_along_axis(input, idx, axis=sd)


# --- broadcasting and shape arithmetic ----------------------------------------------------------


@op("BroadcastTo")
def BroadcastTo(input, shape):
    """BroadcastTo: ``input`` broadcast to ``shape`` (a read-only view; TF makes the tensor,
    so its size is checked as if it were made)."""
    s = _shape_arg(shape)
    check_array(s, input.dtype, "the broadcast tensor")
    try:
        return np.broadcast_to(input, s)
    except ValueError:
        raise ValueError(f"BroadcastTo: cannot broadcast shape {list(input.shape)} to "
                         f"{list(s)}") from None


@op("BroadcastArgs")
def BroadcastArgs(s0, s1):
    """BroadcastArgs: the broadcast of two shapes."""
    try:
        s = np.broadcast_shapes(_shape_arg(s0), _shape_arg(s1))
    except ValueError:
        raise ValueError(f"BroadcastArgs: incompatible shapes {s0.tolist()} and "
                         f"{s1.tolist()}") from None
    return np.array(s, dtype=s0.dtype)


@op("ConcatOffset")
def ConcatOffset(concat_dim, *shape):
    """ConcatOffset: where each input starts in the concatenation of tensors of ``shape``.

    Offsets past the shapes' integer type wrap around, as TF's (an int32 shape's sum of
    2**31 + 4 gives -2**31 + 4), rather than raising numpy's OverflowError.
    """
    shapes = [np.asarray(s) for s in shape]
    n = shapes[0].size
    (a,) = normalize_axis(concat_dim, n)
    first = shapes[0].tolist()
    for i, s in enumerate(shapes):  # (as TF checks: vectors of one length, every dim but the
        dims = s.tolist()           # axis the same)
        if s.ndim != 1 or s.size != n:
            raise ValueError(f"ConcatOffset: input {i} must be a vector of {n} dims like "
                             f"input 0, got shape {list(s.shape)}")
        if any(d != f for j, (d, f) in enumerate(zip(dims, first)) if j != a):
            raise ValueError(f"ConcatOffset: all dimensions except {a} must match; input {i} "
                             f"has shape {dims} and input 0 {first}")
    sizes = np.array([s[a] for s in shapes[:-1]], shapes[0].dtype)
    offsets = np.concatenate([np.zeros(1, sizes.dtype), np.cumsum(sizes, dtype=sizes.dtype)])
    out = []
    for s, off in zip(shapes, offsets):
        o = np.zeros_like(s)
        o[a] = np.asarray(off).astype(o.dtype)  # (wraps, as TF's integers of that type do)
        out.append(o)
    return tuple(out)


@op("InvertPermutation")
def InvertPermutation(x):
    """InvertPermutation: the inverse of the permutation ``x``."""
    n = x.size
    if x.ndim != 1 or (n and not np.array_equal(np.sort(x), np.arange(n))):
        raise ValueError(f"InvertPermutation: {x.tolist()} is not a permutation of 0..{n - 1}")
    out = np.empty_like(x)
    out[x] = np.arange(n, dtype=x.dtype)
    return out


# --- specializers: index arguments that are load-time constants ---------------------------
# The generic kernels re-derive an index from their begin/end/shape inputs on every call; when
# those inputs are constants (nearly always, in real graphs), the plan asks for a specialized
# kernel instead, which derives it once per input shape.

_MAX_SHAPES = 64  # cached input shapes per node; a loop over growing shapes stays bounded


@specializer("StridedSlice")
def _strided_slice(consts, *, begin_mask=0, end_mask=0, ellipsis_mask=0, new_axis_mask=0,
                   shrink_axis_mask=0):
    x, begin, end, strides = consts
    if begin is None or end is None or strides is None or x is not None:
        return None
    begin, end, strides = (np.array(v) for v in (begin, end, strides))
    masks = (begin_mask, end_mask, ellipsis_mask, new_axis_mask, shrink_axis_mask)
    cache: dict[tuple, tuple] = {}

    def StridedSlice(input):
        idx = cache.get(input.shape)
        if idx is None:
            idx = strided_index(input.shape, begin, end, strides, *masks)
            if len(cache) < _MAX_SHAPES:
                cache[input.shape] = idx
        out = input[idx]
        return out if out.__class__ is np.ndarray else np.asarray(out)

    return StridedSlice


@specializer("Reshape")
def _reshape(consts):
    """A constant shape: parsed and checked once (the generic kernel did it every call, ~3 us
    of a small model's Reshape); numpy infers the -1 itself."""
    tensor, shape = consts
    if shape is None or tensor is not None:
        return None
    try:
        s = _shape_arg(shape)
    except (ValueError, TypeError):
        return None  # (the generic kernel raises its error at run time)
    if s.count(-1) > 1 or any(d < -1 for d in s):
        return None

    def Reshape(tensor):
        return _reshape_to(tensor, s)

    return Reshape


@specializer("Transpose")
def _transpose(consts):
    """A constant perm: checked once per input rank, then ``x.transpose(perm)`` (the generic
    kernel parsed and checked it every call: 1.5 against 0.15 us, ten a Llama-style model's
    call)."""
    x, perm = consts
    if perm is None or x is not None:
        return None
    try:
        p = _shape_arg(perm, "perm")
    except (ValueError, TypeError):
        return None  # (the generic kernel raises its error at run time)
    perms: dict[int, tuple] = {}  # rank -> perm with negative entries resolved

    def Transpose(x):
        if x.__class__ is not np.ndarray:
            return transpose(x, perm)
        q = perms.get(x.ndim)
        if q is None:
            n = x.ndim
            q = tuple(d + n if -n <= d < 0 else d for d in p)
            if sorted(q) != list(range(n)):
                return transpose(x, perm)  # (its error)
            perms[n] = q
        return x.transpose(q)

    return Transpose


@specializer("ExpandDims")
def _expand_dims(consts):
    """A constant axis: checked once per input rank, then a reshape (np.expand_dims and the
    axis's parsing every call: 2.3 against 0.3 us)."""
    x, axis = consts
    if axis is None or x is not None or np.asarray(axis).size != 1:
        return None
    a = int(np.asarray(axis).reshape(-1)[0])
    spots: dict[int, int] = {}  # rank -> where the new dim goes

    def ExpandDims(input):
        if input.__class__ is not np.ndarray:
            return expand_dims(input, axis)
        k = spots.get(input.ndim)
        if k is None:
            n = input.ndim
            if not -n - 1 <= a <= n:
                return expand_dims(input, axis)  # (its error)
            k = spots[n] = a + n + 1 if a < 0 else a
        s = input.shape
        return input.reshape(s[:k] + (1,) + s[k:])

    return ExpandDims


@specializer("Split")
def _split(consts, *, num_split):
    axis, value = consts
    if axis is None or value is not None:
        return None
    axis = int(np.asarray(axis))
    cache: dict[tuple, tuple] = {}

    def Split(value):
        idx = cache.get(value.shape)
        if idx is None:
            (a,) = normalize_axis(axis, value.ndim)
            _check_pieces(num_split, "Split")
            n = value.shape[a]
            if n % num_split:
                raise ValueError(f"Split: dim {a} of size {n} is not divisible into "
                                 f"{num_split} pieces")
            k = n // num_split
            pre = (slice(None),) * a
            idx = tuple(pre + (slice(i * k, (i + 1) * k),) for i in range(num_split))
            if len(cache) < _MAX_SHAPES:
                cache[value.shape] = idx
        return tuple([value[i] for i in idx])

    return Split


@specializer("SplitV")
def _split_v(consts, *, num_split):
    value, size_splits, axis = consts
    if size_splits is None or axis is None or value is not None:
        return None
    cache: dict[tuple, tuple] = {}

    def SplitV(value):
        idx = cache.get(value.shape)
        if idx is None:
            # (the generic kernel checks the sizes; its pieces give the bounds)
            parts = split_v(value, size_splits, axis, num_split=num_split)
            (a,) = normalize_axis(axis, value.ndim)
            bounds = np.cumsum([0] + [p.shape[a] for p in parts])
            pre = (slice(None),) * a
            idx = tuple(pre + (slice(int(b), int(e)),) for b, e in zip(bounds, bounds[1:]))
            if len(cache) < _MAX_SHAPES:
                cache[value.shape] = idx
            return parts
        return tuple([value[i] for i in idx])

    return SplitV


@specializer("Tile")
def _tile(consts):
    """Tile by constant multiples, checked once; all ones (the masks of Keras RNNs, tiled
    every step) is a view of the input, no copy."""
    x, multiples = consts
    if multiples is None or x is not None:
        return None
    m = _shape_arg(multiples, "multiples")
    if any(v < 0 for v in m):
        return None  # (the generic kernel raises)
    n, ones = len(m), all(v == 1 for v in m)

    def Tile(input):
        if input.ndim != n:
            raise ValueError(f"Tile: expected {input.ndim} non-negative multiples, got {list(m)}")
        if ones:
            return input.view() if input.__class__ is np.ndarray else np.asarray(input)
        return _tile_generic(input, multiples)  # (its size check)

    return Tile
