"""Check data in the model file (``td.convert(check_data=)``, ``td.load(verify=)``), the
metadata arrays that hold it, and the IR -> GraphDef exporter behind recorded shapes and
``bench --compare``."""

from __future__ import annotations

import io
import json
import struct
import warnings

import numpy as np
import pytest

import tfdeploy as td
from graphs import dense_softmax
from tfdeploy import checkdata

# ---------------------------------------------------------------------------- without TF


def test_recipes_are_numpy_legacy_streams_pinned():
    """A stored recipe must regenerate the same input on every numpy and platform."""
    a = checkdata.generate("float32", (3,), {"seed": 0, "kind": "uniform", "low": -1,
                                             "high": 1})
    np.testing.assert_array_equal(a, np.float32([0.09762701, 0.43037873, 0.20552675]))
    i = checkdata.generate("int64", (4,), {"seed": 1, "kind": "randint", "low": 0, "high": 10})
    np.testing.assert_array_equal(i, [5, 8, 9, 5])
    w = checkdata.generate("string", (2,), {"seed": 0, "kind": "words"})
    assert w.dtype == object and all(isinstance(v, bytes) for v in w)
    assert checkdata.input_shape([None, None, 3]) == (2, 16, 3)
    with pytest.raises(td.FileFormatError, match="recipe"):
        checkdata.generate("float32", (2,), {"seed": 0, "kind": "gauss"})


def test_large_outputs_are_sampled_and_statistics_catch_the_rest():
    a = np.linspace(-3, 3, 1000, dtype=np.float32).reshape(10, 100)
    entry = checkdata.record_output("y", a)
    assert entry["indices"].shape == (64,) and entry["values"].shape == (64,)
    assert checkdata.compare(entry, a).ok
    b = a.copy().reshape(-1)
    hidden = next(i for i in range(b.size) if i not in set(entry["indices"].tolist()))
    b[hidden] += 50.0  # a value the sample does not hold
    res = checkdata.compare(entry, b.reshape(a.shape))
    assert not res.ok and "of all 1000 values" in res.problem
    bad = checkdata.compare(entry, a[:, :99])
    assert not bad.ok and "shape (10, 99)" in bad.problem
    ints = checkdata.record_output("k", np.arange(5, dtype=np.int32))
    assert ints["atol"] == ints["rtol"] == 0
    assert not checkdata.compare(ints, np.int32([0, 1, 2, 3, 5])).ok


def test_metadata_arrays_round_trip_and_old_files_load(tmp_path):
    m, _ = dense_softmax(n_in=8, n_out=3)
    m.metadata = {"check": {"default": {"values": np.arange(6, dtype=np.int16).reshape(2, 3),
                                        "raw": b"\x00\xff", "nested": [np.float64(1.5)]}}}
    p = tmp_path / "m.tfd"
    m.save(p)
    meta = td.Model(p).metadata["check"]["default"]
    np.testing.assert_array_equal(meta["values"], np.arange(6).reshape(2, 3))
    assert meta["values"].dtype == np.int16 and meta["raw"] == b"\x00\xff"
    assert meta["nested"] == [1.5]
    with pytest.raises(TypeError, match="'\\$x'"):
        m.metadata = {"$x": 1}
        m.save(io.BytesIO())
    # a file written before metadata could hold arrays: no flag, references stay plain data
    data = p.read_bytes()
    (hlen,) = struct.unpack_from("<Q", data, 16)
    header = json.loads(data[24:24 + hlen])
    del header["metadata_arrays"]
    header["metadata"] = {"note": {"$array": 0}}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (hlen - len(h))
    old = td.Model(data[:24] + h + data[24 + hlen:])
    assert old.metadata == {"note": {"$array": 0}}
    assert old(np.ones((1, 8), np.float32)).shape == (1, 3)


# ---------------------------------------------------------------------------- every converter

def _tf():
    return pytest.importorskip("tensorflow")


def _verified(model) -> dict:
    """The model's check entry, after checking it round-trips through a file and verifies."""
    buf = io.BytesIO()
    model.save(buf)
    loaded = td.load(buf.getvalue(), verify=True)
    (c,) = checkdata.verify(loaded)
    assert c.ok and c.reference.startswith("TensorFlow "), c
    return loaded.metadata["check"]["default"]


@pytest.mark.tf
def test_keras_model_stores_check_data_and_shapes():
    _tf()
    keras = pytest.importorskip("keras")
    from tfdeploy.cli import example_model

    keras.utils.set_random_seed(0)
    m = td.convert(example_model(keras))
    entry = _verified(m)
    (x,) = entry["inputs"]
    assert x["shape"] == [2, 28, 28, 1] and "generate" in x  # 6 KB: stored as its recipe
    assert "values" in entry["outputs"][0]
    nodes = m.metadata["tensors"]["default"]["nodes"]
    conv = next(n.name for n in m.default_graph.nodes if n.op == "Conv2D")
    assert nodes[conv] == [["float32", [None, 28, 28, 16]]]
    size = sum(a.nbytes for e in entry["inputs"] + entry["outputs"] for a in e.values()
               if isinstance(a, np.ndarray))
    assert size < 4096


@pytest.mark.tf
def test_function_concrete_function_saved_model_pb_and_session(tmp_path):
    tf = _tf()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32)])
    def loop(x, n):
        return tf.while_loop(lambda i, v: i < n, lambda i, v: (i + 1, v * 1.5 + 1.0),
                             [tf.constant(0), x])[1]

    m = td.convert(loop)
    _verified(m)
    funcs = m.metadata["tensors"]["default"]["functions"]
    assert len(funcs) == 2 and all(funcs.values())  # body and cond shapes inferred
    _verified(td.convert(loop.get_concrete_function()))

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x"),
                                      tf.TensorSpec([None], tf.string, name="s")])
        def f(self, x, s):
            return {"y": tf.nn.relu(x) * 3.0, "n": tf.strings.length(s)}

    mod = M()
    tf.saved_model.save(mod, str(tmp_path / "sm"), signatures=mod.f)
    entry = _verified(td.convert(str(tmp_path / "sm")))
    assert [e["name"] for e in entry["outputs"]] == ["n", "y"]

    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        sess = v1.Session(graph=g)
        x = v1.placeholder("float", shape=[None, 784], name="input")
        w = v1.Variable(v1.truncated_normal([784, 100], stddev=0.05))
        y = tf.nn.softmax(tf.matmul(x, w), name="output")
        sess.run(v1.global_variables_initializer())
        classic = td.Model()
        classic.add(y, sess)
        entry = _verified(classic)
        assert "indices" in entry["outputs"][0]  # 200 values: a sample and statistics
        gd = v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), ["output"])
    (tmp_path / "f.pb").write_bytes(gd.SerializeToString())
    frozen = td.convert(str(tmp_path / "f.pb"), inputs=["input"], outputs=["output"])
    _verified(frozen)
    assert frozen.outputs[0].shape == [None, 100]  # TF's inferred shape fills the signature


@pytest.mark.tf
def test_no_check_data_and_sources_tf_cannot_run():
    tf = _tf()
    f = tf.function(lambda x: tf.nn.relu(x), input_signature=[tf.TensorSpec([None], tf.float32)])
    m = td.convert(f, check_data=False)
    assert "check" not in m.metadata and "tensors" in m.metadata
    with pytest.raises(td.VerificationError, match="cannot be verified.*no check data"):
        td.load(_bytes(m), verify=True)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def picky(x):
        with tf.control_dependencies([tf.debugging.assert_greater(x, 5.0)]):
            return x * 2.0

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = td.convert(picky)
    assert any("no check data stored" in str(w.message) for w in caught)
    assert "InvalidArgumentError" in m.metadata["check"]["default"]["skipped"]
    (c,) = checkdata.verify(m)
    assert not c.ok and "the converter stored no check data" in c.missing


def _bytes(model) -> bytes:
    buf = io.BytesIO()
    model.save(buf)
    return buf.getvalue()


@pytest.mark.tf
def test_exported_graph_def_runs_in_tensorflow_like_tfdeploy():
    """IR -> GraphDef (functions included) computes in TF what tfdeploy computes."""
    tf = _tf()
    from tfdeploy.convert.export import to_graph_def

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def f(x):
        y = tf.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, tf.tanh(v) * 2.0),
                          [tf.constant(0), x])[1]
        parts = tf.split(y, [1, 2], axis=1)
        return tf.concat([parts[1], tf.reverse(parts[0], [0])], axis=1)

    m = td.convert(f, check_data=False)
    g = m.default_graph
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(to_graph_def(g), name="")
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    with tf.compat.v1.Session(graph=graph) as sess:
        want = sess.run(g.outputs[0].ref, {g.inputs[0].ref: x})
    np.testing.assert_allclose(m(x), want, rtol=1e-6, atol=1e-6)
