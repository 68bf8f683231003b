"""The one table between TensorFlow dtype names and numpy dtypes.

The IR and the file name dtypes as TensorFlow does (``tf.DType.name``: ``float32``, ``bfloat16``,
``string``...). ``bfloat16`` maps to ``ml_dtypes.bfloat16`` when ml_dtypes is installed; it is
imported only when a bfloat16 tensor first appears (it takes most of a second to import).
"""

from __future__ import annotations

import numpy as np

from tfdeploy.errors import TFDeployError

_TO_NUMPY: dict[str, np.dtype] = {
    "float16": np.dtype(np.float16),
    "half": np.dtype(np.float16),
    "float32": np.dtype(np.float32),
    "float": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "double": np.dtype(np.float64),
    "int8": np.dtype(np.int8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32),
    "uint64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
    "complex64": np.dtype(np.complex64),
    "complex128": np.dtype(np.complex128),
    "string": np.dtype(object),
    # quantized types are stored as their underlying integers
    "qint8": np.dtype(np.int8),
    "quint8": np.dtype(np.uint8),
    "qint16": np.dtype(np.int16),
    "quint16": np.dtype(np.uint16),
    "qint32": np.dtype(np.int32),
}

#: dtype names whose arrays may be stored as raw bytes in a model file
STORABLE = frozenset(n for n in _TO_NUMPY if n != "string") | {"bfloat16"}

_FROM_NUMPY: dict[np.dtype, str] = {}
for _name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
              "uint16", "uint32", "uint64", "bool", "complex64", "complex128", "string"):
    _FROM_NUMPY[_TO_NUMPY[_name]] = _name
#: float dtypes numpy computes slowly or not at all; kernels may compute them in float32
#: (bfloat16 joins when ml_dtypes is loaded)
LOW_PRECISION_FLOATS = {np.dtype(np.float16)}


def _load_bfloat16() -> np.dtype:
    try:
        import ml_dtypes
    except ImportError:
        raise TFDeployError(
            "dtype bfloat16 needs the ml_dtypes package: pip install ml_dtypes") from None
    bf16 = np.dtype(ml_dtypes.bfloat16)
    _TO_NUMPY["bfloat16"] = bf16
    _FROM_NUMPY[bf16] = "bfloat16"
    LOW_PRECISION_FLOATS.add(bf16)
    return bf16


def to_numpy(name: str) -> np.dtype:
    """The numpy dtype of a TensorFlow dtype name."""
    try:
        return _TO_NUMPY[name]
    except KeyError:
        if name == "bfloat16":
            return _load_bfloat16()
        raise TFDeployError(f"TensorFlow dtype {name!r} has no numpy equivalent") from None


def from_numpy(dtype) -> str:
    """The TensorFlow dtype name of a numpy dtype (``np.str_``/``bytes`` map to ``string``)."""
    dt = np.dtype(dtype)
    name = _FROM_NUMPY.get(dt)
    if name is None:
        if dt.kind in "SUO":
            return "string"
        if dt.name == "bfloat16":  # made by ml_dtypes before we needed it
            _load_bfloat16()
            return "bfloat16"
        raise TFDeployError(f"numpy dtype {dt} has no TensorFlow equivalent")
    return name


def is_known(name: str) -> bool:
    return name in _TO_NUMPY or name == "bfloat16"


def low_precision(dtype: np.dtype) -> bool:
    """Whether numpy is slow or inexact for ``dtype`` (float16, bfloat16): compute in float32."""
    return dtype in LOW_PRECISION_FLOATS or (dtype.kind == "V" and dtype.name == "bfloat16")
