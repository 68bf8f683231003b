"""The runtime without TensorFlow: plans, feeds, threads, errors."""

from __future__ import annotations

import threading
import warnings
import weakref

import numpy as np
import pytest

import tfdeploy as td
from graphs import const, dense_softmax, model_of, placeholder
from tfdeploy import registry
from tfdeploy.ir.graph import Node


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_dense_softmax_matches_numpy():
    m, w = dense_softmax()
    x = np.random.default_rng(1).random((5, 784), dtype=np.float32)
    inp, out = m.get("input", "output")
    got = out.eval({inp: x})
    want = _softmax(x @ w["W"] + w["b"])
    assert got.shape == (5, 100) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    # names with :0, feed keys as names, model(...) and model.eval([...])
    np.testing.assert_array_equal(m.get("output:0").eval({"input": x}), got)
    np.testing.assert_array_equal(m(x), got)
    np.testing.assert_array_equal(m(input=x), got)
    a, b = m.eval([out, "MatMul"], {inp: x})
    np.testing.assert_array_equal(a, got)
    np.testing.assert_allclose(b, x @ w["W"], rtol=1e-5, atol=1e-5)


def test_signature_is_described():
    m, _ = dense_softmax()
    (i,), (o,) = m.inputs, m.outputs
    assert (i.name, i.dtype, i.shape) == ("input", "float32", [None, 784])
    assert o.name == "output"


@pytest.fixture
def probe_ops():
    """Test-only ops: Inc adds one; Probe records weak references to what it sees."""
    seen = []

    def Inc(x):
        return x + np.float32(1)

    def Probe(x):
        out = x * np.float32(1)
        seen.append(weakref.ref(out))
        return out

    for name, fn in (("TestInc", Inc), ("TestProbe", Probe)):
        registry.register(name, fn, replace=True)
    yield seen
    for name in ("TestInc", "TestProbe"):
        registry.unregister(name)


def test_deep_chain_needs_no_recursion(probe_ops):
    nodes = [placeholder("x", "float32", [])]
    for i in range(10_000):
        nodes.append(Node(f"n{i}", "TestInc", [nodes[-1].name]))
    m = model_of(nodes, ["x"], [nodes[-1].name])
    assert m(np.float32(0)) == 10_000


def test_intermediates_are_freed_after_last_use(probe_ops):
    class Check:
        dead = None

    def Check_fn(x):
        Check.dead = all(r() is None for r in probe_ops)
        return x

    registry.register("TestCheck", Check_fn, replace=True)
    try:
        nodes = [placeholder("x", "float32", [None]),
                 Node("p", "TestProbe", ["x"]), Node("a", "TestInc", ["p"]),
                 Node("b", "TestInc", ["a"]), Node("c", "TestCheck", ["b"])]
        m = model_of(nodes, ["x"], ["c"])
        m(np.zeros(1000, np.float32))
        assert len(probe_ops) == 1 and Check.dead is True
    finally:
        registry.unregister("TestCheck")


def test_kernel_settings_are_reported(monkeypatch):
    """blas_kernels names OpenBLAS's core type in use and the environment variables that narrow
    numpy's or BLAS's SIMD kernels; kernel_note warns only when one is set."""
    from tfdeploy.runtime import threads

    for v in threads.KERNEL_ENV:
        monkeypatch.delenv(v, raising=False)
    k = threads.blas_kernels()
    assert k["env"] == {} and threads.kernel_note() is None
    if any("openblas" in p.lower() for p in threads._loaded_libraries()):
        assert isinstance(k["core"], str) and k["core"]  # "SkylakeX", "Haswell", "Zen"...
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert threads.blas_kernels()["env"] == {"OPENBLAS_CORETYPE": "Haswell"}
    note = threads.kernel_note()
    assert note.startswith("note: OPENBLAS_CORETYPE=Haswell is set") and "unset it" in note
    monkeypatch.setenv("NPY_DISABLE_CPU_FEATURES", "AVX512F")
    assert "OPENBLAS_CORETYPE=Haswell, NPY_DISABLE_CPU_FEATURES=AVX512F are set" in \
        threads.kernel_note()


def test_threads_share_a_model():
    m, w = dense_softmax()
    rng = np.random.default_rng(0)
    xs = [rng.random((3 + i, 784), dtype=np.float32) for i in range(8)]
    wants = [_softmax(x @ w["W"] + w["b"]) for x in xs]
    errors = []
    barrier = threading.Barrier(8)

    def work(i):
        barrier.wait()
        for _ in range(30):
            got = m(xs[i])
            if got.shape != wants[i].shape or not np.allclose(got, wants[i], atol=1e-6):
                errors.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_placeholder_does_not_remember_its_feed():
    m, _ = dense_softmax()
    x, y = m.get("input", "output")
    y.eval({x: np.zeros((1, 784), np.float32)})
    with pytest.raises(td.FeedError, match="input 'input' must be fed"):
        y.eval()


@pytest.mark.parametrize("value, match", [
    (np.zeros((2, 783), np.float32), r"expects shape \(None, 784\), got \(2, 783\)"),
    (np.zeros(784, np.float32), r"expects rank 2"),
    (np.array([["a"] * 784]), r"expects float32, got an array of <U1"),
])
def test_bad_feeds_are_named(value, match):
    m, _ = dense_softmax()
    with pytest.raises(td.FeedError, match=match):
        m(value)


def test_float64_feed_is_cast_like_tensorflow():
    m, w = dense_softmax()
    x = np.random.default_rng(2).random((2, 784))
    got = m(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _softmax(x.astype(np.float32) @ w["W"] + w["b"]), rtol=1e-5)


def test_int_input_rejects_floats():
    nodes = [placeholder("i", "int32", [None]), Node("o", "TestInc", ["i"])]
    registry.register("TestInc", lambda x: x + 1, replace=True)
    try:
        m = model_of(nodes, ["i"], ["o"])
        assert m(np.array([1, 2], np.int64)).dtype == np.int32  # same kind: cast
        with pytest.raises(td.FeedError, match="expects int32, got an array of float64"):
            m(np.array([1.5]))
    finally:
        registry.unregister("TestInc")


def test_call_argument_errors():
    m, _ = dense_softmax()
    with pytest.raises(td.FeedError, match="takes 1 input"):
        m(np.zeros((1, 784)), np.zeros((1, 784)))
    with pytest.raises(td.FeedError, match="no input named 'nope'"):
        m(nope=np.zeros((1, 784)))
    with pytest.raises(td.FeedError, match="missing input"):
        m()
    with pytest.raises(td.TFDeployError, match="no tensor named 'nope'"):
        m.get("nope")


def test_kernel_errors_name_the_node():
    def Boom(x):
        raise ValueError("bad things")

    registry.register("TestBoom", Boom, replace=True)
    try:
        m = model_of([placeholder("x", "float32", None), Node("kaboom", "TestBoom", ["x"])],
                     ["x"], ["kaboom"])
        with pytest.raises(td.ExecutionError,
                           match=r"node 'kaboom' \(TestBoom\): ValueError: bad things"):
            m(np.zeros(3, np.float32))
    finally:
        registry.unregister("TestBoom")


def test_constant_subgraphs_are_folded():
    calls = []

    def Counted(x):
        calls.append(1)
        return x * 2

    registry.register("TestCounted", Counted, replace=True)
    try:
        nodes = [placeholder("x", "float32", None), const("c", np.float32(3)),
                 Node("d", "TestCounted", ["c"]), Node("o", "AddV2", ["x", "d"])]
        m = model_of(nodes, ["x"], ["o"])
        assert m(np.float32(1)) == 7
        compiled = len(calls)  # once per plan compiled (generic, traced, specialized)
        for _ in range(5):
            assert m(np.float32(1)) == 7
        assert len(calls) == compiled <= 3  # folded at compile time, never run per call
    finally:
        registry.unregister("TestCounted")


def _scaled_conv(extra=()):
    """x -> Conv2D -> Mul(scale) -> AddV2(bias) [+ ``extra`` nodes]: a chain whose fused step
    (the scale folded into the filter) rounds otherwise than the unfused trace."""
    rng = np.random.default_rng(0)
    nodes = [placeholder("x", "float32", [None, 8, 8, 4]),
             const("w", rng.standard_normal((3, 3, 4, 8)).astype(np.float32)),
             const("s", rng.uniform(0.5, 2, 8).astype(np.float32)),
             const("b", rng.standard_normal(8).astype(np.float32)),
             Node("c", "Conv2D", ["x", "w"], {"T": "float32", "strides": [1, 1, 1, 1],
                                              "padding": "SAME", "data_format": "NHWC",
                                              "dilations": [1, 1, 1, 1]}),
             Node("m", "Mul", ["c", "s"], {"T": "float32"}),
             Node("o", "AddV2", ["m", "b"], {"T": "float32"}), *extra]
    return nodes, rng.standard_normal((2, 8, 8, 4)).astype(np.float32)


def test_the_first_call_gives_the_bits_of_every_later_one(monkeypatch):
    """The first call with new shapes runs the unfused tracing plan, then returns the
    specialized plan's result on the same feeds: the same bits as every later call (the
    trace's own result differs in the last bits: 758 of 1024 values here)."""
    nodes, x = _scaled_conv()
    m = model_of(nodes, ["x"], ["o"])
    first = m(x)
    assert all(np.array_equal(first, m(x)) for _ in range(2))
    assert np.array_equal(m(x[:1]), m(x[:1]))  # (a new shape: its own first call)
    monkeypatch.setattr(td.model, "_repeatable", lambda g: False)
    m = model_of(nodes, ["x"], ["o"])  # (the trace's result, as a stateful graph gets)
    first = m(x)
    assert not np.array_equal(first, m(x))
    np.testing.assert_allclose(first, m(x), rtol=1e-5, atol=1e-5)


def test_graphs_whose_second_run_differs_return_the_trace():
    """A stateful sampler or a user's kernel: the first call is one run, the trace's (a
    sampler draws the next numbers on each run, as TF's; a user's kernel may count or log)."""
    from tfdeploy.model import _repeatable

    nodes, _ = _scaled_conv()
    assert _repeatable(model_of(nodes, ["x"], ["o"]).default_graph)
    shape = const("shape", np.int32([2, 3]))
    sampler = Node("r", "RandomUniform", ["shape"], {"dtype": "float32", "T": "int32",
                                                     "seed": 0, "seed2": 0})
    assert not _repeatable(model_of(nodes + [shape, sampler], ["x"], ["o"]).default_graph)
    calls = []

    def Counted(x):
        calls.append(1)
        return x

    registry.register("TestCountedRun", Counted, replace=True)
    try:
        m = model_of(nodes + [Node("n", "TestCountedRun", ["o"])], ["x"], ["n"])
        assert not _repeatable(m.default_graph)
        m(np.zeros((1, 8, 8, 4), np.float32))
        assert len(calls) == 1  # (the trace only: no second run)
    finally:
        registry.unregister("TestCountedRun")


def test_unsupported_ops_are_listed_together():
    nodes = [placeholder("x"), Node("a", "FancyOp", ["x"]), Node("b", "OtherOp", ["a"]),
             Node("c", "FancyOp", ["b"])]
    with pytest.raises(td.UnsupportedOpError) as e:
        model_of(nodes, ["x"], ["c"])
    msg = str(e.value)
    assert "2 op type(s)" in msg and "FancyOp: used by 'a', 'c'" in msg
    assert "OtherOp: used by 'b'" in msg and "td.Operation" in msg


def test_multiple_graphs_and_keys(tmp_path):
    m1, w = dense_softmax(seed=0)
    m2, _ = dense_softmax(seed=1)
    m = td.Model()
    m._add_graph(m1.default_graph, "first")
    m._add_graph(m2.default_graph, None)
    p = tmp_path / "two.pkl"
    m.save(p)
    loaded = td.Model(p)
    assert list(loaded.graphs) == ["first", "graph_1"]
    x = np.ones((1, 784), np.float32)
    a = loaded.get("output").eval({loaded.get("input"): x})
    b = loaded.get("output", key="graph_1").eval({loaded.get("input", key="graph_1"): x})
    np.testing.assert_allclose(a, m1(x), rtol=1e-6)
    np.testing.assert_allclose(b, m2(x), rtol=1e-6)
    with pytest.raises(td.TFDeployError, match="same graph"):
        loaded.eval([loaded.get("output"), loaded.get("output", key="graph_1")], {})


def test_fetched_constants_are_copies():
    nodes = [placeholder("x", "float32", None), const("c", np.arange(3, dtype=np.float32)),
             Node("d", "Neg", ["c"], {"T": "float32"})]
    m = model_of(nodes, ["x"], ["d"])
    a = m.get("d").eval()
    a[:] = 100  # the caller owns what it gets
    np.testing.assert_array_equal(m.get("d").eval(), [0, -1, -2])


@pytest.mark.parametrize("op,attrs,extra", [
    ("Identity", {"T": "float32"}, []),
    ("Reshape", {"T": "float32", "Tshape": "int32"}, [np.array([6], np.int32)]),
    ("Transpose", {"T": "float32", "Tperm": "int32"}, [np.array([1, 0], np.int32)]),
    ("Squeeze", {"T": "float32", "squeeze_dims": []}, []),
])
def test_outputs_never_share_a_feeds_memory(op, attrs, extra):
    """TF returns new tensors: writing into an output must not change the caller's input."""
    nodes = [placeholder("x", "float32", [2, 3])]
    ins = ["x"]
    for i, v in enumerate(extra):
        nodes.append(const(f"k{i}", v))
        ins.append(f"k{i}")
    nodes.append(Node("y", op, ins, attrs))
    m = model_of(nodes, ["x"], ["y"])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = m(x)
    assert not np.shares_memory(x, y)
    y[...] = -1
    np.testing.assert_array_equal(x, np.arange(6).reshape(2, 3))


def test_string_feeds_become_bytes():
    registry.register("TestStrLen", lambda x: np.array([len(v) for v in x.reshape(-1)],
                                                       np.int32).reshape(x.shape), replace=True)
    try:
        m = model_of([placeholder("s", "string", [None]), Node("n", "TestStrLen", ["s"])],
                     ["s"], ["n"])
        for feed in (np.array(["ab", "été"]), np.array([b"ab", "été".encode()]),
                     np.array(["ab", b"\xc3\xa9t\xc3\xa9"], dtype=object), ["ab", "été"]):
            np.testing.assert_array_equal(m(feed), [2, 5])
        with pytest.raises(td.FeedError, match="string input holds a int"):
            m(np.array(["ab", 3], dtype=object))
        with pytest.raises(td.FeedError, match="expects string"):
            m(np.array([1.0]))
    finally:
        registry.unregister("TestStrLen")


def test_a_model_is_not_pickled_but_says_how_to_ship_it():
    import pickle

    from graphs import dense_softmax

    m, _ = dense_softmax()
    with pytest.raises(TypeError, match="not picklable: send its file"):
        pickle.dumps(m)


def test_softmax_rows_do_not_depend_on_the_batch():
    # (a matmul's last bits may depend on the rows, through BLAS; a softmax's must not)
    import tfdeploy.kernels.nn.core as nn

    for dt in (np.float32, np.float64):
        logits = np.random.default_rng(3).standard_normal((64, 100)).astype(dt) * 9
        full = nn.Softmax(logits)
        for k in (1, 3, 40):
            np.testing.assert_array_equal(nn.Softmax(logits[:k]), full[:k])
        # one row (reduced to numpy scalars): any row, as a vector, a (1, 1, n) block or a
        # strided view, gives the batch's values
        for i in (0, 17, 63):
            np.testing.assert_array_equal(nn.Softmax(logits[i]), full[i])
            np.testing.assert_array_equal(nn.Softmax(logits[i].reshape(1, 1, -1)),
                                          full[i].reshape(1, 1, -1))
            np.testing.assert_array_equal(nn.Softmax(logits.T.copy().T[i:i + 1]), full[i:i + 1])
        col = nn.Softmax(logits[:, :1].T)  # (1, 64): a column's values, strided
        np.testing.assert_array_equal(col, nn.Softmax(np.ascontiguousarray(logits[:, :1].T)))


def test_softmax_of_few_classes_over_many_rows():
    """Few classes (up to 64) over many rows go over the transposed rows, in blocks: the
    row-wise path's values bit for bit (numpy's order of a row's sum, 8 running sums from 8
    classes on), so any row's values whatever the rows beside it (a block of a segmentation
    map, or the whole map), in place too."""
    import tfdeploy.kernels.nn.core as nn

    rng = np.random.default_rng(5)
    for dt in (np.float32, np.float64):
        for c in (2, 3, 7, 8, 12, 16, 21, 33, 64):
            logits = (rng.standard_normal((4096, c)) * 6).astype(dt)
            full = nn.Softmax(logits)
            rowwise = np.stack([nn.Softmax(r) for r in logits[:300]])
            np.testing.assert_array_equal(full[:300], rowwise)
            for a, b in ((0, 48), (100, 1000), (4000, 4096)):
                np.testing.assert_array_equal(nn.Softmax(logits[a:b]), full[a:b])
            np.testing.assert_allclose(full.sum(-1), 1, rtol=1e-6)
    # rows across blocks (2 classes: 65536 rows a block), in place
    logits = (rng.standard_normal((70000, 2)) * 6).astype(np.float32)
    full = nn.Softmax(logits)
    np.testing.assert_array_equal(full[65530:65540],
                                  np.stack([nn.Softmax(r) for r in logits[65530:65540]]))
    same = logits.copy()
    assert nn.softmax_into(same, same) is same
    np.testing.assert_array_equal(same, full)


def test_tiled_constant_operands(monkeypatch):
    """``Tiled.like(y)``: the constant repeated to y's shape (read-only, kept) when y is
    small, else the constant itself: also when it does not broadcast to y (the op raises
    numpy's error then) or is y's shape already. At most SHAPES shapes are kept."""
    from tfdeploy.kernels.common import Tiled

    b = np.arange(4, dtype=np.float32)
    t = Tiled(b)
    y = np.ones((3, 4), np.float32)
    r = t.like(y)
    assert r.shape == (3, 4) and r.flags.c_contiguous and not r.flags.writeable
    np.testing.assert_array_equal(r, np.broadcast_to(b, (3, 4)))
    assert t.like(np.zeros((3, 4), np.float32)) is r
    np.testing.assert_array_equal(np.add(y, t.like(y), out=y), 1 + np.broadcast_to(b, (3, 4)))
    assert t.like(np.zeros(4, np.float32)) is b
    assert t.like(np.zeros((Tiled.LIMIT // 4 + 1, 4), np.float32)) is b
    assert t.like(np.zeros((0, 4), np.float32)) is b
    wrong = np.zeros((3, 5), np.float32)
    assert t.like(wrong) is b
    with pytest.raises(ValueError, match="broadcast"):
        np.add(wrong, t.like(wrong), out=wrong)
    for k in range(2 * Tiled.SHAPES):  # (beyond SHAPES shapes: the constant, broadcast)
        kept = len(t.shapes) < Tiled.SHAPES
        r = t.like(np.zeros((k + 1, 2, 4)))
        assert (r.shape == (k + 1, 2, 4)) if kept else (r is b)
    assert len(t.shapes) == Tiled.SHAPES
    # all copies together stay within BUDGET bytes, and are given back with their constant
    # (the collector off meanwhile: other tests' models going would give theirs back too)
    import gc

    gc.collect()
    gc.disable()
    try:
        used = Tiled._used[0]
        t2 = Tiled(b)
        monkeypatch.setattr(Tiled, "BUDGET", used + 3 * 4 * 4)  # (room for one (3, 4) copy)
        assert t2.like(np.zeros((3, 4), np.float32)).shape == (3, 4)
        assert t2.like(np.zeros((5, 4), np.float32)) is b
        assert Tiled._used[0] == used + 48
        del t2
        assert Tiled._used[0] == used
    finally:
        gc.enable()


@pytest.mark.parametrize("dt", [np.int32, np.int64])
def test_constant_table_gather_and_reshape(dt):
    """GatherV2 from a constant table (an embedding) and Reshape to a constant shape run as
    specialized kernels: the generic kernels' values, and their errors, naming the node: a
    negative or too large index (np.take would wrap a negative one), a shape that does not
    fit."""
    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    m = model_of([placeholder("ids", np.dtype(dt).name, None), const("table", table),
                  const("axis", np.int32(0)), const("shape", np.array([-1, 2], np.int32)),
                  Node("emb", "GatherV2", ["table", "ids", "axis"],
                       {"Tparams": "float32", "Tindices": np.dtype(dt).name,
                        "Taxis": "int32", "batch_dims": 0}),
                  Node("out", "Reshape", ["emb", "shape"], {"T": "float32", "Tshape": "int32"})],
                 ["ids"], ["out"])
    plan = m.plan(np.zeros((2, 3), dt))
    assert [st.kernel.__name__ for st in plan.steps] == ["GatherV2_", "Reshape"]
    for ids in [np.array([[9, 0, 3], [3, 3, 1]], dt), np.array(7, dt), np.zeros((0, 2), dt)]:
        got = m(ids)
        np.testing.assert_array_equal(got, table[ids].reshape(-1, 2))
        assert got.flags.writeable and not np.shares_memory(got, table)
    for bad in (-1, 10):
        with pytest.raises(td.ExecutionError,
                           match=rf"node 'emb' \(GatherV2\).*index {bad} is not in \[0, 10\)"):
            m(np.array([[1, bad]], dt))
    m2 = model_of([placeholder("x", "float32", None), const("shape", np.array([-1, 3], np.int32)),
                   Node("out", "Reshape", ["x", "shape"], {"T": "float32", "Tshape": "int32"})],
                  ["x"], ["out"])
    with pytest.raises(td.ExecutionError, match=r"node 'out' \(Reshape\).*cannot reshape a "
                       r"tensor of shape \[2, 2\] \(4 elements\) to \[-1, 3\]"):
        m2(np.zeros((2, 2), np.float32))


def test_constant_transpose_and_expand_dims():
    """Transpose by a constant perm (a negative entry too) and ExpandDims at a constant axis
    run as specialized kernels (the perm and axis resolved once per input rank): the generic
    kernels' values on inputs of two shapes and of no values, outputs the caller's own, and
    their errors naming the node (a perm of another rank, an axis out of range)."""
    m = model_of([placeholder("x", "float32", None), const("perm", np.array([0, -1, 1],
                                                                             np.int32)),
                  const("axis", np.int32(-2)),
                  Node("t", "Transpose", ["x", "perm"], {"T": "float32", "Tperm": "int32"}),
                  Node("e", "ExpandDims", ["t", "axis"], {"T": "float32", "Tdim": "int32"})],
                 ["x"], ["e"])
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    plan = m.plan(x)
    assert [st.kernel.__qualname__ for st in plan.steps] == [
        "_transpose.<locals>.Transpose", "_expand_dims.<locals>.ExpandDims"]
    for v in (x, np.ones((1, 5, 2), np.float32), np.zeros((3, 0, 2), np.float32)):
        got = m(v)
        np.testing.assert_array_equal(got, np.expand_dims(np.transpose(v, (0, 2, 1)), -2))
        assert got.shape == (v.shape[0], v.shape[2], 1, v.shape[1])
        assert got.flags.writeable and not np.shares_memory(got, v)
    with pytest.raises(td.ExecutionError, match=r"node 't' \(Transpose\).*perm \[0, -1, 1\] "
                       r"is not a permutation of the 2 dims"):
        m(np.zeros((2, 2), np.float32))
    m2 = model_of([placeholder("x", "float32", None), const("axis", np.int32(3)),
                   Node("e", "ExpandDims", ["x", "axis"], {"T": "float32", "Tdim": "int32"})],
                  ["x"], ["e"])
    assert m2(x).shape == (2, 3, 4, 1)
    with pytest.raises(td.ExecutionError, match=r"node 'e' \(ExpandDims\).*axis 3 out of "
                       r"range for rank 2"):
        m2(np.zeros((2, 2), np.float32))


@pytest.mark.parametrize("dt", [np.int32, np.int64])
def test_keras_embedding_lookup_is_one_wrapped_take(dt):
    """Keras 3 Embedding's ``GatherV2(table, where(i < 0, i + n, i))`` runs as one
    ``_WrappedGather``: the unfused values for indices in [-n, n), and the unfused error,
    naming the gather, outside; with another n than the table's it is left alone."""
    table = np.arange(40, dtype=np.float32).reshape(10, 4)

    def model(n):
        t = {"T": np.dtype(dt).name}
        return model_of([
            placeholder("ids", np.dtype(dt).name, None), const("table", table),
            const("axis", np.int32(0)), const("zero", np.array(0, dt)),
            const("n", np.array(n, dt)),
            Node("neg", "Less", ["ids", "zero"], t), Node("add", "AddV2", ["ids", "n"], t),
            Node("sel", "SelectV2", ["neg", "add", "ids"], t),
            Node("emb", "GatherV2", ["table", "sel", "axis"],
                 {"Tparams": "float32", "Tindices": np.dtype(dt).name, "Taxis": "int32",
                  "batch_dims": 0})], ["ids"], ["emb"])

    m = model(10)
    ops = [st.op for st in m.plan(np.zeros((2, 3), dt)).steps]
    assert ops == ["_WrappedGather"], ops
    plain = m.plan(np.zeros((2, 3), dt), optimize=False)
    for ids in [np.array([[9, -1, 3], [-10, 3, 0]], dt), np.array(-7, dt),
                np.zeros((0, 2), dt)]:
        got = m(ids)
        np.testing.assert_array_equal(got, plain.run((ids,))[0])
        np.testing.assert_array_equal(got, table[ids])
        assert got.flags.writeable and not np.shares_memory(got, table)
    for bad, shown in ((-11, -1), (10, 10)):
        with pytest.raises(td.ExecutionError,
                           match=rf"node 'emb' \(GatherV2\).*index {shown} is not in \[0, 10\)"):
            m(np.array([[1, bad]], dt))
    assert "_WrappedGather" not in [st.op for st in model(9).plan(np.zeros(2, dt)).steps]


def test_check_numerics_names_nan_and_inf():
    for dt in ("float16", "float32", "float64"):
        m = model_of([placeholder("x", dt, [None, 3]),
                      Node("c", "CheckNumerics", ["x"], {"T": dt, "message": "bad input"})],
                     ["x"], ["c"])
        x = np.arange(6, dtype=dt).reshape(2, 3)
        np.testing.assert_array_equal(m(x), x)
        for v, what in ((np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")):
            y = x.copy()
            y[1, 2] = v
            with pytest.raises(td.TFDeployError, match=f"bad input : Tensor had {what}"):
                m(y)


def test_inf_and_nan_give_tfs_values_without_numpy_warnings():
    """TF computes inf and NaN silently; a model call does too (numpy's error state is set to
    ignore for the call, in its worker threads as well), and leaves the caller's as it was."""
    nodes = [placeholder("x"), placeholder("y"), Node("d", "Sub", ["x", "x"]),
             Node("l", "Log", ["x"]), Node("q", "RealDiv", ["x", "y"]),
             Node("e", "Exp", ["x"]), Node("m", "Mul", ["x", "y"])]
    m = model_of(nodes, ["x", "y"], ["d", "l", "q", "e", "m"])
    x = np.array([np.inf, -1, 0, 100, np.nan, -np.inf], np.float32)
    y = np.array([0, 0, 0, np.inf, 1, 0], np.float32)
    with np.errstate(all="ignore"):
        want = (x - x, np.log(x), x / y, np.exp(x), x * y)
    for _ in range(2):  # (the tracing call, then the specialized plan)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = m(x, y)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    with np.errstate(all="raise"):
        m(x, y)  # (no FloatingPointError from inside either)
        with pytest.raises(td.ExecutionError):
            m(x, y[:2])
        with pytest.raises(FloatingPointError):
            np.log(np.zeros(1, np.float32))
    with pytest.warns(RuntimeWarning):
        np.log(np.zeros(1, np.float32))
