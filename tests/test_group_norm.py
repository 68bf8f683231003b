"""fuse_norm's ``_GroupNorm``: instance, group and layer normalization over spatial axes (and
the activation after them) as one step, against the unfused plan, a float64 reference and
TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

import tfdeploy as td
from graphs import Node, const, model_of, placeholder
from tfdeploy.kernels.nn.norm import layout

RNG = np.random.default_rng(0)


def _grid(a, dtype) -> np.ndarray:
    """``a`` rounded to multiples of 1/64, as ``dtype``: float32 sums of such values are
    exact, so a float32 normalization of them is off by a few ulps of its results alone and
    the tests' fixed 1e-5 against float64 holds for every draw (on raw float32 draws at mean
    100, std 3 a correct two-pass computation missed it on a fifth of them)."""
    return (np.round(np.asarray(a) * 64) / 64).astype(dtype)


def _plans(m, *xs, rtol=2e-5):
    """The fused plan's values against the unfused plan's; the fused plan's step ops."""
    fused = m.plan(*xs)
    plain = m.plan(*xs, optimize=False)
    for g, w in zip(fused.run(xs), plain.run(xs)):
        assert g.dtype == w.dtype and g.shape == w.shape
        scale = max(float(np.max(np.abs(w))), 1e-6)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * scale)
    assert "_GroupNorm" not in [st.op for st in plain.steps]
    return [st.op for st in fused.steps]


def _moments(dtype="float32", axes=(1, 2), shape=(None, 6, 5, 4)) -> list:
    """x, then tf.nn.moments(x, axes) (m, v) and r = Rsqrt(v + 1e-3)."""
    t = {"T": dtype}
    return [placeholder("x", dtype, list(shape)), const("axes", np.array(axes, np.int32)),
            Node("m", "Mean", ["x", "axes"], {**t, "keep_dims": True}),
            Node("sd", "SquaredDifference", ["x", "m"], t),
            Node("v", "Mean", ["sd", "axes"], {**t, "keep_dims": True}),
            const("eps", np.array(1e-3, dtype)), Node("ve", "AddV2", ["v", "eps"], t),
            Node("r", "Rsqrt", ["ve"], t)]


def _instance_norm(dtype="float32", gamma=None, beta=None, act=None, axes=(1, 2)):
    """tf.nn.moments(x, axes) then (x - mean) * rsqrt(var + eps) [* gamma] [+ beta] [act]."""
    t = {"T": dtype}
    nodes = _moments(dtype, axes)
    s = "r"
    if gamma is not None:
        nodes += [const("g", gamma.astype(dtype)), Node("rg", "Mul", ["r", "g"], t)]
        s = "rg"
    nodes += [Node("d", "Sub", ["x", "m"], t), Node("n", "Mul", ["d", s], t)]
    out = "n"
    if beta is not None:
        nodes += [const("b", beta.astype(dtype)), Node("nb", "AddV2", ["n", "b"], t)]
        out = "nb"
    if act == "swish":
        nodes += [Node("sg", "Sigmoid", [out], t), Node("sw", "Mul", [out, "sg"], t)]
        out = "sw"
    elif act == "swish1.5":  # (Keras' swish with a beta: Sigmoid(beta * y))
        nodes += [const("beta", np.array(1.5, dtype)), Node("by", "Mul", ["beta", out], t),
                  Node("sg", "Sigmoid", ["by"], t), Node("sw", "Mul", ["sg", out], t)]
        out = "sw"
    elif act is not None:
        nodes += [Node("act", act, [out], t)]
        out = "act"
    return model_of(nodes, ["x"], [out])


def _reference(x, axes, gamma=None, beta=None, act=None, eps=1e-3):
    x = x.astype(np.float64)
    m = x.mean(axis=axes, keepdims=True)
    y = (x - m) / np.sqrt(((x - m) ** 2).mean(axis=axes, keepdims=True) + eps)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    if act == "Relu":
        y = np.maximum(y, 0)
    elif act == "swish":
        y = y / (1 + np.exp(-y))
    elif act == "swish1.5":
        y = y / (1 + np.exp(-1.5 * y))
    return y


@pytest.mark.parametrize("act", [None, "Relu", "swish", "swish1.5", "Tanh"])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_instance_norm_is_one_step(act, affine, dtype):
    gamma = RNG.uniform(0.5, 2, 4) if affine else None
    beta = RNG.standard_normal(4) if affine else None
    m = _instance_norm(dtype, gamma, beta, act)
    # (a large mean: the variance is of the centred values, no E[x^2] - E[x]^2 cancellation)
    x = _grid(RNG.standard_normal((3, 6, 5, 4)) * 3 + 100, dtype)
    assert _plans(m, x) == ["_GroupNorm"]
    got = m(x)
    assert got.dtype == np.dtype(dtype) and got.shape == x.shape
    want = _reference(x, (1, 2), gamma, beta, act)
    if act != "Tanh":
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _batch_normalization(gamma, beta, act=None):
    """tf.nn.moments(x, [1, 2]) then tf.nn.batch_normalization: inv = Rsqrt(var + eps) *
    gamma; x * inv + (beta - mean * inv)."""
    t = {"T": "float32"}
    nodes = _moments() + [const("g", gamma.astype(np.float32)),
             Node("inv", "Mul", ["r", "g"], t), Node("xs", "Mul", ["x", "inv"], t),
             Node("ms", "Mul", ["m", "inv"], t), const("b", beta.astype(np.float32)),
             Node("sh", "Sub", ["b", "ms"], t), Node("n", "AddV2", ["xs", "sh"], t)]
    out = "n"
    if act:
        nodes.append(Node("a", act, ["n"], t))
        out = "a"
    return model_of(nodes, ["x"], [out])


def test_tf_nn_batch_normalization_form():
    gamma, beta = RNG.uniform(0.5, 2, 4), RNG.standard_normal(4)
    x = _grid(RNG.standard_normal((3, 6, 5, 4)) * 2 + 5, np.float32)
    m = _batch_normalization(gamma, beta, "Relu")
    assert _plans(m, x) == ["_GroupNorm"]
    np.testing.assert_allclose(m(x), _reference(x, (1, 2), gamma, beta, "Relu"), rtol=1e-5,
                               atol=1e-5)
    # the shift the other way round (mean * inv - beta): not this form, left unfused
    m = _batch_normalization(gamma, beta)
    g = m.default_graph
    g.node("sh").inputs[:] = ["ms", "b"]
    assert "_GroupNorm" not in _plans(m, x)


def test_gamma_along_the_reduced_axes_and_other_layouts():
    """gamma/beta varying along reduced axes (LayerNormalization over [1, 2, 3]) apply
    broadcast; normalizing over all axes but the batch, over H alone, over C and H: each
    against float64."""
    x = _grid(RNG.standard_normal((2, 6, 5, 4)) + 3, np.float32)
    for axes, gshape, bshape in [((1, 2, 3), (6, 5, 4), (6, 5, 4)), ((1, 2), (5, 4), (5, 4)),
                                 ((1,), (4,), (4,)), ((2, 3), (1, 4), (1, 4)),
                                 ((1, 2), (6, 5, 1), (4,)), ((1, 2), (4,), (6, 1, 1))]:
        gamma, beta = RNG.uniform(0.5, 2, gshape), RNG.standard_normal(bshape)
        m = _instance_norm("float32", gamma, beta, "Relu", axes)
        assert _plans(m, x) == ["_GroupNorm"], axes
        np.testing.assert_allclose(m(x), _reference(x, axes, gamma, beta, "Relu"),
                                   rtol=1e-5, atol=1e-5)


def test_layouts():
    assert layout((2, 6, 5, 4), [1, 2]) == (2, 30, 4, 1)
    assert layout((2, 6, 5, 4, 3), [1, 2, 4]) == (2, 30, 4, 3)
    assert layout((2, 6, 5, 4), [-3, -2, -1]) == (2, 120, 1, 1)
    assert layout((2, 6, 5, 4), [0]) == (1, 2, 120, 1)
    assert layout((2, 6, 5, 4), [1, 3]) == (2, 6, 5, 4)
    assert layout((2, 6, 5, 4, 3), [1, 3]) is None  # (kept, reduced, kept, reduced, kept)
    assert layout((2, 6, 5, 4), [4]) is None


def test_other_axes_patterns_stay_unfused():
    """Axes the kernel's layout cannot take keep the unfused steps."""
    m = _instance_norm("float32")
    x = _grid(RNG.standard_normal((2, 6, 5, 4)), np.float32)
    assert "_GroupNorm" in _plans(m, x)
    t = {"T": "float32"}
    nodes = _moments(axes=(1, 3), shape=(None, 3, 4, 5, 2)) + [
        Node("d", "Sub", ["x", "m"], t), Node("n", "Mul", ["d", "r"], t)]
    m = model_of(nodes, ["x"], ["n"])
    x = _grid(RNG.standard_normal((2, 3, 4, 5, 2)), np.float32)
    assert "_GroupNorm" not in _plans(m, x)
    np.testing.assert_allclose(m(x), _reference(x, (1, 3)), rtol=1e-5, atol=1e-5)


def test_mean_minus_x_is_not_the_centred_form():
    """Sub(mean, x) (the centred values negated) stays unfused."""
    t = {"T": "float32"}
    nodes = _moments() + [Node("d", "Sub", ["m", "x"], t), Node("n", "Mul", ["d", "r"], t)]
    m = model_of(nodes, ["x"], ["n"])
    x = _grid(RNG.standard_normal((2, 6, 5, 4)), np.float32)
    assert "_GroupNorm" not in _plans(m, x)
    np.testing.assert_allclose(m(x), -_reference(x, (1, 2)), rtol=1e-5, atol=1e-5)


def test_a_fetched_intermediate_is_not_swallowed():
    """The normalized value fetched beside the activation: both right (the activation cannot
    join), and the variance fetched too (the normalization cannot fuse)."""
    m = _instance_norm("float32", act="Relu")
    x = _grid(RNG.standard_normal((2, 6, 5, 4)), np.float32)
    want = _reference(x, (1, 2))
    n, a = m.eval(["n", "act"], {"x": x})
    np.testing.assert_allclose(n, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a, np.maximum(want, 0), rtol=1e-5, atol=1e-5)
    v, a = m.eval(["v", "act"], {"x": x})
    np.testing.assert_allclose(v, x.astype(np.float64).var(axis=(1, 2), keepdims=True),
                               rtol=1e-5)
    np.testing.assert_allclose(a, np.maximum(want, 0), rtol=1e-5, atol=1e-5)


def test_fallback_on_another_dtype_and_empty_input():
    """The kernel runs the unfused steps for what its fast path does not take."""
    from tfdeploy import registry

    calls = []

    def fallback(x):
        calls.append(x.shape)
        return "fallback"

    d = registry.get_opdef("_GroupNorm")
    k = registry.bind(d, {"axes": [1, 2], "epsilon": 1e-3, "_fallback": fallback}, None)
    x = RNG.standard_normal((2, 3, 3, 2)).astype(np.float32)
    want = _reference(x, (1, 2))
    np.testing.assert_allclose(k(x), want, rtol=1e-5, atol=1e-5)
    assert k(x.astype(np.float16)) == "fallback"
    assert k(np.zeros((0, 3, 3, 2), np.float32)) == "fallback"
    assert k(np.zeros((2, 3), np.float32)) == "fallback"  # (axis 2 out of range)
    assert len(calls) == 3
    # gamma of float64 for a float32 input, gamma widening the input
    k = registry.bind(d, {"axes": [1, 2], "epsilon": 1e-3, "gamma": np.ones(2),
                          "_fallback": fallback}, None)
    assert k(x) == "fallback"
    k = registry.bind(d, {"axes": [1, 2], "epsilon": 1e-3,
                          "gamma": np.ones((3, 1, 2, 2), np.float32), "_fallback": fallback}, None)
    assert k(x) == "fallback"
    with pytest.raises(ValueError, match="activation must be one of"):
        registry.bind(d, {"axes": [1, 2], "epsilon": 1e-3, "activation": "gelu",
                          "_fallback": fallback}, None)
    # NaN and inf stay in their group: the other channels' values are unchanged
    y = x.copy()
    y[0, 1, 1, 0] = np.nan
    y[1, 0, 0, 1] = np.inf
    k = registry.bind(d, {"axes": [1, 2], "epsilon": 1e-3, "_fallback": fallback}, None)
    got = k(y)
    assert np.isnan(got[0, :, :, 0]).all() and np.isnan(got[1, :, :, 1]).all()
    np.testing.assert_allclose(got[0, :, :, 1], want[0, :, :, 1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1, :, :, 0], want[1, :, :, 0], rtol=1e-5, atol=1e-5)


def test_saved_model_keeps_the_fusion(tmp_path):
    m = _instance_norm("float32", RNG.uniform(0.5, 2, 4), RNG.standard_normal(4), "Relu")
    p = tmp_path / "m.tfd"
    m.save(p)
    x = RNG.standard_normal((2, 6, 5, 4)).astype(np.float32)
    np.testing.assert_array_equal(td.Model(p)(x), m(x))


def _batch_norm_rows(scale=1.0, offset=0.0, width=4):
    """tf_keras' LayerNormalization over the last ``width`` values: x [N, 6, 5, 4] reshaped to
    [1, R, width, 1], a training-mode FusedBatchNormV3 (NCHW) by ``scale``/``offset`` rows,
    reshaped back, then * gamma + beta."""
    t = {"T": "float32"}
    rows = 2 * 6 * 5 * 4 // width
    gamma = RNG.uniform(0.5, 2, (4,) if width == 4 else (6, 5, 4)).astype(np.float32)
    beta = RNG.standard_normal(gamma.shape).astype(np.float32)
    nodes = [placeholder("x", "float32", [2, 6, 5, 4]),
             const("s5", np.array([1, rows, width, 1], np.int32)),
             Node("r1", "Reshape", ["x", "s5"], {**t, "Tshape": "int32"}),
             const("sc", np.full(rows, scale, np.float32)),
             const("of", np.full(rows, offset, np.float32)),
             const("e", np.zeros(0, np.float32)),
             Node("bn", "FusedBatchNormV3", ["r1", "sc", "of", "e", "e"],
                  {**t, "U": "float32", "epsilon": 1e-3, "data_format": "NCHW",
                   "is_training": True, "exponential_avg_factor": 1.0}),
             const("s4", np.array([2, 6, 5, 4], np.int32)),
             Node("r2", "Reshape", ["bn", "s4"], {**t, "Tshape": "int32"}),
             const("g", gamma), Node("yg", "Mul", ["r2", "g"], t),
             const("b", beta), Node("y", "AddV2", ["yg", "b"], t)]
    return model_of(nodes, ["x"], ["y"]), gamma, beta


@pytest.mark.parametrize("width, op", [(4, "_LayerNorm"), (120, "_GroupNorm")])
def test_tf_keras_batch_norm_form(width, op):
    m, gamma, beta = _batch_norm_rows(width=width)
    x = _grid(RNG.standard_normal((2, 6, 5, 4)) * 2 + 3, np.float32)
    assert _plans(m, x) == [op]
    axes = (3,) if width == 4 else (1, 2, 3)
    np.testing.assert_allclose(m(x), _reference(x, axes, gamma, beta), rtol=1e-5, atol=1e-5)


def test_batch_norm_rows_that_are_not_a_layer_norm_stay():
    """Scale or offset other than ones and zeros: unfused; the batch mean fetched too: both
    right."""
    x = _grid(RNG.standard_normal((2, 6, 5, 4)) * 2 + 3, np.float32)
    for kw in ({"scale": 2.0}, {"offset": 1.0}):
        m, gamma, beta = _batch_norm_rows(**kw)
        assert "FusedBatchNormV3" in _plans(m, x), kw
        want = _reference(x, (3,)) * kw.get("scale", 1.0) + kw.get("offset", 0.0)
        np.testing.assert_allclose(m(x), want * gamma + beta, rtol=1e-5, atol=1e-5)
    m, gamma, beta = _batch_norm_rows()
    y, mean = m.eval(["y", "bn:1"], {"x": x})
    np.testing.assert_allclose(y, _reference(x, (3,), gamma, beta), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mean, x.reshape(-1, 4).mean(axis=1), rtol=1e-5)


def test_an_image_does_not_depend_on_the_batch_beside_it():
    m = _instance_norm("float32", RNG.uniform(0.5, 2, 4), RNG.standard_normal(4), "Relu")
    x = (RNG.standard_normal((5, 6, 5, 4)) * 2 + 3).astype(np.float32)
    m(x), m(x[:1])  # (a shape's first call returns the trace's values, computed unfused)
    whole = m(x)
    for i in range(5):
        np.testing.assert_array_equal(m(x[i:i + 1])[0], whole[i])


def test_images_split_over_threads_as_one_thread(split_calls, monkeypatch):
    """With two threads, ranges of images normalize apart: the one-thread values bit for
    bit, broadcast gamma/beta included; a gamma varying along the batch keeps one range."""
    from tfdeploy.runtime import parallel, threads

    monkeypatch.setattr(parallel, "MIN_WORK", 1 << 6)
    x = (RNG.standard_normal((4, 6, 5, 4)) * 2 + 3).astype(np.float32)
    for gshape, splits in [((4,), 1), ((6, 5, 4), 1), ((4, 1, 1, 4), 0)]:
        gamma = RNG.uniform(0.5, 2, gshape)
        m = _instance_norm("float32", gamma, RNG.standard_normal(4), "Relu")
        m(x)  # (a shape's first call returns the trace's values, computed unfused)
        one = m(x)
        monkeypatch.setitem(threads._state, "threads", 2)
        before = len(split_calls)
        two = m(x)
        monkeypatch.setitem(threads._state, "threads", 1)
        assert len(split_calls) - before == splits, gshape
        np.testing.assert_array_equal(two, one)


# --- against TensorFlow --------------------------------------------------------------------

def _keras():
    pytest.importorskip("tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    return keras


def _against_tf(model, x, rtol=2e-5):
    want = np.asarray(model(x, training=False))
    m = td.convert(model)
    ops = _plans(m, x)
    got = m(x)
    assert got.dtype == want.dtype and got.shape == want.shape
    scale = float(np.max(np.abs(want)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)
    return ops


def _randomize(layer):
    layer.set_weights([RNG.uniform(0.5, 2, w.shape).astype(np.float32)
                       for w in layer.get_weights()])


@pytest.mark.tf
@pytest.mark.parametrize("groups", [4, -1, 1])
@pytest.mark.parametrize("act", ["relu", "swish", None])
def test_keras_group_normalization(groups, act):
    keras = _keras()
    L = keras.layers
    inp = keras.Input((9, 7, 8))
    gn = L.GroupNormalization(groups=groups)
    y = gn(L.Conv2D(8, 3, padding="same")(inp))
    if act is not None:
        y = L.Activation(act)(y)
    model = keras.Model(inp, L.Conv2D(4, 1)(y))
    _randomize(gn)
    for n in (1, 3):
        x = (RNG.standard_normal((n, 9, 7, 8)) + 2).astype(np.float32)
        ops = _against_tf(model, x)
        assert "_GroupNorm" in ops
        assert not {"Relu", "Sigmoid", "Mean", "Rsqrt"} & set(ops)


@pytest.mark.tf
def test_keras_layer_normalization_over_all_but_the_batch():
    keras = _keras()
    L = keras.layers
    inp = keras.Input((6, 5, 4))
    ln = L.LayerNormalization(axis=[1, 2, 3])
    model = keras.Model(inp, L.ReLU()(ln(inp)))
    _randomize(ln)
    ops = _against_tf(model, (RNG.standard_normal((2, 6, 5, 4)) * 4 - 1).astype(np.float32))
    assert ops == ["_GroupNorm"]


@pytest.mark.tf
def test_instance_norm_written_with_tf_nn_moments():
    keras = _keras()
    import tensorflow as tf

    L = keras.layers

    def inorm(x):
        m, v = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        return (x - m) * tf.math.rsqrt(v + 1e-5)

    inp = keras.Input((16, 16, 3))
    y = L.Conv2D(8, 3, padding="same")(inp)
    y = L.ReLU()(L.Lambda(inorm)(y))
    model = keras.Model(inp, L.Conv2D(3, 3, padding="same")(y))
    ops = _against_tf(model, RNG.standard_normal((2, 16, 16, 3)).astype(np.float32))
    assert "_GroupNorm" in ops and "Relu" not in ops


@pytest.mark.tf
@pytest.mark.parametrize("center, scale, epsilon", [(True, True, 1e-4), (False, False, 1e-4),
                                                    (True, True, 1e-12)])
def test_tf_keras_layer_normalization_over_the_last_axis(center, scale, epsilon):
    """tf_keras computes it as a training-mode FusedBatchNormV3 of the rows ([1, R, C, 1],
    NCHW), or, below FusedBatchNorm's least epsilon (BERT's 1e-12), as tf.nn.moments and
    tf.nn.batch_normalization: one _LayerNorm either way."""
    k = pytest.importorskip("tf_keras")
    L = k.layers
    inp = k.Input((7, 12))
    ln = L.LayerNormalization(center=center, scale=scale, epsilon=epsilon)
    model = k.Model(inp, ln(L.Dense(12)(inp)))
    if center or scale:
        _randomize(ln)
    x = (RNG.standard_normal((3, 7, 12)) * 2 + 1).astype(np.float32)
    ops = _against_tf(model, x)
    assert "_LayerNorm" in ops and not {"FusedBatchNormV3", "Mean", "Rsqrt"} & set(ops)


@pytest.mark.tf
def test_tf_keras_layer_normalization_over_images_and_group_normalization():
    k = pytest.importorskip("tf_keras")
    L = k.layers
    inp = k.Input((6, 5, 4))
    ln = L.LayerNormalization(axis=[1, 2, 3])
    model = k.Model(inp, L.ReLU()(ln(inp)))
    _randomize(ln)
    x = (RNG.standard_normal((2, 6, 5, 4)) * 3 - 1).astype(np.float32)
    assert _against_tf(model, x) == ["_GroupNorm"]
    # tf_keras' GroupNormalization: tf.nn.weighted_moments by weights all ones (OnesLike,
    # ZerosLike, Sum, DivNoNan), then tf.nn.batch_normalization's form
    inp = k.Input((6, 5, 8))
    gn = L.GroupNormalization(groups=2)
    model = k.Model(inp, L.Activation("swish")(gn(inp)))
    _randomize(gn)
    for n in (1, 3):
        ops = _against_tf(model, (RNG.standard_normal((n, 6, 5, 8)) + 2).astype(np.float32))
        assert "_GroupNorm" in ops and not {"Sum", "DivNoNan", "OnesLike", "Sigmoid"} & set(ops)


@pytest.mark.tf
def test_weighted_moments_by_other_weights_stay():
    """tf.nn.weighted_moments by real weights is no mean: left unfused, and right."""
    keras = _keras()
    import tensorflow as tf

    def norm(x):  # (weights of x's shape, computed from it)
        m, v = tf.nn.weighted_moments(x, [1, 2], tf.sigmoid(x) + 0.5, keepdims=True)
        return (x - m) * tf.math.rsqrt(v + 1e-3)

    inp = keras.Input((6, 5, 4))
    model = keras.Model(inp, keras.layers.Lambda(norm)(inp))
    ops = _against_tf(model, RNG.standard_normal((2, 6, 5, 4)).astype(np.float32))
    assert "_GroupNorm" not in ops and "DivNoNan" in ops


@pytest.mark.tf
def test_instance_norm_with_tf_nn_batch_normalization():
    keras = _keras()
    import tensorflow as tf

    L = keras.layers
    gamma = RNG.uniform(0.5, 2, 8).astype(np.float32)
    beta = RNG.standard_normal(8).astype(np.float32)

    def inorm(x):
        m, v = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        return tf.nn.batch_normalization(x, m, v, beta, gamma, 1e-5)

    inp = keras.Input((12, 12, 3))
    y = L.LeakyReLU(0.2)(L.Lambda(inorm)(L.Conv2D(8, 3, padding="same")(inp)))
    model = keras.Model(inp, L.Conv2D(3, 3, padding="same")(y))
    ops = _against_tf(model, RNG.standard_normal((2, 12, 12, 3)).astype(np.float32))
    assert "_GroupNorm" in ops and "LeakyRelu" not in ops
