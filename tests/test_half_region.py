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
    by Sin (outside the region)."""
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
             Node("exp", "Sin", ["r6"], f16),
             Node("out", "Cast", ["cat"], {"SrcT": "float16", "DstT": "float32",
                                           "Truncate": False})]
    outs = [TensorSpec("out", "out:0", "float32"), TensorSpec("mul", "mul:0", "float16"),
            TensorSpec("exp", "exp:0", "float16")]
    return Graph(nodes, [TensorSpec("x", "x:0", "float32")], outs), ["out:0", "mul:0", "exp:0"]


def test_a_float16_lookup_reads_a_rounded_table():
    """Keras 3's Embedding under mixed_float16: its float32 table gathered (wrapping negative
    indices), then cast to float16: one lookup in the table rounded once, numpy's float16
    values bit for bit; an index out of range raises TF's error through the unfused steps."""
    from graphs import model_of

    table = np.random.default_rng(3).standard_normal((10, 4)).astype(np.float32) * 3
    i32, f16 = {"T": "int32"}, {"T": "float16"}
    nodes = [placeholder("i", "int32", [None, 3]), const("table", table),
             const("zero", np.array(0, np.int32)), const("n", np.array(10, np.int32)),
             const("axis", np.array(0, np.int32)), const("c", np.float16(1.5)),
             Node("neg", "Less", ["i", "zero"], i32), Node("up", "AddV2", ["i", "n"], i32),
             Node("idx", "SelectV2", ["neg", "up", "i"], i32),
             Node("g", "GatherV2", ["table", "idx", "axis"],
                  {"Tparams": "float32", "Tindices": "int32", "Taxis": "int32",
                   "batch_dims": 0}),
             Node("h", "Cast", ["g"], {"SrcT": "float32", "DstT": "float16", "Truncate": False}),
             Node("y", "Mul", ["h", "c"], f16)]
    m = model_of(nodes, ["i"], ["y"])
    i = np.array([[0, 9, -1], [3, -10, 5]], np.int32)
    plan = m.plan(i)
    ops = [st.op for st in plan.steps]
    assert ops[0] == "_WrappedGather" and plan.steps[0].label.endswith("_RoundHalf")
    assert ops.count("_RoundHalf") == 1  # (the Mul's)
    want = table.astype(np.float16)[i] * np.float16(1.5)
    np.testing.assert_array_equal(plan.run((i,))[0], want)
    np.testing.assert_array_equal(m(i), want)
    with pytest.raises(td.TFDeployError, match="10"):
        m(np.array([[0, 10, 1], [0, 0, 0]], np.int32))


def test_elementwise_region_is_numpys_float16_bit_for_bit():
    g, fetches = _region_graph()
    fast = compile_plan(g, fetches, ["x:0"], verify=True)
    passes = [name for name, _, _ in pipeline.PASSES if name != "half_region"]
    plain = compile_plan(g, fetches, ["x:0"], passes=passes)
    ops = [st.op for st in fast.steps]
    # the Cast in, Add, Mul, Sub and RealDiv round; Relu6 selects values, Reshape and
    # ConcatV2 move them: no rounding after those
    assert ops.count("_RoundHalf") == 5
    # float16 copies (by bits) for the fetched Mul, for Sin and for the fetched Cast to
    # float32 (which keeps its step: a fetched value is its own array)
    assert "Relu6" in ops and ops.count("_HalfCopy") == 3 and ops.count("Cast") == 1
    x = np.random.default_rng(5).uniform(-9, 9, (4, 6)).astype(np.float32)
    x[0, :5] = [np.inf, -np.inf, np.nan, 7e4, -0.0]  # (7e4: float16's infinity)
    x[1, :3] = [3e-8, -6e-8, 1e-5]                   # float16 subnormals
    for got, want in zip(fast.run((x,)), plain.run((x,))):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        assert np.array_equal(np.signbit(got), np.signbit(want))


def _unary_graph():
    """x (float32) -> Cast to float16 -> each float16 op a transformer's layers are made of,
    on its own branch, each branch's result cast to float32 and fetched."""
    f16 = {"T": "float16"}
    rng = np.random.default_rng(6)
    nodes = [placeholder("x", "float32"), placeholder("keep", "bool"),
             Node("h", "Cast", ["x"], {"SrcT": "float32", "DstT": "float16", "Truncate": False}),
             const("c", rng.uniform(-2, 2, (8,)).astype(np.float16)),
             const("three", np.float16(3.0)), const("one", np.float16(1.0)),
             const("tenth", np.float16(0.1)), const("axis", np.array([1], np.int32)),
             const("begin", np.array([0, 1], np.int32)), const("end", np.array([4, 7], np.int32)),
             const("stride", np.array([1, 2], np.int32)),
             Node("abs", "Abs", ["h"], f16), Node("pos", "AddV2", ["abs", "one"], f16)]
    branches = {"Square": ["h"], "Pow": ["h", "three"], "Sqrt": ["abs"], "Rsqrt": ["pos"],
                "Exp": ["small"], "Log": ["pos"], "Reciprocal": ["pos"], "Maximum": ["h", "c"],
                "Minimum": ["h", "c"], "Neg": ["h"], "Erfc": ["h"], "Erf": ["h"],
                "Tanh": ["h"], "Mean": ["h", "axis"], "SelectV2": ["keep", "h", "c"],
                "StridedSlice": ["h", "begin", "end", "stride"]}
    nodes.append(Node("small", "Mul", ["h", "tenth"], f16))
    attrs = {"Mean": {"T": "float16", "Tidx": "int32", "keep_dims": False},
             "StridedSlice": {"T": "float16", "Index": "int32", "begin_mask": 0, "end_mask": 0,
                              "ellipsis_mask": 0, "new_axis_mask": 0, "shrink_axis_mask": 0}}
    outs = []
    for op, ins in branches.items():
        nodes.append(Node(op.lower(), op, ins, attrs.get(op, f16)))
        nodes.append(Node(f"{op.lower()}_out", "Cast", [op.lower()],
                          {"SrcT": "float16", "DstT": "float32", "Truncate": False}))
        outs.append(TensorSpec(op, f"{op.lower()}_out:0", "float32"))
    ins = [TensorSpec("x", "x:0", "float32"), TensorSpec("keep", "keep:0", "bool")]
    return Graph(nodes, ins, outs), branches


def test_transformer_ops_compute_in_float32_and_round_once():
    """Each float16 op of a transformer's layers (Square, Pow, Sqrt, Rsqrt, Exp, Log,
    Reciprocal, Erf, Erfc, Tanh, Mean; Abs, Neg, Maximum, Minimum, SelectV2 and StridedSlice,
    which select values) runs in float32 and rounds its result once: float16's correctly
    rounded value (one float16 ulp from it at most for the transcendental functions, whose
    float32 results round twice), where numpy's float16 kernels round along the way."""
    import math

    g, branches = _unary_graph()
    fetches = [s.ref for s in g.outputs]
    plan = compile_plan(g, fetches, ["x:0", "keep:0"], verify=True)
    ops = [st.op for st in plan.steps]
    # every op in the region: a rounding after each computing one (and the Cast in, AddV2,
    # Mul); the fetched Casts to float32 keep their steps, each with a float16 copy before it
    assert set(branches) <= set(ops) and ops.count("_RoundHalf") == 11 + 3, ops
    assert ops.count("Cast") == ops.count("_HalfCopy") == len(branches), ops
    rng = np.random.default_rng(7)
    x = rng.uniform(-6, 6, (4, 8)).astype(np.float32)
    x[0, :4] = [0.0, -0.0, 3e-7, 60000]
    keep = rng.uniform(size=(4, 8)) < 0.5
    h = x.astype(np.float16).astype(np.float64)
    c = g.node("c").attrs["value"].astype(np.float64)

    def r16(v):
        return np.asarray(v).astype(np.float16).astype(np.float64)

    pos = r16(np.abs(h) + 1)
    with np.errstate(all="ignore"):  # (float16's overflows to inf, as in the plan)
        exact = {"Square": h * h, "Pow": h ** 3, "Sqrt": np.sqrt(np.abs(h)),
                 "Rsqrt": 1 / np.sqrt(pos), "Exp": np.exp(r16(h * r16(0.1))),
                 "Log": np.log(pos), "Reciprocal": 1 / pos,
                 "Maximum": np.maximum(h, c), "Minimum": np.minimum(h, c), "Neg": -h,
                 "Erfc": np.vectorize(math.erfc)(h), "Erf": np.vectorize(math.erf)(h),
                 "Tanh": np.tanh(h), "Mean": h.mean(axis=1), "SelectV2": np.where(keep, h, c),
                 "StridedSlice": h[0:4, 1:7:2]}
        got = dict(zip(branches, plan.run((x, keep))))
        exact = {op: want.astype(np.float16) for op, want in exact.items()}
    for op, want in exact.items():
        g16 = got[op].astype(np.float16)
        assert np.array_equal(got[op], g16.astype(np.float32)), op  # (float16 values)
        ulps = np.abs(g16.view(np.int16).astype(np.int32) - want.view(np.int16).astype(np.int32))
        limit = 1 if op in ("Pow", "Exp", "Log", "Erf", "Erfc", "Tanh", "Mean") else 0
        assert ulps.max() <= limit, (op, h.ravel()[np.argmax(ulps)], g16.ravel()[np.argmax(ulps)],
                                     want.ravel()[np.argmax(ulps)])


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


@pytest.mark.tf
@pytest.mark.parametrize("causal", [False, True])
def test_mixed_float16_transformer_runs_in_float32(causal):
    """A mixed_float16 transformer block: its batched matrix products (Dense on 3-D inputs),
    its attention (einsums around a float32 softmax, the Casts included: one float32
    ``_Attention`` rounded once), its GELU (fused from its float16 steps: one float32
    ``_Gelu`` rounded once) and the residual additions compute in float32 and round where
    TF's float16 ops do; no float16 arithmetic is left, and the results are TF's to float16
    rounding, at batch 1 and 8, with and without a causal mask."""
    keras = pytest.importorskip("keras")
    L = keras.layers
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(5)
        inp = keras.Input((16,), dtype="int32")
        x = L.Embedding(100, 32)(inp)
        x = L.LayerNormalization()(x + L.MultiHeadAttention(4, 8)(x, x,
                                                                   use_causal_mask=causal))
        h = L.Dense(32)(L.Dense(64, activation="gelu")(x))
        out = L.Dense(10, dtype="float32")(L.LayerNormalization()(x + h))
        model = keras.Model(inp, out)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    m = td.convert(model, check_data=False)
    for batch in (1, 8):
        x = np.random.default_rng(batch).integers(0, 100, (batch, 16)).astype(np.int32)
        want = np.asarray(model(x, training=False))
        plan = m.plan(x)
        products = [st.label for st in plan.steps if st.op == "_FusedChain"]
        assert products and all("_RoundHalf" in p for p in products[:-1]), products
        assert all(st.attrs.get("dtype") != "float16" for st in plan.steps), plan
        # float16 arrays: only the copies made for steps outside the region (none here)
        assert not [st for st in plan.steps if st.op == "Cast"], plan
        attention = [st.label for st in plan.steps if st.op == "_Attention"]
        assert len(attention) == 1 and "Einsum+Cast+Mul" in attention[0], attention
        assert "Einsum" not in {st.op for st in plan.steps} and \
            "Softmax" not in {st.op for st in plan.steps}, plan
        # GELU (its float16 constants: 1/sqrt 2 rounded) as one float32 _Gelu, in the chain
        assert not {"Erfc", "Neg"} & {st.op for st in plan.steps}, plan
        assert any("_Gelu+_RoundHalf" in p for p in products), products
        # the Embedding's cast: a lookup in the table rounded once (its rounding, the step,
        # gone), the unfused plan's values bit for bit
        lookup = [st for st in plan.steps if st.op == "_WrappedGather"]
        assert len(lookup) == 1 and lookup[0].label.endswith("GatherV2+_RoundHalf"), plan
        table = lookup[0].attrs["params"]
        assert np.array_equal(table, table.astype(np.float16).astype(np.float32))
        got = m(x)
        np.testing.assert_allclose(got, want, rtol=2e-2,
                                   atol=2e-2 * float(np.max(np.abs(want))))


@pytest.mark.tf
@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # (TF: its -1e9 mask)
def test_mixed_float16_llama_fused_steps_join_the_region():
    """A mixed_float16 Llama-style model (``benchmarks/arch.py``): its rotary embeddings,
    attention and SwiGLU, fused from float16 ops before half_region, compute in float32 and
    round once;
    the only float16 step left is the copy of the float16 logits, and the results are TF's to
    float16 rounding."""
    keras = pytest.importorskip("keras")
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
    import models

    case = models.CASES["llama"]
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = case.build()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = case.input(2)
    want = np.asarray(model(x, training=False)).astype(np.float32)
    m = td.convert(model, check_data=False)
    plan = m.plan(x)
    fused = [st for st in plan.steps if st.op in ("_Rotary", "_Attention", "_Gated")]
    assert {st.op for st in fused} == {"_Rotary", "_Attention", "_Gated"}
    for st in fused:
        assert not any(getattr(a, "dtype", None) == np.float16 for a in st.attrs.values())
    ops = [st.op for st in plan.steps]
    assert "Cast" not in ops and ops.count("_HalfCopy") == 1, plan  # (the logits' copy)
    got = m(x)
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=2e-2,
                               atol=2e-2 * float(np.max(np.abs(want))))
