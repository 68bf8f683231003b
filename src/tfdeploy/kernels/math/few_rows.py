"""Products of a few rows by a large constant matrix, and of a large constant matrix by a few
columns, in the form this machine's BLAS computes fastest, measured once per shape.

``x @ w`` with x [m, K] of 2 to ``MAX_ROWS`` rows (a Dense layer at batch 2-8, a few tokens)
goes to BLAS's matrix-matrix product, which packs ``w`` into panels on every call; for one
row numpy calls the matrix-vector product, which streams ``w`` once. OpenBLAS 0.3.31 is much
slower on a few rows than on one row per call: one thread, an AMD EPYC (Zen 4), its SkylakeX
kernels, in us for the product / the rows one by one: 768 x 3072 at 2 rows 842 / 220, 4 rows
844 / 415, 8 rows 909 / 835; 1024 x 1024 at 2 rows 391 / 97; its Haswell kernels 512 x 512 at
2 rows 67 / 25, 3 rows 95 / 41. Its SkylakeX kernels also take a product of fewer than 2**20
multiply-adds by a faster path for small matrices, so a third form sums the products of
blocks of ``w``'s rows (contiguous) below that size (``_sums``). A 12-layer stack of 768 x 3072
and 3072 x 768 layers (113 MB of weights, read from memory), ms for the product / rows / block
sums: 2 rows 9.5 / 5.9 / 4.8, 4 rows 8.6 / 8.7 / 6.1, 8 rows 10.5 / 14.5 / 9.1, 16 rows 12.6 /
25.8 / 15.4. Small weights, or more rows, go the other way (64 x 256 at 2 rows: 1.6 us as a
product, 4.0 one by one).

``columns_by`` asks the same of a recurrent cell's product ``R @ h^T`` by its states' b
columns: the product, the columns one by one, or blocks of R's rows, each product by itself
(below 2**20 multiply-adds: no sums).

So the form is measured, not ruled: the first product of ``m`` rows (or columns) by a matrix
of a given shape and dtype times each form (random rows by that matrix, alternately, the best
of ``ROUNDS`` each) and takes another than the product only below ``MARGIN`` times the
product's time. The choice is kept per (m, K, N, dtype) for the process: matrices of one shape
share it. Only candidates are timed: 2 to ``MAX_ROWS`` rows by a matrix of at least
``MIN_BYTES``.

The measurement repeats a product on one matrix, which then sits in cache; a model with more
weights than the cache reads each from memory. So the forms offered are the ones that gain in
both (the stack above; a recurrent matrix every step reuses). Column blocks of a Dense weight
(views, each product below the small-matrix limit) took 8 rows by 768 x 3072 in 0.54x the
product's time in cache, but 1.7x over the stack: not a form here.

The forms sum in different orders: results agree to the products' rounding; taken one by one,
each row's result is the one-row product's (the values it gets alone, at batch 1). Every
caller of a constant matrix (the fused Dense chains, the plain MatMul kernel) goes through
:func:`rows_by`, so a model gives the same values fused and unfused. Another process, or
machine, may choose another form where two are close, and round the last bit differently (as
TensorFlow's kernels do from CPU to CPU).
"""

from __future__ import annotations

import numpy as np

from tfdeploy.numerics.ufunc_speed import LOCK, fastest, register

#: more rows are multiplied at once (the rows' calls catch up with the product: 8 rows by
#: 768 x 3072 0.92x, by 1024 x 1024 0.88x, Haswell's 0.76-1.8x)
MAX_ROWS = 8
#: smaller weights are multiplied at once: their product is fast (64 x 256, 2 rows 1.6 us
#: against 4.0 one by one), and a product of a few microseconds is timed too noisily for two
#: processes to be sure to choose alike (the original dense benchmark's 784 x 100 weight, 313
#: KB, was taken by rows in one Dask worker and as the product in another: the same blocks
#: differed in the last bit)
MIN_BYTES = 1 << 20
#: the rows one by one are taken below this fraction of the product's time
MARGIN = 0.85
ROUNDS = 3

#: (m, K, N, dtype) -> the form of m rows by a matrix (``rows_by``); ("columns", b, M, K,
#: dtype) -> that of a matrix by b columns (``columns_by``)
_CHOICES: dict[tuple, int] = register({})


#: the forms of a product: the product itself; its rows (``rows_by``) or columns
#: (``columns_by``) one by one; blocks of the matrix's rows (``rows_by``: with their products
#: summed)
PRODUCT, ROWS, BLOCKS = 0, 1, 2
COLUMNS = ROWS
#: blocks of at most this many multiply-adds: OpenBLAS's SkylakeX kernels take a product of
#: fewer than 2**20 (M x K x N) by a faster path for small matrices
BLOCK_WORK = 1 << 19


def rows_by(w: np.ndarray):
    """``fn(x) = x @ w`` for 2-D ``x`` [m, K] (the caller checks K) by the constant 2-D float
    ``w``, in the form measured fastest for m: the product, each row by itself, or the sum of
    blocks' products (see the module docstring); None when ``w`` is too small for another form
    ever to pay, or not float32/float64: the caller then multiplies directly."""
    if w.ndim != 2 or w.dtype not in (np.float32, np.float64) or w.nbytes < MIN_BYTES:
        return None
    k, n = w.shape
    dt = w.dtype
    dot, choices = np.dot, _CHOICES

    def product(x: np.ndarray) -> np.ndarray:
        m = x.shape[0]
        if m < 2 or m > MAX_ROWS or x.dtype != dt:
            return dot(x, w)
        form = choices.get((m, k, n, dt))
        if form is None:
            form = _choose(m, w)
        if form == PRODUCT:
            return dot(x, w)
        if form == ROWS:
            return _rows(x, w)
        return _sums(x, w)

    def form(m: int) -> int:
        """The form ``product`` takes for m rows (measured now if not yet)."""
        if m < 2 or m > MAX_ROWS:
            return PRODUCT
        f = choices.get((m, k, n, dt))
        return _choose(m, w) if f is None else f

    product.form = form
    return product


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
    """Rows of a matrix [m, k] per block multiplied by b columns (``_blocks``; ``_sums``: a
    Dense weight [K, N] by m rows, ``block_rows(K, N, m)``): the largest power of two with at
    most ``BLOCK_WORK`` multiply-adds a block, 16 at least."""
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


def _sums(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` as the sum of the products of blocks of w's rows (contiguous) by x's columns,
    each below ``BLOCK_WORK``."""
    m, k = x.shape
    step = block_rows(k, w.shape[1], m)
    y = np.dot(x[:, :step], w[:step])
    if step < k:
        t = np.empty_like(y)
        for j in range(step, k, step):
            np.dot(x[:, j:j + step], w[j:j + step], out=t)
            y += t
    return y


def _rows(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    y = np.empty((x.shape[0], w.shape[1]), w.dtype)
    for i in range(x.shape[0]):
        np.dot(x[i], w, out=y[i])
    return y


def _choose(m: int, w: np.ndarray, columns: bool = False):
    key = ("columns", m, *w.shape, w.dtype) if columns else (m, *w.shape, w.dtype)
    with LOCK:  # (one measurement at a time: another's work beside it would skew it)
        choice = _CHOICES.get(key)
        if choice is None:
            choice = _CHOICES[key] = _measure(m, w, columns)
    return choice


def _measure(m: int, w: np.ndarray, columns: bool = False) -> int:
    """The fastest form of ``m`` rows by ``w`` (``columns``: of ``w`` by m columns): PRODUCT
    unless another is clearly faster. ``w`` is the first matrix of its shape (the time is the
    shape's); the rows or columns are random."""
    rng = np.random.default_rng(m)
    if columns:
        v = rng.standard_normal((w.shape[1], m)).astype(w.dtype)
        forms = [lambda: np.dot(w, v), lambda: _columns(w, v)]
        if block_rows(*w.shape, m) < w.shape[0]:
            forms.append(lambda: _blocks(w, v))
    else:
        x = rng.standard_normal((m, w.shape[0])).astype(w.dtype)
        forms = [lambda: np.dot(x, w), lambda: _rows(x, w)]
        if block_rows(*w.shape, m) < w.shape[0]:
            forms.append(lambda: _sums(x, w))
    return fastest(forms, ROUNDS, MARGIN)
