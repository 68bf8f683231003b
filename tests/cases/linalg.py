"""Linear algebra: decompositions, solvers, determinants, diagonal and band ops."""

from __future__ import annotations

import numpy as np

from . import Case, rand
from . import raw as _raw
from . import tf as _tf

CASES: list[Case] = []

FLOATS = ["float32", "float64"]
ALL = ["float32", "float64", "complex64", "complex128"]
TOL = {"float32": 2e-4, "float64": 1e-10, "complex64": 2e-4, "complex128": 1e-10}


def _well(shape, dtype):
    """Well-conditioned square matrices: random plus a multiple of the identity."""
    def make(rng):
        a = rand(rng, shape, dtype, -1, 1)
        n = shape[-1]
        return [(a + 2 * n ** 0.5 * np.eye(n)).astype(dtype)]
    return make


def _spd(shape, dtype):
    """Hermitian positive definite matrices."""
    def make(rng):
        a = rand(rng, shape, dtype, -1, 1)
        n = shape[-1]
        h = a @ np.conj(np.swapaxes(a, -1, -2)) + n * np.eye(n)
        return [h.astype(dtype)]
    return make


def _hermitian(shape, dtype):
    def make(rng):
        a = rand(rng, shape, dtype, -1, 1)
        return [((a + np.conj(np.swapaxes(a, -1, -2))) / 2).astype(dtype)]
    return make


def _sid(shape):
    return "x".join(map(str, shape)) or "scalar"


def _case(id, ops, fn, inputs, dtype=None, tol=None, **kw):
    t = tol if tol is not None else TOL.get(dtype, 1e-6)
    CASES.append(Case(id=f"linalg_{id}", ops=ops, fn=fn, inputs=inputs, rtol=t, atol=t, **kw))


# -- determinants, inverse, cholesky -------------------------------------------------------------

SQUARE_SHAPES = [(3, 3), (2, 4, 4), (1, 1), (0, 0), (2, 0, 0), (2, 3, 2, 2)]

for dt in ALL:
    for i, shape in enumerate(SQUARE_SHAPES):
        sid = f"{dt}_{_sid(shape)}"
        _case(f"det_{sid}", ("MatrixDeterminant",),
              lambda x: _raw().MatrixDeterminant(input=x), _well(shape, dt), dt,
              dynamic=i == 1)
        _case(f"logdet_{sid}", ("LogMatrixDeterminant",),
              lambda x: tuple(_raw().LogMatrixDeterminant(input=x)), _well(shape, dt), dt)
        for adjoint in (False, True):
            _case(f"inverse_{sid}_{adjoint}", ("MatrixInverse",),
                  lambda x, a=adjoint: _raw().MatrixInverse(input=x, adjoint=a),
                  _well(shape, dt), dt, dynamic=i == 1)
        _case(f"cholesky_{sid}", ("Cholesky",), lambda x: _raw().Cholesky(input=x),
              _spd(shape, dt), dt, dynamic=i == 1)

_case("logdet_negative", ("LogMatrixDeterminant",),
      lambda x: tuple(_raw().LogMatrixDeterminant(input=x)),
      [np.array([[[0, 1], [1, 0]], [[2, 0], [0, 3]], [[0, 0], [0, 1]]], np.float64)], "float64")


def _cholesky_lower_only(x):
    return _raw().Cholesky(input=x)


_case("cholesky_reads_lower", ("Cholesky",), _cholesky_lower_only,
      [np.array([[4.0, 99.0], [2.0, 5.0]], np.float64)], "float64")


# -- solvers -------------------------------------------------------------------------------------

def _solve_inputs(shape, k, dtype, maker=_well):
    def make(rng):
        (a,) = maker(shape, dtype)(rng)
        return [a, rand(rng, shape[:-1] + (k,), dtype, -2, 2)]
    return make


for dt in ALL:
    for shape, k in [((3, 3), 1), ((2, 4, 4), 3), ((0, 0), 2), ((2, 3, 3), 0)]:
        for adjoint in (False, True):
            _case(f"solve_{dt}_{_sid(shape)}_{k}_{adjoint}", ("MatrixSolve",),
                  lambda a, b, adj=adjoint: _raw().MatrixSolve(matrix=a, rhs=b, adjoint=adj),
                  _solve_inputs(shape, k, dt), dt, dynamic=shape == (2, 4, 4))


def _tri_inputs(ashape, bshape, dtype):
    def make(rng):
        a = rand(rng, ashape, dtype, -1, 1) + 3 * np.eye(ashape[-1])
        return [a.astype(dtype), rand(rng, bshape, dtype, -2, 2)]
    return make


for dt in ALL:
    for ashape, bshape in [((4, 4), (4, 2)), ((2, 1, 3, 3), (3, 3, 1)), ((0, 0), (0, 3)),
                           ((5, 5), (5, 0))]:
        for lower in (True, False):
            for adjoint in (False, True):
                _case(f"trisolve_{dt}_{_sid(ashape)}_{_sid(bshape)}_{lower}_{adjoint}",
                      ("MatrixTriangularSolve",),
                      lambda a, b, lo=lower, adj=adjoint: _raw().MatrixTriangularSolve(
                          matrix=a, rhs=b, lower=lo, adjoint=adj),
                      _tri_inputs(ashape, bshape, dt), dt, dynamic=ashape == (4, 4))


def _ls_inputs(m, n, k, dtype, batch=()):
    def make(rng):
        return [rand(rng, batch + (m, n), dtype, -1, 1), rand(rng, batch + (m, k), dtype, -1, 1)]
    return make


for dt in ALL:
    for m, n in [(6, 3), (3, 5), (4, 4)]:
        for l2 in (0.0, 0.5):
            for fast in (True, False):
                if not fast and l2:
                    continue  # TF: fast=False supports only l2_regularizer=0
                if not fast and m < n:
                    continue  # TF's complete orthogonal decomposition path is m >= n only
                _case(f"solvels_{dt}_{m}x{n}_{l2}_{fast}", ("MatrixSolveLs",),
                      lambda a, b, l2=l2, f=fast: _raw().MatrixSolveLs(
                          matrix=a, rhs=b, l2_regularizer=np.float64(l2), fast=f),
                      _ls_inputs(m, n, 2, dt, (2,)), dt,
                      tol=1e-3 if dt in ("float32", "complex64") else 1e-9)


# -- eigen, svd, qr, lu --------------------------------------------------------------------------

def _eig_fn(compute_v):
    def fn(x):
        e, v = _raw().SelfAdjointEigV2(input=x, compute_v=compute_v)
        if not compute_v:
            return e
        return e, _tf().abs(v)  # eigenvectors are unique up to sign / phase
    return fn


for dt in ALL:
    for shape in [(4, 4), (2, 3, 3), (1, 1), (0, 0)]:
        for cv in (True, False):
            _case(f"eigh_{dt}_{_sid(shape)}_{cv}", ("SelfAdjointEigV2",), _eig_fn(cv),
                  _hermitian(shape, dt), dt, dynamic=shape == (2, 3, 3))


def _eig_general_fn(tout, compute_v):
    def fn(x):
        tf = _tf()
        e, v = _raw().Eig(input=x, compute_v=compute_v, Tout=tout)
        # order and phases are unspecified: compare power sums of the eigenvalues and the
        # reconstruction v diag(e) v^-1
        sums = tuple(tf.reduce_sum(e ** k, axis=-1) for k in range(1, x.shape[-1] + 1))
        if not compute_v:
            return sums
        rebuilt = tf.matmul(v * e[..., None, :], _raw().MatrixInverse(input=v))
        return sums + (rebuilt,)
    return fn


for dt, tout in [("float32", "complex64"), ("float64", "complex128"),
                 ("complex64", "complex64"), ("complex128", "complex128")]:
    for shape in [(3, 3), (2, 4, 4), (1, 1)]:
        for cv in (True, False):
            _case(f"eig_{dt}_{_sid(shape)}_{cv}", ("Eig",), _eig_general_fn(tout, cv),
                  lambda rng, s=shape, d=dt: [rand(rng, s, d, -1, 1)], dt,
                  tol=1e-3 if dt in ("float32", "complex64") else 1e-9)


def _svd_fn(compute_uv, full):
    def fn(x):
        tf = _tf()
        s, u, v = _raw().Svd(input=x, compute_uv=compute_uv, full_matrices=full)
        if not compute_uv:
            return s
        k = min(x.shape[-2], x.shape[-1])
        out = [s, tf.abs(u[..., :k]), tf.abs(v[..., :k])]
        if full:  # the extra columns are any basis of the complement: compare its projector
            for w in (u, v):
                extra = w[..., k:]
                out.append(tf.matmul(extra, extra, adjoint_b=True))
        return tuple(out)
    return fn


for dt in ALL:
    for shape in [(4, 4), (2, 5, 3), (3, 6), (1, 1), (0, 3)]:
        for cuv, full in [(True, False), (True, True), (False, False)]:
            if shape == (0, 3) and cuv:
                continue
            _case(f"svd_{dt}_{_sid(shape)}_{cuv}_{full}", ("Svd",), _svd_fn(cuv, full),
                  lambda rng, s=shape, d=dt: [rand(rng, s, d, -1, 1)], dt)


for dt in ALL:
    for shape in [(4, 4), (2, 5, 3), (3, 6), (1, 1)]:
        for full in (False, True):
            _case(f"qr_{dt}_{_sid(shape)}_{full}", ("Qr",),
                  lambda x, f=full: tuple(_raw().Qr(input=x, full_matrices=f)),
                  lambda rng, s=shape, d=dt: [rand(rng, s, d, -1, 1)], dt,
                  dynamic=shape == (2, 5, 3))

for dt in ALL:
    for shape in [(4, 4), (2, 5, 5), (1, 1), (0, 0)]:
        for idx in ("int32", "int64"):
            _case(f"lu_{dt}_{_sid(shape)}_{idx}", ("Lu",),
                  lambda x, t=idx: tuple(_raw().Lu(input=x, output_idx_type=t)),
                  lambda rng, s=shape, d=dt: [rand(rng, s, d, -1, 1)], dt)
# a singular matrix (one of a batch), a NaN first pivot: TF refuses them ("not invertible");
# a NaN later pivot it passes over
_case("lu_singular_in_batch", ("Lu",), lambda x: tuple(_raw().Lu(input=x)),
      [np.array([[[1, 0, 0], [0, 2, 0], [0, 0, 3]], [[1, 2, 3], [2, 4, 6], [1, 1, 1]]],
                np.float32)], rejects="Input is not invertible", dynamic=True)
_case("lu_zero_complex", ("Lu",), lambda x: tuple(_raw().Lu(input=x)),
      [np.array([[0j]], np.complex128)], rejects="Input is not invertible")
_case("lu_nan_first_pivot", ("Lu",), lambda x: tuple(_raw().Lu(input=x)),
      [np.array([[np.nan, 1], [1, 1]], np.float64)], rejects="Input is not invertible")
_case("lu_nan_later_pivot", ("Lu",), lambda x: tuple(_raw().Lu(input=x)),
      [np.array([[2, 1], [1, np.nan]], np.float32)], dynamic=True)


# -- matrix functions ----------------------------------------------------------------------------

for dt in ALL:
    _case(f"sqrtm_{dt}", ("MatrixSquareRoot",), lambda x: _raw().MatrixSquareRoot(input=x),
          _spd((2, 4, 4), dt), dt, tol=1e-3 if dt in ("float32", "complex64") else 1e-8)

for dt in ("complex64", "complex128"):
    _case(f"logm_{dt}", ("MatrixLogarithm",), lambda x: _raw().MatrixLogarithm(input=x),
          _spd((2, 3, 3), dt), dt, tol=1e-3 if dt == "complex64" else 1e-8)


# -- tridiagonal and banded ----------------------------------------------------------------------

def _tridiag_inputs(batch, m, k, dtype):
    def make(rng):
        d = rand(rng, batch + (3, m), dtype, -1, 1)
        d[..., 1, :] += 4
        return [d, rand(rng, batch + (m, k), dtype, -1, 1)]
    return make


for dt in ALL:
    for batch, m, k in [((), 5, 2), ((2,), 4, 1), ((), 1, 3)]:
        _case(f"tridiag_solve_{dt}_{m}_{k}_{len(batch)}", ("TridiagonalSolve",),
              lambda d, b: _raw().TridiagonalSolve(diagonals=d, rhs=b),
              _tridiag_inputs(batch, m, k, dt), dt)


def _tridiag_special(kind, m, dtype):
    """Diagonals TF's kernel fails on, or a long system: ``singular`` (a zero row), ``thomas``
    (a zero first diagonal entry: invertible, but the Thomas algorithm divides by it),
    ``long`` (2,000 rows, diagonally dominant)."""
    def make(rng):
        d = rand(rng, (2, 3, m), dtype, -1, 1)
        d[..., 1, :] += 4
        if kind == "singular":  # (row 2 of the first matrix all zeros; the second solvable)
            d[0, 2, 2], d[0, 1, 2], d[0, 0, 2] = 0, 0, 0
        elif kind == "thomas":
            d[0, 1, 0] = 0
        return [d, rand(rng, (2, m, 2), dtype, -1, 1)]
    return make


# a matrix that meets a zero pivot gives NaN for its whole solution (zeros if complex: TF
# fills it with quiet_NaN(), which C++ leaves 0 for complex numbers); the others are solved
for dt in ALL:
    for kind, pivoting in (("singular", True), ("singular", False), ("thomas", False),
                           ("thomas", True)):
        _case(f"tridiag_solve_{kind}_{'pivoting' if pivoting else 'no_pivoting'}_{dt}",
              ("TridiagonalSolve",),
              lambda d, b, p=pivoting: _raw().TridiagonalSolve(diagonals=d, rhs=b,
                                                               partial_pivoting=p),
              _tridiag_special(kind, 6, dt), dt)
for pivoting in (True, False):
    _case(f"tridiag_solve_long_{'pivoting' if pivoting else 'no_pivoting'}",
          ("TridiagonalSolve",),
          lambda d, b, p=pivoting: _raw().TridiagonalSolve(diagonals=d, rhs=b,
                                                           partial_pivoting=p),
          _tridiag_special("long", 2000, "float64"), "float64")


def _tridiag_perturbed(kind, m, dtype):
    """Diagonals for ``perturb_singular``: ``singular`` (a zero row in the first matrix),
    ``zero`` (all zero: every pivot perturbed from 0; a right-hand side of 1e30 doubles the
    perturbation some 100 times per pivot in float64), ``tiny`` (entries ~1e-30: pivots scaled
    up with their rows), ``one`` (M = 1, a zero), ``well`` (invertible: the plain solve)."""
    def make(rng):
        d = rand(rng, (2, 3, m), dtype, -1, 1)
        b = rand(rng, (2, m, 2), dtype, -1, 1)
        if kind == "singular":
            d[0, :, m // 2] = 0
        elif kind == "zero":
            d[...] = 0
            b[1] *= 1e30 if dtype.endswith("64") and dtype != "complex64" else 1e10
        elif kind == "tiny":
            d *= 1e-30
        elif kind == "one":
            d[0, 1] = 0
        else:
            d[..., 1, :] += 4
        return [d, b]
    return make


# perturb_singular (TF's xLAGTF/xLAGTS solve): a singular matrix gets a finite solution. Its
# large components come from pivots TF perturbs on the scale of rounding, so only systems whose
# result does not hang on the last bit of complex arithmetic are compared for complex types
for dt in ALL:
    for kind, m in (("singular", 7), ("zero", 5), ("tiny", 6), ("one", 1), ("well", 9)):
        if kind == "singular" and dt.startswith("complex"):
            continue
        _case(f"tridiag_solve_perturbed_{kind}_{dt}", ("TridiagonalSolve",),
              lambda d, b: _raw().TridiagonalSolve(diagonals=d, rhs=b, partial_pivoting=True,
                                                   perturb_singular=True),
              _tridiag_perturbed(kind, m, dt), dt)
_case("tridiag_solve_perturbed_needs_pivoting", ("TridiagonalSolve",),
      lambda d, b: _raw().TridiagonalSolve(diagonals=d, rhs=b, partial_pivoting=False,
                                           perturb_singular=True),
      _tridiag_perturbed("well", 4, "float64"), "float64",
      rejects=r"perturb_singular=True requires partial_pivoting=True")


def _tridiag_matmul(d, b):
    return _raw().TridiagonalMatMul(superdiag=d[..., 0:1, :], maindiag=d[..., 1:2, :],
                                    subdiag=d[..., 2:3, :], rhs=b)


for dt in ALL:
    _case(f"tridiag_matmul_{dt}", ("TridiagonalMatMul",), _tridiag_matmul,
          _tridiag_inputs((2,), 5, 3, dt), dt)


def _banded_inputs(batch, k, m, n, dtype):
    def make(rng):
        band = rand(rng, batch + (k, m), dtype, -1, 1)
        return [band, rand(rng, batch + (m, n), dtype, -1, 1)]
    return make


def _banded_fn(lower, adjoint):
    def fn(band, b):
        tf = _tf()
        # a dominant diagonal keeps the system well conditioned
        k = band.shape[-2]
        row = 0 if lower else k - 1
        band = tf.concat([band[..., :row, :], band[..., row:row + 1, :] + 4,
                          band[..., row + 1:, :]], axis=-2)
        return _raw().BandedTriangularSolve(matrix=band, rhs=b, lower=lower, adjoint=adjoint)
    return fn


for dt in FLOATS:
    for k, m in [(2, 5), (3, 4), (1, 3)]:
        for lower in (True, False):
            for adjoint in (False, True):
                _case(f"banded_solve_{dt}_{k}x{m}_{lower}_{adjoint}", ("BandedTriangularSolve",),
                      _banded_fn(lower, adjoint), _banded_inputs((), k, m, 2, dt), dt)


# -- band part and diagonals ---------------------------------------------------------------------

for dt in ["float32", "int32", "bool", "complex64", "float16"]:
    for lo, up in [(0, 0), (1, 2), (-1, 0), (0, -1), (-1, -1), (3, 1)]:
        _case(f"band_part_{dt}_{lo}_{up}", ("MatrixBandPart",),
              lambda x, lo_, up_: _raw().MatrixBandPart(input=x, num_lower=lo_,
                                                        num_upper=up_),
              lambda rng, d=dt, lo=lo, up=up: [rand(rng, (2, 4, 5), d),
                                               np.array(lo, np.int64), np.array(up, np.int64)],
              tol=0, dynamic=(lo, up) == (1, 2))

ALIGNS = ["LEFT_LEFT", "LEFT_RIGHT", "RIGHT_LEFT", "RIGHT_RIGHT"]


def _diag_part_inputs(shape, k, dtype="float32", pad=0):
    def make(rng):
        return [rand(rng, shape, dtype), np.array(k, np.int32), np.array(pad, dtype)]
    return make


for align in ALIGNS:
    for shape, k in [((2, 4, 5), (-1, 2)), ((3, 3), 0), ((5, 3), (-3, -1)), ((3, 6), (1, 4)),
                     ((2, 4, 4), 2), ((4, 2), (-2, 1))]:
        kid = "_".join(map(str, np.atleast_1d(k)))
        _case(f"diag_part_v3_{align}_{_sid(shape)}_{kid}", ("MatrixDiagPartV3",),
              lambda x, k_, p, a=align: _raw().MatrixDiagPartV3(input=x, k=k_, padding_value=p,
                                                                align=a),
              _diag_part_inputs(shape, k, pad=7), tol=0, dynamic=shape == (2, 4, 5))


def _diag_inputs(shape, k, rows, cols, dtype="float32", pad=0):
    def make(rng):
        return [rand(rng, shape, dtype), np.array(k, np.int32), np.array(rows, np.int32),
                np.array(cols, np.int32), np.array(pad, dtype)]
    return make


DIAG_SPECS = [((2, 3, 4), (-1, 1), -1, -1), ((4,), 0, -1, -1), ((3,), 1, -1, -1),
              ((3,), -2, 5, -1), ((2, 2, 3), (0, 1), -1, 4), ((3, 3), (-2, 0), 5, 3),
              ((2, 3), 0, 3, 5)]
for align in ALIGNS:
    for shape, k, rows, cols in DIAG_SPECS:
        kid = "_".join(map(str, np.atleast_1d(k)))
        _case(f"diag_v3_{align}_{_sid(shape)}_{kid}_{rows}_{cols}", ("MatrixDiagV3",),
              lambda d, k_, r, c, p, a=align: _raw().MatrixDiagV3(
                  diagonal=d, k=k_, num_rows=r, num_cols=c, padding_value=p, align=a),
              _diag_inputs(shape, k, rows, cols, pad=-1), tol=0)


def _set_diag_inputs(shape, dshape, k, dtype="float32"):
    def make(rng):
        return [rand(rng, shape, dtype), rand(rng, dshape, dtype, 10, 20),
                np.array(k, np.int32)]
    return make


SET_SPECS = [((2, 4, 5), (2, 4, 4), (-1, 2)), ((3, 3), (3,), 0), ((4, 3), (2, 3), (-1, 0)),
             ((3, 5), (3,), 2)]
for align in ALIGNS:
    for shape, dshape, k in SET_SPECS:
        kid = "_".join(map(str, np.atleast_1d(k)))
        _case(f"set_diag_v3_{align}_{_sid(shape)}_{kid}", ("MatrixSetDiagV3",),
              lambda x, d, k_, a=align: _raw().MatrixSetDiagV3(input=x, diagonal=d, k=k_,
                                                               align=a),
              _set_diag_inputs(shape, dshape, k), tol=0, dynamic=shape == (3, 3))

for dt in ["int32", "bool", "complex128", "float64"]:
    _case(f"diag_part_v2_{dt}", ("MatrixDiagPartV2",),
          lambda x, k_, p: _raw().MatrixDiagPartV2(input=x, k=k_, padding_value=p),
          _diag_part_inputs((2, 4, 5), (-1, 2), dt), tol=0)
    _case(f"diag_v2_{dt}", ("MatrixDiagV2",),
          lambda d, k_, r, c, p: _raw().MatrixDiagV2(diagonal=d, k=k_, num_rows=r,
                                                     num_cols=c, padding_value=p),
          _diag_inputs((2, 3, 4), (-1, 1), -1, -1, dt), tol=0)
    _case(f"set_diag_v2_{dt}", ("MatrixSetDiagV2",),
          lambda x, d, k_: _raw().MatrixSetDiagV2(input=x, diagonal=d, k=k_),
          _set_diag_inputs((2, 4, 5), (2, 4, 4), (-1, 2), dt), tol=0)
    _case(f"diag_part_v1_{dt}", ("MatrixDiagPart",),
          lambda x: _raw().MatrixDiagPart(input=x),
          lambda rng, d=dt: [rand(rng, (2, 3, 4), d)], tol=0, dynamic=True)
    _case(f"diag_v1_{dt}", ("MatrixDiag",), lambda d: _raw().MatrixDiag(diagonal=d),
          lambda rng, d=dt: [rand(rng, (2, 3), d)], tol=0, dynamic=True)
    _case(f"set_diag_v1_{dt}", ("MatrixSetDiag",),
          lambda x, d: _raw().MatrixSetDiag(input=x, diagonal=d),
          lambda rng, d=dt: [rand(rng, (2, 4, 3), d), rand(rng, (2, 3), d)], tol=0,
          dynamic=True)

for dt in ["float32", "int64", "complex64", "bool"]:
    for shape in [(4,), (2, 3), (1,), (0,)]:
        if dt == "bool":
            continue  # TF's Diag has no bool kernel
        _case(f"diag_{dt}_{_sid(shape)}", ("Diag",), lambda d: _raw().Diag(diagonal=d),
              lambda rng, s=shape, d=dt: [rand(rng, s, d)], tol=0, dynamic=shape == (2, 3))
        _case(f"diag_part_{dt}_{_sid(shape)}", ("DiagPart",),
              lambda x: _raw().DiagPart(input=x),
              lambda rng, s=shape, d=dt: [rand(rng, s + s, d)], tol=0)

for dt in ["float32", "float64", "int32", "int64", "uint8", "float16"]:
    for shape in [(3,), (4, 3), (2, 2, 3), (0, 3)]:
        _case(f"cross_{dt}_{_sid(shape)}", ("Cross",), lambda a, b: _raw().Cross(a=a, b=b),
              lambda rng, s=shape, d=dt: [rand(rng, s, d, 0, 5), rand(rng, s, d, 0, 5)],
              tol=1e-3 if dt == "float16" else 1e-6, dynamic=shape == (4, 3))
