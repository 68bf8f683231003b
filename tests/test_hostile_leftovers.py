"""Hardening, leftovers of the hostile probes (docs/security.md): empty operands TF refuses,
int32 offsets past 2**31, huge-but-empty operands of broadcasts, control flow and TensorLists
with hostile attributes and inputs. Each case fails cleanly (a tfdeploy error) or gives TF's
result, at once; the TF-marked tests check the expectations against TF itself."""

from __future__ import annotations

import re
import time
import tracemalloc

import numpy as np
import pytest

import tfdeploy as td

_BIG = 2 ** 31 - 1


def _kernel(op: str):
    from tfdeploy import registry

    d = registry.get_opdef(op)
    return d.impls.get(d.preferred) or next(iter(d.impls.values()))


def _z(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def _i32(*shape_or_values, shape=None):
    return np.array(shape_or_values, np.int32) if shape is None else np.zeros(shape, np.int32)


def _tf_outcome(op: str, kwargs: dict):
    """TF's result of ``tf.raw_ops.<op>(**kwargs)`` as (shape, dtype) pairs, or its error."""
    tf = pytest.importorskip("tensorflow")
    try:
        out = getattr(tf.raw_ops, op)(**kwargs)
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
        return e
    outs = out if isinstance(out, (list, tuple)) else (out,)
    return [(tuple(o.shape), o.numpy().dtype) for o in outs]


def _bounded(call):
    """``call()``'s result or error, checked to take under 1 s and 1 MiB."""
    td.setup(max_tensor_bytes=1 << 30)
    tracemalloc.start()
    try:
        t = time.perf_counter()
        try:
            out = call()
        except Exception as e:  # (the caller checks which)
            out = e
        assert time.perf_counter() - t < 1
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
        return out
    finally:
        tracemalloc.stop()
        td.setup(max_tensor_bytes=None)


def _expected(out, expect, dtype, error=ValueError):
    """``out`` is ``error`` matching the text ``expect``, or an array of shape ``expect``."""
    if isinstance(expect, str):
        assert isinstance(out, error), repr(out)
        assert re.search(expect, str(out)), str(out)
    else:
        assert not isinstance(out, Exception), repr(out)
        assert (out.shape, out.dtype) == (expect, np.dtype(dtype))


# ------------------------------------------------------------------ GatherNd of empty params

# (params, indices, policy, expected: a ValueError's text or the result's shape)
_GATHER_ND = [
    (_z(0, 3), _i32([0]), "", "params of shape \\[0, 3\\] is empty"),
    (_z(0, 3), _i32([1]), "", "params of shape \\[0, 3\\] is empty"),
    (_z(0, 3), _i32(0), "", "requested 1 slices"),
    (_z(3, 0), _i32([1]), "", "params of shape \\[3, 0\\] is empty"),
    (_z(3, 0), _i32([1, 0]), "", "is empty"),
    (_z(0, 3), _i32(shape=(2, 0)), "", "requested 2 slices"),
    (_z(0), _i32(shape=(2, 0)), "", "requested 2 slices"),
    (_z(0, 3), _i32([0]), "IGNORE", "is empty"),  # (was numpy's raw IndexError)
    (_z(0, 3), _i32(shape=(2, 0)), "IGNORE", "is empty"),
    (_z(0, 3), _i32(shape=(_BIG, 0)), "", "requested 2147483647 slices"),
    (np.float32(5), _i32(shape=(2, 0)), "", "params must be at least a vector"),
    (np.float32(5), _i32(shape=(0, 0)), "", "params must be at least a vector"),
    (_z(0, 3), _i32(shape=(0, 1)), "", (0, 3)),  # (no slices asked: TF's empty result)
    (_z(0, 3), _i32(shape=(0, 2)), "", (0,)),
]


@pytest.mark.parametrize("params,indices,policy,expect", _GATHER_ND)
def test_gather_nd_of_empty_params_is_refused_as_tf_does(params, indices, policy, expect):
    """(GatherNd gave an empty result for slices of empty params, a numpy IndexError with
    bad_indices_policy IGNORE, and repeated a scalar params: TF refuses all three.)"""
    kernel = _kernel("GatherNd")
    out = _bounded(lambda: kernel(params, indices, bad_indices_policy=policy))
    _expected(out, expect, np.float32)


@pytest.mark.tf
@pytest.mark.parametrize("params,indices,policy,expect",
                         [c for c in _GATHER_ND if c[1].shape[0] != _BIG])
def test_gather_nd_of_empty_params_as_tf(params, indices, policy, expect):
    got = _tf_outcome("GatherNd", dict(params=params, indices=indices,
                                       bad_indices_policy=policy))
    if isinstance(expect, str):
        assert isinstance(got, Exception)
    else:
        assert got == [(expect, np.float32)]


# ------------------------------------------------------------------ BandedTriangularSolve

def _ones(*shape, dtype=np.float32):
    return np.ones(shape, dtype)


# (matrix, rhs, expected: a ValueError's text or the result's shape)
_BANDED = [
    (_ones(3, 2, 3), _z(3, 0), "rhs must not be empty, got shape \\[3, 0\\]"),
    (_ones(2, 3), _z(3, 0), "rhs must not be empty"),
    (_ones(1, 1), _z(1, 0), "rhs must not be empty"),
    (_ones(2, 3), _z(0, 3, 2), "rhs must not be empty"),
    (_ones(2, 3), _z(2, 0, 3, 2), "rhs must not be empty"),
    (_ones(2, 3), _z(0, 4), "rhs must not be empty"),  # (TF: emptiness before the rows)
    (_ones(3, 2, 3), _z(3, 0, 3, 1), "rhs must not be empty"),  # (was numpy's broadcast error)
    (_ones(2, 3), _z(_BIG, 0, 3, 1), "rhs must not be empty"),
    (_z(0, 2, 3), _z(3, 0), "matrix must not be empty"),  # (the matrix first, as TF)
    (_z(2, 0), _z(0, 0), "matrix must not be empty"),
    (_ones(2, 2, 3), _ones(3, 3, 2), "compatible batch dimensions"),  # (was numpy's text)
    (_ones(2, 3), _ones(4, 3), "the matrix has 3 rows, rhs 4"),
    (_ones(2, 3), _ones(3), "rhs must have rank >= 2"),
    (_ones(5, 3), _ones(3, 2), (3, 2)),
    (_ones(2, 3, dtype=np.float64), _ones(2, 3, 1, dtype=np.float64), (2, 3, 1)),
]


@pytest.mark.parametrize("matrix,rhs,expect", _BANDED)
def test_banded_triangular_solve_of_empty_operands_is_refused_as_tf_does(matrix, rhs, expect):
    """(An empty rhs gave an empty result, TF refuses it: 'In[1] must not be an empty
    tensor', for every dtype, whatever the matrix; mismatched batch dims gave numpy's
    broadcast message.)"""
    kernel = _kernel("BandedTriangularSolve")
    for lower, adjoint in [(True, False), (False, True)]:
        out = _bounded(lambda lo=lower, adj=adjoint: kernel(matrix, rhs, lower=lo, adjoint=adj))
        _expected(out, expect, matrix.dtype)


@pytest.mark.tf
@pytest.mark.parametrize("matrix,rhs,expect", [c for c in _BANDED if _BIG not in c[1].shape])
def test_banded_triangular_solve_of_empty_operands_as_tf(matrix, rhs, expect):
    got = _tf_outcome("BandedTriangularSolve", dict(matrix=matrix, rhs=rhs))
    if isinstance(expect, str):
        assert isinstance(got, Exception)
        if expect.startswith("rhs must not be empty"):
            assert "In[1] must not be an empty tensor" in str(got)
    else:
        assert got == [(expect, matrix.dtype)]


def _banded_case(k, m, n, band_batch, rhs_batch, lower, dtype, seed=0):
    """A well-conditioned band [..., K, M] (its diagonal row away from zero) and rhs."""
    r = np.random.default_rng(seed)

    def draw(shape):
        v = r.uniform(-1, 1, shape)
        return (v + 1j * r.uniform(-1, 1, shape) if np.dtype(dtype).kind == "c" else v)
    band = draw(band_batch + (k, m))
    band[..., 0 if lower else k - 1, :] += 3
    return band.astype(dtype), draw(rhs_batch + (m, n)).astype(dtype)


@pytest.mark.tf
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
@pytest.mark.parametrize("lower,adjoint", [(True, False), (True, True), (False, False),
                                           (False, True)])
def test_banded_triangular_solve_by_its_band_as_tf(lower, adjoint, dtype):
    """The substitution over the band alone (no dense M x M matrix): TF's values for the four
    triangles, a broadcast batch, K > M (the band cut to M diagonals), K = 1 (a division)."""
    tf = pytest.importorskip("tensorflow")
    kernel = _kernel("BandedTriangularSolve")
    for k, m, n, bb, rb in [(3, 7, 2, (), ()), (1, 5, 3, (2,), ()), (4, 4, 1, (), (3,)),
                            (6, 5, 2, (2, 1), (3,)), (2, 9, 1, (), ())]:
        band, rhs = _banded_case(k, m, n, bb, rb, lower, dtype)
        want = tf.raw_ops.BandedTriangularSolve(matrix=band, rhs=rhs, lower=lower,
                                                adjoint=adjoint).numpy()
        got = kernel(band, rhs, lower=lower, adjoint=adjoint)
        assert got.shape == want.shape and got.dtype == want.dtype
        tol = 1e-5 if np.dtype(dtype).itemsize <= 8 else 1e-12
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_banded_triangular_solve_of_a_long_band():
    """(The band was made a dense [M, M] matrix: M = 10^5 needed 40 GB and was refused by the
    tensor limit, where TF solves it.) Now it runs in O(M K), the residual of the band's
    product at float64 rounding; TF's values where TF is installed."""
    kernel = _kernel("BandedTriangularSolve")
    m = 100_000
    for lower, adjoint in [(True, False), (False, True)]:
        band, rhs = _banded_case(3, m, 2, (), (), lower, np.float64, seed=1)
        x = kernel(band, rhs, lower=lower, adjoint=adjoint)
        # T x, from the band: T's diagonal d (d = 1, 2) is row d (lower, right-aligned) or
        # row 2 - d (upper, left-aligned); the adjoint transposes it
        t = band[0 if lower else 2][:, None] * x
        for d in (1, 2):
            row = band[d if lower else 2 - d]
            if lower != adjoint:  # (T[i, i-d] x[i-d])
                t[d:] += (row[d:] if not adjoint else row[:m - d])[:, None] * x[:m - d]
            else:  # (T[i, i+d] x[i+d])
                t[:m - d] += (row[:m - d] if not adjoint else row[d:])[:, None] * x[d:]
        np.testing.assert_allclose(t, rhs, rtol=1e-10, atol=1e-10)
    try:
        import tensorflow as tf
    except ImportError:
        return
    band, rhs = _banded_case(4, m, 1, (), (), True, np.float32, seed=2)
    np.testing.assert_allclose(kernel(band, rhs), tf.raw_ops.BandedTriangularSolve(
        matrix=band, rhs=rhs).numpy(), rtol=1e-5, atol=1e-5)


def test_banded_triangular_solve_refuses_a_zero_on_the_first_diagonal_as_tf():
    """TF checks the first matrix's diagonal ('Input matrix is not invertible'); a zero on a
    later matrix's diagonal gives inf/NaN there, as in TF."""
    kernel = _kernel("BandedTriangularSolve")
    band = np.array([[[1, 1, 2], [0.5, 1, 1]], [[1, 0, 2], [0.5, 1, 1]]], np.float32)
    got = kernel(band, np.ones((3, 1), np.float32))
    np.testing.assert_allclose(got[0, :, 0], [1, 0, 0.5])
    assert got[1, 0, 0] == 1 and np.isnan(got[1, 1:, 0]).all()
    with pytest.raises(ValueError, match="not invertible"):
        kernel(band[::-1], np.ones((3, 1), np.float32))
    with pytest.raises(ValueError, match="not invertible"):  # (upper: the last row)
        kernel(band[1, ::-1], np.ones((3, 1), np.float32), lower=False)
    got = _tf_outcome("BandedTriangularSolve", dict(matrix=band[::-1],
                                                    rhs=np.ones((3, 1), np.float32)))
    assert isinstance(got, Exception) and "not invertible" in str(got)


def _tridiagonal_case(m, n, seed):
    rng = np.random.default_rng(seed)
    d = rng.uniform(-1, 1, (3, m))
    d[1] += 2.5  # (diagonally dominant but for a few rows, so pivoting swaps some)
    d[1, ::97] = 0.1
    return d, rng.uniform(-1, 1, (m, n))


def test_tridiagonal_solve_of_a_long_system():
    """(The diagonals were made a dense [M, M] matrix and solved by LU: M = 20,000 needed 3.2
    GB and ~10^12 multiply-adds, hours; TF solves it in O(M).) Now O(M), pivoting or not:
    the residual of the tridiagonal product at float64 rounding, TF's values where TF is
    installed."""
    kernel = _kernel("TridiagonalSolve")
    m = 20_000
    d, rhs = _tridiagonal_case(m, 2, seed=3)
    for pivoting in (True, False):
        t = time.perf_counter()
        x = kernel(d, rhs, partial_pivoting=pivoting)
        assert time.perf_counter() - t < 20
        r = d[1][:, None] * x
        r[:-1] += d[0, :-1, None] * x[1:]
        r[1:] += d[2, 1:, None] * x[:-1]
        np.testing.assert_allclose(r, rhs, rtol=1e-9, atol=1e-9)
        try:
            import tensorflow as tf
        except ImportError:
            continue
        np.testing.assert_allclose(x, tf.raw_ops.TridiagonalSolve(
            diagonals=d, rhs=rhs, partial_pivoting=pivoting).numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("perturb", [False, True])
def test_tridiagonal_solve_stops_at_the_loop_deadline(perturb):
    """Its rows are a loop, bounded as While loops are (checked every 1024 rows). With
    perturb_singular, the worst case: a zero matrix and a right-hand side of 1e300, each of its
    pivots perturbed ~1000 times (scalar steps, as TF's), 0.5 ms a row."""
    from tfdeploy.runtime import limits

    d, rhs = _tridiagonal_case(50_000, 1, seed=4)
    if perturb:
        d, rhs = np.zeros_like(d), rhs * 1e300
    t = time.perf_counter()
    with limits.deadline(0.05), pytest.raises(td.ResourceExhaustedError,
                                               match="deadline passed"):
        _kernel("TridiagonalSolve")(d, rhs, perturb_singular=perturb)
    assert time.perf_counter() - t < 3


def test_matrix_triangular_solve_of_incompatible_batches_names_them():
    out = _bounded(lambda: _kernel("MatrixTriangularSolve")(_ones(2, 3, 3), _ones(3, 3, 2)))
    _expected(out, "matrix \\[2, 3, 3\\] and rhs \\[3, 3, 2\\] must have compatible batch", None)


# ------------------------------------------------------------------ ConcatOffset past 2**31

# (axis, shapes (one dtype), TF's offsets along the axis: they wrap around in that dtype)
_CONCAT_OFFSETS = [
    (0, np.int32, [[_BIG, 1], [5, 1], [3, 1]], [0, _BIG, -2 ** 31 + 4]),
    (1, np.int32, [[1, _BIG], [1, 5], [1, 7]], [0, _BIG, -2 ** 31 + 4]),
    (0, np.int32, [[_BIG, 1]] * 3 + [[3, 1]], [0, _BIG, -2, _BIG - 2]),
    (0, np.int32, [[2 ** 30, 1], [2 ** 30, 1], [3, 1]], [0, 2 ** 30, -2 ** 31]),
    (0, np.int32, [[-2 ** 31, 1], [-1, 1], [3, 1]], [0, -2 ** 31, _BIG]),
    (0, np.int32, [[-5, 1], [3, 1], [3, 1]], [0, -5, -2]),
    (0, np.int64, [[2 ** 63 - 1, 1], [5, 1], [3, 1]], [0, 2 ** 63 - 1, -2 ** 63 + 4]),
    (0, np.int64, [[_BIG, 1], [5, 1], [3, 1]], [0, _BIG, _BIG + 5]),
]


@pytest.mark.parametrize("axis,dtype,shapes,offsets", _CONCAT_OFFSETS)
def test_concat_offsets_past_the_shapes_type_wrap_as_tf(axis, dtype, shapes, offsets):
    """(An offset past 2**31 - 1 of int32 shapes raised numpy's raw OverflowError 'out of
    bounds for int32'; TF's kernel adds them in the shapes' type, which wraps.)"""
    out = _bounded(lambda: _kernel("ConcatOffset")(np.int32(axis),
                                                   *[np.array(s, dtype) for s in shapes]))
    assert not isinstance(out, Exception), repr(out)
    assert [o.dtype for o in out] == [np.dtype(dtype)] * len(shapes)
    want = [[off if j == axis else 0 for j in range(2)] for off in offsets]
    assert [o.tolist() for o in out] == want


@pytest.mark.tf
@pytest.mark.parametrize("axis,dtype,shapes,offsets", _CONCAT_OFFSETS)
def test_concat_offsets_past_the_shapes_type_as_tf(axis, dtype, shapes, offsets):
    tf = pytest.importorskip("tensorflow")
    out = tf.raw_ops.ConcatOffset(concat_dim=np.int32(axis),
                                  shape=[np.array(s, dtype) for s in shapes])
    assert [o.numpy()[axis] for o in out] == offsets


# ------------------------------------------------------------------ the broadcast gate

def _fed_model(op: str, shapes, attrs: dict | None = None):
    """``op`` of fed tensors of unknown shape (a generic plan, whose broadcasting steps are
    size-guarded), warmed up on ones of the same ranks, and zeros of ``shapes`` to feed it
    (SelectV2's condition bool)."""
    from graphs import model_of, placeholder
    from tfdeploy.ir.graph import Node

    names = [f"x{i}" for i in range(len(shapes))]
    dts = ["bool" if op == "SelectV2" and i == 0 else "float32" for i in range(len(shapes))]
    m = model_of([placeholder(n, d, None) for n, d in zip(names, dts)] +
                 [Node("y", op, names, {"T": "float32", **(attrs or {})})], names, ["y"])
    m(*[np.ones((1,) * len(s), d) for s, d in zip(shapes, dts)])
    return m, [np.zeros(s, d) for s, d in zip(shapes, dts)]


@pytest.mark.parametrize("op,shapes,attrs,match", [
    # (empty, but its nonzero dims overflow numpy's sizes: was numpy's raw "array is too big")
    ("AddV2", [(2 ** 40, 0, 1), (1, 0, 2 ** 40)], {}, "empty, but its nonzero dims"),
    ("Mul", [(0, _BIG), (_BIG, 0, 1)], {}, "empty, but its nonzero dims"),
    ("SelectV2", [(2 ** 40, 0, 1), (1, 0, 2 ** 40), (1,)], {}, "empty, but its nonzero dims"),
    # (a product over an inner dim of 0 is m * n zeros: was numpy's "array is too big" or an
    # allocation of gigabytes; the gate skipped empty operands, and checked a batched product
    # as a broadcast of its operands)
    ("BatchMatMulV2", [(_BIG, 0), (0, _BIG)], {}, "matrix product would have shape"),
    ("BatchMatMulV2", [(2 ** 15, 0), (0, 2 ** 15)], {}, "matrix product would have shape"),
    ("BatchMatMulV3", [(2, 2 ** 15, 0), (0, 2 ** 15)], {"Tout": "float32"},
     "shape \\[2, 32768, 32768\\]"),
    ("BatchMatMulV2", [(0, 2 ** 15), (0, 2 ** 15)], {"adj_x": True},
     "shape \\[32768, 32768\\]"),
    ("MatMul", [(2 ** 15, 0), (2 ** 15, 0)], {"transpose_b": True},
     "shape \\[32768, 32768\\]"),
    # (not empty: [m, 2] @ [2, n] from two inputs of 256 KiB, 4 GiB; MatMul had no guard)
    ("MatMul", [(2 ** 15, 2), (2, 2 ** 15)], {}, "matrix product would have shape"),
    ("BatchMatMulV2", [(2 ** 15, 2), (2, 2 ** 15)], {}, "matrix product would have shape"),
])
def test_broadcasts_and_products_of_huge_but_empty_operands_are_checked(op, shapes, attrs,
                                                                        match):
    m, args = _fed_model(op, shapes, attrs)
    out = _bounded(lambda: m(*args))
    assert isinstance(out, td.ResourceExhaustedError), repr(out)
    assert re.search(f"'y' \\({op}\\).*{match}", str(out)), str(out)


@pytest.mark.parametrize("op,shapes,want", [
    ("AddV2", [(_BIG, 0), (1,)], (_BIG, 0)),
    ("Mul", [(0, 2 ** 20), (2 ** 20, 1, 1)], (2 ** 20, 0, 2 ** 20)),
    ("MatMul", [(3, 0), (0, 4)], (3, 4)),  # (TF's zeros)
    ("BatchMatMulV2", [(2, 3, 0), (0, 4)], (2, 3, 4)),
    # (numpy's matmul looped over the 2**31 empty matrices of the batch: 3.5 s)
    ("BatchMatMulV2", [(_BIG, 0, 3), (3, 4)], (_BIG, 0, 4)),
    ("BatchMatMulV2", [(3, 2), (_BIG, 2, 0)], (_BIG, 3, 0)),
])
def test_huge_but_empty_operands_within_the_limits_give_tf_results(op, shapes, want):
    m, args = _fed_model(op, shapes)
    out = _bounded(lambda: m(*args))
    assert not isinstance(out, Exception), repr(out)
    assert out.shape == want and out.dtype == np.float32 and not out.any()


def test_empty_batched_products_in_a_loop_body_are_checked_by_the_kernel():
    """(Loop bodies are not size-guarded, docs/security.md: the kernel checks the zeros of an
    empty product itself.)"""
    kernel = _kernel("BatchMatMulV2")
    out = _bounded(lambda: kernel(_z(2 ** 15, 0), _z(0, 2 ** 15)))
    assert isinstance(out, td.ResourceExhaustedError) and "matrix product" in str(out)
    out = _bounded(lambda: kernel(_z(2, 3, 0), _z(2, 0, 4), adj_x=False))
    assert out.shape == (2, 3, 4) and not out.any()


# ------------------------------------------------------------------ control flow and lists

def _case_and_for_models():
    from graphs import const, model_of, placeholder
    from tfdeploy.ir.graph import FuncAttr, Graph, Node, TensorSpec

    def fn(nodes, ins, outs):
        g = Graph(nodes, [TensorSpec(i, f"{i}:0", "float32", None) for i in ins],
                  [TensorSpec(o, f"{o}:0", "float32", None) for o in outs])
        g.functions = {}
        return g

    neg = fn([placeholder("a"), Node("n", "Neg", ["a"], {"T": "float32"})], ["a"], ["n"])
    body = fn([placeholder("i", "int32"), placeholder("a"), const("o", np.float32(1)),
               Node("n", "AddV2", ["a", "o"], {"T": "float32"})], ["i", "a"], ["n"])
    case = model_of([placeholder("i", "int32"), placeholder("x"),
                     Node("c", "Case", ["i", "x"], {"branches": [FuncAttr("f"),
                                                                 FuncAttr("g")]})],
                    ["i", "x"], ["c"])
    case.graphs["default"].functions = {"f": neg, "g": neg}
    loop = model_of([placeholder("s", "int32"), placeholder("l", "int32"),
                     placeholder("d", "int32"), placeholder("x"),
                     Node("w", "For", ["s", "l", "d", "x"], {"body": FuncAttr("b")})],
                    ["s", "l", "d", "x"], ["w"])
    loop.graphs["default"].functions = {"b": body}
    return case, loop


@pytest.mark.parametrize("index,match", [
    (np.int32([0, 1]), "branch_index must be an integer scalar, got int32 of shape \\[2\\]"),
    (np.int32([1]), "of shape \\[1\\]"),
    (np.zeros((_BIG, 0), np.int32), "of shape \\[2147483647, 0\\]"),
])
def test_case_index_and_for_bounds_must_be_integer_scalars(index, match):
    """(Case and For took int() of their index and bounds: a vector or an empty [2**31, 0]
    gave Python's 'only 0-dimensional arrays can be converted to Python scalars', a float
    index was truncated. TF's kernels refuse all but scalars of their int32 type.)"""
    case, loop = _case_and_for_models()
    with pytest.raises(td.ExecutionError, match=f"'c' \\(Case\\).*{match}"):
        case(index, np.float32(1))
    with pytest.raises(td.ExecutionError, match="'w' \\(For\\).*start must be an integer"):
        loop(index, np.int32(3), np.int32(1), np.float32(0))
    assert case(np.int32(0), np.float32(1)) == -1 and case(np.int32(_BIG), np.float32(1)) == -1
    assert loop(np.int32(0), np.int32(3), np.int32(1), np.float32(0)) == 3


def test_a_float_case_index_is_refused_not_truncated():
    """(A file's Case may read a float tensor as its index: it was truncated, 0.5 ran branch
    0; TF's branch_index is int32.)"""
    from tfdeploy.runtime.control import switch

    run = switch([lambda ins: "first", lambda ins: "last"])
    with pytest.raises(ValueError, match="branch_index must be an integer scalar, got float32"):
        run(np.float32(0.5))
    assert run(np.int64(2 ** 62)) == "last" and run(np.int32(-1)) == "last"


def test_tensor_list_from_huge_but_empty_tensor_is_refused_before_allocating():
    """(TensorListFromTensor of [2**31 - 1, 0], no bytes, made a list of 2**31 views: 16 GB;
    TF's list of 2**31 tensors would not fit either.) [0, 2**31 - 1] is a list of nothing."""
    from tfdeploy.kernels.lists import tensorlist as tl

    out = _bounded(lambda: tl.TensorListFromTensor(_z(_BIG, 0), np.int32([-1])))
    assert isinstance(out, td.ResourceExhaustedError) and "list's elements" in str(out)
    lst = _bounded(lambda: tl.TensorListFromTensor(_z(0, _BIG), np.int32([_BIG])))
    stacked = _bounded(lambda: tl.TensorListStack(lst, np.int32([_BIG]),
                                                  element_dtype="float32"))
    assert stacked.shape == (0, _BIG) and stacked.dtype == np.float32


def _caller_graph(node, functions):
    from graphs import placeholder
    from tfdeploy.ir.graph import Graph, TensorSpec

    ins = list(dict.fromkeys(node.inputs))
    g = Graph([*(placeholder(i, "int32" if i in ("i", "s", "l", "d") else "float32")
                 for i in ins), node],
              [TensorSpec(i, f"{i}:0", "int32" if i in ("i", "s", "l", "d") else "float32")
               for i in ins], [TensorSpec("y", f"{node.name}:0", "float32")])
    g.functions = functions
    return g


def _fn(nodes, ins, outs, dtype="float32"):
    from graphs import placeholder
    from tfdeploy.ir.graph import Graph, TensorSpec

    g = Graph([placeholder(i, dtype) for i in ins] + nodes,
              [TensorSpec(i, f"{i}:0", dtype) for i in ins],
              [TensorSpec(o, f"{o}:0", "float32") for o in outs])
    g.functions = {}
    return g


def _signature_cases():
    from tfdeploy.ir.graph import FuncAttr, Node

    neg = _fn([Node("n", "Neg", ["a"], {"T": "float32"})], ["a"], ["n"])
    two = _fn([Node("n", "Neg", ["a"], {"T": "float32"})], ["a"], ["n", "a"])
    pair = _fn([Node("n", "Neg", ["a"], {"T": "float32"})], ["a", "b"], ["n"])
    ints = _fn([Node("n", "Neg", ["a"], {"T": "int32"})], ["a"], ["n"], "int32")
    lt = _fn([Node("z", "Const", [], {"dtype": "bool", "value": np.bool_(False)})],
             ["a"], ["z", "z"])
    If = ("If", ["i", "x"], {"then_branch": FuncAttr("f"), "else_branch": FuncAttr("g"),
                             "Tin": ["float32"], "Tout": ["float32"]})
    return [
        (If, {"f": neg, "g": two}, "function 'g' returns 2 values, the node expects 1"),
        (If, {"f": pair, "g": neg}, "function 'f' takes 2 values, the node passes 1"),
        (If, {"f": neg, "g": ints}, "function 'g''s input 0 is int32, the node declares "
                                    "float32"),
        (("Case", ["i", "x"], {"branches": [FuncAttr("f"), FuncAttr("g")], "Tout": []}),
         {"f": neg, "g": neg}, "function 'f' returns 1 values, the node expects 0"),
        (("PartitionedCall", ["x", "x"], {"f": FuncAttr("f")}), {"f": neg},
         "function 'f' takes 1 values, the node passes 2"),
        (("While", ["x"], {"cond": FuncAttr("c"), "body": FuncAttr("f"), "T": ["float32"]}),
         {"c": lt, "f": neg}, "function 'c' returns 2 values, the node expects 1"),
        (("While", ["x"], {"cond": FuncAttr("c"), "body": FuncAttr("f"), "T": ["float32"]}),
         {"c": neg, "f": two}, "function 'f' returns 2 values, the node expects 1"),
        (("For", ["s", "l", "d", "x"], {"body": FuncAttr("f")}), {"f": neg},
         "function 'f' takes 1 values, the node passes 2"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_functions_must_fit_the_nodes_that_run_them(case, tmp_path):
    """(A branch or loop body taking or returning another number of values than its node
    passes or declares failed at its first call with Python's 'tuple index out of range', or
    ran; an input dtype other than declared ran on values of the node's. TF refuses such a
    graph when it loads it; so do td.Model and td.load.)"""
    from tfdeploy.ir.graph import Node

    (op, ins, attrs), functions, match = _signature_cases()[case]
    g = _caller_graph(Node("w", op, ins, attrs), functions)
    with pytest.raises(td.GraphError, match=f"node 'w' \\({op}\\): {re.escape(match)}"):
        td.Model()._add_graph(g, None)
    m = td.Model()
    m.graphs["default"] = g  # (saved without the check: a hostile file)
    path = tmp_path / "m.tfd"
    m.save(path)
    with pytest.raises(td.FileFormatError, match=re.escape(match)):
        td.load(path)


@pytest.mark.parametrize("op", ["If", "Case", "PartitionedCall"])
def test_function_results_must_have_the_declared_dtypes(op):
    """(A branch or called function returning another dtype than its node's Tout ran on:
    the node's consumers computed on int32 where the file declared float32. TF refuses such a
    graph when it loads it; tfdeploy refuses the call, naming the node and the function.)"""
    from tfdeploy.ir.graph import FuncAttr, Node

    neg = _fn([Node("n", "Neg", ["a"], {"T": "float32"})], ["a"], ["n"])
    cast = _fn([Node("n", "Cast", ["a"], {"SrcT": "float32", "DstT": "int32"})], ["a"], ["n"])
    nodes = {"If": ("If", ["i", "x"], {"then_branch": FuncAttr("f"), "Tin": ["float32"],
                                       "else_branch": FuncAttr("g"), "Tout": ["float32"]}),
             "Case": ("Case", ["i", "x"], {"branches": [FuncAttr("f"), FuncAttr("g")],
                                           "Tin": ["float32"], "Tout": ["float32"]})}
    for name in ("f", "g"):
        nodes[name] = ("PartitionedCall", ["x"], {"f": FuncAttr(name), "Tin": ["float32"],
                                                  "Tout": ["float32"]})
    models = {}
    for key in ([op] if op != "PartitionedCall" else ["f", "g"]):
        kind, ins, attrs = nodes[key]
        m = td.Model()
        m._add_graph(_caller_graph(Node("w", kind, ins, attrs), {"f": neg, "g": cast}), None)
        models[key] = m
    x = np.float32(2.5)
    if op == "PartitionedCall":
        assert models["f"](x) == np.float32(-2.5)
        run, good, bad = models["g"], None, (x,)
    else:
        run = models[op]
        good, bad = (np.int32(1 if op == "If" else 0), x), (np.int32(0 if op == "If" else 1), x)
    if good is not None:
        out = run(*good)
        assert out.dtype == np.float32 and out == -2.5
    with pytest.raises(td.ExecutionError, match=f"node 'w' \\({op}\\).*function 'g' returned "
                                                f"int32 as its output 0; the node declares "
                                                f"float32 \\(Tout\\)"):
        run(*bad)


@pytest.mark.parametrize("op,args,match", [
    ("Reshape", lambda: (_z(2, 3), np.float32([3.7, 2.2])), "shape must be integers"),
    ("Tile", lambda: (_z(2, 3), np.float32([1.5, 2])), "multiples must be integers"),
    ("BroadcastTo", lambda: (_z(1, 3), np.float32([2.9, 3])), "shape must be integers"),
    ("Slice", lambda: (_z(4, 4), np.float32([0.5, 0]), np.int32([2, 2])),
     "begin must be integers"),
    ("Fill", lambda: (np.float64([2.5, 2]), np.float32(1)), "dims must be integers"),
    ("Pad", lambda: (_z(2, 2), np.float32([[0.5, 1], [1, 1]])), "paddings must be integers"),
    ("OneHot", lambda: (np.int32([0, 1]), np.float32(3.9), np.float32(1), np.float32(0)),
     "depth must be an integer scalar"),
])
def test_float_sizes_are_refused_not_truncated(op, args, match):
    """(A file may feed a float tensor where TF's op takes int32 or int64 sizes: Reshape,
    Tile, BroadcastTo, Slice and Fill truncated them, OneHot's depth too, Pad raised Python's
    TypeError. TF's type constraints refuse such a graph.) Integer sizes work as before."""
    with pytest.raises(ValueError, match=match):
        _kernel(op)(*args())
    with pytest.raises(ValueError, match="EnsureShape: invalid shape"):
        _kernel("EnsureShape")(_z(2, 3), shape=[2, -5])
    assert _kernel("Reshape")(_z(2, 3), np.int64([3, 2])).shape == (3, 2)
    assert _kernel("Reshape")(_z(1), np.float32([])).shape == ()  # (an empty shape: any dtype)
    assert _kernel("EnsureShape")(_z(2, 3), shape=[-1, 3]).shape == (2, 3)
