"""numerics/half.py: float16 conversions equal numpy's astype bit for bit (the whole float32
range was checked once offline, on both of round_to_float16's paths; here every float16
boundary and tie on each path, and a random sample)."""

from __future__ import annotations

import numpy as np
import pytest

from tfdeploy.numerics import half
from tfdeploy.numerics.half import float16_to_float32, round_to_float16


def _want(y):
    with np.errstate(over="ignore"):
        return y.astype(np.float16).astype(np.float32)


def _same(got, want):
    assert got.dtype == np.float32 and got.shape == want.shape
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got.view(np.uint32)[~nan], want.view(np.uint32)[~nan])


def _boundaries():
    """Every finite float16 value but zero as float32 bits, and the float32 values next to
    each and to the ties halfway to the next float16 (both signs)."""
    f = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    u = f[np.isfinite(f) & (f > 0)].view(np.uint32).astype(np.int64)
    near = np.concatenate([u + d for d in (-2, -1, 0, 1, 2)] +
                          [u + (1 << 12) + d for d in (-1, 0, 1)] +
                          [u + (1 << 13) + d for d in (-1, 0, 1)]).astype(np.uint32)
    y = near.view(np.float32)
    return np.concatenate([y, -y, np.float32([0.0, -0.0, 2.0 ** -149, -(2.0 ** -149)])])


@pytest.fixture
def exponent_path_refused(monkeypatch):
    def refuse(y):
        raise AssertionError("took the exponent-bits rounding")
    monkeypatch.setattr(half, "_by_exponent", refuse)


def test_veltkamp_path_on_every_boundary(exponent_path_refused):
    """Every array of values up to 65504 takes the split (the fixture refuses the other path):
    ties to even in every binade, float16's subnormals and the values that round to zero
    keep their sign, in a new array and in place."""
    y = _boundaries()
    y = y[np.abs(y) <= 65504]
    want = _want(y)
    _same(round_to_float16(y), want)
    assert np.array_equal(np.signbit(round_to_float16(y)), np.signbit(y))
    _same(round_to_float16(y[::3]), want[::3])
    z = y.reshape(-1, 4).copy()
    assert round_to_float16(z, z) is z
    _same(z, want.reshape(-1, 4))
    out = np.empty_like(y)
    assert round_to_float16(y, out) is out
    _same(out, want)


def test_small_positives_on_every_boundary():
    """The rounding of values in [0, 65504] (after a ReLU: four passes) on every float16
    boundary and tie of that range; -0 comes out +0."""
    y = _boundaries()
    y = y[(y >= 0) & (y <= 65504)]
    got = half.round_small_positives_to_float16(y.copy())
    np.testing.assert_array_equal(got, _want(y))
    assert not np.any(np.signbit(got))


def test_exponent_path_on_every_boundary():
    y = _boundaries()
    _same(half._by_exponent(y), _want(y))
    y = np.concatenate([y, np.float32([np.inf, -np.inf, np.nan, 65520, -1e38])])
    z = y.copy()                # (one value above 65504 sends the whole array this way)
    assert round_to_float16(z, z) is z
    _same(z, _want(y))


def test_every_float16_and_its_neighbours():
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    f = h.astype(np.float32)
    _same(float16_to_float32(h), f)
    _same(float16_to_float32(h.reshape(256, 256)[:, ::3]), f.reshape(256, 256)[:, ::3])
    u = f[np.isfinite(f) & (f != 0)].view(np.uint32).astype(np.int64)  # (0: -0 below)
    # each float16 value, the float32 values next to it, and the ties halfway to the next one
    near = np.concatenate([u + d for d in (-2, -1, 0, 1, 2)]).astype(np.uint32).view(np.float32)
    ties = np.concatenate([u + (1 << 12) + d for d in (-1, 0, 1)] +
                          [u + (1 << 13) + d for d in (-1, 0, 1)]).astype(np.uint32) \
        .view(np.float32)
    for y in (near, ties, -near):
        _same(round_to_float16(y), _want(y))


def test_special_values_and_a_sample():
    y = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519.99, 65520, -65520, 1e38,
                  -3.4e38, 2.0 ** -24, 2.0 ** -25, -(2.0 ** -25), 1.5 * 2.0 ** -25, 1e-40,
                  -1e-45, 2.0 ** -14, 6.1e-5], np.float32)
    got = round_to_float16(y)
    _same(got, _want(y))
    assert np.array_equal(np.signbit(got), np.signbit(y))
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32)
    for y in (bits.view(np.float32), rng.standard_normal((64, 1000)).astype(np.float32),
              (rng.standard_normal(4000) * 1e-5).astype(np.float32)):
        _same(round_to_float16(y), _want(y))
    _same(round_to_float16(y[::7]), _want(y[::7]))  # (not contiguous)
    assert round_to_float16(np.zeros((0, 3), np.float32)).shape == (0, 3)
    assert float16_to_float32(np.zeros((2, 0), np.float16)).shape == (2, 0)


def test_float16_values_convert_by_bits():
    """float32 arrays of float16 values (a float16 region's) convert to float16 by bits:
    every float16 (both zeros, the subnormals, the largest), strided, 0-d and empty arrays,
    bit for bit numpy's astype; an array holding an infinity or a NaN takes astype."""
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    f = h.astype(np.float32)
    finite = f[np.isfinite(f)]
    assert finite.size == 63488
    got = half.float16_values_to_float16(finite)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got.view(np.uint16), finite.astype(np.float16).view(np.uint16))
    grid = finite.reshape(-1, 8)[:, ::3]
    np.testing.assert_array_equal(half.float16_values_to_float16(grid).view(np.uint16),
                                  grid.astype(np.float16).view(np.uint16))
    with_nan = half.float16_values_to_float16(f)
    nan = np.isnan(f)
    assert np.array_equal(np.isnan(with_nan), nan)
    np.testing.assert_array_equal(with_nan.view(np.uint16)[~nan], h.view(np.uint16)[~nan])
    assert half.float16_values_to_float16(np.float32(-2.5).reshape(())).shape == ()
    assert half.float16_values_to_float16(np.zeros((0, 3), np.float32)).shape == (0, 3)
    with pytest.raises(TypeError, match="float32"):
        half.float16_values_to_float16(finite.astype(np.float64))


def test_small_arrays_take_astype_without_warnings(monkeypatch):
    """Up to ROUND_BY_ASTYPE / CONVERT_BY_ASTYPE values both conversions are numpy's astype
    (fewer calls); an overflow there gives inf without a warning, as the split's path does.
    The special values give the same results on the passes with the thresholds at zero."""
    import warnings

    y = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519.99, 65520, -65520, 1e38,
                  2.0 ** -24, 2.0 ** -25, -(2.0 ** -25), 1.5 * 2.0 ** -25, 1e-40, 6.1e-5,
                  -1.00048828125, 2049.0, 2051.0], np.float32)
    calls = []
    real = half._by_exponent
    monkeypatch.setattr(half, "_by_exponent", lambda v: calls.append(1) or real(v))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small = round_to_float16(y)
        z = y.copy()
        assert round_to_float16(z, z) is z
    assert not calls  # (astype: the passes' reduction never ran)
    _same(small, _want(y))
    _same(z, _want(y))
    assert np.array_equal(np.signbit(small), np.signbit(y))
    monkeypatch.setattr(half, "ROUND_BY_ASTYPE", 0)
    _same(round_to_float16(y), _want(y))
    assert calls  # (the inf sends this array through the exponent-bits rounding)
    finite = _want(y[np.isfinite(_want(y))])
    for n in (0, half.CONVERT_BY_ASTYPE):
        monkeypatch.setattr(half, "CONVERT_BY_ASTYPE", n)
        got = half.float16_values_to_float16(finite)
        np.testing.assert_array_equal(got.view(np.uint16),
                                      finite.astype(np.float16).view(np.uint16))
    rng = np.random.default_rng(1)
    monkeypatch.setattr(half, "ROUND_BY_ASTYPE", 1536)
    for n in (1, 1535, 1536, 1537, 4000):  # (both sides of the threshold)
        v = (rng.standard_normal(n) * 100).astype(np.float32)
        _same(round_to_float16(v), _want(v))
