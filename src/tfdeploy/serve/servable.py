"""One loaded model version and its signatures, as TF Serving describes them.

A tfdeploy file holds one or more graphs (``model.graphs``, by key). Each graph is a signature:
the first is ``serving_default`` (TF Serving's default signature) and every graph is also
reachable under its own key, so a file written with ``model.add(..., key="classify")`` serves
a ``classify`` signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .status import invalid_argument

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"

# TF DataType enum names of the dtype names TensorSpec carries
_DT_NAMES = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "float16": "DT_HALF",
             "bfloat16": "DT_BFLOAT16", "string": "DT_STRING", "bool": "DT_BOOL"}


_WARM_DTYPES = {"bfloat16": "float32", "qint8": "int8", "quint8": "uint8", "qint32": "int32"}


def dt_name(dtype: str | None) -> str:
    """TF's enum name of a dtype: ``float32`` -> ``DT_FLOAT``."""
    if not dtype:
        return "DT_INVALID"
    return _DT_NAMES.get(dtype, "DT_" + dtype.upper())


@dataclass(frozen=True)
class Spec:
    """A signature entry: its public name, TF tensor name, dtype name and shape."""

    name: str
    tensor: str
    dtype: str
    shape: tuple | None  # dims (None = unknown), or None for an unknown rank

    def proto_json(self) -> dict[str, Any]:
        """The ``TensorInfo`` as TF Serving's metadata JSON shows it."""
        if self.shape is None:
            shape: dict[str, Any] = {"dim": [], "unknown_rank": True}
        else:
            shape = {"dim": [{"size": str(-1 if d is None else d), "name": ""}
                             for d in self.shape], "unknown_rank": False}
        return {"dtype": dt_name(self.dtype), "tensor_shape": shape, "name": self.tensor}


class Signature:
    """A graph of the model as a function of named arrays to named arrays."""

    def __init__(self, model, key: str, name: str):
        self.model = model
        self.key = key
        self.name = name
        graph = model.graphs[key]
        self.inputs = [_spec(s) for s in graph.inputs]
        self.outputs = [_spec(s) for s in graph.outputs]
        self.input_names = [s.name for s in self.inputs]
        self.output_names = [s.name for s in self.outputs]
        self._in = {s.name: model.get(s.name, key=key) for s in graph.inputs}
        self._out = [model.get(s.name, key=key) for s in graph.outputs]
        self.batchable = _batchable(self.inputs, self.outputs)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Evaluate the graph on named inputs; the outputs by name, in signature order."""
        values = self.model.eval(self._out, {self._in[k]: v for k, v in feeds.items()})
        return dict(zip(self.output_names, values))

    def warm_up(self) -> bool:
        """Evaluate once on zeros (batch 1) so the first request does not pay for compiling
        the plan; best effort: False when the inputs' shapes are not all known or the model
        does not run on zeros."""
        feeds = {}
        for s in self.inputs:
            if s.shape is None or any(d is None for d in s.shape[1:]):
                return False
            shape = tuple(1 if d is None else d for d in s.shape)
            if s.dtype == "string":
                feeds[s.name] = np.full(shape, b"", dtype=object)
            else:
                try:
                    feeds[s.name] = np.zeros(shape, dtype=np.dtype(_WARM_DTYPES.get(s.dtype,
                                                                                     s.dtype)))
                except TypeError:
                    return False
        try:
            self.run(feeds)
        except Exception:  # zeros may be no valid input for this model: nothing lost
            return False
        return True

    def proto_json(self) -> dict[str, Any]:
        return {"inputs": {s.name: s.proto_json() for s in self.inputs},
                "outputs": {s.name: s.proto_json() for s in self.outputs},
                "method_name": PREDICT_METHOD, "defaults": {}}


def _spec(s) -> Spec:
    return Spec(s.name, s.ref, s.dtype, None if s.shape is None else tuple(s.shape))


def _batchable(inputs: list[Spec], outputs: list[Spec]) -> bool:
    """Requests may be merged along dim 0 only if that dim is the batch for every tensor."""
    if not inputs or not outputs:
        return False
    return all(s.shape is not None and len(s.shape) >= 1 and s.shape[0] is None
               for s in inputs) and \
        all(s.shape is None or (len(s.shape) >= 1 and s.shape[0] is None) for s in outputs)


class Servable:
    """One loaded version of a model: the model, where it came from, its signatures."""

    def __init__(self, name: str, version: int, model, source: str, digest: str,
                 snapshot: str | None = None):
        self.name = name
        self.version = version
        self.model = model
        self.source = source
        self.digest = digest
        self.snapshot = snapshot
        if not model.graphs:
            raise ValueError("the model file holds no graph")
        keys = list(model.graphs)
        self.signatures: dict[str, Signature] = {DEFAULT_SIGNATURE:
                                                 Signature(model, keys[0], DEFAULT_SIGNATURE)}
        for k in keys:
            if k != DEFAULT_SIGNATURE:
                self.signatures[k] = Signature(model, k, k) if k != keys[0] else \
                    self.signatures[DEFAULT_SIGNATURE]
        # the metadata lists the first graph once, as serving_default
        self.listed = [DEFAULT_SIGNATURE] + [k for k in keys[1:] if k != DEFAULT_SIGNATURE]

    def signature(self, name: str | None) -> Signature:
        sig = self.signatures.get(name or DEFAULT_SIGNATURE)
        if sig is None:
            raise invalid_argument(f'Serving signature name: "{name}" not found in signature '
                                   "def")
        return sig

    def metadata_json(self) -> dict[str, Any]:
        return {"model_spec": {"name": self.name, "signature_name": "",
                               "version": str(self.version)},
                "metadata": {"signature_def": {"signature_def": {
                    k: self.signatures[k].proto_json() for k in self.listed}}}}
