"""atrous (``compiler/passes/atrous.py``): SpaceToBatchND, an undilated VALID convolution and
BatchToSpaceND (with ExpandDims/Squeeze in 1-D, and a zero Pad before) become one dilated
convolution with EXPLICIT padding in a specialized plan; the values are the unfused plan's,
and TF's for Keras' dilated layers."""

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


def _dilated(x_shape, w_shape, block, pads, crops, op="Conv2D", pad=None, pad_value=0.0,
             padding="VALID", b2s_block=None):
    """Nodes of TF's dilated convolution of input "x" (3-D: 1-D with ExpandDims and Squeeze;
    4-D: 2-D), the result "out"; ``pad``: a PadV2 of "x" by these pairs first."""
    one_d = len(x_shape) == 3
    nodes = [placeholder("x"), const("w", _r(*w_shape)), const("block", _i(block)),
             const("pads", _i(pads)), const("crops", _i(crops)),
             const("block2", _i(b2s_block or block))]
    src = "x"
    if pad is not None:
        nodes += [const("pp", _i(pad)), const("pv", np.float32(pad_value)),
                  Node("pad", "PadV2", ["x", "pp", "pv"], {"T": "float32"})]
        src = "pad"
    nodes.append(Node("s2b", "SpaceToBatchND", [src, "block", "pads"], {"T": "float32"}))
    src = "s2b"
    if one_d:
        nodes += [const("dim", np.int32(-3)),
                  Node("ed", "ExpandDims", ["s2b", "dim"], {"T": "float32"})]
        src = "ed"
    nodes.append(Node("conv", op, [src, "w"], {
        "T": "float32", "strides": [1, 1, 1, 1], "padding": padding, "data_format": "NHWC",
        "dilations": [1, 1, 1, 1]}))
    src = "conv"
    if one_d:
        nodes.append(Node("sq", "Squeeze", ["conv"], {"T": "float32", "squeeze_dims": [-3]}))
        src = "sq"
    nodes.append(Node("out", "BatchToSpaceND", [src, "block2", "crops"], {"T": "float32"}))
    return model_of(nodes, ["x"], ["out"])


def _ops(plan):
    return [st.op for st in plan.steps]


def _check(m, x, rewritten: bool):
    plan = m.plan(x)
    plain = m.plan(x, optimize=False)
    got, want = plan.run((x,))[0], plain.run((x,))[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert ("SpaceToBatchND" not in _ops(plan)) == rewritten, plan
    return plan


CASES = [
    # (id, x, filter, block, pads, crops, op, Pad before)
    ("1d_same", (2, 23, 3), (1, 3, 3, 4), [2], [[2, 3]], [[0, 1]], "Conv2D", None),
    ("1d_causal_pad", (3, 20, 2), (1, 3, 2, 5), [4], [[0, 0]], [[0, 0]], "Conv2D",
     [[0, 0], [8, 0], [0, 0]]),
    ("1d_depthwise", (1, 17, 4), (1, 5, 4, 2), [3], [[6, 7]], [[0, 1]],
     "DepthwiseConv2dNative", None),
    ("2d_small", (2, 9, 10, 3), (3, 3, 3, 4), [2, 3], [[2, 3], [3, 5]], [[0, 1], [0, 0]],
     "Conv2D", None),
    ("2d_depthwise", (1, 12, 11, 6), (3, 3, 6, 1), [2, 2], [[2, 3], [2, 3]],
     [[0, 1], [0, 1]], "DepthwiseConv2dNative", [[0, 0], [1, 0], [0, 0], [0, 0]]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_dilated_convolution_in_one_step(case):
    _, xs, ws, block, pads, crops, op, pad = case
    m = _dilated(xs, ws, block, pads, crops, op=op, pad=pad)
    plan = _check(m, _r(*xs), True)
    conv = [st for st in plan.steps if st.op == op or st.attrs.get("core") == op]
    assert len(conv) == 1 and "Pad" not in _ops(plan) and "BatchToSpaceND" not in _ops(plan)


def test_not_rewritten():
    x1, w1 = (2, 23, 3), (1, 3, 3, 4)
    # a crop larger than the padding on its side
    _check(_dilated(x1, w1, [2], [[0, 3]], [[1, 1]]), _r(*x1), False)
    # blocks that differ
    m = _dilated(x1, w1, [2], [[2, 3]], [[0, 1]], b2s_block=[1])
    x = _r(*x1)
    assert "SpaceToBatchND" in _ops(m.plan(x))
    # a SAME convolution of the phases
    _check(_dilated(x1, w1, [2], [[2, 3]], [[0, 1]], padding="SAME"), _r(*x1), False)
    # a Pad of a non-zero value stays (the rest is rewritten)
    m = _dilated(x1, w1, [2], [[0, 3]], [[0, 1]], pad=[[0, 0], [2, 0], [0, 0]], pad_value=1.0)
    plan = _check(m, _r(*x1), True)
    assert "PadV2" in _ops(plan)
    # Conv2D phases that Winograd runs keep them: 3x3, 128 channels in and out, 30 x 30 a phase
    x2 = (1, 60, 60, 128)
    _check(_dilated(x2, (3, 3, 128, 128), [2, 2], [[2, 2], [2, 2]], [[0, 0], [0, 0]]),
           _r(*x2), False)


def test_shape_the_block_does_not_divide():
    """An input the block does not divide keeps SpaceToBatchND, which raises TF's error."""
    m = _dilated((1, 22, 3), (1, 3, 3, 4), [4], [[2, 3]], [[0, 1]])
    with pytest.raises(td.TFDeployError, match="SpaceToBatchND"):
        m(_r(1, 22, 3))


def _keras():
    pytest.importorskip("tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    return keras


KERAS = [
    ("conv1d_causal", lambda L: L.Conv1D(6, 3, padding="causal", dilation_rate=4,
                                         activation="relu"), (40, 3), "Conv2D+BiasAdd+Relu"),
    ("conv1d_same", lambda L: L.Conv1D(6, 5, padding="same", dilation_rate=3), (31, 3),
     "Conv2D+BiasAdd"),
    ("separable1d", lambda L: L.SeparableConv1D(4, 3, padding="same", dilation_rate=2,
                                                activation="tanh"), (25, 3), None),
    ("conv2d", lambda L: L.Conv2D(6, 3, padding="same", dilation_rate=(2, 3),
                                  activation="relu"), (13, 14, 3), "Conv2D+BiasAdd+Relu"),
    ("depthwise2d_valid", lambda L: L.DepthwiseConv2D(3, dilation_rate=2, activation="relu6"),
     (15, 12, 4), "DepthwiseConv2dNative+BiasAdd+Relu6"),
]


@pytest.mark.tf
@pytest.mark.parametrize("case", KERAS, ids=[c[0] for c in KERAS])
def test_keras_dilated_layers(case):
    keras = _keras()
    _, make, shape, label = case
    inp = keras.Input((None,) * (len(shape) - 1) + shape[-1:])
    model = keras.Model(inp, make(keras.layers)(inp))
    for w in model.weights:
        w.assign(RNG.uniform(-0.5, 0.5, w.shape).astype(np.float32))
    m = td.convert(model)
    for b in (1, 3):
        x = RNG.standard_normal((b, *shape)).astype(np.float32)
        np.testing.assert_allclose(m(x), np.asarray(model(x, training=False)), rtol=1e-5,
                                   atol=1e-5)
        plan = m.plan(x)
        ops = _ops(plan)
        assert "SpaceToBatchND" not in ops and "BatchToSpaceND" not in ops, plan
        if label is not None:
            assert label in [st.label for st in plan.steps], plan
