"""Functions of float32 values from tables: Erfc (the normal distribution function Phi from a
float64 table of cubics, ``numerics/cubic.py``) and Erf (erf(x) / x from a float32 table of
quadratics, ``numerics/quadratic.py``) on float32 are within one ulp of the exactly rounded
value.

They were checked on all 2**32 float32 inputs against scipy's float64 functions when written;
these tests pin samples, every interval's ends, the tables' edges and either side of them,
subnormals, huge values, infinities and NaN (without scipy: ``math.erf``/``math.erfc`` give the
exact values, rounded once to float32)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfdeploy.kernels.special.erf_gamma import ERF_OVER_X, Erf, Erfc
from tfdeploy.numerics import cubic, quadratic

RNG = np.random.default_rng(11)


def _exact(fn, x: np.ndarray) -> np.ndarray:
    return np.array([fn(v) for v in x.astype(np.float64).tolist()]).astype(np.float32)


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32).astype(np.int64))


def _around(values) -> np.ndarray:
    """``values`` as float32, with the float32 numbers either side of each."""
    v = np.asarray(values, np.float32)
    return np.concatenate([v, np.nextafter(v, np.float32(np.inf)),
                           np.nextafter(v, np.float32(-np.inf))])


def _inputs(table, scale: float, extra) -> np.ndarray:
    """Samples, the ends of every interval of ``table`` (in x = y / scale) and ``extra``."""
    ends = (table.low + np.arange(table.intervals + 1) / table.steps) / scale
    sample = np.concatenate([RNG.standard_normal(20000) * s for s in (1e-3, 1, 3, 6)])
    return np.concatenate([sample.astype(np.float32), _around(ends), _around(extra)])


EDGES = [0.0, 1e-45, -1e-45, 1e-38, -1e-38, 1e-30, -1e-30, 3e38, -3e38]


@pytest.mark.parametrize("name", ["Erf", "Erfc"])
def test_float32_within_one_ulp_of_exact(name):
    kernel, exact_fn = {"Erf": (Erf, math.erf), "Erfc": (Erfc, math.erfc)}[name]
    if name == "Erf":
        x = _inputs(ERF_OVER_X, 1.0, EDGES + [3.92, -3.92, 4, -4, 0.5, -0.5])
    else:
        x = _inputs(cubic.PHI, -math.sqrt(2), EDGES + [9.19, 9.2, 10.05, 10.06, 10.6, -4.25])
    got = kernel(x)
    assert got.dtype == np.float32 and got.shape == x.shape
    want = _exact(exact_fn, x)
    u = _ulps(got, want)
    assert u.max() <= 1, (x[np.argmax(u)], got[np.argmax(u)], want[np.argmax(u)])
    # (Erf: E rounded, then the product: about a quarter one ulp away; Erfc: rounded once)
    assert np.count_nonzero(u) < (0.3 if name == "Erf" else 0.01) * x.size
    assert np.array_equal(np.signbit(got), np.signbit(want))  # (-0.0 stays -0.0 in erf)
    # a value's result does not depend on the others beside it, nor on the layout
    np.testing.assert_array_equal(kernel(x[::-1].copy())[::-1], got)
    np.testing.assert_array_equal(kernel(np.stack([x, x])[:, ::2]), np.stack([got, got])[:, ::2])
    big = np.tile(x, 3)  # (several blocks)
    np.testing.assert_array_equal(kernel(big), np.tile(got, 3))


def test_float32_nonfinite():
    x = np.array([np.inf, -np.inf, np.nan, -np.nan], np.float32)
    np.testing.assert_array_equal(Erf(x), [1, -1, np.nan, np.nan])
    np.testing.assert_array_equal(Erfc(x), [0, 2, np.nan, np.nan])
    assert Erf(np.zeros((0, 3), np.float32)).shape == (0, 3)


def test_other_dtypes_keep_the_float64_series():
    x = np.linspace(-5, 5, 101)
    np.testing.assert_allclose(Erf(x), [math.erf(v) for v in x], rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(Erfc(x), [math.erfc(v) for v in x], rtol=1e-14, atol=1e-300)
    assert Erf(x.astype(np.float16)).dtype == np.float16


def test_table_rows_and_arguments():
    t = cubic.CubicTable(lambda p: p * p, -1, 2, 4, -7.0, 9.0)
    rows = t.rows()
    assert rows.shape == (3 * 4 + 2, 4) and not rows.flags.writeable
    assert rows[0].tolist() == [-7, 0, 0, 0] and rows[-1].tolist() == [9, 0, 0, 0]
    y = np.array([-3, -1, -0.3, 0, 0.5, 1.99, 2, 50, np.inf, -np.inf], np.float32)
    out = np.empty_like(y)
    cubic.apply(y, out, t, 1.0, lambda r, x: None)
    np.testing.assert_allclose(out[1:6], y[1:6] ** 2, rtol=1e-6, atol=1e-7)  # (cubics: exact)
    np.testing.assert_array_equal(out[[0, 6, 7, 8, 9]], [-7, 9, 9, 9, -7])
    cubic.apply(y, out, t, 0.5, lambda r, x: None)  # f(scale * y)
    np.testing.assert_allclose(out[1:6], (y[1:6] / 2) ** 2, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError):
        cubic.CubicTable(abs, 0, 1, 3, 0, 0)


_TABLES = {"cubic": (cubic, cubic.CubicTable, Erfc), "quadratic": (quadratic,
                                                                   quadratic.QuadraticTable, Erf)}


@pytest.mark.parametrize("kind", sorted(_TABLES))
@pytest.mark.parametrize("blocks,extra", [(1, 256), (1, "quarter"), (2, 100), (3, -7)])
def test_blocks_and_a_short_remainder(kind, blocks, extra, monkeypatch):
    """Arrays of more than a block go in blocks, a remainder under a quarter block joining the
    last one (one block fewer): every value's result is its own, whatever the blocks, the same
    as in a call of its own (Erfc: float64 cubics; Erf: float32 quadratics)."""
    module, cls, kernel = _TABLES[kind]
    n = blocks * module.BLOCK + (module.BLOCK // 4 if extra == "quarter" else extra)
    calls = []
    evaluate = cls.evaluate

    def counted(self, x, *args):
        calls.append(x.size)
        return evaluate(self, x, *args)

    monkeypatch.setattr(cls, "evaluate", counted)
    x = (RNG.standard_normal(n) * 3).astype(np.float32)
    got = kernel(x)
    full, rem = divmod(n, module.BLOCK)
    want_blocks = full + (rem >= module.BLOCK // 4) if full else 1
    assert len(calls) == want_blocks and sum(calls) == n, calls
    assert max(calls) < module.BLOCK + module.BLOCK // 4
    np.testing.assert_array_equal(got[::97], np.concatenate([kernel(x[i:i + 1])
                                                             for i in range(0, n, 97)]))


def test_quadratic_table_rows_and_arguments():
    """A quadratic is interpolated exactly; its constant term is split in two float32 numbers;
    the edge rows (scaled) outside, infinities too; NaN stays NaN."""
    t = quadratic.QuadraticTable(lambda p: p * p + 1 / 3, -1, 2, 4, -7.0, 9.0, scale=2.0)
    rows = t.rows()
    assert rows.shape == (3 * 4 + 2, 4) and rows.dtype == np.float32 and not rows.flags.writeable
    assert rows[0].tolist() == [-14, 0, 0, 0] and rows[-1].tolist() == [18, 0, 0, 0]
    assert rows[1, 1] != 0  # (2 / 3 + 2 on the first interval: not a float32 number)
    np.testing.assert_allclose(rows[1:-1, 0].astype(np.float64) + rows[1:-1, 1],
                               2 * ((-1 + np.arange(12) / 4) ** 2 + 1 / 3), rtol=1e-14)
    y = np.array([-3, -1, -0.3, 0, 0.5, 1.99, 2, 50, np.inf, -np.inf, np.nan], np.float32)
    out = np.empty_like(y)

    def finish(p, yb, ob, s):
        np.copyto(ob, p)

    with np.errstate(invalid="ignore"):
        quadratic.apply(y, out, t, finish)
    np.testing.assert_allclose(out[1:6], 2 * (y[1:6].astype(np.float64) ** 2 + 1 / 3),
                               rtol=1e-6)
    np.testing.assert_array_equal(out[[0, 6, 7, 8, 9]], [-14, 18, 18, 18, -14])
    assert np.isnan(out[10])
    with pytest.raises(ValueError):
        quadratic.QuadraticTable(abs, 0, 1, 3, 0, 0)
