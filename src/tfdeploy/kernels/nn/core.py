"""Neural-network kernels: activations, softmax, bias addition, batch normalization, top-k."""

from __future__ import annotations

import numpy as np

from tfdeploy.kernels.common import as_array, low_precision, np_dtype, op
from tfdeploy.kernels.nn.scratch import scratch
from tfdeploy.numerics import clip

# --- activations ---------------------------------------------------------------------------

#: per float dtype, the bounds of a clip to [-inf, 0] and [0, inf] as 0-d arrays: numpy's
#: maximum and minimum with a scalar do not vectorise (0.37 against 0.11 ns a float32 value
#: for the clip ufunc here)
_SIDES = {np.dtype(t): (np.full((), -np.inf, t), np.zeros((), t), np.full((), np.inf, t))
          for t in (np.float16, np.float32, np.float64)}


@op("Relu")
def Relu(features):
    """Relu: max(features, 0) (NaN stays NaN, -0 stays -0; TF's sign of a zero here depends
    on the CPU)."""
    dt = features.dtype
    if dt.kind == "f" and not low_precision(dt):
        _, zero, inf = _SIDES[dt]  # (float32, float64)
        return as_array(clip(features, zero, inf))
    return as_array(np.maximum(features, 0))


@op("Relu6")
def Relu6(features):
    """Relu6: min(max(features, 0), 6) (NaN stays NaN)."""
    dt = features.dtype
    return as_array(np.minimum(np.maximum(features, np.zeros((), dt)), np.full((), 6, dt)))


# Selections are written as max(x, 0) + f(min(x, 0)): exact, as one term is 0, and much faster
# than np.where on random masks. For float16/32/64 the max and min are clips (``_SIDES``).
# The values are the same but for a zero's sign: numpy 2's clip keeps -0 (as TF's LeakyRelu
# and Elu do), np.maximum(-0.0, 0.0) gives +0.


def _negative_part(y: np.ndarray) -> np.ndarray:
    """min(y, 0), as a new array."""
    b = _SIDES.get(y.dtype)
    return np.minimum(y, np.zeros((), y.dtype)) if b is None else clip(y, b[0], b[1])


def _positive_part_(y: np.ndarray) -> np.ndarray:
    """max(y, 0), in place."""
    b = _SIDES.get(y.dtype)
    if b is None:
        return np.maximum(y, np.zeros((), y.dtype), out=y)
    return clip(y, b[1], b[2], out=y)


def leaky_relu_(y: np.ndarray, alpha) -> np.ndarray:
    """LeakyRelu of an array, in place (LeakyRelu and the fused epilogue)."""
    t = _negative_part(y)
    np.multiply(t, np.asarray(alpha, y.dtype), out=t)
    return np.add(_positive_part_(y), t, out=y)


def elu_(y: np.ndarray) -> np.ndarray:
    """Elu of a float array, in place (Elu and the fused epilogue)."""
    t = _negative_part(y)
    np.expm1(t, out=t)
    return np.add(_positive_part_(y), t, out=y)


@op("LeakyRelu")
def LeakyRelu(features, *, alpha=0.2):
    """LeakyRelu: features where positive, else alpha * features."""
    if not features.ndim:
        return leaky_relu_(features.reshape(1).copy(), alpha).reshape(())
    return leaky_relu_(features.copy(), alpha)


@op("Elu")
def Elu(features):
    """Elu: features where positive, else exp(features) - 1."""
    x = features.astype(np.float32) if low_precision(features.dtype) else features.copy()
    return elu_(x.reshape(x.shape or (1,))).reshape(x.shape).astype(features.dtype, copy=False)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@op("Selu")
def Selu(features):
    """Selu: scale * (features where positive, else alpha * (exp(features) - 1))."""
    x = features.astype(np.float32) if low_precision(features.dtype) else features
    t = x.dtype.type
    r = np.maximum(x, 0) * t(_SELU_SCALE) + np.expm1(np.minimum(x, 0)) * t(_SELU_ALPHA *
                                                                            _SELU_SCALE)
    return as_array(r).astype(features.dtype, copy=False)


@op("Softplus")
def Softplus(features):
    """Softplus: log(exp(features) + 1), computed as max(x, 0) + log1p(exp(-|x|))."""
    x = features.astype(np.float32) if low_precision(features.dtype) else features
    with np.errstate(invalid="ignore"):
        r = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
    return as_array(r).astype(features.dtype, copy=False)


@op("Softsign")
def Softsign(features):
    """Softsign: features / (1 + |features|)."""
    x = features.astype(np.float32) if low_precision(features.dtype) else features
    with np.errstate(invalid="ignore"):
        return as_array(x / (1 + np.abs(x))).astype(features.dtype, copy=False)


# --- softmax -------------------------------------------------------------------------------

@op("Softmax")
def Softmax(logits):
    """Softmax: exp(logits) / sum(exp(logits)) over the last axis, shifted by the max."""
    dt = logits.dtype
    if dt.itemsize < 4 and dt.kind == "f":  # float16/bfloat16: compute in float32
        return Softmax(logits.astype(np.float32)).astype(dt)
    if logits.ndim < 1:
        raise ValueError("Softmax expects a tensor of rank >= 1, got a scalar")
    # one fresh buffer, updated in place: e = exp(x - max); e /= sum(e). No np.errstate here:
    # it costs ~1 us, a tenth of a small model's whole evaluation, and only silences numpy's
    # warnings for inf/NaN logits (whose results are NaN, as TF's without oneDNN)
    if logits.shape[-1] == 0:
        return logits.copy()
    return softmax_into(logits, np.empty_like(logits))


def softmax_into(x, out, _max=np.maximum.reduce, _sub=np.subtract, _exp=np.exp,
                 _sum=np.add.reduce, _mul=np.multiply, _inv=np.reciprocal):
    """Softmax of float32/float64 ``x`` over its last axis (not empty) into ``out``, which
    may be ``x`` itself; returns ``out``. The one implementation: the Softmax kernel, the
    epilogue of a fused chain and the Dense + softmax closure (``kernels/nn/fused.py``) give
    the same values. It runs on every call of a classifier head, so the ufuncs are bound as
    defaults (no global lookups), called positionally, and reduce with their own method
    (ndarray.max/sum go through numpy's Python wrappers). One row (a batch-1 head) reduces to
    numpy scalars: 3.0 against 4.4 us at 1 x 10, the same values."""
    c = x.shape[-1]
    if x.size == c:
        _sub(x, _max(x, None), out)
        _exp(out, out)
        return _mul(out, 1 / _sum(out, None), out)
    if c <= _FEW_CLASSES and x.size >= _MANY_ROWS[(c > 16) + (c > 32)] * c and \
            out.flags.c_contiguous:
        return _softmax_few(x, out, c)
    _sub(x, _max(x, -1, None, None, True), out)
    _exp(out, out)
    s = _sum(out, -1, None, None, True)
    # times 1/sum, as TF's kernel computes it (and whatever the batch size: a row's result
    # must not depend on the rows beside it)
    return _mul(out, _inv(s, s), out)


#: at most this many classes, and at least _MANY_ROWS rows (up to 16 classes, to 32, to 64):
#: softmax on the transposed rows. Measured against the row-wise path, one thread: at 48 rows
#: it was slower at every class count (2: 7.1 against 5.8 us, 64: 17 against 11); from 128
#: rows faster up to 16 classes (16: 13 against 19 us), from 256 up to 32, and at 64 classes
#: only from 2048 rows, by 2-4%
_FEW_CLASSES = 64
_MANY_ROWS = (128, 256, 2048)
#: the transposed rows go in blocks of about this many values (in cache)
_FEW_BLOCK = 1 << 17


def _softmax_few(x, out, c: int):
    """Softmax over a short last axis (a segmentation head's classes): numpy reduces each row
    in a call of its inner loop, ~50-200 ns a row. Over the [C, rows] transpose the same
    arithmetic runs along whole rows of pixels, in blocks of ``_FEW_BLOCK`` values that stay
    in cache (one thread, 160 x 160 pixels against the row-wise path: 2 classes 0.14 / 1.12
    ms, 21 classes (PASCAL VOC's) 0.99 / 2.35, 48 2.35 / 4.17, 64 4.5 / 5.0; 512 x 512 at 21
    classes 11.5 / 26.6; unblocked, 32 classes and more were slower than row-wise). The max
    goes class by class, the sum in numpy's own order for a row (``_row_sums``): the values
    are the row-wise path's bit for bit, whatever the rows beside them."""
    x2, o2 = x.reshape(-1, c), out.reshape(-1, c)
    n = x2.shape[0]
    step = max(_MANY_ROWS[0], _FEW_BLOCK // c)
    buf = scratch("softmax_few", min(n, step) * c, x.dtype)
    for r in range(0, n, step):
        xb = x2[r:r + step]
        t = buf[:xb.size].reshape(c, xb.shape[0])
        np.copyto(t, xb.T)
        np.subtract(t, np.maximum.reduce(t, 0), t)
        np.exp(t, t)
        s = _row_sums(t, c)
        np.multiply(t, np.reciprocal(s, s), t)
        np.copyto(o2[r:r + step], t.T)
    return out


def _row_sums(t, c: int):
    """The sums down the ``c`` rows of ``t`` in the order numpy sums a row of fewer than 128
    values (its pairwise sum: in order below 8, else 8 running sums combined as a tree, then
    the rest in order), so each column's sum is the row-wise path's bit for bit."""
    if c < 8:
        return np.add.reduce(t, 0)
    r = t[:8].copy()
    i = 8
    while i < c - c % 8:
        r += t[i:i + 8]
        i += 8
    p = np.add(r[0::2], r[1::2])  # ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    q = np.add(p[0::2], p[1::2])
    res = np.add(q[0], q[1])
    for j in range(i, c):
        res += t[j]
    return res


# --- bias ----------------------------------------------------------------------------------

def _bias_add(value, bias, channels_first):
    if value.ndim < 2:
        raise ValueError(f"BiasAdd expects a tensor of rank >= 2, got shape {value.shape}")
    if bias.ndim != 1:
        raise ValueError(f"BiasAdd expects a 1-D bias, got shape {bias.shape}")
    axis = 1 if channels_first and value.ndim > 2 else -1
    if value.shape[axis] != bias.shape[0]:
        raise ValueError(f"BiasAdd: bias of length {bias.shape[0]} does not match dimension "
                         f"{axis} of the value, shape {value.shape}")
    if axis == 1:
        bias = bias.reshape((-1,) + (1,) * (value.ndim - 2))
    return np.add(value, bias)


@op("BiasAdd")
def BiasAdd(value, bias, *, data_format="NHWC"):
    """BiasAdd: value + bias along the channel axis (last for NHWC, 1 for NCHW)."""
    if bias.ndim == 1 and value.ndim == 2 and value.shape[1] == bias.shape[0]:
        return np.add(value, bias)  # (the channel axis of a matrix is its last either way)
    return _bias_add(value, bias, data_format.startswith("NC"))


@op("BiasAddV1")
def BiasAddV1(value, bias):
    """BiasAddV1: value + bias along the last axis."""
    return _bias_add(value, bias, False)


# --- batch normalization -------------------------------------------------------------------

def _fused_batch_norm(x, scale, offset, mean, variance, epsilon, exponential_avg_factor,
                      data_format, is_training, n_outputs):
    if x.ndim not in (4, 5):
        raise ValueError(f"FusedBatchNorm expects a 4-D or 5-D input, got shape {x.shape}")
    channels_first = data_format.startswith("NC")
    c_axis = 1 if channels_first else x.ndim - 1
    C = x.shape[c_axis]
    if scale.shape != (C,) or offset.shape != (C,):
        raise ValueError(f"FusedBatchNorm: scale {scale.shape} and offset {offset.shape} must "
                         f"have shape ({C},) for an input of shape {x.shape} ({data_format})")
    bshape = (C,) + (1,) * (x.ndim - 2) if channels_first else (C,)
    u = np.result_type(scale.dtype, np.float32)
    if x.size == 0:  # TF's early return: NaN batch statistics in both modes (its reserve
        # spaces are then uninitialised without oneDNN, zeros with it: zeros here)
        nan, zero = np.full(C, np.nan, u), np.zeros(C, u)
        outs = (x.copy(), nan, nan.copy(), zero, zero.copy())
        return outs + ((np.zeros((0,), u),) if n_outputs == 6 else ())
    xf = x.astype(u)  # fresh buffer, normalized in place
    with np.errstate(invalid="ignore", divide="ignore"):
        if is_training:
            axes = tuple(a for a in range(x.ndim) if a != c_axis)
            n = x.size // C if C else 0
            batch_mean = xf.mean(axis=axes) if n else np.full(C, np.nan, u)
            batch_var = xf.var(axis=axes) if n else np.full(C, np.nan, u)
            corrected = batch_var * (n / max(n - 1, 1))
            f = exponential_avg_factor
            if f != 1 and mean.size:
                out_mean = (1 - f) * mean + f * batch_mean
                out_var = (1 - f) * variance + f * corrected
            else:
                out_mean, out_var = batch_mean, corrected
            m, v = batch_mean, batch_var
            saved = (batch_mean.astype(u), batch_var.astype(u))
        else:
            m, v = mean, variance
            out_mean, out_var = mean.copy(), variance.copy()
            saved = (mean.copy(), variance.copy())
        inv = (scale / np.sqrt(v.astype(u) + np.asarray(epsilon, u))).astype(u)
        shift = (offset - m * inv).astype(u)
        xf *= inv.reshape(bshape)
        xf += shift.reshape(bshape)
    y = xf.astype(x.dtype, copy=False)
    outs = (y, np.asarray(out_mean, u), np.asarray(out_var, u)) + saved
    if n_outputs == 6:
        outs += (np.zeros((0,), u),)
    return outs


@op("FusedBatchNorm")
def FusedBatchNorm(x, scale, offset, mean, variance, *, epsilon=0.0001,
                   exponential_avg_factor=1.0, data_format="NHWC", is_training=True):
    """FusedBatchNorm: batch normalization; 5 outputs (y, batch mean/variance, saved mean/var).

    With is_training the batch statistics are used and the returned variance is unbiased.
    """
    return _fused_batch_norm(x, scale, offset, mean, variance, epsilon, exponential_avg_factor,
                             data_format, is_training, 5)


@op("FusedBatchNormV2")
def FusedBatchNormV2(x, scale, offset, mean, variance, *, epsilon=0.0001,
                     exponential_avg_factor=1.0, data_format="NHWC", is_training=True):
    """FusedBatchNormV2: FusedBatchNorm with x of type T (e.g. float16), statistics of type U."""
    return _fused_batch_norm(x, scale, offset, mean, variance, epsilon, exponential_avg_factor,
                             data_format, is_training, 5)


@op("FusedBatchNormV3")
def FusedBatchNormV3(x, scale, offset, mean, variance, *, epsilon=0.0001,
                     exponential_avg_factor=1.0, data_format="NHWC", is_training=True):
    """FusedBatchNormV3: FusedBatchNormV2 plus a sixth output, reserve_space_3 (empty here)."""
    return _fused_batch_norm(x, scale, offset, mean, variance, epsilon, exponential_avg_factor,
                             data_format, is_training, 6)


@op("LogSoftmax")
def LogSoftmax(logits):
    """LogSoftmax: logits - log(sum(exp(logits))) over the last axis, shifted by the max."""
    if logits.ndim < 1:
        raise ValueError("LogSoftmax expects a tensor of rank >= 1, got a scalar")
    if logits.shape[-1] == 0:
        return logits.copy()
    x = logits.astype(np.float32) if low_precision(logits.dtype) else logits
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        shifted = np.subtract(x, x.max(axis=-1, keepdims=True))
        lse = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        shifted -= lse
    return shifted.astype(logits.dtype, copy=False)


# --- top-k ---------------------------------------------------------------------------------

def _top_k(x, k, index_type):
    if x.ndim < 1:
        raise ValueError("TopK expects a tensor of rank >= 1, got a scalar")
    k = int(k)
    n = x.shape[-1]
    if not 0 <= k <= n:
        raise ValueError(f"TopK: k = {k} is not in [0, {n}] (the last dimension)")
    xs = x.astype(np.float32) if low_precision(x.dtype) else x
    # a stable ascending sort of the reversed row, reversed again: descending, and equal values
    # keep TF's order (lower index first)
    order = np.argsort(xs[..., ::-1], axis=-1, kind="stable")[..., ::-1][..., :k]
    idx = (n - 1) - order
    values = np.take_along_axis(x, idx, axis=-1)
    return values, idx.astype(np_dtype(index_type))


@op("TopKV2")
def TopKV2(input, k, *, sorted=True, index_type="int32"):
    """TopKV2: the k largest values along the last axis and their indices.

    Ties go to the lower index, as TF. The result is always sorted (TF leaves the order
    unspecified when sorted=False); NaN counts as the largest value.
    """
    return _top_k(input, k, index_type)


def _in_top_k(predictions, targets, k):
    if predictions.ndim != 2 or targets.ndim != 1 or targets.shape[0] != predictions.shape[0]:
        raise ValueError(f"InTopK expects predictions [batch, classes] and targets [batch], got "
                         f"{predictions.shape} and {targets.shape}")
    n, c = predictions.shape
    valid = (targets >= 0) & (targets < c)
    p = predictions.astype(np.float32) if low_precision(predictions.dtype) else predictions
    target_p = p[np.arange(n), np.where(valid, targets, 0)]
    # a target is in the top k when fewer than k classes have a strictly larger prediction
    larger = np.count_nonzero(p > target_p[:, None], axis=1)
    return valid & np.isfinite(p).all(axis=1) & (larger < int(k))


@op("InTopKV2")
def InTopKV2(predictions, targets, k):
    """InTopKV2: whether each target class is among the k largest predictions (ties count in).

    Targets out of range, and every target of a row holding a non-finite prediction, are not.
    """
    return _in_top_k(predictions, targets, k)


@op("InTopK")
def InTopK(predictions, targets, *, k):
    """InTopK: InTopKV2 with k as an attribute."""
    return _in_top_k(predictions, targets, k)
