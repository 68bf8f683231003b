"""Control flow on whole models: Keras RNNs (Keras 3 and tf_keras), TF1 control-flow-v1 graphs,
and the runtime pieces (nested plans, TensorList value semantics) tested on hand-built IR."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import tfdeploy as td
from tfdeploy.ir.graph import FuncAttr, Graph, Node, TensorSpec, canonical_ref
from tfree import run_without_tf

pytestmark = pytest.mark.tf


def _tf():
    return pytest.importorskip("tensorflow")


def _keras(flavour):
    return pytest.importorskip("keras" if flavour == "keras3" else "tf_keras")


def _compare(got, want, rtol=1e-5, atol=1e-5):
    got = list(got) if isinstance(got, tuple) else [got]
    want = [np.asarray(w) for w in (want if isinstance(want, (list, tuple)) else [want])]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------- Keras RNNs

def _rnn_models(k):
    L = k.layers

    def seq(*layers, shape=(None, 3), dtype="float32"):
        return k.Sequential([k.Input(shape, dtype=dtype), *layers])

    def with_state():
        inp = k.Input((None, 3))
        o, h, c = L.LSTM(4, return_sequences=True, return_state=True)(inp)
        return k.Model(inp, [o, h, c])

    def gru_state():
        inp = k.Input((None, 3))
        o, h = L.GRU(4, return_state=True, go_backwards=True)(inp)
        return k.Model(inp, [o, h])

    return {
        "lstm": lambda: seq(L.LSTM(4)),
        "lstm_sequences": lambda: seq(L.LSTM(4, return_sequences=True)),
        "gru": lambda: seq(L.GRU(4)),
        "gru_reset_before": lambda: seq(L.GRU(4, reset_after=False, return_sequences=True)),
        "simple_rnn": lambda: seq(L.SimpleRNN(4, return_sequences=True)),
        "bidirectional": lambda: seq(L.Bidirectional(L.LSTM(4, return_sequences=True))),
        "bidirectional_gru_concat": lambda: seq(L.Bidirectional(L.GRU(3), merge_mode="sum")),
        "stacked": lambda: seq(L.LSTM(5, return_sequences=True), L.GRU(4, return_sequences=True),
                               L.SimpleRNN(3)),
        "return_state": with_state,
        "gru_backwards_state": gru_state,
        "mask_zero": lambda: seq(L.Embedding(10, 3, mask_zero=True), L.LSTM(4), shape=(None,),
                                 dtype="int32"),
        "mask_zero_gru_sequences": lambda: seq(L.Embedding(10, 3, mask_zero=True),
                                               L.GRU(4, return_sequences=True), shape=(None,),
                                               dtype="int32"),
        "masking_padded": lambda: seq(L.Masking(), L.LSTM(4, return_sequences=True)),
        "conv_lstm2d": lambda: seq(L.ConvLSTM2D(3, 3, padding="same"), shape=(None, 6, 6, 2)),
    }


def _rnn_input(name, batch, steps, rng):
    if name.startswith("mask_zero"):
        ids = rng.integers(1, 10, size=(batch, steps)).astype(np.int32)
        for b in range(batch):  # right-padded, different lengths
            ids[b, max(1, steps - b):] = 0
        return ids
    if name == "conv_lstm2d":
        return rng.standard_normal((batch, steps, 6, 6, 2)).astype(np.float32)
    x = rng.standard_normal((batch, steps, 3)).astype(np.float32)
    if name == "masking_padded":
        for b in range(batch):
            x[b, max(1, steps - 2 * b):] = 0.0
    return x


RNN_NAMES = ["lstm", "lstm_sequences", "gru", "gru_reset_before", "simple_rnn", "bidirectional",
             "bidirectional_gru_concat", "stacked", "return_state", "gru_backwards_state",
             "mask_zero", "mask_zero_gru_sequences", "masking_padded", "conv_lstm2d"]


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
@pytest.mark.parametrize("name", RNN_NAMES)
def test_keras_rnn(flavour, name):
    k = _keras(flavour)
    k.utils.set_random_seed(0)
    model = _rnn_models(k)[name]()
    m = td.convert(model)
    assert m.inputs[0].shape[:2] == [None, None]
    m = td.load(_save(m))
    rng = np.random.default_rng(1)
    # dynamic batch and sequence length: several shapes through one converted model
    for batch, steps in ((3, 5), (1, 2), (2, 7)):
        x = _rnn_input(name, batch, steps, rng)
        want = model(x, training=False)
        _compare(m(x), want, rtol=1e-4, atol=1e-5)


def _save(m) -> bytes:
    import io

    buf = io.BytesIO()
    m.save(buf)
    return buf.getvalue()


def test_keras_rnn_without_tensorflow(tmp_path):
    k = _keras("keras3")
    k.utils.set_random_seed(0)
    model = _rnn_models(k)["stacked"]()
    m = td.convert(model)
    p = tmp_path / "rnn.tfd"
    m.save(p)
    x = _rnn_input("stacked", 2, 6, np.random.default_rng(0))
    (got,) = run_without_tf(p, [x], tmp_path)
    _compare(got, model(x, training=False), rtol=1e-4)


# ---------------------------------------------------------------------------- tf.function loops

def test_greedy_decoder_stops_on_end_token():
    tf = _tf()
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((12, 8)).astype(np.float32)
    w = rng.standard_normal((8, 8)).astype(np.float32) * 0.5
    out = rng.standard_normal((8, 12)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([None, 8], tf.float32)])
    def decode(start, h0):
        end = 0
        ta = tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[None])

        def cond(t, tok, h, done, ta):
            return tf.logical_and(t < 20, tf.logical_not(tf.reduce_all(done)))

        def body(t, tok, h, done, ta):
            h = tf.tanh(tf.matmul(h, w) + tf.gather(emb, tok))
            nxt = tf.argmax(tf.matmul(h, out), axis=-1, output_type=tf.int32)
            nxt = tf.where(done, end, nxt)
            return t + 1, nxt, h, tf.logical_or(done, tf.equal(nxt, end)), ta.write(t, nxt)

        t, _, h, _, ta = tf.while_loop(
            cond, body, [0, start, h0, tf.zeros_like(start, tf.bool), ta])
        return tf.transpose(ta.stack()), t, h

    m = td.convert(decode)
    for batch in (1, 3):
        start = rng.integers(1, 12, size=batch).astype(np.int32)
        h0 = rng.standard_normal((batch, 8)).astype(np.float32)
        want = decode(start, h0)
        assert int(want[1]) < 20  # the loop stopped on the end token, not the step limit
        _compare(m(start, h0), want, rtol=1e-5)


def test_loop_growing_shape_invariant():
    tf = _tf()

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def grow(x):
        def body(i, acc):
            return i + 1, tf.concat([acc, x[i:i + 1] * tf.cast(i, tf.float32)], axis=0)

        _, acc = tf.while_loop(lambda i, acc: i < tf.shape(x)[0], body,
                               [0, tf.zeros([0, 2])],
                               shape_invariants=[tf.TensorShape([]), tf.TensorShape([None, 2])])
        return acc

    m = td.convert(grow)
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    _compare(m(x), grow(x))


def test_loop_list_updates_free_superseded_elements():
    """Overwriting one list element per step (Keras 3 RNNs without return_sequences) must not
    keep every superseded element alive until the loop ends."""
    import tracemalloc

    tf = _tf()

    @tf.function(input_signature=[tf.TensorSpec([None, 1000], tf.float32)])
    def f(x):
        def body(i, h, ta):
            h = h * 0.5 + 1.0
            return i + 1, h, ta.write(0, h)

        ta = tf.TensorArray(tf.float32, size=1)
        return tf.while_loop(lambda i, h, ta: i < 500, body, [0, x, ta])[2].stack()

    m = td.convert(f)
    x = np.zeros((8, 1000), np.float32)  # 32 kB per step, 16 MB if all 500 were kept
    tracemalloc.start()
    try:
        got = m(x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4e6, f"peak {peak / 1e6:.1f} MB"
    _compare(got, f(x))


# ---------------------------------------------------------------------------- TF1 control flow v1

@contextlib.contextmanager
def _control_flow_v1():
    from tensorflow.python.ops import control_flow_util

    old = control_flow_util.ENABLE_CONTROL_FLOW_V2
    control_flow_util.ENABLE_CONTROL_FLOW_V2 = False
    try:
        yield
    finally:
        control_flow_util.ENABLE_CONTROL_FLOW_V2 = old


def _v1_graph(build, feeds):
    """Build a TF1 graph with control flow v1, run it, freeze it: (GraphDef, in, out, want)."""
    tf = _tf()
    tf1 = tf.compat.v1
    g = tf.Graph()
    with _control_flow_v1(), g.as_default():
        ins, outs = build(tf, tf1)
        with tf1.Session(graph=g) as sess:
            sess.run(tf1.global_variables_initializer())
            want = sess.run(outs, dict(zip(ins, feeds)))
            gd = tf1.graph_util.convert_variables_to_constants(
                sess, g.as_graph_def(), [o.op.name for o in outs])
    return gd, [t.name for t in ins], [t.name for t in outs], want


def _v1_model(gd, inputs, outputs) -> td.Model:
    """The converter's steps, with raise_control_flow_v1 where graph_from_def should call it."""
    from tfdeploy.convert.cflow_v1 import control_inputs_of, raise_control_flow_v1
    from tfdeploy.convert.graphdef import function_from_def, node_from_def, prune

    lib = {f.signature.name: f for f in gd.library.function}
    g = Graph([node_from_def(nd) for nd in gd.node])
    g.functions = {k: function_from_def(f, lib) for k, f in lib.items()}
    g = raise_control_flow_v1(g, control_inputs_of(gd))
    functions = g.functions
    outs = [canonical_ref(r) for r in outputs]
    g = prune(g, outs)
    g.functions = functions
    by = g.by_name()
    g.inputs = [TensorSpec(r.split(":")[0], canonical_ref(r),
                           by[r.split(":")[0]].attrs.get("dtype") or "unknown", None)
                for r in inputs]
    g.outputs = [TensorSpec(f"output_{i}", r, "unknown", None) for i, r in enumerate(outs)]
    assert not {"Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond"} & g.op_types()
    m = td.Model()
    m._add_graph(g, None)
    return td.load(_save(m))


def _v1_nested_loops(tf, tf1):
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    n = tf.shape(x)[0]

    def outer(i, acc, count):
        def inner(j, a, c):
            return j + 1, a + x[i] * tf.cast(j, tf.float32), c + 1

        _, a2, c2 = tf1.while_loop(lambda j, a, c: j < i + 1, inner, [tf.constant(0), acc, count])
        return i + 1, a2, c2

    i, acc, count = tf1.while_loop(lambda i, a, c: i < n, outer,
                                   [tf.constant(0), tf.zeros([3]), tf.constant(0)])
    return [x], [acc, i, count]


def _v1_cond_in_loop(tf, tf1):
    x = tf1.placeholder(tf.float32, [None], name="x")

    def body(i, a):
        y = tf1.cond(a[0] > 3.0, lambda: a * 0.5, lambda: tf.constant(2.0) + a)
        return i + 1, y

    i, a = tf1.while_loop(lambda i, a: i < 6, body, [tf.constant(0), x])
    return [x], [a, i]


def _v1_loop_in_cond(tf, tf1):
    x = tf1.placeholder(tf.float32, [], name="x")

    def then():
        return tf1.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * 2.0), (0, x))[1]

    return [x], [tf1.cond(x > 0, then, lambda: x - 1.0)]


def _v1_const_branches(tf, tf1):
    p = tf1.placeholder(tf.bool, [], name="p")
    a = tf1.cond(p, lambda: tf.constant(1.0), lambda: tf.constant(2.0))
    b, c = tf1.cond(p, lambda: (tf.constant([1, 2]), tf.constant(3.0)),
                    lambda: (tf.constant([4, 5]), tf.constant(6.0)))
    return [p], [a, b, c]


def _v1_nested_cond(tf, tf1):
    x = tf1.placeholder(tf.float32, [], name="x")
    r = tf1.cond(x > 0, lambda: tf1.cond(x > 2, lambda: x * 10, lambda: x * 5), lambda: -x)
    return [x], [r]


def _v1_case(tf, tf1):
    x = tf1.placeholder(tf.int32, [], name="x")
    xf = tf.cast(x, tf.float32)
    r = tf1.case([(tf.equal(x, 1), lambda: xf * 10), (tf.equal(x, 2), lambda: xf * 20)],
                 default=lambda: xf - 1)
    r2 = tf.switch_case(x, [lambda: xf + 1, lambda: xf + 2, lambda: xf + 3])
    return [x], [r, r2]


def _v1_max_iterations(tf, tf1):
    x = tf1.placeholder(tf.int32, [], name="x")
    i, s = tf1.while_loop(lambda i, s: s < 1000, lambda i, s: (i + 1, s + i), (0, x),
                          maximum_iterations=7)
    return [x], [i, s]


def _v1_tensor_array(tf, tf1):
    x = tf1.placeholder(tf.float32, [None, 2], name="x")
    n = tf.shape(x)[0]
    out = tf1.TensorArray(tf.float32, size=n)
    inp = tf1.TensorArray(tf.float32, size=n).unstack(x)

    def body(i, out, s):
        s = s + inp.read(i)
        return i + 1, out.write(i, s * 2.0), s

    _, out, s = tf1.while_loop(lambda i, out, s: i < n, body, [0, out, tf.zeros([2])])
    return [x], [out.stack(), s, out.size()]


def _v1_map_scan_fold(tf, tf1):
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    return [x], [tf1.map_fn(lambda r: tf.reduce_sum(r * r), x),
                 tf1.scan(lambda a, r: a + r, x),
                 tf1.foldl(lambda a, r: a * 0.5 + r, x)]


def _v1_variables(tf, tf1):
    x = tf1.placeholder(tf.float32, [None], name="x")
    v = tf1.Variable(np.array([1.0, 2.0, 3.0], np.float32), use_resource=False, name="v")
    r = tf1.cond(tf.reduce_sum(x) > 0, lambda: x * v, lambda: x + v)
    _, a = tf1.while_loop(lambda i, a: i < 3, lambda i, a: (i + 1, a * v), [0, x])
    return [x], [r, a]


def _v1_greedy_decoder(tf, tf1):
    # stops on the end token 0; a cond inside the loop scores odd and even tokens differently
    start = tf1.placeholder(tf.int32, [], name="start")
    table = tf1.placeholder(tf.float32, [5, 5], name="table")
    w = tf.constant(np.eye(5, dtype=np.float32) * 2)

    def body(t, tok, ta, scores, k):
        row = tf.gather(table, tok)
        nxt = tf.argmax(tf.matmul(row[None], w)[0], output_type=tf.int32)
        score, k2 = tf1.cond(tf.equal(nxt % 2, 1), lambda: (tf.reduce_sum(row), k + 1),
                             lambda: (tf.constant(-1.0), k))
        return t + 1, nxt, ta.write(t, nxt), scores.write(t, score), k2

    ta = tf1.TensorArray(tf.int32, size=0, dynamic_size=True)
    scores = tf1.TensorArray(tf.float32, size=0, dynamic_size=True)
    t, _, ta, scores, k = tf1.while_loop(
        lambda t, tok, ta, scores, k: tf.logical_and(t < 10, tf.not_equal(tok, 0)), body,
        [0, start, ta, scores, 0])
    return [start, table], [ta.stack(), t, scores.stack(), k]


# 3 -> 1 -> 2 -> 4 -> 0 (end) and 0 -> 1 -> 2 -> 4 -> 0: odd tokens on the way
_TABLE = np.array([[0, 3, 0, 0, 0], [0, 0, 9, 0, 0], [0, 0, 0, 0, 7], [0, 5, 0, 0, 0],
                   [6, 0, 1, 0, 0]], np.float32)

V1_GRAPHS = {
    "greedy_decoder": (_v1_greedy_decoder, [[np.int32(3), _TABLE], [np.int32(0), _TABLE]]),
    "nested_loops": (_v1_nested_loops, [[np.arange(12, dtype=np.float32).reshape(4, 3)],
                                        [np.zeros((0, 3), np.float32)]]),
    "cond_in_loop": (_v1_cond_in_loop, [[np.array([1.0, 2.0, 3.0], np.float32)]]),
    "loop_in_cond": (_v1_loop_in_cond, [[np.float32(1.5)], [np.float32(-1.5)]]),
    "const_branches": (_v1_const_branches, [[np.array(True)], [np.array(False)]]),
    "nested_cond": (_v1_nested_cond, [[np.float32(3)], [np.float32(1)], [np.float32(-1)]]),
    "case": (_v1_case, [[np.int32(1)], [np.int32(2)], [np.int32(5)], [np.int32(-1)]]),
    "max_iterations": (_v1_max_iterations, [[np.int32(3)], [np.int32(2000)]]),
    "tensor_array": (_v1_tensor_array, [[np.arange(10, dtype=np.float32).reshape(5, 2)]]),
    "map_scan_fold": (_v1_map_scan_fold, [[np.arange(12, dtype=np.float32).reshape(4, 3)]]),
    "variables": (_v1_variables, [[np.array([1.0, 2.0, 3.0], np.float32)],
                                  [np.array([-1.0, 2.0, -3.0], np.float32)]]),
}


@pytest.mark.parametrize("name", list(V1_GRAPHS))
def test_control_flow_v1(name):
    build, feed_sets = V1_GRAPHS[name]
    gd, ins, outs, want = _v1_graph(build, feed_sets[0])
    m = _v1_model(gd, ins, outs)
    _compare(m(*feed_sets[0]), want)
    for feeds in feed_sets[1:]:
        _compare(m(*feeds), _v1_graph(build, feeds)[3])


def test_lowered_switch_case_raised_back():
    """TF's freezing lowers tf.switch_case to _SwitchN/Merge, in the graph and inside While
    bodies; raise_control_flow_v1 turns both back into Case nodes."""
    tf = _tf()
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32), tf.TensorSpec([None], tf.float32)])
    def f(i, x):
        def body(j, y):
            return j + 1, tf.switch_case(j % 4, [lambda: y + 1.0, lambda: y * 2.0,
                                                 lambda: tf.ones_like(y) * 3.0])

        y = tf.while_loop(lambda j, y: j < i, body, [0, x])[1]
        return tf.switch_case(i, [lambda: y, lambda: -y, lambda: tf.constant([7.0, 8.0])])

    frozen = convert_variables_to_constants_v2(f.get_concrete_function(),
                                               lower_control_flow=False)
    gd = frozen.graph.as_graph_def()
    ops = {n.op for n in gd.node} | {n.op for fn in gd.library.function for n in fn.node_def}
    assert "_SwitchN" in ops  # TF lowered it: the raise pass is really exercised
    m = _v1_model(gd, [t.name for t in frozen.inputs], [t.name for t in frozen.outputs])
    assert "Case" in m.op_types()
    x = np.array([1.0, -2.0], np.float32)
    for i in (0, 1, 2, 5, -1):
        _compare(m(np.int32(i), x), f(np.int32(i), x))


def test_raise_without_control_inputs():
    """Without the GraphDef's control inputs, constant-only branches cannot be placed."""
    from tfdeploy.convert.cflow_v1 import raise_control_flow_v1
    from tfdeploy.convert.graphdef import node_from_def

    gd, ins, outs, want = _v1_graph(_v1_cond_in_loop, [np.array([1.0, 2.0], np.float32)])
    g = raise_control_flow_v1(Graph([node_from_def(nd) for nd in gd.node]))
    assert "While" in g.op_types()  # switched values place every node of this one
    gd, ins, outs, want = _v1_graph(_v1_const_branches, [np.array(True)])
    with pytest.raises(td.errors.ConversionError, match="control inputs"):
        raise_control_flow_v1(Graph([node_from_def(nd) for nd in gd.node]))


class _GRUCell:
    """A minimal RNN cell for tf.compat.v1.nn.dynamic_rnn (Keras 3 has no TF1 cells)."""

    def __init__(self, tf, tf1, n, scope):
        self.tf, self.tf1, self.n, self.scope = tf, tf1, n, scope

    state_size = property(lambda self: self.n)
    output_size = property(lambda self: self.n)

    def zero_state(self, batch, dtype):
        return self.tf.zeros([batch, self.n], dtype)

    def __call__(self, x, h, scope=None):
        tf, tf1 = self.tf, self.tf1
        with tf1.variable_scope(self.scope, reuse=tf1.AUTO_REUSE):
            init = tf1.random_normal_initializer(seed=1)
            w = tf1.get_variable("w", [int(x.shape[-1]) + self.n, 2 * self.n], initializer=init)
            u = tf1.get_variable("u", [int(x.shape[-1]) + self.n, self.n], initializer=init)
        z, r = tf.split(tf.sigmoid(tf.matmul(tf.concat([x, h], 1), w)), 2, axis=1)
        c = tf.tanh(tf.matmul(tf.concat([x, r * h], 1), u))
        h2 = z * h + (1 - z) * c
        return h2, h2


def _v1_dynamic_rnn(tf, tf1):
    x = tf1.placeholder(tf.float32, [None, None, 3], name="x")
    seq = tf1.placeholder(tf.int32, [None], name="seq")
    out, st = tf1.nn.dynamic_rnn(_GRUCell(tf, tf1, 4, "cell"), x, sequence_length=seq,
                                 dtype=tf.float32)
    out2, st2 = tf1.nn.dynamic_rnn(_GRUCell(tf, tf1, 3, "cell2"), out, dtype=tf.float32,
                                   time_major=False, scope="rnn2")
    return [x, seq], [tf.identity(out, name="outputs"), tf.identity(st2, name="state")]


def _dynamic_rnn_pb(tmp_path):
    rng = np.random.default_rng(0)
    feeds = [rng.standard_normal((3, 6, 3)).astype(np.float32), np.array([6, 4, 1], np.int32)]
    gd, ins, outs, want = _v1_graph(_v1_dynamic_rnn, feeds)
    path = tmp_path / "dynamic_rnn.pb"
    path.write_bytes(gd.SerializeToString())
    return path, ins, outs, feeds, want


def test_tf1_dynamic_rnn_frozen_pb(tmp_path):
    tf = _tf()
    path, ins, outs, feeds, want = _dynamic_rnn_pb(tmp_path)
    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(path.read_bytes())
    m = _v1_model(gd, ins, outs)
    assert {"While", "TensorArrayV3", "TensorArrayReadV3", "TensorArrayWriteV3"} <= m.op_types()
    _compare(m(*feeds), want)
    # another batch and sequence length
    x = np.random.default_rng(5).standard_normal((2, 3, 3)).astype(np.float32)
    seq = np.array([2, 3], np.int32)
    _compare(m(x, seq), _v1_graph(_v1_dynamic_rnn, [x, seq])[3])


def test_tf1_dynamic_rnn_through_td_convert(tmp_path):
    path, ins, outs, feeds, want = _dynamic_rnn_pb(tmp_path)
    m = td.convert(str(path), inputs=ins, outputs=outs)
    _compare(m(*feeds), want)


def test_select_cpu_implementations():
    """A call of tf_keras' GPU LSTM variant (CudnnRNNV3 inside) is pointed at the CPU one."""
    tf = _tf()
    from tfdeploy.convert.implementations import select_cpu_implementations

    k = _keras("tf_keras")
    model = k.Sequential([k.Input((None, 3)), k.layers.LSTM(4)])
    gd = tf.function(lambda x: model(x)).get_concrete_function(
        tf.TensorSpec([None, None, 3], tf.float32)).graph.as_graph_def()
    dev = {f.signature.name: f.attr["api_preferred_device"].s for f in gd.library.function
           if "api_implements" in f.attr}
    gpu = next(n for n, d in dev.items() if d == b"GPU" and "gpu_lstm_with_fallback" in n
               and n.startswith("__inference_gpu"))
    calls = [n for n in gd.node if n.op in ("PartitionedCall", "StatefulPartitionedCall")
             and n.attr["f"].func.name in dev]
    assert calls and all(dev[n.attr["f"].func.name] == b"CPU" for n in calls)
    for n in calls:
        n.attr["f"].func.name = gpu
    fixed = select_cpu_implementations(gd)
    for n in fixed.node:
        if n.name in {c.name for c in calls}:
            assert dev[n.attr["f"].func.name] == b"CPU"
    assert select_cpu_implementations(fixed) is fixed


# ---------------------------------------------------------------------------- hand-built IR

def _ph(name, dtype="float32"):
    return Node(name, "Placeholder", [], {"dtype": dtype, "shape": None})


def _const(name, value):
    from tfdeploy.dtypes import from_numpy

    value = np.asarray(value)
    return Node(name, "Const", [], {"dtype": from_numpy(value.dtype), "value": value})


def _graph(nodes, inputs, outputs, functions=None) -> Graph:
    g = Graph(nodes, [TensorSpec(i, f"{i}:0", "float32", None) for i in inputs],
              [TensorSpec(o, canonical_ref(o), "float32", None) for o in outputs])
    g.functions = functions or {}
    return g


def _model(g) -> td.Model:
    m = td.Model()
    m._add_graph(g, None)
    return td.load(_save(m))


def test_partitioned_calls_not_inlined():
    f = _graph([_ph("a"), _ph("b"), Node("mul", "Mul", ["a", "b"], {"T": "float32"}),
                Node("add", "AddV2", ["mul", "a"], {"T": "float32"})], ["a", "b"],
               ["add", "mul"])
    g = _graph([_ph("x"), _const("two", np.float32(2)),
                Node("call", "PartitionedCall", ["x", "two"], {"f": FuncAttr("f")}),
                Node("scall", "StatefulPartitionedCall", ["call:1", "x"], {"f": FuncAttr("f")})],
               ["x"], ["call:0", "scall:0"], {"f": f})
    x = np.array([1.0, -2.0], np.float32)
    got = _model(g)(x)
    _compare(got, [x * 2 + x, (x * 2) * x + x * 2])


@pytest.mark.parametrize("pred, branch", [(np.int32(0), "else"), (np.int64(3), "then"),
                                          (np.zeros((2,), np.float32), "then"),
                                          (np.zeros((0,), np.float32), "else"),
                                          (np.array(b"", dtype=object), "else"),
                                          (np.array(b"x", dtype=object), "then")])
def test_if_predicate_truth(pred, branch):
    then = _graph([_ph("a"), Node("neg", "Neg", ["a"], {"T": "float32"})], ["a"], ["neg"])
    other = _graph([_ph("a"), Node("sq", "Square", ["a"], {"T": "float32"})], ["a"], ["sq"])
    g = _graph([_ph("p", "unknown"), _ph("x"),
                Node("if", "If", ["p", "x"], {"then_branch": FuncAttr("t"),
                                              "else_branch": FuncAttr("e")})],
               ["p", "x"], ["if"], {"t": then, "e": other})
    x = np.array([3.0], np.float32)
    _compare(_model(g)(pred, x), -x if branch == "then" else x * x)


def test_while_error_names_the_body_node():
    body = _graph([_ph("i", "int32"), _ph("s"), _const("one", np.int32(1)),
                   Node("i1", "AddV2", ["i", "one"], {"T": "int32"}),
                   Node("r", "Reshape", ["s", "i1"], {"T": "float32"})], ["i", "s"],
                  ["i1", "r"])
    cond = _graph([_ph("i", "int32"), _ph("s"), _const("three", np.int32(3)),
                   Node("lt", "Less", ["i", "three"], {"T": "int32"})], ["i", "s"], ["lt"])
    g = _graph([_ph("i0", "int32"), _ph("x"),
                Node("w", "While", ["i0", "x"], {"cond": FuncAttr("c"), "body": FuncAttr("b")})],
               ["i0", "x"], ["w:1"], {"c": cond, "b": body})
    with pytest.raises(td.errors.ExecutionError, match=r"'w' \(While\).*'r' \(Reshape\)"):
        _model(g)(np.int32(0), np.zeros((5,), np.float32))


def test_tensor_array_hand_built():
    """A TF1-style TensorArray graph; Close (no outputs: converters prune it) still loads."""
    g = _graph([_ph("x"), _const("n", np.int32(1)),
                Node("ta", "TensorArrayV3", ["n"], {"dtype": "float32", "dynamic_size": True}),
                Node("w", "TensorArrayWriteV3", ["ta:0", "n", "x", "ta:1"], {}),
                Node("r", "TensorArrayReadV3", ["ta:0", "n", "w"], {"dtype": "float32"}),
                Node("r0", "TensorArrayReadV3", ["ta:0", "n", "ta:1"], {"dtype": "float32"}),
                Node("sz", "TensorArraySizeV3", ["ta:0", "w"], {}),
                Node("close", "TensorArrayCloseV3", ["ta:0"], {})], ["x"], ["r", "sz"])
    x = np.ones(3, np.float32)
    _compare(_model(g)(x), [x, np.int32(2)])
    g.outputs.append(TensorSpec("r0", "r0:0", "float32", None))  # unwritten, no shape known
    with pytest.raises(td.errors.ExecutionError, match="out of range"):
        _model(g)(x)


def test_tensor_list_value_semantics_random():
    """Random operation sequences on every version of a list match plain Python lists."""
    from tfdeploy.runtime.tensorlist import TensorList

    rng = np.random.default_rng(0)
    for _ in range(50):
        versions = [(TensorList.of([], np.float32), [])]
        for step in range(40):
            k = int(rng.integers(len(versions)))
            lst, ref = versions[k]
            op = rng.integers(4)
            v = np.float32(step)
            if op == 0 and ref:
                i = int(rng.integers(len(ref)))
                new, nref = lst.set(i, v), ref[:i] + [v] + ref[i + 1:]
            elif op == 1:
                new, nref = lst.push(v), ref + [v]
            elif op == 2 and ref:
                new, nref = lst.pop(), ref[:-1]
            else:
                n = int(rng.integers(6))
                new, nref = lst.resize(n), (ref + [None] * n)[:n]
            versions.append((new, nref))
            for lst, ref in versions:
                assert lst.items() == ref
                assert [lst.get(i) for i in range(len(ref))] == ref


def test_tensor_list_stack_checks_every_element_shape():
    """TensorListStack and TensorListGather stack elements of one shape, unknown dims of the
    element shape taken from them; elements of several shapes (or one the element shape does
    not allow) are an error naming them, wherever in the list they are."""
    from tfdeploy.kernels.lists import tensorlist as tl
    from tfdeploy.runtime.tensorlist import TensorList

    es = np.array([-1, 4], np.int32)
    row = np.ones((1, 4), np.float32)
    lst = TensorList.of([row, None, row * 2], np.float32, (None, 4))
    got = tl.TensorListStack(lst, es, element_dtype="float32")
    np.testing.assert_array_equal(got, np.stack([row, 0 * row, 2 * row]))
    for bad in ((2, 4), (1, 3)):
        for at in (0, 1, 2):
            items = [row, row, row]
            items[at] = np.ones(bad, np.float32)
            lst = TensorList.of(items, np.float32, None)
            with pytest.raises(ValueError, match="shape"):
                tl.TensorListStack(lst, es, element_dtype="float32")
            with pytest.raises(ValueError, match="shape"):
                tl.TensorListGather(lst, np.array([0, 1, 2]), es, element_dtype="float32")
