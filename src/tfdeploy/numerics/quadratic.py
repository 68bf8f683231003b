"""Functions of float32 arrays from tables of quadratics, evaluated in float32.

A :class:`QuadraticTable` holds ``scale * f`` on [low, high) cut into intervals of ``1 / steps``
(a power of two), on each a quadratic in the position u in [0, 1) within the interval that
interpolates it at three Chebyshev nodes, and a constant row on either side (below ``low``
and from ``high`` up). A row is four float32 numbers, ``(hi, lo, c1, c2)``: the constant term
split in two (48 bits), so that

    P = hi + (lo + u (c1 + u c2))

rounds once, at the last addition, when the small terms are much smaller than ``hi``; its
error is then half an ulp plus the interpolation's. Per value (:func:`apply`, block by block):
``s = steps * y`` (exact), clipped to the table (an edge row for values outside, infinities
too), its floor the interval and ``u = s - floor(s)`` (exact); one ``take`` of the interval's
16-byte row (one of numpy's fast sizes); the four steps above over the row's columns. Then
a ``finish`` makes the result from P and y (a product with y, for the functions here: a
second rounding, so about a quarter of the results on typical values are one ulp from the
correctly rounded value and none further, checked on all 2**32 float32 inputs for GELU and
Erf, where the float64 tables of ``numerics/cubic.py`` round once).

A NaN's index is whatever the cast makes of it, clipped to row 0, and its u is NaN: P is NaN.
Every value takes the same passes, so a value's result depends on it alone.

Cost, one thread, about 13 numpy calls a block: 2048 values ~10 us, 16 K ~44 (against ~14 and
~66 for the float64 cubics: float32 passes, and four coefficients gathered in one 16-byte row
instead of 32). Users: GELU (``kernels/nn/gelu.py``) and Erf (``kernels/special/erf_gamma.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from tfdeploy.numerics import blocks, clip, thread_views

#: values per block: its temporaries (two float32 arrays, the index, the rows: 32 bytes a
#: value, ~512 KB) stay in L2. A remainder of fewer than BLOCK / 4 values joins the last block
#: instead of making one of its own (its ~13 numpy calls cost ~6 us whatever its size)
BLOCK = 16384
_LONGEST = BLOCK + BLOCK // 4
_F32 = np.dtype(np.float32)
_local = threading.local()


class QuadraticTable:
    """``scale * f`` on [low, high) by quadratics on intervals of ``1 / steps``; ``below`` and
    ``above`` the values of f outside (scaled too). ``f`` maps a float64 array of points to
    their values (:func:`each` makes one of a function of a Python float, ``math.erf``...);
    the rows are computed on first use (:meth:`rows`)."""

    __slots__ = ("f", "low", "high", "steps", "below", "above", "scale", "_rows", "_consts")

    def __init__(self, f: Callable[[float], float], low: int, high: int, steps: int,
                 below: float, above: float, scale: float = 1.0):
        if steps & (steps - 1) or high <= low:
            raise ValueError("steps must be a power of two and high > low")
        self.f, self.low, self.high, self.steps = f, low, high, steps
        self.below, self.above, self.scale = below, above, scale
        self._rows = None
        # s's bounds (the floors low - 1 and high are the rows below and above), the offset
        # making the row below row 0, and steps, as 0-d float32 arrays
        self._consts = tuple(np.array(v, _F32) for v in (
            low * steps - 0.5, high * steps + 0.5, 1 - low * steps, steps))

    @property
    def intervals(self) -> int:
        return (self.high - self.low) * self.steps

    def rows(self) -> np.ndarray:
        """[intervals + 2, 4] float32: row k holds (hi, lo, c1, c2) of ``scale * f`` on interval
        k - 1, [low + (k - 1) h, low + k h), h = 1 / steps; row 0 is ``below``, the last
        ``above``. (Two threads may both build it: the same values.)"""
        rows = self._rows
        if rows is None:
            n, h = self.intervals, 1.0 / self.steps
            k = np.arange(3)
            nodes = 0.5 - 0.5 * np.cos((2 * k + 1) * np.pi / 6)  # Chebyshev nodes in [0, 1]
            inverse = np.linalg.inv(np.vander(nodes, 3, increasing=True))
            left = self.low + np.arange(n) * h
            points = (left[:, None] + nodes[None, :] * h).ravel()
            values = np.asarray(self.f(points), np.float64).reshape(n, 3) * self.scale
            coef = values @ inverse.T  # [n, 3]: u^0 first
            rows = np.zeros((n + 2, 4), _F32)
            hi = coef[:, 0].astype(_F32)
            rows[1:-1, 0] = hi
            rows[1:-1, 1] = coef[:, 0] - hi
            rows[1:-1, 2:] = coef[:, 1:]
            rows[0, 0], rows[-1, 0] = self.below * self.scale, self.above * self.scale
            rows.setflags(write=False)
            self._rows = rows
        return rows

    def evaluate(self, y: np.ndarray, s: np.ndarray, t: np.ndarray, i: np.ndarray,
                 c: np.ndarray) -> np.ndarray:
        """P = ``scale * f(y)`` of a float32 block ``y`` into ``t``; ``s`` (float32), ``i``
        (int32) and ``c`` ([n, 4] float32): temporaries of y's size (s is free afterwards).

        The index is int32: numpy casts float32 to int32 with SIMD and to intp one value at a
        time, and ``take`` widens int32 itself, faster (16 K values: cast and take 16.0 against
        20.0 us, 2 K 2.9 against 3.15)."""
        low, high, offset, steps = self._consts
        np.multiply(y, steps, out=s)
        clip(s, low, high, out=s)
        np.floor(s, out=t)
        np.subtract(s, t, out=s)  # u, exact
        t += offset
        np.copyto(i, t, casting="unsafe")
        (self._rows if self._rows is not None else self.rows()).take(i, 0, c, "clip")
        np.multiply(c[:, 3], s, out=t)
        t += c[:, 2]
        t *= s
        t += c[:, 1]
        t += c[:, 0]  # rounded once
        return t


def each(f: Callable[[float], float], points: np.ndarray) -> np.ndarray:
    """``f`` of each float64 point, a Python float at a time (a table's ``f`` from a function
    of one float: ``map`` calls a builtin like ``math.erfc`` ~3x faster than a Python loop)."""
    return np.fromiter(map(f, points.tolist()), np.float64, points.size)


def _make_buffers() -> tuple:
    return (np.empty(_LONGEST, _F32), np.empty(_LONGEST, _F32), np.empty(_LONGEST, np.int32),
            np.empty((_LONGEST, 4), _F32))


def _buffers(n: int) -> tuple:
    """This thread's temporaries for a block of ``n`` < _LONGEST values: s, t (float32), the
    index (int32: see :meth:`QuadraticTable.evaluate`) and the rows ([n, 4] float32)."""
    views = getattr(_local, "views", None)  # (the cached views without a call: 2% at 2 K)
    b = None if views is None else views.get(n)
    return thread_views(_local, n, _make_buffers) if b is None else b


def apply(y: np.ndarray, out: np.ndarray, table: QuadraticTable,
          finish: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], object]
          ) -> np.ndarray:
    """``out`` (float32, y's shape, C-contiguous; may be ``y``) from the float32 C-contiguous
    ``y``, block by block: ``finish(p, yb, ob, s)`` writes a block's result into ``ob`` from
    ``p`` (the table's values, a float32 buffer it may update) and the block ``yb`` of y (the
    same memory as ``ob`` when out is y); ``s`` is a float32 buffer of the block's size it
    may use. Floating-point exceptions are the caller's to silence."""
    flat, dest = y.reshape(-1), out.reshape(-1)
    n = flat.size
    if n < _LONGEST:
        if n:
            s, t, i, c = _buffers(n)
            finish(table.evaluate(flat, s, t, i, c), flat, dest, s)
        return out
    for k, e in blocks(n, BLOCK):
        yb = flat[k:e]
        s, t, i, c = _buffers(yb.size)
        finish(table.evaluate(yb, s, t, i, c), yb, dest[k:e], s)
    return out
