"""Hardening: outputs never alias the model, hostile files and inputs fail cleanly and fast,
careless callers get clear errors (docs/security.md)."""

from __future__ import annotations

import io

import numpy as np
import pytest

import tfdeploy as td
from graphs import const, dense_softmax, model_of, placeholder
from tfdeploy.ir.graph import FuncAttr, Graph, Node, TensorSpec


def _graph(nodes, inputs, outputs, functions=None, out_dtype="float32") -> Graph:
    by = {n.name: n for n in nodes}
    g = Graph(list(nodes),
              [TensorSpec(i, f"{i}:0", by[i].attrs.get("dtype", "float32"),
                          by[i].attrs.get("shape")) for i in inputs],
              [TensorSpec(o.split(":")[0], o if ":" in o else f"{o}:0", out_dtype, None)
               for o in outputs])
    g.functions = functions or {}
    return g


def _saved(g: Graph) -> td.Model:
    m = td.Model()
    m._add_graph(g, None)
    b = io.BytesIO()
    m.save(b)
    return td.load(b.getvalue())


# ------------------------------------------------------------------ outputs never alias the model

def _writes_do_not_stick(model, *args):
    first = model(*args)
    outs = first if isinstance(first, tuple) else (first,)
    before = [o.copy() for o in outs]
    for o in outs:
        assert o.flags.writeable
        o[...] = o.flat[0] if o.dtype == object else 7
    again = model(*args)
    again = again if isinstance(again, tuple) else (again,)
    for b, a in zip(before, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("saved", [False, True])
def test_views_of_weights_are_copied(saved):
    W = np.arange(12, dtype=np.float32).reshape(3, 4)
    nodes = [placeholder("x", "float32", [None]), const("W", W), const("shape", [4, 3]),
             Node("r", "Reshape", ["W", "shape"], {"T": "float32"}),
             const("b", [0]), const("e", [2]), const("s1", [1]),
             Node("sl", "StridedSlice", ["W", "b", "e", "s1"], {"T": "float32"}),
             Node("t", "Transpose", ["W", "perm"], {"T": "float32"}), const("perm", [1, 0]),
             Node("y", "AddV2", ["x", "x"], {"T": "float32"})]
    m = model_of(nodes, ["x"], ["r", "sl", "t", "y", "r"])
    if saved:
        b = io.BytesIO()
        m.save(b)
        m = td.load(b.getvalue())
    _writes_do_not_stick(m, np.ones(2, np.float32))
    r1, _, _, _, r2 = m(np.ones(2, np.float32))
    assert not np.may_share_memory(r1, r2)  # the same tensor fetched twice: two arrays
    np.testing.assert_array_equal(W, np.arange(12).reshape(3, 4))


def test_reshape_of_weight_by_a_fed_shape_is_copied():
    W = np.arange(6, dtype=np.float32)
    m = model_of([placeholder("s", "int32", [None]), const("W", W),
                  Node("r", "Reshape", ["W", "s"], {"T": "float32"})], ["s"], ["r"])
    _writes_do_not_stick(m, np.array([2, 3], np.int32))
    np.testing.assert_array_equal(W, np.arange(6))


@pytest.mark.parametrize("value", [np.array([1.5, 2.5], np.float32),
                                   np.array([b"a", b"b"], dtype=object)])
def test_if_branch_returning_its_constant(value):
    then = _graph([placeholder("a", "float32"), const("c", value)], ["a"], ["c"])
    other = _graph([placeholder("a", "float32"), const("d", value)], ["a"], ["d"])
    g = _graph([placeholder("p", "bool"), placeholder("x"),
                Node("if", "If", ["p", "x"], {"then_branch": FuncAttr("t"),
                                              "else_branch": FuncAttr("e")})],
               ["p", "x"], ["if"], {"t": then, "e": other})
    m = _saved(g)
    _writes_do_not_stick(m, np.bool_(True), np.float32(1))
    _writes_do_not_stick(m, np.bool_(False), np.float32(1))


def test_lookup_table_export_is_a_copy():
    keys = np.array([b"a", b"b"], dtype=object)
    g = _graph([placeholder("x", "string"),
                Node("t", "TFDHashTable", [], {"keys": keys, "values": np.array([1, 2]),
                                               "key_dtype": "string", "value_dtype": "int64"}),
                Node("ex", "LookupTableExportV2", ["t"], {"Tkeys": "string",
                                                          "Tvalues": "int64"})],
               ["x"], ["ex:0", "ex:1"])
    _writes_do_not_stick(_saved(g), np.array([b"a"], dtype=object))


def test_load_copies_a_writable_buffer():
    m, _ = dense_softmax()
    b = io.BytesIO()
    m.save(b)
    buf = bytearray(b.getvalue())
    loaded = td.load(buf)
    x = np.ones((1, 784), np.float32)
    y = loaded(x)
    buf[-4000:] = b"\x7f" * 4000
    np.testing.assert_array_equal(loaded(x), y)
