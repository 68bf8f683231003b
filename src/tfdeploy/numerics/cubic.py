"""Functions of float32 arrays from tables of cubics, evaluated in float64, rounded once.

A :class:`CubicTable` holds f on [low, high) cut into intervals of ``1 / steps`` (a power of two),
on each a cubic in the position u in [0, 1) within the interval that interpolates f at four
Chebyshev nodes, and a constant row on either side (f's value, or limit, below ``low`` and from
``high`` up). :func:`apply` computes, block by block, ``f(scale * y)`` in float64 for every value
of a float32 array, hands it to a ``finish(r, x)`` that combines it with ``x`` (y widened) in
place, and rounds the result once into a float32 output: 16 numpy passes a block, whatever the
values (outside the table, inf and NaN included), so each value's result depends on it alone.

For Erfc (``kernels/special/erf_gamma.py``) the table's relative error is a few 1e-9 at most
where the results are normal float32 numbers, so a result is the correctly rounded value
except where the exact one lies that close to a rounding midpoint, and then one ulp away
(checked on all 2**32 float32 inputs when written). GELU and Erf, whose results are products
with y, take float32 tables of quadratics instead (``numerics/quadratic.py``): a second
rounding, in about 60% of the time.

Cost, one thread: 2048 values ~17 us, 16 K ~90 us (numpy's per-call overhead, then its
passes over float64 buffers). The temporaries are per-thread buffers of one block (~1 MB a
thread): fresh 128 KB arrays, at the C allocator's threshold for returning memory to the
system, page-faulted on every call in a microbenchmark.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import numpy as np

from tfdeploy.numerics import blocks, clip, thread_views

#: values per block: the block's float64 temporaries (~1.1 MB) stay in L2. A remainder of
#: fewer than BLOCK / 4 values joins the last block instead of making one of its own (its
#: sixteen numpy calls cost ~8 us whatever its size: a ViT-style model's 2 x 65 x 128 GELU,
#: when it took this table, was a block of 16384 values and one of 256)
BLOCK = 16384
_LONGEST = BLOCK + BLOCK // 4
_DEGREE = 3
_local = threading.local()


class CubicTable:
    """f on [low, high) by cubics on intervals of ``1 / steps``; ``below`` and ``above`` the
    constant values outside. ``f`` maps a Python float to a float (``math.erfc``...); the
    rows are computed on first use (``rows``)."""

    __slots__ = ("f", "low", "high", "steps", "below", "above", "_rows", "_args")

    def __init__(self, f: Callable[[float], float], low: int, high: int, steps: int,
                 below: float, above: float):
        if steps & (steps - 1) or high <= low:
            raise ValueError("steps must be a power of two and high > low")
        self.f, self.low, self.high, self.steps = f, low, high, steps
        self.below, self.above = below, above
        self._rows = None
        self._args: dict = {}  # scale -> evaluate's constants, as 0-d arrays

    @property
    def intervals(self) -> int:
        return (self.high - self.low) * self.steps

    def rows(self) -> np.ndarray:
        """[intervals + 2, 4]: row k holds the cubic (u^0 first) on interval k - 1,
        [low + (k - 1) h, low + k h), h = 1 / steps; row 0 is ``below``, the last ``above``.
        (Two threads may both build it: the same values.)"""
        rows = self._rows
        if rows is None:
            n, h = self.intervals, 1.0 / self.steps
            k = np.arange(_DEGREE + 1)
            nodes = 0.5 - 0.5 * np.cos((2 * k + 1) * np.pi / (2 * (_DEGREE + 1)))  # in [0, 1]
            inverse = np.linalg.inv(np.vander(nodes, _DEGREE + 1, increasing=True))
            left = self.low + np.arange(n) * h
            points = (left[:, None] + nodes[None, :] * h).ravel().tolist()
            values = np.array([self.f(p) for p in points]).reshape(n, _DEGREE + 1)
            rows = np.zeros((n + 2, _DEGREE + 1))
            rows[1:-1] = values @ inverse.T
            rows[0, 0], rows[-1, 0] = self.below, self.above
            rows.setflags(write=False)
            self._rows = rows
        return rows

    def evaluate(self, x: np.ndarray, scale: float, t, r, i, c) -> np.ndarray:
        """f(scale * x) for float64 ``x`` into ``r``; ``t``, ``i``, ``c``: temporaries of
        x's size (float64, int32, [n, 4] float64). The position ``x * scale * steps`` is
        exact when ``scale`` is a power of two."""
        args = self._args.get(scale)
        if args is None:  # (0-d arrays: numpy takes them faster than Python floats)
            n = self.intervals
            args = self._args[scale] = tuple(np.array(v) for v in (
                scale * self.steps, 1.0 - self.low * self.steps, -0.5, n + 1.5))
        mul, offset, lo, hi = args
        np.multiply(x, mul, out=t)
        t += offset
        # an edge row for values outside (+-inf too: their position would be NaN, inf - inf);
        # NaN stays NaN: its index is clipped to row 0, and 0 * NaN is NaN
        clip(t, lo, hi, out=t)
        np.floor(t, out=r)
        t -= r  # the position within the interval
        # (an int32 index: numpy casts to it with SIMD, to intp one value at a time, and take
        # widens it faster: 16 K values, cast and take 26.9 against 30.6 us)
        np.copyto(i, r, casting="unsafe")
        # (the method: numpy's np.take wrapper costs a microsecond a call more)
        (self._rows if self._rows is not None else self.rows()).take(i, 0, c, "clip")
        np.multiply(c[:, 3], t, out=r)
        r += c[:, 2]
        r *= t
        r += c[:, 1]
        r *= t
        r += c[:, 0]
        return r


def _make_buffers() -> tuple:
    return (np.empty(_LONGEST), np.empty(_LONGEST), np.empty(_LONGEST),
            np.empty(_LONGEST, np.int32), np.empty((_LONGEST, _DEGREE + 1)))


def _buffers(n: int) -> tuple:
    """This thread's temporaries for a block of ``n`` < _LONGEST values: x, t, r (float64), i
    (int32) and c ([n, 4])."""
    return thread_views(_local, n, _make_buffers)


def apply(y: np.ndarray, out: np.ndarray, table: CubicTable, scale: float,
          finish: Callable[[np.ndarray, np.ndarray], object]) -> np.ndarray:
    """``out`` (float32, y's shape, C-contiguous; may be ``y``) = ``finish(r, x)`` rounded
    once, where x is the float32 ``y`` widened and r = f(scale * x) (float64 buffers a block
    long, which ``finish`` updates in place: r the result)."""
    flat, dest = y.reshape(-1), out.reshape(-1)
    if not flat.size:
        return out
    table.rows()
    with np.errstate(all="ignore"):
        for k, e in blocks(flat.size, BLOCK):
            yb = flat[k:e]
            x, t, r, i, c = _buffers(yb.size)
            np.copyto(x, yb)
            table.evaluate(x, scale, t, r, i, c)
            finish(r, x)
            np.copyto(dest[k:e], r, casting="same_kind")
    return out


#: the normal distribution function Phi(y) = 0.5 erfc(-y / sqrt 2) (Erfc's): 0 below -15
#: (erfc(x) = 2 Phi(-sqrt 2 x) to 0 above x = 10.6: 1.6e-50), 1 from 6 up (erfc rounds to 2)
PHI = CubicTable(lambda p: 0.5 * math.erfc(-p / math.sqrt(2)), -15, 6, 256, 0.0, 1.0)
