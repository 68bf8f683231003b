"""Fused transformer kernels, made by the compiler's passes (``fuse_norm``, ``fuse_gelu``,
``fuse_attention``), never found in a graph: layer and RMS normalization, GELU, attention.

Each computes what its steps did, in the same order of operations where that matters to the
last bit, in one call with few temporaries: on a transformer's small tensors the cost is the
number of numpy calls, not the arithmetic.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from tfdeploy.dtypes import low_precision
from tfdeploy.kernels.common import Tiled, op
from tfdeploy.kernels.nn.gelu import gelu_erfc_
from tfdeploy.kernels.special.erf_gamma import Erf, Erfc
from tfdeploy.numerics.ufunc_speed import cheaper
from tfdeploy.runtime import parallel
from tfdeploy.runtime.constants import derived, immutable

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_F32 = _FLOATS[0]


def _reduce_mean(x: np.ndarray, axis: int) -> np.ndarray:
    r = np.add.reduce(x, axis=axis, keepdims=True)
    return np.divide(r, r.dtype.type(x.shape[axis]), out=r)


@functools.lru_cache(maxsize=64)
def _scalar(value: float, dtype: np.dtype) -> np.ndarray:
    """``value`` as a 0-d array of ``dtype``: numpy adds one to an array in 0.3 us, a scalar of
    the dtype made for the call in 0.8."""
    return np.array(value, dtype)


@functools.lru_cache(maxsize=64)
def _mean_column(n: int, dtype: np.dtype) -> np.ndarray:
    """The (n, 1) column of 1 / n: a row's mean as one matrix-vector product."""
    v = np.full((n, 1), 1.0 / n, dtype)
    v.setflags(write=False)
    return v


def _LayerNorm(x, *, axis: int = -1, epsilon: float, gamma=None, beta=None,
               rms: bool = False):
    """Layer normalization over ``axis``: ``(x - mean) * rsqrt(var + eps) * gamma + beta``,
    or with ``rms`` (RMSNorm) ``x * rsqrt(mean(x^2) + eps) * gamma``; ``gamma``/``beta``
    (arrays or ``Tiled``) None when the layer has none. (Keras computes
    ``x * s + (beta - mean * s)``; this differs from it by a rounding.)

    Over the last axis of a contiguous array, the means are products with a column of 1 / n
    (``np.dot`` on the rows: 0.6 us against 1.5 for a reduction and a division at 16 x 64)."""
    if x.dtype not in _FLOATS:
        raise TypeError(f"_LayerNorm: expected float32/float64, got {x.dtype}")
    n = x.shape[axis] if x.ndim else 0
    if n and x.size and axis in (-1, x.ndim - 1) and x.flags.c_contiguous:
        return _norm_rows(x, _mean_column(n, x.dtype), _scalar(epsilon, x.dtype), gamma, beta,
                          rms)
    src = x if rms else np.subtract(x, _reduce_mean(x, axis))
    var = _reduce_mean(np.multiply(src, src), axis)
    np.add(var, _scalar(epsilon, x.dtype), var)
    np.sqrt(var, out=var)
    d = np.divide(src, var, out=None if rms else src)  # (rms: x is the caller's)
    return _scale_shift(d, gamma, beta)


def _norm_rows(x, v, eps, gamma, beta, rms):
    """_LayerNorm over the last axis of a contiguous ``x``: ``v`` its column of 1 / n, ``eps``
    epsilon as a 0-d array of x's dtype."""
    n = v.shape[0]
    x2 = x.reshape(-1, n)
    src = x2 if rms else np.subtract(x2, np.dot(x2, v))  # (centred)
    var = np.dot(np.multiply(src, src), v)
    np.add(var, eps, var)
    np.sqrt(var, out=var)
    d = np.divide(src, var, out=None if rms else src).reshape(x.shape)  # (rms: x is the caller's)
    return _scale_shift(d, gamma, beta)


def _scale_shift(d, gamma, beta):
    """``d * gamma + beta`` in place (either None: left out; a ``Tiled``: repeated to d)."""
    if gamma is not None:
        np.multiply(d, gamma.like(d) if gamma.__class__ is Tiled else gamma, out=d)
    if beta is not None:
        np.add(d, beta.like(d) if beta.__class__ is Tiled else beta, out=d)
    return d


@op("_LayerNorm", internal=True, needs_context=True)
def _layer_norm_kernel(*, _ctx=None, axis: int = -1, epsilon: float, gamma=None, beta=None,
                       rms: bool = False):
    """The ``_LayerNorm`` kernel of one node (see :func:`_LayerNorm`): its gamma and beta
    repeated to the small shapes they meet (``Tiled``: 1.1 against 0.4 us a multiplication at
    16 x 64), and over the last axis, per input shape seen, the column of 1 / n and epsilon
    ready, without the keyword call."""
    g = None if gamma is None else Tiled(np.asarray(gamma))
    b = None if beta is None else Tiled(np.asarray(beta))
    rows: dict = {}  # input shape -> (dtype, column of 1 / n, epsilon)
    nd = np.ndarray

    def LayerNorm(x):
        e = rows.get(x.shape) if x.__class__ is nd else None
        if e is None or e[0] is not x.dtype or not x.flags.c_contiguous:
            dt, n = x.dtype, x.shape[-1] if x.ndim else 0
            if dt not in _FLOATS or not (n and x.size and axis in (-1, x.ndim - 1) and
                                         x.flags.c_contiguous):
                return _LayerNorm(x, axis=axis, epsilon=epsilon, gamma=g, beta=b, rms=rms)
            e = (dt, _mean_column(n, dt), _scalar(epsilon, dt))
            if len(rows) < 16:
                rows[x.shape] = e
        return _norm_rows(x, e[1], e[2], g, b, rms)

    return LayerNorm


@op("_Rotary", internal=True, needs_context=True)
def _rotary_kernel(*, _ctx=None, cos, sin, half: int, _fallback=None):
    """Rotary position embedding ``x * cos + rotate_half(x) * sin`` over x's last axis of
    ``2 half`` values, ``rotate_half(x) = concat(-x[..., half:], x[..., :half])``
    (``compiler/passes/fuse_rotary.py``), as ``x * cos + swap(x) * s`` with ``swap`` the
    halves exchanged (one ``np.take``) and ``s`` sin with its first half negated: four numpy
    calls on whole rows (views of the halves, 8 values a row, cost more than the unfused steps), the
    tables repeated to the input's shape (``Tiled``), the unfused steps' values bit for bit
    (``a * -b`` is ``-(a * b)``). An input the tables do not broadcast into without widening
    it (or of another dtype) runs the unfused steps (``_fallback``)."""
    cos, sin = np.asarray(cos), np.asarray(sin)
    dt, nd, width = cos.dtype, np.ndarray, 2 * half
    swap = np.r_[half:width, 0:half].astype(np.intp)
    usable = sin.shape[-1] in (1, width)
    if usable:
        signed = np.array(np.broadcast_to(sin, sin.shape[:-1] + (width,)))
        np.negative(signed[..., :half], out=signed[..., :half])
    else:  # (the unfused steps raise numpy's error)
        signed = sin
    cos_t, sin_t = Tiled(cos), Tiled(signed)
    fits: dict = {}  # input shape -> whether the fast path takes it

    def _fits(x) -> bool:
        if not usable or x.ndim < 1 or x.shape[-1] != width:
            return False
        try:
            return np.broadcast_shapes(x.shape, cos.shape, signed.shape) == x.shape
        except ValueError:
            return False

    def Rotary(x):
        ok = fits.get(x.shape) if x.__class__ is nd and x.dtype is dt else False
        if ok is None:
            ok = _fits(x)
            if len(fits) < 16:
                fits[x.shape] = ok
        if not ok:
            return _fallback(x)
        y = np.multiply(x, cos_t.like(x))
        r = x.take(swap, -1)  # (C-contiguous: x[..., swap] is laid out transposed)
        np.multiply(r, sin_t.like(r), out=r)
        return np.add(y, r, out=y)

    return Rotary


def gelu_(y: np.ndarray, approximate: str) -> np.ndarray:
    """GELU of a float array, in place, in the form the graph computed it: ``"erfc"``
    (``0.5 x erfc(-x / sqrt 2)``, Keras 3 and ``tf.nn.gelu``), ``"erf"``
    (``0.5 x (1 + erf(x / sqrt 2))``) or ``"tanh"``
    (``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``)."""
    t = y.dtype.type
    if approximate == "erfc":
        if y.dtype is _F32 and y.flags.c_contiguous:  # (one rounding of the exact value)
            return gelu_erfc_(y)
        e = Erfc(np.multiply(y, t(-0.7071067811865476)))
        np.multiply(y, t(0.5), out=y)
        return np.multiply(y, e, out=y)
    if approximate == "erf":
        e = Erf(np.multiply(y, t(0.7071067811865476)))
        e += t(1)
    else:
        e = np.multiply(y, y)
        e *= t(0.044715)
        e *= y
        e += y
        if cheaper("exp", "tanh", y.dtype.name):
            # 0.5 x (1 + tanh(u)) = x / (1 + e ** (-2u)): exp where numpy's tanh is a libm
            # call per value and exp is not (AVX2: 2.2 against 4.1 ns a float32 value), and
            # two passes fewer. The same value to a rounding; -0 where the power overflows
            # (x below about -10: the tanh form's 0.5 x 0), NaN at -inf as 0.5 x (1 + tanh)
            e *= t(-1.5957691216057308)
            with np.errstate(over="ignore"):
                np.exp(e, out=e)
            e += t(1)
            return np.divide(y, e, out=y)
        e *= t(0.7978845608028654)
        np.tanh(e, out=e)
        e += t(1)
    np.multiply(y, t(0.5), out=y)
    return np.multiply(y, e, out=y)


@op("_Gelu", internal=True)
def _Gelu(x, *, approximate: str = "erfc"):
    """GELU (see :func:`gelu_`)."""
    return gelu_(x.copy(), approximate)


def _Attention(q, k, v, *mask, q_perm, k_perm, v_perm, out_perm, scale=None, divisor=None,
               masked_fill=None, mask_keeps: bool = True):
    """Scaled dot-product attention: ``softmax(q k * scale [+ mask]) v`` as two batched
    matmuls over transposed views (no einsum): ``q`` transposed by ``q_perm`` is
    ``[..., T, H]``, ``k`` by ``k_perm`` ``[..., H, S]``, ``v`` by ``v_perm`` ``[..., S, H']``;
    the ``[..., T, H']`` result is transposed by ``out_perm`` to the graph's layout. ``scale``
    multiplies the scores (``divisor`` divides them); ``mask`` is added to them, or with
    ``masked_fill`` it is a boolean mask: scores where it is not ``mask_keeps`` become
    ``masked_fill`` (``SelectV2``)."""
    low = q.dtype
    if low_precision(low):
        # float16/bfloat16 (a mixed_float16 model's hand-written attention): numpy has no BLAS
        # for them and computes a value at a time (a Llama-style model's two attentions took
        # 1.9 of its 3.5 ms). In float32, rounded once at the end: TF's values to a rounding
        f32 = np.float32
        out = _Attention(q.astype(f32), k.astype(f32), v.astype(f32),
                         *(m if m.dtype == np.bool_ else m.astype(f32) for m in mask),
                         q_perm=q_perm, k_perm=k_perm, v_perm=v_perm, out_perm=out_perm,
                         scale=None if scale is None else np.asarray(scale, f32),
                         divisor=None if divisor is None else np.asarray(divisor, f32),
                         masked_fill=None if masked_fill is None else np.asarray(masked_fill,
                                                                                 f32),
                         mask_keeps=mask_keeps)
        return out.astype(low)
    qt, kt = q.transpose(q_perm), k.transpose(k_perm)
    lead = qt.shape[:-2] if qt.shape[:-2] == kt.shape[:-2] else \
        np.broadcast_shapes(qt.shape[:-2], kt.shape[:-2])
    n_q, n_keys = qt.shape[-2], kt.shape[-1]
    if n_q * n_keys * math.prod(lead[1:]) >= KEYS_FIRST and \
            qt.shape[-1] == kt.shape[-2] and qt.size and kt.size:
        return _keys_first(qt, kt, v.transpose(v_perm), out_perm, scale, divisor, mask,
                           masked_fill, mask_keeps)
    s = np.matmul(qt, kt)
    if not s.size:
        return _attention_rows(s, v, v_perm, out_perm, scale, divisor, mask, masked_fill,
                               mask_keeps)
    # The softmax runs on the scores transposed, keys first: (S, N) for N = every query of
    # every head. A row of S ~ 16 scores is too short for numpy's reductions along it (4.3 us
    # for the maxima at 64 x 16, 27 at 512 x 16); down the columns of (S, N) they are one
    # vectorized pass (1.6 and 2.2 us), and the broadcasts of the maxima and sums likewise.
    # The transposing copy is the scale's multiplication when there is no mask. Each query's
    # column is reduced in the same order whatever N: results do not depend on the batch.
    n_keys = s.shape[-1]
    rows = s.reshape(-1, n_keys)
    if mask:
        _scale_and_mask(s, scale, divisor, mask, masked_fill, mask_keeps)
        scale = divisor = None
    w = np.empty(rows.shape[::-1], s.dtype)
    _softmax_down(w, rows.T, scale, divisor)
    o = np.matmul(w.T.reshape(s.shape), v.transpose(v_perm))
    return np.ascontiguousarray(o.transpose(out_perm))


@op("_Attention", internal=True, needs_context=True)
def _attention_kernel(*, _ctx=None, q_perm, k_perm, v_perm, out_perm, scale=None, divisor=None,
                      masked_fill=None, mask_keeps: bool = True, packed=None,
                      merge: bool = False, q_scale=None, k_scale=None, v_scale=None):
    """The ``_Attention`` kernel of one node (see :func:`_Attention`). Per input shapes seen,
    whether they take the plain path (float32/float64 alike, no mask, queries first, scores
    not empty) is decided once, and that path then runs without the keyword call, the dtype
    and path checks and the broadcast of the heads (a transformer block's attention at
    batch 1: 15 -> 12.6 us).

    ``packed`` (``fuse_attention``): q, k and v are one input, a self-attention's projection,
    each role its columns [start, stop) of the last axis viewed as (heads, width), times its
    ``*_scale`` where given (tf_keras' query); ``merge``: the result's last two axes made one
    (the heads merged)."""
    kw = dict(q_perm=q_perm, k_perm=k_perm, v_perm=v_perm, out_perm=out_perm, scale=scale,
              divisor=divisor, masked_fill=masked_fill, mask_keeps=mask_keeps)
    qp, kp, vp, op_ = (tuple(p) for p in (q_perm, k_perm, v_perm, out_perm))
    plain: dict = {}  # (q, k, v shapes) -> (dtype, scores' shape, n_keys) or None
    nd = np.ndarray
    views = _role_views(packed, (q_scale, k_scale, v_scale)) if packed else None

    def _plain(q, k, v):
        dt = q.dtype
        if dt not in _FLOATS or k.dtype is not dt or v.dtype is not dt:
            return None
        qt, kt = q.transpose(qp), k.transpose(kp)
        lead = np.broadcast_shapes(qt.shape[:-2], kt.shape[:-2])
        n_q, n_keys = qt.shape[-2], kt.shape[-1]
        if n_q * n_keys * math.prod(lead[1:]) >= KEYS_FIRST or not (qt.size and kt.size) \
                or qt.shape[-1] != kt.shape[-2]:
            return None
        return dt, (*lead, n_q, n_keys), n_keys

    def Attention(q, *ins):
        if views is None:
            k, v, *mask = ins
        else:
            (q, k, v), mask = views(q), ins
        e = None
        if not mask and q.__class__ is nd and k.__class__ is nd and v.__class__ is nd:
            key = (q.shape, k.shape, v.shape)
            e = plain.get(key, False)
            if e is False:
                e = _plain(q, k, v)
                if len(plain) < 16:
                    plain[key] = e
        if e is None or q.dtype is not e[0] or k.dtype is not e[0] or v.dtype is not e[0]:
            o = _Attention(q, k, v, *mask, **kw)
        else:
            s = np.matmul(q.transpose(qp), k.transpose(kp))
            w = np.empty((e[2], s.size // e[2]), s.dtype)
            _softmax_down(w, s.reshape(-1, e[2]).T, scale, divisor)
            o = np.ascontiguousarray(np.matmul(w.T.reshape(e[1]), v.transpose(vp))
                                     .transpose(op_))
        return o.reshape(*o.shape[:-2], -1) if merge else o

    return Attention


def _role_views(packed, scales):
    """x -> (q, k, v): views of a packed input's columns (see ``_attention_kernel``); parts of
    one size and shape through one reshape of the last axis as (parts, heads, width) (0.6 us at
    1 x 16 x 192, against 1.6 for three slices reshaped); a role with a scale (not None) is
    its view times it."""
    views = _plain_views(packed)
    if all(s is None for s in scales):
        return views
    mul = np.multiply

    def scaled(x):
        return tuple(v if s is None else mul(v, s) for v, s in zip(views(x), scales))

    return scaled


def _plain_views(packed):
    """x -> (q, k, v) of ``_role_views`` without scales."""
    size = packed[0][1] - packed[0][0]
    if all(b - a == size and (h, d) == tuple(packed[0][2:]) for a, b, h, d in packed) and \
            sorted(a for a, *_ in packed) == [0, size, 2 * size]:
        tail = (3, *packed[0][2:])
        iq, ik, iv = ((..., a // size, slice(None), slice(None)) for a, *_ in packed)

        def parts(x):
            x5 = x.reshape(x.shape[:-1] + tail)
            return x5[iq], x5[ik], x5[iv]

        return parts
    cols = [((..., slice(a, b)), (h, d)) for a, b, h, d in packed]

    def columns(x):
        lead = x.shape[:-1]
        return tuple(x[c].reshape(*lead, *t) for c, t in cols)

    return columns


def _softmax_down(w, view, scale, divisor) -> None:
    """``w`` (keys first: a query's scores down a column) = the softmax down the columns of
    ``view`` (the scores, any layout) times ``scale`` over ``divisor`` (each optional), the
    scaling done by the copy into ``w``."""
    if scale is not None:
        np.multiply(view, scale, out=w)
        if divisor is not None:
            w /= divisor
    elif divisor is not None:
        np.divide(view, divisor, out=w)
    else:
        np.copyto(w, view)
    w = w.reshape(w.shape[0], -1)
    np.subtract(w, np.maximum.reduce(w, 0, None, None, True), w)
    np.exp(w, w)
    t = np.add.reduce(w, 0, None, None, True)
    np.multiply(w, np.reciprocal(t, t), w)


#: from this many scores an example (queries x keys x heads), ``_Attention`` computes them
#: keys first, k q (``_keys_first``)
KEYS_FIRST = 1 << 14


def _keys_first(qt, kt, vt, out_perm, scale, divisor, mask, masked_fill, mask_keeps):
    """``_Attention`` with the scores computed keys first, ``kt^T qt^T`` [..., S, T]: each
    query's scores are then a column, and the copy to the softmax's (S, N) layout moves runs
    of T (a query row's S scores, copied transposed, moved 4 bytes at a time: 18.5 ms of
    BERT-base's 512-token attention, 0.76 now). The same arithmetic as the queries-first
    path, in the same order (a score is one dot product either way: BLAS gave the same bits
    here on every shape tried), so a query's result does not depend on the batch beside it;
    the path is chosen by the scores of one example (``KEYS_FIRST``).

    With threads to spare, the examples and heads (the longest leading axis) split into
    blocks over them (``runtime/parallel.py``), each block's result written into its part of
    the output: two BERT-base attentions at 128 tokens, batch 1, two threads: ~1.7x."""
    lead = np.broadcast_shapes(qt.shape[:-2], kt.shape[:-2])
    n_q, n_keys = qt.shape[-2], kt.shape[-1]
    if mask:
        # the mask in the scores' keys-first layout [..., S, T]
        m = np.broadcast_to(mask[0], (*lead, n_q, n_keys)).swapaxes(-1, -2)
        if immutable(mask[0]):
            # a constant mask (a causal one, folded in a specialized plan): its transposed
            # form, contiguous, made once (GPT-like 256 tokens x 4 heads at batch 8: the
            # strided mask took 3 of the attention's 10.3 ms); the values it selects alike
            st_shape = (*lead, n_keys, n_q)
            if masked_fill is not None:
                m = derived(mask[0], ("attention_drop_t", bool(mask_keeps), st_shape),
                            lambda: np.ascontiguousarray(np.logical_not(m) if mask_keeps
                                                         else m))
                mask_keeps = False  # (m is now where to fill)
            else:
                m = derived(mask[0], ("attention_add_t", st_shape),
                            lambda: np.ascontiguousarray(m))
        mask = (m,)
    parts, axis = 1, 0
    if lead and np.broadcast_shapes(lead, vt.shape[:-2]) == lead:
        axis = max(range(len(lead)), key=lead.__getitem__)
        parts = parallel.blocks(lead[axis], math.prod(lead) // lead[axis] * n_q * n_keys *
                                (qt.shape[-1] + vt.shape[-1] + _SOFTMAX_WORK))
    if parts == 1:
        o = _keys_first_rows(qt, kt, vt, scale, divisor, mask, masked_fill, mask_keeps)
        return np.ascontiguousarray(o.transpose(out_perm))
    shape = (*lead, n_q, vt.shape[-1])
    out = np.empty(tuple(shape[i] for i in out_perm),
                   np.result_type(qt.dtype, kt.dtype, vt.dtype))
    rows = out.transpose(np.argsort(out_perm))  # (the [..., T, H'] layout, a view)

    def block(a: int, b: int) -> None:
        def part(x):  # (an operand broadcast along the split axis is taken whole)
            i = axis - (len(lead) - (x.ndim - 2))
            if i < 0 or x.shape[i] == 1:
                return x
            return x[(slice(None),) * i + (slice(a, b),)]

        rows[(slice(None),) * axis + (slice(a, b),)] = _keys_first_rows(
            part(qt), part(kt), part(vt), scale, divisor, tuple(part(x) for x in mask),
            masked_fill, mask_keeps)

    parallel.run_blocks(block, lead[axis], parts)
    return out


#: per score, the softmax's work, counted as multiply-adds (its passes are numpy's, each
#: dearer than a product's multiply-add) when deciding a thread split
_SOFTMAX_WORK = 8


def _keys_first_rows(qt, kt, vt, scale, divisor, mask, masked_fill, mask_keeps):
    """``_keys_first``'s result before its transpose, [..., T, H'], on one thread; ``mask``:
    () or the mask in the scores' layout [..., S, T]."""
    st = np.matmul(kt.swapaxes(-1, -2), qt.swapaxes(-1, -2))  # [..., S, T]
    lead, (n_keys, n_q) = st.shape[:-2], st.shape[-2:]
    if mask:
        _scale_and_mask(st, scale, divisor, mask, masked_fill, mask_keeps)
        scale = divisor = None
    k = len(lead)
    w = np.empty((n_keys, *lead, n_q), st.dtype)
    _softmax_down(w, st.transpose(k, *range(k), k + 1), scale, divisor)  # (keys first)
    return np.matmul(w.transpose(*range(1, k + 1), k + 1, 0), vt)  # [..., T, S] x [..., S, H']


def _scale_and_mask(s, scale, divisor, mask, masked_fill, mask_keeps) -> None:
    """The scores ``s`` scaled and masked in place (see ``_Attention``)."""
    if scale is not None:
        s *= scale
    if divisor is not None:
        s /= divisor
    if mask and masked_fill is not None:
        drop = np.logical_not(mask[0]) if mask_keeps else mask[0]
        np.copyto(s, s.dtype.type(masked_fill), where=drop)
    elif mask:
        s += mask[0]


def _attention_rows(s, v, v_perm, out_perm, scale, divisor, mask, masked_fill, mask_keeps):
    """The rest of ``_Attention`` with the softmax along the scores' rows (empty scores:
    numpy's own errors and empty results)."""
    _scale_and_mask(s, scale, divisor, mask, masked_fill, mask_keeps)
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    t = s.sum(axis=-1, keepdims=True)
    s *= np.reciprocal(t, out=t)
    o = np.matmul(s, v.transpose(v_perm))
    return np.ascontiguousarray(o.transpose(out_perm))
