"""Quantization kernels: FakeQuant*, QuantizeV2/Dequantize, QuantizeAndDequantizeV2/V3/V4.

Quantized dtypes (qint8, quint8, ...) are held as their underlying integer arrays. Scale
computations follow TF's float32 (or T) arithmetic step by step.

QuantizeV2/Dequantize follow TF's reference kernels (the documented formulas). TF builds with
oneDNN (the x86 default) rewrite some of them to _MklQuantizeV2/_MklDequantize, which round
differently: quint8 MIN_FIRST, and qint8 SCALED with HALF_TO_EVEN and narrow_range=False.
"""

from __future__ import annotations

import math

import numpy as np

from tfdeploy.kernels.common import np_dtype, op, round_half_away

_F32 = np.float32


# -- FakeQuant ------------------------------------------------------------------------------

def _quant_range(num_bits: int, narrow_range: bool) -> tuple[int, int]:
    if not 2 <= num_bits <= 16:
        raise ValueError(f"num_bits must be between 2 and 16, inclusive, got {num_bits}")
    return (1 if narrow_range else 0), (1 << num_bits) - 1


def _nudge(qmin: int, qmax: int, lo, hi):
    """TF's Nudge (vectorised over channels): float32 nudged min, max, scale, inverse scale."""
    lo, hi = np.asarray(lo, _F32), np.asarray(hi, _F32)
    qminf, qmaxf = _F32(qmin), _F32(qmax)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = (hi - lo) / (qmaxf - qminf)
        inv_scale = (qmaxf - qminf) / (hi - lo)
        zp_from_min = qminf - lo / scale
    zp = np.where(zp_from_min < qminf, qminf,
                  np.where(zp_from_min > qmaxf, qmaxf, round_half_away(zp_from_min)))
    zp = np.nan_to_num(zp).astype(np.uint16).astype(_F32)
    return (qminf - zp) * scale, (qmaxf - zp) * scale, scale, inv_scale


def _fake_quant(x, lo, hi, num_bits, narrow_range, divide):
    qmin, qmax = _quant_range(num_bits, narrow_range)
    nmin, nmax, scale, inv = _nudge(qmin, qmax, lo, hi)
    with np.errstate(invalid="ignore", over="ignore"):
        quant_zero = np.floor(-nmin * inv + _F32(0.5))
        shifted = np.maximum(np.minimum(x, nmax), nmin) - nmin
        steps = shifted / scale if divide else shifted * inv
        out = np.floor(steps - quant_zero + _F32(0.5)) * scale
    zero = (np.asarray(lo) == 0) & (np.asarray(hi) == 0)
    return np.where(zero, _F32(0), out).astype(_F32)


@op("FakeQuantWithMinMaxArgs")
def FakeQuantWithMinMaxArgs(inputs, *, min=-6.0, max=6.0, num_bits=8, narrow_range=False):
    """FakeQuantWithMinMaxArgs: quantize to num_bits in the nudged [min, max] range and back."""
    if not min < max:
        raise ValueError(f"min has to be smaller than max, got min={min}, max={max}")
    return _fake_quant(inputs.astype(_F32, copy=False), _F32(min), _F32(max), num_bits,
                       narrow_range, divide=False)


@op("FakeQuantWithMinMaxVars")
def FakeQuantWithMinMaxVars(inputs, min, max, *, num_bits=8, narrow_range=False):
    """FakeQuantWithMinMaxVars: FakeQuantWithMinMaxArgs with min and max as scalar inputs
    (both zero: output 0)."""
    if np.ndim(min) != 0 or np.ndim(max) != 0:
        raise ValueError("min and max must be scalars")
    return _fake_quant(inputs.astype(_F32, copy=False), min, max, num_bits, narrow_range,
                       divide=True)


@op("FakeQuantWithMinMaxVarsPerChannel")
def FakeQuantWithMinMaxVarsPerChannel(inputs, min, max, *, num_bits=8, narrow_range=False):
    """FakeQuantWithMinMaxVarsPerChannel: FakeQuantWithMinMaxVars with a min and max per
    channel of the last dimension."""
    if inputs.ndim < 1 or np.shape(min) != inputs.shape[-1:] or np.shape(max) != np.shape(min):
        raise ValueError(f"min and max must be vectors matching the last dimension of inputs "
                         f"{inputs.shape}, got {np.shape(min)} and {np.shape(max)}")
    return _fake_quant(inputs.astype(_F32, copy=False), min, max, num_bits, narrow_range,
                       divide=False)


# -- QuantizeV2 / Dequantize ----------------------------------------------------------------

_MODES = ("MIN_COMBINED", "MIN_FIRST", "SCALED")


def _limits(t: np.dtype) -> tuple[int, int]:
    info = np.iinfo(t)
    return int(info.min), int(info.max)


def _slices(x: np.ndarray, lo, hi, axis: int):
    """x as [pre, n, post] with per-slice ranges shaped to broadcast, for axis -1 or not."""
    lo = np.asarray(lo, _F32)
    hi = np.asarray(hi, _F32)
    if axis == -1:
        return x.reshape(1, 1, -1), lo.reshape(-1)[:1].reshape(1, 1, 1), \
            hi.reshape(-1)[:1].reshape(1, 1, 1)
    if not 0 <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of range for a tensor of rank {x.ndim}")
    n = x.shape[axis]
    if lo.shape != (n,) or hi.shape != (n,):
        raise ValueError(f"min_range and max_range must have shape [{n}] for axis {axis}, got "
                         f"{lo.shape} and {hi.shape}")
    return _around(x, axis), lo.reshape(1, n, 1), hi.reshape(1, n, 1)


def _around(x: np.ndarray, axis: int) -> np.ndarray:
    """x as [before axis, axis, after it]: the sizes spelled out (numpy cannot infer a -1
    beside a 0 of an empty input)."""
    return x.reshape(math.prod(x.shape[:axis]), x.shape[axis], math.prod(x.shape[axis + 1:]))


def _scaled_factor(t: np.dtype, narrow_range: bool, lo, hi):
    tmin, tmax = _limits(t)
    min_out = _F32(tmin + (1 if narrow_range else 0))
    max_out = _F32(tmax)
    big = np.finfo(_F32).max
    with np.errstate(divide="ignore", invalid="ignore"):
        from_min = np.where(min_out * lo > 0, min_out / lo, big).astype(_F32)
        from_max = np.where(max_out * hi > 0, max_out / hi, big).astype(_F32)
    scale = np.minimum(from_min, from_max)
    return scale, min_out, max_out


@op("QuantizeV2")
def QuantizeV2(input, min_range, max_range, *, T="quint8", mode="MIN_COMBINED",
               round_mode="HALF_AWAY_FROM_ZERO", narrow_range=False, axis=-1,
               ensure_minimum_range=0.01):
    """QuantizeV2: float to a quantized integer type (MIN_COMBINED, MIN_FIRST or SCALED), with
    the range actually used."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if round_mode not in ("HALF_AWAY_FROM_ZERO", "HALF_TO_EVEN"):
        raise ValueError(f"unknown round_mode {round_mode!r}")
    if round_mode == "HALF_TO_EVEN" and mode != "SCALED":
        raise ValueError("round mode HALF_TO_EVEN is only supported for mode SCALED")
    if mode == "MIN_FIRST" and axis != -1:
        raise ValueError("MIN_FIRST mode is not implemented for QuantizeV2 with axis != -1")
    t = np_dtype(T)
    x = input.astype(_F32, copy=False)
    xs, ilo, ihi = _slices(x, min_range, max_range, axis)
    if np.any(ihi < ilo):
        raise ValueError("input_max_range must be larger than input_min_range")
    lo = np.minimum(_F32(0), ilo)
    eps = np.maximum(_F32(1), np.maximum(np.abs(ilo), np.abs(ihi))) * _F32(ensure_minimum_range)
    hi = np.maximum(_F32(0), np.maximum(ihi, lo + eps))
    tmin, tmax = _limits(t)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if mode == "MIN_COMBINED":
            scale = (np.float64(tmax) - np.float64(tmin)) / (hi - lo).astype(np.float64)
            scale = scale.astype(_F32)
            clipped = np.maximum(np.minimum(xs, hi), lo) - lo
            if tmin < 0:
                half = _F32((float(tmax) - float(tmin) + 1) / 2.0)
                q = round_half_away(clipped * scale - half)
            else:
                q = np.trunc(clipped * scale + _F32(0.5))
        elif mode == "MIN_FIRST":
            steps = float(1 << (8 * t.itemsize))
            rscale = np.where(hi == lo, 0.0, (steps - 1.0) / (hi - lo).astype(np.float64))
            rscale = rscale.astype(_F32)
            rmin_scaled = round_half_away(lo * rscale)
            q = round_half_away(xs * rscale) - (rmin_scaled - _F32(tmin))
            q = np.clip(q, max(_F32(tmin), _F32(-2.147483648e9)),
                        min(_F32(tmax), _F32(2.147483520e9)))
        else:
            scale, min_out, max_out = _scaled_factor(t, narrow_range, lo, hi)
            lo = (min_out / scale).astype(_F32)
            hi = (max_out / scale).astype(_F32)
            v = np.maximum(np.minimum(xs, hi), lo) * scale
            q = np.rint(v) if round_mode == "HALF_TO_EVEN" else round_half_away(v)
    out = q.astype(np.int64).astype(t).reshape(input.shape)
    if axis == -1:
        return out, np.asarray(lo.reshape(()), _F32), np.asarray(hi.reshape(()), _F32)
    return out, lo.reshape(-1).astype(_F32), hi.reshape(-1).astype(_F32)


@op("Dequantize")
def Dequantize(input, min_range, max_range, *, T="quint8", mode="MIN_COMBINED",
               narrow_range=False, axis=-1, dtype="float32"):
    """Dequantize: quantized integers back to float32 (or bfloat16) for the given range."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if mode == "MIN_FIRST" and axis != -1:
        raise ValueError("MIN_FIRST mode is not implemented for Dequantize with axis != -1")
    t = np_dtype(T)
    qs, lo, hi = _slices(input, min_range, max_range, axis)
    tmin, tmax = _limits(t)
    v = qs.astype(_F32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if mode == "MIN_COMBINED":
            half = _F32(0) if tmin == 0 else (_F32(tmax) - _F32(tmin) + _F32(1)) / _F32(2)
            scale = (hi - lo) / (_F32(tmax) - _F32(tmin))
            out = (v + half) * scale + lo
        elif mode == "MIN_FIRST":
            steps = float(1 << (8 * t.itemsize))
            rscale = ((hi - lo).astype(np.float64) / (steps - 1.0)).astype(_F32)
            rmin = np.where(hi == lo, lo, round_half_away(lo / rscale) * rscale)
            out = (rmin - _F32(tmin) * rscale) + v * rscale
        else:
            min_out = _F32(tmin + (1 if narrow_range else 0))
            if tmin == 0:
                scale = hi / _F32(tmax)
            else:
                scale = np.maximum(lo / min_out, hi / _F32(tmax))
            out = v * scale
    return out.astype(_F32).reshape(input.shape).astype(np_dtype(dtype))


# -- QuantizeAndDequantize ------------------------------------------------------------------

def _qdq(x, input_min, input_max, signed_input, num_bits, range_given, round_mode,
         narrow_range, axis):
    t = x.dtype
    if t.kind != "f":
        raise TypeError(f"QuantizeAndDequantize needs a float input, got {t}")
    if round_mode not in ("HALF_TO_EVEN", "HALF_UP"):
        raise ValueError(f"round_mode must be HALF_TO_EVEN or HALF_UP, got {round_mode!r}")
    if not (0 < num_bits <= (62 if signed_input else 63)) or (signed_input and num_bits < 2):
        raise ValueError(f"num_bits is out of range: {num_bits}")
    if axis == -1:
        xs = x.reshape(1, 1, -1)
        if np.ndim(input_min) != 0 or np.ndim(input_max) != 0:
            raise ValueError("input_min and input_max must be scalars when axis is -1")
    else:
        if not -x.ndim <= axis < x.ndim:
            raise ValueError(f"axis {axis} is out of range for a tensor of rank {x.ndim}")
        axis %= x.ndim
        n = x.shape[axis]
        # (an observed range ignores them, and TF checks their shape only when given)
        if range_given and (np.shape(input_min) != (n,) or np.shape(input_max) != (n,)):
            raise ValueError(f"input_min and input_max must have shape [{n}]")
        xs = _around(x, axis)
    if range_given:
        lo = np.asarray(input_min, t).reshape(1, -1, 1)
        hi = np.asarray(input_max, t).reshape(1, -1, 1)
        if np.any(lo > hi):
            raise ValueError("invalid range: input_min must be <= input_max")
    elif xs.size:
        # (NaN skipped, as TF's vectorised min and max reductions skip it: one NaN leaves the
        # other values quantized, itself NaN)
        lo = np.fmin.reduce(xs, axis=(0, 2), keepdims=True)
        hi = np.fmax.reduce(xs, axis=(0, 2), keepdims=True)
    else:
        return x.copy()
    if signed_input:
        qmin = -(1 << (num_bits - 1)) + (1 if narrow_range else 0)
        qmax = (1 << (num_bits - 1)) - 1
    else:
        qmin, qmax = 0, (1 << num_bits) - 1
    ft = t.type
    big = np.finfo(t).max
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        from_min = np.where(ft(qmin) * lo > 0, ft(qmin) / lo, big).astype(t)
        from_max = np.where(ft(qmax) * hi > 0, ft(qmax) / hi, big).astype(t)
        use_min = from_min < from_max
        scale = np.where(use_min, from_min, from_max)
        inv = np.where(use_min, lo / ft(qmin), hi / ft(qmax)).astype(t)
        lo2 = np.where(use_min, lo, ft(qmin) * inv).astype(t)
        hi2 = np.where(use_min, ft(qmax) * inv, hi).astype(t)
        v = np.maximum(np.minimum(xs, hi2), lo2) if range_given else xs
        v = (v * scale).astype(t)
        r = np.rint(v) if round_mode == "HALF_TO_EVEN" else np.floor(v + ft(0.5))
        out = (r * inv).astype(t)
    return out.reshape(x.shape)


@op("QuantizeAndDequantizeV2", "QuantizeAndDequantizeV4")
def QuantizeAndDequantizeV2(input, input_min, input_max, *, signed_input=True, num_bits=8,
                            range_given=False, round_mode="HALF_TO_EVEN", narrow_range=False,
                            axis=-1):
    """QuantizeAndDequantizeV2/V4: simulate num_bits quantization of the given (or observed)
    range, per tensor or per slice along axis."""
    return _qdq(input, input_min, input_max, signed_input, num_bits, range_given, round_mode,
                narrow_range, axis)


@op("QuantizeAndDequantizeV3")
def QuantizeAndDequantizeV3(input, input_min, input_max, num_bits, *, signed_input=True,
                            range_given=True, narrow_range=False, axis=-1):
    """QuantizeAndDequantizeV3: QuantizeAndDequantizeV2 with num_bits as an input."""
    return _qdq(input, input_min, input_max, signed_input, int(np.asarray(num_bits)),
                range_given, "HALF_TO_EVEN", narrow_range, axis)
