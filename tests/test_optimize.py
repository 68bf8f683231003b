"""Plan-time fusion (``compiler/passes/fuse_conv.py``): conv/matmul chains with BatchNorm
folded into the weights and an in-place epilogue give the results of the unfused plan, and of
TensorFlow."""

from __future__ import annotations

import importlib.util
import weakref

import numpy as np
import pytest

import tfdeploy as td
from graphs import const, placeholder
from tfdeploy import registry
from tfdeploy.compiler import pipeline
from tfdeploy.compiler.pipeline import compile_plan
from tfdeploy.errors import ExecutionError
from tfdeploy.ir.graph import Graph, Node, TensorSpec
from tfdeploy.kernels.math import matmul as math_matmul
from tfdeploy.kernels.nn import conv, fused

RNG = np.random.default_rng(0)


def _r(*shape, dtype=np.float32, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, shape).astype(dtype)


def _plans(nodes, fetches, feeds):
    g = Graph(list(nodes), [TensorSpec(f, f"{f}:0", "float32") for f in feeds],
              [TensorSpec(f, f"{f}:0", "float32") for f in fetches])
    refs = [f"{f}:0" for f in fetches]
    feed_refs = [f"{f}:0" for f in feeds]
    return (compile_plan(g, refs, feed_refs, optimize=False),
            compile_plan(g, refs, feed_refs))


def _check(nodes, fetches, feeds, values, fused_ops=(), rtol=1e-5):
    """The fused plan computes what the unfused one does; its fused steps are ``fused_ops``."""
    plain, opt = _plans(nodes, fetches, feeds)
    want, got = plain(*values), opt(*values)
    for w, g in zip(want, got):
        assert g.shape == w.shape and g.dtype == w.dtype
        scale = max(float(np.max(np.abs(w))), 1e-30) if w.size else 1.0
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * scale)
    labels = sorted(st.label for st in opt.steps if st.members)
    assert labels == sorted(fused_ops)
    n_fused = sum(len(st.members) - 1 for st in opt.steps if st.members)
    assert len(opt.steps) == len(plain.steps) - n_fused
    return plain, opt


def _conv(name, x, w, *, strides=(1, 1, 1, 1), padding="SAME", data_format="NHWC",
          op="Conv2D", **extra):
    return Node(name, op, [x, w], {"T": "float32", "strides": list(strides),
                                   "padding": padding, "data_format": data_format,
                                   "dilations": [1] * len(strides), **extra})


def _bin(name, op, a, b):
    return Node(name, op, [a, b], {"T": "float32"})


def _un(name, op, a, **attrs):
    return Node(name, op, [a], {"T": "float32", **attrs})


# --- hand-built graphs ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_bias_batchnorm_relu6(dtype):
    c = 6
    nodes = [placeholder("x", np.dtype(dtype).name), const("w", _r(3, 3, 4, c, dtype=dtype)),
             const("b", _r(c, dtype=dtype)), const("s", _r(c, dtype=dtype, lo=0.5, hi=2)),
             const("t", _r(1, 1, 1, c, dtype=dtype)),
             _conv("conv", "x", "w"), _bin("bias", "BiasAdd", "conv", "b"),
             _bin("bn_mul", "Mul", "bias", "s"), _bin("bn_add", "AddV2", "t", "bn_mul"),
             _un("act", "Relu6", "bn_add")]
    x = _r(2, 9, 9, 4, dtype=dtype, lo=-3, hi=3)
    _, opt = _check(nodes, ["act"], ["x"], [x], ["Conv2D+BiasAdd+Mul+AddV2+Relu6"],
                    rtol=1e-5 if dtype == np.float32 else 1e-12)
    st = opt.steps[0]
    assert st.name == "conv" and st.members[-1].name == "act"
    # the constants only the fused step read are gone from the plan
    assert not any(v.shape == (c,) for v in opt.constants.values())


def test_conv_nchw_fused_batch_norm_relu():
    c = 5
    attrs = {"T": "float32", "U": "float32", "epsilon": 1e-3, "data_format": "NCHW",
             "is_training": False}
    nodes = [placeholder("x"), const("w", _r(3, 3, 3, c)), const("b", _r(c)),
             const("gamma", _r(c, lo=0.5, hi=2)), const("beta", _r(c)), const("mean", _r(c)),
             const("var", _r(c, lo=0.1, hi=2)),
             _conv("conv", "x", "w", strides=(1, 1, 2, 2), data_format="NCHW"),
             Node("bias", "BiasAdd", ["conv", "b"], {"T": "float32", "data_format": "NCHW"}),
             Node("bn", "FusedBatchNormV3", ["bias", "gamma", "beta", "mean", "var"], attrs),
             _un("act", "Relu", "bn")]
    _check(nodes, ["act"], ["x"], [_r(2, 3, 8, 7, lo=-3, hi=3)],
           ["Conv2D+BiasAdd+FusedBatchNormV3+Relu"])


def _transposed(name, sizes, w, dy, strides, fmt="NHWC", op="Conv2DBackpropInput"):
    return Node(name, op, [sizes, w, dy], {"T": "float32", "strides": list(strides),
                                            "padding": "SAME", "data_format": fmt,
                                            "dilations": [1] * len(strides)})


def test_transposed_conv_chains():
    """A transposed convolution with constant input_sizes heads a chain: its bias, batch norm
    (folded into the filter's axis of output channels, C of [KH, KW, C, O]), activation and
    a residual; channels last and first, 2-D and 3-D. With sizes computed at run time it is
    left alone."""
    c = 5
    x = _r(2, 4, 3, 6, lo=-3, hi=3)
    nodes = [placeholder("x"), placeholder("skip"), const("n", np.array([2, 8, 6, c], np.int32)),
             const("w", _r(5, 5, c, 6)), const("b", _r(c)), const("s", _r(c, lo=0.5, hi=2)),
             const("t", _r(c)), _transposed("up", "n", "w", "x", (1, 2, 2, 1)),
             _bin("bias", "BiasAdd", "up", "b"), _bin("bn_mul", "Mul", "bias", "s"),
             _bin("bn_add", "AddV2", "bn_mul", "t"), _bin("res", "AddV2", "bn_add", "skip"),
             _un("act", "Relu", "res")]
    _, opt = _check(nodes, ["act"], ["x", "skip"], [x, _r(2, 8, 6, c)],
                    ["Conv2DBackpropInput+BiasAdd+Mul+AddV2+AddV2+Relu"])
    assert opt.steps[-1].attrs["core_attrs"]["input_sizes"] == [2, 8, 6, c]

    attrs = {"T": "float32", "U": "float32", "epsilon": 1e-3, "data_format": "NCHW",
             "is_training": False}
    nchw = [placeholder("x"), const("n", np.array([2, c, 7, 6], np.int64)),
            const("w", _r(3, 3, c, 6)), const("gamma", _r(c, lo=0.5, hi=2)),
            const("beta", _r(c)), const("mean", _r(c)), const("var", _r(c, lo=0.1, hi=2)),
            _transposed("up", "n", "w", "x", (1, 1, 2, 2), fmt="NCHW"),
            Node("bn", "FusedBatchNormV3", ["up", "gamma", "beta", "mean", "var"], attrs),
            _un("act", "Tanh", "bn")]
    _check(nchw, ["act"], ["x"], [_r(2, 6, 4, 3, lo=-3, hi=3)],
           ["Conv2DBackpropInput+FusedBatchNormV3+Tanh"])

    three = [placeholder("x"), const("n", np.array([1, 6, 5, 4, 3], np.int32)),
             const("w", _r(3, 3, 3, 3, 4)), const("b", _r(3)),
             _transposed("up", "n", "w", "x", (1, 2, 2, 2, 1), fmt="NDHWC",
                         op="Conv3DBackpropInputV2"),
             _bin("bias", "BiasAdd", "up", "b"), _un("act", "Sigmoid", "bias")]
    _check(three, ["act"], ["x"], [_r(1, 3, 3, 2, 4)],
           ["Conv3DBackpropInputV2+BiasAdd+Sigmoid"])

    dynamic = [placeholder("x"), placeholder("n", "int32"), const("w", _r(5, 5, c, 6)),
               const("b", _r(c)), _transposed("up", "n", "w", "x", (1, 2, 2, 1)),
               _bin("bias", "BiasAdd", "up", "b"), _un("act", "Relu", "bias")]
    g = Graph(dynamic, [TensorSpec("x", "x:0", "float32"), TensorSpec("n", "n:0", "int32")],
              [TensorSpec("act", "act:0", "float32")])
    plan = compile_plan(g, ["act:0"], ["x:0", "n:0"])
    assert [st.op for st in plan.steps if st.members] == []
    sizes = np.array([2, 8, 6, c], np.int32)
    want = compile_plan(g, ["act:0"], ["x:0", "n:0"], optimize=False)(x, sizes)[0]
    np.testing.assert_allclose(plan(x, sizes)[0], want, rtol=1e-5, atol=1e-5)


def test_batch_norm_on_the_wrong_axis_is_left_alone():
    c = 4
    nodes = [placeholder("x"), const("w", _r(1, 1, 4, c)), const("s", _r(c, 1, 1)),
             _conv("conv", "x", "w"), _bin("mul", "Mul", "conv", "s"), _un("act", "Relu", "mul")]
    # [C, 1, 1] broadcasts along H of an NHWC output: not per channel (and changes the shape)
    _check(nodes, ["act"], ["x"], [_r(1, 4, 5, 4)], [])


def test_depthwise_multiplier_sub_leaky_relu():
    nodes = [placeholder("x"), const("w", _r(3, 3, 4, 2)), const("s", _r(8, lo=0.5, hi=2)),
             const("m", _r(8)),
             _conv("dw", "x", "w", op="DepthwiseConv2dNative", strides=(1, 2, 2, 1)),
             _bin("mul", "Mul", "s", "dw"), _bin("sub", "Sub", "mul", "m"),
             Node("act", "LeakyRelu", ["sub"], {"T": "float32", "alpha": 0.1})]
    _check(nodes, ["act"], ["x"], [_r(2, 9, 8, 4, lo=-3, hi=3)],
           ["DepthwiseConv2dNative+Mul+Sub+LeakyRelu"])


def test_grouped_conv_div_elu_and_conv3d_tanh():
    nodes = [placeholder("x"), const("w", _r(3, 3, 2, 6)), const("d", _r(6, lo=0.5, hi=2)),
             _conv("conv", "x", "w", padding="VALID"), _bin("div", "RealDiv", "conv", "d"),
             _un("act", "Elu", "div"),
             placeholder("v"), const("w3", _r(2, 2, 2, 3, 4)), const("s3", _r(4)),
             _conv("conv3", "v", "w3", strides=(1, 1, 1, 1, 1), op="Conv3D",
                   data_format="NDHWC"),
             _bin("mul3", "Mul", "conv3", "s3"), _un("act3", "Tanh", "mul3")]
    _check(nodes, ["act", "act3"], ["x", "v"], [_r(2, 7, 7, 4, lo=-2, hi=2), _r(1, 4, 5, 6, 3)],
           ["Conv2D+RealDiv+Elu", "Conv3D+Mul+Tanh"])


def test_residual_add_then_relu():
    nodes = [placeholder("x"), placeholder("r"), const("w", _r(1, 1, 4, 4)),
             const("s", _r(4)), const("t", _r(4)),
             _conv("conv", "x", "w"), _bin("mul", "Mul", "conv", "s"),
             _bin("add", "AddV2", "mul", "t"), _bin("res", "AddV2", "r", "add"),
             _un("act", "Relu", "res")]
    x, r = _r(2, 5, 5, 4), _r(2, 5, 5, 4)
    _check(nodes, ["act"], ["x", "r"], [x, r], ["Conv2D+Mul+AddV2+AddV2+Relu"])
    # a residual operand that broadcasts into the output, or widens it (then the chain runs
    # unfused: the same result)
    _check(nodes, ["act"], ["x", "r"], [x, _r(1, 1, 5, 4)], ["Conv2D+Mul+AddV2+AddV2+Relu"])
    _check(nodes, ["act"], ["x", "r"], [x, _r(3, 2, 5, 5, 4)], ["Conv2D+Mul+AddV2+AddV2+Relu"])
    # one that does not broadcast: the error of the unfused kernel, naming the chain
    _, opt = _plans(nodes, ["act"], ["x", "r"])
    with pytest.raises(ExecutionError, match=r"'conv' \(Conv2D\+Mul\+AddV2\+AddV2\+Relu\)"):
        opt(x, _r(2, 5, 3, 4))


def test_large_outputs_run_the_epilogue_by_blocks():
    c = 24
    nodes = [placeholder("x"), placeholder("r"), const("w", _r(3, 3, 8, c)), const("s", _r(c)),
             const("t", _r(1, 1, 1, c)), const("beta", np.float32(0.7)),
             _conv("conv", "x", "w"), _bin("mul", "Mul", "conv", "s"),
             _bin("add", "AddV2", "mul", "t"), _bin("res", "AddV2", "add", "r"),
             _bin("bmul", "Mul", "res", "beta"), _un("sig", "Sigmoid", "bmul"),
             _bin("act", "Mul", "res", "sig")]
    x, r = _r(2, 64, 50, 8, lo=-3, hi=3), _r(2, 64, 50, c, lo=-3, hi=3)
    label = ["Conv2D+Mul+AddV2+AddV2+Mul+Sigmoid+Mul"]
    plain, opt = _check(nodes, ["act"], ["x", "r"], [x, r], label)
    assert opt.steps[0].kernel.rows and x[..., 0].size * c > 2 * fused._BLOCK
    _check(nodes, ["act"], ["x", "r"], [x, r[:1]], label)  # broadcast: by whole arrays
    got = opt(x, r.astype(np.float64))[0]  # a residual of another dtype: run unfused
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, plain(x, r.astype(np.float64))[0])


def test_residual_of_two_chains_and_the_conv_input():
    # y = relu(bn(conv_a(x)) + bn(conv_b(x))) - x: one chain takes the add, the other ends
    nodes = [placeholder("x"), const("wa", _r(1, 1, 3, 3)), const("wb", _r(3, 3, 3, 3)),
             const("sa", _r(3)), const("sb", _r(3)),
             _conv("ca", "x", "wa"), _bin("ma", "Mul", "ca", "sa"),
             _conv("cb", "x", "wb"), _bin("mb", "Mul", "cb", "sb"),
             _bin("sum", "AddV2", "ma", "mb"), _un("relu", "Relu", "sum"),
             _bin("out", "Sub", "relu", "x")]
    _check(nodes, ["out"], ["x"], [_r(2, 6, 6, 3)], ["Conv2D+Mul", "Conv2D+Mul+AddV2+Relu+Sub"])


def test_constant_add_not_per_channel_is_a_residual():
    nodes = [placeholder("x"), const("w", _r(1, 1, 2, 3)), const("p", _r(4, 4, 3)),
             _conv("conv", "x", "w"), _bin("add", "AddV2", "conv", "p"),
             _un("act", "Sigmoid", "add")]
    _check(nodes, ["act"], ["x"], [_r(2, 4, 4, 2)], ["Conv2D+AddV2+Sigmoid"])


def test_swish_with_beta_then_residual():
    """EfficientNetV2's block: conv, BN, x * sigmoid(beta * x), + the block's input."""
    nodes = [placeholder("x"), const("w", _r(1, 1, 3, 3)), const("s", _r(3)), const("t", _r(3)),
             const("beta", np.float32(1.3)),
             _conv("conv", "x", "w"), _bin("mul", "Mul", "conv", "s"),
             _bin("add", "AddV2", "mul", "t"), _bin("bmul", "Mul", "beta", "add"),
             _un("sig", "Sigmoid", "bmul"), _bin("sw", "Mul", "add", "sig"),
             _bin("res", "AddV2", "sw", "x")]
    _check(nodes, ["res"], ["x"], [_r(2, 4, 4, 3)],
           ["Conv2D+Mul+AddV2+Mul+Sigmoid+Mul+AddV2"])


def test_matmul_transposed_bias_batchnorm_sigmoid():
    nodes = [placeholder("x"), const("w", _r(5, 7)), const("b", _r(5)), const("s", _r(5)),
             const("t", _r(5)),
             Node("mm", "MatMul", ["x", "w"], {"T": "float32", "transpose_a": True,
                                               "transpose_b": True}),
             _bin("bias", "BiasAdd", "mm", "b"), _bin("mul", "Mul", "bias", "s"),
             _bin("add", "AddV2", "mul", "t"), _un("act", "Sigmoid", "add")]
    _check(nodes, ["act"], ["x"], [_r(7, 3, lo=-20, hi=20)],
           ["MatMul+BiasAdd+Mul+AddV2+Sigmoid"])


def test_batch_matmul_const_rhs_swish():
    nodes = [placeholder("x"), const("w", _r(6, 4)), const("s", _r(1, 6)),
             const("beta", np.float32(1.5)),
             Node("mm", "BatchMatMulV2", ["x", "w"], {"T": "float32", "adj_y": True}),
             _bin("mul", "Mul", "mm", "s"), _bin("bmul", "Mul", "beta", "mul"),
             _un("sig", "Sigmoid", "bmul"), _bin("act", "Mul", "sig", "mul")]
    _check(nodes, ["act"], ["x"], [_r(2, 3, 5, 4, lo=-30, hi=30)],
           ["BatchMatMulV2+Mul+Mul+Sigmoid+Mul"])


@pytest.mark.parametrize("form", ["div", "mul", "not_hard_swish"])
def test_conv_batchnorm_hard_swish(form):
    """MobileNetV3's hard swish, x * (relu6(x + 3) / 6) or * (1/6), joins the conv's chain
    with the unfused arithmetic in its order (the same values, bit for bit); relu6(..) - 6
    is not it."""
    c = 5
    last = {"div": _bin("hs", "RealDiv", "r6", "six"), "mul": _bin("hs", "Mul", "sixth", "r6"),
            "not_hard_swish": _bin("hs", "Sub", "r6", "six")}[form]
    nodes = [placeholder("x"), const("w", _r(3, 3, 4, c)), const("three", np.float32(3)),
             const("six", np.float32(6)), const("sixth", np.float32(1 / 6)),
             _conv("conv", "x", "w"), _bin("p3", "AddV2", "conv", "three"),
             _un("r6", "Relu6", "p3"), last, _bin("out", "Mul", "conv", "hs")]
    x = _r(2, 7, 6, 4, lo=-4, hi=4)
    if form == "not_hard_swish":
        _check(nodes, ["out"], ["x"], [x], [])
        return
    label = "Conv2D+AddV2+Relu6+" + ("RealDiv" if form == "div" else "Mul") + "+Mul"
    plain, opt = _check(nodes, ["out"], ["x"], [x], [label])
    np.testing.assert_array_equal(opt(x)[0], plain(x)[0])
    # after a folded batch norm too (its folding rounds the weights once: not bit for bit)
    bn = [const("s", _r(c, lo=0.5, hi=2)), const("t", _r(c)),
          _bin("bn_mul", "Mul", "conv", "s"), _bin("bn_add", "AddV2", "bn_mul", "t")]
    nodes = [n for n in nodes if n.name not in ("p3", "out")] + bn + [
        _bin("p3", "AddV2", "bn_add", "three"), _bin("out", "Mul", "bn_add", "hs")]
    _check(nodes, ["out"], ["x"], [x], [label.replace("Conv2D", "Conv2D+Mul+AddV2")])


def test_swish_without_beta_and_the_plain_matmul():
    nodes = [placeholder("x"), const("w", _r(4, 3)), const("b", _r(3)),
             Node("mm", "MatMul", ["x", "w"], {"T": "float32"}),
             _bin("bias", "AddV2", "mm", "b"), _un("sig", "Sigmoid", "bias"),
             _bin("act", "Mul", "bias", "sig")]
    _check(nodes, ["act"], ["x"], [_r(5, 4, lo=-50, hi=50)], ["MatMul+AddV2+Sigmoid+Mul"])


def test_float16_chains_compute_in_float32():
    x = _r(2, 4, 4, 2)
    h = [placeholder("x", "float16"), const("w", _r(1, 1, 2, 2, dtype=np.float16)),
         const("s", _r(2, dtype=np.float16)), _conv("conv", "x", "w"),
         _bin("mul", "Mul", "conv", "s"), _un("out", "Relu", "mul")]
    _, opt = _check(h, ["out"], ["x"], [x.astype(np.float16)], ["Conv2D+Mul+Relu"],
                    rtol=2e-3)
    assert opt.steps[0].attrs["dtype"] == "float16"
    assert opt.steps[0].attrs["weight"].dtype == np.float32
    assert opt(x.astype(np.float16))[0].dtype == np.float16


def test_not_fused():
    x = _r(1, 4, 4, 2)
    base = [placeholder("x"), const("w", _r(1, 1, 2, 2)), const("s", _r(2)),
            _conv("conv", "x", "w")]
    # two readers of the conv's output
    _check(base + [_bin("mul", "Mul", "conv", "s"), _bin("out", "AddV2", "mul", "conv")],
           ["out"], ["x"], [x], [])
    # a filter computed at run time
    _check([placeholder("x"), placeholder("f"), _conv("conv", "x", "f"),
            _un("out", "Relu", "conv")], ["out"], ["x", "f"], [x, _r(1, 1, 2, 2)], [])
    # a scale that would overflow the folded weights, though not the results
    big = [placeholder("x"), const("w", np.full((1, 1, 2, 2), 1e30, np.float32)),
           const("s", np.full(2, 1e30, np.float32)), _conv("conv", "x", "w"),
           _bin("mul", "Mul", "conv", "s"), _un("out", "Relu", "mul")]
    _, opt = _check(big, ["out"], ["x"], [x * np.float32(1e-30)], [])
    assert np.all(np.isfinite(opt(x * np.float32(1e-30))[0]))


def test_pinned_intermediate_prevents_fusion():
    nodes = [placeholder("x"), const("w", _r(3, 3, 2, 4)), const("s", _r(4)), const("t", _r(4)),
             _conv("conv", "x", "w"), _bin("mul", "Mul", "conv", "s"),
             _bin("add", "AddV2", "mul", "t"), _un("act", "Relu", "add")]
    x = _r(2, 5, 5, 2)
    plain, opt = _check(nodes, ["add", "act"], ["x"], [x], ["Conv2D+Mul+AddV2"])
    mid, out = opt(x)
    assert not np.shares_memory(mid, out)
    np.testing.assert_array_equal(out, np.maximum(mid, 0))
    # fetching the conv output itself: nothing fused before it, the rest still is
    _check(nodes, ["conv", "act"], ["x"], [x], [])


def test_fallback_for_other_dtypes_and_errors_name_the_conv():
    nodes = [placeholder("x"), const("w", _r(3, 3, 2, 4)), const("s", _r(4)),
             _conv("block/conv", "x", "w"), _bin("mul", "Mul", "block/conv", "s"),
             _un("act", "Relu", "mul")]
    plain, opt = _plans(nodes, ["act"], ["x"])
    assert len(opt.steps) == 1
    x = _r(1, 5, 5, 2, dtype=np.float64)  # not the chain's dtype: run unfused, same result
    np.testing.assert_array_equal(opt(x)[0], plain(x)[0])
    with pytest.raises(ExecutionError, match=r"'block/conv' \(Conv2D\+Mul\+Relu\)"):
        opt(_r(1, 5, 5, 3))


@pytest.mark.parametrize("act", ["Sigmoid", "swish"])
def test_pointwise_conv_of_a_small_map_runs_as_a_dense_layer(act):
    """A 1x1 unit-stride NHWC conv chain (squeeze-excite's, on 1 x 1 maps) multiplies small
    inputs as a Dense layer does (one product, the bias, the epilogue: no conv runner), larger
    maps through the conv chain; the unfused plan's results either way, and the conv's own
    errors for inputs it rejects."""
    c, co = 24, 96
    nodes = [placeholder("x"), const("w", _r(1, 1, c, co)), const("b", _r(co)),
             _conv("se/conv", "x", "w"), _bin("bias", "BiasAdd", "se/conv", "b")]
    if act == "Sigmoid":
        nodes.append(_un("act", "Sigmoid", "bias"))
        label = "Conv2D+BiasAdd+Sigmoid"
    else:
        nodes += [_un("sig", "Sigmoid", "bias"), _bin("act", "Mul", "bias", "sig")]
        label = "Conv2D+BiasAdd+Sigmoid+Mul"
    plain, opt = _check(nodes, ["act"], ["x"], [_r(1, 1, 1, c, lo=-4, hi=4)], [label])
    kernel = opt.steps[0].kernel
    assert kernel.__name__ == "Dense" and kernel.chain.blocked  # (the conv chain behind it)
    calls = []
    runner = kernel.chain.core
    kernel.chain.core = lambda *a: calls.append(a[0].shape) or runner(*a)
    for shape in [(1, 1, 1, c), (8, 1, 1, c), (2, 3, 3, c), (2, 40, 40, c)]:
        x = _r(*shape, lo=-4, hi=4)
        calls.clear()
        got, want = opt(x)[0], plain(x)[0]
        assert got.shape == want.shape == shape[:3] + (co,)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert bool(calls) == (shape[1] == 40), shape  # (only the large map takes the conv)
    with pytest.raises(ExecutionError, match=r"'se/conv' \(Conv2D\+BiasAdd"):
        opt(_r(1, 1, 1, c + 1))
    with pytest.raises(ExecutionError, match=r"'se/conv' \(Conv2D\+BiasAdd"):
        opt(_r(4, c))  # (a matrix: no Conv2D input, though a product would take it)


@pytest.mark.parametrize("attrs", [{"strides": (1, 2, 2, 1)}, {"filter": (3, 3)},
                                   {"padding": "EXPLICIT",
                                    "explicit_paddings": [0, 0, 1, 1, 1, 1, 0, 0]}])
def test_other_convs_are_no_dense_layers(attrs):
    attrs = dict(attrs)
    kh, kw = attrs.pop("filter", (1, 1))
    nodes = [placeholder("x"), const("w", _r(kh, kw, 6, 8)), const("b", _r(8)),
             _conv("conv", "x", "w", **attrs), _bin("bias", "BiasAdd", "conv", "b"),
             _un("act", "Relu", "bias")]
    _, opt = _check(nodes, ["act"], ["x"], [_r(2, 4, 4, 6)], ["Conv2D+BiasAdd+Relu"])
    assert getattr(opt.steps[0].kernel, "__name__", None) != "Dense"


def _pre_activation(c=8, co=5, *, act="Relu", conv_attrs=None, extra=(), out_ops=True,
                    dtype=np.float32):
    """x -> Mul(s) -> AddV2(t) -> act -> 1x1 Conv2D (-> BiasAdd -> Relu)."""
    dt = np.dtype(dtype).name
    nodes = [placeholder("x", dt), const("s", _r(c, lo=0.5, hi=2, dtype=dtype)),
             const("t", _r(c, dtype=dtype)), const("w", _r(1, 1, c, co, dtype=dtype)),
             const("b", _r(co, dtype=dtype)),
             Node("bn_mul", "Mul", ["x", "s"], {"T": dt}),
             Node("bn_add", "AddV2", ["bn_mul", "t"], {"T": dt}),
             Node("act", act, ["bn_add"], {"T": dt}),
             Node("conv", "Conv2D", ["act", "w"], {"T": dt, "strides": [1, 1, 1, 1],
                                                  "padding": "VALID", "data_format": "NHWC",
                                                  "dilations": [1, 1, 1, 1],
                                                  **(conv_attrs or {})}),
             *extra]
    if out_ops:
        nodes += [Node("bias", "BiasAdd", ["conv", "b"], {"T": dt}),
                  Node("out", "Relu", ["bias"], {"T": dt})]
    return nodes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c, co", [(8, 5), (3, 7)], ids=["product", "augmented"])
def test_prologue_before_a_pointwise_conv(c, co, dtype, monkeypatch):
    """The affine ops and activation before a 1x1 conv run in its kernel, on each block of
    input rows it multiplies (here blocks of 64 rows, the last shorter; the bias in the
    product or added after): the unfused plan's results, the input never written."""
    from tfdeploy.kernels.nn import runner

    monkeypatch.setattr(runner, "_PROLOGUE_BYTES", 1)
    x = _r(2, 9, 7, c, lo=-3, hi=3, dtype=dtype)
    keep = x.copy()
    nodes = _pre_activation(c, co, dtype=dtype)
    plain, opt = _check(nodes, ["out"], ["x"], [x], ["Mul+AddV2+Relu+Conv2D+BiasAdd+Relu"],
                        rtol=1e-6 if dtype == np.float32 else 1e-13)
    st = opt.steps[0]
    assert [k for k, _ in st.attrs["prologue"]] == ["mul", "add", "relu"]
    assert st.attrs["epilogue"][-1][0] == "relu" and st.ins == opt.feed_values
    np.testing.assert_array_equal(x, keep)
    # a transposed (non-contiguous) input goes by the generic path, the prologue first
    xt = np.ascontiguousarray(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(opt(xt)[0], plain(x)[0], rtol=1e-6, atol=1e-6)
    # another dtype: the members unfused
    other = np.float64 if dtype == np.float32 else np.float32
    np.testing.assert_allclose(opt(x.astype(other))[0], plain(x.astype(other))[0],
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("act", ["Relu", "Relu6", "Elu", "Sigmoid", "Tanh", "LeakyRelu"])
def test_prologue_activations_and_a_conv_without_epilogue(act):
    x = _r(1, 6, 6, 8, lo=-8, hi=8)
    _check(_pre_activation(act=act, out_ops=False), ["conv"], ["x"], [x],
           [f"Mul+AddV2+{act}+Conv2D"], rtol=1e-6)


def test_prologue_over_threads(split_everything):
    x = _r(3, 16, 12, 8, lo=-3, hi=3)
    _check(_pre_activation(), ["out"], ["x"], [x], ["Mul+AddV2+Relu+Conv2D+BiasAdd+Relu"],
           rtol=1e-6)
    assert any(k > 1 for _, k in split_everything)


def test_no_prologue():
    x = _r(2, 6, 6, 8, lo=-3, hi=3)
    chain = ["Conv2D+BiasAdd+Relu"]
    # the activation's value read twice
    extra = [Node("twice", "AddV2", ["act", "act"], {"T": "float32"})]
    _check(_pre_activation(extra=extra), ["out", "twice"], ["x"], [x], chain)
    # the affine ops' result fetched: the activation alone joins
    _check(_pre_activation(), ["out", "bn_add"], ["x"], [x], ["Relu+Conv2D+BiasAdd+Relu"])
    # a strided 1x1 conv, a 3x3 conv: not a product over each pixel's channels
    _check(_pre_activation(conv_attrs={"strides": [1, 2, 2, 1]}), ["out"], ["x"], [x], chain)
    nodes = _pre_activation()
    nodes[3] = const("w", _r(3, 3, 8, 5))
    _check(nodes, ["out"], ["x"], [x], chain)
    # no activation last: the affine ops alone stay (BatchNorm before a conv is not this)
    nodes = _pre_activation()
    nodes[7] = Node("act", "Identity", ["bn_add"], {"T": "float32"})
    _check(nodes, ["out"], ["x"], [x], chain)


def test_prologue_keeps_what_is_not_per_channel():
    """A constant of the map's whole shape ends the prologue: the activation alone joins."""
    x = _r(2, 6, 6, 8, lo=-3, hi=3)
    nodes = _pre_activation()
    nodes[2] = const("t", _r(1, 6, 6, 8))
    _, opt = _check(nodes, ["out"], ["x"], [x], ["Relu+Conv2D+BiasAdd+Relu"], rtol=1e-6)
    assert [k for k, _ in opt.steps[-1].attrs["prologue"]] == ["relu"]


def _relu_depthwise(act="Relu", strides=(1, 1, 1, 1), c=6, affine=False, extra=()):
    """x -> [Mul by a channel constant ->] ``act`` -> 3x3 depthwise -> "dw" (+ ``extra``)."""
    src = "x"
    nodes = [placeholder("x"), const("w", _r(3, 3, c, 1)), const("s", _r(c, lo=0.5, hi=2))]
    if affine:
        nodes.append(_bin("scaled", "Mul", "x", "s"))
        src = "scaled"
    return nodes + [_un("act", act, src),
                    _conv("dw", "act", "w", strides=strides, op="DepthwiseConv2dNative"),
                    *extra]


@pytest.mark.parametrize("act", ["Relu", "Relu6"])
@pytest.mark.parametrize("strides", [(1, 1, 1, 1), (1, 2, 2, 1)], ids=["unit", "strided"])
@pytest.mark.parametrize("c", [6, 80], ids=["phases", "per_pixel"])
def test_relu_before_a_depthwise_conv(act, strides, c):
    """A lone ReLU/ReLU6 before a depthwise conv (NASNet's, Xception's separable convs) is
    its prologue, clipped as the kernel copies its input padded: the unfused results."""
    x = _r(2, 9, 8, c, lo=-8, hi=8)
    keep = x.copy()
    _, opt = _check(_relu_depthwise(act, strides, c), ["dw"], ["x"], [x],
                    [f"{act}+DepthwiseConv2dNative"], rtol=1e-6)
    assert [k for k, _ in opt.steps[0].attrs["prologue"]] == [act.lower()]
    np.testing.assert_array_equal(x, keep)


def test_no_depthwise_prologue():
    x = _r(2, 9, 8, 6, lo=-3, hi=3)
    # other activations, an affine op before the ReLU (only the ReLU joins), a ReLU read twice
    for act in ("LeakyRelu", "Sigmoid", "Elu"):
        _check(_relu_depthwise(act), ["dw"], ["x"], [x], [])
    _, opt = _check(_relu_depthwise(affine=True), ["dw"], ["x"], [x],
                    ["Relu+DepthwiseConv2dNative"], rtol=1e-6)
    assert [st.op for st in opt.steps][0] == "Mul"
    _check(_relu_depthwise(extra=[_un("other", "Neg", "act")]), ["dw", "other"], ["x"], [x],
           [])


def _convs_of(plan):
    """The convolutions a plan runs: (label, output channels), fused chains by their core."""
    found = []
    for st in plan.steps:
        if st.op == "_FusedChain" and st.attrs.get("core") == "Conv2D":
            found.append((st.label, st.attrs["weight"].shape[-1]))
        elif st.op == "Conv2D":
            found.append(("Conv2D", plan.constants[st.ins[1]].shape[-1]))
    return sorted(found)


def _check_values(nodes, fetches, feeds, values):
    """The optimized plan computes what the unoptimized one does; returns the optimized plan
    before ``lower`` (where a lone conv still reads its filter as an input)."""
    plain, opt = _plans(nodes, fetches, feeds)
    for w, g in zip(plain(*values), opt(*values)):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(w))))
    g = Graph(list(nodes), [TensorSpec(f, f"{f}:0", "float32") for f in feeds],
              [TensorSpec(f, f"{f}:0", "float32") for f in fetches])
    return compile_plan(g, [f"{f}:0" for f in fetches], [f"{f}:0" for f in feeds],
                        after="liveness")


def test_parallel_convs_of_one_input_become_one():
    """Three 3x3 convolutions of one input, each with its bias, folded batch norm and ReLU:
    one convolution of 5 + 3 + 6 channels with the concatenated epilogue, then a SplitV. A
    strided one and a 1x1 one of the same input stay apart (other attributes, other size)."""
    nodes = [placeholder("x")]
    outs = []
    for name, n in (("a", 5), ("b", 3), ("c", 6)):
        nodes += [const(f"w{name}", _r(3, 3, 4, n)), const(f"b{name}", _r(n)),
                  const(f"s{name}", _r(n, lo=0.5, hi=2)), const(f"t{name}", _r(1, 1, 1, n)),
                  _conv(f"conv{name}", "x", f"w{name}"),
                  _bin(f"bias{name}", "BiasAdd", f"conv{name}", f"b{name}"),
                  _bin(f"mul{name}", "Mul", f"s{name}", f"bias{name}"),
                  _bin(f"add{name}", "AddV2", f"mul{name}", f"t{name}"),
                  _un(f"act{name}", "Relu", f"add{name}")]
        outs.append(f"act{name}")
    nodes += [const("wd", _r(3, 3, 4, 2)), _conv("strided", "x", "wd", strides=(1, 2, 2, 1)),
              const("we", _r(1, 1, 4, 2)), _conv("pointwise", "x", "we")]
    opt = _check_values(nodes, outs + ["strided", "pointwise"], ["x"], [_r(2, 9, 8, 4)])
    assert _convs_of(opt) == [("Conv2D", 2), ("Conv2D", 2),
                              ("Conv2D+BiasAdd+Mul+AddV2+Relu", 14)]
    assert sum(st.op == "SplitV" for st in opt.steps) == 1


def test_parallel_convs_share_only_what_their_branches_share():
    """Branches that part at once (ReLU against sigmoid, a different Sub side, a bias then
    different activations) are split right after what they share; a branch whose output is
    fetched keeps its value."""
    nodes = [placeholder("x"), const("w1", _r(1, 1, 3, 4)), const("w2", _r(1, 1, 3, 2)),
             const("w3", _r(1, 1, 3, 3)), const("k1", _r(4)), const("k2", _r(2)),
             const("k3", _r(3)),
             _conv("c1", "x", "w1"), _conv("c2", "x", "w2"), _conv("c3", "x", "w3"),
             _bin("s1", "Sub", "c1", "k1"), _bin("s2", "Sub", "k2", "c2"),
             _bin("s3", "Sub", "c3", "k3"),
             _un("r1", "Relu", "s1"), _un("r2", "Sigmoid", "s2"), _un("r3", "Tanh", "s3")]
    x = _r(2, 5, 6, 3, lo=-3, hi=3)
    opt = _check_values(nodes, ["r1", "r2", "r3", "c3"], ["x"], [x])
    # c3 is fetched (and so pinned): nothing of its branch past the conv is shared
    assert _convs_of(opt) == [("Conv2D", 9)]
    nodes[-5] = _bin("s2", "Sub", "c2", "k2")
    opt = _check_values(nodes, ["r1", "r2", "r3"], ["x"], [x])
    assert _convs_of(opt) == [("Conv2D+Sub", 9)]


def test_convlstm_gates_add_their_input_and_state_parts_at_once():
    """A ConvLSTM2D-style step: per gate, a conv of the input plus bias and a conv of the
    state, added, then the gate's activation. The input's convs join, the state's convs join,
    and the per-gate additions become one, in the input conv's epilogue, before the split.
    Splits of other sizes are not merged."""
    def graph(state_sizes):
        nodes = [placeholder("x"), placeholder("h")]
        outs = []
        for g, (n, m, act) in enumerate(zip((4, 4, 4), state_sizes, ("Sigmoid", "Tanh",
                                                                     "Sigmoid"))):
            nodes += [const(f"wx{g}", _r(3, 3, 2, n)), const(f"b{g}", _r(1, 1, 1, n)),
                      const(f"wh{g}", _r(3, 3, 3, m)),
                      _conv(f"cx{g}", "x", f"wx{g}"), _bin(f"bx{g}", "AddV2", f"cx{g}", f"b{g}"),
                      _conv(f"ch{g}", "h", f"wh{g}"),
                      _bin(f"z{g}", "AddV2", f"bx{g}", f"ch{g}"), _un(f"a{g}", act, f"z{g}")]
            outs.append(f"a{g}")
        return nodes, outs

    x, h = _r(2, 6, 5, 2), _r(2, 6, 5, 3)
    nodes, outs = graph((4, 4, 4))
    opt = _check_values(nodes, outs, ["x", "h"], [x, h])
    assert _convs_of(opt) == [("Conv2D", 12), ("Conv2D+AddV2+AddV2", 12)]
    assert [st.op for st in opt.steps].count("AddV2") == 0
    nodes, outs = graph((4, 4, 1))  # (a state part that broadcasts: left alone)
    opt = _check_values(nodes, outs, ["x", "h"], [x, h])
    assert [st.op for st in opt.steps].count("AddV2") == 3
    # a fed whole split alike but of one channel: its SplitV fails unmerged, and still does
    nodes = [placeholder("x"), placeholder("s"), const("w", _r(1, 1, 2, 8)),
             const("sizes", np.array([4, 4], np.int32)), const("axis", np.array(-1, np.int32)),
             _conv("c", "x", "w"), const("w2", _r(1, 1, 2, 8)), _conv("c2", "x", "w2"),
             Node("sp1", "SplitV", ["c", "sizes", "axis"], {"T": "float32", "num_split": 2}),
             Node("sp2", "SplitV", ["s", "sizes", "axis"], {"T": "float32", "num_split": 2}),
             _bin("z0", "AddV2", "sp1", "sp2"), _bin("z1", "AddV2", "sp1:1", "sp2:1"),
             _bin("out", "Mul", "z0", "z1"), _bin("out2", "Mul", "c2", "c2")]
    plain, opt = _plans(nodes, ["out", "out2"], ["x", "s"])
    for plan in (plain, opt):
        with pytest.raises(ExecutionError, match="sp2"):
            plan(_r(1, 3, 3, 2), _r(1, 3, 3, 1))


def test_lone_convs_by_constant_filters_run_the_chains_kernel():
    """A conv no chain takes (its result read twice) still runs the conv runner: Winograd
    for a 3x3 layer that pays, the depthwise filter's tiles kept; NCHW goes the op's own way;
    a wrong input depth raises the op's error, naming the node."""
    nodes = [placeholder("x"), const("w", _r(3, 3, 64, 64)), const("d", _r(3, 3, 64, 1)),
             _conv("conv", "x", "w"), _bin("twice", "AddV2", "conv", "conv"),
             _conv("dw", "x", "d", op="DepthwiseConv2dNative"),
             _bin("dw2", "Mul", "dw", "dw")]
    x = _r(1, 32, 32, 64)
    plain, opt = _plans(nodes, ["twice", "dw2"], ["x"])
    for w, g in zip(plain(x), opt(x)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(w))))
    kinds = {st.name: st.kernel.__qualname__ for st in opt.steps}
    assert "_constant_filter" in kinds["conv"] and "_constant_filter" in kinds["dw"]
    with pytest.raises(ExecutionError, match="'conv'"):
        opt(_r(1, 8, 8, 3))
    nchw = [placeholder("x"), const("w", _r(3, 3, 4, 5)),
            _conv("conv", "x", "w", data_format="NCHW"), _bin("twice", "AddV2", "conv", "conv")]
    plain, opt = _plans(nchw, ["twice"], ["x"])
    x = _r(2, 4, 7, 6)
    np.testing.assert_allclose(opt(x)[0], plain(x)[0], rtol=1e-5, atol=1e-5)


def _specialized_matmul(x, w, **attrs):
    """MatMul as its specializer on a constant weight makes it (every Dense layer)."""
    return registry.specialize(registry.get_opdef("MatMul"), attrs, [None, w])(x)


def test_core_kernels_return_fresh_buffers():
    """The epilogue writes into the core kernel's result: it must never be an input."""
    cases = [
        (conv.Conv2D, _r(2, 5, 5, 8), _r(1, 1, 8, 4), {}),  # 1x1: one matmul
        (conv.Conv2D, _r(1, 3, 4, 4), _r(1, 1, 3, 3), {"data_format": "NCHW"}),
        (conv.Conv2D, _r(1, 8, 8, 3), _r(3, 3, 3, 4), {"strides": [1, 2, 2, 1]}),  # narrow
        (conv.Conv2D, _r(1, 8, 8, 16), _r(3, 3, 16, 4), {}),  # wide
        (conv.Conv2D, _r(1, 8, 8, 8), _r(3, 3, 4, 4), {}),  # grouped
        (conv.Conv2D, _r(0, 8, 8, 8), _r(3, 3, 8, 4), {}),  # empty
        (conv.Conv3D, _r(1, 3, 4, 4, 2), _r(1, 1, 1, 2, 2), {"strides": [1] * 5,
                                                              "data_format": "NDHWC"}),
        (conv.DepthwiseConv2dNative, _r(1, 6, 6, 4), _r(3, 3, 4, 1), {}),  # flat
        (conv.DepthwiseConv2dNative, _r(1, 6, 6, 4), _r(3, 3, 4, 2), {"strides": [1, 2, 2, 1]}),
        (conv.DepthwiseConv2dNative, _r(1, 6, 6, 300), _r(3, 3, 300, 1), {}),
        (conv.DepthwiseConv2dNative, _r(1, 1, 1, 4), _r(1, 1, 4, 1), {}),
        (math_matmul.MatMul, _r(3, 4), _r(4, 2), {}),
        (math_matmul.MatMul, _r(4, 3), _r(2, 4), {"transpose_a": True, "transpose_b": True}),
        (math_matmul.BatchMatMulV2, _r(2, 3, 4), _r(4, 2), {}),
        (math_matmul.BatchMatMulV2, _r(2, 4, 3), _r(2, 4), {"adj_x": True, "adj_y": True}),
        (_specialized_matmul, _r(4, 3), _r(4, 2), {"transpose_a": True}),
    ]
    for dt in (np.float32, np.float64):
        for kernel, x, w, attrs in cases:
            if kernel in (conv.Conv2D, conv.Conv3D, conv.DepthwiseConv2dNative):
                nd = x.ndim
                attrs = {"strides": [1] * nd, "padding": "SAME", **attrs}
            x, w = x.astype(dt), w.astype(dt)
            w.setflags(write=False)
            y = kernel(x, w, **attrs)
            assert y.dtype == dt and y.flags.writeable
            assert not np.may_share_memory(y, x) and not np.may_share_memory(y, w), kernel


# --- Keras models --------------------------------------------------------------------------

def _keras(flavour):
    pytest.importorskip("tensorflow")
    if flavour == "keras3":
        import keras

        return keras
    return pytest.importorskip("tf_keras")


def _randomize_bn(model):
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if "BatchNormalization" in type(layer).__name__:
            layer.set_weights([w + rng.uniform(0.1, 0.5, size=np.shape(w)).astype(np.float32)
                               for w in layer.get_weights()])


def _mobilenet_v2(k):
    return k.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None, alpha=0.35,
                                      classifier_activation=None)


def _resnet_like(k):
    L = k.layers
    inp = k.Input((24, 24, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.Activation("relu")(x)
    for filters, stride in ((8, 1), (16, 2)):
        y = L.Conv2D(filters, 3, strides=stride, padding="same")(x)
        y = L.BatchNormalization()(y)
        y = L.ReLU()(y)
        y = L.Conv2D(filters, 3, padding="same")(y)
        y = L.BatchNormalization()(y)
        if stride != 1:
            x = L.Conv2D(filters, 1, strides=stride)(x)
            x = L.BatchNormalization()(x)
        x = L.Activation("relu")(L.Add()([x, y]))
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("swish")(x)
    x = L.GlobalAveragePooling2D()(x)
    return k.Model(inp, L.Dense(5, name="logits")(x))


def _densenet_like(k):
    """Pre-activation layers (BatchNormalization and ReLU before each convolution) joined by
    concatenations, and a transition, as DenseNet's."""
    L = k.layers
    inp = k.Input((16, 16, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    for _ in range(2):
        y = L.BatchNormalization()(x)
        y = L.Activation("relu")(y)
        y = L.Conv2D(12, 1)(y)
        y = L.BatchNormalization()(y)
        y = L.Activation("relu")(y)
        y = L.Conv2D(4, 3, padding="same")(y)
        x = L.Concatenate()([x, y])
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    x = L.Conv2D(10, 1)(x)
    x = L.AveragePooling2D(2)(x)
    x = L.GlobalAveragePooling2D()(x)
    return k.Model(inp, L.Dense(5, name="logits")(x))


def _mlp(k):
    L = k.layers
    inp = k.Input((12,), name="features")
    x = L.Dense(16)(inp)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    x = L.Dense(8, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("tanh")(x)
    return k.Model(inp, L.Dense(3, activation="sigmoid", name="out")(x))


@pytest.mark.tf
@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
@pytest.mark.parametrize("build, shape", [(_mobilenet_v2, (2, 96, 96, 3)),
                                          (_resnet_like, (3, 24, 24, 3)), (_mlp, (6, 12)),
                                          (_densenet_like, (2, 16, 16, 3))],
                         ids=["mobilenet_v2", "resnet_like", "mlp", "densenet_like"])
def test_keras_model_fused(flavour, build, shape):
    k = _keras(flavour)
    k.utils.set_random_seed(0)
    model = build(k)
    _randomize_bn(model)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    want = np.asarray(model(x, training=False))
    m = td.convert(model)
    g = m.default_graph
    fetches, feeds = [s.ref for s in g.outputs], [s.ref for s in g.inputs]
    plain = compile_plan(g, fetches, feeds, optimize=False)
    opt = compile_plan(g, fetches, feeds)
    # every convolution and matrix product is followed by a bias or a normalization
    assert not [st.op for st in opt.steps
                if st.op in ("Conv2D", "DepthwiseConv2dNative", "MatMul")]
    assert len(opt.steps) < len(plain.steps)
    got = m(x)
    scale = float(np.max(np.abs(want)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(got, plain(x)[0], rtol=1e-5, atol=1e-5 * scale)
    if build is _densenet_like:  # each 1x1 convolution takes its BatchNorm and ReLU before it
        pro = [st.label for st in opt.steps if st.attrs.get("prologue")]
        bn = "FusedBatchNormV3" if flavour == "tf_keras" else "Mul+AddV2"
        assert len(pro) == 3 and all(p.startswith(f"{bn}+Relu") for p in pro), pro


@pytest.mark.tf
@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_keras_transposed_convs_fused(flavour):
    """Keras' Conv2DTranspose computes its input_sizes from its input's batch (Shape,
    StridedSlice, Pack): specialized to the input's shape, the sizes are constants, every
    transposed convolution heads a chain with its BatchNorm, bias and activation, and the
    results are TF's (a DCGAN-like generator by 5 x 5 stride-2 layers to an RGB tanh, and a
    2 x 2 stride-2 upsampling joined to a skip)."""
    k = _keras(flavour)
    k.utils.set_random_seed(0)
    L = k.layers
    inp = k.Input((6,), name="z")
    x = L.Reshape((2, 2, 12))(L.Dense(48, use_bias=False)(inp))
    for f in (8, 6):
        x = L.Conv2DTranspose(f, 5, strides=2, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
    skip = x
    x = L.Conv2D(4, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2DTranspose(5, 2, strides=2, padding="same", activation="relu")(x)
    x = L.Concatenate()([x, skip])
    out = L.Conv2DTranspose(3, 5, strides=2, padding="same", activation="tanh")(x)
    model = k.Model(inp, out)
    _randomize_bn(model)
    m = td.convert(model)
    for batch in (1, 3):
        z = np.random.default_rng(batch).standard_normal((batch, 6)).astype(np.float32)
        want = np.asarray(model(z, training=False))
        plan = m.plan(z)
        ops = [st.op for st in plan.steps]
        assert "Conv2DBackpropInput" not in ops and "Shape" not in ops and "Pack" not in ops
        labels = [st.label for st in plan.steps if st.attrs.get("core") ==
                  "Conv2DBackpropInput"]
        assert len(labels) == 4 and all(lb.startswith("Conv2DBackpropInput+") for lb in labels)
        got = m(z)
        assert got.shape == want.shape == (batch, 16, 16, 3)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.tf
def test_keras_pinned_intermediate():
    k = _keras("keras3")
    k.utils.set_random_seed(0)
    model = _resnet_like(k)
    _randomize_bn(model)
    m = td.convert(model)
    g = m.default_graph
    # the output of the first BatchNormalization, fetched beside the logits
    mid = next(n.name for n in g.nodes if "/bn0" in n.name and n.name.endswith("add_1"))
    out = m.outputs[0].name
    x = np.random.default_rng(1).standard_normal((2, 24, 24, 3)).astype(np.float32)
    got_mid, got_out = m.eval([mid, out], {m.inputs[0].name: x})
    sub = k.Model(model.input, [model.get_layer("bn0").output, model.output])
    want_mid, want_out = (np.asarray(v) for v in sub(x, training=False))
    for got, want in ((got_mid, want_mid), (got_out, want_out)):
        scale = float(np.max(np.abs(want)))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)
    plan = compile_plan(g, [f"{mid}:0", m.outputs[0].ref], [m.inputs[0].ref])
    first = next(st for st in plan.steps if st.label.startswith("Conv2D"))
    assert first.label == "Conv2D+Mul+AddV2"  # the chain stops at the fetched tensor


@pytest.mark.tf
def test_mixed_float16_chains_compute_in_float32():
    keras = _keras("keras3")
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        inp = keras.Input((24,))
        h = keras.layers.Dense(32, activation="relu")(inp)
        h = keras.layers.Dense(32, activation="gelu")(h)
        out = keras.layers.Dense(5, dtype="float32")(h)
        model = keras.Model(inp, out)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for layer in model.layers[1:]:  # non-zero biases
        w, b = layer.get_weights()
        layer.set_weights([w, np.random.default_rng(2).standard_normal(b.shape).astype(b.dtype)])
    x = np.random.default_rng(1).standard_normal((6, 24)).astype(np.float32)
    want = np.asarray(model(x, training=False))
    m = td.convert(model, check_data=False)
    plan = m.plan(x)
    # the two float16 Dense layers, their GELU (fused from its float16 steps, 1/sqrt 2 rounded
    # to float16) and the Casts from the input and to the float32 head are one float32 stack
    stack = [st for st in plan.steps if st.op == "_HalfStack"]
    assert len(stack) == 1 and stack[0].attrs["cast_in"] and stack[0].attrs["cast_out"]
    half = stack[0].attrs["chains"]
    assert len(half) == 2 and all(c["weight"].dtype == np.float32 for c in half)
    assert half[1]["epilogue"][-1][0] == "gelu" and len(plan.steps) == 2, plan
    got = m(x)
    scale = float(np.max(np.abs(want)))
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2 * scale)
    np.testing.assert_allclose(got, m.plan(x, optimize=False).run((x,))[0], rtol=1e-2,
                               atol=1e-2 * scale)


# --- pad_into_conv -------------------------------------------------------------------------

def _pad(name, x, pairs, op="Pad", value=None):
    nodes = [const(f"{name}_p", np.array(pairs, np.int32))]
    ins = [x, f"{name}_p"]
    if op == "PadV2":
        nodes.append(const(f"{name}_v", np.float32(value)))
        ins.append(f"{name}_v")
    return nodes + [Node(name, op, ins, {"T": "float32", "Tpaddings": "int32"})]


PAD_FOLDS = [
    # (id, input, filter, op, strides, padding, explicit, pad pairs, data_format)
    ("dw_s2", (2, 9, 8, 4), (3, 3, 4, 1), "DepthwiseConv2dNative", (1, 2, 2, 1), "VALID", None,
     [[0, 0], [0, 1], [0, 1], [0, 0]], "NHWC"),
    ("conv_7x7_s2", (1, 16, 15, 3), (7, 7, 3, 5), "Conv2D", (1, 2, 2, 1), "VALID", None,
     [[0, 0], [3, 3], [3, 3], [0, 0]], "NHWC"),
    ("explicit_plus", (1, 7, 9, 3), (3, 3, 3, 2), "Conv2D", (1, 1, 2, 1), "EXPLICIT",
     [0, 0, 1, 0, 2, 1, 0, 0], [[0, 0], [1, 2], [0, 3], [0, 0]], "NHWC"),
    ("dw_m2_odd", (1, 7, 6, 3), (5, 5, 3, 2), "DepthwiseConv2dNative", (1, 2, 1, 1), "VALID",
     None, [[0, 0], [1, 2], [2, 1], [0, 0]], "NHWC"),
    ("nchw", (2, 3, 8, 7), (3, 3, 3, 4), "Conv2D", (1, 1, 2, 2), "VALID", None,
     [[0, 0], [0, 0], [1, 1], [0, 2]], "NCHW"),
    ("empty_batch", (0, 9, 8, 4), (3, 3, 4, 1), "DepthwiseConv2dNative", (1, 2, 2, 1), "VALID",
     None, [[0, 0], [0, 1], [0, 1], [0, 0]], "NHWC"),
]


@pytest.mark.parametrize("case", PAD_FOLDS, ids=[c[0] for c in PAD_FOLDS])
@pytest.mark.parametrize("op", ["Pad", "PadV2"])
def test_pad_folds_into_the_conv(case, op):
    _, xs, ws, conv_op, strides, padding, explicit, pairs, fmt = case
    extra = {"explicit_paddings": explicit} if explicit else {}
    nodes = [placeholder("x"), const("w", _r(*ws))] + _pad("pad", "x", pairs, op, 0.0) + [
        _conv("conv", "pad", "w", strides=strides, padding=padding, data_format=fmt,
              op=conv_op, **extra)]
    g = Graph(nodes, [TensorSpec("x", "x:0", "float32")], [TensorSpec("conv", "conv:0",
                                                                       "float32")])
    plain = compile_plan(g, ["conv:0"], ["x:0"], optimize=False)
    opt = compile_plan(g, ["conv:0"], ["x:0"], passes=["pad_into_conv"], verify=True)
    assert [st.op for st in plain.steps] == [op, conv_op]
    assert [st.op for st in opt.steps] == [conv_op]
    assert opt.steps[0].attrs["padding"] == "EXPLICIT"
    for dt in (np.float32, np.float64):
        x = _r(*xs, dtype=dt)
        want, got = plain(x)[0], opt(x)[0]
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_pad_folds_then_fuses_in_a_keras_like_block():
    nodes = [placeholder("x"), const("w", _r(3, 3, 6, 1)), const("s", _r(6)), const("t", _r(6))]
    nodes += _pad("pad", "x", [[0, 0], [0, 1], [0, 1], [0, 0]])
    nodes += [_conv("dw", "pad", "w", strides=(1, 2, 2, 1), padding="VALID",
                    op="DepthwiseConv2dNative"),
              _bin("mul", "Mul", "dw", "s"), _bin("add", "AddV2", "mul", "t"),
              _un("act", "Relu6", "add")]
    plain, opt = _plans(nodes, ["act"], ["x"])
    assert [st.label for st in opt.steps] == ["DepthwiseConv2dNative+Mul+AddV2+Relu6"]
    assert opt.steps[0].members[0].attrs["padding"] == "EXPLICIT"  # its fallback: no Pad
    for x in (_r(2, 11, 10, 6, lo=-3, hi=3), _r(1, 11, 10, 6, dtype=np.float64)):
        np.testing.assert_allclose(opt(x)[0], plain(x)[0], rtol=1e-5, atol=1e-5)


def _pad_not_folded(nodes, fetches, feeds, values):
    g = Graph(list(nodes), [TensorSpec(f, f"{f}:0", "float32") for f in feeds],
              [TensorSpec(f, f"{f}:0", "float32") for f in fetches])
    refs, feed_refs = [f"{f}:0" for f in fetches], [f"{f}:0" for f in feeds]
    plain = compile_plan(g, refs, feed_refs, optimize=False)
    opt = compile_plan(g, refs, feed_refs, passes=["pad_into_conv"], verify=True)
    assert [st.op for st in opt.steps] == [st.op for st in plain.steps]
    for w, o in zip(plain(*values), opt(*values)):
        np.testing.assert_array_equal(o, w)


def test_pad_not_folded():
    x = _r(1, 6, 6, 2)
    w = const("w", _r(3, 3, 2, 2))
    spatial = [[0, 0], [1, 1], [1, 1], [0, 0]]

    def conv(padding="VALID", src="pad", **kw):
        return _conv("conv", src, "w", padding=padding, **kw)
    # two readers of the padded tensor
    _pad_not_folded([placeholder("x"), w, *_pad("pad", "x", spatial), conv(),
                     _un("other", "Relu", "pad")], ["conv", "other"], ["x"], [x])
    # the padded tensor fetched
    _pad_not_folded([placeholder("x"), w, *_pad("pad", "x", spatial), conv()],
                    ["conv", "pad"], ["x"], [x])
    # a SAME convolution; padding of the channels or the batch; a non-zero PadV2
    _pad_not_folded([placeholder("x"), w, *_pad("pad", "x", spatial), conv("SAME")],
                    ["conv"], ["x"], [x])
    _pad_not_folded([placeholder("x"), const("w", _r(3, 3, 3, 2)),
                     *_pad("pad", "x", [[0, 0], [1, 1], [1, 1], [0, 1]]), conv()],
                    ["conv"], ["x"], [x])
    _pad_not_folded([placeholder("x"), w, *_pad("pad", "x", [[1, 0], [1, 1], [1, 1], [0, 0]]),
                     conv()], ["conv"], ["x"], [x])
    _pad_not_folded([placeholder("x"), w, *_pad("pad", "x", spatial, "PadV2", 1.5), conv()],
                    ["conv"], ["x"], [x])
    # paddings computed at run time; a Conv3D (no EXPLICIT padding)
    _pad_not_folded([placeholder("x"), w, placeholder("p"),
                     Node("pad", "Pad", ["x", "p"], {"T": "float32", "Tpaddings": "int32"}),
                     conv()], ["conv"], ["x", "p"], [x, np.array(spatial, np.int32)])
    v = _r(1, 4, 5, 5, 2)
    _pad_not_folded([placeholder("x"), const("w3", _r(2, 2, 2, 2, 3)),
                     *_pad("pad", "x", [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]),
                     _conv("conv", "pad", "w3", strides=(1,) * 5, padding="VALID", op="Conv3D",
                           data_format="NDHWC")], ["conv"], ["x"], [v])


def test_pad_never_folded_past_a_users_kernel():
    d = registry.get_opdef("Pad")
    saved = (dict(d.impls), set(d.builtin), dict(d.specializers), d.preferred)
    try:
        class Pad(td.Operation):  # a user's Pad: pads with ones
            def func(input, paddings):
                return np.pad(input, paddings, constant_values=1),

        assert not registry.runs_builtin("Pad")
        x = _r(1, 6, 6, 2)
        nodes = [placeholder("x"), const("w", _r(3, 3, 2, 2)),
                 *_pad("pad", "x", [[0, 0], [1, 1], [1, 1], [0, 0]]),
                 _conv("conv", "pad", "w", padding="VALID")]
        _pad_not_folded(nodes, ["conv"], ["x"], [x])
    finally:
        d = registry.get_opdef("Pad")  # (the user's class may have made a new one)
        d.impls, d.builtin, d.specializers, d.preferred = saved
    assert registry.runs_builtin("Pad")


# --- scale_into_conv -----------------------------------------------------------------------

def _se_nodes(c=6, co=5, residual=False):
    """A squeeze-excite block's end: x * s (s a run-time [N, 1, 1, C] scale), then a 1x1
    projection conv with BatchNorm (and the block's residual)."""
    nodes = [placeholder("x"), placeholder("s"), const("w", _r(1, 1, c, co)),
             const("m", _r(co, lo=0.5, hi=2)), const("b", _r(co)),
             _bin("scaled", "Mul", "x", "s"), _conv("proj", "scaled", "w"),
             _bin("bn_mul", "Mul", "proj", "m"), _bin("bn_add", "AddV2", "bn_mul", "b")]
    if residual:
        nodes += [placeholder("r"), _bin("res", "AddV2", "bn_add", "r")]
    return nodes


@pytest.mark.parametrize("n, h, w, c, co", [(1, 9, 8, 6, 5), (3, 7, 7, 6, 5), (2, 2, 2, 6, 40),
                                            (1, 1, 1, 6, 5), (0, 4, 4, 6, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scale_folds_into_the_pointwise_conv(n, h, w, c, co, dtype):
    """Both ways (the scale in the weights when the conv has fewer outputs than the map has
    pixels, else the product in scratch), either operand order."""
    nodes = _se_nodes(c, co)
    plain, opt = _plans(nodes, ["bn_add"], ["x", "s"])
    assert [st.label for st in opt.steps] == ["Mul+Conv2D+Mul+AddV2"]
    assert opt.steps[0].attrs["scaled"]
    x, s = _r(n, h, w, c, dtype=dtype), _r(n, 1, 1, c, dtype=dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for args in ((x, s), (s, x)) if h * w > 1 else ((x, s),):
        want, got = plain(*args)[0], opt(*args)[0]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_scale_folds_with_a_residual_and_falls_back_on_other_shapes():
    nodes = _se_nodes(residual=True)
    plain, opt = _plans(nodes, ["res"], ["x", "s", "r"])
    assert [st.label for st in opt.steps] == ["Mul+Conv2D+Mul+AddV2+AddV2"]
    x, r = _r(2, 5, 4, 6), _r(2, 5, 4, 5)
    for s in (_r(2, 1, 1, 6), _r(1, 1, 1, 6), _r(6), _r(2, 5, 4, 6), _r(1, 5, 1, 1)):
        for args in ((x, s, r), (x, s, r[:1])):  # (a residual that broadcasts)
            np.testing.assert_allclose(opt(*args)[0], plain(*args)[0], rtol=1e-5, atol=1e-5)
    got = opt(x, _r(2, 1, 1, 6, dtype=np.float64), r)[0]  # another dtype: the fallback
    assert got.dtype == np.float64


def test_scale_not_folded():
    def labels(nodes, fetches, feeds):
        return [st.label for st in _plans(nodes, fetches, feeds)[1].steps]
    base = _se_nodes()
    # the product read twice, or fetched
    assert labels(base + [_un("other", "Relu", "scaled")], ["bn_add", "other"], ["x", "s"]) == \
        ["Mul", "Conv2D+Mul+AddV2", "Relu"]
    assert labels(base, ["bn_add", "scaled"], ["x", "s"]) == ["Mul", "Conv2D+Mul+AddV2"]
    # a 3x3 or strided conv; a constant scale
    for w, strides in ((_r(3, 3, 6, 5), (1, 1, 1, 1)), (_r(1, 1, 6, 5), (1, 2, 2, 1))):
        nodes = [placeholder("x"), placeholder("s"), const("w", w), const("b", _r(5)),
                 _bin("scaled", "Mul", "x", "s"), _conv("proj", "scaled", "w", strides=strides),
                 _bin("bias", "BiasAdd", "proj", "b")]
        assert labels(nodes, ["bias"], ["x", "s"]) == ["Mul", "Conv2D+BiasAdd"]
    nodes = [placeholder("x"), const("s", _r(1, 1, 1, 6))] + _se_nodes()[2:]
    assert labels(nodes, ["bn_add"], ["x"]) == ["Mul", "Conv2D+Mul+AddV2"]


def test_scale_never_folded_past_a_users_mul():
    d = registry.get_opdef("Mul")
    saved = (dict(d.impls), set(d.builtin), dict(d.specializers), d.preferred)
    try:
        class Mul(td.Operation):  # a user's Mul: x * y + 1
            def func(x, y):
                return x * y + 1,

        assert not registry.runs_builtin("Mul")
        nodes = [placeholder("x"), placeholder("s"), const("w", _r(1, 1, 6, 5)),
                 const("b", _r(5)), _bin("scaled", "Mul", "x", "s"),
                 _conv("proj", "scaled", "w"), _bin("bn_add", "BiasAdd", "proj", "b")]
        plain, opt = _plans(nodes, ["bn_add"], ["x", "s"])
        assert [st.label for st in opt.steps] == ["Mul", "Conv2D+BiasAdd"]
        x, s = _r(2, 5, 4, 6), _r(2, 1, 1, 6)
        np.testing.assert_allclose(opt(x, s)[0], plain(x, s)[0], rtol=1e-5, atol=1e-5)
    finally:
        d = registry.get_opdef("Mul")
        d.impls, d.builtin, d.specializers, d.preferred = saved
    assert registry.runs_builtin("Mul")


# --- a constant of a few channels ----------------------------------------------------------

_CONSTANT_OPS = [("AddV2", np.add), ("Sub", np.subtract), ("Mul", np.multiply),
                 ("RealDiv", np.divide)]


def _constant_op_plan(op: str, c: np.ndarray, first: bool):
    """The plan of ``op(c, x)`` (``first``) or ``op(x, c)``, x fed of any shape."""
    ins = ["c", "x"] if first else ["x", "c"]
    g = Graph([placeholder("x", "float32", None), const("c", c),
               Node("y", op, ins, {"T": "float32"})],
              [TensorSpec("x", "x:0", "float32", None)], [TensorSpec("y", "y:0", "float32", None)])
    return compile_plan(g, ["y:0"], ["x:0"])


@pytest.mark.parametrize("op, ufunc", _CONSTANT_OPS)
@pytest.mark.parametrize("first", [False, True])
def test_channel_constant_tiled(op, ufunc, first):
    """``x - mean`` with a [3] constant runs over rows of pixels against the constant tiled
    (numpy's loop over 3 values was 7x slower): the same values bit for bit, for any shape
    (a small input: the constant repeated to its shape)."""
    c = np.array([0.485, -0.456, 0.406], np.float32)
    plan = _constant_op_plan(op, c, first)
    assert plan.steps[0].kernel.__name__ == "NarrowConstant"
    rng = np.random.default_rng(0)
    for shape in [(2, 40, 30, 3), (4000, 3), (7, 3), (2, 40, 30, 3, 3)]:
        x = rng.uniform(0.5, 2, shape).astype(np.float32)
        want = ufunc(c, x) if first else ufunc(x, c)
        got = plan.run((x,))[0]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    x = rng.uniform(0.5, 2, (2, 40, 30, 3))
    np.testing.assert_array_equal(plan.run((x[..., ::-1],))[0],  # (not contiguous)
                                  ufunc(c, x[..., ::-1]) if first else ufunc(x[..., ::-1], c))


@pytest.mark.parametrize("op, ufunc", _CONSTANT_OPS)
@pytest.mark.parametrize("first", [False, True])
def test_small_input_constant_repeated(op, ufunc, first):
    """A constant broadcasting into a small input (a rotary table [1, 1, T, H] into [B, heads,
    T, H]) is kept repeated to the input's shape: numpy's values bit for bit, for shapes it
    repeats to, a broadcast that widens the input, a 0-d input, a large input; division by
    zero warns nothing (as the kernel); another dtype takes the generic kernel."""
    import warnings

    c = np.random.default_rng(1).uniform(-2, 2, (1, 1, 6, 4)).astype(np.float32)
    c[0, 0, 0, 0] = 0
    plan = _constant_op_plan(op, c, first)
    assert plan.steps[0].kernel.__name__ == "SmallConstant"
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for shape in [(2, 3, 6, 4), (2, 3, 6, 4), (5, 6, 4), (6, 1), (), (300, 20, 6, 4)]:
            x = rng.uniform(-2, 2, shape).astype(np.float32)
            if x.ndim:
                x.reshape(-1)[0] = 0
            with np.errstate(all="ignore"):
                want = ufunc(c, x) if first else ufunc(x, c)
            got = plan.run((x,))[0]
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
    x = rng.uniform(-2, 2, (2, 3, 6, 4))
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(plan.run((x,))[0], ufunc(c, x) if first else ufunc(x, c))


# --- softmax at the end of a chain ---------------------------------------------------------

def test_softmax_ends_a_dense_chain():
    """softmax(x @ w + b) is one step (the classic classifier head): the values of the unfused
    plan bit for bit on a small batch (one closure), and on rows split over threads (to BLAS's
    rounding: a block's rows can round differently from the same rows of the whole product,
    as OpenBLAS's Haswell kernels do on an AMD EPYC), with infinite and NaN logits; another
    dtype takes the unfused steps."""
    w, b = _r(20, 10), _r(10)
    nodes = [placeholder("x"), const("w", w), const("b", b),
             Node("mm", "MatMul", ["x", "w"], {"T": "float32"}),
             _bin("bias", "BiasAdd", "mm", "b"), _un("sm", "Softmax", "bias")]
    plain, opt = _check(nodes, ["sm"], ["x"], [_r(3, 20, lo=-9, hi=9)],
                        ["MatMul+BiasAdd+Softmax"])
    assert opt.steps[0].kernel.__name__ == "DenseSoftmax"
    split = opt.steps[0].kernel.chain.split_rows
    for x in [_r(1, 20, lo=-9, hi=9), _r(split + 5, 20, lo=-30, hi=30)]:
        x[0, :2] = [np.inf, -np.inf]
        x[-1, 3] = np.nan
        want, got = plain(x)[0], opt(x)[0]
        assert got.dtype == np.float32 and got.shape == want.shape
        if len(x) < split:
            np.testing.assert_array_equal(got, want)
        else:  # (NaN where the plan has NaN, each probability to the logits' rounding)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-37)  # (subnormals)
    x = _r(4, 20).astype(np.float64)
    np.testing.assert_array_equal(opt(x)[0], plain(x)[0])


def test_dense_closure_takes_sequences_with_their_epilogue():
    """A BatchMatMulV2 with a constant matrix, its bias, a residual and an activation over a
    [batch, tokens, features] input runs as the one Dense closure (rows multiplied as one
    matrix, the bias added as a same-shape array): the unfused plan's values, for one shape
    and the next, an empty batch, a non-contiguous input, a residual of another shape (the
    chain) and float64 (the unfused steps). A MatMul (rank 2 only) fed a rank-3 array raises
    as its kernel does, not computed as rows."""
    w, b = _r(8, 6), _r(6)
    nodes = [placeholder("x"), placeholder("r"), const("w", w), const("b", b),
             Node("mm", "BatchMatMulV2", ["x", "w"], {"T": "float32", "adj_x": False,
                                                      "adj_y": False}),
             _bin("bias", "BiasAdd", "mm", "b"), _bin("res", "AddV2", "bias", "r"),
             _un("act", "Relu", "res")]
    plain, opt = _check(nodes, ["act"], ["x", "r"], [_r(2, 5, 8), _r(2, 5, 6)],
                        ["BatchMatMulV2+BiasAdd+AddV2+Relu"])
    kernel = opt.steps[0].kernel
    assert kernel.__name__ == "Dense"
    chain, calls = kernel.chain, []
    core = chain.core  # (the chain's own way: its core kernel, then the epilogue)
    chain.core = lambda *a: calls.append(a) or core(*a)
    for x, r in [(_r(2, 5, 8), _r(2, 5, 6)), (_r(1, 16, 8), _r(1, 16, 6)),
                 (_r(0, 3, 8), _r(0, 3, 6)), (_r(3, 8, 4).transpose(0, 2, 1), _r(3, 4, 6)),
                 (_r(2, 5, 8), _r(5, 6))]:  # (last: a residual broadcasting into the result)
        np.testing.assert_array_equal(opt(x, r)[0], plain(x, r)[0])
    assert not calls  # (all of them in the closure)
    x, r = _r(2, 5, 8), _r(1, 1, 1, 6)  # (it would widen the result: the chain's fallback)
    np.testing.assert_array_equal(opt(x, r)[0], plain(x, r)[0])
    assert len(calls) == 1
    x, r = _r(2, 5, 8).astype(np.float64), _r(2, 5, 6).astype(np.float64)
    np.testing.assert_array_equal(opt(x, r)[0], plain(x, r)[0])
    matmul = [placeholder("x"), const("w", w), const("b", b),
              Node("mm", "MatMul", ["x", "w"], {"T": "float32"}),
              _bin("bias", "BiasAdd", "mm", "b")]
    plain, opt = _check(matmul, ["bias"], ["x"], [_r(3, 8)], ["MatMul+BiasAdd"])
    assert opt.steps[0].kernel.__name__ == "Dense"
    for run in (plain, opt):
        with pytest.raises(ExecutionError, match="MatMul"):
            run(_r(2, 3, 8))


def test_softmax_ends_a_conv_chain_over_channels_last_only():
    """A 1x1 conv + bias + softmax over the channels runs its epilogue by blocks of whole
    pixels; over NCHW's last axis (not the channels) or in float16 the Softmax stays a step."""
    c = 12
    nodes = [placeholder("x"), const("w", _r(1, 1, 8, c)), const("b", _r(c)),
             _conv("conv", "x", "w"), _bin("bias", "BiasAdd", "conv", "b"),
             _un("sm", "Softmax", "bias")]
    x = _r(2, 80, 90, 8, lo=-3, hi=3)
    assert x[..., 0].size * c > 2 * fused._BLOCK
    _check(nodes, ["sm"], ["x"], [x], ["Conv2D+BiasAdd+Softmax"])
    nchw = [placeholder("x"), const("w", _r(1, 1, 8, c)), const("b", _r(c)),
            _conv("conv", "x", "w", data_format="NCHW"),
            Node("bias", "BiasAdd", ["conv", "b"], {"T": "float32", "data_format": "NCHW"}),
            _un("sm", "Softmax", "bias")]
    _check(nchw, ["sm"], ["x"], [_r(2, 8, 5, 6)], ["Conv2D+BiasAdd"])
    half = [placeholder("x", "float16"), const("w", _r(6, 4, dtype=np.float16)),
            Node("mm", "MatMul", ["x", "w"], {"T": "float16"}),
            Node("sm", "Softmax", ["mm"], {"T": "float16"}), _un("out", "Relu", "sm")]
    _, opt = _plans(half, ["out"], ["x"])
    assert [st.op for st in opt.steps][-2:] == ["Softmax", "Relu"]


# --- float16 stacks ------------------------------------------------------------------------

def _half_graph(layers=3, cast_in=True, cast_out=True, truncate=False, residual=False,
                dtype="float16"):
    """x (float32 if cast_in) -> [Cast] -> layers x (MatMul + bias + Relu) in ``dtype`` ->
    [Cast to float32]; ``residual``: the last layer adds the first one's output."""
    nodes = [placeholder("x", "float32" if cast_in else dtype)]
    cur = "x"
    if cast_in:
        nodes.append(Node("in", "Cast", ["x"], {"SrcT": "float32", "DstT": dtype,
                                                "Truncate": truncate}))
        cur = "in"
    np_dt = np.float16 if dtype == "float16" else td.dtypes.to_numpy(dtype)
    first = None
    for i in range(layers):
        nodes += [const(f"w{i}", _r(8, 8, dtype=np.float32).astype(np_dt)),
                  const(f"b{i}", _r(8, dtype=np.float32).astype(np_dt)),
                  Node(f"mm{i}", "MatMul", [cur, f"w{i}"], {"T": dtype}),
                  Node(f"bias{i}", "BiasAdd", [f"mm{i}", f"b{i}"], {"T": dtype})]
        cur = f"bias{i}"
        if residual and i == layers - 1:
            nodes.append(Node("res", "AddV2", [cur, first], {"T": dtype}))
            cur = "res"
        nodes.append(Node(f"act{i}", "Relu", [cur], {"T": dtype}))
        cur = f"act{i}"
        first = first or cur
    if cast_out:
        nodes.append(Node("out", "Cast", [cur], {"SrcT": dtype, "DstT": "float32",
                                                 "Truncate": False}))
        cur = "out"
    out_dt = "float32" if cast_out else dtype
    g = Graph(nodes, [TensorSpec("x", "x:0", "float32" if cast_in else dtype)],
              [TensorSpec(cur, f"{cur}:0", out_dt)])
    return g, f"{cur}:0"


@pytest.mark.parametrize("layers, cast_in, cast_out", [(3, True, True), (2, False, False),
                                                       (1, True, False), (1, False, True)])
def test_float16_chains_stack_in_float32(layers, cast_in, cast_out):
    """A run of float16 chains (with the Casts around it) is one _HalfStack step giving the
    unstacked plan's values bit for bit, including infinities, NaNs, signed zeros and values
    beyond float16's range; an input of another dtype runs the steps unfused."""
    g, out = _half_graph(layers, cast_in, cast_out)
    stacked = compile_plan(g, [out], ["x:0"], verify=True)
    passes = [name for name, _, _ in pipeline.PASSES if name != "fuse_half"]
    plain = compile_plan(g, [out], ["x:0"], passes=passes)
    assert [st.op for st in stacked.steps] == ["_HalfStack"]
    st = stacked.steps[0]
    assert len(st.attrs["chains"]) == layers and st.attrs["cast_in"] == cast_in
    assert st.attrs["cast_out"] == cast_out
    assert st.label.count("MatMul") == layers
    x = _r(64, 8, lo=-200, hi=200)
    x[0, :6] = [np.inf, -np.inf, np.nan, -0.0, 1e6, -7e4]
    x[1, :3] = [3e-8, -3e-8, 6e-5]
    with np.errstate(over="ignore"):  # (1e6 is inf in float16)
        x = x if cast_in else x.astype(np.float16)
    want, got = plain.run((x,))[0], stacked.run((x,))[0]
    assert got.dtype == want.dtype == (np.float32 if cast_out else np.float16)
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))
    if cast_in:  # float64 in: the steps unfused, each rounding to float16 as TF does
        x64 = x.astype(np.float64)
        unfused = compile_plan(g, [out], ["x:0"], optimize=False)
        np.testing.assert_array_equal(stacked.run((x64,))[0], unfused.run((x64,))[0])


def test_float16_stack_not_made():
    """A lone chain, a truncating Cast, a residual operand and bfloat16 are left as they are."""
    def ops(**kw):
        g, out = _half_graph(**kw)
        return [st.op for st in compile_plan(g, [out], ["x:0"], verify=True).steps]
    assert ops(layers=1, cast_in=False, cast_out=False) == ["_FusedChain"]
    assert ops(layers=2, truncate=True) == ["Cast", "_HalfStack"]
    # (layer 0's output has two readers; layer 3 takes it as a residual: 1 and 2 stack)
    assert ops(layers=4, residual=True, cast_in=False, cast_out=False) == \
        ["_FusedChain", "_HalfStack", "_FusedChain"]
    if importlib.util.find_spec("ml_dtypes") is not None:  # (bfloat16 needs it)
        assert "_HalfStack" not in ops(layers=2, dtype="bfloat16")


@pytest.mark.parametrize("chunk", [1 << 15, 5, 1], ids=["default", "5", "1"])
def test_scaled_weight_by_chunks(chunk, monkeypatch):
    """Folding a per-channel scale into a weight, by chunks of rows: each value's float64
    product rounded once, subnormal results (and zeros, -0 included) +0; None for an inf or
    NaN weight, or a product past the dtype's range. Every core kind's channel axis: last
    (conv, matmul), first of two (a transposed matmul), the depthwise filter's channels
    times multiplier, a transposed convolution's input channels."""
    from tfdeploy.compiler.passes import fuse_conv as fc

    monkeypatch.setattr(fc, "_SCALE_CHUNK", chunk)
    rng = np.random.default_rng(3)
    cases = [("conv", (3, 3, 5, 7), 3, 7), ("conv", (1, 1, 40, 3), 3, 3),
             ("matmul", (9, 6), 1, 6), ("matmul", (6, 9), 0, 6),
             ("depthwise", (3, 3, 4, 2), 3, 8), ("transposed", (5, 5, 4, 3), 2, 4),
             ("conv", (2, 2, 2, 3, 5), 4, 5)]
    for kind, shape, axis, ch in cases:
        for dt in (np.float32, np.float64, np.float16):
            w = (rng.standard_normal(shape) * np.exp(rng.uniform(-100, 5, shape))).astype(dt)
            w.flat[::5] = -0.0
            s = rng.standard_normal(ch) * np.exp(rng.uniform(-40, 2, ch))
            core = fc._Core(kind, w, axis, len(shape), -1, ch)
            got = fc._scaled_weight(core, s)
            if kind == "depthwise":
                full = s.reshape(shape[2], shape[3])
            else:
                full = s.reshape([ch if i == axis else 1 for i in range(len(shape))])
            out = np.float32 if dt == np.float16 else dt
            want = (w.astype(np.float64) * full).astype(out)
            want[np.abs(want) < np.finfo(out).tiny] = 0
            assert got.dtype == out and not got.flags.writeable
            assert got.tobytes() == want.tobytes(), (kind, shape, dt)
            assert (np.signbit(got) == (got < 0)).all()  # (no -0: flushed to +0)
            bad = w.copy()
            bad.flat[3] = np.inf
            assert fc._scaled_weight(fc._Core(kind, bad, axis, len(shape), -1, ch), s) is None
            twos = np.full(shape, 2, dt)  # (times the largest float64: past any range)
            assert fc._scaled_weight(fc._Core(kind, twos, axis, len(shape), -1, ch),
                                     np.full(ch, np.finfo(np.float64).max)) is None


def _derived_model(tmp_path):
    """A saved and loaded model (its constants read-only views of the file) with a 3x3
    convolution that takes Winograd's form and a batch norm to fold, then a 1x1 expansion
    with its bias in the product."""
    from graphs import model_of

    c = 128
    nodes = [placeholder("x", "float32", [None, 32, 32, c]),
             const("w", _r(3, 3, c, c)), const("s", _r(c, lo=0.5, hi=2)), const("t", _r(c)),
             const("w2", _r(1, 1, c, 4 * c)), const("b2", _r(4 * c)),
             _conv("conv", "x", "w"), _bin("bn_mul", "Mul", "conv", "s"),
             _bin("bn_add", "AddV2", "bn_mul", "t"), _un("relu", "Relu", "bn_add"),
             _conv("expand", "relu", "w2"), _bin("bias", "BiasAdd", "expand", "b2"),
             _un("out", "Relu6", "bias")]
    path = tmp_path / "m.tfd"
    model_of(nodes, ["x"], ["out"]).save(str(path))
    return td.load(str(path))


def test_plans_of_every_shape_share_what_they_derive_from_constants(tmp_path, monkeypatch):
    """The plan of each input shape folds, joins and transforms the model's read-only
    constants once for all of them: the folded filter, its Winograd form, the 1x1 filter
    with its bias row are the same arrays in every plan; a shape's trace (run once, unfused)
    computes no Winograd form; all of it goes with the model."""
    import gc

    from tfdeploy.kernels.nn import winograd
    from tfdeploy.runtime import constants

    made = []
    real = winograd.weights
    monkeypatch.setattr(winograd, "weights", lambda w: made.append(w.shape) or real(w))
    gc.collect()
    before = set(constants._DERIVED)
    m = _derived_model(tmp_path)
    xs = [_r(n, 32, 32, 128) for n in (1, 2, 3)]
    outs = [m(x) for x in xs for _ in range(2)]
    assert made == [(3, 3, 128, 128)]  # (one transform: not per plan, none for the traces)
    plans = [m.plan(x) for x in xs]
    chains = [[st for st in p.steps if st.op == "_FusedChain"] for p in plans]
    assert all(len(c) == 2 for c in chains)
    for k in range(2):
        assert chains[0][k].attrs["weight"] is chains[1][k].attrs["weight"] is \
            chains[2][k].attrs["weight"]
    assert made == [(3, 3, 128, 128)]
    # the same values as the unfused plan's
    plain = m.plan(optimize=False)
    for x, got in zip(xs, outs[::2]):
        want = plain(x)[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    ours = set(constants._DERIVED) - before
    assert ours
    del m, plans, chains, plain
    gc.collect()
    assert not ours & set(constants._DERIVED)  # (gone with the model's constants)


def test_derived_values_kept_for_immutable_arrays_only():
    """``derived`` makes a value once per (array, key) for an array nothing can write, and
    every time for one that can change (or views memory that can): a cached fold of a
    writeable weight would outlive a change to it."""
    import gc

    from tfdeploy.runtime import constants

    calls = []

    def make(tag):
        return lambda: calls.append(tag) or object()

    w = np.arange(6.0)
    first = constants.derived(w, "k", make("w"))
    assert constants.derived(w, "k", make("w")) is not first and calls == ["w", "w"]
    view = w[::2]
    view.setflags(write=False)  # (read-only, but its base is not)
    constants.derived(view, "k", make("view"))
    constants.derived(view, "k", make("view"))
    assert calls.count("view") == 2
    c = w.copy()
    c.setflags(write=False)
    kept = constants.derived(c, "k", make("c"))
    assert constants.derived(c, "k", make("c")) is kept and calls.count("c") == 1
    assert constants.derived(c, "other", make("c")) is not kept and calls.count("c") == 2
    ident = id(c)
    assert ident in constants._DERIVED
    del c, kept
    gc.collect()
    assert ident not in constants._DERIVED


def test_derived_entry_dies_quietly_after_the_module(monkeypatch):
    """An array dying after the module's globals are gone (at interpreter exit, where
    pytest's workers printed "Exception ignored ... 'NoneType' object has no attribute 'pop'"
    for each) still drops its entry, without an error; an entry since taken by a newer
    array of the same id is not dropped by the older array's death."""
    import gc
    import sys

    from tfdeploy.runtime import constants

    raised = []
    monkeypatch.setattr(sys, "unraisablehook", raised.append)
    a = np.arange(4.0)
    a.setflags(write=False)
    constants.derived(a, "k", object)
    ident, table = id(a), constants._DERIVED
    monkeypatch.setattr(constants, "_DERIVED", None)  # (as at exit)
    del a
    gc.collect()
    assert not raised and ident not in table
    b = np.arange(4.0)
    b.setflags(write=False)
    ref = weakref.ref(b)
    table[id(b)] = (ref, {})  # (b's entry, as derived makes it) ...
    constants._forget(id(b), weakref.ref(b, print))  # ... and an older ref of that id dying
    assert table.pop(id(b))[0] is ref


@pytest.mark.tf
def test_converted_model_shares_derived_weights_across_shapes():
    """A model converted in the process has read-only constants, as a loaded one: the plans
    of its input shapes share their folded filters, and give TF's results."""
    k = _keras("keras3")
    k.utils.set_random_seed(0)
    model = _resnet_like(k)
    _randomize_bn(model)
    m = td.convert(model)
    consts = [n.attrs["value"] for n in m.default_graph.nodes
              if n.op == "Const" and isinstance(n.attrs.get("value"), np.ndarray)]
    assert consts and not any(c.flags.writeable for c in consts)
    xs = [np.random.default_rng(n).standard_normal((n, 24, 24, 3)).astype(np.float32)
          for n in (1, 2)]
    for x in xs:
        m(x)
        got = m(x)
        want = np.asarray(model(x, training=False))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
    weights = [[st.attrs["weight"] for st in m.plan(x).steps if st.op == "_FusedChain"]
               for x in xs]
    assert weights[0] and len(weights[0]) == len(weights[1])
    assert all(a is b for a, b in zip(*weights))


@pytest.mark.parametrize("op", ["Conv2D", "DepthwiseConv2dNative"])
def test_pad_folds_through_a_1d_convs_expand_dims(op):
    """A causal Conv1D's Pad of [N, W, C] before the ExpandDims at axis 1: folded into the
    convolution's EXPLICIT padding, the ExpandDims reading the Pad's input (and recording
    its shape)."""
    ws = (1, 3, 4, 5) if op == "Conv2D" else (1, 3, 4, 1)
    nodes = [placeholder("x"), const("w", _r(*ws)), const("dim", np.int32(1))]
    nodes += _pad("pad", "x", [[0, 0], [2, 0], [0, 0]])
    nodes += [Node("ed", "ExpandDims", ["pad", "dim"], {"T": "float32"}),
              _conv("conv", "ed", "w", padding="VALID", op=op)]
    g = Graph(nodes, [TensorSpec("x", "x:0", "float32")], [TensorSpec("conv", "conv:0",
                                                                       "float32")])
    plain = compile_plan(g, ["conv:0"], ["x:0"], optimize=False)
    opt = compile_plan(g, ["conv:0"], ["x:0"], passes=["pad_into_conv"], verify=True)
    assert [st.op for st in opt.steps] == ["ExpandDims", op]
    assert opt.steps[1].attrs["explicit_paddings"] == [0, 0, 0, 0, 2, 0, 0, 0]
    x = _r(2, 9, 4)
    np.testing.assert_allclose(opt(x)[0], plain(x)[0], rtol=1e-6, atol=1e-6)
    # padded along the channels, or an ExpandDims elsewhere: left alone
    for pairs, dim in (([[0, 0], [2, 0], [0, 1]], 1), ([[0, 0], [2, 0], [0, 0]], 2)):
        nodes[2] = const("dim", np.int32(dim))
        nodes[3:5] = _pad("pad", "x", pairs)
        g = Graph(nodes, g.inputs, g.outputs)
        opt = compile_plan(g, ["conv:0"], ["x:0"], passes=["pad_into_conv"], verify=True)
        assert [st.op for st in opt.steps][0] == "Pad"
