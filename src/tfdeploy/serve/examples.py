"""``:classify`` and ``:regress``: TF Serving's Example-based APIs over named-input signatures.

TF Serving feeds serialized ``tf.Example`` protos to a signature that parses them. tfdeploy
has no ParseExample kernel, so a signature "fits" when its inputs are named like the examples'
features: each feature becomes one input, batched over the examples (shape ``[n]`` when every
example holds one value and the input is a vector, else ``[n, k]``).

Results follow TF Serving's classifier and regressor: classify reads the ``scores`` and/or
``classes`` outputs (or a single float output as scores) and answers
``{"results": [[[label, score], ...], ...]}``; regress reads the one float output (or the one
named ``outputs``) of shape ``[n]`` or ``[n, 1]`` and answers ``{"results": [v, ...]}``.
"""

from __future__ import annotations

import numpy as np

from . import codec
from .codec import debug_string, is_b64
from .status import invalid_argument

__all__ = ["decode_examples", "encode_classify", "encode_regress"]


def _feature_values(name: str, content) -> list:
    vals = content if isinstance(content, list) else [content]
    out = []
    for v in vals:
        if v is None or isinstance(v, list) or (isinstance(v, dict) and not is_b64(v)):
            raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: "
                                   f"{codec._json_type(v)}")
        out.append(v)
    return out


def _example(v, i: int) -> dict[str, list]:
    if not isinstance(v, dict):
        raise invalid_argument(f"Example must be JSON object but got JSON {codec._json_type(v)}")
    return {k: _feature_values(k, c) for k, c in v.items()}


def decode_examples(doc: dict, inputs: list, method: str) -> tuple[int, dict[str, np.ndarray]]:
    """(number of examples, arrays by input name) of a classify/regress request."""
    context = _example(doc["context"], -1) if "context" in doc else {}
    if "examples" not in doc:
        raise invalid_argument(f"JSON Value: {debug_string(doc)} When method is {method}, key "
                               "'examples' is expected and was not found")
    exs = doc["examples"]
    if not isinstance(exs, list):
        raise invalid_argument(f"JSON Value: {debug_string(doc)} Expecting 'examples' value to "
                               "be an list/array")
    if not exs:
        raise invalid_argument(f"JSON Value: {debug_string(doc)} 'examples' value is an empty "
                               "array")
    examples = [{**context, **_example(e, i)} for i, e in enumerate(exs)]
    feeds = {}
    for s in inputs:
        per = []
        for i, ex in enumerate(examples):
            if s.name not in ex:
                raise invalid_argument(f"example {i} has no feature '{s.name}', which input "
                                       f"'{s.name}' of the signature needs (features: "
                                       f"{sorted(ex)})")
            per.append(ex[s.name])
        feeds[s.name] = _feature_array(s, per)
    return len(examples), feeds


def _feature_array(spec, per: list[list]) -> np.ndarray:
    lengths = {len(v) for v in per}
    vector = spec.shape is not None and len(spec.shape) == 1
    if vector or (spec.shape is None and lengths == {1}):
        if lengths != {1}:
            raise invalid_argument(f"feature '{spec.name}' must hold one value per example for "
                                   f"input shape {list(spec.shape or [])}, got lengths "
                                   f"{sorted(lengths)}")
        values: list = [v[0] for v in per]
    else:
        if len(lengths) != 1:
            raise invalid_argument(f"feature '{spec.name}' holds {sorted(lengths)} values in "
                                   "different examples; a dense input needs the same count")
        values = per
    try:
        return codec.to_array(values, spec.dtype)
    except codec.ServingError as e:
        raise invalid_argument(f"feature '{spec.name}': {e.message}") from None


def _pick(outputs: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    if name in outputs:
        return outputs[name]
    floats = [a for a in outputs.values() if np.asarray(a).dtype.kind == "f"]
    return floats[0] if len(outputs) == 1 and floats else None


def _rows(a: np.ndarray, n: int, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 1 and a.shape[0] == n:
        return a[:, None]
    if a.ndim != 2 or a.shape[0] != n:
        raise invalid_argument(f"Expected {what} Tensor shape: [batch_size num_classes] but got "
                               f"{list(a.shape)} for {n} example(s)")
    return a


def encode_classify(outputs: dict[str, np.ndarray], n: int) -> bytes:
    scores = _pick(outputs, "scores")
    classes = outputs.get("classes")
    if scores is None and classes is None:
        raise invalid_argument("The signature does not fit classify: it needs an output named "
                               f"'scores' and/or 'classes' (it has {sorted(outputs)})")
    if scores is not None:
        scores = _rows(scores, n, "scores")
        if scores.dtype.kind != "f":
            raise invalid_argument(f"Expected scores Tensor of float, got {scores.dtype}")
    if classes is not None:
        classes = _rows(classes, n, "classes")
        if classes.dtype.kind not in "OSU":
            raise invalid_argument(f"Expected classes Tensor of string, got {classes.dtype}")
        if scores is not None and classes.shape != scores.shape:
            raise invalid_argument(f"Tensors class and score should match in shape: "
                                   f"{list(classes.shape)} vs {list(scores.shape)}")
    k = (scores if scores is not None else classes).shape[1]
    labels = codec.tokens(classes, "classes") if classes is not None else ['""'] * (n * k)
    values = codec.tokens(scores, "scores") if scores is not None else ["0.0"] * (n * k)
    pairs = [f"[{lab}, {val}]" for lab, val in zip(labels, values)]
    return ('{"results": [' + ",".join(codec.nest(pairs, (k,), n)) + "]}").encode("utf-8")


def encode_regress(outputs: dict[str, np.ndarray], n: int) -> bytes:
    a = _pick(outputs, "outputs")
    if a is None:
        raise invalid_argument("The signature does not fit regress: it needs one float output "
                               f"(or one named 'outputs'); it has {sorted(outputs)}")
    a = np.asarray(a)
    if a.dtype.kind != "f":
        raise invalid_argument(f"Expected output Tensor of float, got {a.dtype}")
    if not (a.shape == (n,) or a.shape == (n, 1)):
        raise invalid_argument(f"Expected output Tensor shape to be either [batch_size] or "
                               f"[batch_size, 1] but got {list(a.shape)} for {n} example(s)")
    return ('{"results": [' + ",".join(codec.tokens(a, "outputs")) + "]}").encode("utf-8")
