"""Lookup tables: tf.lookup tables captured by a function are frozen into TFDHashTable nodes at
conversion (convert/tables.py); LookupTableFindV2, LookupTableSizeV2 and LookupTableExportV2 then
read them."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from . import Case

CASES: list[Case] = []
raw = tf.raw_ops
TABLE = "TFDHashTable"


def add(id, ops, fn, ins, **kw):
    CASES.append(Case(id=f"lookup_{id}", ops=(TABLE,) + tuple(ops), fn=fn, inputs=ins, **kw))


def S(*items) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = [x if isinstance(x, bytes) else str(x).encode() for x in items]
    return out


WORDS = ["a", "b", "c", "hello", "", "caf\u00e9", "the"]
_KEYS = {"string": S(*WORDS), "int64": np.array([10, -3, 7, 0, 1 << 40, 99, 5], np.int64),
         "int32": np.array([10, -3, 7, 0, 1 << 30, 99, 5], np.int32)}
_VALUES = {"int64": np.arange(7, dtype=np.int64) * 3 - 4, "int32": np.arange(7, dtype=np.int32),
           "float32": np.linspace(-1, 2, 7).astype(np.float32),
           "float64": np.linspace(-1, 2, 7), "string": S(*[f"v{i}" for i in range(7)]),
           "bool": np.array([True, False, True, True, False, False, True])}
_DEFAULTS = {"int64": -1, "int32": -1, "float32": -0.5, "float64": 0.25, "string": "<unk>",
             "bool": False}
# queries: present keys, absent keys, repeats
_QUERY = {"string": S("a", "zz", "hello", "", "a", "CAF\u00c9", "caf\u00e9", "the", "thE"),
          "int64": np.array([10, 11, 0, -3, 1 << 40, 5, 5, -1, 99], np.int64),
          "int32": np.array([10, 11, 0, -3, 1 << 30, 5, 5, -1, 99], np.int32)}
# (key dtype, value dtype) pairs TF has HashTable kernels for
PAIRS = [("string", "int64"), ("string", "int32"), ("string", "float32"), ("string", "float64"),
         ("string", "string"), ("string", "bool"), ("int64", "int64"), ("int64", "int32"),
         ("int64", "float32"), ("int64", "float64"), ("int64", "string"), ("int32", "float64"),
         ("int32", "int32"), ("int32", "float32"), ("int32", "string")]


def _static(kd, vd):
    init = tf.lookup.KeyValueTensorInitializer(tf.constant(_KEYS[kd]), tf.constant(_VALUES[vd]))
    return tf.lookup.StaticHashTable(init, tf.constant(_DEFAULTS[vd], dtype=vd))


_TABLES = {}
for _kd, _vd in PAIRS:
    _TABLES[_kd, _vd] = _t = _static(_kd, _vd)
    add(f"static_{_kd}_{_vd}", ["LookupTableFindV2"], lambda x, _t=_t: _t.lookup(x),
        [_QUERY[_kd]], dynamic=True)
_SI = _TABLES["string", "int64"]
add("static_grid", ["LookupTableFindV2"], lambda x: _SI.lookup(x), [_QUERY["string"].reshape(3, 3)],
    dynamic=True)
add("static_scalar", ["LookupTableFindV2"], lambda x: _SI.lookup(x), [S("hello").reshape(())])
add("static_empty", ["LookupTableFindV2"], lambda x: _SI.lookup(x), [S()], dynamic=True)
add("static_size", ["LookupTableFindV2", "LookupTableSizeV2"],
    lambda x: (_SI.lookup(x), _SI.size()), [_QUERY["string"]])
add("static_default_per_key", ["LookupTableFindV2"],
    lambda x, d: raw.LookupTableFindV2(table_handle=_SI.resource_handle, keys=x, default_value=d),
    [_QUERY["string"], np.arange(9, dtype=np.int64) + 100])
add("static_default_input", ["LookupTableFindV2"],
    lambda x, d: raw.LookupTableFindV2(table_handle=_SI.resource_handle, keys=x, default_value=d),
    [_QUERY["string"], np.int64(-7)])
_II = _TABLES["int64", "int64"]
add("two_tables", ["LookupTableFindV2"],
    lambda x, y: (_SI.lookup(x), _II.lookup(y), _SI.lookup(x[:2])),
    [_QUERY["string"], _QUERY["int64"]], dynamic=True)
_EMPTY_TABLE = tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, default_value=-9)
add("empty_table", ["LookupTableFindV2", "LookupTableSizeV2"],
    lambda x: (_EMPTY_TABLE.lookup(x), _EMPTY_TABLE.size()), [_QUERY["string"]])

# StaticVocabularyTable: a HashTable plus FarmHash buckets for out-of-vocabulary keys
_VOCAB = tf.lookup.StaticVocabularyTable(
    tf.lookup.KeyValueTensorInitializer(tf.constant(_KEYS["string"]),
                                        tf.range(7, dtype=tf.int64)), num_oov_buckets=3)
add("static_vocabulary", ["LookupTableFindV2", "StringToHashBucketFast"],
    lambda x: _VOCAB.lookup(x), [_QUERY["string"]], dynamic=True)

# mutable tables: their contents when converted
_MUT = tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, default_value=-1)
_MUT.insert(tf.constant(_KEYS["string"]), tf.constant(_VALUES["int64"]))
_MUT.remove(tf.constant(S("b")))
add("mutable", ["LookupTableFindV2", "LookupTableSizeV2"],
    lambda x: (_MUT.lookup(x), _MUT.size()), [_QUERY["string"]], dynamic=True)
add("mutable_export", ["LookupTableExportV2"],
    lambda x: (_MUT.lookup(x),) + tuple(_MUT.export()), [_QUERY["string"]])
_MUT_INT = tf.lookup.experimental.MutableHashTable(tf.int64, tf.float32, default_value=0.5)
_MUT_INT.insert(tf.constant(_KEYS["int64"]), tf.constant(_VALUES["float32"]))
add("mutable_int64_float32", ["LookupTableFindV2"], lambda x: _MUT_INT.lookup(x),
    [_QUERY["int64"].reshape(3, 3)], dynamic=True)
_VEC = tf.lookup.experimental.MutableHashTable(tf.string, tf.float32, default_value=[0.0, -1.0])
_VEC.insert(tf.constant(S("a", "b", "c")),
            tf.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], tf.float32))
add("mutable_vector_values", ["LookupTableFindV2"], lambda x: _VEC.lookup(x),
    [_QUERY["string"]], dynamic=True)
add("mutable_vector_values_grid", ["LookupTableFindV2", "LookupTableSizeV2"],
    lambda x: (_VEC.lookup(x), _VEC.size()), [_QUERY["string"].reshape(3, 3)])
_DENSE = tf.lookup.experimental.DenseHashTable(tf.int64, tf.int64, default_value=-1,
                                               empty_key=-100, deleted_key=-200)
_DENSE.insert(tf.constant([1, 2, 3], tf.int64), tf.constant([10, 20, 30], tf.int64))
add("dense_hash_table", ["LookupTableFindV2"], lambda x: _DENSE.lookup(x),
    [_QUERY["int64"]], xfail="DenseHashTable exports its empty buckets: not frozen")


# tables used inside nested functions and control flow

@tf.function(autograph=False)
def _inner(x):
    return _SI.lookup(x) * 2


add("nested_function", ["LookupTableFindV2"], lambda x: _inner(x) + 1, [_QUERY["string"]],
    dynamic=True)
add("in_cond", ["LookupTableFindV2"],
    lambda x, p: tf.cond(p, lambda: _SI.lookup(x), lambda: _VOCAB.lookup(x)),
    [_QUERY["string"], np.array(True)])
add("in_cond_false", ["LookupTableFindV2"],
    lambda x, p: tf.cond(p, lambda: _SI.lookup(x), lambda: _VOCAB.lookup(x)),
    [_QUERY["string"], np.array(False)])
add("in_while", ["LookupTableFindV2"],
    lambda x: tf.while_loop(lambda i, a: i < 3,
                            lambda i, a: (i + 1, a + _SI.lookup(x)),
                            (tf.constant(0), tf.zeros(tf.shape(x), tf.int64)))[1],
    [_QUERY["string"]])
add("mutable_default_per_key", ["LookupTableFindV2"],
    lambda x, d: raw.LookupTableFindV2(table_handle=_MUT.resource_handle, keys=x,
                                       default_value=d),
    [_QUERY["string"], np.arange(9, dtype=np.int64) + 100])
add("mutable_vector_default_per_key", ["LookupTableFindV2"],
    lambda x, d: raw.LookupTableFindV2(table_handle=_VEC.resource_handle, keys=x,
                                       default_value=d),
    [_QUERY["string"], np.arange(18, dtype=np.float32).reshape(9, 2)])
