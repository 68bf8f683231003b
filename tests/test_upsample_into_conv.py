"""upsample_into_conv (``compiler/passes/upsample_into_conv.py``): a nearest upsampling by
whole factors (Keras 3's ExpandDims/Tile/Reshape repeats, or ResizeNearestNeighbor) and the
unit-stride Conv2D reading it become one transposed convolution of the small map in a
specialized plan; the values are the unfused plan's, and TF's for Keras' layers. Also the
transposed convolution's stacked-phases kernel (``conv._transpose_stacked``) against its
phase-by-phase one."""

from __future__ import annotations

import numpy as np
import pytest

import tfdeploy as td
from graphs import const, model_of, placeholder
from tfdeploy.compiler.passes.upsample_into_conv import merged_filter
from tfdeploy.ir.graph import Node
from tfdeploy.kernels.nn import conv as C

RNG = np.random.default_rng(0)
F32 = {"T": "float32"}


def _r(*shape, dtype=np.float32):
    return RNG.uniform(-1, 1, shape).astype(dtype)


def _i(v):
    return np.asarray(v, np.int32)


def _repeat(nodes, src, axis, s, shape, name, spread="Tile"):
    """Keras 3's ``ops.repeat(src, s, axis)`` of a [N, H, W, C] ``shape``; returns the new
    node's name and shape."""
    e = axis + 1
    five = list(shape[:e]) + [s if spread == "BroadcastTo" else 1] + list(shape[e:])
    arg = five if spread == "BroadcastTo" else [1] * 5
    arg[e] = s
    out = list(shape)
    out[axis] *= s
    nodes += [const(f"{name}_e", np.int32(e)), const(f"{name}_m", _i(arg)),
              const(f"{name}_s", _i(out)),
              Node(f"{name}_ed", "ExpandDims", [src, f"{name}_e"], F32),
              Node(f"{name}_t", spread, [f"{name}_ed", f"{name}_m"], F32),
              Node(name, "Reshape", [f"{name}_t", f"{name}_s"], F32)]
    return name, out


def _model(xs, ws, factors, padding="SAME", form="repeat", explicit=None, dtype="float32",
           resize_attrs=None, readers=1, strides=(1, 1, 1, 1), w=None):
    """x -> nearest upsampling by ``factors`` -> Conv2D -> "out" (and "up" fetched too when
    ``readers`` is 2)."""
    np_dt = np.dtype(dtype)
    f32 = {"T": dtype}
    nodes = [placeholder("x", dtype), const("w", _r(*ws, dtype=np_dt) if w is None else w)]
    src, shape = "x", list(xs)
    if form == "resize":
        size = [xs[1] * factors[0], xs[2] * factors[1]] if resize_attrs is None or \
            "size" not in resize_attrs else resize_attrs.pop("size")
        nodes += [const("size", _i(size)),
                  Node("up", "ResizeNearestNeighbor", ["x", "size"],
                       {**f32, **(resize_attrs or {})})]
        src = "up"
    else:
        spread = "BroadcastTo" if form == "broadcast" else "Tile"
        for axis, s in ((1, factors[0]), (2, factors[1])):
            if s > 1:
                src, shape = _repeat(nodes, src, axis, s, shape, f"up{axis}", spread)
                for n in nodes[-6:]:
                    if n.op != "Const":
                        n.attrs["T"] = dtype
        nodes.append(Node("up", "Identity", [src], f32)) if readers == 2 else None
        src = "up" if readers == 2 else src
    attrs = {**f32, "strides": list(strides), "padding": padding, "data_format": "NHWC",
             "dilations": [1, 1, 1, 1]}
    if explicit is not None:
        attrs["explicit_paddings"] = explicit
    nodes.append(Node("out", "Conv2D", [src, "w"], attrs))
    return model_of(nodes, ["x"], ["out", "up"] if readers == 2 else ["out"])


def _ops(plan):
    return [st.attrs.get("core", st.op) for st in plan.steps]


def _check(m, x, rewritten: bool, tol=1e-5):
    plan = m.plan(x)
    plain = m.plan(x, optimize=False)
    for got, want in zip(plan.run((x,)), plain.run((x,))):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    ops = _ops(plan)
    assert ("Conv2DBackpropInput" in ops) == rewritten, plan
    if rewritten:
        assert not {"Tile", "BroadcastTo", "ResizeNearestNeighbor", "Conv2D"} & set(ops), plan
    return plan


CASES = [
    # (id, x, filter, factors, padding, form, explicit_paddings)
    ("3x3_same_2x2", (2, 9, 10, 3), (3, 3, 3, 4), (2, 2), "SAME", "repeat", None),
    ("3x3_valid_2x2", (1, 7, 6, 5), (3, 3, 5, 2), (2, 2), "VALID", "repeat", None),
    ("3x3_same_3x2", (2, 5, 6, 3), (3, 3, 3, 4), (3, 2), "SAME", "repeat", None),
    ("5x5_same_2x2", (1, 6, 7, 2), (5, 5, 2, 3), (2, 2), "SAME", "repeat", None),
    ("1x1_2x2", (2, 5, 4, 6), (1, 1, 6, 3), (2, 2), "SAME", "repeat", None),
    ("2x2_same_2x2", (1, 5, 5, 3), (2, 2, 3, 4), (2, 2), "SAME", "repeat", None),
    ("3x1_rows_only", (2, 6, 5, 3), (3, 1, 3, 4), (2, 1), "SAME", "repeat", None),
    ("1x3_cols_only", (1, 4, 6, 3), (1, 3, 3, 2), (1, 3), "VALID", "repeat", None),
    ("explicit", (1, 6, 6, 3), (3, 3, 3, 4), (2, 2), "EXPLICIT", "repeat",
     [0, 0, 2, 0, 1, 2, 0, 0]),
    ("broadcast", (2, 5, 6, 3), (3, 3, 3, 4), (2, 2), "SAME", "broadcast", None),
    ("resize", (2, 5, 6, 3), (3, 3, 3, 4), (2, 2), "SAME", "resize", None),
    ("resize_4x", (1, 4, 3, 2), (3, 3, 2, 3), (4, 4), "SAME", "resize", None),
    ("one_pixel", (1, 1, 1, 3), (3, 3, 3, 2), (2, 2), "SAME", "repeat", None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_upsampled_convolution_in_one_step(case):
    _, xs, ws, factors, padding, form, explicit = case
    _check(_model(xs, ws, factors, padding, form, explicit), _r(*xs), True)


def test_float64_and_nested_repeats():
    xs = (1, 4, 5, 3)
    _check(_model(xs, (3, 3, 3, 2), (2, 2), dtype="float64"), _r(*xs, dtype=np.float64), True,
           tol=1e-12)
    # repeats of repeats: 2 then 2 along the rows is 4
    nodes = [placeholder("x"), const("w", _r(3, 3, 3, 2))]
    src, shape = "x", list(xs)
    for name, axis in (("a", 1), ("b", 1), ("c", 2)):
        src, shape = _repeat(nodes, src, axis, 2, shape, name)
    nodes.append(Node("out", "Conv2D", [src, "w"], {
        **F32, "strides": [1, 1, 1, 1], "padding": "SAME", "data_format": "NHWC",
        "dilations": [1, 1, 1, 1]}))
    plan = _check(model_of(nodes, ["x"], ["out"]), _r(*xs), True)
    step = next(st for st in plan.steps if "Conv2DBackpropInput" in _ops_of(st))
    assert _core_attrs(step)["strides"] == [1, 4, 2, 1]


def _ops_of(st):
    return (st.op, st.attrs.get("core"))


def _core_attrs(st):
    return st.attrs.get("core_attrs", st.attrs)


def test_resize_attributes():
    xs = (1, 5, 4, 2)
    for attrs in ({"half_pixel_centers": True}, {"align_corners": False}):
        _check(_model(xs, (3, 3, 2, 3), (2, 2), form="resize", resize_attrs=dict(attrs)),
               _r(*xs), True)
    # align_corners rounds i (n - 1) / (s n - 1): i // s for s = 2, not for 3 (5 -> 15 maps
    # output 9 to input 3)
    _check(_model(xs, (3, 3, 2, 3), (2, 2), form="resize",
                  resize_attrs={"align_corners": True}), _r(*xs), True)
    _check(_model(xs, (3, 3, 2, 3), (3, 3), form="resize",
                  resize_attrs={"align_corners": True}), _r(*xs), False)
    # a size that is not a whole multiple
    _check(_model(xs, (3, 3, 2, 3), (2, 2), form="resize", resize_attrs={"size": [9, 8]}),
           _r(*xs), False)


def test_not_rewritten():
    xs, ws = (1, 6, 5, 3), (3, 3, 3, 2)
    # a strided convolution of the upsampled map
    _check(_model(xs, ws, (2, 2), strides=(1, 2, 2, 1)), _r(*xs), False)
    # the upsampled map has another reader (it is fetched too)
    _check(_model(xs, ws, (2, 2), readers=2), _r(*xs), False)
    # a filter holding an inf (its summed taps are not finite)
    w = _r(*ws)
    w[1, 1, 0, 0] = np.inf
    m = _model(xs, ws, (2, 2), w=w)
    x = _r(*xs)
    plan = m.plan(x)
    assert "Conv2DBackpropInput" not in _ops(plan)
    np.testing.assert_array_equal(plan.run((x,))[0], m.plan(x, optimize=False).run((x,))[0])


def _upsample_then(xs, factors, form="repeat", op="Relu", dtype="float32"):
    """x -> nearest upsampling by ``factors`` -> ``op`` (no convolution) -> "out"."""
    nodes = [placeholder("x", dtype)]
    src, shape = "x", list(xs)
    if form == "resize":
        nodes += [const("size", _i([xs[1] * factors[0], xs[2] * factors[1]])),
                  Node("up", "ResizeNearestNeighbor", ["x", "size"],
                       {"T": dtype, "half_pixel_centers": True})]
        src = "up"
    else:
        for axis, s in ((1, factors[0]), (2, factors[1])):
            if s > 1:
                src, shape = _repeat(nodes, src, axis, s, shape, f"up{axis}")
                for n in nodes[-6:]:
                    if n.op != "Const":
                        n.attrs["T"] = dtype
    nodes.append(Node("out", op, [src], {"T": dtype}))
    return model_of(nodes, ["x"], ["out"])


@pytest.mark.parametrize("form, factors, dtype, one_copy", [
    ("repeat", (2, 2), "float32", True), ("repeat", (3, 2), "float64", True),
    ("resize", (2, 3), "float32", True), ("repeat", (2, 1), "float32", False),
    ("repeat", (2, 2), "int32", True)])
def test_upsampling_without_a_conv_copies_once(form, factors, dtype, one_copy):
    """An upsampling read by something else than a convolution (a residual addition, an
    activation) of two repeats or a resize becomes one broadcast copy; a single repeat (one
    copy already) stays."""
    xs = (2, 5, 4, 3)
    m = _upsample_then(xs, factors, form, "Relu" if dtype != "int32" else "Identity", dtype)
    x = (RNG.uniform(-5, 5, xs)).astype(dtype)
    plan, plain = m.plan(x), m.plan(x, optimize=False)
    got, want = plan.run((x,))[0], plain.run((x,))[0]
    assert got.dtype == want.dtype and got.shape == (2, 5 * factors[0], 4 * factors[1], 3)
    np.testing.assert_array_equal(got, want)
    ops = _ops(plan)
    assert ("BroadcastTo" in ops) == one_copy, plan
    assert ("Tile" in ops or "ResizeNearestNeighbor" in ops) != one_copy, plan


def test_merged_filter_sums_taps_in_float64():
    w = np.zeros((3, 3, 1, 1), np.float32)
    w[0, 0], w[1, 0] = 3.0, 1.0
    m = merged_filter(w, (2, 2))
    assert m.shape == (4, 4, 1, 1) and m.dtype == np.float32
    # W'[t] = sum of K[d] with 0 <= t + d - 2 < 2 (t = 2: d = 0, 1; t = 1: d = 1, 2); the
    # filter's column 0 reaches W' columns 2 and 3
    np.testing.assert_array_equal(m[:, 2, 0, 0], [0, 1, 4, 3])
    np.testing.assert_array_equal(m[:, 3, 0, 0], [0, 1, 4, 3])
    assert not m[:, :2].any()
    # three taps in one sum (s = 3): 1e8 + 5 + 5 in float32 steps is 1e8 + 16, once 1e8 + 8
    w = np.array([1e8, 5, 5], np.float32).reshape(3, 1, 1, 1)
    assert merged_filter(w, (3, 1))[2, 0, 0, 0] == np.float32(1e8 + 10)
    big = np.full((3, 3, 1, 1), 3e38, np.float32)  # (sums past float32's range)
    xs = (1, 3, 3, 1)
    _check(_model(xs, big.shape, (2, 2), w=big), _r(*xs), False)


@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_stacked_phases_match_phase_by_phase(nsp):
    """``_transpose_stacked`` (the strides dividing the kernel) against
    ``_transpose_by_phases`` over random geometries, crops and batch sizes."""
    rng = np.random.default_rng(nsp)
    for _ in range(60 if nsp < 3 else 15):
        s = [int(rng.integers(1, 4)) for _ in range(nsp)]
        ks = [int(v * rng.integers(1, 3)) for v in s]
        outs = [int(rng.integers(1, 6)) for _ in range(nsp)]
        pads = [(int(rng.integers(0, k)), int(rng.integers(0, k))) for k in ks]
        d = [(o - 1) * st + k - lo - hi + int(rng.integers(0, st))
             for o, st, k, (lo, hi) in zip(outs, s, ks, pads)]
        if min(d) < 1:
            continue
        n, c, co = (int(v) for v in rng.integers(1, 4, 3))
        dy = rng.standard_normal((n, *outs, co))
        w = rng.standard_normal((*ks, c, co))
        shape = (n, *d, c)
        want = C._transpose_by_phases(shape, w, dy, s, pads, {})
        got = C._transpose_stacked(shape, dy, s, pads, C._stacked_filter(w, s, {}))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_stacked_phases_through_the_op(monkeypatch):
    """Conv2DBackpropInput with a 4 x 4 filter and stride 2 (Keras' Conv2DTranspose(k=4,
    s=2)) to at least ``_TAPS_BELOW`` channels takes the stacked path and computes the per-tap
    sum of its definition."""
    calls = []
    stacked = C._transpose_stacked
    monkeypatch.setattr(C, "_transpose_stacked", lambda *a: calls.append(1) or stacked(*a))
    dy, w = _r(2, 5, 6, 3).astype(np.float64), _r(4, 4, 8, 3).astype(np.float64)
    got = C.Conv2DBackpropInput(np.array([2, 10, 12, 8]), w, dy, strides=[1, 2, 2, 1],
                                padding="SAME")
    want = np.zeros((2, 12, 14, 8))  # (padded by 1 before, 1 after)
    for i in range(4):
        for j in range(4):
            want[:, i:i + 10:2, j:j + 12:2] += dy @ w[i, j].T
    np.testing.assert_allclose(got, want[:, 1:11, 1:13], rtol=1e-12, atol=1e-12)
    assert calls == [1]


def _keras():
    pytest.importorskip("tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    return keras


def _keras_plans(model, shape):
    """The converted ``model``'s plans at batch 1 and 3, its values checked against TF's."""
    for w in model.weights:
        w.assign(RNG.uniform(-0.5, 0.5, w.shape).astype(np.float32))
    m = td.convert(model)
    plans = []
    for b in (1, 3):
        x = RNG.standard_normal((b, *shape)).astype(np.float32)
        np.testing.assert_allclose(m(x), np.asarray(model(x, training=False)), rtol=1e-5,
                                   atol=1e-5)
        plans.append(m.plan(x))
    return plans


@pytest.mark.tf
@pytest.mark.parametrize("size,kernel,padding", [((2, 2), 3, "same"), ((3, 2), 3, "valid"),
                                                 ((2, 2), 1, "same"), ((2, 1), 5, "same")])
def test_keras_upsampling_then_conv(size, kernel, padding):
    keras = _keras()
    L = keras.layers
    inp = keras.Input((7, 6, 4))
    y = L.UpSampling2D(size)(L.Conv2D(5, 3, padding="same", activation="relu")(inp))
    model = keras.Model(inp, L.Conv2D(3, kernel, padding=padding, activation="relu")(y))
    for plan in _keras_plans(model, (7, 6, 4)):
        assert "Conv2DBackpropInput+BiasAdd+Relu" in [st.label for st in plan.steps], plan
        assert "Tile" not in _ops(plan), plan


@pytest.mark.tf
@pytest.mark.parametrize("size,kernel,padding", [(2, 3, "same"), (3, 5, "valid"), (2, 1, "same")])
def test_keras_upsampling1d_then_conv1d(size, kernel, padding):
    """Keras' Conv1D is ExpandDims, a (1, k) Conv2D and Squeeze: the upsampled [N, W, C] map
    joins through the ExpandDims."""
    keras = _keras()
    L = keras.layers
    inp = keras.Input((11, 4))
    y = L.UpSampling1D(size)(L.Conv1D(5, 3, padding="same", activation="relu")(inp))
    model = keras.Model(inp, L.Conv1D(3, kernel, padding=padding, activation="relu")(y))
    for plan in _keras_plans(model, (11, 4)):
        assert "Conv2DBackpropInput" in _ops(plan) and "Tile" not in _ops(plan), plan


@pytest.mark.tf
def test_tf_resize_nearest_then_conv():
    """tf_keras' UpSampling2D is ``tf.image.resize(..., "nearest")``: ResizeNearestNeighbor
    with half-pixel centers."""
    tf = pytest.importorskip("tensorflow")
    w = tf.constant(_r(3, 3, 4, 3))

    @tf.function(input_signature=[tf.TensorSpec([None, 5, 6, 4], tf.float32)])
    def f(x):
        u = tf.image.resize(x, [10, 18], method="nearest")
        return tf.nn.relu(tf.nn.conv2d(u, w, 1, "SAME"))

    m = td.convert(f)
    x = RNG.standard_normal((2, 5, 6, 4)).astype(np.float32)
    np.testing.assert_allclose(m(x), f(x).numpy(), rtol=1e-5, atol=1e-5)
    assert "ResizeNearestNeighbor" not in _ops(m.plan(x))
