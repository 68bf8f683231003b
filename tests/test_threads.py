"""Threads sharing one converted model, control flow included, all get correct results."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import tfdeploy as td

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.tf


def _hammer(model, inputs, wants, n_threads=8, rounds=10):
    errors = []
    barrier = threading.Barrier(n_threads)

    def work(i):
        barrier.wait()
        for _ in range(rounds):
            got = model(inputs[i % len(inputs)])
            want = wants[i % len(inputs)]
            if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-5):
                errors.append(i)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, f"threads {sorted(set(errors))} got wrong results"


def test_threads_share_an_lstm():
    import keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((None, 4)), keras.layers.LSTM(8, return_sequences=True),
                          keras.layers.GRU(6), keras.layers.Dense(3)])
    model = td.convert(m)
    rng = np.random.default_rng(0)
    # different batch sizes and sequence lengths in flight at once
    inputs = [rng.standard_normal((1 + i % 3, 3 + 2 * i, 4)).astype(np.float32) for i in range(8)]
    wants = [np.asarray(m(x, training=False)) for x in inputs]
    _hammer(model, inputs, wants)


def test_threads_share_a_while_loop():
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def f(x):
        n = tf.cast(tf.reduce_sum(tf.abs(x)), tf.int32) % 7 + 1
        ta = tf.TensorArray(tf.float32, size=n)

        def body(i, acc, ta):
            acc = acc * 0.5 + x
            return i + 1, acc, ta.write(i, tf.reduce_sum(acc))

        _, acc, ta = tf.while_loop(lambda i, *_: i < n, body, [0, x, ta])
        return tf.concat([acc, ta.stack()], 0)

    model = td.convert(f)
    rng = np.random.default_rng(1)
    inputs = [rng.uniform(-3, 3, size=2 + i).astype(np.float32) for i in range(8)]
    wants = [f(x).numpy() for x in inputs]
    _hammer(model, inputs, wants)


def test_threads_share_a_cnn():
    """The fused conv kernels keep per-shape memos and per-thread scratch buffers: threads
    with different batch sizes in flight at once still get their own results."""
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((33, 30, 3))
    x = L.ZeroPadding2D(((0, 1), (0, 1)))(inp)
    x = L.Conv2D(8, 3, strides=2, padding="valid")(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("swish")(x)
    x = L.Conv2D(24, 1)(x)  # an expansion: its bias in the matmul
    x = L.ZeroPadding2D(((0, 1), (0, 1)))(x)
    x = L.DepthwiseConv2D(3, strides=2)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    se = L.GlobalAveragePooling2D(keepdims=True)(x)
    se = L.Conv2D(24, 1, activation="sigmoid")(se)
    x = L.Multiply()([x, se])  # squeeze-excite: into the next conv
    x = L.Conv2D(16, 1)(x)
    x = L.BatchNormalization()(x)
    x = L.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, L.Dense(4)(x))
    for layer in m.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([w + 0.3 for w in layer.get_weights()])
    model = td.convert(m)
    labels = [st.label for st in model.plan().steps]
    assert any(lb.startswith("Mul+Conv2D") for lb in labels), labels
    assert "Pad" not in labels, labels
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1 + i % 4, 33, 30, 3)).astype(np.float32) for i in range(8)]
    wants = [np.asarray(m(x, training=False)) for x in inputs]
    _hammer(model, inputs, wants)
