"""fuse_gated: a gated feed-forward layer's activation (SwiGLU, GeGLU) after the split of one
product as one ``_Gated`` step, against the unfused plan and, for Keras layers, TensorFlow."""

from __future__ import annotations

import math

import numpy as np
import pytest

from graphs import Node, const, model_of, placeholder

RNG = np.random.default_rng(11)
F = {"T": "float32"}


def _gated_model(act="swish", beta=1.7, gate_first=True, flip=False, sizes=(6, 6),
                 fetch=None, up_again=False):
    """x [B, 4, 8] -> one product [8, 12] -> SplitV -> act(gate) * up. ``act``: "swish"
    (``beta``: its Mul by a constant first, None: none), "sigmoid_only" (the gate times
    sigmoid of the up: not a gated swish) or "gelu" (the erf form, fused by fuse_gelu first);
    ``flip``: every Mul's operands the other way round; ``fetch``: a node also fetched."""
    w = (RNG.standard_normal((8, 12)) * 0.5).astype(np.float32)
    nodes = [placeholder("x", "float32", [None, 4, 8]), const("w", w),
             Node("p", "BatchMatMulV2", ["x", "w"], F),
             const("sizes", np.array(sizes, np.int32)), const("ax", np.int32(-1)),
             Node("sp", "SplitV", ["p", "sizes", "ax"], dict(F, num_split=2, Tlen="int32"))]
    g, u = ("sp", "sp:1") if gate_first else ("sp:1", "sp")

    def mul(name, a, b):
        return Node(name, "Mul", [b, a] if flip else [a, b], F)

    if act == "swish":
        src = g
        if beta is not None:
            nodes += [const("beta", np.asarray(beta, np.float32)), mul("bg", "beta", g)]
            src = "bg"
        nodes += [Node("s", "Sigmoid", [src], F), mul("a", g, "s")]
    elif act == "sigmoid_only":
        nodes += [Node("s", "Sigmoid", [u], F), mul("a", g, "s")]
    else:
        nodes += [const("half", np.float32(0.5)), const("c", np.float32(0.7071067811865476)),
                  const("one", np.float32(1)), Node("h", "Mul", ["half", g], F),
                  Node("sc", "Mul", [g, "c"], F), Node("e", "Erf", ["sc"], F),
                  Node("ae", "AddV2", ["one", "e"], F), Node("a", "Mul", ["h", "ae"], F)]
    nodes.append(mul("y", "a", u))
    out = "y"
    if up_again:  # (the up part read by another step too)
        nodes.append(Node("z", "AddV2", ["y", u], F))
        out = "z"
    return model_of(nodes, ["x"], [out] + ([fetch] if fetch else []))


def _ops(plan) -> list[str]:
    return [st.op for st in plan.steps]


@pytest.mark.parametrize("act, beta, gate_first, flip, sizes", [
    ("swish", 1.7, True, False, (6, 6)),
    ("swish", 1.0, False, True, (6, -1)),
    ("swish", None, True, True, (6, 6)),
    ("swish", None, False, False, (-1, 6)),
    ("gelu", None, True, False, (6, 6)),
    ("gelu", None, False, True, (6, -1))])
def test_gated_activation_is_one_step(act, beta, gate_first, flip, sizes):
    """SwiGLU (beta or none, any operand order, the gate either part, a -1 size) and GeGLU
    after the split of one product: one _Gated step after the product, the unfused plan's
    values (swish as the fused chains compute it: within float32 rounding; GELU bit for bit),
    on two batch sizes."""
    m = _gated_model(act, beta, gate_first, flip, sizes)
    for b in (1, 3):
        x = RNG.standard_normal((b, 4, 8)).astype(np.float32) * 2
        plan = m.plan(x)
        assert _ops(plan) == ["BatchMatMulV2", "_Gated"], _ops(plan)
        (st,) = [s for s in plan.steps if s.op == "_Gated"]
        gate, up = st.attrs["gate"], st.attrs["up"]
        assert sorted([gate, up]) == [[0, 6], [6, 12]]
        assert (gate[0] == 0) == gate_first and st.attrs["act"] == act
        got, want = plan.run((x,))[0], m.plan(x, optimize=False).run((x,))[0]
        assert got.shape == want.shape == (b, 4, gate[1] - gate[0]) and got.dtype == np.float32
        if act == "gelu":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
        p = x @ m.default_graph.node("w").attrs["value"].astype(np.float64)
        gv, uv = p[..., gate[0]:gate[1]], p[..., up[0]:up[1]]
        if act == "gelu":
            erf = np.vectorize(math.erf)  # (a float64 oracle that needs no scipy)
            ref = 0.5 * gv * (1 + erf(gv / np.sqrt(2))) * uv
        else:
            ref = gv / (1 + np.exp(-(1.0 if beta is None else beta) * gv)) * uv
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_gated_kernel_edges():
    """The kernel on float64 (its own dtype's epilogue), inf and NaN as the unfused ops give
    them (-inf: NaN), a float16 input and one narrower than the columns through the unfused
    steps."""
    from tfdeploy.kernels.nn.fused import _Gated

    calls = []
    k = _Gated(act="swish", arg=None, gate=[0, 3], up=[3, 6],
               _fallback=lambda x: calls.append(x.dtype) or "fallback")
    x = np.array([[0.5, -2.0, np.inf, 1.0, 2.0, 3.0],
                  [np.nan, 40.0, -np.inf, 1.0, -1.0, 0.5]])
    with np.errstate(invalid="ignore"):  # (-inf * sigmoid(-inf): NaN, as the unfused ops)
        got = k(x)
        want = x[:, :3] / (1 + np.exp(-x[:, :3])) * x[:, 3:]
    assert got.dtype == np.float64 and got.shape == (2, 3)
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-12)
    assert np.isnan(got[1, 0]) and got[0, 2] == np.inf
    assert k(x.astype(np.float16)) == "fallback" and calls == [np.float16]
    assert k(np.zeros((2, 5))) == "fallback"  # (narrower than the columns: the ops' error)


def _moe_model(reshape_up=True, tail=(2, 3)):
    """A mixture of experts' gated layer: one product [8, 14] cut into gate (6), up (6) and a
    router's logits (2, its softmax fetched too), gate and up reshaped to [..., *tail]
    (``reshape_up``: the up part too)."""
    w = RNG.standard_normal((8, 14)).astype(np.float32)
    i32 = np.int32
    nodes = [placeholder("x", "float32", [None, 8]), const("w", w),
             Node("p", "MatMul", ["x", "w"], F),
             const("sizes", np.array([6, 6, 2], i32)), const("ax", i32(-1)),
             Node("sp", "SplitV", ["p", "sizes", "ax"], dict(F, num_split=3, Tlen="int32")),
             const("gs", np.array([-1, *tail], i32)), const("us", np.array([-1, *tail], i32)),
             Node("g", "Reshape", ["sp", "gs"], dict(F, Tshape="int32")),
             Node("s", "Sigmoid", ["g"], F), Node("a", "Mul", ["g", "s"], F)]
    if reshape_up:
        nodes += [Node("u", "Reshape", ["sp:1", "us"], dict(F, Tshape="int32")),
                  Node("y", "Mul", ["a", "u"], F)]
    else:
        nodes += [Node("y", "Mul", ["a", "sp:1"], F)]
    nodes += [Node("r", "Softmax", ["sp:2"], F)]
    return model_of(nodes, ["x"], ["y", "r"])


def test_mixture_of_experts_gate_through_reshapes():
    """A mixture of experts' gated layer: gate and up reshaped alike to [..., experts, width]
    join the _Gated step (its ``tail``), the split kept for the router's part; the unfused
    plan's values, at two batch sizes."""
    m = _moe_model()
    for b in (1, 5):
        x = RNG.standard_normal((b, 8)).astype(np.float32)
        plan = m.plan(x)
        ops = _ops(plan)
        assert ops.count("_Gated") == 1 and "SplitV" in ops and \
            not {"Sigmoid", "Reshape", "Mul"} & set(ops), ops
        (st,) = [s for s in plan.steps if s.op == "_Gated"]
        assert st.attrs["tail"] == [2, 3] and st.attrs["gate"] == [0, 6]
        for g, w in zip(plan.run((x,)), m.plan(x, optimize=False).run((x,))):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("case", ["fetched_gate", "fetched_sigmoid", "up_read_twice",
                                  "vector_beta", "sigmoid_of_up"])
def test_gated_not_taken(case):
    """Left unfused: a gate, or the sigmoid, that is also fetched; an up part another step
    reads too; a beta that is not a scalar; a sigmoid of the other part (not a gated swish)."""
    m = {"fetched_gate": lambda: _gated_model(fetch="sp"),
         "fetched_sigmoid": lambda: _gated_model(fetch="s"),
         "up_read_twice": lambda: _gated_model(up_again=True),
         "vector_beta": lambda: _gated_model(beta=np.full(6, 1.5, np.float32)),
         "sigmoid_of_up": lambda: _gated_model("sigmoid_only")}[case]()
    x = RNG.standard_normal((2, 4, 8)).astype(np.float32)
    plan = m.plan(x)
    assert "_Gated" not in _ops(plan), _ops(plan)
    for g, w in zip(plan.run((x,)), m.plan(x, optimize=False).run((x,))):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)


@pytest.mark.tf
@pytest.mark.parametrize("act", ["silu", "gelu"])
def test_keras_gated_ffn_against_tf(act):
    """A Keras SwiGLU / GeGLU feed-forward layer (one Dense to gate and up, split, act(gate) *
    up, Dense back): one _Gated step, TF's values."""
    keras = pytest.importorskip("keras")
    import tfdeploy as td

    inp = keras.Input((6, 16))
    h = keras.layers.Dense(64)(inp)
    g, u = keras.ops.split(h, 2, axis=-1)
    a = keras.activations.silu(g) if act == "silu" else keras.activations.gelu(g)
    model = keras.Model(inp, keras.layers.Dense(16)(a * u))
    x = RNG.standard_normal((3, 6, 16)).astype(np.float32)
    m = td.convert(model)
    assert "_Gated" in _ops(m.plan(x)), _ops(m.plan(x))
    want = np.asarray(model(x))
    np.testing.assert_allclose(m(x), want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
