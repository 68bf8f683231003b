"""Linear algebra kernels: decompositions, solvers, determinants, and diagonal/band ops.

Batched over leading dimensions with numpy.linalg; the scipy implementations use scipy.linalg
where it is more accurate (triangular solves, LU, matrix functions).
"""

from __future__ import annotations

import warnings

import numpy as np

from tfdeploy.kernels.common import np_dtype, op
from tfdeploy.kernels.linalg import tridiagonal
from tfdeploy.numerics import quiet
from tfdeploy.registry import IMPL_SCIPY
from tfdeploy.runtime.limits import check_array, check_rows, loop_deadline


class _Singular(ValueError):
    pass


def _square(x, what="input") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{what} must be a batch of square matrices, got shape {list(x.shape)}")
    return x


def _matrices(x, what="input") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"{what} must have rank >= 2, got shape {list(x.shape)}")
    return x


def _adj(x: np.ndarray) -> np.ndarray:
    """Conjugate transpose of the last two axes."""
    x = np.swapaxes(x, -1, -2)
    return x.conj() if x.dtype.kind == "c" else x


def _low(x: np.ndarray) -> tuple[np.ndarray, np.dtype]:
    """float16/bfloat16 are computed in float32 (numpy.linalg has no half routines)."""
    dt = x.dtype
    if dt.kind == "f" and dt.itemsize < 4 or dt.name == "bfloat16":
        return x.astype(np.float32), dt
    return x, dt


# -- determinants and inverses -------------------------------------------------------------------

@op("MatrixDeterminant")
def MatrixDeterminant(input):
    """MatrixDeterminant: determinant of each square matrix."""
    x, dt = _low(_square(input))
    if x.shape[-1] == 0:
        return np.ones(x.shape[:-2], dt)
    return np.asarray(np.linalg.det(x)).astype(dt, copy=False)


@op("LogMatrixDeterminant")
def LogMatrixDeterminant(input):
    """LogMatrixDeterminant: (sign, log|det|) of each square matrix; log|det| has type T."""
    x, dt = _low(_square(input))
    if x.shape[-1] == 0:
        return np.ones(x.shape[:-2], dt), np.zeros(x.shape[:-2], dt)
    sign, logdet = np.linalg.slogdet(x)
    return np.asarray(sign).astype(dt), np.asarray(logdet).astype(dt)


def _inv(x: np.ndarray) -> np.ndarray:
    if x.size == 0:
        return x.copy()
    try:
        return np.linalg.inv(x)
    except np.linalg.LinAlgError:
        raise _Singular("Input is not invertible.") from None


@op("MatrixInverse")
def MatrixInverse(input, *, adjoint=False):
    """MatrixInverse: inverse (of the adjoint, if ``adjoint``) of each square matrix."""
    x, dt = _low(_square(input))
    if adjoint:
        x = _adj(x)
    return _inv(x).astype(dt, copy=False)


@op("Cholesky")
def Cholesky(input):
    """Cholesky: lower Cholesky factor of each Hermitian positive definite matrix.

    Only the lower triangle is read. A matrix that is not positive definite gives NaNs.
    """
    x, dt = _low(_square(input))
    if x.size == 0:
        return x.astype(dt)
    try:
        return np.linalg.cholesky(x).astype(dt, copy=False)
    except np.linalg.LinAlgError:
        pass
    # factor what we can matrix by matrix; failed ones become NaN
    flat = x.reshape((-1,) + x.shape[-2:])
    out = np.full_like(flat, np.nan)
    for i, m in enumerate(flat):  # only reached for a batch with a bad matrix
        try:
            out[i] = np.linalg.cholesky(m)
        except np.linalg.LinAlgError:
            pass
    return out.reshape(x.shape).astype(dt, copy=False)


# -- solvers -------------------------------------------------------------------------------------

@op("MatrixSolve")
def MatrixSolve(matrix, rhs, *, adjoint=False):
    """MatrixSolve: X with matrix @ X = rhs (adjoint(matrix) @ X = rhs if ``adjoint``)."""
    a, dt = _low(_square(matrix, "matrix"))
    b = _matrices(rhs, "rhs").astype(a.dtype, copy=False)
    if b.shape[:-1] != a.shape[:-1]:
        raise ValueError(f"matrix {list(a.shape)} and rhs {list(b.shape)} do not match: rhs "
                         "must be [..., M, K] for a [..., M, M] matrix")
    if adjoint:
        a = _adj(a)
    if a.size == 0 or b.size == 0:
        return np.zeros(b.shape, dt)
    try:
        return np.linalg.solve(a, b).astype(dt, copy=False)
    except np.linalg.LinAlgError:
        raise _Singular("Input matrix is not invertible.") from None


def _solve_batch(a: np.ndarray, b: np.ndarray, rows: int) -> tuple:
    """The batch dims a solve's matrix ``a`` (of ``rows`` rows) and rhs ``b`` broadcast to,
    or the error naming both shapes."""
    if rows != b.shape[-2]:
        raise ValueError(f"matrix {list(a.shape)} and rhs {list(b.shape)}: the matrix has "
                         f"{rows} rows, rhs {b.shape[-2]}")
    try:
        return np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matrix {list(a.shape)} and rhs {list(b.shape)} must have "
                         f"compatible batch dimensions") from None


def _broadcast_solve_args(matrix, rhs):
    a = _square(matrix, "matrix")
    b = _matrices(rhs, "rhs")
    batch = _solve_batch(a, b, a.shape[-1])
    a = np.broadcast_to(a, batch + a.shape[-2:])
    b = np.broadcast_to(b, batch + b.shape[-2:])
    return a, b


def _triangular_solve(a: np.ndarray, b: np.ndarray, lower: bool) -> np.ndarray:
    """Substitution over rows, vectorised over batch and right-hand sides (a singular matrix
    gives inf/NaN, as in TF)."""
    n = a.shape[-1]
    x = np.zeros(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + b.shape[-2:],
                 np.result_type(a, b))
    rows = range(n) if lower else range(n - 1, -1, -1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for i in rows:
            if lower:
                acc = np.einsum("...j,...jk->...k", a[..., i, :i], x[..., :i, :])
            else:
                acc = np.einsum("...j,...jk->...k", a[..., i, i + 1:], x[..., i + 1:, :])
            x[..., i, :] = (b[..., i, :] - acc) / a[..., i, i, None]
    return x


@op("MatrixTriangularSolve")
def MatrixTriangularSolve(matrix, rhs, *, lower=True, adjoint=False):
    """MatrixTriangularSolve: X with triangle(matrix) @ X = rhs; batch dims broadcast.

    Only the ``lower`` (or upper) triangle is read; ``adjoint`` solves with its adjoint.
    """
    a, b = _broadcast_solve_args(matrix, rhs)
    a, dt = _low(a)
    b = b.astype(a.dtype, copy=False)
    if adjoint:
        a, lower = _adj(a), not lower
    return _triangular_solve(a, b, lower).astype(dt, copy=False)


@op("MatrixTriangularSolve", impl=IMPL_SCIPY)
def MatrixTriangularSolve_scipy(matrix, rhs, *, lower=True, adjoint=False):
    """MatrixTriangularSolve with scipy.linalg.solve_triangular (LAPACK trtrs)."""
    from scipy.linalg import solve_triangular

    a, b = _broadcast_solve_args(matrix, rhs)
    if a.size == 0 or b.size == 0:
        return MatrixTriangularSolve(a, b, lower=lower, adjoint=adjoint)
    a, dt = _low(a)
    b = b.astype(a.dtype, copy=False)
    out = np.empty(b.shape, np.result_type(a, b))
    fa, fb, fo = (v.reshape((-1,) + v.shape[-2:]) for v in (a, b, out))
    trans = ("C" if a.dtype.kind == "c" else "T") if adjoint else "N"
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(fo.shape[0]):
            fo[i] = solve_triangular(fa[i], fb[i], lower=lower, trans=trans,
                                     check_finite=False)
    return out.astype(dt, copy=False)


@op("MatrixSolveLs")
def MatrixSolveLs(matrix, rhs, l2_regularizer, *, fast=True):
    """MatrixSolveLs: least-squares X minimising ||matrix @ X - rhs||^2 + l2 ||X||^2.

    ``fast`` solves the (regularised) normal equations by Cholesky, as TF; otherwise an SVD
    least-squares solve (TF uses a complete orthogonal decomposition: same minimum-norm answer).
    """
    a, dt = _low(_matrices(matrix, "matrix"))
    b = _matrices(rhs, "rhs").astype(a.dtype, copy=False)
    if a.shape[:-1] != b.shape[:-1]:
        raise ValueError(f"matrix {list(a.shape)} and rhs {list(b.shape)} must have the same "
                         "batch dimensions and rows")
    lam = float(np.asarray(l2_regularizer).real)
    m, n = a.shape[-2:]
    out_shape = a.shape[:-2] + (n, b.shape[-1])
    if a.size == 0 or b.size == 0:
        return np.zeros(out_shape, dt)
    (a, b), bad = _finite(a, b)  # (LAPACK may never return on inf; TF gives NaNs)
    return _nan_where(bad, _solve_ls(a, b, lam, fast, m, n, out_shape).astype(dt,
                                                                              copy=False))[0]


def _solve_ls(a, b, lam: float, fast: bool, m: int, n: int, out_shape) -> np.ndarray:
    if fast:
        ah = _adj(a)
        if m >= n:
            gram = ah @ a + lam * np.eye(n, dtype=a.dtype)
            x = _cholesky_solve(gram, ah @ b)
        else:
            gram = a @ ah + lam * np.eye(m, dtype=a.dtype)
            x = ah @ _cholesky_solve(gram, b)
        return x
    if lam != 0:
        raise ValueError("MatrixSolveLs: fast=False supports only l2_regularizer=0")
    fa, fb = a.reshape((-1, m, n)), b.reshape((-1, m, b.shape[-1]))
    x = np.stack([np.linalg.lstsq(fa[i], fb[i], rcond=None)[0] for i in range(fa.shape[0])])
    return x.reshape(out_shape)


def _cholesky_solve(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    try:
        low = np.linalg.cholesky(gram)
    except np.linalg.LinAlgError:
        raise _Singular("Input matrix is not invertible (the normal equations are not "
                        "positive definite).") from None
    y = _triangular_solve(low, rhs, lower=True)
    return _triangular_solve(_adj(low), y, lower=False)


def _finite(*xs) -> tuple:
    """(the matrices ``xs``, each non-finite one replaced by the identity; mask of those, or
    None): iterative LAPACK routines (SVD, eigen, least squares) may spin or fail on inf/NaN,
    where TF returns NaNs; callers set those matrices' outputs to NaN (:func:`_nan_where`)."""
    bad = None
    for x in xs:
        b = ~np.isfinite(x).all(axis=(-2, -1))
        bad = b if bad is None else bad | b
    if bad is None or not bad.any():
        return xs, None
    return tuple(np.where(bad[..., None, None], np.eye(*x.shape[-2:], dtype=x.dtype), x)
                 for x in xs), bad


def _nan_where(bad, *outs) -> tuple:
    """``outs`` with the entries of the matrices flagged in ``bad`` set to NaN."""
    if bad is None:
        return outs
    res = []
    for o in outs:
        if o.ndim >= bad.ndim and o.shape[:bad.ndim] == bad.shape and o.dtype.kind in "fc":
            o = o.copy()
            o[bad] = np.nan
        res.append(o)
    return tuple(res)


# -- eigen, SVD, QR, LU --------------------------------------------------------------------------

@op("SelfAdjointEigV2")
def SelfAdjointEigV2(input, *, compute_v=True):
    """SelfAdjointEigV2: ascending eigenvalues (and eigenvectors) of Hermitian matrices.

    Only the lower triangle is read. Eigenvectors are unique only up to sign (phase).
    """
    x, dt = _low(_square(input))
    (x,), bad = _finite(x)
    if not compute_v:
        return _nan_where(bad, np.linalg.eigvalsh(x).astype(dt), np.zeros(0, dt))
    e, v = np.linalg.eigh(x)
    return _nan_where(bad, e.astype(dt), v.astype(dt))


@op("Eig")
def Eig(input, *, compute_v=True, Tout="complex64"):
    """Eig: eigenvalues (and unit eigenvectors) of general square matrices, as complex.

    The order of eigenvalues and the phase of eigenvectors may differ from TF's (both are
    unspecified); each pair still satisfies input @ v = v * e.
    """
    x = _square(input)
    out = np_dtype(Tout)
    if x.size == 0:
        e = np.zeros(x.shape[:-1], out)
        return e, (np.zeros(x.shape, out) if compute_v else np.zeros(0, out))
    (x,), bad = _finite(x)
    if not compute_v:
        return _nan_where(bad, np.linalg.eigvals(x).astype(out), np.zeros(0, out))
    e, v = np.linalg.eig(x)
    return _nan_where(bad, e.astype(out), v.astype(out))


@op("Svd")
def Svd(input, *, compute_uv=True, full_matrices=False):
    """Svd: singular values (descending) and, if ``compute_uv``, u and v (not v^H).

    Singular vectors are unique only up to sign (phase); s has dtype T (complex for complex).
    """
    x, dt = _low(_matrices(input))
    m, n = x.shape[-2:]
    k = min(m, n)
    sdt = dt
    if x.size == 0:
        s = np.zeros(x.shape[:-2] + (k,), sdt)
        if not compute_uv:
            return s, np.zeros(0, dt), np.zeros(0, dt)
        um, vn = (m, n) if full_matrices else (k, k)
        u = np.broadcast_to(np.eye(m, um, dtype=dt), x.shape[:-2] + (m, um)).copy()
        v = np.broadcast_to(np.eye(n, vn, dtype=dt), x.shape[:-2] + (n, vn)).copy()
        return s, u, v
    (x,), bad = _finite(x)  # (LAPACK may never return on inf; TF gives NaNs)
    if not compute_uv:
        s = np.linalg.svd(x, compute_uv=False).astype(sdt)
        return _nan_where(bad, s)[0], np.zeros(0, dt), np.zeros(0, dt)
    u, s, vh = np.linalg.svd(x, full_matrices=full_matrices)
    return _nan_where(bad, s.astype(sdt), u.astype(dt), _adj(vh).astype(dt))


@op("Qr")
def Qr(input, *, full_matrices=False):
    """Qr: Householder QR of each matrix; q is [M, M] if ``full_matrices`` else [M, min(M, N)]."""
    x, dt = _low(_matrices(input))
    m, n = x.shape[-2:]
    k = min(m, n)
    if x.size == 0:
        qc = m if full_matrices else k
        q = np.broadcast_to(np.eye(m, qc, dtype=dt), x.shape[:-2] + (m, qc)).copy()
        return q, np.zeros(x.shape[:-2] + (qc, n), dt)
    q, r = np.linalg.qr(x, mode="complete" if full_matrices else "reduced")
    return q.astype(dt), r.astype(dt)


def _check_pivots(lu: np.ndarray) -> None:
    """TF's LU refuses a singular matrix: one whose pivots' smallest magnitude, taken in order
    as ``std::min`` does, is not above 0 (a zero pivot; a NaN first pivot, which no later
    one replaces; a NaN later is passed over)."""
    d = np.abs(np.diagonal(lu, axis1=-2, axis2=-1))
    if d.size and (np.isnan(d[..., 0]).any() or (d == 0).any()):
        raise _Singular("Input is not invertible.")


@op("Lu")
def Lu(input, *, output_idx_type="int32"):
    """Lu: partial-pivoting LU; L (unit diagonal) and U packed in one matrix, and the row
    permutation p with input[..., p, :] = L @ U. A singular matrix (a zero pivot) is an error,
    as in TF."""
    a, dt = _low(_square(input))
    n = a.shape[-1]
    if a.size == 0:
        return a.astype(dt), np.zeros(a.shape[:-1], np_dtype(output_idx_type))
    lu = a.reshape((-1, n, n)).copy()
    batch = np.arange(lu.shape[0])
    perm = np.broadcast_to(np.arange(n), (lu.shape[0], n)).copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(n):  # column by column, vectorised over the batch
            piv = k + np.argmax(np.abs(lu[:, k:, k]), axis=1)
            rows_k, rows_p = lu[batch, k].copy(), lu[batch, piv].copy()
            lu[batch, k], lu[batch, piv] = rows_p, rows_k
            pk, pp = perm[batch, k].copy(), perm[batch, piv].copy()
            perm[batch, k], perm[batch, piv] = pp, pk
            pivot = lu[:, k, k][:, None]
            lu[:, k + 1:, k] = np.where(pivot != 0, lu[:, k + 1:, k] / pivot, lu[:, k + 1:, k])
            lu[:, k + 1:, k + 1:] -= lu[:, k + 1:, k, None] * lu[:, k, None, k + 1:]
    _check_pivots(lu)
    return (lu.reshape(a.shape).astype(dt, copy=False),
            perm.reshape(a.shape[:-1]).astype(np_dtype(output_idx_type)))


@op("Lu", impl=IMPL_SCIPY)
def Lu_scipy(input, *, output_idx_type="int32"):
    """Lu with scipy.linalg.lu_factor (LAPACK getrf)."""
    from scipy.linalg import lu_factor

    a, dt = _low(_square(input))
    if a.size == 0:
        return Lu(input, output_idx_type=output_idx_type)
    n = a.shape[-1]
    flat = a.reshape((-1, n, n))
    lu = np.empty_like(flat)
    perm = np.empty((flat.shape[0], n), np.int64)
    for i in range(flat.shape[0]):
        with warnings.catch_warnings():  # (a singular matrix: refused below, as in TF)
            warnings.simplefilter("ignore")
            lu[i], piv = lu_factor(flat[i], check_finite=False)
        p = np.arange(n)
        for k, j in enumerate(piv):  # LAPACK's swaps as a permutation
            p[k], p[j] = p[j], p[k]
        perm[i] = p
    _check_pivots(lu)
    return (lu.reshape(a.shape).astype(dt, copy=False),
            perm.reshape(a.shape[:-1]).astype(np_dtype(output_idx_type)))


# -- matrix functions ----------------------------------------------------------------------------

@op("MatrixSquareRoot")
def MatrixSquareRoot(input):
    """MatrixSquareRoot: principal square root (scaled Denman-Beavers iteration).

    TF uses a Schur method; both agree for matrices with no eigenvalue on the closed
    negative real axis, where the principal root exists.
    """
    x, dt = _low(_square(input))
    if x.size == 0:
        return x.astype(dt)
    work = np.complex128 if x.dtype.kind == "c" else np.float64
    y = x.astype(work)
    z = np.broadcast_to(np.eye(x.shape[-1], dtype=work), y.shape).copy()
    for _ in range(100):
        # determinant scaling speeds up the first steps
        det = np.abs(np.linalg.det(y) * np.linalg.det(z))
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(det > 0, det ** (-1.0 / (2 * x.shape[-1])), 1.0)[..., None, None]
        yi, zi = np.linalg.inv(y), np.linalg.inv(z)
        y_new = 0.5 * (g * y + zi / g)
        z = 0.5 * (g * z + yi / g)
        delta = np.abs(y_new - y).max()
        y = y_new
        if not np.isfinite(delta) or delta <= 1e-14 * max(np.abs(y).max(), 1e-300):
            break
    return y.astype(dt) if x.dtype.kind == "c" else y.real.astype(dt)


@op("MatrixSquareRoot", impl=IMPL_SCIPY)
def MatrixSquareRoot_scipy(input):
    """MatrixSquareRoot with scipy.linalg.sqrtm (Schur method, as TF)."""
    from scipy.linalg import sqrtm

    x, dt = _low(_square(input))
    flat = x.reshape((-1,) + x.shape[-2:])
    out = np.stack([sqrtm(m) for m in flat]) if len(flat) else flat
    if x.dtype.kind != "c":
        out = out.real
    return out.reshape(x.shape).astype(dt)


@op("MatrixLogarithm")
def MatrixLogarithm(input):
    """MatrixLogarithm: principal logarithm of complex matrices (by eigendecomposition).

    Accurate for diagonalisable, well-conditioned matrices; TF uses a Schur-Pade method.
    """
    x = _square(input)
    if x.dtype.kind != "c":
        raise TypeError(f"MatrixLogarithm takes complex64 or complex128, got {x.dtype}")
    if x.size == 0:
        return x.copy()
    w, v = np.linalg.eig(x.astype(np.complex128))
    out = (v * np.log(w)[..., None, :]) @ np.linalg.inv(v)
    return out.astype(x.dtype)


@op("MatrixLogarithm", impl=IMPL_SCIPY)
def MatrixLogarithm_scipy(input):
    """MatrixLogarithm with scipy.linalg.logm."""
    from scipy.linalg import logm

    x = _square(input)
    flat = x.reshape((-1,) + x.shape[-2:])
    out = np.stack([logm(m) for m in flat]) if len(flat) else flat
    return out.reshape(x.shape).astype(x.dtype)


# -- tridiagonal and banded ----------------------------------------------------------------------

@op("TridiagonalMatMul")
def TridiagonalMatMul(superdiag, maindiag, subdiag, rhs):
    """TridiagonalMatMul: the tridiagonal matrix given by its three diagonals ([..., 1, M] each,
    superdiag[-1] and subdiag[0] ignored) times rhs [..., M, N]."""
    sup, main, sub = (np.asarray(d)[..., 0, :, None] for d in (superdiag, maindiag, subdiag))
    out = main * rhs
    out[..., :-1, :] += sup[..., :-1, :] * rhs[..., 1:, :]
    out[..., 1:, :] += sub[..., 1:, :] * rhs[..., :-1, :]
    return out.astype(np.asarray(rhs).dtype, copy=False)


@op("TridiagonalSolve")
def TridiagonalSolve(diagonals, rhs, *, partial_pivoting=True, perturb_singular=False):
    """TridiagonalSolve: X with tridiagonal(diagonals) @ X = rhs; diagonals are [..., 3, M]
    (superdiagonal, diagonal, subdiagonal), rhs [..., M, K].

    Solved in O(M) as TF's kernel solves it (``kernels/linalg/tridiagonal.py``): Gaussian
    elimination with partial pivoting, or the Thomas algorithm without it; a matrix that
    meets a zero pivot gives NaN for all of its solution (zeros if complex), as in TF; with
    ``perturb_singular`` (and pivoting), TF's perturbed solve: rows pivoted by their scaled
    magnitudes, pivots near zero perturbed, so a singular matrix gets a finite solution.
    """
    d = np.asarray(diagonals)
    b = _matrices(rhs, "rhs")
    if d.ndim < 2 or d.shape[-2] != 3:
        raise ValueError(f"diagonals must be [..., 3, M], got {list(d.shape)}")
    m = d.shape[-1]
    if b.shape[-2] != m:
        raise ValueError(f"rhs must have {m} rows, got shape {list(b.shape)}")
    if perturb_singular and not partial_pivoting:
        raise ValueError("TridiagonalSolve: perturb_singular=True requires partial_pivoting=True "
                         "(as in TF)")
    x, dt = _low(d)
    try:
        batch = np.broadcast_shapes(x.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"diagonals {list(d.shape)} and rhs {list(b.shape)} must have the "
                         "same batch dimensions") from None
    if x.size == 0 or b.size == 0:
        return np.zeros(batch + b.shape[-2:], dt)
    x = np.broadcast_to(x, batch + x.shape[-2:]).reshape(-1, 3, m)
    b = np.broadcast_to(b.astype(x.dtype, copy=False), batch + b.shape[-2:])
    out = tridiagonal.solve(x[:, 0], x[:, 1], x[:, 2], b.reshape(-1, m, b.shape[-1]),
                            bool(partial_pivoting), bool(perturb_singular))
    return out.reshape(batch + b.shape[-2:]).astype(dt, copy=False)


@op("BandedTriangularSolve")
def BandedTriangularSolve(matrix, rhs, *, lower=True, adjoint=False):
    """BandedTriangularSolve: X with band(matrix) @ X = rhs; ``matrix`` is [..., K, M]: the
    diagonal and K-1 sub- (``lower``) or superdiagonals, aligned LEFT_RIGHT as in TF; batch
    dims broadcast. As TF, a zero on the first matrix's diagonal is refused (other singular
    matrices give inf/NaN). By substitution over the rows, each reading only the K-1 solved
    rows its band reaches (``_banded_solve``): no dense M x M matrix, which refused a long band
    (M = 10^5: 40 GB) where TF solves it. Deviation: float16 runs (in float32); TF has no
    float16 kernel."""
    band = np.asarray(matrix)
    if band.ndim < 2:
        raise ValueError(f"matrix must be [..., K, M], got {list(band.shape)}")
    b = _matrices(rhs, "rhs")
    for name, x in (("matrix", band), ("rhs", b)):  # (as TF, in its order)
        if x.size == 0:
            raise ValueError(f"BandedTriangularSolve: {name} must not be empty, got shape "
                             f"{list(x.shape)}")
    k, m = band.shape[-2:]
    batch = _solve_batch(band, b, m)
    check_array(batch + b.shape[-2:], np.result_type(band, b), "the result")
    k = min(k, m)
    band, dt = _low(band[..., :k, :] if lower else band[..., band.shape[-2] - k:, :])
    diag = band[..., 0, :] if lower else band[..., k - 1, :]
    if not np.abs(diag.reshape(-1, m)[0]).min() > 0:
        raise ValueError("BandedTriangularSolve: input matrix is not invertible (a zero on "
                         "the first matrix's diagonal)")
    b = b.astype(band.dtype, copy=False)
    x = _banded_solve(band, np.broadcast_to(b, batch + b.shape[-2:]), lower, adjoint)
    return x.astype(dt, copy=False)


def _banded_solve(band: np.ndarray, b: np.ndarray, lower: bool, adjoint: bool) -> np.ndarray:
    """X [..., M, N] with T X = ``b`` where T is the triangular matrix of ``band`` [..., K, M]
    (``BandedTriangularSolve``'s rows, cut to K <= M; its batch dims broadcast to ``b``'s) or
    its adjoint. Row i's coefficients of the K-1 rows before it (forward: lower, or upper's
    adjoint) or after it are gathered once into ``coef`` [..., M, K-1], in the order of those
    rows, so each row is one einsum over them (a singular matrix gives inf/NaN, as in TF)."""
    k, m = band.shape[-2:]
    forward = lower != adjoint
    if adjoint and band.dtype.kind == "c":
        band = band.conj()
    # the diagonal d (1..K-1) is row d of a lower band (right-aligned: L[i, i-d] at column
    # i), row K-1-d of an upper one (left-aligned: U[i, i+d] at column i); the adjoint's row
    # i reads its coefficient of row i -+ d at column i -+ d instead
    rows = [d if lower else k - 1 - d for d in range(k)]
    diag = band[..., rows[0], :]
    coef = np.zeros(band.shape[:-2] + (m, k - 1), band.dtype)
    for d in range(1, k):
        # coef[..., i, j]: the coefficient of the solved row k-1-j before (forward) or j+1
        # after row i, so that both read their rows in ascending order
        j = k - 1 - d if forward else d - 1
        row = band[..., rows[d], :]
        if adjoint:
            if forward:
                coef[..., d:, j] = row[..., :m - d]
            else:
                coef[..., :m - d, j] = row[..., d:]
        else:
            coef[..., :, j] = row
    x = np.zeros(b.shape, np.result_type(band, b))
    if k == 1:
        with quiet():
            np.divide(b, diag[..., None], out=x)
        return x
    deadline = loop_deadline()
    order = range(m) if forward else range(m - 1, -1, -1)
    with quiet():
        for n, i in enumerate(order):
            lo, hi = (max(0, i - k + 1), i) if forward else (i + 1, min(m, i + k))
            c = coef[..., i, k - 1 - (hi - lo):] if forward else coef[..., i, :hi - lo]
            acc = np.einsum("...j,...jn->...n", c, x[..., lo:hi, :])
            np.divide(b[..., i, :] - acc, diag[..., i, None], out=x[..., i, :])
            check_rows(n, deadline)
    return x


# -- bands and diagonals -------------------------------------------------------------------------

@op("MatrixBandPart")
def MatrixBandPart(input, num_lower, num_upper):
    """MatrixBandPart: zero everything outside the band (a negative bound keeps that triangle)."""
    x = _matrices(input)
    lo, up = int(num_lower), int(num_upper)
    m, n = x.shape[-2:]
    if lo > m or up > n:
        raise ValueError(f"num_lower ({lo}) must be <= {m} and num_upper ({up}) <= {n}")
    if x.size == 0:  # (no band table for an empty batch of huge matrices)
        return x.copy()
    d = np.arange(n)[None, :] - np.arange(m)[:, None]  # j - i
    keep = ((lo < 0) | (-d <= lo)) & ((up < 0) | (d <= up))
    return np.where(keep, x, np.zeros((), x.dtype))


def _k_range(k) -> tuple[int, int]:
    k = np.asarray(k).reshape(-1).tolist()
    if not 1 <= len(k) <= 2:
        raise ValueError(f"k must be a scalar or a pair, got {len(k)} values")
    lo, up = int(k[0]), int(k[-1])
    if lo > up:
        raise ValueError(f"k[0] ({lo}) must not be greater than k[1] ({up})")
    return lo, up


def _align_flags(align: str) -> tuple[bool, bool]:
    """(left-align superdiagonals, left-align subdiagonals) of an ``align`` attribute."""
    try:
        sup, sub = align.split("_")
        return {"LEFT": True, "RIGHT": False}[sup], {"LEFT": True, "RIGHT": False}[sub]
    except (ValueError, KeyError):
        raise ValueError(f"align must be one of LEFT_LEFT, LEFT_RIGHT, RIGHT_LEFT, RIGHT_RIGHT; "
                         f"got {align!r}") from None


def _diag_offsets(lo, up, m, n, max_len, align):
    """Per diagonal d (from up down to lo): its length and the offset of its content."""
    left_sup, left_sub = _align_flags(align)
    d = np.arange(up, lo - 1, -1)
    length = np.minimum(m + np.minimum(0, d), n - np.maximum(0, d))
    left = ((d >= 0) & left_sup) | ((d <= 0) & left_sub)
    return d, length, np.where(left, 0, max_len - length)


def _diag_part(x, lo, up, padding, align):
    m, n = x.shape[-2:]
    if not (-m < lo <= 0 or 0 <= lo < n) or not (-m < up <= 0 or 0 <= up < n):
        if not (m == 0 or n == 0):
            raise ValueError(f"diagonal range [{lo}, {up}] is out of bounds for a {m}x{n} matrix")
    max_len = max(0, min(m + min(up, 0), n - max(lo, 0)))
    d, length, offset = _diag_offsets(lo, up, m, n, max_len, align)
    q = np.arange(max_len)[None, :] - offset[:, None]  # position along each diagonal
    valid = (q >= 0) & (q < length[:, None])
    rows = q - np.minimum(0, d)[:, None]
    cols = q + np.maximum(0, d)[:, None]
    rows, cols = np.where(valid, rows, 0), np.where(valid, cols, 0)
    if m == 0 or n == 0:
        out = np.zeros(x.shape[:-2] + rows.shape, x.dtype)
    else:
        out = x[..., rows, cols]
    out = np.where(valid, out, np.asarray(padding, x.dtype))
    return out[..., 0, :] if lo == up else out


def _diag_matrix(diagonal, lo, up, m, n, padding, align):
    dg = np.asarray(diagonal)
    ndiag = up - lo + 1
    if ndiag == 1:
        dg = dg[..., None, :]
    elif dg.ndim < 2 or dg.shape[-2] != ndiag:
        raise ValueError(f"diagonal must be [..., {ndiag}, max_diag_len] for k=[{lo}, {up}], "
                         f"got {list(dg.shape)}")
    max_len = dg.shape[-1]
    min_m, min_n = max_len - min(up, 0), max_len + max(lo, 0)
    if m == -1 and n == -1:
        m = n = max(min_m, min_n)
    elif m == -1:
        m = min_m
    elif n == -1:
        n = min_n
    if m < min_m or n < min_n or max_len != min(m + min(up, 0), n - max(lo, 0)):
        raise ValueError(f"num_rows={m}, num_cols={n} do not fit diagonals of length {max_len} "
                         f"for k=[{lo}, {up}]")
    # (a hostile num_rows: its index grids and the matrices within the tensor limit)
    check_array(dg.shape[:-2] + (m, n), np.int64, "the matrices")
    if 0 in dg.shape[:-2] or not m or not n:  # (no values: no index grid, however large m, n)
        return np.zeros(dg.shape[:-2] + (m, n), dg.dtype), np.broadcast_to(False, (m, n))
    d, length, offset = _diag_offsets(lo, up, m, n, max_len, align)
    i, j = np.arange(m)[:, None], np.arange(n)[None, :]
    dd = j - i
    inband = (dd >= lo) & (dd <= up)
    row = np.clip(up - dd, 0, ndiag - 1)
    pos = np.minimum(i, j) + offset[row]
    pos = np.where(inband, np.clip(pos, 0, max(max_len - 1, 0)), 0)
    if max_len == 0:
        vals = np.zeros(dg.shape[:-2] + (m, n), dg.dtype)
    else:
        vals = dg[..., row, pos]
    return np.where(inband, vals, np.asarray(padding, dg.dtype)), inband


@op("MatrixDiagPartV3")
def MatrixDiagPartV3(input, k, padding_value, *, align="RIGHT_LEFT"):
    """MatrixDiagPartV3: diagonals k[0]..k[1] of each matrix, padded and aligned per ``align``."""
    lo, up = _k_range(k)
    return _diag_part(_matrices(input), lo, up, padding_value, align)


@op("MatrixDiagPartV2")
def MatrixDiagPartV2(input, k, padding_value):
    """MatrixDiagPartV2: MatrixDiagPartV3 with align LEFT_LEFT."""
    return MatrixDiagPartV3(input, k, padding_value, align="LEFT_LEFT")


@op("MatrixDiagPart")
def MatrixDiagPart(input):
    """MatrixDiagPart: the main diagonal of each matrix."""
    return _diag_part(_matrices(input), 0, 0, 0, "LEFT_LEFT")


@op("MatrixDiagV3")
def MatrixDiagV3(diagonal, k, num_rows, num_cols, padding_value, *, align="RIGHT_LEFT"):
    """MatrixDiagV3: matrices with the given diagonals k[0]..k[1], ``padding_value`` elsewhere."""
    lo, up = _k_range(k)
    out, _ = _diag_matrix(diagonal, lo, up, int(num_rows), int(num_cols), padding_value, align)
    return out


@op("MatrixDiagV2")
def MatrixDiagV2(diagonal, k, num_rows, num_cols, padding_value):
    """MatrixDiagV2: MatrixDiagV3 with align LEFT_LEFT."""
    return MatrixDiagV3(diagonal, k, num_rows, num_cols, padding_value, align="LEFT_LEFT")


@op("MatrixDiag")
def MatrixDiag(diagonal):
    """MatrixDiag: square matrices with ``diagonal`` on the main diagonal."""
    out, _ = _diag_matrix(diagonal, 0, 0, -1, -1, 0, "LEFT_LEFT")
    return out


@op("MatrixSetDiagV3")
def MatrixSetDiagV3(input, diagonal, k, *, align="RIGHT_LEFT"):
    """MatrixSetDiagV3: ``input`` with diagonals k[0]..k[1] replaced by ``diagonal``."""
    x = _matrices(input)
    lo, up = _k_range(k)
    m, n = x.shape[-2:]
    dg = np.asarray(diagonal, x.dtype)
    max_len = max(0, min(m + min(up, 0), n - max(lo, 0)))
    want = x.shape[:-2] + ((max_len,) if lo == up else (up - lo + 1, max_len))
    if dg.shape != want:
        raise ValueError(f"diagonal must have shape {list(want)}, got {list(dg.shape)}")
    if x.size == 0:  # (an empty batch of huge matrices: no index grid)
        return x.copy()
    vals, inband = _diag_matrix(dg, lo, up, m, n, 0, align)
    return np.where(inband, vals, x)


@op("MatrixSetDiagV2")
def MatrixSetDiagV2(input, diagonal, k):
    """MatrixSetDiagV2: MatrixSetDiagV3 with align LEFT_LEFT."""
    return MatrixSetDiagV3(input, diagonal, k, align="LEFT_LEFT")


@op("MatrixSetDiag")
def MatrixSetDiag(input, diagonal):
    """MatrixSetDiag: ``input`` with its main diagonal replaced by ``diagonal``."""
    return MatrixSetDiagV3(input, diagonal, 0, align="LEFT_LEFT")


@op("Diag")
def Diag(diagonal):
    """Diag: a tensor of shape s + s with ``diagonal`` (shape s) on its diagonal."""
    d = np.asarray(diagonal)
    n = d.size
    # (n**2 from n: 40 GB from 400 KB; and an empty s whose s + s numpy cannot index)
    check_array(d.shape + d.shape, d.dtype, "the diagonal tensor")
    out = np.zeros((n, n), d.dtype)
    out[np.arange(n), np.arange(n)] = d.reshape(-1)
    return out.reshape(d.shape + d.shape)


@op("DiagPart")
def DiagPart(input):
    """DiagPart: the diagonal (shape s) of a tensor of shape s + s."""
    x = np.asarray(input)
    if x.ndim % 2 or x.shape[: x.ndim // 2] != x.shape[x.ndim // 2:]:
        raise ValueError(f"DiagPart needs a tensor of shape s + s, got {list(x.shape)}")
    s = x.shape[: x.ndim // 2]
    n = int(np.prod(s, dtype=np.int64))
    return x.reshape(n, n)[np.arange(n), np.arange(n)].reshape(s)


@op("Cross")
def Cross(a, b):
    """Cross: cross product of 3-vectors along the last axis."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim == 0 or a.shape[-1] != 3:
        raise ValueError(f"Cross needs two tensors of one shape [..., 3], got {list(a.shape)} "
                         f"and {list(b.shape)}")
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    with np.errstate(over="ignore"):  # integer wrap-around, as in TF
        out = np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)
    return out.astype(a.dtype, copy=False)
