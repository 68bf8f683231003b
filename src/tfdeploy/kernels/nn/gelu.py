"""GELU's erfc form on float32, ``0.5 y erfc(-y / sqrt 2)``, within one ulp of the exact value.

``gelu_erfc_(y)`` computes ``y Phi(y)`` in float64 and rounds once to float32, where Phi is the
normal distribution function ``0.5 erfc(-y / sqrt 2)``, read from a table: [-15, 6) cut into
intervals of 1/256, on each a cubic in the position u in [0, 1) within the interval that
interpolates Phi at four Chebyshev nodes. Its relative error is below 3e-9 for y >= -13 (below
1e-10 for |y| < 6; float32 results are subnormal under -13.1, where relative accuracy matters
less), so the result is the correctly rounded one except where the exact value lies that close
to a rounding midpoint, and then one ulp away: checked on all 2**32 float32 inputs against
scipy's float64 erfc (``tests/test_fusion_transformer.py`` pins the edges). Below -15 GELU
rounds to -0 in float32 (row 0 of the table is 0), and from 6 up to y itself (the last row is
1: y Phi(-y) < 1e-9 y, under half an ulp), so every value takes the same 16 numpy passes, inf,
-inf (NaN, as the unfused ops' -inf * 0) and NaN included, and its result depends on it alone.

The table (5378 rows of 4 float64, 172 KB, built from ``math.erfc`` on first use) stays in L2; a
value's row is gathered with ``np.take`` and the cubic runs by Horner's rule. The float64 erfc
formula it replaces (``t exp(P(t) - y^2 / 2)``, P of degree 8, and the full range apart) took
30 passes: one thread, 2048 values (a transformer block's feed-forward layer at batch 1) 22 ->
17 us, 16 K 125 -> 89, 64 K 510 -> 355. The block's temporaries are per-thread buffers: 16 K
float64 values are 128 KB, the C allocator's threshold for returning memory to the system, and
fresh temporaries of that size page-faulted on every call (240 against 71 us per block in a
microbenchmark).
"""

from __future__ import annotations

import functools
import math
import threading

import numpy as np

#: the table covers [_LOW, _HIGH) in intervals of 1 / _STEPS (a power of two: the position
#: x * _STEPS + _OFFSET is exact). Below _LOW, GELU rounds to -0.0 in float32 (it is -9e-47 at
#: -14.5); from _HIGH up it rounds to y itself (y Phi(-y) < 1e-9 y, below half an ulp)
_LOW, _HIGH = -15, 6
_STEPS = 256
_INTERVALS = (_HIGH - _LOW) * _STEPS
_DEGREE = 3
#: values per block: the block's float64 temporaries (~1.1 MB) stay in L2
_BLOCK = 16384
_SCALE = np.array(float(_STEPS))
#: row 0 of the table is 0 (below _LOW), rows 1.._INTERVALS the intervals, the last 1 (from
#: _HIGH up): values outside the table land on an edge row, their index clipped (+inf by
#: ``_TOP``: its position would be NaN, inf - inf)
_OFFSET = np.array(1.0 - _LOW * _STEPS)
_TOP = np.array(_INTERVALS + 1.5)


@functools.cache
def _table() -> np.ndarray:
    """[_INTERVALS + 2, _DEGREE + 1]: row k holds the cubic's coefficients (u^0 first) on
    interval k - 1, [_LOW + (k - 1) h, _LOW + k h), h = 1 / _STEPS, interpolating Phi at four
    Chebyshev nodes; row 0 is 0 and the last row 1 (``_OFFSET``)."""
    h = 1.0 / _STEPS
    k = np.arange(_DEGREE + 1)
    nodes = 0.5 - 0.5 * np.cos((2 * k + 1) * np.pi / (2 * (_DEGREE + 1)))  # in [0, 1]
    inverse = np.linalg.inv(np.vander(nodes, _DEGREE + 1, increasing=True))
    left = _LOW + np.arange(_INTERVALS) * h
    points = (left[:, None] + nodes[None, :] * h).ravel()
    phi = np.array([0.5 * math.erfc(-p / math.sqrt(2)) for p in points.tolist()])
    table = np.zeros((_INTERVALS + 2, _DEGREE + 1))
    table[1:-1] = phi.reshape(-1, _DEGREE + 1) @ inverse.T
    table[-1, 0] = 1.0
    table.setflags(write=False)
    return table


_local = threading.local()


def _buffers(n: int) -> tuple:
    """This thread's temporaries for a block of ``n`` <= _BLOCK values: x, t, r (float64), i
    (intp) and c ([n, _DEGREE + 1]), views of one set of _BLOCK-sized buffers (the views of a
    few recent sizes are kept: slicing five arrays costs a microsecond)."""
    views = getattr(_local, "views", None)
    if views is None:
        views = _local.views = {}
        _local.base = (np.empty(_BLOCK), np.empty(_BLOCK), np.empty(_BLOCK),
                       np.empty(_BLOCK, np.intp), np.empty((_BLOCK, _DEGREE + 1)))
    b = views.get(n)
    if b is None:
        if len(views) >= 8:
            views.clear()
        b = views[n] = tuple(a[:n] for a in _local.base)
    return b


def gelu_erfc_(y: np.ndarray) -> np.ndarray:
    """GELU's erfc form of a C-contiguous float32 array, in place (see the module docstring).
    +inf gives inf, -inf NaN (-inf * erfc(inf) = -inf * 0), as the unfused ops do."""
    flat = y.reshape(-1)
    if not flat.size:
        return y
    table = _table()
    with np.errstate(all="ignore"):
        for i in range(0, flat.size, _BLOCK):
            _block(flat[i:i + _BLOCK], table)
    return y


def _block(y: np.ndarray, table: np.ndarray) -> None:
    x, t, r, i, c = _buffers(y.size)
    np.copyto(x, y)
    np.multiply(x, _SCALE, out=t)
    t += _OFFSET
    np.minimum(t, _TOP, out=t)  # (NaN stays NaN: its index is clipped to row 0, 0 * NaN)
    np.floor(t, out=r)
    t -= r  # the position within the interval
    np.copyto(i, r, casting="unsafe")
    np.take(table, i, axis=0, out=c, mode="clip")
    np.multiply(c[:, _DEGREE], t, out=r)
    r += c[:, _DEGREE - 1]
    for k in range(_DEGREE - 2, -1, -1):
        r *= t
        r += c[:, k]
    r *= x
    np.copyto(y, r, casting="same_kind")
