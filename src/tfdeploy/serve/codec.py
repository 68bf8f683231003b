"""TF Serving's JSON <-> numpy, both request formats, with TF Serving's checks and messages.

Mirrors ``tensorflow_serving/util/json_tensor.cc``: the row format (``instances`` answered by
``predictions``) and the columnar format (``inputs`` answered by ``outputs``), ``{"b64": ...}``
for binary strings, floats written so they read back to the same value (6 significant digits
when that round-trips, else 9 for float32), and its error texts.

Decoding takes numpy's fast path (``np.array`` of the parsed lists); only when that fails or
gives the wrong kind does it walk the values to report the first problem as TF Serving does.
"""

from __future__ import annotations

import base64
import binascii
import json
import math

import numpy as np

from .status import ServingError, invalid_argument, unimplemented

__all__ = ["decode_predict", "encode_predict", "error_json", "parse_json", "signature_name",
           "to_array", "tokens", "nest", "debug_string"]

# TF dtype name -> numpy dtype a JSON value decodes to (bfloat16: float32, the model casts)
_NUMERIC = {"float32": np.float32, "float64": np.float64, "float16": np.float16,
            "bfloat16": np.float32, "int8": np.int8, "int16": np.int16, "int32": np.int32,
            "int64": np.int64, "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32,
            "uint64": np.uint64, "bool": np.bool_}
# TF's DataTypeString
_TF_NAMES = {"float32": "float", "float64": "double", "float16": "half"}
_FLOATS = ("float32", "float64", "float16", "bfloat16")
_MAX_RANK = 63  # numpy's 64 dimensions, less one for the batch of the row format


def tf_dtype_string(dtype: str) -> str:
    return _TF_NAMES.get(dtype, dtype)


# ---------------------------------------------------------------------------- JSON helpers

# Python's JSON errors in rapidjson's words (what TF Serving answers)
_PARSE_ERRORS = [
    ("Expecting value", "Invalid value."),
    ("Expecting property name", "Missing a name for object member."),
    ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
    ("Expecting ',' delimiter", "Missing a comma or closing bracket after an element."),
    ("Extra data", "The document root must not be followed by other values."),
    ("Unterminated string", "Missing a closing quotation mark in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
    ("Invalid \\u", "Incorrect hex digit after \\u escape in string."),
    ("Invalid control character", "Invalid encoding in string."),
]


def parse_json(body: bytes) -> dict:
    """The request document; TF Serving's errors for empty, malformed or non-object JSON."""
    if not body.strip():
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as e:
        msg = next((m for k, m in _PARSE_ERRORS if e.msg.startswith(k)), e.msg + ".")
        raise invalid_argument(f"JSON Parse error: {msg} at offset: {e.pos}") from None
    except UnicodeDecodeError as e:
        raise invalid_argument(f"JSON Parse error: Invalid encoding in string at offset: "
                               f"{e.start}") from None
    except RecursionError:
        raise invalid_argument("JSON Parse error: the document is nested too deeply") from None
    if not isinstance(doc, dict):
        raise invalid_argument(f"JSON Value: {debug_string(doc)} Is not object")
    return doc


def debug_string(v, limit: int = 256) -> str:
    """Compact JSON of ``v`` cut at ``limit`` characters, as TF Serving quotes values."""
    out: list[str] = []
    size = 0
    stack = [v]
    while stack and size < limit:
        x = stack.pop()
        if isinstance(x, _Raw):
            s = x.text
        elif isinstance(x, list):
            s = "["
            stack.append(_Raw("]"))
            for i in range(len(x) - 1, -1, -1):
                stack.append(x[i])
                if i:
                    stack.append(_Raw(","))
        elif isinstance(x, dict):
            s = "{"
            stack.append(_Raw("}"))
            items = list(x.items())
            for i in range(len(items) - 1, -1, -1):
                stack.append(items[i][1])
                stack.append(_Raw(json.dumps(items[i][0]) + ":"))
                if i:
                    stack.append(_Raw(","))
        else:
            s = json.dumps(x)
        out.append(s)
        size += len(s)
    return "".join(out)[:limit]


class _Raw:
    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def _json_type(v) -> str:
    if v is None:
        return "Null"
    if v is True:
        return "True"
    if v is False:
        return "False"
    if isinstance(v, dict):
        return "Object"
    if isinstance(v, list):
        return "Array"
    if isinstance(v, str):
        return "String"
    return "Number"


def error_json(message: str) -> bytes:
    return json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")


def signature_name(doc: dict) -> str | None:
    if "signature_name" not in doc:
        return None
    name = doc["signature_name"]
    if not isinstance(name, str):
        raise invalid_argument(f"JSON Value: {debug_string(doc)} not formatted correctly. "
                               "'signature_name' key must be a string value.")
    return name or None


# ---------------------------------------------------------------------------- values -> arrays

def is_b64(v) -> bool:
    return isinstance(v, dict) and len(v) == 1 and isinstance(v.get("b64"), str)


def _b64decode(v: dict) -> bytes:
    s = v["b64"]
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def _leaf(v, dtype: str):
    """One JSON scalar as a value of ``dtype``, or TF Serving's type error."""
    ok = False
    if dtype == "string":
        if isinstance(v, str):
            return v.encode("utf-8")
        if isinstance(v, dict):
            if not is_b64(v):
                raise invalid_argument(f"JSON Value: {debug_string(v)} not formatted correctly "
                                       "for base64 data")
            return _b64decode(v)
    elif dtype == "bool":
        ok = isinstance(v, bool)
    elif dtype in _FLOATS:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    elif dtype in _NUMERIC:
        if type(v) is int:
            info = np.iinfo(_NUMERIC[dtype])
            ok = info.min <= v <= info.max
    else:
        raise unimplemented(f"Conversion of JSON Value: {debug_string(v)} to type: "
                            f"{tf_dtype_string(dtype)}")
    if not ok:
        raise invalid_argument(f"JSON Value: {debug_string(v)} Type: {_json_type(v)} is not "
                               f"of expected type: {tf_dtype_string(dtype)}")
    return v


def _walk(val, dtype: str) -> tuple[list, tuple]:
    """TF Serving's FillTensorProto: the flat values and shape of a dense JSON tensor, or the
    first structural or type error, in its words."""
    shape = []
    v = val
    while isinstance(v, list):
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    rank = len(shape)
    if rank > _MAX_RANK:
        raise invalid_argument(f"JSON value nested {rank} levels deep: tensors have at most "
                               f"{_MAX_RANK} dimensions here")
    flat: list = []

    def fill(v, level: int) -> None:
        if not isinstance(v, list):
            if level != rank:
                raise invalid_argument(f"JSON Value: {debug_string(v)} found at incorrect "
                                       f"level: {level + 1} in the JSON DOM. Expected at level: "
                                       f"{rank}")
            if isinstance(v, dict) and dtype != "string":
                raise invalid_argument(f"JSON Value: {debug_string(v)} Type: Object is not of "
                                       f"expected type: {tf_dtype_string(dtype)}")
            flat.append(_leaf(v, dtype))
            return
        if level >= rank:
            raise invalid_argument(f"Encountered list at unexpected level: {level} expected < "
                                   f"{rank}")
        if len(v) != shape[level]:
            raise invalid_argument(f"Encountered list at unexpected size: {len(v)} at level: "
                                   f"{level} expected size: {shape[level]}")
        for e in v:
            fill(e, level + 1)

    fill(val, 0)
    return flat, tuple(shape)


def to_array(val, dtype: str) -> np.ndarray:
    """A JSON value (scalar or nested lists) as an array of the TF dtype ``dtype``."""
    if dtype == "string":
        flat, shape = _walk(val, dtype)
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(shape)
    target = _NUMERIC.get(dtype)
    if target is None:
        _leaf(val, dtype)  # raises UNIMPLEMENTED
    try:
        a = np.array(val)
    except (ValueError, OverflowError):
        a = None
    if a is not None and _kind_fits(a, dtype):
        return a.astype(target, copy=False)
    flat, shape = _walk(val, dtype)  # raises TF Serving's error for the first bad value
    try:
        return np.array(flat, dtype=target).reshape(shape)
    except (OverflowError, ValueError) as e:  # e.g. an integer beyond float range
        raise invalid_argument(f"cannot convert the values to {tf_dtype_string(dtype)}: "
                               f"{e}") from None


def _kind_fits(a: np.ndarray, dtype: str) -> bool:
    k = a.dtype.kind
    if dtype == "bool":
        return k == "b"
    if dtype in _FLOATS:
        return k in "iuf" or (k == "b" and a.size == 0)
    if k not in "iu":
        return a.size == 0 and k in "fb"  # [] parses as float64
    if a.size:
        info = np.iinfo(_NUMERIC[dtype])
        return int(a.min()) >= info.min and int(a.max()) <= info.max
    return True


# ---------------------------------------------------------------------------- predict requests

def decode_predict(doc: dict, inputs: list) -> tuple[str, dict[str, np.ndarray]]:
    """(``"row"`` or ``"columnar"``, arrays by input name) of a predict request.

    ``inputs``: the signature's input specs (``.name``, ``.dtype``)."""
    if not inputs:
        raise invalid_argument("Failed to get input map for signature: DEFAULT")
    has_rows, has_cols = "instances" in doc, "inputs" in doc
    if has_rows and has_cols:
        raise invalid_argument(f"JSON Value: {debug_string(doc)} Not formatted correctly "
                               "expecting only one of 'inputs' or 'instances' keys to exist ")
    if has_rows:
        rows = doc["instances"]
        if not isinstance(rows, list):
            raise invalid_argument(f"JSON Value: {debug_string(doc)} Expecting 'instances' to "
                                   "be an list/array")
        if not rows:
            raise invalid_argument(f"JSON Value: {debug_string(doc)} No values in 'instances' "
                                   "array")
        return "row", _from_instances(rows, inputs)
    if has_cols:
        return "columnar", _from_inputs(doc["inputs"], inputs)
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def _from_instances(rows: list, inputs: list) -> dict[str, np.ndarray]:
    objects = isinstance(rows[0], dict) and not is_b64(rows[0])
    if not isinstance(rows[0], dict) and len(inputs) > 1:
        raise invalid_argument("instances is a plain list, but expecting list of objects as "
                               "multiple input tensors required as per tensorinfo_map")
    names = sorted(s.name for s in inputs)
    by_name = {s.name: s for s in inputs}
    for i, row in enumerate(rows):
        is_obj = isinstance(row, dict) and not is_b64(row)
        if objects and not is_obj:
            raise invalid_argument(f"Expecting object but got list at item {i} of input list")
        if not objects and is_obj:
            raise invalid_argument(f"Expecting value/list but got object at item {i} of input "
                                   "list")
        if objects and sorted(row) != names:
            unknown = [k for k in row if k not in by_name]
            if unknown:
                raise invalid_argument(f"Failed to process element: {i} key: {unknown[0]} of "
                                       "'instances' list. Error: INVALID_ARGUMENT: JSON object: "
                                       f"does not have named input: {unknown[0]}")
            raise invalid_argument(f"Failed to process element: {i} of 'instances' list. JSON "
                                   f"object: {debug_string(row)} keys must be equal to: "
                                   f"{','.join(names)}")
    if objects:
        return {s.name: _stack([r[s.name] for r in rows], s.dtype, s.name)
                for s in inputs}
    return {inputs[0].name: _stack(rows, inputs[0].dtype, None)}


def _stack(values: list, dtype: str, key: str | None) -> np.ndarray:
    """The instances' values of one input batched along a new first dim, or the first
    instance that differs in size or shape from the first one (TF Serving's words)."""
    error = None
    try:
        a = to_array(values, dtype)
        if a.ndim >= 1 and a.shape[0] == len(values):
            return a
    except ServingError as e:
        error = e
    where = f"{{}} key: {key}" if key is not None else "{}"
    first = None
    for i, v in enumerate(values):
        try:
            flat, shape = _walk(v, dtype)
        except ServingError as e:
            raise invalid_argument(f"Failed to process element: {where.format(i)} of "
                                   f"'instances' list. Error: {e.code}: {e.message}") from None
        if first is None:
            first = (len(flat), shape)
            continue
        msg = None
        if len(flat) != first[0]:
            msg = f"Expecting tensor size: {first[0]} but got: {len(flat)}"
        elif shape != first[1]:
            msg = f"Expecting shape {_shape_str(first[1])} but got: {_shape_str(shape)}"
        if msg:
            raise invalid_argument(f"Failed to process element: {where.format(i)} of "
                                   f"'instances' list. Error: INVALID_ARGUMENT: {msg}")
    if error is not None:
        raise error
    raise invalid_argument(f"could not batch the instances of input {key or 'the input'}")


def _shape_str(shape: tuple) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _from_inputs(val, inputs: list) -> dict[str, np.ndarray]:
    if not isinstance(val, dict) or is_b64(val):
        if len(inputs) > 1:
            raise invalid_argument("inputs is a plain value/list, but expecting an object as "
                                   "multiple input tensors required as per tensorinfo_map")
        return {inputs[0].name: to_array(val, inputs[0].dtype)}
    out = {}
    for s in inputs:
        if s.name not in val:
            raise invalid_argument(f"Missing named input: {s.name} in 'inputs' object.")
        out[s.name] = to_array(val[s.name], s.dtype)
    return out


# ---------------------------------------------------------------------------- arrays -> JSON

def _float_tokens(a: np.ndarray) -> list[str]:
    """TF Serving's WriteDecimal: ``%g`` when it reads back to the same value, else full
    precision; a ``.0`` on whole numbers; NaN, Infinity, -Infinity."""
    single = a.dtype != np.float64
    flat = a.astype(np.float32 if single else np.float64).ravel()
    vals = flat.tolist()
    wide = "%.9g" if single else "%r"
    finite = np.isfinite(flat)
    # a numeric pre-check picks the values %g may represent exactly; the exact check below
    # confirms each one, so the written value always reads back to the array's value
    with np.errstate(all="ignore"):
        mag = np.abs(flat.astype(np.float64))
        scale = 10.0 ** (5 - np.floor(np.log10(np.where(mag > 0, mag, 1.0))))
        short = np.round(mag * scale) / scale == mag if not single else \
            (np.round(mag * scale) / scale).astype(np.float32) == mag.astype(np.float32)
    short &= finite
    toks = [wide % v for v in vals]
    idx = np.flatnonzero(short).tolist()
    if idx:
        cand = [f"{vals[i]:g}" for i in idx]
        back = np.array(cand, dtype=np.float64)
        if single:
            back = back.astype(np.float32)
        ok = (back == flat[idx]).tolist()
        for i, c, good in zip(idx, cand, ok):
            if good:
                toks[i] = c
    whole = np.flatnonzero(finite & (np.floor(flat) == flat)).tolist()
    for i in whole:
        t = toks[i]
        if "." not in t and "e" not in t:
            toks[i] = t + ".0"
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            v = vals[i]
            toks[i] = "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return toks


def _string_token(v, as_bytes: bool) -> str:
    if isinstance(v, str):
        v = v.encode("utf-8")
    if not as_bytes:
        try:
            return json.dumps(v.decode("utf-8"), ensure_ascii=False)
        except UnicodeDecodeError:  # JSON cannot carry it raw: binary goes as b64
            pass
    return '{"b64": "' + base64.b64encode(v).decode("ascii") + '"}'


def tokens(a: np.ndarray, name: str) -> list[str]:
    """The JSON text of every element of ``a``, flat in C order."""
    k = a.dtype.kind
    if k == "f" or a.dtype.name == "bfloat16":
        return _float_tokens(a)
    if k in "iu":
        return [str(v) for v in a.ravel().tolist()]
    if k == "b":
        return ["true" if v else "false" for v in a.ravel().tolist()]
    if k in "OSU":
        as_bytes = name.endswith("_bytes")
        return [_string_token(v, as_bytes) for v in a.ravel().tolist()]
    raise invalid_argument(f"Failed to write JSON value for tensor type: {a.dtype.name}")


def nest(toks: list[str], dims: tuple, outer: int = 1) -> list[str]:
    """``outer`` JSON texts, each the nested lists of shape ``dims`` over ``toks``."""
    for k in range(len(dims) - 1, -1, -1):
        d = dims[k]
        groups = outer * math.prod(dims[:k])
        if d == 0:
            toks = ["[]"] * groups
        else:
            toks = ["[" + ",".join(toks[i * d:(i + 1) * d]) + "]" for i in range(groups)]
    return toks


def encode_predict(fmt: str, outputs: dict[str, np.ndarray]) -> bytes:
    """The response body: ``{"predictions": ...}`` (row) or ``{"outputs": ...}`` (columnar)."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    arrays = {k: np.asarray(v) for k, v in outputs.items()}
    if fmt == "columnar":
        parts = {k: nest(tokens(a, k), a.shape)[0] for k, a in arrays.items()}
        if len(parts) == 1:
            body = next(iter(parts.values()))
        else:
            body = "{" + ",".join(f"{json.dumps(k)}: {v}" for k, v in parts.items()) + "}"
        return ('{"outputs": ' + body + "}").encode("utf-8")
    batch = -1
    for k, a in arrays.items():
        if a.ndim == 0:
            raise invalid_argument(f"Tensor name: {k} has no shape information ")
        if batch >= 0 and a.shape[0] != batch:
            raise invalid_argument(f"Tensor name: {k} has inconsistent batch size: "
                                   f"{a.shape[0]} expecting: {batch}")
        batch = a.shape[0]
    rows = {k: nest(tokens(a, k), a.shape[1:], a.shape[0]) for k, a in arrays.items()}
    if len(rows) == 1:
        items = next(iter(rows.values()))
    else:
        keys = [json.dumps(k) + ": " for k in rows]
        cols = list(rows.values())
        items = ["{" + ",".join(k + c[i] for k, c in zip(keys, cols)) + "}"
                 for i in range(batch)]
    return ('{"predictions": [' + ",".join(items) + "]}").encode("utf-8")
