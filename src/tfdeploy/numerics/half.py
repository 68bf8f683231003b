"""float16 conversions, bit-exact with numpy's and faster on the arrays a model passes on.

numpy converts float32 to float16 and back one value at a time (~3 and ~2 ns a value here,
more than a float32 matrix product of a Dense layer's width spends on it). A float16 layer
computed in float32 pays both on every value it passes on (``_HalfStack``,
``kernels/nn/fused.py``), so:

- :func:`float16_to_float32` reads a 256 KB table of every float16's float32 value
  (``take``, ~3x faster than ``astype``);
- :func:`round_to_float16` rounds float32 values to the nearest float16 (ties to even, as
  ``astype(np.float16)``), keeping them float32: ``(y + C) - C`` with ``C`` 1.5 times the power
  of two whose float32 ulp is y's float16 ulp (the float16 subnormal step 2**-24 below 2**-14),
  then y's sign (zeros and values rounding to zero keep it); values rounding to 65536 or more
  become infinities. Seven passes of cheap ufuncs, ~3.5x faster than the two ``astype``. Checked
  against ``astype`` on all 2**32 float32 values (``tests/test_half.py`` checks a sample and
  every boundary).
"""

from __future__ import annotations

import numpy as np

_EXPONENT = np.uint32(0x7F800000)
#: the float32 exponent bits of 2**-14 (float16's smallest normal) and of 2**15 (its last binade)
_SMALLEST, _LARGEST = np.uint32(0x38800000), np.uint32(0x47000000)
#: 13 binades up (float32 keeps 13 more mantissa bits than float16) and a mantissa of 1.5
_SHIFT = np.uint32((13 << 23) | 0x400000)
_OVERFLOW = np.float32(65536.0)
_TABLE: list = []


def float16_to_float32(h: np.ndarray) -> np.ndarray:
    """``h.astype(np.float32)`` of a float16 array, as a new array."""
    if not _TABLE:
        _TABLE.append(np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
                      .view(np.float16).astype(np.float32))
    return _TABLE[0].take(h.view(np.uint16))


def round_to_float16(y: np.ndarray) -> np.ndarray:
    """``y.astype(np.float16).astype(np.float32)`` of a float32 array, as a new array (NaNs
    stay NaNs, their payloads may differ)."""
    c = np.bitwise_and(y.view(np.uint32), _EXPONENT)
    np.maximum(c, _SMALLEST, out=c)
    if c.size and np.maximum.reduce(c, axis=None) >= _LARGEST:
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
