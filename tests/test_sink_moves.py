"""sink_moves (``compiler/passes/sink_moves.py``): a 1-D convolution's Squeeze and a dilated
one's BatchToSpaceND move past the channel-wise steps after them, so ``fuse_conv`` fuses those;
the values are the unfused plan's, and TF's for Keras' 1-D and dilated layers."""

from __future__ import annotations

import numpy as np
import pytest

import tfdeploy as td
from graphs import const, placeholder
from tfdeploy.compiler import pipeline
from tfdeploy.compiler.pipeline import compile_plan
from tfdeploy.ir.graph import Graph, Node, TensorSpec

RNG = np.random.default_rng(0)


def _r(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


def _n(name, op, *ins, **attrs):
    return Node(name, op, list(ins), {"T": "float32", **attrs})


def _conv1d(x="x", w=(3, 4, 6), strides=2, op="Conv2D", axis=-3, fmt="NHWC"):
    """x [N, W, C] -> ExpandDims(axis 1) -> conv -> Squeeze(``axis``): the nodes of TF's
    conv1d, the result named "sq"."""
    k, c, o = w
    wshape = (1, k, c, o) if op == "Conv2D" else (1, k, c, 1)
    return [placeholder("x"), const("dim", np.int32(1)), const("w", _r(*wshape)),
            Node("ex", "ExpandDims", [x, "dim"], {"T": "float32", "Tdim": "int32"}),
            _n("conv", op, "ex", "w", strides=[1, 1, strides, 1], padding="SAME",
               data_format=fmt, dilations=[1, 1, 1, 1]),
            Node("sq", "Squeeze", ["conv"], {"T": "float32", "squeeze_dims": [axis]})]


def _compile(nodes, fetches, **kw):
    g = Graph(list(nodes), [TensorSpec("x", "x:0", "float32")],
              [TensorSpec(f, f"{f}:0", "float32") for f in fetches])
    return compile_plan(g, [f"{f}:0" for f in fetches], ["x:0"], verify=True, **kw)


def _same_values(nodes, fetches, x):
    plain = _compile(nodes, fetches, optimize=False)
    opt = _compile(nodes, fetches)
    for w, g in zip(plain(x), opt(x)):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    return opt


# (id, steps after the Squeeze (reading "sq"), the fused chain's label): each chain fuses
FUSES = [
    ("bias_relu", lambda: [const("b", _r(6)), _n("bias", "BiasAdd", "sq", "b"),
                           _n("out", "Relu", "bias")], "Conv2D+BiasAdd+Relu"),
    ("bn_relu6", lambda: [const("s", _r(1, 1, 6, lo=0.5, hi=2)), const("t", _r(6)),
                          _n("mul", "Mul", "sq", "s"), _n("add", "AddV2", "t", "mul"),
                          _n("out", "Relu6", "add")], "Conv2D+Mul+AddV2+Relu6"),
    ("swish", lambda: [const("b", _r(6)), _n("bias", "BiasAdd", "sq", "b"),
                       _n("sig", "Sigmoid", "bias"), _n("out", "Mul", "bias", "sig")],
     "Conv2D+BiasAdd+Sigmoid+Mul"),
    ("scalar_tanh", lambda: [const("k", np.float32(0.5)), _n("mul", "Mul", "k", "sq"),
                             _n("out", "Tanh", "mul")], "Conv2D+Mul+Tanh"),
]


@pytest.mark.parametrize("case", FUSES, ids=[c[0] for c in FUSES])
def test_chain_after_a_1d_conv_fuses(case):
    _, tail, label = case
    nodes = _conv1d() + tail()
    opt = _same_values(nodes, ["out"], _r(3, 11, 4, lo=-3, hi=3))
    assert [st.label if st.members else st.op for st in opt.steps] == \
        ["ExpandDims", label, "Squeeze"]


def test_depthwise_and_fetched_tail():
    """A depthwise 1-D convolution's chain fuses too; the moved tail may be fetched (the
    Squeeze then makes the fetched value) and read by another step."""
    nodes = _conv1d(w=(5, 4, 4), strides=1, op="DepthwiseConv2dNative") + [
        const("b", _r(4)), const("ax", np.int32(1)), _n("bias", "BiasAdd", "sq", "b"),
        _n("act", "Relu", "bias"), _n("out", "Mean", "act", "ax", Tidx="int32")]
    opt = _same_values(nodes, ["act", "out"], _r(2, 9, 4))
    assert [st.label if st.members else st.op for st in opt.steps] == \
        ["ExpandDims", "DepthwiseConv2dNative+BiasAdd+Relu", "Squeeze", "Mean"]


def _unmoved(nodes, fetches=("out",)):
    """The pass leaves these steps as they are (and the values are the unfused plan's)."""
    opt = _same_values(nodes, list(fetches), _r(3, 11, 4))
    sq = _compile(nodes, list(fetches), passes=["sink_moves"])
    plain = _compile(nodes, list(fetches), optimize=False)
    assert [st.op for st in sq.steps] == [st.op for st in plain.steps]
    return opt


def test_not_moved():
    relu = [_n("out", "Relu", "sq")]
    # the Squeeze's result read outside the chain too
    _unmoved(_conv1d() + [_n("out", "Relu", "sq"), _n("other", "Neg", "sq")],
             ("out", "other"))
    # the conv's result read by another step
    _unmoved(_conv1d() + relu + [_n("other", "Neg", "conv")], ("out", "other"))
    # two values leave the group
    _unmoved(_conv1d() + [_n("a", "Relu", "sq"), _n("out", "Tanh", "a")], ("a", "out"))
    # a constant along the width, not the channels ([W, C] would broadcast over the 1 axis)
    _unmoved(_conv1d() + [const("c", _r(6, 6)), _n("out", "AddV2", "sq", "c")])
    # a constant of more dims than the squeezed value
    _unmoved(_conv1d() + [const("c", _r(1, 1, 1, 6)), _n("out", "AddV2", "sq", "c")])
    # a BiasAdd over NCHW channels
    _unmoved(_conv1d() + [const("b", _r(6)),
                          _n("out", "BiasAdd", "sq", "b", data_format="NCHW")])
    # a residual addition of a run-time value
    _unmoved(_conv1d(strides=1, w=(3, 4, 4)) + [_n("out", "AddV2", "sq", "x")])


def test_not_moved_for_other_squeezes():
    # the squeezed axis must be given, and spatial: not the batch nor the channels
    nodes = _conv1d(w=(3, 4, 1), axis=-1) + [_n("out", "Relu", "sq")]
    _unmoved(nodes)
    nodes = _conv1d() + [_n("out", "Relu", "sq")]
    nodes[-2] = Node("sq", "Squeeze", ["conv"], {"T": "float32", "squeeze_dims": []})
    _unmoved(nodes)


def _keras():
    pytest.importorskip("tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    return keras


def _keras_1d(keras, layer, steps=40, channels=3):
    inp = keras.Input((steps, channels))
    return keras.Model(inp, layer(inp))


KERAS_1D = [
    ("conv1d_relu", lambda L: L.Conv1D(8, 5, strides=2, padding="same", activation="relu"),
     "Conv2D+BiasAdd+Relu"),
    ("conv1d_causal_swish", lambda L: L.Conv1D(8, 3, padding="causal", activation="swish"),
     "Conv2D+BiasAdd+Mul+Sigmoid+Mul"),
    ("separable_tanh", lambda L: L.SeparableConv1D(6, 3, activation="tanh"),
     "Conv2D+BiasAdd+Tanh"),
    ("depthwise_gelu", lambda L: L.DepthwiseConv1D(3, depth_multiplier=2, activation="gelu"),
     "DepthwiseConv2dNative+BiasAdd+_Gelu"),
    ("transpose_elu", lambda L: L.Conv1DTranspose(4, 3, strides=2, activation="elu"),
     "Conv2DBackpropInput+BiasAdd+Elu"),
]


@pytest.mark.tf
@pytest.mark.parametrize("case", KERAS_1D, ids=[c[0] for c in KERAS_1D])
def test_keras_1d_layers(case):
    keras = _keras()
    _, make, label = case
    model = _keras_1d(keras, make(keras.layers))
    for w in model.weights:  # (non-zero biases)
        w.assign(RNG.uniform(-0.5, 0.5, w.shape).astype(np.float32))
    m = td.convert(model)
    for b in (1, 3):
        x = RNG.standard_normal((b, 40, 3)).astype(np.float32)
        want = np.asarray(model(x, training=False))
        got = m(x)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        plan = m.plan(x)
        assert label in [st.label for st in plan.steps], plan


@pytest.mark.tf
def test_keras_dilated_2d_layers():
    """Keras' dilated Conv2D and DepthwiseConv2D run SpaceToBatchND, the convolution and
    BatchToSpaceND; where ``atrous`` keeps them (here: left out), the BatchToSpaceND sinks
    past the bias and activation, which fuse."""
    keras = _keras()
    L = keras.layers
    inp = keras.Input((None, None, 3))
    x = L.Conv2D(8, 3, padding="same", dilation_rate=2, activation="relu")(inp)
    x = L.DepthwiseConv2D(3, padding="same", dilation_rate=(2, 3), activation="relu6")(x)
    model = keras.Model(inp, x)
    for w in model.weights:
        w.assign(RNG.uniform(-0.5, 0.5, w.shape).astype(np.float32))
    m = td.convert(model)
    passes = [name for name, _, _ in pipeline.PASSES if name != "atrous"]
    for shape in ((1, 13, 14, 3), (2, 20, 17, 3)):
        x = RNG.standard_normal(shape).astype(np.float32)
        plan = m.plan(x, passes=passes)
        np.testing.assert_allclose(plan.run((x,))[0], np.asarray(model(x, training=False)),
                                   rtol=1e-5, atol=1e-5)
        labels = [st.label for st in plan.steps]
        assert "Conv2D+BiasAdd+Relu" in labels and labels.count("BatchToSpaceND") == 2 and \
            "DepthwiseConv2dNative+BiasAdd+Relu6" in labels, labels


@pytest.mark.tf
def test_keras_dilated_1d_sinks_both_movers():
    """A dilated Conv1D (``atrous`` left out): its BatchToSpaceND sinks, then its Squeeze."""
    keras = _keras()
    model = _keras_1d(keras, keras.layers.Conv1D(8, 3, padding="causal", dilation_rate=4,
                                                 activation="relu"))
    for w in model.weights:
        w.assign(RNG.uniform(-0.5, 0.5, w.shape).astype(np.float32))
    m = td.convert(model)
    passes = [name for name, _, _ in pipeline.PASSES if name != "atrous"]
    x = RNG.standard_normal((2, 40, 3)).astype(np.float32)
    plan = m.plan(x, passes=passes)
    np.testing.assert_allclose(plan.run((x,))[0], np.asarray(model(x, training=False)),
                               rtol=1e-5, atol=1e-5)
    labels = [st.label for st in plan.steps]
    assert labels[-3:] == ["Conv2D+BiasAdd+Relu", "Squeeze", "BatchToSpaceND"], labels


def _specialized(nodes, x, fetch="out"):
    """The specialized plan (shapes recorded) of ``nodes`` and the unfused plan's values."""
    from graphs import model_of

    m = model_of(nodes, ["x"], [fetch])
    opt = m.plan(x)
    want = m.plan(x, optimize=False).run((x,))[0]
    got = opt.run((x,))[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    return [st.label if st.members else st.op for st in opt.steps]


# (id, the residual step after "bias" (reading "sq" chain and "r"), fused label or None)
RESIDUALS = [
    ("add", _n("out", "AddV2", "bias", "r"), "Conv2D+BiasAdd+AddV2"),
    ("add_left", _n("out", "AddV2", "r", "bias"), "Conv2D+BiasAdd+AddV2"),
    ("sub", _n("out", "Sub", "bias", "r"), "Conv2D+BiasAdd+Sub"),
    ("sub_from", _n("out", "Sub", "r", "bias"), None),  # (r - y: no epilogue op does it)
    ("mul", _n("out", "Mul", "bias", "r"), None),  # (not a residual addition)
]


@pytest.mark.parametrize("case", RESIDUALS, ids=[c[0] for c in RESIDUALS])
@pytest.mark.parametrize("large", [True, False], ids=["large", "small"])
def test_residual_of_a_1d_conv(case, large, monkeypatch):
    """A residual addition of a value of the chain's own shape joins the group, read through
    an ExpandDims, so fuse_conv takes it as its residual (specialized plans: the shapes);
    not below ``RESIDUAL_VALUES`` values (set to 0 here for "large": these maps are small)."""
    from tfdeploy.compiler.passes import sink_moves

    if large:
        monkeypatch.setattr(sink_moves, "RESIDUAL_VALUES", 0)
    _, step, label = case
    if not large:
        label = None
    nodes = _conv1d(strides=1, w=(3, 4, 6)) + [
        const("b", _r(6)), _n("bias", "BiasAdd", "sq", "b"), const("rw", _r(4, 6)),
        _n("r", "MatMul", "x2", "rw"), const("shape", np.array([3, 11, 6], np.int32)),
        const("flat", np.array([33, 4], np.int32)),
        Node("x2", "Reshape", ["x", "flat"], {"T": "float32", "Tshape": "int32"}),
        Node("r3", "Reshape", ["r", "shape"], {"T": "float32", "Tshape": "int32"}), step]
    nodes[-1] = Node(step.name, step.op, [("r3" if i == "r" else i) for i in step.inputs],
                     step.attrs)
    labels = _specialized(nodes, _r(3, 11, 4))
    if label is None:
        assert "Conv2D+BiasAdd" in labels and labels[-1] != "Squeeze", labels
    else:
        assert label in labels and labels[-1] == "Squeeze", labels


def test_broadcast_residual_stays(monkeypatch):
    """A residual operand that would broadcast (one row for every image) is not of the
    chain's shape: the addition stays after the Squeeze."""
    from tfdeploy.compiler.passes import sink_moves

    monkeypatch.setattr(sink_moves, "RESIDUAL_VALUES", 0)
    nodes = _conv1d(strides=1, w=(3, 4, 6)) + [
        const("b", _r(6)), _n("bias", "BiasAdd", "sq", "b"), const("one", _r(1, 11, 6)),
        _n("r", "Mul", "one", "one"), _n("out", "AddV2", "bias", "r")]
    labels = _specialized(nodes, _r(3, 11, 4))
    assert labels[-1] == "AddV2" and "Conv2D+BiasAdd" in labels, labels


@pytest.mark.tf
def test_keras_residual_conv1d_block(monkeypatch):
    """A TCN-like block, Add([Conv1D(relu)(Conv1D(relu)(x)), Conv1D 1x1 (x)]): the addition
    joins one chain, the projection's bias its own."""
    from tfdeploy.compiler.passes import sink_moves

    monkeypatch.setattr(sink_moves, "RESIDUAL_VALUES", 0)
    keras = _keras()
    L = keras.layers
    inp = keras.Input((30, 3))
    y = L.Conv1D(8, 3, padding="causal", activation="relu")(inp)
    y = L.Conv1D(8, 3, padding="causal", activation="relu")(y)
    out = L.Add()([y, L.Conv1D(8, 1)(inp)])
    model = keras.Model(inp, out)
    for w in model.weights:
        w.assign(RNG.uniform(-0.5, 0.5, w.shape).astype(np.float32))
    m = td.convert(model)
    x = RNG.standard_normal((2, 30, 3)).astype(np.float32)
    np.testing.assert_allclose(m(x), np.asarray(model(x, training=False)), rtol=1e-5,
                               atol=1e-5)
    labels = [st.label for st in m.plan(x).steps]
    assert "Conv2D+BiasAdd+Relu+AddV2" in labels and "Conv2D+BiasAdd" in labels, labels
