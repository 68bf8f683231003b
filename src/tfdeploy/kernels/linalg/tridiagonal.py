"""Tridiagonal systems in O(M) time, as TF's TridiagonalSolve kernel solves them.

``solve(sup, diag, sub, b, pivoting)``: the M x M tridiagonal matrix of ``sup`` (its first M-1
values), ``diag`` and ``sub`` (its last M-1 values), all [B, M], solved for ``b`` [B, M, K],
every matrix of the batch at once, one row after another:

- with ``pivoting``: Gaussian elimination with partial pivoting (LAPACK's gtsv, which TF's
  kernel follows): at row i, rows i and i+1 swap when the subdiagonal entry is the larger in
  magnitude, so U has two superdiagonals; then back substitution;
- without: the Thomas algorithm (no interchanges), which fails on a zero denominator even
  where the matrix is invertible.

A matrix whose elimination meets a zero pivot (singular, or Thomas' zero denominator) gives
NaN for all of its solution, as TF's kernel does (it logs a warning and fills that matrix's
result with ``quiet_NaN()``, which for complex numbers is 0: C++ has no complex NaN limit, so
a complex matrix's failure is zeros there, and here); the others are solved. The arithmetic
is TF's, in its order, so results agree to rounding (bit for bit on a float32 system of 10^5
rows). Each row is some twenty numpy calls on [B] and [B, K] arrays (~40 us), with the loop
deadline checked every 1024 rows: 10^5 rows take ~4 s, where the dense solve it replaces
needed M^2 memory and M^3 time (40 GB and hours at 10^5).
"""

from __future__ import annotations

import numpy as np

from tfdeploy.numerics import quiet
from tfdeploy.runtime.limits import check_rows, loop_deadline


def solve(sup: np.ndarray, diag: np.ndarray, sub: np.ndarray, b: np.ndarray,
          pivoting: bool) -> np.ndarray:
    """X [B, M, K] (see the module docstring); M >= 1, every array of one dtype."""
    fill = 0 if b.dtype.kind == "c" else np.nan  # (TF's quiet_NaN(): see the docstring)
    with quiet():  # (one row: a division either way, as in TF)
        pivoted = pivoting and diag.shape[-1] > 1
        x, failed = (_pivoted if pivoted else _thomas)(sup, diag, sub, b)
    x[failed] = fill
    return x


def _pivoted(sup, diag, sub, b):
    """gtsv's elimination and back substitution; (X, which matrices failed)."""
    m = diag.shape[-1]
    u = np.zeros(diag.shape + (3,), diag.dtype)  # U's diagonal and two superdiagonals
    u[:, 0, 0], u[:, 0, 1] = diag[:, 0], sup[:, 0]
    x = np.empty(b.shape, b.dtype)
    x[:, 0] = b[:, 0]
    failed = np.zeros(diag.shape[0], bool)
    deadline = loop_deadline()
    for i in range(m - 1):
        a, s, d = u[:, i, 0], sub[:, i + 1], diag[:, i + 1]
        keep = np.abs(a) >= np.abs(s)  # (no interchange)
        failed |= keep & (a == 0)
        f = np.where(keep, s / a, a / s)  # (the factor either way)
        ui1 = u[:, i, 1].copy()
        x_i, b_next = x[:, i].copy(), b[:, i + 1]
        u[:, i + 1, 0] = np.where(keep, d - f * ui1, ui1 - f * d)
        x[:, i + 1] = np.where(keep[:, None], b_next - f[:, None] * x_i,
                               x_i - f[:, None] * b_next)
        x[:, i] = np.where(keep[:, None], x_i, b_next)
        u[:, i, 0] = np.where(keep, a, s)
        u[:, i, 1] = np.where(keep, ui1, d)
        if i != m - 2:
            p = sup[:, i + 1]
            u[:, i + 1, 1] = np.where(keep, p, -f * p)
            u[:, i, 2] = np.where(keep, 0, p)
        check_rows(i, deadline)
    failed |= u[:, m - 1, 0] == 0
    x[:, m - 1] /= u[:, m - 1, 0, None]
    x[:, m - 2] = (x[:, m - 2] - u[:, m - 2, 1, None] * x[:, m - 1]) / u[:, m - 2, 0, None]
    for i in range(m - 3, -1, -1):
        x[:, i] = (x[:, i] - u[:, i, 1, None] * x[:, i + 1] - u[:, i, 2, None] * x[:, i + 2]) \
            / u[:, i, 0, None]
        check_rows(i, deadline)
    return x, failed


def _thomas(sup, diag, sub, b):
    """The Thomas algorithm; (X, which matrices failed)."""
    m = diag.shape[-1]
    u = np.empty(diag.shape, diag.dtype)
    x = np.empty(b.shape, b.dtype)
    failed = diag[:, 0] == 0
    u[:, 0] = sup[:, 0] / diag[:, 0]
    x[:, 0] = b[:, 0] / diag[:, 0, None]
    deadline = loop_deadline()
    for i in range(1, m):
        denom = diag[:, i] - sub[:, i] * u[:, i - 1]
        failed |= denom == 0
        u[:, i] = sup[:, i] / denom
        x[:, i] = (b[:, i] - sub[:, i, None] * x[:, i - 1]) / denom[:, None]
        check_rows(i, deadline)
    for i in range(m - 2, -1, -1):
        x[:, i] -= u[:, i, None] * x[:, i + 1]
        check_rows(i, deadline)
    return x, failed
