"""TensorFlow and onnxruntime running a tfdeploy graph: the peers ``tfdeploy bench --compare``
times beside tfdeploy, on the very graph in the file (rebuilt as a GraphDef by ``export.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable

from tfdeploy.ir.graph import Graph

from ..errors import ConversionError
from .export import to_graph_def

Runner = Callable[[list], list]


@contextlib.contextmanager
def native_stderr_silenced():
    """Send what native code writes to stderr (file descriptor 2) to /dev/null meanwhile:
    TensorFlow's C++ runtime prints oneDNN and CUDA notices that TF_CPP_MIN_LOG_LEVEL does not
    reach in TF 2.21. Python exceptions are unaffected."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow():
    """``import tensorflow``, quietly: without its start-up notices on stderr, and with its
    Python logging (deprecation notices of the TF1 APIs used here) at ERROR."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # where "failed call to cuInit" is printed
    tf.get_logger().setLevel(logging.ERROR)
    return tf


def require_tensorflow():
    """``import_tensorflow()`` for a command that cannot go on without it: a ConversionError
    saying how to install it instead of the ImportError (a peer's runner lets the ImportError
    through: the benchmark reports that peer as not installed)."""
    try:
        return import_tensorflow()
    except ImportError as e:
        raise ConversionError(f"this needs TensorFlow, which cannot be imported ({e}): "
                              "pip install 'tfdeploy[tf]'") from None


def tensorflow_runner(graph: Graph, threads: int | None = None) -> tuple[Runner, str]:
    """(run(inputs) -> outputs, description): TF running ``graph`` in a TF1 session, which
    calls the graph without retracing or Python overhead per op."""
    tf = import_tensorflow()
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(to_graph_def(graph), name="")
    config = tf.compat.v1.ConfigProto()
    if threads:
        config.intra_op_parallelism_threads = config.inter_op_parallelism_threads = threads
    with native_stderr_silenced():
        sess = tf.compat.v1.Session(graph=g, config=config)
    ins, outs = [s.ref for s in graph.inputs], [s.ref for s in graph.outputs]
    return (lambda xs: sess.run(outs, dict(zip(ins, xs)))), \
        f"TensorFlow {tf.__version__} (the graph rebuilt from the file)"


def onnxruntime_runner(graph: Graph, threads: int | None = None) -> tuple[Runner, str]:
    """(run(inputs) -> outputs, description): onnxruntime running ``graph``, converted by
    tf2onnx from the rebuilt GraphDef."""
    import_tensorflow()
    import onnx.defs
    import onnxruntime as ort
    import tf2onnx

    tf2onnx.logging.set_level(logging.CRITICAL)  # a failure is raised below, with its reason
    ins, outs = [s.ref for s in graph.inputs], [s.ref for s in graph.outputs]
    with native_stderr_silenced():
        proto, _ = tf2onnx.convert.from_graph_def(to_graph_def(graph), input_names=ins,
                                                  output_names=outs, opset=17)
    # tf2onnx leaves the TF ops it cannot convert in place, which onnxruntime then rejects
    left = sorted({n.op_type for n in proto.graph.node
                   if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)})
    if left:
        raise ConversionError(f"tf2onnx cannot convert op type(s) {', '.join(left)}")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = opts.inter_op_num_threads = threads
    sess = ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return (lambda xs: sess.run(None, dict(zip(names, xs)))), \
        f"onnxruntime {ort.__version__} (tf2onnx {tf2onnx.__version__})"
