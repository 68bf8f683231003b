"""GELU's erfc form on float32, ``0.5 y erfc(-y / sqrt 2)``, within one ulp of the exact value.

``gelu_erfc_(y)`` is ``y Phi(y)``, Phi the normal distribution function
``0.5 erfc(-y / sqrt 2)``, computed in float32 from a table of quadratics: Phi on [-15, 6) in
intervals of 1/1024, on each a quadratic in the position u in [0, 1) within the interval that
interpolates Phi at three Chebyshev nodes (relative error below 1.1e-8 down to -13, 2e-8 at -15),
its constant term split in two float32 numbers (``hi + lo``, 48 bits). Per value:

- ``s = 1024 y`` (exact), clipped to the table (an edge row for values outside, infinities
  too), its floor the interval and ``u = s - floor(s)`` (exact);
- one ``take`` of the interval's row (hi, lo, c1, c2: 16 bytes, one of numpy's fast sizes);
- ``P = hi + (lo + u (c1 + u c2))``: the small terms first, one rounding of Phi at the end;
- ``y P`` (a second rounding), times 2**-8.

The table holds Phi times 2**8 so that P stays a normal float32 number down to -15 (Phi(-13)
is 6e-39, below float32's smallest normal): results that are subnormal (y below -13.1) round
once, from an accurate product, by the scaling. The product overflows only for y from 2**120
(P is 2**8 there, where GELU is y itself): an array holding such a value, an infinity or a NaN
(one reduction sees them) takes the smaller of the result and ``|y|``, which is y there and
leaves every other value as it is. From 6 up P is exactly 2**8 (y Phi(-y) < 1e-9 y: under half
an ulp), and below -15 it is 0 (GELU rounds to -0 there: -9e-47 at -14.5): every value takes the
same numpy passes, inf, -inf (NaN, as the unfused ops' -inf * 0) and NaN included, so a value's
result depends on it alone.

Two roundings instead of one: about a quarter of the results are one ulp from the correctly
rounded value (TF's own GELU is up to 3 ulps away for |y| < 1 and hundreds in the left tail),
none further: checked on all 2**32 float32 inputs against scipy's float64 ``ndtr``
(``tests/test_fusion_transformer.py`` pins samples and the edges).

Cost, one thread, against the float64 table of cubics it replaces (``numerics/cubic.py``, one
rounding, 16 passes over float64 buffers; ``erf_gamma.Erfc`` still reads it): 2048 values
(a transformer block's feed-forward layer at batch 1) 14.8 -> 11 us, 16 K 69 -> 45, 66 K
270 -> 171: float32 passes, and four coefficients gathered in one 16-byte row instead of 32.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from tfdeploy.numerics import clip

_STEPS, _LOW, _HIGH = 1024, -15, 6
_SCALE_EXP = 8
#: values per block: the block's temporaries (s, t: float32; the index: intp; the rows: 16
#: bytes a value; ~512 KB) stay in L2. A remainder of fewer than BLOCK / 4 values joins the
#: last block instead of making one of its own (its ~15 numpy calls cost ~7 us whatever its size)
BLOCK = 16384
_LONGEST = BLOCK + BLOCK // 4
_F32 = np.float32
#: s is clipped to [low - 1/2, high + 1/2] (in units of 1/1024): the floors low - 1 and high
#: are the rows below and above the table; the offset makes the first row 0
_S_LOW, _S_HIGH = np.array(_LOW * _STEPS - 0.5, _F32), np.array(_HIGH * _STEPS + 0.5, _F32)
_OFFSET = np.array(1 - _LOW * _STEPS, _F32)
_STEP, _UNSCALE = np.array(_STEPS, _F32), np.array(2.0 ** -_SCALE_EXP, _F32)
#: from here up y P may overflow (P = 2**8 there)
_OVERFLOW = np.float32(2.0 ** (128 - _SCALE_EXP - 1))
_MAGNITUDE = np.uint32(0x7FFFFFFF)
_table: list = []
_local = threading.local()


def _phi(p: float) -> float:
    return 0.5 * math.erfc(-p / math.sqrt(2))


def table() -> np.ndarray:
    """[intervals + 2, 4] float32: row k holds (hi, lo, c1, c2) of 2**8 Phi on interval
    k - 1, [low + (k - 1) h, low + k h), h = 1/1024, as ``hi + lo + c1 u + c2 u^2``; row 0 is
    0 (below), the last 2**8 (above). Built on first use (~20 ms; two threads may both build
    it: the same values)."""
    if _table:
        return _table[0]
    n, h = (_HIGH - _LOW) * _STEPS, 1.0 / _STEPS
    k = np.arange(3)
    nodes = 0.5 - 0.5 * np.cos((2 * k + 1) * np.pi / 6)  # Chebyshev nodes in [0, 1]
    inverse = np.linalg.inv(np.vander(nodes, 3, increasing=True))
    left = _LOW + np.arange(n) * h
    points = (left[:, None] + nodes[None, :] * h).ravel().tolist()
    values = np.array([_phi(p) for p in points]).reshape(n, 3) * 2.0 ** _SCALE_EXP
    coef = values @ inverse.T  # [n, 3]: u^0 first
    rows = np.zeros((n + 2, 4), _F32)
    hi = coef[:, 0].astype(_F32)
    rows[1:-1, 0] = hi
    rows[1:-1, 1] = coef[:, 0] - hi
    rows[1:-1, 2:] = coef[:, 1:]
    rows[-1, 0] = 2.0 ** _SCALE_EXP
    rows.setflags(write=False)
    _table.append(rows)
    return rows


def _buffers(n: int) -> tuple:
    """This thread's temporaries for a block of ``n`` < _LONGEST values: s, t (float32), the
    index (intp) and the rows ([n, 4] float32), views of one set of buffers (the views of a
    few recent sizes are kept)."""
    views = getattr(_local, "views", None)
    if views is None:
        views = _local.views = {}
        _local.base = (np.empty(_LONGEST, _F32), np.empty(_LONGEST, _F32),
                       np.empty(_LONGEST, np.intp), np.empty((_LONGEST, 4), _F32))
    b = views.get(n)
    if b is None:
        if len(views) >= 8:
            views.clear()
        b = views[n] = tuple(a[:n] for a in _local.base)
    return b


def _block(y: np.ndarray, out: np.ndarray, rows: np.ndarray, bounded: bool) -> None:
    """``out`` (may be ``y``) = GELU of the float32 block ``y`` (see the module docstring)."""
    s, t, i, c = _buffers(y.size)
    np.multiply(y, _STEP, out=s)
    clip(s, _S_LOW, _S_HIGH, out=s)
    np.floor(s, out=t)
    np.subtract(s, t, out=s)  # u, exact
    t += _OFFSET
    np.copyto(i, t, casting="unsafe")
    rows.take(i, 0, c, "clip")  # (a NaN's index, whatever the cast made of it: row 0)
    np.multiply(c[:, 3], s, out=t)
    t += c[:, 2]
    t *= s
    t += c[:, 1]
    t += c[:, 0]  # 2**8 Phi(y), rounded once
    t *= y
    if bounded:
        np.multiply(t, _UNSCALE, out=out)
    else:  # y P overflowed where GELU is y: the smaller of it and |y| (-0 stays -0)
        t *= _UNSCALE
        np.bitwise_and(y.view(np.uint32), _MAGNITUDE, out=s.view(np.uint32))
        np.minimum(s, t, out=out)


def gelu_erfc_(y: np.ndarray) -> np.ndarray:
    """GELU's erfc form of a C-contiguous float32 array, in place (see the module docstring).
    +inf gives inf, -inf NaN (-inf * erfc(inf) = -inf * 0), as the unfused ops do."""
    flat = y.reshape(-1)
    n = flat.size
    if not n:
        return y
    rows = _table[0] if _table else table()
    if n < _LONGEST and np.maximum.reduce(flat) < _OVERFLOW:
        _block(flat, flat, rows, True)  # (no floating-point exception to silence here)
        return y
    starts = list(range(0, n, BLOCK))
    if len(starts) > 1 and n - starts[-1] < BLOCK // 4:
        starts.pop()  # (the remainder joins the last block)
    with np.errstate(all="ignore"):
        bounded = bool(np.maximum.reduce(flat) < _OVERFLOW)  # (False with a NaN)
        for k, e in zip(starts, starts[1:] + [n]):
            b = flat[k:e]
            _block(b, b, rows, bounded)
    return y
