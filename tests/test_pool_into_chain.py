"""pool_into_chain: a convolution chain and the MaxPool/AvgPool after it as one step, run on
groups of images; against the unfused plan, numpy and TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

import tfdeploy as td
from graphs import Node, const, model_of, placeholder
from tfdeploy.kernels.nn import fused

RNG = np.random.default_rng(0)


@pytest.fixture
def small_groups(monkeypatch):
    """Groups of a few images even for the tests' small maps and batches (4 KB: 2 of
    8 x 8 x 8 floats)."""
    monkeypatch.setattr(fused, "_POOL_GROUP_BYTES", 4096)
    monkeypatch.setattr(fused, "_POOL_MIN_GROUPS", 1)


def _fused(m, x) -> list[str]:
    fused_plan, plain = m.plan(x), m.plan(x, optimize=False)
    got, want = fused_plan.run((x,)), plain.run((x,))
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    return [st.op for st in fused_plan.steps]


def _conv_pool(pool="MaxPool", ksize=(1, 2, 2, 1), strides=(1, 2, 2, 1), padding="VALID",
               moves=False, dtype="float32", fetch_conv=False, kernel=3):
    t = {"T": dtype}
    w = RNG.standard_normal((kernel, kernel, 3, 8)).astype(dtype)
    b = RNG.standard_normal(8).astype(dtype)
    nodes = [placeholder("x", dtype, [None, 8, 8, 3]), const("w", w), const("b", b),
             Node("c", "Conv2D", ["x", "w"], {**t, "strides": [1, 1, 1, 1], "padding": "SAME",
                                               "data_format": "NHWC",
                                               "dilations": [1, 1, 1, 1]}),
             Node("cb", "BiasAdd", ["c", "b"], {**t, "data_format": "NHWC"}),
             Node("r", "Relu", ["cb"], t)]
    src = "r"
    if moves == "other":  # (a reshape to another map: [N, 4, 16, 8])
        nodes += [const("s4", np.array([-1, 4, 16, 8], np.int32)),
                  Node("m4", "Reshape", ["r", "s4"], {**t, "Tshape": "int32"})]
        src = "m4"
    elif moves:  # (as Keras' TimeDistributed: [N, 8, 8, 8] -> [N / 2, 2, 8, 8, 8] -> back)
        nodes += [const("s5", np.array([-1, 2, 8, 8, 8], np.int32)),
                  Node("m5", "Reshape", ["r", "s5"], {**t, "Tshape": "int32"}),
                  const("s4", np.array([-1, 8, 8, 8], np.int32)),
                  Node("m4", "Reshape", ["m5", "s4"], {**t, "Tshape": "int32"})]
        src = "m4"
    nodes.append(Node("p", pool, [src], {**t, "ksize": list(ksize), "strides": list(strides),
                                          "padding": padding, "data_format": "NHWC"}))
    return model_of(nodes, ["x"], ["r", "p"] if fetch_conv else ["p"]), w, b


def _reference(x, w, b, pool, k, s, padding):
    """numpy: the conv (float64), bias, ReLU, then the pool over k x k windows, stride s."""
    n, h, wd, _ = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = sum(np.einsum("nhwc,co->nhwo", xp[:, i:i + h, j:j + wd], w[i, j].astype(np.float64))
            for i in range(3) for j in range(3))
    y = np.maximum(y + b, 0)
    if padding == "SAME":
        oh = -(-h // s)
        pad = max(0, (oh - 1) * s + k - h)
        lo = pad // 2
        fill = -np.inf if pool == "MaxPool" else np.nan
        y = np.pad(y, ((0, 0), (lo, pad - lo), (lo, pad - lo), (0, 0)), constant_values=fill)
    else:
        oh = (h - k) // s + 1
    out = np.empty((n, oh, oh, y.shape[-1]))
    for i in range(oh):
        for j in range(oh):
            win = y[:, i * s:i * s + k, j * s:j * s + k]
            out[:, i, j] = win.max(axis=(1, 2)) if pool == "MaxPool" else \
                np.nanmean(win, axis=(1, 2))
    return out


@pytest.mark.parametrize("pool, k, s, padding", [("MaxPool", 2, 2, "VALID"),
                                                 ("MaxPool", 3, 2, "SAME"),
                                                 ("AvgPool", 2, 2, "VALID"),
                                                 ("AvgPool", 3, 1, "SAME")])
@pytest.mark.parametrize("n", [1, 5])
def test_conv_pool_is_one_step_over_groups(small_groups, pool, k, s, padding, n):
    m, w, b = _conv_pool(pool, (1, k, k, 1), (1, s, s, 1), padding)
    x = RNG.standard_normal((n, 8, 8, 3)).astype(np.float32)
    assert _fused(m, x) == ["_FusedChain"]
    got = m(x)
    np.testing.assert_allclose(got, _reference(x, w, b, pool, k, s, padding), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("n", [1, 5])
def test_pointwise_conv_then_pool(small_groups, n):
    """A 1x1 conv chain (a Dense layer on small maps) with a pool after it: its conv chain
    runs the groups (a 1x1 separable conv's pointwise half, a Conv1D of width 1)."""
    m, w, b = _conv_pool(kernel=1)
    x = RNG.standard_normal((n, 8, 8, 3)).astype(np.float32)
    assert _fused(m, x) == ["_FusedChain"]
    want = np.maximum(np.einsum("nhwc,co->nhwo", x.astype(np.float64), w[0, 0]) + b, 0)
    want = want.reshape(n, 4, 2, 4, 2, 8).max(axis=(2, 4))
    np.testing.assert_allclose(m(x), want, rtol=1e-5, atol=1e-5)


def test_groups_match_the_whole_batch(monkeypatch, tmp_path):
    """Any group size gives the values of one group of the whole batch, bit for bit."""
    x = RNG.standard_normal((7, 8, 8, 3)).astype(np.float32)
    _conv_pool()[0].save(tmp_path / "m.tfd")
    monkeypatch.setattr(fused, "_POOL_MIN_GROUPS", 1)
    outs = {}
    for size in (1 << 30, 2048, 4096, 1):  # (1: each image larger than a group: one group)
        monkeypatch.setattr(fused, "_POOL_GROUP_BYTES", size)
        outs[size] = td.Model(tmp_path / "m.tfd")(x)
    for size in (2048, 4096, 1):
        np.testing.assert_array_equal(outs[size], outs[1 << 30])


def test_groups_over_threads(small_groups, split_calls, monkeypatch):
    """With two threads the groups after the first split over them (each group's chain on
    one thread): the one-thread values bit for bit."""
    from tfdeploy.runtime import parallel, threads

    monkeypatch.setattr(parallel, "MIN_WORK", 1 << 10)
    m, w, b = _conv_pool()
    x = RNG.standard_normal((9, 8, 8, 3)).astype(np.float32)
    m(x)
    one = m(x)
    monkeypatch.setitem(threads._state, "threads", 2)
    two = m(x)
    assert (4, 2) in split_calls  # (5 groups of 2 images: the last 4 over 2 threads)
    np.testing.assert_array_equal(two, one)
    np.testing.assert_allclose(one, _reference(x, w, b, "MaxPool", 2, 2, "VALID"), rtol=1e-5,
                               atol=1e-5)


def test_reshapes_between_join(small_groups):
    m, w, b = _conv_pool(moves=True)
    x = RNG.standard_normal((6, 8, 8, 3)).astype(np.float32)
    assert _fused(m, x) == ["_FusedChain"]
    np.testing.assert_allclose(m(x), _reference(x, w, b, "MaxPool", 2, 2, "VALID"), rtol=1e-5,
                               atol=1e-5)


def test_a_reshape_to_another_map_stays_unfused(small_groups):
    m, w, b = _conv_pool(moves="other")
    x = RNG.standard_normal((4, 8, 8, 3)).astype(np.float32)
    assert "MaxPool" in _fused(m, x)
    y = np.maximum(_reference(x, w, b, "MaxPool", 1, 1, "VALID"), 0).reshape(4, 4, 16, 8)
    want = y.reshape(4, 2, 2, 8, 2, 8).max(axis=(2, 4))
    np.testing.assert_allclose(m(x), want, rtol=1e-5, atol=1e-5)


def test_a_fetched_conv_output_stays_unfused():
    m, w, b = _conv_pool(fetch_conv=True)
    x = RNG.standard_normal((3, 8, 8, 3)).astype(np.float32)
    assert "MaxPool" in _fused(m, x)
    r, p = m(x)
    np.testing.assert_allclose(p, _reference(x, w, b, "MaxPool", 2, 2, "VALID"), rtol=1e-5,
                               atol=1e-5)


def test_another_dtype_runs_the_unfused_steps(small_groups):
    """A float64 input to the float32 chain (the specialized plan's fallback path for feeds
    of other dtypes) and an inner chain that needs its fallback both give the unfused
    values."""
    m, w, b = _conv_pool()
    x = RNG.standard_normal((4, 8, 8, 3)).astype(np.float32)
    want = m(x)

    class Fails:
        dtype = np.dtype(np.float32)

        def __call__(self, x):
            raise fused._Whole

    calls = []
    pooled = fused._PooledChain(Fails(), None, lambda x: calls.append(x) or "whole", "t")
    assert pooled(x) == "whole" and len(calls) == 1
    assert pooled(x.astype(np.float64)) == "whole" and len(calls) == 2
    assert pooled(x[:0]) == "whole"
    np.testing.assert_allclose(m(x.astype(np.float64)), want, rtol=1e-5, atol=1e-5)


# --- against TensorFlow --------------------------------------------------------------------

def _keras():
    pytest.importorskip("tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    return keras


def _against_tf(model, x):
    want = np.asarray(model(x, training=False))
    m = td.convert(model)
    ops = _fused(m, x)
    got = m(x)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(want))))
    return ops


@pytest.mark.tf
def test_keras_cnn_blocks(small_groups):
    keras = _keras()
    L = keras.layers
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = L.MaxPooling2D()(L.ReLU()(L.BatchNormalization()(x)))
    x = L.AveragePooling2D(3, strides=2, padding="same")(L.Conv2D(16, 3, activation="relu")(x))
    model = keras.Model(inp, L.Dense(4)(L.Flatten()(x)))
    for n in (1, 5):
        ops = _against_tf(model, RNG.standard_normal((n, 16, 16, 3)).astype(np.float32))
        assert "MaxPool" not in ops and "AvgPool" not in ops


@pytest.mark.tf
def test_keras_conv1d_and_time_distributed(small_groups):
    keras = _keras()
    L = keras.layers
    inp = keras.Input((64, 2))
    x = L.MaxPooling1D(4)(L.Conv1D(8, 5, strides=2, padding="same", activation="relu")(inp))
    model = keras.Model(inp, x)
    ops = _against_tf(model, RNG.standard_normal((6, 64, 2)).astype(np.float32))
    assert "MaxPool" not in ops
    inp = keras.Input((3, 12, 12, 2))
    x = L.TimeDistributed(L.Conv2D(4, 3, activation="relu"))(inp)
    model = keras.Model(inp, L.TimeDistributed(L.MaxPooling2D())(x))
    ops = _against_tf(model, RNG.standard_normal((4, 3, 12, 12, 2)).astype(np.float32))
    assert "MaxPool" not in ops
