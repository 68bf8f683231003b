"""Products of a few rows by a large constant matrix: one BLAS matrix-vector product per row
where this machine's BLAS multiplies the few rows at once more slowly, measured once per shape
(``rows_by``: Dense layers); and a large constant matrix by a few columns, a recurrent cell's
states, in the fastest of three forms (``columns_by``).

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

The measurement repeats a product on one matrix, which then sits in cache; a model with more
weights than the cache reads each from memory. So the forms offered are the ones that gain in
both: the rows one by one by a Dense weight (the stack above), and for a recurrent matrix,
which every step reuses, the three of ``columns_by``. Column blocks of a Dense weight (views,
each product below OpenBLAS's small-matrix limit) took 8 rows by 768 x 3072 in 0.54x the
product's time in cache, but 1.7x over the stack: not a form here.

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
#: (m, K, N, dtype) -> whether m rows go one by one; ("columns", b, M, K, dtype) -> the form
#: of a product by b columns (``columns_by``)
_CHOICES: dict[tuple, object] = {}


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


#: ``columns_by``'s forms: the product, the columns one by one, row blocks of the matrix
PRODUCT, COLUMNS, BLOCKS = 0, 1, 2
#: row blocks of at most this many multiply-adds: OpenBLAS's SkylakeX kernels take a product
#: of fewer than 2**20 (M x K x b) by a faster path for small matrices
BLOCK_WORK = 1 << 19


def columns_by(a: np.ndarray):
    """``fn(v) = a @ v`` for ``v`` [K, b] (b columns: a recurrent cell's states, transposed) by
    the constant 2-D float ``a`` [M, K], as a C-contiguous [M, b], in the form measured
    fastest for b: the product; the columns of ``v`` one by one (each a matrix-vector
    product); or blocks of ``a``'s rows (contiguous: no copy), each product small enough for
    OpenBLAS's small-matrix path (``block_rows``). LSTM(512)'s recurrent product, one step,
    SkylakeX kernels: batch 2 171 -> 54 us (blocks; 88 by columns), batch 4 160 -> 61, batch
    8 196 -> 98; Haswell's kernels gain by columns only (batch 2 177 -> 88). None when ``a``
    is too small for that ever to pay, or not float32/float64."""
    if a.ndim != 2 or a.dtype not in (np.float32, np.float64) or a.nbytes < MIN_BYTES:
        return None
    m, k = a.shape
    dt = a.dtype
    dot, choices = np.dot, _CHOICES

    def product(v: np.ndarray) -> np.ndarray:
        b = v.shape[1]
        if b < 2 or b > MAX_ROWS or v.dtype != dt:
            return dot(a, v)
        form = choices.get(("columns", b, m, k, dt))
        if form is None:
            form = _choose(b, a, columns=True)
        if form == PRODUCT:
            return dot(a, v)
        if form == COLUMNS:
            return _columns(a, v)
        return _blocks(a, v)

    return product


def block_rows(m: int, k: int, b: int) -> int:
    """Rows of ``a`` [m, k] per block of ``_blocks`` by b columns: the largest power of two
    with at most ``BLOCK_WORK`` multiply-adds a block, 16 at least."""
    rows = 16
    while rows * 2 * k * b <= BLOCK_WORK and rows * 2 < m:
        rows *= 2
    return rows


def _columns(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    y = np.empty((a.shape[0], v.shape[1]), a.dtype)
    t = np.empty(a.shape[0], a.dtype)  # (np.dot writes only contiguous outputs)
    for j in range(v.shape[1]):
        np.dot(a, v[:, j], out=t)
        y[:, j] = t
    return y


def _blocks(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    m = a.shape[0]
    y = np.empty((m, v.shape[1]), a.dtype)
    step = block_rows(m, a.shape[1], v.shape[1])
    for i in range(0, m, step):
        np.dot(a[i:i + step], v, out=y[i:i + step])
    return y


def _rows(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    y = np.empty((x.shape[0], w.shape[1]), w.dtype)
    for i in range(x.shape[0]):
        np.dot(x[i], w, out=y[i])
    return y


def _choose(m: int, w: np.ndarray, columns: bool = False):
    key = ("columns", m, *w.shape, w.dtype) if columns else (m, *w.shape, w.dtype)
    with _lock:  # (one measurement at a time: another's work beside it would skew it)
        choice = _CHOICES.get(key)
        if choice is None:
            choice = _CHOICES[key] = _measure(m, w, columns)
    return choice


def _measure(m: int, w: np.ndarray, columns: bool = False):
    """Whether ``m`` rows by ``w`` are clearly faster one by one than together; with
    ``columns``, the fastest form of ``w`` by m columns (PRODUCT unless another is clearly
    faster). ``w`` is the first matrix of its shape (the time is the shape's); the rows or
    columns are random."""
    rng = np.random.default_rng(m)
    if columns:
        v = rng.standard_normal((w.shape[1], m)).astype(w.dtype)
        forms = [lambda: np.dot(w, v), lambda: _columns(w, v)]
        if block_rows(*w.shape, m) < w.shape[0]:
            forms.append(lambda: _blocks(w, v))
    else:
        x = rng.standard_normal((m, w.shape[0])).astype(w.dtype)
        forms = [lambda: np.dot(x, w), lambda: _rows(x, w)]
    clock = time.perf_counter
    best = [float("inf")] * len(forms)
    for _ in range(ROUNDS):  # (alternately: a drift in the machine's speed hits all)
        for i, f in enumerate(forms):
            t0 = clock()
            f()
            best[i] = min(best[i], clock() - t0)
    fastest = min(range(1, len(forms)), key=best.__getitem__)
    if best[fastest] >= MARGIN * best[0]:
        return PRODUCT if columns else False
    return fastest if columns else True
