"""Gamma and Poisson random kernels without TensorFlow: the rough distribution of unseeded
stateful samples (TF's values cannot be matched there), and errors (glibc's log1p, which the
gamma sampler uses, is tested in tests/test_libm.py).

Seeded and stateless samples are compared with TF at zero tolerance in tests/cases/random_gamma.py.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import tfdeploy.registry as reg
from tfdeploy.kernels.random import gamma as rg

N = 40000


# -- unseeded stateful samples: shape, dtype, rough moments --------------------------------------

def kernel(op_type, **attrs):
    d = reg.get_opdef(op_type)
    assert d is not None and d.stateful, f"{op_type} must be registered as stateful"
    return reg.bind(d, attrs)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_random_gamma_moments(dtype):
    alpha = np.array([0.25, 1.0, 3.0, 40.0], dtype)
    x = kernel("RandomGamma", T=dtype)(np.array([N], np.int32), alpha)
    assert x.shape == (N, 4) and x.dtype.name == dtype
    f = x.astype(np.float64)
    assert (f >= 0).all() and np.isfinite(f).all()
    a = alpha.astype(np.float64)
    # mean alpha, variance alpha; 5 standard errors of the sample mean and variance
    np.testing.assert_array_less(np.abs(f.mean(0) - a), 5 * np.sqrt(a / N) + 0.01 * a)
    np.testing.assert_array_less(np.abs(f.var(0) - a), 5 * np.sqrt((2 * a**2 + 6 * a) / N) * 1.5
                                 + 0.02 * a)
    y = kernel("RandomGamma", T=dtype)(np.array([N], np.int32), alpha)
    assert not np.array_equal(x, y), "two unseeded calls gave the same values"


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "int64"])
def test_random_poisson_moments(dtype):
    rate = np.array([0.3, 4.0, 12.0, 500.0])
    x = kernel("RandomPoissonV2", dtype=dtype)(np.array([N], np.int64), rate)
    assert x.shape == (N, 4) and x.dtype.name == dtype
    f = x.astype(np.float64)
    assert (f >= 0).all() and (f == np.round(f)).all()
    np.testing.assert_array_less(np.abs(f.mean(0) - rate), 5 * np.sqrt(rate / N))
    np.testing.assert_array_less(np.abs(f.var(0) - rate),
                                 5 * np.sqrt((2 * rate**2 + rate) / N) * 1.5)
    y = kernel("RandomPoissonV2", dtype=dtype)(np.array([N], np.int64), rate)
    assert not np.array_equal(x, y)


def test_seeded_stateful_is_repeatable():
    """A seeded stateful op gives TF's first run, on every call (the plan holds no state)."""
    g = kernel("RandomGamma", seed=3, seed2=4, T="float32")
    a = np.array([0.5, 2.0], np.float32)
    np.testing.assert_array_equal(g(np.array([10]), a), g(np.array([10]), a))


# -- errors --------------------------------------------------------------------------------------

def test_shape_must_end_with_alpha_shape():
    with pytest.raises(ValueError, match="must end with"):
        rg.StatelessRandomGammaV2(np.array([4, 3]), np.array([1, 2]), np.ones((1, 3)))
    with pytest.raises(ValueError, match="must end with"):
        rg.StatelessRandomPoisson(np.array([3, 2]), np.array([1, 2]), np.ones(3))


def test_poisson_rates_tf_never_finishes():
    with pytest.raises(ValueError, match="NaN"):
        rg.StatelessRandomPoisson(np.array([2]), np.array([1, 2]), np.array(np.nan))
    # every draw exceeds float16's range, and TF retries forever
    with pytest.raises(ValueError, match="loop forever"):
        rg.StatelessRandomPoisson(np.array([2]), np.array([1, 2]), np.array(1e30),
                                  dtype="float16")


def test_poisson_rates_beyond_the_output_type_fail_at_once():
    """(Each sample ran to the Philox-call limit before the error: 15,000 samples at rate 1e20
    into int64 took 150 s.) A rate whose samples cannot fit is refused before sampling; one
    at the type's edge still samples."""
    t = time.perf_counter()
    with pytest.raises(ValueError, match="too large for int64 samples"):
        rg.StatelessRandomPoisson(np.array([5000, 3]), np.array([1, 2]),
                                  np.array([2.0, 2e20, 700.0]), dtype="int64")
    assert time.perf_counter() - t < 1
    x = rg.StatelessRandomPoisson(np.array([4]), np.array([1, 2]), np.array(9.2e18),
                                  dtype="int64")
    assert x.dtype == np.int64 and (np.abs(x - 9.2e18) < 1e11).all()
