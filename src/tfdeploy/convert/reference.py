"""TensorFlow running a converted source, and what the converter records from it beside the graph:
check data (``checkdata.py``) and TF's static shapes of every tensor (``export.tensor_info``).

A reference is a function ``run(arrays) -> arrays`` taking the signature's inputs in order and
returning its outputs in order, computed by TensorFlow on the source itself: the traced
ConcreteFunction (Keras models, tf.functions, SavedModel signatures), the GraphDef as read from
the file (frozen .pb), or the user's own session (TF1 ``model.add(y, sess)``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from tfdeploy.ir.graph import Graph

from .. import checkdata
from ..errors import ConversionError
from .export import tensor_info

Run = Callable[[list], list]


def _tf():
    import tensorflow as tf

    return tf


def _numpy(t) -> np.ndarray:
    a = np.asarray(t.numpy() if hasattr(t, "numpy") else t)
    # TF gives strings as bytes ('S' for scalars): tfdeploy's are object arrays of bytes
    return a.astype(object) if a.dtype.kind in "SU" else a


def of_concrete(cf, keep=None) -> Run:
    """Call a ConcreteFunction with the flat inputs packed as it was traced (positional or,
    for SavedModel signatures, keyword arguments); ``keep`` holds what must outlive it."""
    tf = _tf()
    structure = cf.structured_input_signature

    def run(arrays: list) -> list:
        args, kwargs = tf.nest.pack_sequence_as(structure, list(arrays))
        _ = keep
        return [_numpy(t) for t in tf.nest.flatten(cf(*args, **kwargs))]

    return run


def of_session(sess, inputs: list[str], outputs: list[str]) -> Run:
    def run(arrays: list) -> list:
        return [_numpy(a) for a in sess.run(list(outputs), dict(zip(inputs, arrays)))]

    return run


_TABLE_INIT_OPS = frozenset({"InitializeTableV2", "InitializeTableFromTextFileV2",
                             "LookupTableImportV2"})


def of_graph_def(graph_def, inputs: list[str], outputs: list[str]) -> Run:
    """Run a GraphDef in a TF1 session (its lookup tables initialized first). TF reads the
    graph only when it runs: a graph with custom ops still converts, without check data."""

    def run(arrays: list) -> list:
        tf = _tf()
        inits = [n.name for n in graph_def.node if n.op in _TABLE_INIT_OPS]
        # only what the outputs need: the rest may not import (variables' leftovers...)
        needed = tf.compat.v1.graph_util.extract_sub_graph(
            graph_def, sorted({r.split(":")[0] for r in [*outputs, *inputs]} | set(inits)))
        g = tf.Graph()
        with g.as_default():
            tf.graph_util.import_graph_def(needed, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            if inits:
                sess.run(inits)
            return of_session(sess, inputs, outputs)(arrays)

    return run


def record(graph: Graph, run: Run | None, check_data: bool,
           progress: Callable[[str], None]) -> dict:
    """The per-graph metadata the converter stores: ``tensors`` (TF's static shapes) and, if
    asked, ``check`` (check data). Neither is essential to the model: when TF cannot provide
    one, the conversion still succeeds (with a warning for check data)."""
    tf = _tf()
    meta: dict = {}
    progress("recording shapes")
    try:
        meta["tensors"] = tensor_info(graph)
    except Exception:  # noqa: BLE001 - e.g. custom ops TF cannot import: shapes stay unknown
        pass
    if not check_data:
        return meta
    progress("running TensorFlow on a check input")
    reference = f"TensorFlow {tf.__version__}"
    try:
        if run is None:
            raise ConversionError("this source gives no way to run TensorFlow on it")
        meta["check"] = checkdata.make(graph, run, reference)
    except Exception as e:  # noqa: BLE001 - any TF failure only costs the check data
        reason = f"{type(e).__name__}: {_first_cause(str(e))}"
        warnings.warn(f"tfdeploy: no check data stored: TensorFlow could not run the model on "
                      f"a generated input ({reason})", stacklevel=3)
        meta["check"] = {"skipped": reason}
    return meta


def _first_cause(message: str) -> str:
    """The informative line of an error message: TF's graph errors open with "Graph execution
    error:" and a trace of where the node was defined, and end with the cause."""
    lines = [x.strip() for x in message.splitlines() if x.strip()
             and not x.strip().startswith("[[")]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines = lines[-1:]
    return lines[0][:300] if lines else ""
