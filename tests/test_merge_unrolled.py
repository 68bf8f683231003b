"""merge_unrolled (``compiler/passes/merge_unrolled.py``): a layer Keras 3 unrolls over time
steps (TimeDistributed: StridedSlice of each step, the layer, Pack) runs once over the steps
joined into the batch; the values are the unfused plan's, and TF's."""

from __future__ import annotations

import numpy as np
import pytest

import tfdeploy as td
from graphs import const, model_of, placeholder
from tfdeploy.ir.graph import Node

RNG = np.random.default_rng(0)


def _r(*shape):
    return RNG.uniform(-1, 1, shape).astype(np.float32)


def _i(v):
    return np.asarray(v, np.int32)


def _unrolled(t=3, weights=None, order=None, transposed=True, extra=(), act="Relu",
              const_shape=(4,), also=()):
    """x [B, T, 5, 5, 2] -> [Transpose ->] for each step: StridedSlice, 3x3 Conv2D (weights[i]
    or one weight), BiasAdd, ``act`` -> Pack [-> Transpose back] -> "out"."""
    nodes = [placeholder("x"), const("w", _r(3, 3, 2, 4)), const("b", _r(*const_shape)),
             const("perm", _i([1, 0, 2, 3, 4]))]
    src = "x"
    if transposed:
        nodes.append(Node("xt", "Transpose", ["x", "perm"], {"T": "float32"}))
        src = "xt"
    outs = []
    for s in (order or range(t)):
        nodes += [const(f"b{s}", _i([s])), const(f"e{s}", _i([s + 1])), const(f"s{s}", _i([1])),
                  Node(f"sl{s}", "StridedSlice", [src, f"b{s}", f"e{s}", f"s{s}"],
                       {"T": "float32", "Index": "int32", "shrink_axis_mask": 1,
                        "begin_mask": 0, "end_mask": 0, "ellipsis_mask": 0,
                        "new_axis_mask": 0})]
        w = "w"
        if weights is not None:
            nodes.append(const(f"w{s}", weights[s]))
            w = f"w{s}"
        nodes += [Node(f"c{s}", "Conv2D", [f"sl{s}", w], {
            "T": "float32", "strides": [1, 1, 1, 1], "padding": "SAME",
            "data_format": "NHWC", "dilations": [1, 1, 1, 1]}),
            Node(f"a{s}", "BiasAdd", [f"c{s}", "b"], {"T": "float32"}),
            Node(f"r{s}", act, [f"a{s}"], {"T": "float32"})]
        outs.append(f"r{s}")
    nodes.append(Node("pk", "Pack", outs, {"T": "float32", "N": len(outs), "axis": 0}))
    last = "pk"
    if transposed:
        nodes.append(Node("out", "Transpose", ["pk", "perm"], {"T": "float32"}))
        last = "out"
    return model_of(nodes + list(extra), ["x"], [last, *also])


def _ops(m, x):
    plan = m.plan(x)
    want = m.plan(x, optimize=False).run((x,))[0]
    got = plan.run((x,))[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    return [st.op for st in plan.steps]


def test_unrolled_steps_run_once():
    ops = _ops(_unrolled(), _r(2, 3, 5, 5, 2))
    assert "Pack" not in ops and "StridedSlice" not in ops and "Transpose" not in ops, ops
    assert ops.count("_FusedChain") == 1


def test_without_the_transposes():
    """Slices of a [T, B, ...] value (no Transpose around): joined as [T * B, ...]."""
    ops = _ops(_unrolled(transposed=False), _r(3, 2, 5, 5, 2))
    assert "Pack" not in ops and ops.count("_FusedChain") == 1, ops


def test_not_merged():
    x = _r(2, 3, 5, 5, 2)
    # each step its own weights
    ops = _ops(_unrolled(weights=[_r(3, 3, 2, 4) for _ in range(3)]), x)
    assert "Pack" in ops and ops.count("_FusedChain") == 3
    # steps packed out of order
    assert "Pack" in _ops(_unrolled(order=[0, 2, 1]), x)
    # a step's value read elsewhere too
    m = _unrolled(extra=[Node("other", "Neg", ["a1"], {"T": "float32"})], also=["other"])
    assert "Pack" in _ops(m, x)


def _keras():
    pytest.importorskip("tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    return keras


@pytest.mark.tf
def test_keras_time_distributed():
    """TimeDistributed Conv2D, MaxPooling2D, Flatten and Dense into an LSTM, against TF: no
    Pack left, one convolution."""
    keras = _keras()
    L = keras.layers
    inp = keras.Input((4, 12, 12, 3))
    x = L.TimeDistributed(L.Conv2D(6, 3, activation="relu"))(inp)
    x = L.TimeDistributed(L.MaxPooling2D())(x)
    x = L.TimeDistributed(L.Flatten())(x)
    x = L.TimeDistributed(L.Dense(8, activation="tanh"))(x)
    model = keras.Model(inp, L.LSTM(5)(x))
    m = td.convert(model)
    for b in (1, 3):
        x = RNG.standard_normal((b, 4, 12, 12, 3)).astype(np.float32)
        np.testing.assert_allclose(m(x), np.asarray(model(x, training=False)), rtol=1e-5,
                                   atol=1e-5)
        ops = [st.op for st in m.plan(x).steps]
        assert "Pack" not in ops and ops.count("StridedSlice") <= 1, ops
