"""Recurrent layers made fast: fused LSTM and GRU cells (``fuse_rnn``), each rewritten plan
checked against the plan without the rewrite and against TensorFlow, on hand-built cells
(every slicing and bias form the pass accepts) and on Keras 3 and tf_keras layers."""

from __future__ import annotations

import numpy as np
import pytest

import tfdeploy as td
from graphs import Node, const, model_of, placeholder
from tfdeploy import registry
from tfdeploy.compiler import pipeline
from tfdeploy.compiler.pipeline import compile_plan

RNG = np.random.default_rng(0)
F32 = {"T": "float32"}
MATMUL = {"T": "float32", "transpose_a": False, "transpose_b": False}


def _w(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _blocks(name: str, src: str, width: int, n: int, style: str) -> tuple[list, list[str]]:
    """Nodes taking ``n`` column blocks of ``src`` (width columns) and the blocks' refs."""
    w = width // n
    if style == "split":
        return ([const(f"{name}_dim", np.int32(-1)),
                 Node(name, "Split", [f"{name}_dim", src], {"num_split": n, **F32})],
                [f"{name}:{k}" for k in range(n)])
    if style == "splitv":
        sizes = np.array([w] * (n - 1) + [-1], np.int32)
        return ([const(f"{name}_sizes", sizes), const(f"{name}_dim", np.int32(1)),
                 Node(name, "SplitV", [src, f"{name}_sizes", f"{name}_dim"],
                      {"num_split": n, **F32})], [f"{name}:{k}" for k in range(n)])
    nodes, refs = [], []
    for k in range(n):  # strided slices, the last one open-ended as Keras 3 writes them
        s = f"{name}_{k}"
        end_mask = 3 if k == n - 1 else 1
        nodes += [const(f"{s}_b", np.array([0, k * w], np.int32)),
                  const(f"{s}_e", np.array([0, (k + 1) * w], np.int32)),
                  const(f"{s}_s", np.array([1, 1], np.int32)),
                  Node(s, "StridedSlice", [src, f"{s}_b", f"{s}_e", f"{s}_s"],
                       {"begin_mask": 1, "end_mask": end_mask, "ellipsis_mask": 0,
                        "new_axis_mask": 0, "shrink_axis_mask": 0, **F32})]
        refs.append(s)
    return nodes, refs


def _per_gate(nodes: list, n_in: int, n: int, gates: str) -> list[str]:
    """Keras' form with dropout: a sum per gate, x and h multiplied by their (inference)
    masks, ones_like."""
    nodes += [Node("ox", "OnesLike", ["x"], F32), Node("oh", "OnesLike", ["h"], F32)]
    refs = []
    for g in gates:
        nodes += [Node(f"x{g}", "Mul", ["x", "ox"], F32), Node(f"h{g}", "Mul", ["oh", "h"], F32),
                  const(f"W{g}", _w(n_in, n)), const(f"R{g}", _w(n, n)), const(f"b{g}", _w(n)),
                  Node(f"xw{g}", "MatMul", [f"x{g}", f"W{g}"], MATMUL),
                  Node(f"xb{g}", "BiasAdd", [f"xw{g}", f"b{g}"], F32),
                  Node(f"hr{g}", "MatMul", [f"h{g}", f"R{g}"], MATMUL),
                  Node(f"pre{g}", "AddV2", [f"xb{g}", f"hr{g}"], F32)]
        refs.append(f"pre{g}")
    return refs


def _lstm_cell(style="split", d=3, n=4, bias_last=True, swap=False):
    """x, h, c -> h', c' as Keras writes an LSTM cell (bias added last, or to x W first; or
    a sum per gate)."""
    nodes = [placeholder("x", "float32", [None, d]), placeholder("h", "float32", [None, n]),
             placeholder("c", "float32", [None, n]), const("W", _w(d, 4 * n)),
             const("R", _w(n, 4 * n)), const("b", _w(4 * n)),
             Node("xw", "MatMul", ["x", "W"], MATMUL), Node("hr", "MatMul", ["h", "R"], MATMUL)]
    if style == "per_gate":
        i, f, g, o = _per_gate(nodes, d, n, "ifgo")
        more = []
    elif bias_last:
        nodes += [Node("sum", "AddV2", ["hr", "xw"] if swap else ["xw", "hr"], F32),
                  Node("z", "BiasAdd", ["sum", "b"], F32)]
    else:
        nodes += [Node("xwb", "AddV2", ["xw", "b"], F32), Node("z", "AddV2", ["xwb", "hr"], F32)]
    if style != "per_gate":
        more, (i, f, g, o) = _blocks("gates", "z", 4 * n, 4, style)
    nodes += more + [
        Node("si", "Sigmoid", [i], F32), Node("sf", "Sigmoid", [f], F32),
        Node("tg", "Tanh", [g], F32), Node("so", "Sigmoid", [o], F32),
        Node("fc", "Mul", ["c", "sf"] if swap else ["sf", "c"], F32),
        Node("ig", "Mul", ["tg", "si"] if swap else ["si", "tg"], F32),
        Node("c_new", "AddV2", ["ig", "fc"] if swap else ["fc", "ig"], F32),
        Node("tc", "Tanh", ["c_new"], F32), Node("h_new", "Mul", ["so", "tc"], F32)]
    return model_of(nodes, ["x", "h", "c"], ["h_new", "c_new"])


def _gru_cell(style="split", reset_after=True, d=3, n=4, rec_bias=True):
    """x, h -> h' as Keras writes a GRU cell (reset_after or reset before)."""
    nodes = [placeholder("x", "float32", [None, d]), placeholder("h", "float32", [None, n]),
             const("W", _w(d, 3 * n)), const("b", _w(3 * n)),
             Node("xw", "MatMul", ["x", "W"], MATMUL), Node("xp", "BiasAdd", ["xw", "b"], F32)]
    xs, (xz, xr, xn) = _blocks("xg", "xp", 3 * n, 3, style)
    nodes += xs
    if reset_after:
        nodes += [const("R", _w(n, 3 * n)), Node("hr", "MatMul", ["h", "R"], MATMUL)]
        if rec_bias:
            nodes += [const("rb", _w(3 * n)), Node("hp", "AddV2", ["hr", "rb"], F32)]
        hs, (hz, hr, hn) = _blocks("hg", "hp" if rec_bias else "hr", 3 * n, 3, style)
    else:
        nodes += [const("R", _w(n, 2 * n)), const("Rn", _w(n, n)),
                  Node("hp", "MatMul", ["h", "R"], MATMUL)]
        hs, (hz, hr) = _blocks("hg", "hp", 2 * n, 2, style)
    nodes += hs + [Node("az", "AddV2", [xz, hz], F32), Node("ar", "AddV2", [hr, xr], F32),
                   Node("z", "Sigmoid", ["az"], F32), Node("r", "Sigmoid", ["ar"], F32)]
    if reset_after:
        nodes += [Node("rn", "Mul", ["r", hn], F32)]
    else:
        nodes += [Node("rh", "Mul", ["r", "h"], F32),
                  Node("rn", "MatMul", ["rh", "Rn"], MATMUL)]
    nodes += [Node("an", "AddV2", [xn, "rn"], F32), Node("nn", "Tanh", ["an"], F32),
              const("one", np.float32(1)), Node("omz", "Sub", ["one", "z"], F32),
              Node("zh", "Mul", ["z", "h"], F32), Node("zn", "Mul", ["omz", "nn"], F32),
              Node("h_new", "AddV2", ["zh", "zn"], F32)]
    return model_of(nodes, ["x", "h"], ["h_new"])


def _simple_cell(d=3, n=4):
    """x, h -> tanh(x W + b + h R), as Keras writes a simple RNN cell."""
    nodes = [placeholder("x", "float32", [None, d]), placeholder("h", "float32", [None, n]),
             const("W", _w(d, n)), const("R", _w(n, n)), const("b", _w(n)),
             Node("xw", "MatMul", ["x", "W"], MATMUL), Node("xb", "BiasAdd", ["xw", "b"], F32),
             Node("hr", "MatMul", ["h", "R"], MATMUL), Node("s", "AddV2", ["xb", "hr"], F32),
             Node("h_new", "Tanh", ["s"], F32)]
    return model_of(nodes, ["x", "h"], ["h_new"])


def _ops(plan) -> list[str]:
    return [st.op for st in plan.steps]


def _inputs(m, batch, fortran=False):
    out = []
    for s in m.inputs:
        a = RNG.standard_normal((batch, s.shape[1])).astype(np.float32)
        out.append(np.asfortranarray(a) if fortran else a)
    return out


def _same(m, xs, rtol=1e-5, atol=1e-6):
    """The fused plan's results equal the unfused plan's."""
    fused, plain = m.plan(), m.plan(optimize=False)
    for a, b in zip(fused.run(xs), plain.run(xs)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("style", ["split", "splitv", "strided", "per_gate"])
@pytest.mark.parametrize("variant", ["bias_last", "bias_first", "swapped"])
def test_lstm_cell_fused(style, variant):
    m = _lstm_cell(style, bias_last=variant != "bias_first", swap=variant == "swapped")
    assert _ops(m.plan()) == ["_LSTMCell"], str(m.plan())
    for batch in (0, 1, 8):
        for fortran in (False, True):
            _same(m, _inputs(m, batch, fortran))


@pytest.mark.parametrize("style", ["split", "splitv", "strided"])
@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_cell_fused(style, reset_after):
    m = _gru_cell(style, reset_after)
    assert _ops(m.plan()) == ["_GRUCell"], str(m.plan())
    for batch in (0, 1, 8):
        _same(m, _inputs(m, batch))
    m = _gru_cell(style, reset_after, rec_bias=False)
    assert _ops(m.plan()) == ["_GRUCell"]
    _same(m, _inputs(m, 3))


def test_simple_rnn_cell_fused():
    m = _simple_cell()
    assert _ops(m.plan()) == ["_SimpleRNNCell"]
    for batch in (0, 1, 8):
        _same(m, _inputs(m, batch))
    # a dense layer's tanh (one input) is not a cell: fuse_conv's chain takes it
    nodes = [placeholder("x", "float32", [None, 3]), const("W", _w(3, 4)), const("b", _w(4)),
             Node("xw", "MatMul", ["x", "W"], MATMUL), Node("xb", "BiasAdd", ["xw", "b"], F32),
             Node("y", "Tanh", ["xb"], F32)]
    assert _ops(model_of(nodes, ["x"], ["y"]).plan()) == ["_FusedChain"]


@pytest.mark.parametrize("form", ["PRODUCT", "COLUMNS", "BLOCKS"])
def test_large_cells_take_their_recurrent_product_in_the_measured_form(monkeypatch, form):
    """A recurrent kernel of 1 MB or more multiplies the states of 2-8 sequences in the form
    measured fastest (``kernels/math/few_rows.columns_by``; here each form forced): the
    unfused plan's results, at batches the choice covers and not."""
    from tfdeploy.kernels.math import few_rows

    code = getattr(few_rows, form)
    monkeypatch.setattr(few_rows, "_CHOICES", {})
    monkeypatch.setattr(few_rows, "_measure", lambda m, w, columns=False: code)
    calls = []
    for name in ("_columns", "_blocks"):
        real = getattr(few_rows, name)
        monkeypatch.setattr(few_rows, name, lambda a, v, real=real, name=name:
                            calls.append(name) or real(a, v))
    n = 512  # (an LSTM's 4n x n kernel: 4 MB; a GRU's reset-before n x n one: 1 MB)
    for m in (_lstm_cell(n=n, d=5), _gru_cell(n=n, d=5), _gru_cell(reset_after=False, n=n, d=5),
              _simple_cell(n=n, d=5)):
        m.plan()
        for batch in (1, 2, 3, 9):
            calls.clear()
            xs = [a * 0.1 for a in _inputs(m, batch)]
            _same(m, xs, rtol=2e-5, atol=2e-6)
            covered = 2 <= batch <= few_rows.MAX_ROWS
            assert set(calls) == ({"_" + form.lower()} if covered and code else set()), \
                (m, batch)


def test_cell_with_an_inner_value_read_elsewhere_is_not_fused():
    m = _lstm_cell()
    g = m.default_graph
    g.outputs.append(type(g.outputs[0])("so", "so:0", "float32", None))  # a gate, fetched
    assert "_LSTMCell" not in _ops(m.plan())
    _same(m, _inputs(m, 2))


def test_cell_fallback_raises_the_unfused_error():
    """Inputs the fast path does not take run the fused steps' own kernels (no feed checks
    here: plans as a loop body gets them)."""
    m = _lstm_cell()
    g = m.default_graph
    refs = [[s.ref for s in g.outputs], [s.ref for s in g.inputs]]
    fused, plain = compile_plan(g, *refs), compile_plan(g, *refs, optimize=False)
    assert _ops(fused) == ["_LSTMCell"]
    x, h, c = _inputs(m, 2)
    with pytest.raises(td.ExecutionError, match=r"'hr' \(MatMul\)"):
        fused.run((x, h[:, :3], c))
    x64 = x.astype(np.float64)  # (the unfused kernels promote; so does the fallback)
    for a, b in zip(fused.run((x64, h, c)), plain.run((x64, h, c))):
        assert a.dtype == b.dtype == np.float64
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def restore_op():
    """Put back the built-in kernels of the ops a test replaces."""
    saved = {}

    def save(op):
        d = registry.get_opdef(op)
        saved[op] = (dict(d.impls), set(d.builtin), dict(d.specializers), d.preferred)

    yield save
    for op, (impls, builtin, specs, preferred) in saved.items():
        d = registry._REGISTRY.get(op) or registry.register(op, impls["numpy"], builtin=True)
        d.impls, d.builtin, d.specializers, d.preferred = impls, builtin, specs, preferred


def test_fusion_never_bypasses_a_users_sigmoid(restore_op):
    restore_op("Sigmoid")

    class Sigmoid(td.Operation):  # a user's Sigmoid: a hard one
        def func(x):
            return np.clip(x * 0.25 + 0.5, 0, 1).astype(x.dtype),

    for m in (_lstm_cell(), _gru_cell()):
        assert "Sigmoid" in _ops(m.plan())
        assert not {"_LSTMCell", "_GRUCell"} & set(_ops(m.plan()))
        _same(m, _inputs(m, 2))


def test_fusion_never_bypasses_scipys_sigmoid():
    pytest.importorskip("scipy")
    td.setup(None, td.IMPL_SCIPY)
    try:
        for m in (_lstm_cell(), _gru_cell()):
            plan = m.plan()
            assert "Sigmoid" in _ops(plan) and not {"_LSTMCell", "_GRUCell"} & set(_ops(plan))
    finally:
        td.setup(None, td.IMPL_NUMPY)


# ---------------------------------------------------------------------------- Keras layers

@pytest.fixture
def nested_plans(monkeypatch):
    """The plans of the function bodies compiled (loop bodies), as they are compiled."""
    plans = []
    orig = pipeline.Context.compile_graph

    def compile_graph(self, *args, **kwargs):
        plans.append(orig(self, *args, **kwargs))
        return plans[-1]

    monkeypatch.setattr(pipeline.Context, "compile_graph", compile_graph)
    return plans


def _keras_layers(k):
    L = k.layers

    def seq(*layers, shape=(None, 3), dtype="float32"):
        return k.Sequential([k.Input(shape, dtype=dtype), *layers])

    def states():
        inp = k.Input((None, 3))
        o, h, c = L.LSTM(4, return_sequences=True, return_state=True, go_backwards=True)(inp)
        o2, h2 = L.GRU(5, return_state=True, reset_after=False)(o)
        return k.Model(inp, [o2, h, c, h2])

    rnd = {"bias_initializer": "random_normal"}  # (Keras initializes biases to zeros)
    return {
        "lstm": (lambda: seq(L.LSTM(6, **rnd)), ["_LSTMCell"]),
        "gru": (lambda: seq(L.GRU(6, return_sequences=True, **rnd)), ["_GRUCell"]),
        "gru_reset_before": (lambda: seq(L.GRU(5, reset_after=False, **rnd)), ["_GRUCell"]),
        "states": (states, ["_GRUCell", "_LSTMCell"]),
        "bidirectional": (lambda: seq(L.Bidirectional(L.GRU(3, return_sequences=True)),
                                      L.LSTM(4)), ["_GRUCell", "_GRUCell", "_LSTMCell"]),
        "masked": (lambda: seq(L.Embedding(10, 3, mask_zero=True),
                               L.LSTM(4, return_sequences=True), L.GRU(3), shape=(None,),
                               dtype="int32"), ["_GRUCell", "_LSTMCell"]),
        "masking": (lambda: seq(L.Masking(), L.GRU(4, return_sequences=True)), ["_GRUCell"]),
        "simple": (lambda: seq(L.SimpleRNN(4, return_sequences=True, **rnd),
                               L.SimpleRNN(3, go_backwards=True, **rnd)),
                   ["_SimpleRNNCell", "_SimpleRNNCell"]),
        # with dropout, Keras computes a sum per gate (and tf_keras multiplies by ones)
        "dropout": (lambda: seq(L.LSTM(4, dropout=0.2, recurrent_dropout=0.2,
                                       return_sequences=True, **rnd),
                                L.GRU(3, dropout=0.2, recurrent_dropout=0.2,
                                      return_sequences=True, **rnd),
                                L.GRU(3, recurrent_dropout=0.2, reset_after=False, **rnd)),
                    ["_GRUCell", "_GRUCell", "_LSTMCell"]),
    }


def _keras_input(name, batch, steps):
    if name == "masked":
        ids = RNG.integers(1, 10, size=(batch, steps)).astype(np.int32)
        for b in range(batch):
            ids[b, max(1, steps - b):] = 0
        return ids
    x = RNG.standard_normal((batch, steps, 3)).astype(np.float32)
    if name == "masking":
        for b in range(batch):
            x[b, max(1, steps - 2 * b):] = 0.0
    return x


@pytest.mark.tf
@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
@pytest.mark.parametrize("name", ["lstm", "gru", "gru_reset_before", "states", "bidirectional",
                                  "masked", "masking", "dropout", "simple"])
def test_keras_cells_fused(flavour, name, nested_plans):
    """Every Keras LSTM and GRU flavour is fused, and gives the unfused plan's results and
    TF's, at batch 0, 1 and 8 and several lengths."""
    k = pytest.importorskip("keras" if flavour == "keras3" else "tf_keras")
    k.utils.set_random_seed(0)
    build, cells = _keras_layers(k)[name]
    model = build()
    m = td.convert(model)
    key, fetches, feeds = m._signature_refs(1, ())
    fused = m._compile_plan(key, fetches, feeds, verify=True)
    found = [st for p in nested_plans for st in p.steps
             if st.op in ("_LSTMCell", "_GRUCell", "_SimpleRNNCell")]
    assert sorted(st.op for st in found) == cells
    # each reads its input's projection, made once per loop
    assert all(st.attrs.get("projected") for st in found)
    assert sorted(st.attrs["cell"] for p in nested_plans if p.prologue is not None
                  for st in p.prologue.steps if st.op == "_CellInputs") == cells
    plain = m._compile_plan(key, fetches, feeds, optimize=False)
    unprojected = m._compile_plan(key, fetches, feeds, passes=[
        p for p, _, _ in pipeline.PASSES if p not in ("project_inputs", "licm")])
    for batch, steps in ((1, 5), (8, 3), (0, 4), (2, 1)):
        x = _keras_input(name, batch, steps)
        got = fused.run((x,))
        for a, b, c in zip(got, plain.run((x,)), unprojected.run((x,))):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
        if batch:
            want = model(x, training=False)
            want = want if isinstance(want, (list, tuple)) else [want]
            for a, b in zip(got, want):
                np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)


@pytest.mark.tf
@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_keras_unrolled_cells_fused(flavour):
    """unroll=True: the cells are in the top-level plan, each fused (no loop to hoist from)."""
    k = pytest.importorskip("keras" if flavour == "keras3" else "tf_keras")
    k.utils.set_random_seed(0)
    model = k.Sequential([k.Input((4, 3)), k.layers.LSTM(5, unroll=True, return_sequences=True),
                          k.layers.GRU(3, unroll=True)])
    m = td.convert(model)
    assert sorted(_ops(m.plan())).count("_LSTMCell") == 4 and _ops(m.plan()).count("_GRUCell") == 4
    for batch in (1, 8):
        x = RNG.standard_normal((batch, 4, 3)).astype(np.float32)
        _same(m, [x])
        np.testing.assert_allclose(m(x), model(x, training=False), rtol=1e-4, atol=1e-5)


def test_projection_of_lists_it_does_not_take():
    """The projection (``_CellInputs``) declines lists it cannot stack (unset elements,
    other shapes or dtypes); the projected cell then runs its fallback."""
    from tfdeploy.kernels.nn.rnn import LSTMCell
    from tfdeploy.runtime.tensorlist import TensorList

    calls = []
    cell = LSTMCell(_w(3, 8), _w(2, 8), _w(8), lambda *ins: calls.append(ins) or "fallback")
    x = _w(4, 3)
    assert cell.project(TensorList.of([x, x], np.float32)).shape == (2, 8, 4)
    for items in ([x, None], [x, x[:2]], [x, x.astype(np.float64)], [x[:, :2]] * 2, []):
        assert cell.project(TensorList.of(items, np.float32)) is None
    h = np.zeros((4, 2), np.float32)
    lst = TensorList.of([x], np.float32)
    p = cell.project(lst)
    assert cell.projected(p, lst, np.int32(1), h, h) == "fallback"  # (out of range)
    assert cell.projected(p, lst, np.int32(-1), h, h) == "fallback"
    assert cell.projected(p, lst, np.int32(0), h[:3], h[:3]) == "fallback"
    # not projected (a list it declined): the step projects its own element, or falls back
    assert cell.projected(None, TensorList.of([None], np.float32), np.int32(0), h, h) == \
        "fallback"
    assert cell.projected(None, lst, np.int32(0), h.astype(np.float64), h) == "fallback"
    assert len(calls) == 5
    want = cell(x, h, h)
    for got in (cell.projected(p, lst, np.int32(0), h, h),
                cell.projected(None, lst, np.int32(0), h, h)):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.tf
def test_sequences_too_large_to_project_whole(monkeypatch):
    """Above PROJECTION_LIMIT_BYTES, each step projects its own element: same results."""
    from tfdeploy.kernels.nn import rnn

    k = pytest.importorskip("keras")
    k.utils.set_random_seed(0)
    rnd = {"bias_initializer": "random_normal"}
    model = k.Sequential([k.Input((None, 3)), k.layers.LSTM(4, return_sequences=True, **rnd),
                          k.layers.GRU(3, return_sequences=True, **rnd),
                          k.layers.SimpleRNN(2, **rnd)])
    m = td.convert(model)
    x = RNG.standard_normal((8, 6, 3)).astype(np.float32)
    whole = m(x)
    monkeypatch.setattr(rnn, "PROJECTION_LIMIT_BYTES", 0)
    m = td.convert(model)
    np.testing.assert_allclose(m(x), whole, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(m(x), model(x, training=False), rtol=1e-4, atol=1e-5)


def test_licm_moves_invariant_steps_to_the_prologue():
    """A loop body's steps computed from invariant feeds alone run once per loop."""
    nodes = [placeholder("a"), placeholder("b"), Node("tb", "Tanh", ["b"], F32),
             Node("sq", "Square", ["tb"], F32), Node("sum", "AddV2", ["a", "sq"], F32),
             Node("out", "Mul", ["sum", "tb"], F32)]
    g = model_of(nodes, ["a", "b"], ["out"]).default_graph
    plan = compile_plan(g, ["out:0"], ["a:0", "b:0"], nested=True, invariants=[1], verify=True)
    assert [st.op for st in plan.prologue.steps] == ["Tanh", "Square"]
    assert [st.op for st in plan.steps] == ["AddV2", "Mul"] and "once per loop" in str(plan)
    a, b = _w(3), _w(3)
    hoisted = plan.prologue.run((b,))
    assert len(hoisted) == 2 and len(plan.feed_values) == 4
    want = (a + np.tanh(b) ** 2) * np.tanh(b)
    np.testing.assert_allclose(plan.run((a, b) + hoisted)[0], want, rtol=1e-6)
    assert compile_plan(g, ["out:0"], ["a:0", "b:0"], nested=True).prologue is None


# ---------------------------------------------------------------------------- inlined loops

def _counted_loop(n: int):
    """i = 0; while i < n: a, b, i = b + x, a * 2 - i, i + 1 (a and b swap places)."""
    from tfdeploy.ir.graph import FuncAttr, Graph, TensorSpec

    names = ("i", "a", "b", "x")
    specs = [TensorSpec(v, f"{v}:0", "int32" if v == "i" else "float32") for v in names]
    ph = [placeholder("i", "int32"), placeholder("a"), placeholder("b"), placeholder("x")]
    cond = Graph(ph + [const("n", np.int32(n)), Node("less", "Less", ["i", "n"], {"T": "int32"})],
                 specs, [TensorSpec("less", "less:0", "bool")])
    body = Graph(ph + [const("one", np.int32(1)), const("two", np.float32(2)),
                       Node("next", "AddV2", ["i", "one"], {"T": "int32"}),
                       Node("bx", "AddV2", ["b", "x"], F32), Node("a2", "Mul", ["a", "two"], F32),
                       Node("fi", "Cast", ["i"], {"SrcT": "int32", "DstT": "float32"}),
                       Node("a2i", "Sub", ["a2", "fi"], F32)],
                 specs, [TensorSpec(v, f"{v}:0", "float32") for v in ("next", "bx", "a2i", "x")])
    nodes = [placeholder("x", "float32", [None]), const("zero", np.int32(0)),
             Node("a0", "ZerosLike", ["x"], F32), Node("b0", "OnesLike", ["x"], F32),
             Node("loop", "While", ["zero", "a0", "b0", "x"],
                  {"cond": FuncAttr("cond"), "body": FuncAttr("body")}),
             Node("out_a", "Identity", ["loop:1"], F32), Node("out_i", "Identity", ["loop:0"])]
    m = model_of(nodes, ["x"], ["out_a", "out_i"])
    m.default_graph.functions.update(cond=cond, body=body)
    return m


@pytest.mark.parametrize("n", [0, 1, 16, 17, 100])
def test_counted_loop_runs_inlined(n):
    """A counted loop's body runs inlined over chunks of iterations (16, 32, 64...), the
    state swapping places, and gives the executor's results."""
    m = _counted_loop(n)
    plan = m.plan()
    loop = next(st.kernel for st in plan.steps if st.op == "While")
    assert loop.chunk is not None and "for j in range(n)" in loop.chunk.source
    plain = m.plan(optimize=False)
    assert next(st.kernel for st in plain.steps if st.op == "While").chunk is None
    x = np.array([0.5, -1.0], np.float32)
    a, b, i = np.zeros(2, np.float32), np.ones(2, np.float32), 0
    for i in range(n):
        a, b = b + x, a * 2 - np.float32(i)
    got, want = plan.run((x,)), plain.run((x,))
    np.testing.assert_array_equal(got[0], a)
    np.testing.assert_array_equal(got[0], want[0])
    assert int(got[1]) == int(want[1]) == n


def _cells():
    from tfdeploy.kernels.nn.rnn import GRUCell, LSTMCell, SimpleRNNCell

    return {"lstm": LSTMCell(_w(3, 8), _w(2, 8), _w(8), None),
            "gru": GRUCell(_w(3, 12), _w(4, 12), _w(12), _w(12), True, None),
            "gru_reset_before": GRUCell(_w(3, 12), _w(4, 12), _w(12), None, False, None),
            "simple": SimpleRNNCell(_w(3, 5), _w(5, 5), None, None)}


@pytest.mark.parametrize("name", ["lstm", "gru", "gru_reset_before", "simple"])
def test_batch_one_row_layout(name):
    """At batch 1 a cell computes in the row layout (its own products and scratch row): the
    same results as the transposed layout of larger batches, called or projected, and
    several steps in a row (each step's states fed to the next). A step computing its own
    input part is the called step's bit for bit; one reading the projection (one product of
    every step's input) may differ in the last bit: BLAS's kernels sum a product of 4 rows
    and of 1 row in different orders on some CPUs (OpenBLAS's Haswell kernels, an AMD EPYC's:
    1 ulp on these cells)."""
    from tfdeploy.runtime.tensorlist import TensorList

    cell = _cells()[name]
    xs = [_w(2, 3) for _ in range(4)]
    n_states = 2 if name == "lstm" else 1
    one = [np.zeros((1, cell.units), np.float32)] * n_states
    two = [np.zeros((2, cell.units), np.float32)] * n_states
    lst1 = TensorList.of([x[:1] for x in xs], np.float32)
    p1, p2 = cell.project(lst1), cell.project(TensorList.of(xs, np.float32))
    g = cell.row[1]  # gates * units
    assert p1.shape == (4, 1, g) and p2.shape == (4, g, 2)
    called = list(one)
    for t, x in enumerate(xs):
        out = cell(x[:1], *called)
        called = list(out) if isinstance(out, tuple) else [out]
        for p, lst in ((p1, lst1), (None, lst1)):
            got = cell.projected(p, lst, np.int32(t), *one)
            got = list(got) if isinstance(got, tuple) else [got]
            want = cell(x[:1], *one)
            want = list(want) if isinstance(want, tuple) else [want]
            for a, b in zip(got, want):
                assert a.shape == b.shape and a.dtype == b.dtype
                if p is None:
                    np.testing.assert_array_equal(a, b)
                else:
                    np.testing.assert_allclose(a, b, rtol=4e-7, atol=1e-7)
        out = cell.projected(p2, None, np.int32(t), *two)
        two = list(out) if isinstance(out, tuple) else [out]
        one = [s[:1] for s in two]
        for a, b in zip(called, one):
            assert a.shape == b.shape == (1, cell.units) and a.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_batch_one_scratch_is_per_thread():
    """The scratch row of the batch-1 layout is per thread: one cell stepped by several
    threads at once gives each its own results."""
    from concurrent.futures import ThreadPoolExecutor

    cell = _cells()["lstm"]
    xs = [_w(1, 3) for _ in range(8)]
    zero = np.zeros((1, 2), np.float32)

    def run(x):
        h = c = zero
        for _ in range(3000):
            h, c = cell(x, h, c)
        return h, c

    want = [run(x) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(run, xs))
    for (a, b), (c, d) in zip(got, want):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_counted_loop_keeps_first_chunks_per_starting_values():
    """A counted loop keeps its first chunk's counter vectors and iteration count per
    starting values of its counters and of its condition's invariants: each call, whatever
    the limit (fed, and changing between calls, past the first chunk or not), gives the
    executor's results, and a repeated call reuses what the first kept."""
    from tfdeploy.ir.graph import FuncAttr, Graph, TensorSpec

    names = ("i", "a", "x", "n")
    dts = {"i": "int32", "n": "int32"}
    specs = [TensorSpec(v, f"{v}:0", dts.get(v, "float32")) for v in names]
    ph = [placeholder(v, dts.get(v, "float32")) for v in names]
    cond = Graph(ph + [Node("less", "Less", ["i", "n"], {"T": "int32"})],
                 specs, [TensorSpec("less", "less:0", "bool")])
    body = Graph(ph + [const("one", np.int32(1)),
                       Node("next", "AddV2", ["i", "one"], {"T": "int32"}),
                       Node("fi", "Cast", ["i"], {"SrcT": "int32", "DstT": "float32"}),
                       Node("ax", "AddV2", ["a", "x"], F32),
                       Node("axi", "AddV2", ["ax", "fi"], F32)],
                 specs, [TensorSpec(v, f"{v}:0", dts.get(v, "float32"))
                         for v in ("next", "axi", "x", "n")])
    nodes = [placeholder("x", "float32", [None]), placeholder("n", "int32", []),
             placeholder("start", "int32", []), Node("a0", "ZerosLike", ["x"], F32),
             Node("loop", "While", ["start", "a0", "x", "n"],
                  {"cond": FuncAttr("cond"), "body": FuncAttr("body")}),
             Node("out_a", "Identity", ["loop:1"], F32), Node("out_i", "Identity", ["loop:0"])]
    m = model_of(nodes, ["x", "n", "start"], ["out_a", "out_i"])
    m.default_graph.functions.update(cond=cond, body=body)
    plan, plain = m.plan(), m.plan(optimize=False)
    loop = next(st.kernel for st in plan.steps if st.op == "While")
    x = np.array([0.5, -1.0], np.float32)
    for n, start in ((5, 0), (3, 0), (100, 0), (5, 0), (5, 2), (0, 0), (3, 0), (200, 150)):
        a = np.zeros(2, np.float32)
        for i in range(start, n):
            a = a + x + np.float32(i)
        args = (x, np.int32(n), np.int32(start))
        got, want = plan.run(args), plain.run(args)
        np.testing.assert_array_equal(got[0], a)
        np.testing.assert_array_equal(got[0], want[0])
        assert int(got[1]) == int(want[1]) == max(n, start)
    # (5, 0), (3, 0), (100, 0), (5, 2), (200, 150): a loop that does not start keeps nothing
    assert len(loop._first) == 5


@pytest.mark.parametrize("name", ["lstm", "gru", "simple"])
@pytest.mark.parametrize("batch", [1, 3])
def test_projection_reads_the_tensor_a_list_was_made_from(name, batch):
    """A list made by TensorListFromTensor keeps its tensor, and the cell's projection reads
    it (contiguous or a transposed view) instead of joining the elements: the same values as
    from a list of the same elements alone. A new version of the list (an element set) does
    not keep it, and its projection reads the new element."""
    from tfdeploy.kernels.lists.tensorlist import TensorListFromTensor, TensorListSetItem
    from tfdeploy.runtime.tensorlist import TensorList

    cell = _cells()[name]
    es = np.array([-1, 3], np.int32)
    seq = _w(batch, 5, 3)  # (batch, time, depth), as Keras holds it
    for tensor in (np.ascontiguousarray(seq.transpose(1, 0, 2)), seq.transpose(1, 0, 2)):
        lst = TensorListFromTensor(tensor, es)
        assert lst.whole is tensor
        plain = TensorList.of(list(tensor), np.float32)
        assert plain.whole is None
        np.testing.assert_array_equal(cell.project(lst), cell.project(plain))
        new = TensorListSetItem(lst, np.int32(2), _w(batch, 3))
        assert new.whole is None and lst.whole is tensor
        want = cell.project(TensorList.of(new.items(), np.float32))
        np.testing.assert_array_equal(cell.project(new), want)
        assert not np.array_equal(want, cell.project(lst))
