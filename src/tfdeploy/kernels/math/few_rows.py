"""Products of a few rows by a large constant matrix: one BLAS matrix-vector product per row
where this machine's BLAS multiplies the few rows at once more slowly, measured once per shape.

``x @ w`` with x [m, K] of 2 to ``MAX_ROWS`` rows (a Dense layer at batch 2-8, a few tokens)
goes to BLAS's matrix-matrix product, which packs ``w`` into panels on every call; for one
row numpy calls the matrix-vector product, which streams ``w`` once. OpenBLAS 0.3.31 is
much slower on a few rows than on one row per call. One thread, an AMD EPYC (Zen 4), its
SkylakeX kernels, in us for the product / the rows one by one: 768 x 3072 at 2 rows 842 /
220, 4 rows 844 / 415, 8 rows 909 / 835; 1024 x 1024 at 2 rows 391 / 97; its Haswell kernels
512 x 512 at 2 rows 67 / 25, 3 rows 95 / 41. A 12-layer stack of 768 x 3072 and 3072 x 768
layers (226 MB of weights, read from memory): 2 rows 21.6 -> 12.3 ms, 3 rows 32.0 -> 20.4.
Small weights, or more rows, go the other way (64 x 256 at 2 rows: 1.6 / 4.0 us).

So the form is measured, not ruled: the first product of ``m`` rows by a weight of a given
shape and dtype times both (random rows by that weight, alternately, the best of ``ROUNDS``
each) and takes the rows one by one only below ``MARGIN`` times the product's
time. The choice is kept per (m, K, N, dtype) for the process: weights of one shape share it.
Only candidates are timed: 2 to ``MAX_ROWS`` rows by a weight of at least ``MIN_BYTES``.

Each row's result is then the one-row product's: the same values the row gets alone (batch
1), which a matrix-matrix product may round differently in the last bit. Every caller of a
constant weight (the fused Dense chains, the plain MatMul kernel) goes through :func:`rows_by`,
so a model gives the same values fused and unfused. Another process, or machine, may choose
the other form where the two are close, and round the last bit differently (as TensorFlow's
kernels do from CPU to CPU).
"""

from __future__ import annotations

import threading
import time

import numpy as np

#: more rows are multiplied at once (the rows' calls catch up with the product: 8 rows by
#: 768 x 3072 0.92x, by 1024 x 1024 0.88x, Haswell's 0.76-1.8x)
MAX_ROWS = 8
#: smaller weights are multiplied at once (their product is fast: 64 x 256, 2 rows 1.6 us
#: against 4.0 one by one)
MIN_BYTES = 1 << 18
#: the rows one by one are taken below this fraction of the product's time
MARGIN = 0.85
ROUNDS = 3

_lock = threading.Lock()
#: (m, K, N, dtype) -> whether m rows go one by one
_CHOICES: dict[tuple, bool] = {}


def rows_by(w: np.ndarray):
    """``fn(x) = x @ w`` for 2-D ``x`` [m, K] (the caller checks K) by the constant 2-D float
    ``w``, taking each row by itself where that was measured faster for m (see the module
    docstring); None when ``w`` is too small for that ever to be so, or not float32/float64:
    the caller then multiplies directly."""
    if w.ndim != 2 or w.dtype not in (np.float32, np.float64) or w.nbytes < MIN_BYTES:
        return None
    k, n = w.shape
    dt = w.dtype
    dot, choices = np.dot, _CHOICES

    def product(x: np.ndarray) -> np.ndarray:
        m = x.shape[0]
        if m < 2 or m > MAX_ROWS or x.dtype != dt:
            return dot(x, w)
        one_by_one = choices.get((m, k, n, dt))
        if one_by_one is None:
            one_by_one = _choose(m, w)
        if not one_by_one:
            return dot(x, w)
        return _rows(x, w)

    return product


def _rows(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    y = np.empty((x.shape[0], w.shape[1]), w.dtype)
    for i in range(x.shape[0]):
        np.dot(x[i], w, out=y[i])
    return y


def _choose(m: int, w: np.ndarray) -> bool:
    key = (m, *w.shape, w.dtype)
    with _lock:  # (one measurement at a time: another's work beside it would skew it)
        choice = _CHOICES.get(key)
        if choice is None:
            choice = _CHOICES[key] = _measure(m, w)
    return choice


def _measure(m: int, w: np.ndarray) -> bool:
    """Whether ``m`` rows by ``w`` (the first weight of its shape: the time is the shape's)
    are clearly faster one by one; random rows."""
    x = np.random.default_rng(m).standard_normal((m, w.shape[0])).astype(w.dtype)
    clock = time.perf_counter
    together = apart = float("inf")
    for _ in range(ROUNDS):
        t0 = clock()
        np.dot(x, w)
        t1 = clock()
        _rows(x, w)
        t2 = clock()
        together, apart = min(together, t1 - t0), min(apart, t2 - t1)
    return apart < MARGIN * together
