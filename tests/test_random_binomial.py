"""Binomial and parameterized truncated normal kernels without TensorFlow: unseeded stateful
draws against the truncated normal's moments, errors, and what the thread count may change.
(Seeded and stateless draws are compared with TF in tests/cases/random_binomial.py.)"""

import math

import numpy as np
import pytest

import tfdeploy.registry as reg

N = 20000


def kernel(op_type, **attrs):
    d = reg.get_opdef(op_type)
    assert d is not None, f"{op_type} is not registered"
    return reg.bind(d, attrs)


def truncnorm_moments(mean, sd, lo, hi):
    """Mean and variance of N(mean, sd^2) truncated to [lo, hi]."""
    a, b = (lo - mean) / sd, (hi - mean) / sd

    def pdf(x):
        return 0.0 if math.isinf(x) else math.exp(-x * x / 2) / math.sqrt(2 * math.pi)

    def xpdf(x):
        return 0.0 if math.isinf(x) else x * pdf(x)

    if a > 0:  # upper tail: erfc keeps the mass from vanishing
        z = 0.5 * (math.erfc(a / math.sqrt(2)) - math.erfc(b / math.sqrt(2)))
    elif b < 0:
        z = 0.5 * (math.erfc(-b / math.sqrt(2)) - math.erfc(-a / math.sqrt(2)))
    else:
        z = 0.5 * (math.erf(b / math.sqrt(2)) - math.erf(a / math.sqrt(2)))
    d = (pdf(a) - pdf(b)) / z
    var = 1 + (xpdf(a) - xpdf(b)) / z - d * d
    return mean + sd * d, sd * sd * var


# one of each sampler TF picks (normal, uniform, exponential rejection), both one-sided
# directions, two-sided in a tail
PARAMS = [(0.5, 2.0, -3.0, 4.0), (0.0, 1.0, 1.0, 1.5), (0.0, 1.0, 3.0, math.inf),
          (0.0, 1.0, -math.inf, -3.0), (1.0, 0.5, 2.5, 3.5), (0.0, 1.0, 30.0, 31.0),
          (-2.0, 3.0, -1.0, 0.0)]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("params", PARAMS, ids=lambda p: "_".join(map(str, p)))
def test_stateful_moments(dtype, params):
    mean, sd, lo, hi = params
    args = [np.asarray(v, dtype) for v in params]
    x = kernel("ParameterizedTruncatedNormal", dtype=dtype)(np.array([N], np.int32), *args)
    assert x.shape == (N,) and x.dtype.name == dtype
    f = x.astype(np.float64)
    q = 1e-2 * max(abs(lo) if math.isfinite(lo) else 1, abs(hi) if math.isfinite(hi) else 1)
    slack = q if dtype == "float16" else 1e-9  # float16 rounds the bounds themselves
    assert f.min() >= lo - slack and f.max() <= hi + slack
    m, v = truncnorm_moments(mean, sd, lo, hi)
    assert abs(f.mean() - m) < 5 * math.sqrt(v / N) + (slack if dtype == "float16" else 0)
    # the sample variance's own spread, from the sample's fourth central moment: in a one-sided
    # tail the distribution is near-exponential (kurtosis ~9), so a fixed tolerance is flaky
    m4 = ((f - f.mean()) ** 4).mean()
    spread = 5 * math.sqrt(max(m4 - f.var() ** 2, 0.0) / N) / v
    assert abs(f.var() / v - 1) < spread + 0.01 + (0.05 if dtype == "float16" else 0)
    y = kernel("ParameterizedTruncatedNormal", dtype=dtype)(np.array([N], np.int32), *args)
    assert not np.array_equal(x, y), "two unseeded calls gave the same values"


def test_stateful_per_row_parameters():
    means = np.array([0.0, 10.0, -5.0], np.float32)
    x = kernel("ParameterizedTruncatedNormal")(
        np.array([3, N // 3], np.int32), means, np.float32(1.0), means - 1, means + 2)
    assert x.shape == (3, N // 3)
    for row, mu in zip(x.astype(np.float64), means.tolist()):
        m, v = truncnorm_moments(mu, 1.0, mu - 1, mu + 2)
        assert abs(row.mean() - m) < 5 * math.sqrt(v / row.size)
        assert row.min() >= mu - 1 and row.max() <= mu + 2


def test_stateless_binomial_moments():
    counts = np.array([5.0, 40.0, 1000.0, 30.0], np.float32)
    probs = np.array([0.3, 0.5, 0.02, 0.9], np.float32)
    x = kernel("StatelessRandomBinomial", dtype="int64")(
        np.array([N, 4], np.int32), np.array([1, 2]), counts, probs)
    assert x.shape == (N, 4) and x.dtype == np.int64
    mean, var = counts * probs, counts * probs * (1 - probs)
    assert (np.abs(x.mean(axis=0) - mean) < 5 * np.sqrt(var / N)).all()
    assert (np.abs(x.var(axis=0) / var - 1) < 0.06).all()
    assert x.min() >= 0 and (x <= counts).all()


@pytest.mark.parametrize("threads", ["1", "3", "16"])
def test_binomial_ignores_sharding(monkeypatch, threads):
    """Binomial outputs own their Philox windows: TF's shards cannot move them."""
    args = (np.array([30000], np.int32), np.array([3, 4]), np.float64(50.0), np.float64(0.4))
    want = kernel("StatelessRandomBinomial", dtype="float64")(*args)
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", threads)
    np.testing.assert_array_equal(kernel("StatelessRandomBinomial", dtype="float64")(*args), want)


def test_truncated_normal_follows_sharding(monkeypatch):
    """The truncated normals draw each shard as one stream: TF's thread count changes large
    outputs (the kernel follows TF's, from TF_NUM_INTRAOP_THREADS or the CPU count), but not
    small ones, which TF never shards."""
    args = [np.array([5000], np.int32), np.array([3, 4])] + [np.float32(v)
                                                             for v in (0, 1, -2, 2)]
    ptn = kernel("StatelessParameterizedTruncatedNormal")
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    one = ptn(*args)
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "4")
    four = ptn(*args)
    assert (one != four).any()
    np.testing.assert_array_equal(one[:200], four[:200])  # TF's first shard starts at 0
    small = [np.array([50], np.int32)] + args[1:]
    np.testing.assert_array_equal(ptn(*small), one[:50])


def test_setup_sets_tf_thread_count(monkeypatch):
    """td.setup(tf_intra_op_threads=n) reproduces a TF run with n intra-op threads, whatever
    this machine's default."""
    import tfdeploy as td
    from tfdeploy.kernels.random import binomial as random_binomial

    args = [np.array([5000], np.int32), np.array([3, 4])] + [np.float32(v)
                                                             for v in (0, 1, -2, 2)]
    ptn = kernel("StatelessParameterizedTruncatedNormal")
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "3")
    three = ptn(*args)
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    monkeypatch.setattr(random_binomial, "INTRA_OP_THREADS", None)
    td.setup(tf_intra_op_threads=3)
    np.testing.assert_array_equal(ptn(*args), three)
    with pytest.raises(ValueError, match="at least 1"):
        td.setup(tf_intra_op_threads=0)


@pytest.mark.parametrize("params,match", [
    ((0.0, 0.0, -1.0, 1.0), "Invalid parameters"),
    ((0.0, -1.0, -1.0, 1.0), "Invalid parameters"),
    ((0.0, 1.0, 1.0, 1.0), "Invalid parameters"),
    ((0.0, 1.0, 2.0, 1.0), "Invalid parameters"),
    ((0.0, 1.0, -math.inf, math.inf), "Invalid parameters"),
    ((math.nan, 1.0, -1.0, 1.0), "failed to accept"),
    ((1e30, 1.0, -math.inf, 1.0), "failed to accept"),
])
def test_truncated_normal_errors(params, match):
    args = [np.float32(v) for v in params]
    with pytest.raises(ValueError, match=match):
        kernel("StatelessParameterizedTruncatedNormal")(np.array([3], np.int32),
                                                        np.array([0, 1]), *args)
    with pytest.raises(ValueError, match=match):
        kernel("ParameterizedTruncatedNormal", seed=1)(np.array([3], np.int32), *args)


def test_truncated_normal_shape_errors():
    ptn = kernel("StatelessParameterizedTruncatedNormal")
    f = np.float32
    with pytest.raises(ValueError, match="must end with broadcasted shape"):
        ptn(np.array([2], np.int32), np.array([0, 1]), np.zeros(3, f), f(1), f(-1), f(1))
    with pytest.raises(ValueError, match="compatible batch dimensions"):
        ptn(np.array([2, 3], np.int32), np.array([0, 1]), np.zeros(3, f), np.ones(2, f), f(-1),
            f(1))
    with pytest.raises(TypeError, match="means must be float32"):
        kernel("StatelessParameterizedTruncatedNormal", dtype="float32")(
            np.array([2], np.int32), np.array([0, 1]), np.float64(0), f(1), f(-1), f(1))
    with pytest.raises(TypeError, match="stddevs must be float64"):
        ptn(np.array([2], np.int32), np.array([0, 1]), np.float64(0), f(1), f(-1), f(1))
    v1 = kernel("ParameterizedTruncatedNormal")
    with pytest.raises(ValueError, match="must not be empty"):
        v1(np.zeros(0, np.int32), f(0), f(1), f(-1), f(1))
    with pytest.raises(ValueError, match="length 1 or shape"):
        v1(np.array([4, 2], np.int32), np.zeros(3, f), f(1), f(-1), f(1))
    with pytest.raises(ValueError, match="scalar or vector"):
        v1(np.array([4, 2], np.int32), np.zeros((4, 1), f), f(1), f(-1), f(1))


def test_binomial_errors():
    b = kernel("StatelessRandomBinomial", dtype="float32")
    seed = np.array([0, 1])
    with pytest.raises(ValueError, match="never returns"):
        b(np.array([2], np.int32), seed, np.float32(np.nan), np.float32(0.5))
    with pytest.raises(TypeError, match="counts and probs"):
        b(np.array([2], np.int32), seed, np.float32(3), np.float64(0.5))
    with pytest.raises(ValueError, match="must end with broadcasted shape"):
        b(np.array([2], np.int32), seed, np.ones(3, np.float32), np.float32(0.5))
    # NaN count with p outside (0, 1) returns: 0, or the count itself (NaN)
    out = b(np.array([2], np.int32), seed, np.full(2, np.nan, np.float32),
            np.array([0.0, 1.0], np.float32))
    assert out[0] == 0 and np.isnan(out[1])
