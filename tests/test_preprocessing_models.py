"""Keras preprocessing layers (Keras 3 and tf_keras): StringLookup, IntegerLookup,
TextVectorization, Hashing, CategoryEncoding, alone and inside models. Each model is converted
(its lookup tables frozen into the file), saved, loaded and compared with TF; models with numeric
outputs are also evaluated in a process without TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

import tfdeploy as td
from tfree import run_without_tf

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.tf

VOCAB = ["the", "cat", "sat", "on", "mat", "dog", "caf\u00e9"]
CORPUS = ["The cat sat on the mat.", "The dog sat!", "A caf\u00e9, a CAT; a dog?",
          "the the the cat", "mat-on-cat", "Hello, World"]
TEXT = np.array([s.encode() for s in CORPUS + ["", "  spaced   out  ", "UNKNOWN words only",
                                               "Caf\u00e9 \u00e9t\u00e9 \U0001f600 !!"]],
                dtype=object)
CATS = np.array([[b"cat", b"dog", b"emu"], [b"", b"mat", b"the"], [b"CAT", b"sat", b"on"],
                 [b"caf\xc3\xa9", b"x", b"cat"]], dtype=object)
INTS = np.array([[3, 7, 1000], [0, -1, 7], [42, 3, 3], [5, 5, 8]], np.int64)


def _keras(flavour):
    if flavour == "keras3":
        import keras

        return keras
    return pytest.importorskip("tf_keras")


def _wrap(k, layer, dtype, shape):
    inp = k.Input(shape=shape, dtype=dtype)
    return k.Model(inp, layer(inp))


def _text_vectorization(k, **kw):
    tv = k.layers.TextVectorization(max_tokens=25, **kw)
    tv.adapt(tf.constant(CORPUS))
    return _wrap(k, tv, "string", ())


# (name, builder(keras) -> model, input array)
MODELS = {
    "string_lookup": (lambda k: _wrap(k, k.layers.StringLookup(vocabulary=VOCAB), "string",
                                      (3,)), CATS),
    "string_lookup_mask_oov": (lambda k: _wrap(k, k.layers.StringLookup(
        vocabulary=VOCAB, mask_token="", num_oov_indices=3), "string", (3,)), CATS),
    "string_lookup_invert": (lambda k: _wrap(k, k.layers.StringLookup(
        vocabulary=VOCAB, invert=True), "int64", (3,)), np.abs(INTS) % 9),
    "string_lookup_multi_hot": (lambda k: _wrap(k, k.layers.StringLookup(
        vocabulary=VOCAB, output_mode="multi_hot"), "string", (3,)), CATS),
    "string_lookup_count": (lambda k: _wrap(k, k.layers.StringLookup(
        vocabulary=VOCAB, output_mode="count"), "string", (3,)), CATS),
    "string_lookup_one_hot": (lambda k: _wrap(k, k.layers.StringLookup(
        vocabulary=VOCAB, output_mode="one_hot"), "string", ()), CATS[:, 0].copy()),
    "string_lookup_tf_idf": (lambda k: _wrap(k, k.layers.StringLookup(
        vocabulary=VOCAB, output_mode="tf_idf", idf_weights=np.linspace(0.5, 2, 7)),
        "string", (3,)), CATS),
    "integer_lookup": (lambda k: _wrap(k, k.layers.IntegerLookup(vocabulary=[3, 7, 42, 5]),
                                       "int64", (3,)), INTS),
    "integer_lookup_mask_oov": (lambda k: _wrap(k, k.layers.IntegerLookup(
        vocabulary=[3, 7, 42, 5], mask_token=0, num_oov_indices=2), "int64", (3,)),
        np.abs(INTS)),
    "integer_lookup_multi_hot": (lambda k: _wrap(k, k.layers.IntegerLookup(
        vocabulary=[3, 7, 42, 5], output_mode="multi_hot"), "int64", (3,)), INTS),
    "text_int": (lambda k: _text_vectorization(k, output_sequence_length=6), TEXT),
    "text_int_ragged_length": (lambda k: _text_vectorization(k), TEXT),
    "text_multi_hot": (lambda k: _text_vectorization(k, output_mode="multi_hot"), TEXT),
    "text_count": (lambda k: _text_vectorization(k, output_mode="count"), TEXT),
    "text_tf_idf": (lambda k: _text_vectorization(k, output_mode="tf_idf"), TEXT),
    "text_bigrams": (lambda k: _text_vectorization(k, ngrams=2, output_sequence_length=8), TEXT),
    "text_characters": (lambda k: _text_vectorization(k, split="character",
                                                      output_sequence_length=12), TEXT),
    "text_lower_only": (lambda k: _text_vectorization(k, standardize="lower",
                                                      output_sequence_length=5), TEXT),
    "text_strip_only": (lambda k: _text_vectorization(k, standardize="strip_punctuation",
                                                      output_sequence_length=5), TEXT),
    "hashing": (lambda k: _wrap(k, k.layers.Hashing(num_bins=11), "string", (3,)), CATS),
    "hashing_mask": (lambda k: _wrap(k, k.layers.Hashing(num_bins=11, mask_value=""), "string",
                                     (3,)), CATS),
    "hashing_salt": (lambda k: _wrap(k, k.layers.Hashing(num_bins=11, salt=[7, 99]), "string",
                                     (3,)), CATS),
    "hashing_int": (lambda k: _wrap(k, k.layers.Hashing(num_bins=5), "int64", (3,)), INTS),
    "hashing_multi_hot": (lambda k: _wrap(k, k.layers.Hashing(num_bins=6, output_mode="multi_hot"),
                                          "string", (3,)), CATS),
    "category_count": (lambda k: _wrap(k, k.layers.CategoryEncoding(
        num_tokens=9, output_mode="count"), "int32", (3,)), (np.abs(INTS) % 9).astype(np.int32)),
    "category_multi_hot": (lambda k: _wrap(k, k.layers.CategoryEncoding(
        num_tokens=9, output_mode="multi_hot"), "int32", (3,)),
        (np.abs(INTS) % 9).astype(np.int32)),
    "category_one_hot": (lambda k: _wrap(k, k.layers.CategoryEncoding(
        num_tokens=9, output_mode="one_hot"), "int32", ()), np.array([0, 8, 3, 3], np.int32)),
}


def _text_classifier(k):
    """TextVectorization -> Embedding -> pooling -> Dense: a whole text model."""
    k.utils.set_random_seed(0)
    tv = k.layers.TextVectorization(max_tokens=30, output_sequence_length=7)
    tv.adapt(tf.constant(CORPUS))
    inp = k.Input(shape=(), dtype="string")
    x = tv(inp)
    x = k.layers.Embedding(30, 8)(x)
    x = k.layers.GlobalAveragePooling1D()(x)
    out = k.layers.Dense(3)(x)
    return k.Model(inp, out)


def _mixed_features(k):
    """A categorical string feature (StringLookup + one-hot) beside a numeric one."""
    k.utils.set_random_seed(0)
    cat = k.Input(shape=(1,), dtype="string", name="category")
    num = k.Input(shape=(2,), dtype="float32", name="numeric")
    x = k.layers.StringLookup(vocabulary=VOCAB, output_mode="one_hot")(cat)
    x = k.layers.Concatenate()([x, num])
    out = k.layers.Dense(4)(x)
    return k.Model([cat, num], out)


def _check(model, inputs, tmp_path, tf_free: bool = True):
    want = model(inputs if len(inputs) > 1 else inputs[0])
    want = [np.asarray(w) for w in (want if isinstance(want, (list, tuple)) else [want])]
    m = td.convert(model)
    assert "TFDHashTable" in m.op_types() or not any(
        o.startswith("LookupTable") for o in m.op_types())
    path = tmp_path / "model.tfd"
    m.save(path)
    loaded = td.load(path)
    got = loaded(*inputs)
    got = list(got) if isinstance(got, tuple) else [got]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(g, w)
    if tf_free and all(w.dtype != object for w in want):
        # (strings travel to the child process as fixed-width bytes: it cannot unpickle)
        fed = [x.astype(bytes) if x.dtype == object else x for x in inputs]
        got = run_without_tf(path, fed, tmp_path)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    return m


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_preprocessing_layer(flavour, name, tmp_path):
    k = _keras(flavour)
    build, x = MODELS[name]
    _check(build(k), [x], tmp_path, tf_free=False)


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_text_classifier(flavour, tmp_path):
    k = _keras(flavour)
    m = _check(_text_classifier(k), [TEXT], tmp_path)
    assert {"StringLower", "StaticRegexReplace", "StringSplitV2", "LookupTableFindV2",
            "TFDHashTable"} <= set(m.op_types())


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_mixed_features(flavour, tmp_path):
    k = _keras(flavour)
    _check(_mixed_features(k), [CATS[:, :1].copy(), np.linspace(0, 1, 8, dtype=np.float32)
                                .reshape(4, 2)], tmp_path)


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_preprocessing_without_tf(flavour, tmp_path):
    """Every numeric-output layer model of one input kind, evaluated in one TF-free process."""
    k = _keras(flavour)
    for kind, x in (("text", TEXT), ("cats", CATS)):
        names = [n for n, (_, inp) in MODELS.items() if inp is x and n != "string_lookup_invert"]
        paths, wants = [], []
        for n in names:
            model = MODELS[n][0](k)
            wants.append(np.asarray(model(x)))
            p = tmp_path / f"{kind}_{n}.tfd"
            td.convert(model).save(p)
            paths.append(p)
        got = run_without_tf(paths, [x.astype(bytes)], tmp_path)
        assert len(got) == len(wants)
        for n, g, w in zip(names, got, wants):
            assert g.dtype == w.dtype, n
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5, err_msg=n)


def test_table_survives_save_load(tmp_path):
    """A frozen table's keys and values (strings in the header, numbers as raw bytes)."""
    import keras

    model = _wrap(keras, keras.layers.StringLookup(vocabulary=VOCAB, invert=True), "int64", (3,))
    m = td.convert(model)
    data = m.save(tmp_path / "m.tfd") or (tmp_path / "m.tfd").read_bytes()
    assert "caf\u00e9".encode() in data or b"Y2Fm" in data  # base64 of the key in the header
    loaded = td.load(tmp_path / "m.tfd")
    node = next(n for g in loaded.graphs.values() for n in g.nodes if n.op == "TFDHashTable")
    assert node.attrs["values"].dtype == object
    assert {v.encode() for v in VOCAB} <= set(node.attrs["values"].tolist())
    np.testing.assert_array_equal(loaded(np.abs(INTS) % 9), model(np.abs(INTS) % 9))


def _tf1_table_graph():
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.string, [None], name="x")
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            ["a", "b", "c"], [1, 2, 3], value_dtype=tf.int64), -1)
        mutable = tf.lookup.experimental.MutableHashTable(tf.string, tf.float32, 0.5)
        insert = mutable.insert(tf.constant(["a", "z"]), tf.constant([7.0, 8.0]))
        tf.identity(table.lookup(x) * 2, name="y")
        tf.identity(mutable.lookup(x), name="y2")
        sess = tf.compat.v1.Session(graph=g)
        sess.run(tf.compat.v1.tables_initializer())
        sess.run(insert)
    return g, sess


def test_tf1_session_tables():
    """TF1: the tables a session holds are read from it (freeze_graph_tables(gd, sess))."""
    from tfdeploy.convert.tables import freeze_graph_tables

    g, sess = _tf1_table_graph()
    feed = np.array([b"a", b"q", b"c", b"z"], dtype=object)
    want = sess.run(["y:0", "y2:0"], {"x:0": feed})
    frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
        sess, g.as_graph_def(), ["y", "y2"])
    gd = freeze_graph_tables(frozen, sess)
    assert [n.op for n in gd.node].count("TFDHashTable") == 2
    got = td.convert(gd, inputs=["x:0"], outputs=["y:0", "y2:0"])(feed)
    for g_, w in zip(got, want):
        np.testing.assert_array_equal(g_, w)


def test_tf1_graph_def_tables():
    """A GraphDef without a session: the table initializers in the graph are run."""
    from tfdeploy.convert.tables import freeze_graph_tables

    g, sess = _tf1_table_graph()
    feed = np.array([b"a", b"q", b"c", b"z"], dtype=object)
    want = sess.run(["y:0", "y2:0"], {"x:0": feed})
    gd = freeze_graph_tables(g.as_graph_def())
    got = td.convert(gd, inputs=["x:0"], outputs=["y:0", "y2:0"])(feed)
    for g_, w in zip(got, want):
        np.testing.assert_array_equal(g_, w)
