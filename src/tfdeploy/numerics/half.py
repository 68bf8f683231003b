"""float16 conversions, bit-exact with numpy's and faster on the arrays a model passes on.

numpy converts float32 to float16 and back one value at a time (~3 and ~2 ns a value here,
more than a float32 matrix product of a Dense layer's width spends on it). A float16 layer
computed in float32 pays both on every value it passes on (``_HalfStack``,
``kernels/nn/fused.py``), so:

- :func:`float16_to_float32` reads a 256 KB table of every float16's float32 value
  (``take``, ~3x faster than ``astype``);
- :func:`round_to_float16` rounds float32 values to the nearest float16 (ties to even, as
  ``astype(np.float16)``), keeping them float32, by Veltkamp's splitting of ``|y|`` at 11 bits:
  ``c = 8193 * max(|y|, 1.5 * 2**-14)``, ``r = c - (c - |y|)``, then y's sign. Rounding to
  nearest even, the split is ``|y|`` rounded to nearest even on 11 bits; the floor puts the
  values below it on the 2**-24 grid of float16's subnormals (and of its first binade) instead:
  ``c`` is then ``8193 * 1.5 * 2**-14``, about 0.75, whose float32 ulp is 2**-24. Seven passes
  of cheap ufuncs and one reduction, ~1.3x faster than the exponent-bits rounding below and
  ~2.5x faster than the two ``astype``. Arrays with a value above 65504 (the largest float16),
  an infinity or a NaN (the reduction sees them) take the exponent-bits rounding instead:
  ``(y + C) - C`` with ``C`` 1.5 times the power of two whose float32 ulp is y's float16 ulp.
  Both were checked against ``astype`` on all 2**32 float32 values (``tests/test_half.py``
  checks every float16 boundary and tie on each path and a sample);
- :func:`float16_values_to_float16` converts float32 arrays that already hold float16 values
  (a float16 region's, ``_HalfCopy``) by integer arithmetic on their bits, ~2.4x faster than
  ``astype``.

Each pass is a numpy call of ~0.6 us, so on small arrays ``astype`` itself is faster: a batch-1
transformer layer's 1024 values round in 4.6 us by ``astype`` (under ``np.errstate``) against
6.0 by the split, and convert in 2.2 against 9.8 by bits. Up to ``ROUND_BY_ASTYPE`` and
``CONVERT_BY_ASTYPE`` values (the break-evens measured here, ~1700 and ~12 K) both functions
call ``astype``.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.numerics import clip, quiet

_EXPONENT = np.uint32(0x7F800000)
#: the float32 exponent bits of 2**-14 (float16's smallest normal) and of 2**15 (its last binade)
_SMALLEST, _LARGEST = np.uint32(0x38800000), np.uint32(0x47000000)
#: 13 binades up (float32 keeps 13 more mantissa bits than float16) and a mantissa of 1.5
_SHIFT = np.uint32((13 << 23) | 0x400000)
_OVERFLOW = np.float32(65536.0)
_TABLE: list = []
#: arrays of at most this many values round (``round_to_float16``) and convert
#: (``float16_values_to_float16``) by ``astype``: fewer numpy calls (see the module docstring)
ROUND_BY_ASTYPE = 1536
CONVERT_BY_ASTYPE = 8192


def float16_to_float32(h: np.ndarray) -> np.ndarray:
    """``h.astype(np.float32)`` of a float16 array, as a new array."""
    if not _TABLE:
        _TABLE.append(np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
                      .view(np.float16).astype(np.float32))
    return _TABLE[0].take(h.view(np.uint16))


#: Veltkamp's splitting constant for 11 of float32's 24 bits (2**13 + 1), and the floor of
#: ``|y|`` below which values round on the 2**-24 grid of float16's subnormals
_SPLIT, _FLOOR = np.float32(8193.0), np.full((), 1.5 * 2.0 ** -14, np.float32)
#: the floor is applied by ``clip`` up to infinity: numpy's maximum with a scalar does not
#: vectorise (0.37 against 0.11 ns a value here); on the values it sees, |y| or a ReLU's
#: result, the two are the same
_INF = np.full((), np.inf, np.float32)
_LARGEST_HALF = np.float32(65504.0)
_MAGNITUDE, _SIGN = np.uint32(0x7FFFFFFF), np.uint32(0x80000000)


def round_to_float16(y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``y.astype(np.float16).astype(np.float32)`` of a float32 array, as a new array or in
    ``out`` (which may be ``y``; a float32 array of its shape). NaNs stay NaNs, their payloads
    may differ."""
    if not y.size:
        return np.empty(y.shape, np.float32) if out is None else out
    if y.size <= ROUND_BY_ASTYPE:
        with quiet():  # (overflow: inf, as the rounding)
            h = y.astype(np.float16)
        if out is None:
            return h.astype(np.float32)
        np.copyto(out, h)
        return out
    bits = y.view(np.uint32)
    a = np.bitwise_and(bits, _MAGNITUDE).view(np.float32)     # (numpy's abs and copysign
    if not np.maximum.reduce(a, axis=None) <= _LARGEST_HALF:  # are slower than bit masks)
        r = _by_exponent(y)                                   # (a NaN fails it too)
        if out is None:
            return r
        out[...] = r
        return out
    sign = np.bitwise_and(bits, _SIGN) if out is not None else None  # (out may be y)
    c = clip(a, _FLOOR, _INF, out=out)
    np.multiply(c, _SPLIT, out=c)
    np.subtract(c, a, out=a)
    np.subtract(c, a, out=c)
    if sign is None:
        sign = np.bitwise_and(bits, _SIGN, out=a.view(np.uint32))
    np.bitwise_or(c.view(np.uint32), sign, out=c.view(np.uint32))
    return c


#: the exponent bias between float32 and float16 (112, in place after the shift), and 0.5
#: as a float32 and as its bits
_REBIAS = np.int32(112 << 10)
_ONE_HALF, _HALF_BITS = np.full((), 0.5, np.float32), np.uint32(0x3F000000)
_ZERO_BITS, _LAST_SUBNORMAL, _SIGN16 = np.uint32(0), np.uint32(0x3FF), np.uint32(0x8000)


def float16_values_to_float16(y: np.ndarray) -> np.ndarray:
    """``y.astype(np.float16)`` of a float32 array whose finite values are float16 values
    (a float16 region's values: ``round_to_float16``'s results), as a new array, by integer
    arithmetic on the bits: 2.4 -> 1.0 ns a value here (numpy converts a value at a time).

    A normal float16 is the float32's bits shifted down 13 with the exponent rebiased; a
    subnormal one (k * 2**-24, k < 1024) is k = bits(|y| + 0.5) - bits(0.5), the sum exact;
    the larger of the two (the first is negative below 2**-14, the second at most 1023 once
    capped) is the float16's magnitude. An array holding an infinity or a NaN goes by
    ``astype``."""
    if y.dtype != np.float32:
        raise TypeError(f"expected a float32 array, got {y.dtype}")
    if y.size <= CONVERT_BY_ASTYPE:
        return y.astype(np.float16)
    bits = np.ascontiguousarray(y).view(np.uint32)
    a = np.bitwise_and(bits, _MAGNITUDE)
    if not a.size or not np.maximum.reduce(a.view(np.float32), axis=None) <= _LARGEST_HALF:
        return y.astype(np.float16)
    sub = np.add(a.view(np.float32), _ONE_HALF).view(np.uint32)
    np.subtract(sub, _HALF_BITS, out=sub)
    clip(sub, _ZERO_BITS, _LAST_SUBNORMAL, out=sub)  # (np.minimum with a scalar: 3x slower)
    np.right_shift(a, 13, out=a)
    normal = a.view(np.int32)
    np.subtract(normal, _REBIAS, out=normal)  # (negative below 2**-14)
    np.maximum(normal, sub.view(np.int32), out=normal)
    np.right_shift(bits, 16, out=sub)
    np.bitwise_and(sub, _SIGN16, out=sub)
    np.bitwise_or(a, sub, out=a)
    return a.astype(np.uint16).view(np.float16).reshape(y.shape)


def round_small_positives_to_float16(y: np.ndarray) -> np.ndarray:
    """:func:`round_to_float16` of a float32 array of values in [0, 65504] (a ReLU's
    result), in place: Veltkamp's split of y itself, four passes (-0 comes out +0)."""
    c = clip(y, _FLOOR, _INF)
    np.multiply(c, _SPLIT, out=c)
    np.subtract(c, y, out=y)
    return np.subtract(c, y, out=y)


def _by_exponent(y: np.ndarray) -> np.ndarray:
    """:func:`round_to_float16` for any values: overflows become infinities."""
    c = np.bitwise_and(y.view(np.uint32), _EXPONENT)
    np.maximum(c, _SMALLEST, out=c)
    if np.maximum.reduce(c, axis=None) >= _LARGEST:
        # values from 2**15 up, infinities and NaNs (a signalling NaN would warn in the add)
        np.minimum(c, _LARGEST, out=c)
        with np.errstate(invalid="ignore"):
            r = _round(y, c)
            r[np.abs(r) >= _OVERFLOW] = np.inf
    else:
        r = _round(y, c)
    return np.copysign(r, y, out=r)


def _round(y: np.ndarray, c: np.ndarray) -> np.ndarray:
    np.add(c, _SHIFT, out=c)
    step = c.view(np.float32)
    r = np.add(y, step)
    return np.subtract(r, step, out=r)
