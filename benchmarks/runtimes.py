"""The runtimes compared: converting a Keras model for each, and opening the result for timing.

Conversion runs once per model (``convert_all``), in its own process, and writes files that the
timing processes of both thread modes load: tfdeploy (``.tfd``, what a deployment loads),
onnxruntime through tf2onnx (``.onnx``) and LiteRT through TFLiteConverter (``.tflite``).
TensorFlow itself is the Keras model rebuilt (the builders are deterministic) and run as a
``tf.function`` with ``training=False``. A conversion that fails is recorded with its reason;
the tables show it as failing.
"""

from __future__ import annotations

import os
import time

from common import join_errors, short_error

PEERS = ("tfdeploy", "TF", "onnxruntime", "LiteRT")
FILES = {"tfdeploy": "model.tfd", "onnxruntime": "model.onnx", "LiteRT": "model.tflite"}
OPSET = 17


class ConversionFailed(Exception):
    """Every way of converting failed; the message says how and why, in one line."""


def _spec(model):
    import tensorflow as tf

    return [tf.TensorSpec((None, *i.shape[1:]), i.dtype, name=f"input_{n}")
            for n, i in enumerate(model.inputs)]


def tf_function(model):
    """The model as TensorFlow serves it: a tf.function over a dynamic batch, inference mode."""
    import tensorflow as tf

    return tf.function(lambda x: model(x, training=False), input_signature=_spec(model))


def to_tfdeploy(model, path: str) -> None:
    import tfdeploy as td

    td.convert(model).save(path)


def to_onnx(model, path: str) -> None:
    """tf2onnx: from the tf.function (from_keras fails on Keras 3 Sequential models: KeyError
    on the Keras tensors' names), then from_keras (from_function makes the constants some
    layers capture, like EfficientNet's Normalization, graph inputs)."""
    import tf2onnx

    errors = []
    for how in ("from_function", "from_keras"):
        try:
            if how == "from_function":
                proto, _ = tf2onnx.convert.from_function(tf_function(model),
                                                         input_signature=_spec(model),
                                                         opset=OPSET)
            else:
                proto, _ = tf2onnx.convert.from_keras(model, input_signature=_spec(model),
                                                      opset=OPSET)
        except Exception as e:  # noqa: BLE001  (a peer is lost, not the suite)
            errors.append((how, short_error(e, 200)))
            continue
        left = _unconverted(proto)
        if left:  # tf2onnx keeps ops it cannot convert, and onnxruntime refuses the model
            errors.append((how, f"tf2onnx cannot convert TF op {', '.join(left)}"))
            continue
        inits = {i.name for i in proto.graph.initializer}
        feeds = [i.name for i in proto.graph.input if i.name not in inits]
        if len(feeds) != len(model.inputs):  # captured constants made inputs (EfficientNet)
            errors.append((how, f"tf2onnx made captured tensors inputs: {feeds[1:]}"))
            continue
        with open(path, "wb") as f:
            f.write(proto.SerializeToString())
        return
    raise ConversionFailed(join_errors(errors))


def _unconverted(proto) -> list[str]:
    """Op types of the ONNX graph (and its subgraphs) that no ONNX opset defines."""
    from onnx import defs

    def nodes(graph):
        for node in graph.node:
            yield node
            for attr in node.attribute:
                for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    yield from nodes(g)
    return sorted({n.op_type for n in nodes(proto.graph)
                   if n.domain in ("", "ai.onnx") and not defs.has(n.op_type)})


def to_tflite(model, path: str) -> None:
    """TFLiteConverter with builtin ops only (LiteRT's wheel has no Flex delegate): from the
    Keras model, then from a SavedModel export. (Its from_concrete_functions path gives wrong
    numbers on Keras 3 models here: the variables are not captured.)"""
    import tempfile

    import tensorflow as tf

    errors = []
    for how in ("from_keras_model", "from_saved_model"):
        try:
            if how == "from_keras_model":
                conv = tf.lite.TFLiteConverter.from_keras_model(model)
            else:
                saved = tempfile.mkdtemp(prefix="tfd_bench_saved_")
                model.export(saved, verbose=False)
                conv = tf.lite.TFLiteConverter.from_saved_model(saved)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            blob = conv.convert()
        except Exception as e:  # noqa: BLE001
            errors.append((how, short_error(e, 200)))
            continue
        with open(path, "wb") as f:
            f.write(blob)
        return
    raise ConversionFailed(join_errors(errors))


CONVERTERS = {"tfdeploy": to_tfdeploy, "onnxruntime": to_onnx, "LiteRT": to_tflite}


def convert_all(model, directory: str, peers=PEERS) -> dict[str, dict]:
    """Convert ``model`` for each file-based peer into ``directory``: peer -> {ok, seconds,
    error}."""
    status = {}
    for peer in peers:
        if peer not in CONVERTERS:
            continue
        t0 = time.perf_counter()
        try:
            CONVERTERS[peer](model, os.path.join(directory, FILES[peer]))
            status[peer] = {"ok": True, "seconds": time.perf_counter() - t0}
        except Exception as e:  # noqa: BLE001
            why = str(e) if isinstance(e, ConversionFailed) else short_error(e)
            status[peer] = {"ok": False, "error": f"conversion: {why}",
                            "seconds": time.perf_counter() - t0}
    return status


# ---------------------------------------------------------------------------------- opening
def open_tfdeploy(directory: str, mode: str):
    """(callable, model): the .tfd file loaded as a deployment loads it."""
    import tfdeploy as td

    m = td.load(os.path.join(directory, FILES["tfdeploy"]))
    return m, m


def open_onnx(directory: str, mode: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if mode == "one":
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(directory, FILES["onnxruntime"]), opts,
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return (lambda x: sess.run(None, {name: x})[0]), sess


class LiteRTRunner:
    """A LiteRT interpreter resized to the batch of the input it is first called with."""

    def __init__(self, path: str, mode: str):
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=path, num_threads=1 if mode == "one" else None)
        self.shape = None

    def __call__(self, x):
        it = self.interp
        inp = it.get_input_details()[0]["index"]
        if self.shape != x.shape:
            it.resize_tensor_input(inp, x.shape, strict=False)
            it.allocate_tensors()
            self.shape = x.shape
            self.out = it.get_output_details()[0]["index"]
        it.set_tensor(inp, x)
        it.invoke()
        return it.get_tensor(self.out)


def open_litert(directory: str, mode: str):
    r = LiteRTRunner(os.path.join(directory, FILES["LiteRT"]), mode)
    return r, r


def open_tf(model, mode: str):
    f = tf_function(model)
    return (lambda x: f(x).numpy()), f


OPENERS = {"tfdeploy": open_tfdeploy, "onnxruntime": open_onnx, "LiteRT": open_litert}
