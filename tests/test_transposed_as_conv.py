"""transposed_as_conv (``compiler/passes/transposed_as_conv.py``): a unit-stride
Conv2DBackpropInput with a constant filter becomes the Conv2D of the flipped, channel-swapped
filter with EXPLICIT pads (k - 1 - lo, k - 1 - hi) in a specialized plan, and fuses as one; the
values are the unfused plan's, and TF's for Keras' Conv2DTranspose(strides=1)."""

from __future__ import annotations

import numpy as np
import pytest

import tfdeploy as td
from graphs import const, model_of, placeholder
from tfdeploy.ir.graph import Node

RNG = np.random.default_rng(0)


def _r(*shape, dtype=np.float32):
    return RNG.uniform(-1, 1, shape).astype(dtype)


def _model(dy_shape, w_shape, out_hw, padding="SAME", explicit=None, strides=(1, 1, 1, 1),
           dtype="float32", relu=True):
    """dy -> Conv2DBackpropInput(sizes [N, *out_hw, C]) [-> BiasAdd -> Relu] -> "out"."""
    np_dt = np.dtype(dtype)
    c = w_shape[2]
    nodes = [placeholder("dy", dtype), const("w", _r(*w_shape, dtype=np_dt)),
             const("sizes", np.array([dy_shape[0], *out_hw, c], np.int32)),
             const("b", _r(c, dtype=np_dt))]
    attrs = {"T": dtype, "strides": list(strides), "padding": padding, "data_format": "NHWC",
             "dilations": [1, 1, 1, 1]}
    if explicit is not None:
        attrs["explicit_paddings"] = explicit
    nodes.append(Node("t", "Conv2DBackpropInput", ["sizes", "w", "dy"], attrs))
    out = "t"
    if relu:
        nodes += [Node("bias", "BiasAdd", ["t", "b"], {"T": dtype}),
                  Node("out", "Relu", ["bias"], {"T": dtype})]
        out = "out"
    return model_of(nodes, ["dy"], [out])


def _cores(plan):
    return [st.attrs.get("core", st.op) for st in plan.steps]


def _check(m, x, rewritten: bool, tol=1e-5):
    plan, plain = m.plan(x), m.plan(x, optimize=False)
    got, want = plan.run((x,))[0], plain.run((x,))[0]
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    assert ("Conv2DBackpropInput" not in _cores(plan)) == rewritten, plan
    return plan


CASES = [
    # (id, dy, filter [KH, KW, C, O], output H W, padding, explicit_paddings)
    ("3x3_same", (2, 9, 10, 4), (3, 3, 5, 4), (9, 10), "SAME", None),
    ("3x3_valid", (1, 7, 6, 3), (3, 3, 2, 3), (9, 8), "VALID", None),
    ("1x1", (2, 5, 4, 6), (1, 1, 3, 6), (5, 4), "SAME", None),
    ("2x2_same", (1, 6, 5, 3), (2, 2, 4, 3), (6, 5), "SAME", None),
    ("5x3_same", (1, 7, 8, 2), (5, 3, 3, 2), (7, 8), "SAME", None),
    ("explicit", (1, 6, 6, 3), (3, 3, 2, 3), (6, 6), "EXPLICIT", [0, 0, 1, 1, 2, 0, 0, 0]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_unit_stride_transposed_convolution_is_a_conv(case):
    _, dys, ws, hw, padding, explicit = case
    plan = _check(_model(dys, ws, hw, padding, explicit), _r(*dys), True)
    assert "Conv2D+BiasAdd+Relu" in [st.label for st in plan.steps], plan


def test_float64_and_alone():
    dys, ws = (1, 6, 6, 3), (3, 3, 4, 3)
    _check(_model(dys, ws, (6, 6), dtype="float64"), _r(*dys, dtype=np.float64), True,
           tol=1e-12)
    _check(_model(dys, ws, (6, 6), relu=False), _r(*dys), True)


def test_not_rewritten():
    # stride 2: a real transposed convolution
    _check(_model((1, 4, 4, 3), (3, 3, 2, 3), (8, 8), strides=(1, 2, 2, 1)), _r(1, 4, 4, 3),
           False)
    # a forward pad past the kernel (the transposed one would be negative)
    _check(_model((1, 7, 4, 3), (3, 3, 2, 3), (6, 6), "EXPLICIT", [0, 0, 3, 0, 0, 0, 0, 0]),
           _r(1, 7, 4, 3), False)


def test_wrong_dy_keeps_the_ops_error():
    m = _model((1, 6, 6, 3), (3, 3, 2, 3), (6, 6))
    x = _r(1, 5, 6, 3)  # (6 rows expected)
    with pytest.raises(td.TFDeployError, match="out_backprop"):
        m(x)


@pytest.mark.tf
def test_keras_conv2d_transpose_stride_1():
    pytest.importorskip("tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((9, 8, 5))
    y = L.Conv2DTranspose(6, 3, padding="same")(inp)
    y = L.Activation("relu")(L.BatchNormalization()(y))
    y = L.Conv2DTranspose(4, (2, 3), padding="valid", activation="relu")(y)
    model = keras.Model(inp, y)
    for w in model.weights:
        w.assign(RNG.uniform(0.5, 1.0, w.shape).astype(np.float32))
    m = td.convert(model)
    for b in (1, 3):
        x = RNG.standard_normal((b, 9, 8, 5)).astype(np.float32)
        np.testing.assert_allclose(m(x), np.asarray(model(x, training=False)), rtol=1e-5,
                                   atol=1e-5)
        plan = m.plan(x)
        assert "Conv2DBackpropInput" not in _cores(plan), plan
