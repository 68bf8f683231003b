"""Tridiagonal systems in O(M) time, as TF's TridiagonalSolve kernel solves them.

``solve(sup, diag, sub, b, pivoting, perturb)``: the M x M tridiagonal matrix of ``sup`` (its
first M-1 values), ``diag`` and ``sub`` (its last M-1 values), all [B, M], solved for ``b``
[B, M, K], every matrix of the batch at once, one row after another:

- with ``pivoting``: Gaussian elimination with partial pivoting (LAPACK's gtsv, which TF's
  kernel follows): at row i, rows i and i+1 swap when the subdiagonal entry is the larger in
  magnitude, so U has two superdiagonals; then back substitution;
- without: the Thomas algorithm (no interchanges), which fails on a zero denominator even
  where the matrix is invertible;
- with ``perturb`` (TF's ``perturb_singular``, pivoting only): LAPACK's xLAGTF/xLAGTS as TF
  fuses them, rows pivoted by their scaled magnitudes and pivots near zero perturbed, so that
  a singular matrix gets a finite solution (``_perturbed``). Checked against TF on 1,400
  random systems (singular, all zero, tiny, NaN, inf; float32 to complex128): the same values,
  bit for bit on 20,000-row float64 systems. Not on nearly singular complex systems, whose
  perturbed pivot is rounding noise: there the last bit of a complex product, which numpy and
  C++ compute differently, decides the solution's large components.

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

from tfdeploy.numerics import cpp_max, quiet
from tfdeploy.runtime.limits import check_rows, loop_deadline


def solve(sup: np.ndarray, diag: np.ndarray, sub: np.ndarray, b: np.ndarray,
          pivoting: bool, perturb: bool = False) -> np.ndarray:
    """X [B, M, K] (see the module docstring); M >= 1, every array of one dtype. ``perturb``
    (with ``pivoting``): TF's ``perturb_singular``, see ``_perturbed``."""
    if perturb:
        with quiet():
            return _perturbed(sup, diag, sub, b)
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


def _perturbed(sup, diag, sub, b):
    """TF's ``perturb_singular`` solve (LAPACK's xLAGTF and xLAGTS, fused): pivoting by rows
    scaled by their 1-norms, then back substitution in which a pivot below 1 in magnitude that
    would overflow its row's division is perturbed (``_perturb``) on the scale of eps times
    the largest entry of U. A singular matrix gets a finite (large) solution: what inverse
    iteration wants of ``(T - lambda I) X = B``. Every row's arithmetic is TF's, in its order,
    the division by a pivot a product with its reciprocal, as TF's."""
    m = diag.shape[-1]
    real = np.abs(diag[:, :1]).dtype
    eps = np.finfo(real).eps
    if m == 1:
        x = b.copy()
        for i in range(b.shape[0]):
            denom, x[i, 0] = _perturb(eps * np.abs(diag[i, 0]), diag[i, 0], x[i, 0])
            x[i, 0] *= np.ones((), b.dtype) / denom
        return x
    u0, u1, u2 = diag.copy(), np.zeros_like(diag), np.zeros_like(diag)
    u1[:, 0] = sup[:, 0]
    a0, a1 = np.abs(u0[:, 0]), np.abs(u1[:, 0])
    top, scale1 = cpp_max(a0, a1), a0 + a1  # (the largest |U| entry: TF's max_abs_u)
    x = np.empty(b.shape, b.dtype)
    x[:, 0] = b[:, 0]
    deadline = loop_deadline()
    for k in range(m - 1):
        s, d, p, a = sub[:, k + 1], diag[:, k + 1], sup[:, k + 1], u0[:, k]
        scale2 = np.abs(s) + np.abs(d)
        if k < m - 2:
            scale2 = scale2 + np.abs(p)
        piv1 = np.where(a == 0, 0, np.abs(a) / scale1)
        piv2 = np.abs(s) / scale2
        zero = s == 0
        keep = ~zero & (piv2 <= piv1)
        swap = ~zero & ~(piv2 <= piv1)
        f = np.where(keep, s / a, a / s)
        ui1, x_k, b_next = u1[:, k].copy(), x[:, k].copy(), b[:, k + 1]
        u0[:, k + 1] = np.where(keep, d - f * ui1, np.where(swap, ui1 - f * d, d))
        x[:, k + 1] = np.where(keep[:, None], b_next - f[:, None] * x_k,
                               np.where(swap[:, None], x_k - f[:, None] * b_next, b_next))
        x[:, k] = np.where(swap[:, None], b_next, x_k)
        u0[:, k] = np.where(swap, s, a)
        u1[:, k] = np.where(swap, d, ui1)
        u1[:, k + 1] = np.where(swap, -f * p, p) if k < m - 2 else np.where(swap, 0, p)
        u2[:, k] = np.where(swap, p, 0) if k < m - 2 else 0
        scale1 = np.where(swap, scale1, scale2)
        if k < m - 2:
            for col in (u0, u1, u2):
                top = cpp_max(top, np.abs(col[:, k]))
        check_rows(k, deadline)
    tol = eps * cpp_max(top, np.abs(u0[:, m - 1]))
    safemin = np.finfo(real).tiny
    one = np.ones((), b.dtype)
    for k in range(m - 1, -1, -1):
        row = x[:, k].copy()
        if k <= m - 2:
            row -= u1[:, k, None] * x[:, k + 1]
        if k <= m - 3:
            row -= u2[:, k, None] * x[:, k + 2]
        denom = u0[:, k].copy()
        for i in _to_perturb(denom, row, safemin):
            denom[i], row[i] = _perturb(tol[i], denom[i], row[i])
        x[:, k] = row * (one / denom)[:, None]
        check_rows(k, deadline)
    return x


def _to_perturb(denom, row, safemin) -> np.ndarray:
    """The matrices whose pivot ``denom`` (with its ``row``) ``_perturb`` changes: below the
    smallest normal number, or below 1 with ``row / denom`` overflowing (NaNs are left)."""
    a = np.abs(denom)
    big = np.abs(row).max(axis=1) if row.shape[1] else np.zeros_like(a)
    return np.flatnonzero((a < 1) & ((a < safemin) | (big > a * (1 / safemin))))


def _perturb(perturb, pivot, row):
    """TF's MaybePerturbPivot (from LAPACK's xLAGTS) for one pivot of magnitude below 1 and
    its row of the right-hand side: (pivot, row), the pivot moved away from 0 by ``perturb``
    (at least the smallest normal number, doubled each time) while ``row / pivot`` would
    overflow, or a tiny pivot and its row scaled up together."""
    real = np.abs(pivot).dtype.type
    one = real(1)
    safemin = real(np.finfo(real).tiny)
    bignum = one / safemin
    absp = np.abs(pivot)
    if not absp < one:
        return pivot, row
    perturb = np.copysign(cpp_max(np.abs(perturb), safemin), np.real(pivot)).astype(real)
    biggest = np.abs(row).max() if row.size else real(0)
    while absp < one:
        if absp < safemin:
            if absp == 0 or biggest * safemin > absp:
                pivot, perturb = pivot + perturb, perturb * real(2)
            else:
                return pivot * bignum, row * bignum
        elif biggest > absp * bignum:
            pivot, perturb = pivot + perturb, perturb * real(2)
        else:
            break
        absp = np.abs(pivot)
    return pivot, row
