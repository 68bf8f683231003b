"""The transformer passes (simplify, fuse_norm, fuse_gelu, fuse_attention, and GELU in the
matmul epilogue): each fused plan against the unfused one and against TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

import tfdeploy as td
from graphs import Node, const, model_of, placeholder

RNG = np.random.default_rng(0)

#: the passes these tests are about (and their names in fused step labels)
FUSED = ("_LayerNorm", "_Gelu", "_Attention", "_FusedChain")


def _labels(plan) -> list[str]:
    return [st.op for st in plan.steps]


def _check_plans(m, *xs, expect=(), rtol=2e-5):
    """The specialized, fused plan gives what the unfused one does; ``expect``: fused ops that
    must appear."""
    fused = m.plan(*xs)
    plain = m.plan(*xs, optimize=False)
    got, want = fused.run(xs), plain.run(xs)
    for g, w in zip(got, want):
        scale = max(float(np.max(np.abs(w))), 1e-6)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * scale)
    ops = _labels(fused)
    for e in expect:
        assert e in ops, f"{e} not in {ops}"
    assert not any(op in FUSED for op in _labels(plain))
    return fused


# --- hand-built graphs (no TensorFlow) -----------------------------------------------------

def _rms_model(gamma=True):
    nodes = [placeholder("x", "float32", [None, 5, 8]),
             Node("sq", "Square", ["x"], {"T": "float32"}),
             const("axes", np.array([-1], np.int32)),
             Node("ms", "Mean", ["sq", "axes"], {"T": "float32", "keep_dims": True}),
             const("eps", np.float32(1e-6)),
             Node("add", "AddV2", ["ms", "eps"], {"T": "float32"}),
             Node("r", "Rsqrt", ["add"], {"T": "float32"}),
             Node("n", "Mul", ["x", "r"], {"T": "float32"})]
    out = "n"
    if gamma:
        nodes += [const("g", RNG.uniform(0.5, 2, 8).astype(np.float32)),
                  Node("y", "Mul", ["n", "g"], {"T": "float32"})]
        out = "y"
    return model_of(nodes, ["x"], [out])


@pytest.mark.parametrize("gamma", [True, False])
def test_rms_norm(gamma):
    m = _rms_model(gamma)
    x = RNG.standard_normal((3, 5, 8)).astype(np.float32)
    plan = _check_plans(m, x, expect=["_LayerNorm"])
    assert len(plan.steps) == 1
    want = x / np.sqrt(np.mean(x * x, -1, keepdims=True) + 1e-6)
    if gamma:
        want = want * m.default_graph.node("g").attrs["value"]
    np.testing.assert_allclose(m(x), want, rtol=1e-5, atol=1e-6)


def _gelu_erf_model():
    c = np.float32(0.7071067811865476)
    nodes = [placeholder("x", "float32", [None, 6]), const("half", np.float32(0.5)),
             const("c", c), const("one", np.float32(1)),
             Node("h", "Mul", ["half", "x"], {"T": "float32"}),
             Node("s", "Mul", ["x", "c"], {"T": "float32"}),
             Node("e", "Erf", ["s"], {"T": "float32"}),
             Node("a", "AddV2", ["one", "e"], {"T": "float32"}),
             Node("y", "Mul", ["h", "a"], {"T": "float32"})]
    return model_of(nodes, ["x"], ["y"])


def _gelu_erf_model_of(dtype, c):
    t = {"T": dtype}
    nodes = [placeholder("x", dtype, [None, 6]), const("half", np.asarray(0.5, dtype)),
             const("c", np.asarray(c, dtype)), const("one", np.asarray(1, dtype)),
             Node("h", "Mul", ["half", "x"], t), Node("s", "Mul", ["x", "c"], t),
             Node("e", "Erf", ["s"], t), Node("a", "AddV2", ["one", "e"], t),
             Node("y", "Mul", ["h", "a"], t)]
    return model_of(nodes, ["x"], ["y"])


def test_gelu_constants_rounded_to_float16_only_in_float16():
    """A float16 GELU's 1/sqrt 2 is 0.70703125 (rounded to float16): fused. The same value in
    a float32 graph is another function: not fused."""
    x16 = (RNG.standard_normal((4, 6)) * 3).astype(np.float16)
    m16 = _gelu_erf_model_of("float16", np.float16(0.7071067811865476))
    assert "_Gelu" in _labels(m16.plan(x16))
    np.testing.assert_allclose(m16(x16).astype(np.float32),
                               m16.plan(x16, optimize=False).run((x16,))[0].astype(np.float32),
                               rtol=4e-3, atol=4e-3)
    m32 = _gelu_erf_model_of("float32", np.float32(np.float16(0.7071067811865476)))
    x32 = x16.astype(np.float32)
    assert "_Gelu" not in _labels(m32.plan(x32))
    assert "_Gelu" in _labels(_gelu_erf_model_of("float32", 0.7071067811865476).plan(x32))


def test_gelu_erf_form_is_fused_and_exact():
    m = _gelu_erf_model()
    x = RNG.standard_normal((4, 6)).astype(np.float32) * 3
    plan = _check_plans(m, x, expect=["_Gelu"], rtol=0)  # the same operations: bit-exact
    assert plan.steps[0].attrs["approximate"] == "erf"


def test_a_users_kernel_stops_the_fusion():
    from test_compiler import restore_op  # noqa: F401  (the fixture's machinery)
    from tfdeploy import registry

    d = registry.get_opdef("Rsqrt")
    saved = (dict(d.impls), set(d.builtin), dict(d.specializers), d.preferred)
    try:
        class Rsqrt(td.Operation):
            def func(x):
                return 1 / np.sqrt(x),

        m = _rms_model()
        x = RNG.standard_normal((2, 5, 8)).astype(np.float32)
        ops = _labels(m.plan(x))
        assert "_LayerNorm" not in ops and "Rsqrt" in ops
    finally:
        d = registry._REGISTRY.get("Rsqrt") or registry.register(
            "Rsqrt", saved[0]["numpy"], builtin=True)
        d.impls, d.builtin, d.specializers, d.preferred = saved


def test_an_intermediate_that_is_fetched_is_not_swallowed():
    m = _rms_model()
    x = RNG.standard_normal((2, 5, 8)).astype(np.float32)
    r, y = m.eval(["r", "y"], {"x": x})
    want_r = 1 / np.sqrt(np.mean(x * x, -1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(r, want_r, rtol=1e-6)
    np.testing.assert_allclose(y, x * want_r * m.default_graph.node("g").attrs["value"],
                               rtol=1e-5)


# --- Keras models against TensorFlow ---------------------------------------------------------

def _rotary_model(sin_width=None, upper_first=True):
    """q * cos + concat(-q[..., 8:], q[..., :8]) * sin over a [B, heads, T, 16] input, as
    Keras writes rotate_half (``sin_width``: the sin table's last axis, 16 unless given)."""
    cos = RNG.uniform(-1, 1, (6, 16)).astype(np.float32)
    sin = RNG.uniform(-1, 1, (6, sin_width or 16)).astype(np.float32)
    i32 = np.int32
    up = [const("ub", np.array([0, 8], i32)), const("ue", np.array([0, 0], i32)),
          const("us", np.array([1, 1], i32)),
          Node("upper", "StridedSlice", ["x", "ub", "ue", "us"],
               {"T": "float32", "Index": "int32", "begin_mask": 0, "end_mask": 2,
                "ellipsis_mask": 1, "new_axis_mask": 0, "shrink_axis_mask": 0})]
    lo = [const("lb", np.array([0, 0], i32)), const("le", np.array([0, 8], i32)),
          const("ls", np.array([1, 1], i32)),
          Node("lower", "StridedSlice", ["x", "lb", "le", "ls"],
               {"T": "float32", "Index": "int32", "begin_mask": 2, "end_mask": 0,
                "ellipsis_mask": 1, "new_axis_mask": 0, "shrink_axis_mask": 0})]
    nodes = [placeholder("x", "float32", None), const("cos", cos), const("sin", sin),
             const("axis", np.int32(-1)),
             Node("mc", "Mul", ["x", "cos"], {"T": "float32"}), *up, *lo,
             Node("neg", "Neg", ["upper"], {"T": "float32"}),
             Node("cat", "ConcatV2", ["neg", "lower", "axis"] if upper_first else
                  ["lower", "neg", "axis"], {"T": "float32", "N": 2, "Tidx": "int32"}),
             Node("ms", "Mul", ["sin", "cat"], {"T": "float32"}),
             Node("y", "AddV2", ["ms", "mc"], {"T": "float32"})]
    return model_of(nodes, ["x"], ["y"])


def test_rotary_embedding_is_one_step_and_exact():
    """x * cos + rotate_half(x) * sin is one ``_Rotary`` step: the unfused plan's values bit
    for bit (contiguous, a transposed view, inf and NaN, a sin table of width 1); an input the
    tables do not fit runs the unfused steps, and their error; the other concatenation order
    (not rotate_half) is not fused."""
    m = _rotary_model()
    x = RNG.standard_normal((2, 3, 6, 16)).astype(np.float32)
    fused, plain = m.plan(x), m.plan(x, optimize=False)
    assert _labels(fused) == ["_Rotary"]
    odd = x.copy()
    odd[0, 0, 0, [1, 9]] = [np.inf, np.nan]
    view = RNG.standard_normal((2, 6, 3, 16)).astype(np.float32).transpose(0, 2, 1, 3)
    for a in (x, odd, view, x[:1]):
        with np.errstate(invalid="ignore"):
            np.testing.assert_array_equal(fused.run((a,))[0], plain.run((a,))[0])
    with pytest.raises(td.errors.ExecutionError):  # (the last axis is not 16)
        fused.run((RNG.standard_normal((2, 3, 6, 18)).astype(np.float32),))
    narrow = _rotary_model(sin_width=1)
    f, p = narrow.plan(x), narrow.plan(x, optimize=False)
    assert _labels(f) == ["_Rotary"]
    np.testing.assert_array_equal(f.run((x,))[0], p.run((x,))[0])
    assert "_Rotary" not in _labels(_rotary_model(upper_first=False).plan(x))


def _keras():
    pytest.importorskip("tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    return keras


def _against_tf(model, x, expect, rtol=1e-5):
    want = np.asarray(model(x, training=False))
    m = td.convert(model)
    _check_plans(m, x, expect=expect)
    got = m(x)
    scale = float(np.max(np.abs(want)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


@pytest.mark.tf
@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False),
                                           (False, False)])
def test_keras_layer_normalization(center, scale):
    keras = _keras()
    L = keras.layers
    inp = keras.Input((7, 12))
    ln = L.LayerNormalization(center=center, scale=scale, epsilon=1e-4)
    model = keras.Model(inp, ln(L.Dense(12)(inp)))
    if center or scale:
        ln.set_weights([RNG.uniform(0.5, 2, w.shape).astype(np.float32)
                        for w in ln.get_weights()])
    _against_tf(model, RNG.standard_normal((3, 7, 12)).astype(np.float32), ["_LayerNorm"])


@pytest.mark.tf
@pytest.mark.parametrize("approximate", [False, True])
def test_keras_dense_gelu(approximate):
    keras = _keras()
    inp = keras.Input((5, 16))
    out = keras.layers.Dense(32, activation=lambda t: keras.activations.gelu(
        t, approximate=approximate))(inp)
    _against_tf(keras.Model(inp, out), RNG.standard_normal((2, 5, 16)).astype(np.float32),
                ["_FusedChain"])


@pytest.mark.tf
@pytest.mark.parametrize("flavour", ["keras", "tf_keras"])
@pytest.mark.parametrize("causal", [False, True])
def test_keras_multi_head_attention(causal, flavour):
    """Keras 3's and tf_keras' MultiHeadAttention: one projection product (tf_keras' EinsumDense
    einsums made products), one _Attention step (tf_keras' scores einsum keys first, its query
    scaled before it), no Einsum left; both read the product packed (no SplitV, no head
    Reshape; tf_keras' query scale a ``q_scale``)."""
    k = _keras() if flavour == "keras" else pytest.importorskip("tf_keras")
    inp = k.Input((9, 24))
    att = k.layers.MultiHeadAttention(num_heads=3, key_dim=8, value_dim=6)
    model = k.Model(inp, att(inp, inp, use_causal_mask=causal))
    # non-zero biases (Keras starts them at zero), so the fused projection's bias counts
    att.set_weights([RNG.standard_normal(w.shape).astype(np.float32) * (0.3 if w.ndim > 1
                                                                        else 1.0)
                     for w in att.get_weights()])
    x = RNG.standard_normal((2, 9, 24)).astype(np.float32)
    _against_tf(model, x, ["_Attention"])
    plan = td.convert(model).plan(x)
    ops = _labels(plan)
    assert not {"Einsum", "SplitV", "Reshape", "Mul"} & set(ops), ops
    (att,) = [st for st in plan.steps if st.op == "_Attention"]
    assert "packed" in att.attrs and ("q_scale" in att.attrs) == (flavour == "tf_keras")


def _einsum_model(equation, x_shape, w_shape):
    w = RNG.standard_normal(w_shape).astype(np.float32)
    nodes = [placeholder("x", "float32", [None, *x_shape[1:]]), const("w", w),
             Node("y", "Einsum", ["x", "w"], {"T": "float32", "equation": equation, "N": 2})]
    return model_of(nodes, ["x"], ["y"]), w


@pytest.mark.parametrize("equation, x_shape, w_shape, dense", [
    ("abc,cde->abde", (2, 5, 6), (6, 3, 4), True),
    ("abcd,cde->abe", (2, 5, 3, 4), (3, 4, 7), True),
    ("abc,cd->abd", (2, 5, 6), (6, 7), True),
    ("ab,bcd->acd", (3, 6), (6, 2, 5), True),
    ("abc,dce->abde", (2, 5, 6), (3, 6, 4), False),   # (contracted axis not leading in w)
    ("abc,cde->adbe", (2, 5, 6), (6, 3, 4), False),   # (output axes reordered)
    ("abc,bcd->ad", (2, 5, 6), (5, 6, 4), True),      # (two axes contracted)
    ("abc,abd->cd", (2, 5, 6), (2, 5, 4), False)])    # (contracting x's leading axes)
def test_einsum_dense_becomes_a_product(equation, x_shape, w_shape, dense):
    m, w = _einsum_model(equation, x_shape, w_shape)
    x = RNG.standard_normal(x_shape).astype(np.float32)
    fused, plain = m.plan(x), m.plan(x, optimize=False)
    ops = _labels(fused)
    assert ("Einsum" not in ops) == dense, ops
    want = np.einsum(equation, x.astype(np.float64), w.astype(np.float64))
    for got in (fused.run((x,))[0], plain.run((x,))[0], m(x)):
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.tf
def test_tf_gelu_erf_and_tensordot():
    tf = pytest.importorskip("tensorflow")
    w = RNG.standard_normal((16, 8)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, 4, 16], tf.float32)])
    def f(x):
        h = tf.tensordot(x, w, axes=[[2], [0]])
        return 0.5 * h * (1.0 + tf.math.erf(h / np.sqrt(2.0).astype(np.float32)))

    x = RNG.standard_normal((3, 4, 16)).astype(np.float32)
    m = td.convert(f)
    plan = _check_plans(m, x)
    assert "MatMul" not in _labels(plan) and "Reshape" not in _labels(plan)
    np.testing.assert_allclose(m(x), f(x).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.tf
@pytest.mark.parametrize("grouped", [False, True])
def test_hand_written_attention_with_matmuls(grouped):
    """softmax(q k^T / sqrt(d) + causal mask) v written with matmuls, grouped-query heads."""
    tf = pytest.importorskip("tensorflow")
    kv_heads = 1 if grouped else 2

    @tf.function(input_signature=[tf.TensorSpec([None, 2, 6, 8], tf.float32),
                                  tf.TensorSpec([None, kv_heads, 6, 8], tf.float32),
                                  tf.TensorSpec([None, kv_heads, 6, 8], tf.float32)])
    def f(q, k, v):
        if grouped:
            q = tf.reshape(q, [-1, 1, 2, 6, 8])
            k, v = k[:, :, None], v[:, :, None]
        s = tf.matmul(q, k, transpose_b=True) / np.float32(np.sqrt(8))
        causal = tf.linalg.band_part(tf.ones([6, 6]), -1, 0)
        s = s + (1.0 - causal) * -1e9
        return tf.matmul(tf.nn.softmax(s), v)

    rng = np.random.default_rng(5)
    q = rng.standard_normal((3, 2, 6, 8)).astype(np.float32)
    k, v = (rng.standard_normal((3, kv_heads, 6, 8)).astype(np.float32) for _ in range(2))
    m = td.convert(f, check_data=False)
    _check_plans(m, q, k, v, expect=["_Attention"])
    np.testing.assert_allclose(m(q, k, v), f(q, k, v).numpy(), rtol=1e-5, atol=1e-6)


def test_gelu_erfc_float32_within_one_ulp_of_exact():
    """GELU's erfc form on float32 (``gelu_erfc_``: y Phi(y) in float32 from a table of
    quadratics, Phi rounded once, then the product) is within one ulp of the exactly rounded
    value everywhere, subnormal tails included, and gives the unfused ops' infinities, NaN and
    signed zeros. (It was checked on all 2**32 float32 inputs when written; this pins samples
    and the table's edges.)"""
    import math
    import warnings

    from tfdeploy.kernels.nn.transformer import gelu_

    rng = np.random.default_rng(3)
    y = np.concatenate([rng.standard_normal(20000) * s for s in (1e-3, 1, 3, 6)] +
                       [rng.uniform(-14.5, -9, 20000), rng.uniform(-40, 40, 2000)])
    y = y.astype(np.float32)
    erfc = np.vectorize(math.erfc, otypes=[np.float64])
    yd = y.astype(np.float64)
    exact = (0.5 * yd * erfc(-yd / math.sqrt(2))).astype(np.float32)
    got = gelu_(y.copy(), "erfc")
    assert got.dtype == np.float32
    ulps = np.abs(got.view(np.int32).astype(np.int64) - exact.view(np.int32).astype(np.int64))
    assert ulps.max() <= 1, y[np.argmax(ulps)]
    assert np.count_nonzero(ulps) < 0.3 * y.size  # (two roundings: ~22% one ulp away)
    # blocks: an array larger than one block gives what its pieces give
    big = np.tile(y, 3)
    np.testing.assert_array_equal(gelu_(big.copy(), "erfc"), np.tile(got, 3))
    # every interval's ends, the table's edges (-15: 0 below; 6: y itself from there up) and
    # either side of them, subnormals and huge values; a value's result does not depend on the
    # others beside it
    ends = np.arange(-15 * 1024, 6 * 1024 + 1) / 1024
    edges = np.array([-15, 6, -14.5, -14.4, -13.1, -13, 1e-38, -1e-38, 1e-45, -1e-45, 3e38,
                      -3e38, 2.0 ** 119, 2.0 ** 120, 2.0 ** 121])
    near = np.concatenate([rng.uniform(-6, 6, 5000), ends, edges]).astype(np.float32)
    near = np.concatenate([near, np.nextafter(near, np.float32(np.inf)),
                           np.nextafter(near, np.float32(-np.inf))])
    alone = gelu_(near.copy(), "erfc")
    mixed = gelu_(np.concatenate([near, np.float32([7.5, -30, np.inf, np.nan])]), "erfc")
    np.testing.assert_array_equal(mixed[:near.size], alone)
    # (values from 2**119 up, inf and NaN make the whole array take the product's overflow
    # fix: the other values come out as they do without it)
    small = np.abs(near) < 2.0 ** 119
    np.testing.assert_array_equal(gelu_(near[small].copy(), "erfc"), alone[small])
    with np.errstate(over="ignore"):
        exact = (0.5 * near.astype(np.float64) * erfc(-near.astype(np.float64) / math.sqrt(2))
                 ).astype(np.float32)
    ulps = np.abs(alone.view(np.int32).astype(np.int64) - exact.view(np.int32).astype(np.int64))
    assert ulps.max() <= 1
    special = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 3e38, -3e38, 1e-30, -1e-30],
                       np.float32)
    with warnings.catch_warnings():  # (-inf and -3e38 without +inf or NaN beside them)
        warnings.simplefilter("error")
        low = gelu_(np.float32([-np.inf, -3e38, 2, -1]), "erfc")
        out = gelu_(special.copy(), "erfc")
    assert np.isnan(low[0]) and low[1] == 0 and np.signbit(low[1])
    np.testing.assert_array_equal(low[2:], gelu_(np.float32([2, -1]), "erfc"))
    with np.errstate(all="ignore"):  # the unfused ops: Mul, Erfc, Mul, Mul
        from tfdeploy.kernels.special.erf_gamma import Erfc

        want = special * np.float32(0.5) * Erfc(special * np.float32(-0.7071067811865476))
    np.testing.assert_array_equal(out, want)
    real = ~np.isnan(want)  # (a NaN's sign bit is not part of the result)
    assert np.array_equal(np.signbit(out[real]), np.signbit(want[real]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rms", [False, True])
def test_layer_norm_row_products_match_reductions(dtype, rms):
    """``_LayerNorm`` over the last axis of a contiguous array takes its means as products
    with a column of 1 / n; other layouts reduce. Both agree, with and without gamma/beta,
    from a vector to batches of rows, and on offsets far larger than the spread."""
    from tfdeploy.kernels.nn.transformer import _layer_norm_kernel, _LayerNorm

    for shape in ((7,), (3, 5), (2, 16, 64), (4, 1, 33)):
        n = shape[-1]
        x = (RNG.standard_normal(shape) * 3 + 100).astype(dtype)
        gamma, beta = RNG.uniform(0.5, 2, n).astype(dtype), RNG.standard_normal(n).astype(dtype)
        kw = {"epsilon": 1e-3, "gamma": gamma, "rms": rms}
        if not rms:
            kw["beta"] = beta
        fast = _LayerNorm(x, **kw)
        slow = _LayerNorm(np.asfortranarray(x), **kw)  # (not C-contiguous: the reductions)
        assert fast.shape == slow.shape == shape and fast.dtype == slow.dtype == dtype
        xd = x.astype(np.float64)
        centred = xd if rms else xd - xd.mean(-1, keepdims=True)
        want = centred / np.sqrt((centred ** 2).mean(-1, keepdims=True) + 1e-3) * gamma
        if not rms:
            want += beta
        # (float32: the offset costs ~offset / spread * eps in the centred values, either way)
        tol = 5e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(fast, want, rtol=tol, atol=tol)
        np.testing.assert_allclose(slow, want, rtol=tol, atol=tol)
        # a node's kernel (gamma and beta repeated to the shape, the column kept per shape):
        # the same values, twice, and the reductions' on another layout; x left as it was
        node, x0 = _layer_norm_kernel(**kw), x.copy()
        for _ in range(2):
            np.testing.assert_array_equal(node(x), fast)
        np.testing.assert_array_equal(node(np.asfortranarray(x)), slow)
        np.testing.assert_array_equal(x, x0)
    empty = np.zeros((0, 4), dtype)
    assert _LayerNorm(empty, epsilon=1e-3).shape == (0, 4)
    assert _layer_norm_kernel(epsilon=1e-3)(empty).shape == (0, 4)
    with pytest.raises(TypeError, match="expected float32/float64, got float16"):
        _layer_norm_kernel(epsilon=1e-3)(np.ones((2, 4), np.float16))


@pytest.mark.parametrize("form", ["scale", "divisor", "both", "none", "additive_mask",
                                  "bool_mask_keeps", "bool_mask_drops", "scaled_mask"])
@pytest.mark.parametrize("keys_first", [False, True])
def test_attention_kernel_softmax_down_the_keys(form, keys_first, monkeypatch):
    """``_Attention`` takes its softmax on the scores transposed (keys first): the same as
    the plain computation for every scaling and mask form, a query's result the same
    whatever the batch beside it, and empty scores handled as numpy does; on both its paths
    (scores computed queries first, or keys first from ``KEYS_FIRST`` scores an example)."""
    from tfdeploy.kernels.nn import transformer
    from tfdeploy.kernels.nn.transformer import _Attention

    monkeypatch.setattr(transformer, "KEYS_FIRST", 1 if keys_first else 1 << 40)
    calls = []
    real = transformer._keys_first
    monkeypatch.setattr(transformer, "_keys_first", lambda *a: calls.append(1) or real(*a))

    def ref(q, k, v, scale=None, divisor=None, mask=None, fill=None, keeps=True):
        s = np.einsum("bthd,bshd->bhts", q.astype(np.float64), k.astype(np.float64))
        s = s * (scale if scale is not None else 1) / (divisor if divisor is not None else 1)
        if fill is not None:
            s = np.where(mask if keeps else ~mask, s, fill)
        elif mask is not None:
            s = s + mask
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        return np.einsum("bhts,bshd->bthd", p, v.astype(np.float64))

    perms = {"q_perm": (0, 2, 1, 3), "k_perm": (0, 2, 3, 1), "v_perm": (0, 2, 1, 3),
             "out_perm": (0, 2, 1, 3)}
    b, t, s_, h, d = 3, 5, 7, 2, 4
    q, k, v = (RNG.standard_normal((b, n, h, d)).astype(np.float32) for n in (t, s_, s_))
    causal = np.tril(np.ones((t, s_), bool), k=2)
    kw, rk = {}, {}
    if form in ("scale", "both", "scaled_mask"):
        kw["scale"] = rk["scale"] = np.float32(0.5)
    if form in ("divisor", "both"):
        kw["divisor"] = rk["divisor"] = np.float32(2.0)
    args = ()
    if form in ("additive_mask", "scaled_mask"):
        m = np.where(causal, 0, -1e9).astype(np.float32)
        args, rk["mask"] = (m,), m
    elif form.startswith("bool"):
        keeps = form == "bool_mask_keeps"
        m = causal if keeps else ~causal
        args = (m,)
        kw.update(masked_fill=-1e9, mask_keeps=keeps)
        rk.update(mask=m, fill=-1e9, keeps=keeps)
    got = _Attention(q, k, v, *args, **perms, **kw)
    assert got.shape == (b, t, h, d) and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, ref(q, k, v, **rk), rtol=1e-5, atol=1e-6)
    if args:  # a constant (read-only) mask: its transposed form made once, the same values
        frozen = args[0].copy()
        frozen.setflags(write=False)
        for _ in range(2):
            np.testing.assert_array_equal(_Attention(q, k, v, frozen, **perms, **kw), got)
    # one query's result does not depend on the batch beside it
    one = _Attention(q[1:2], k[1:2], v[1:2], *args, **perms, **kw)
    np.testing.assert_array_equal(one, got[1:2])
    assert bool(calls) == keys_first
    # no keys: numpy's error, as the plain computation; no queries: an empty result
    empty = _Attention(q[:, :0], k, v, **perms, **kw)
    assert empty.shape == (b, 0, h, d)
    if form == "none":
        with pytest.raises(ValueError):
            _Attention(q, k[:, :0], v[:, :0], **perms)


@pytest.mark.parametrize("form", ["none", "additive_mask", "constant_mask", "bool_mask",
                                  "constant_bool_mask"])
@pytest.mark.parametrize("shared_kv", [False, True])
def test_attention_splits_its_heads_over_threads(form, shared_kv, split_everything,
                                                 monkeypatch):
    """Keys first, with threads to spare, the longest leading axis (heads here) splits into
    blocks over them: the same bits as on one thread, keys and values shared by the heads
    (grouped-query attention: their head axis of 1, taken whole) and masks of every kind."""
    from tfdeploy.kernels.nn import transformer
    from tfdeploy.runtime import threads

    monkeypatch.setattr(transformer, "KEYS_FIRST", 1)
    perms = {"q_perm": (0, 2, 1, 3), "k_perm": (0, 2, 3, 1), "v_perm": (0, 2, 1, 3),
             "out_perm": (0, 2, 1, 3)}
    b, t, s_, h, d = 2, 5, 7, 6, 4
    q = RNG.standard_normal((b, t, h, d)).astype(np.float32)
    k, v = (RNG.standard_normal((b, s_, 1 if shared_kv else h, d)).astype(np.float32)
            for _ in range(2))
    causal = np.tril(np.ones((t, s_), bool), k=2)
    kw, args = {"scale": np.float32(0.5)}, ()
    if form in ("additive_mask", "constant_mask"):
        args = (np.where(causal, 0, -1e9).astype(np.float32),)
    elif form in ("bool_mask", "constant_bool_mask"):
        args = (causal,)
        kw.update(masked_fill=-1e9, mask_keeps=True)
    if form.startswith("constant"):
        args[0].setflags(write=False)
    monkeypatch.setitem(threads._state, "threads", 1)
    want = transformer._Attention(q, k, v, *args, **perms, **kw)
    monkeypatch.setitem(threads._state, "threads", 4)
    for _ in range(2):  # (a constant mask: its transposed form made, then kept)
        split_everything.clear()
        got = transformer._Attention(q, k, v, *args, **perms, **kw)
        assert (h, 4) in split_everything
        assert got.shape == want.shape and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("masked", [False, True])
def test_attention_in_float16_computes_in_float32(masked):
    """A float16 ``_Attention`` (hand-written attention of a mixed_float16 model, fused in
    float16) is its float32 result rounded once to float16, masks and scales included."""
    from tfdeploy.kernels.nn.transformer import _Attention

    rng = np.random.default_rng(8)
    q, k, v = (rng.standard_normal((2, 5, 3, 4)).astype(np.float16) for _ in range(3))
    kw = dict(q_perm=[0, 2, 1, 3], k_perm=[0, 2, 3, 1], v_perm=[0, 2, 1, 3],
              out_perm=[0, 2, 1, 3], scale=np.float16(0.5))
    mask = ()
    if masked:
        mask = (np.tril(np.ones((5, 5), bool)),)
        kw.update(masked_fill=np.float16(-65504), mask_keeps=True)
    got = _Attention(q, k, v, *mask, **kw)
    f32 = [a.astype(np.float32) for a in (q, k, v)]
    kw32 = dict(kw, scale=np.float32(0.5))
    if masked:
        kw32["masked_fill"] = np.float32(-65504)
    want = _Attention(*f32, *mask, **kw32).astype(np.float16)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_attention_kernel_paths_match_the_function(dtype):
    """The ``_Attention`` kernel (its plain path decided once per input shapes) gives
    ``_Attention``'s values bit for bit: without and with a mask, for two batch sizes in turn
    (its memo per shapes), float16 through the function's float32 computation; with q, k and
    v packed in one input (in any order of its columns, parts of one size or not, the query
    scaled or not) and the heads merged after it, the same values."""
    from tfdeploy.kernels.nn.transformer import _Attention, _attention_kernel

    perms = {"q_perm": [0, 2, 1, 3], "k_perm": [0, 2, 3, 1], "v_perm": [0, 2, 1, 3],
             "out_perm": [0, 2, 1, 3]}
    kw = dict(perms, scale=np.asarray(0.25, dtype))
    kernel = _attention_kernel(**kw)
    rng = np.random.default_rng(3)
    for b in (1, 3, 1):
        q, k, v = (rng.standard_normal((b, 6, 2, 4)).astype(dtype) for _ in range(3))
        mask = np.where(np.tril(np.ones((6, 6), bool)), 0, -1e4).astype(dtype)
        for extra in ((), (mask,)):
            want = _Attention(q, k, v, *extra, **kw)
            got = kernel(q, k, v, *extra)
            assert got.dtype == dtype and got.shape == (b, 6, 2, 4)
            np.testing.assert_array_equal(got, want)
        # packed: columns [k | v | q] (v_width 4) or [q | k | v] with v 2 heads x 3 wide
        for order, vw in (("kvq", 4), ("qkv", 3)):
            vv = rng.standard_normal((b, 6, 2, vw)).astype(dtype)
            parts = {"q": q, "k": k, "v": vv}
            x = np.concatenate([parts[r].reshape(b, 6, -1) for r in order], axis=-1)
            starts = np.cumsum([0] + [parts[r][0, 0].size for r in order])
            bounds = {r: [int(starts[i]), int(starts[i + 1])] for i, r in enumerate(order)}
            packed = [[*bounds[r], *parts[r].shape[-2:]] for r in "qkv"]
            pk = _attention_kernel(**kw, packed=packed, merge=True)
            want = _Attention(q, k, vv, **kw).reshape(b, 6, 2 * vw)
            np.testing.assert_array_equal(pk(x), want)
            want = _Attention(q, k, vv, mask, **kw).reshape(b, 6, 2 * vw)
            np.testing.assert_array_equal(pk(x, mask), want)
            # a role scaled (tf_keras' query): the view times its scale, then as before
            s = np.asarray(0.3, dtype)
            pk = _attention_kernel(**kw, packed=packed, merge=True, q_scale=s)
            want = _Attention(q * s, k, vv, **kw).reshape(b, 6, 2 * vw)
            np.testing.assert_array_equal(pk(x), want)


def _self_attention_model(order="qkv", sizes=None, fetch_split=False, query_scale=None):
    """x [B, 5, 8] -> one product to q, k, v (2 heads x 4, columns in ``order``) -> SplitV
    (``sizes``: its size_splits) -> reshapes to heads -> Keras 3's einsums, scale and softmax
    -> the heads merged by a Reshape. ``query_scale``: "before" or "after": the query's
    reshape multiplied by a constant (tf_keras), the constant the Mul's first or second
    operand."""
    w = RNG.standard_normal((8, 24)).astype(np.float32)
    i32 = np.int32
    nodes = [placeholder("x", "float32", [None, 5, 8]), const("w", w),
             Node("p", "BatchMatMulV2", ["x", "w"], {"T": "float32"}),
             const("sizes", np.array(sizes or [8, 8, 8], i32)), const("ax", i32(-1)),
             Node("sp", "SplitV", ["p", "sizes", "ax"],
                  {"T": "float32", "num_split": 3, "Tlen": "int32"}),
             const("heads", np.array([-1, 5, 2, 4], i32))]
    for i, r in enumerate(order):
        name = "q_heads" if r == "q" and query_scale else r
        nodes.append(Node(name, "Reshape", [f"sp:{i}" if i else "sp", "heads"],
                          {"T": "float32", "Tshape": "int32"}))
    if query_scale:
        nodes += [const("qs", np.float32(0.3)),
                  Node("q", "Mul", ["qs", "q_heads"] if query_scale == "before" else
                       ["q_heads", "qs"], {"T": "float32"})]
    nodes += [Node("s", "Einsum", ["q", "k"], {"T": "float32", "N": 2,
                                                "equation": "BTNH,BSNH->BNTS"}),
              const("scale", np.float32(0.5)),
              Node("ss", "Mul", ["s", "scale"], {"T": "float32"}),
              Node("p_", "Softmax", ["ss"], {"T": "float32"}),
              Node("o", "Einsum", ["p_", "v"], {"T": "float32", "N": 2,
                                                 "equation": "BNTS,BSNH->BTNH"}),
              const("merged", np.array([-1, 5, 8], i32)),
              Node("y", "Reshape", ["o", "merged"], {"T": "float32", "Tshape": "int32"})]
    return model_of(nodes, ["x"], ["y", "sp"] if fetch_split else ["y"])


@pytest.mark.parametrize("order, sizes, fetch_split, query_scale", [
    ("qkv", None, False, None), ("vqk", [8, -1, 8], False, None), ("kqv", None, True, None),
    ("kqv", None, False, "before"), ("qkv", None, False, "after")])
def test_self_attention_reads_its_projection_packed(order, sizes, fetch_split, query_scale):
    """A self-attention's SplitV of one product and the head reshapes join the _Attention
    step (its columns per role in the split's order, a -1 size included), the heads' merging
    Reshape too, and a query scaled after its reshape (tf_keras) with its scale; a split
    whose output is fetched stays a step. Against the unfused plan."""
    m = _self_attention_model(order, sizes, fetch_split, query_scale)
    x = RNG.standard_normal((3, 5, 8)).astype(np.float32)
    plan = _check_plans(m, x, expect=["_Attention"])
    (att,) = [st for st in plan.steps if st.op == "_Attention"]
    assert ("packed" in att.attrs) != fetch_split, att.attrs
    ops = _labels(plan)
    assert ("SplitV" in ops) == fetch_split and ops.count("Reshape") == 3 * fetch_split, ops
    if not fetch_split:
        assert att.attrs["packed"] == [[8 * order.index(r), 8 * order.index(r) + 8, 2, 4]
                                       for r in "qkv"] and att.attrs["merge"]
        assert "Mul" not in ops and (float(att.attrs["q_scale"]) == np.float32(0.3)
                                     if query_scale else "q_scale" not in att.attrs)


@pytest.mark.parametrize("by_exp", [True, False])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_gelu_tanh_form_by_tanh_or_exp(monkeypatch, by_exp, dt):
    """GELU's tanh form, 0.5 x (1 + tanh(u)), computed by tanh or as x / (1 + e^-2u), whichever
    numpy computes faster here (``numerics/ufunc_speed.py``): either within a few roundings
    of the exact value (relative to |x|), negative and tiny (or -0) in the far negative tail,
    and the unfused ops' infinities and NaN."""
    from tfdeploy.kernels.nn import transformer

    monkeypatch.setattr(transformer, "cheaper", lambda a, b, dtype: by_exp)
    y = np.concatenate([np.linspace(-30, 30, 6001), [0.0, -1e-30, 1e-30, 1e4, -1e4]]).astype(dt)
    yd = y.astype(np.float64)
    exact = 0.5 * yd * (1 + np.tanh(0.7978845608028654 * (yd + 0.044715 * yd ** 3)))
    got = transformer.gelu_(y.copy(), "tanh")
    assert got.dtype == dt
    eps = np.finfo(dt).eps
    err = np.abs(got.astype(np.float64) - exact)
    assert np.all(err <= 8 * eps * np.abs(yd) + 1e-300), float(np.max(err / np.abs(yd)))
    tail = got[y < -12]  # (-0 in float32; float64's exp form keeps the tiny true value)
    assert np.signbit(tail).all() and np.abs(tail).max() < 1e-30
    special = np.array([np.inf, -np.inf, np.nan], dt)
    with np.errstate(invalid="ignore"):
        want = 0.5 * special * (1 + np.tanh(special))
        np.testing.assert_array_equal(transformer.gelu_(special.copy(), "tanh"), want)
