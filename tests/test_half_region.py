"""half_region: float16 steps computed in float32 holding float16 values.

Arithmetic on float16 values computed in float32 and rounded once is the float16 op's result
exactly (float32 has more than 2 * 11 + 2 bits), so an elementwise region gives numpy's float16
steps bit for bit; mixed_float16 convolutional networks match TF to float16 rounding and run
as float32 chains."""

from __future__ import annotations

import numpy as np
import pytest

import tfdeploy as td
from graphs import const, placeholder
from tfdeploy.compiler import pipeline
from tfdeploy.compiler.pipeline import compile_plan
from tfdeploy.ir.graph import Graph, Node, TensorSpec


def _region_graph():
    """x (float32) -> Cast to float16 -> Add, Mul, Relu6, Sub, RealDiv, Reshape, ConcatV2 with
    float16 constants -> Cast to float32; a float16 value also fetched as it is, and one read
    by Exp (outside the region)."""
    f16 = {"T": "float16"}
    rng = np.random.default_rng(4)
    nodes = [placeholder("x", "float32"),
             Node("h", "Cast", ["x"], {"SrcT": "float32", "DstT": "float16", "Truncate": False}),
             const("c1", rng.uniform(-2, 2, (6,)).astype(np.float16)),
             const("c2", rng.uniform(0.5, 3, (6,)).astype(np.float16)),
             const("c3", np.float16(3.0)),
             const("shape", np.array([-1, 3], np.int32)),
             const("axis", np.array(0, np.int32)),
             Node("add", "AddV2", ["h", "c1"], f16),
             Node("mul", "Mul", ["add", "c2"], f16),
             Node("r6", "Relu6", ["mul"], f16),
             Node("sub", "Sub", ["r6", "h"], f16),
             Node("div", "RealDiv", ["sub", "c3"], f16),
             Node("flat", "Reshape", ["div", "shape"], {"T": "float16", "Tshape": "int32"}),
             Node("cat", "ConcatV2", ["flat", "flat", "axis"],
                  {"T": "float16", "N": 2, "Tidx": "int32"}),
             Node("exp", "Exp", ["r6"], f16),
             Node("out", "Cast", ["cat"], {"SrcT": "float16", "DstT": "float32",
                                           "Truncate": False})]
    outs = [TensorSpec("out", "out:0", "float32"), TensorSpec("mul", "mul:0", "float16"),
            TensorSpec("exp", "exp:0", "float16")]
    return Graph(nodes, [TensorSpec("x", "x:0", "float32")], outs), ["out:0", "mul:0", "exp:0"]


def test_elementwise_region_is_numpys_float16_bit_for_bit():
    g, fetches = _region_graph()
    fast = compile_plan(g, fetches, ["x:0"], verify=True)
    passes = [name for name, _, _ in pipeline.PASSES if name != "half_region"]
    plain = compile_plan(g, fetches, ["x:0"], passes=passes)
    ops = [st.op for st in fast.steps]
    # the Cast in, Add, Mul, Sub and RealDiv round; Relu6 selects values, Reshape and
    # ConcatV2 move them: no rounding after those
    assert ops.count("_RoundHalf") == 5
    # float16 copies for the fetched Mul, for Exp and for the fetched Cast to float32 (which
    # keeps its step: a fetched value is its own array)
    assert "Relu6" in ops and ops.count("Cast") == 4
    x = np.random.default_rng(5).uniform(-9, 9, (4, 6)).astype(np.float32)
    x[0, :5] = [np.inf, -np.inf, np.nan, 7e4, -0.0]  # (7e4: float16's infinity)
    x[1, :3] = [3e-8, -6e-8, 1e-5]                   # float16 subnormals
    for got, want in zip(fast.run((x,)), plain.run((x,))):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        assert np.array_equal(np.signbit(got), np.signbit(want))


def _mixed_cnn(keras):
    """A small mixed_float16 network of the kinds mixed CNNs are made of: convolutions with
    and without bias, BatchNormalization (float32 between Casts), ReLU6, a depthwise
    convolution, a residual addition, zero padding, max pooling, a float16 Dense layer and a
    float32 head."""
    L = keras.layers
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(3)
        inp = keras.Input((20, 20, 3))
        x = L.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inp)
        x = L.ReLU(6.0)(L.BatchNormalization()(x))
        y = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        y = L.ReLU()(L.BatchNormalization()(y))
        y = L.BatchNormalization()(L.Conv2D(16, 1, use_bias=False)(y))
        x = L.Add()([x, y])
        x = L.MaxPooling2D(3, strides=2)(L.ZeroPadding2D(1)(x))
        x = L.Conv2D(8, 3, activation="relu")(x)
        x = L.Dense(6, activation="relu")(L.Flatten()(x))
        out = L.Dense(5, dtype="float32")(x)
        model = keras.Model(inp, out)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if "BatchNormalization" in type(layer).__name__:
            layer.set_weights([w + rng.uniform(0.1, 0.5, size=np.shape(w)).astype(np.float32)
                               for w in layer.get_weights()])
    return model


@pytest.mark.tf
def test_mixed_float16_cnn_runs_as_float32_chains():
    """Its convolutions, BatchNormalizations and activations are float32 chains rounding to
    float16 values (none of numpy's float16 arithmetic or conversions left between them), and
    the results are TF's to float16 rounding, and the unoptimized plan's."""
    keras = pytest.importorskip("keras")
    model = _mixed_cnn(keras)
    x = np.random.default_rng(1).uniform(-2, 2, (3, 20, 20, 3)).astype(np.float32)
    want = np.asarray(model(x, training=False))
    m = td.convert(model, check_data=False)
    plan = m.plan(x)
    chains = [st for st in plan.steps if st.op == "_FusedChain" and st.attrs["core"] != "MatMul"]
    assert [st.label for st in chains] == [
        "Conv2D+Mul+AddV2+_RoundHalf+Relu6", "DepthwiseConv2dNative+Mul+AddV2+_RoundHalf+Relu",
        "Conv2D+Mul+AddV2+_RoundHalf+AddV2+_RoundHalf", "Conv2D+BiasAdd+_RoundHalf+Relu"]
    assert all("dtype" not in st.attrs and ("round_half", None) in st.attrs["epilogue"]
               for st in chains)  # (float32 chains, their BatchNorms in their weights)
    ops = [st.op for st in plan.steps]
    assert not {"Relu6", "Relu", "DepthwiseConv2dNative", "Conv2D", "Mul"} & set(ops), ops
    # the float16 Dense layer reads a float16 copy of the flattened features: fuse_half
    # takes its Cast as its stack's rounding of a float32 input
    stack = next(st for st in plan.steps if st.op == "_HalfStack")
    assert stack.attrs["cast_in"] and plan.steps[plan.steps.index(stack) - 1].op == "Reshape"
    assert "Cast" not in ops, ops
    got = m(x)
    scale = float(np.max(np.abs(want)))
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2 * scale)
    np.testing.assert_allclose(got, m.plan(x, optimize=False).run((x,))[0], rtol=1e-2,
                               atol=1e-2 * scale)


@pytest.mark.parametrize("six", [False, True])
def test_relu_after_rounding_is_the_rounding_then_relu(six):
    """A chain's "round_half" then "relu"/"relu6" runs as one op, ReLU first and the rounding
    of non-negative values (four passes): the same values (a rounded -0 comes out +0), and
    values beyond float16's range, infinities and NaNs through the signed rounding."""
    from tfdeploy.kernels.nn import fused
    from tfdeploy.numerics.half import round_to_float16

    kind = "relu6" if six else "relu"
    assert fused._relu_after_rounding([("add", 1), ("round_half", None), (kind, None)]) == \
        [("add", 1), (f"{kind}_round_half", None)]
    assert fused._relu_after_rounding([(kind, None), ("round_half", None)]) == \
        [(kind, None), ("round_half", None)]
    op = fused.epilogue_op(f"{kind}_round_half", np.dtype(np.float32))
    rng = np.random.default_rng(6)
    big = np.float32([65504, 65519, 65520, 1e6, np.inf, -np.inf])
    for y in (rng.uniform(-8, 8, 5000).astype(np.float32),
              (rng.standard_normal(5000) * 1e-5).astype(np.float32),  # float16 subnormals
              np.concatenate([rng.uniform(0, 7e4, 100).astype(np.float32), big]),
              np.float32([np.nan, 1.0, -2.0, 6.0004, 5.9999])):
        want = round_to_float16(y)
        want = np.clip(want, 0, 6 if six else np.inf)
        got = op(y.copy(), ())
        np.testing.assert_array_equal(got, want)
        assert not np.any(np.signbit(got[~np.isnan(got)]))


@pytest.mark.tf
def test_mixed_float16_swish_joins_the_chain():
    """EfficientNet's float16 swish (x * sigmoid(x), Keras 3: x * sigmoid(1 * x)) computes
    in float32 and rounds once, after the product (x itself, the BatchNorm's Cast, does not
    round): fuse_conv takes it into the convolution's chain, the BatchNorm in its weights.
    The results are TF's to float16 rounding."""
    keras = pytest.importorskip("keras")
    L = keras.layers
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(4)
        inp = keras.Input((12, 12, 4))
        x = L.Activation("swish")(L.BatchNormalization()(L.Conv2D(8, 3, use_bias=False)(inp)))
        x = L.Activation("sigmoid")(L.Conv2D(6, 1)(x))
        out = L.Flatten(dtype="float32")(x)
        model = keras.Model(inp, out)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = np.random.default_rng(2).uniform(-2, 2, (2, 12, 12, 4)).astype(np.float32)
    want = np.asarray(model(x, training=False))
    m = td.convert(model, check_data=False)
    plan = m.plan(x)
    labels = [st.label for st in plan.steps if st.op == "_FusedChain"]
    # one rounding, after the swish's product: not even the BatchNorm's Cast rounds
    assert labels[0] == "Conv2D+Mul+AddV2+Mul+Sigmoid+Mul+_RoundHalf", labels
    assert "Sigmoid" in labels[1] and labels[1].endswith("_RoundHalf"), labels
    assert not {"Sigmoid", "Mul", "Cast"} & {st.op for st in plan.steps}, plan
    got = m(x)
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2 * float(np.max(np.abs(want))))
