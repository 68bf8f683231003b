"""Conversion from every TensorFlow source, evaluated in a TensorFlow-free process."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import tfdeploy as td
from harness import compare
from tfree import run_without_tf

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.tf


def test_import_tfdeploy_never_imports_tensorflow():
    code = ("import sys; import tfdeploy, tfdeploy.kernels, tfdeploy.registry as r; "
            "r.registered_ops(); "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'tf_keras')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def _check_tf_free(model, inputs, want, tmp_path, rtol=1e-5, atol=1e-5):
    p = tmp_path / "model.tfd"
    model.save(p)
    got = run_without_tf(p, inputs, tmp_path)
    want = want if isinstance(want, (list, tuple)) else [want]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        compare(g, np.asarray(w), rtol=rtol, atol=atol)


# ---------------------------------------------------------------- the original README, TF1 style
def test_original_readme_example(tmp_path):
    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        sess = v1.Session(graph=g)
        x = v1.placeholder("float", shape=[None, 784], name="input")
        W = v1.Variable(v1.truncated_normal([784, 100], stddev=0.05))
        b = v1.Variable(v1.zeros([100]))
        y = tf.nn.softmax(tf.matmul(x, W) + b, name="output")
        sess.run(v1.global_variables_initializer())
        model = td.Model()
        model.add(y, sess)
        model.save(tmp_path / "model.pkl")
        batch = np.random.rand(100, 784)
        want = sess.run(y, {x: batch})
    model = td.Model(tmp_path / "model.pkl")
    inp, outp = model.get("input", "output")
    result = outp.eval({inp: batch})
    compare(result, want, rtol=1e-5, atol=1e-6)
    assert model.inputs[0].shape == [None, 784] and model.inputs[0].dtype == "float32"


def test_tf1_several_outputs_and_resource_variables(tmp_path):
    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        sess = v1.Session(graph=g)
        x = v1.placeholder(tf.float32, shape=[None, 4], name="x")
        w = tf.Variable(np.arange(12, dtype=np.float32).reshape(4, 3), name="w")  # resource
        h = tf.nn.relu(tf.matmul(x, w), name="hidden")
        y = tf.reduce_sum(h, axis=1, name="total")
        sess.run(v1.global_variables_initializer())
        model = td.Model()
        model.add([h, y], sess, key="tf1")
        batch = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
        want_h, want_y = sess.run([h, y], {x: batch})
    h2, y2, x2 = model.get("hidden", "total:0", "x")
    got_h, got_y = model.eval([h2, y2], {x2: batch})
    compare(got_h, want_h, rtol=1e-5)
    compare(got_y, want_y, rtol=1e-5)


def test_custom_op_in_a_graphdef(tmp_path):
    """The README's InvertedSoftmax: an op TF does not know, added with td.Operation."""
    gd = tf.compat.v1.GraphDef()
    n = gd.node.add(name="input", op="Placeholder")
    n.attr["dtype"].type = tf.float32.as_datatype_enum
    n = gd.node.add(name="inv", op="InvertedSoftmax", input=["input"])
    n = gd.node.add(name="output", op="Cube", input=["inv"])
    with pytest.raises(td.UnsupportedOpError) as e:
        td.convert(gd, inputs=["input"], outputs=["output"])
    assert "Cube: used by 'output'" in str(e.value)
    assert "InvertedSoftmax: used by 'inv'" in str(e.value)

    class InvertedSoftmax(td.Operation):
        def func(a):
            e = np.exp(-a)
            return np.divide(e, np.sum(e, axis=-1, keepdims=True)),

    @td.Operation.factory
    def Cube(a):
        return a ** 3,

    try:
        m = td.convert(gd, inputs=["input:0"], outputs=["output"])
        x = np.array([[0.0, 1.0]], np.float32)
        e = np.exp(-x)
        np.testing.assert_allclose(m(x), (e / e.sum()) ** 3, rtol=1e-6)
    finally:
        td.registry.unregister("InvertedSoftmax")
        td.registry.unregister("Cube")


# ---------------------------------------------------------------- tf.function sources
def _f(x, y):
    return tf.nn.relu(tf.matmul(x, y)) - 0.5 * x[:, :1]


def test_tf_function_with_its_own_signature(tmp_path):
    f = tf.function(_f, input_signature=[tf.TensorSpec([None, 3], tf.float32, name="a"),
                                         tf.TensorSpec([3, 2], tf.float32, name="b")])
    m = td.convert(f)
    assert [s.name for s in m.inputs] == ["a", "b"]
    assert m.inputs[0].shape == [None, 3]
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 3), dtype=np.float32), rng.random((3, 2), dtype=np.float32)
    _check_tf_free(m, [a, b], f(a, b), tmp_path)
    compare(m(b=b, a=a), f(a, b).numpy(), rtol=1e-6)


def test_tf_function_given_specs_example_arrays_or_concrete():
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 3), dtype=np.float32), rng.random((3, 2), dtype=np.float32)
    f = tf.function(_f)
    want = f(a, b).numpy()
    m1 = td.convert(f, input_signature=[tf.TensorSpec([None, 3], tf.float32),
                                        tf.TensorSpec([3, 2], tf.float32)])
    m2 = td.convert(f, input_signature=[a, b])
    m3 = td.convert(f.get_concrete_function(tf.TensorSpec([None, 3]), tf.TensorSpec([3, 2])))
    for m in (m1, m2, m3):
        compare(m(a, b), want, rtol=1e-6)
    with pytest.raises(td.ConversionError, match="input_signature"):
        td.convert(tf.function(_f))


def test_dict_outputs_are_named():
    f = tf.function(lambda x: {"double": x * 2.0, "neg": -x},
                    input_signature=[tf.TensorSpec([2], tf.float32, name="x")])
    m = td.convert(f)
    assert [s.name for s in m.outputs] == ["double", "neg"]
    x = np.array([1, 2], np.float32)
    d, n = m(x)
    compare(d, np.array([2, 4], np.float32))
    compare(m.get("neg").eval({"x": x}), -x)


def test_nested_inputs_and_outputs_of_a_tf_function():
    spec = [{"a": tf.TensorSpec([None], tf.float32), "b": tf.TensorSpec([None], tf.float32)},
            (tf.TensorSpec([], tf.float32), [tf.TensorSpec([2], tf.float32)])]

    @tf.function(input_signature=spec)
    def f(d, t):
        return {"sum": d["a"] + d["b"] * t[0], "lst": [t[1][0] * 2.0, d["a"][:1]]}

    m = td.convert(f)
    assert [s.name for s in m.inputs] == ["d_a", "d_b", "t_0", "t_1_0"]
    assert [s.name for s in m.outputs] == ["lst_0", "lst_1", "sum"]
    a, b = np.array([1, 2], np.float32), np.array([3, 4], np.float32)
    got = m(d_a=a, d_b=b, t_0=np.float32(2), t_1_0=np.array([5, 6], np.float32))
    want = f({"a": a, "b": b}, (np.float32(2), [np.array([5, 6], np.float32)]))
    for g, w in zip(got, [want["lst"][0], want["lst"][1], want["sum"]]):
        compare(g, w.numpy())


@pytest.mark.parametrize("flavour", ["keras", "tf_keras"])
def test_keras_model_with_a_dict_of_inputs(flavour):
    keras = pytest.importorskip(flavour)
    ids = keras.Input((4,), dtype="int32", name="ids_layer")
    mask = keras.Input((4,), dtype="float32", name="mask_layer")
    emb = keras.layers.Embedding(10, 3)(ids)
    out = keras.layers.Dense(2)(emb * keras.layers.Reshape((4, 1))(mask))
    km = keras.Model({"token_ids": ids, "padding_mask": mask}, out)
    m = td.convert(km)
    assert sorted(s.name for s in m.inputs) == ["padding_mask", "token_ids"]
    x = {"token_ids": np.array([[1, 2, 3, 4]], np.int32),
         "padding_mask": np.array([[1, 1, 0, 1]], np.float32)}
    compare(m(**x), np.asarray(km(x)), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- SavedModel and frozen GraphDef
class _Module(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="features")])
    def predict(self, features):
        return {"scores": tf.nn.sigmoid(tf.matmul(features, self.w))}

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="features")])
    def embed(self, features):
        return {"embedding": tf.matmul(features, self.w) * 2.0}


def test_saved_model_round_trip(tmp_path):
    mod = _Module()
    path = str(tmp_path / "sm")
    tf.saved_model.save(mod, path, signatures={"serving_default": mod.predict,
                                               "embed": mod.embed})
    x = np.random.default_rng(1).random((5, 3), dtype=np.float32)
    m = td.convert(path)
    assert m.outputs[0].name == "scores" and m.inputs[0].name == "features"
    _check_tf_free(m, [x], mod.predict(x)["scores"], tmp_path)
    m2 = td.convert(path, signature="embed")
    compare(m2(x), mod.embed(x)["embedding"].numpy(), rtol=1e-6)
    with pytest.raises(td.ConversionError, match="no signature 'nope'"):
        td.convert(path, signature="nope")


def test_frozen_pb_round_trip(tmp_path):
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    mod = _Module()
    cf = mod.predict.get_concrete_function()
    frozen = convert_variables_to_constants_v2(cf)
    gd = frozen.graph.as_graph_def()
    pb = tmp_path / "frozen.pb"
    pb.write_bytes(gd.SerializeToString())
    in_name = frozen.inputs[0].name
    out_name = frozen.outputs[0].name
    x = np.random.default_rng(2).random((4, 3), dtype=np.float32)
    want = mod.predict(x)["scores"].numpy()
    for ins, outs in [([in_name], [out_name]), ([in_name.split(":")[0]], [out_name[:-2]])]:
        m = td.convert(str(pb), inputs=ins, outputs=outs)
        compare(m(x), want, rtol=1e-6)
    m = td.convert(gd, inputs=in_name, outputs=out_name)  # a GraphDef object, single names
    _check_tf_free(m, [x], want, tmp_path)
    with pytest.raises(td.ConversionError, match="no tensor named 'nope:0'"):
        td.convert(str(pb), inputs=["nope"], outputs=[out_name])


def test_unconvertible_sources():
    with pytest.raises(td.ConversionError, match="cannot convert a builtins.int"):
        td.convert(42)
    with pytest.raises(td.ConversionError, match="no such file or directory"):
        td.convert("/nonexistent/model")


def test_tf1_placeholder_with_default_fed_or_not():
    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        sess = v1.Session(graph=g)
        x = v1.placeholder(tf.float32, [None, 2], name="x")
        scale = v1.placeholder_with_default(np.float32(3.0), [], name="scale")
        y = tf.multiply(x, scale, name="y")
        model = td.Model()
        model.add(y, sess)
    xv = np.ones((2, 2), np.float32)
    compare(model.get("y").eval({"x": xv}), xv * 3)
    compare(model.get("y").eval({"x": xv, "scale": np.float32(5)}), xv * 5)
    with pytest.raises(td.FeedError, match="input 'scale' expects rank 0"):
        model.get("y").eval({"x": xv, "scale": np.ones(2, np.float32)})


def test_unfrozen_graph_def_names_its_variables():
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
        w = tf.compat.v1.Variable(np.ones((2, 2), np.float32), name="w")
        tf.matmul(x, w, name="y")
    with pytest.raises(td.ConversionError, match="variable.*'w'.*freeze it first"):
        td.convert(g.as_graph_def(), inputs=["x"], outputs=["y"])


def test_unfrozen_graph_def_with_a_checkpoint(tmp_path):
    """Legacy graph + checkpoint: VariableV2, VarHandleOp/ReadVariableOp and ResourceGather."""
    v1 = tf.compat.v1
    g = tf.Graph()
    rng = np.random.default_rng(0)
    with g.as_default():
        sess = v1.Session(graph=g)
        ids = v1.placeholder(tf.int32, [None], name="ids")
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        emb = tf.Variable(rng.standard_normal((10, 4)).astype(np.float32), name="emb")  # resource
        w = v1.Variable(rng.standard_normal((4, 3)).astype(np.float32), name="w",
                        use_resource=False)  # VariableV2
        h = tf.nn.embedding_lookup(emb, ids) + x
        y = tf.matmul(h, w, name="y")
        sess.run(v1.global_variables_initializer())
        prefix = v1.train.Saver().save(sess, str(tmp_path / "ckpt"))
        feed = {ids: np.array([1, 7, 3], np.int32), x: rng.standard_normal((3, 4)).astype(
            np.float32)}
        want = sess.run(y, feed)
        gd = g.as_graph_def()
    ops = {n.op for n in gd.node}
    assert {"VariableV2", "VarHandleOp", "ResourceGather"} <= ops
    m = td.convert(gd, inputs=["ids", "x"], outputs=["y"], checkpoint=prefix)
    compare(m(*feed.values()), want, rtol=1e-5)
    m2 = td.convert(gd, inputs=["ids", "x"], outputs=["y"],
                    variables={"emb": sess.run(emb), "w": sess.run(w)})
    compare(m2(*feed.values()), want, rtol=1e-5)
    with pytest.raises(td.ConversionError, match="checkpoint=... or variables="):
        td.convert(gd, inputs=["ids", "x"], outputs=["y"], variables={"w": sess.run(w)})


def test_time_distributed_of_unknown_length_warns():
    """Keras 3's TimeDistributed maps over range(batch) in a traced graph when the time length
    is unknown (its eager call is right): the converted graph computes what TF's graph does,
    and conversion says so. A fixed length converts without a warning and matches."""
    import warnings

    import keras

    L = keras.layers
    for steps in (None, 5):
        i = keras.Input((steps, 4))
        model = keras.Model(i, L.TimeDistributed(L.Dense(3))(i))
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            m = td.convert(model)
        ours = [w for w in seen if "TimeDistributed" in str(w.message)]
        x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
        if steps is None:
            assert len(ours) == 1 and "unknown time length" in str(ours[0].message)
            graph = tf.function(model, input_signature=[tf.TensorSpec([None, None, 4])])
            np.testing.assert_allclose(m(x), graph(x).numpy(), rtol=1e-6)  # (2, 2, 3)
        else:
            assert not ours
            np.testing.assert_allclose(m(x), model(x), rtol=1e-5, atol=1e-6)
