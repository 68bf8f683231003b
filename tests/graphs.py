"""Small IR graphs built by hand, for runtime tests that must not need TensorFlow."""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np

import tfdeploy as td
from tfdeploy.ir.graph import Graph, Node, TensorSpec


def placeholder(name: str, dtype: str = "float32", shape=None) -> Node:
    return Node(name, "Placeholder", [], {"dtype": dtype, "shape": shape})


def const(name: str, value) -> Node:
    value = np.asarray(value)
    from tfdeploy.dtypes import from_numpy

    return Node(name, "Const", [], {"dtype": from_numpy(value.dtype), "value": value})


def model_of(nodes, inputs, outputs, key=None) -> td.Model:
    """A Model from nodes; ``inputs``/``outputs`` are node names (output 0)."""
    by = {n.name: n for n in nodes}
    g = Graph(list(nodes),
              [TensorSpec(i, f"{i}:0", by[i].attrs.get("dtype", "float32"),
                          by[i].attrs.get("shape")) for i in inputs],
              [TensorSpec(o, f"{o}:0", "float32", None) for o in outputs])
    m = td.Model()
    m._add_graph(g, key)
    return m


def dense_softmax(n_in=784, n_out=100, seed=0) -> tuple[td.Model, dict]:
    """The original tfdeploy benchmark graph softmax(x @ W + b), built without TensorFlow."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n_in, n_out)).astype(np.float32) * 0.05
    b = rng.standard_normal(n_out).astype(np.float32)
    nodes = [placeholder("input", "float32", [None, n_in]), const("W", W), const("b", b),
             Node("MatMul", "MatMul", ["input", "W"], {"T": "float32", "transpose_a": False,
                                                       "transpose_b": False}),
             Node("add", "AddV2", ["MatMul", "b"], {"T": "float32"}),
             Node("output", "Softmax", ["add"], {"T": "float32"})]
    return model_of(nodes, ["input"], ["output"]), {"W": W, "b": b}



@functools.cache
def builtin_op_types() -> tuple[str, ...]:
    """tfdeploy's own registered op types, as a fresh process sees them: tests register op
    types of their own (``tests/dask_ops.py``), which must not count."""
    code = "import tfdeploy.registry as r; print(' '.join(r.registered_ops()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return tuple(out.stdout.split())
