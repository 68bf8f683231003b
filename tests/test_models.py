"""Whole Keras models (Keras 3 and tf_keras): convert, save, evaluate without TF, compare."""

from __future__ import annotations

import numpy as np
import pytest

import tfdeploy as td
from tfree import run_without_tf

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.tf


def _keras(flavour):
    if flavour == "keras3":
        import keras

        return keras
    return pytest.importorskip("tf_keras")


def _mlp(k):
    return k.Sequential([k.Input((20,), name="features"), k.layers.Dense(32, activation="relu"),
                         k.layers.Dropout(0.3), k.layers.Dense(16, activation="tanh"),
                         k.layers.Dense(5)])


def _cnn(k):
    inp = k.Input((32, 32, 3), name="image")
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = k.layers.BatchNormalization()(x)
    x = k.layers.MaxPooling2D()(x)
    x = k.layers.DepthwiseConv2D(3, padding="valid")(x)
    x = k.layers.Conv2D(16, 3, strides=2)(x)
    x = k.layers.ReLU(max_value=6.0)(x)
    x = k.layers.AveragePooling2D(pool_size=2, padding="same")(x)
    x = k.layers.Flatten()(x)
    x = k.layers.Dense(10, activation="sigmoid")(x)
    out = k.layers.Dense(4)(x)
    return k.Model(inp, out)


def _mobilenet_v2(k):
    return k.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None,
                                      classifier_activation=None, alpha=0.35)


def _randomize_bn(model):
    """Random BatchNorm statistics, so the test sees more than an identity normalisation."""
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if "BatchNormalization" in type(layer).__name__:
            new = [w + rng.uniform(0.1, 0.5, size=np.shape(w)).astype(np.float32)
                   for w in layer.get_weights()]
            layer.set_weights(new)


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
@pytest.mark.parametrize("build, shape", [(_mlp, (7, 20)), (_cnn, (3, 32, 32, 3)),
                                          (_mobilenet_v2, (2, 96, 96, 3))],
                         ids=["mlp", "cnn", "mobilenet_v2"])
def test_keras_model(flavour, build, shape, tmp_path):
    k = _keras(flavour)
    k.utils.set_random_seed(0)
    model = build(k)
    _randomize_bn(model)
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    want = np.asarray(model(x, training=False))
    m = td.convert(model)
    assert m.inputs[0].shape == [None, *shape[1:]]
    p = tmp_path / "model.tfd"
    m.save(p)
    (got,) = run_without_tf(p, [x], tmp_path)
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)
    # a different batch size works too
    x2 = np.random.default_rng(2).random((1, *shape[1:]), dtype=np.float32)
    np.testing.assert_allclose(m(x2), np.asarray(model(x2, training=False)), rtol=1e-4,
                               atol=1e-4 * scale)


def test_keras_unbuilt_subclass_needs_a_signature():
    import keras

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(3)

        def call(self, x):
            return self.d(x) * 2.0

    model = Sub()
    with pytest.raises(td.ConversionError, match="input_signature"):
        td.convert(model)
    x = np.ones((2, 4), np.float32)
    model(x)
    m = td.convert(model, input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    np.testing.assert_allclose(m(x), np.asarray(model(x)), rtol=1e-6)


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_keras_multi_input_multi_output(flavour, tmp_path):
    k = _keras(flavour)
    k.utils.set_random_seed(0)
    a = k.Input((5,), name="numbers")
    b = k.Input((3, 4), name="sequence")
    h = k.layers.Concatenate()([k.layers.Dense(6)(a), k.layers.Flatten()(b)])
    out1 = k.layers.Dense(2, name="score")(h)
    out2 = k.layers.Dense(3, activation="softmax", name="probs")(h)
    model = k.Model([a, b], [out1, out2])
    m = td.convert(model)
    assert [s.name for s in m.inputs] == ["numbers", "sequence"]
    assert [s.shape for s in m.inputs] == [[None, 5], [None, 3, 4]]
    rng = np.random.default_rng(0)
    xa = rng.standard_normal((4, 5)).astype(np.float32)
    xb = rng.standard_normal((4, 3, 4)).astype(np.float32)
    want = [np.asarray(w) for w in model([xa, xb], training=False)]
    got = m(xa, xb)
    assert isinstance(got, tuple) and len(got) == 2
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    got_named = m(sequence=xb, numbers=xa)
    for g, w in zip(got_named, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    p = tmp_path / "m.tfd"
    m.save(p)
    for g, w in zip(run_without_tf(p, [xa, xb], tmp_path), want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
