"""Stateful random kernels without a seed: TF's values cannot be matched, so check shape, dtype,
range and rough distribution (seeded runs are compared with TF in tests/cases/random.py)."""

import numpy as np
import pytest

import tfdeploy.registry as reg

try:
    import ml_dtypes  # noqa: F401  (bfloat16 needs it; TensorFlow brings it)

    FLOATS = ["float16", "bfloat16", "float32", "float64"]
except ImportError:
    FLOATS = ["float16", "float32", "float64"]
N = 20000


def kernel(op_type, **attrs):
    d = reg.get_opdef(op_type)
    assert d is not None and d.stateful, f"{op_type} must be registered as stateful"
    return reg.bind(d, attrs)


def shape(*dims):
    return np.array(dims, np.int32)


@pytest.mark.parametrize("dtype", FLOATS)
def test_random_uniform(dtype):
    x = kernel("RandomUniform", dtype=dtype)(shape(N // 4, 4))
    assert x.shape == (N // 4, 4) and x.dtype.name == dtype
    f = x.astype(np.float64)
    assert f.min() >= 0 and f.max() < 1
    assert abs(f.mean() - 0.5) < 0.02 and abs(f.std() - 12 ** -0.5) < 0.02
    y = kernel("RandomUniform", dtype=dtype)(shape(N // 4, 4))
    assert not np.array_equal(x, y), "two unseeded calls gave the same values"


@pytest.mark.parametrize("dtype", FLOATS)
def test_random_standard_normal(dtype):
    x = kernel("RandomStandardNormal", dtype=dtype)(shape(N)).astype(np.float64)
    assert abs(x.mean()) < 0.05 and abs(x.std() - 1) < 0.05
    assert np.isfinite(x).all()


@pytest.mark.parametrize("dtype", FLOATS)
def test_truncated_normal(dtype):
    x = kernel("TruncatedNormal", dtype=dtype)(shape(N)).astype(np.float64)
    assert np.abs(x).max() <= 2
    assert abs(x.mean()) < 0.05
    assert abs(x.std() - 0.8796) < 0.03  # std of N(0, 1) truncated to (-2, 2)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_random_uniform_int(dtype):
    lo, hi = np.array(-3, dtype), np.array(4, dtype)
    x = kernel("RandomUniformInt")(shape(N), lo, hi)
    assert x.dtype.name == dtype and x.shape == (N,)
    assert x.min() == -3 and x.max() == 3
    counts = np.bincount(x + 3, minlength=7) / N
    assert np.abs(counts - 1 / 7).max() < 0.02


def test_random_uniform_int_bad_range():
    with pytest.raises(ValueError, match="minval < maxval"):
        kernel("RandomUniformInt")(shape(3), np.array(4), np.array(4))


@pytest.mark.parametrize("output_dtype", ["int32", "int64"])
def test_multinomial(output_dtype):
    p = np.array([0.1, 0.2, 0.7])
    logits = np.log(np.stack([p, p[::-1]])).astype(np.float32)
    x = kernel("Multinomial", output_dtype=output_dtype)(logits, np.array(N, np.int32))
    assert x.shape == (2, N) and x.dtype.name == output_dtype
    assert np.abs(np.bincount(x[0], minlength=3) / N - p).max() < 0.02
    assert np.abs(np.bincount(x[1], minlength=3) / N - p[::-1]).max() < 0.02


def test_multinomial_impossible_class():
    logits = np.array([[0.0, -np.inf, 0.0]], np.float64)
    x = kernel("Multinomial")(logits, np.array(1000, np.int32))
    assert set(np.unique(x).tolist()) == {0, 2}


@pytest.mark.parametrize("shape_", [(50,), (20, 3), (1, 4), (0,)])
def test_random_shuffle(shape_):
    v = np.arange(int(np.prod(shape_))).reshape(shape_)
    x = kernel("RandomShuffle")(v)
    assert x.shape == v.shape and x.dtype == v.dtype
    # a permutation of the rows
    rows = (len(v), int(np.prod(shape_[1:])))
    def as_rows(a):
        return sorted(map(tuple, a.reshape(rows).tolist()))

    assert as_rows(x) == as_rows(v)


def test_seeded_calls_repeat_tf_first_run():
    a = kernel("RandomUniform", seed=1, seed2=2)(shape(5))
    b = kernel("RandomUniform", seed=1, seed2=2)(shape(5))
    assert np.array_equal(a, b)


def test_stateless_ops_are_not_stateful():
    assert not reg.get_opdef("StatelessRandomUniformV2").stateful
