"""The one table between TensorFlow dtype names and numpy dtypes.

The IR and the file name dtypes as TensorFlow does (``tf.DType.name``: ``float32``, ``bfloat16``,
``string``...). ``bfloat16`` maps to ``ml_dtypes.bfloat16`` when ml_dtypes is installed.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.errors import TFDeployError

try:  # optional: numpy has no bfloat16 of its own
    import ml_dtypes as _ml_dtypes

    _BFLOAT16 = np.dtype(_ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - depends on the environment
    _BFLOAT16 = None

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
if _BFLOAT16 is not None:
    _TO_NUMPY["bfloat16"] = _BFLOAT16

#: dtype names whose arrays may be stored as raw bytes in a model file
STORABLE = frozenset(n for n in _TO_NUMPY if n != "string") | {"bfloat16"}

_FROM_NUMPY: dict[np.dtype, str] = {}
for _name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
              "uint16", "uint32", "uint64", "bool", "complex64", "complex128", "string"):
    _FROM_NUMPY[_TO_NUMPY[_name]] = _name
if _BFLOAT16 is not None:
    _FROM_NUMPY[_BFLOAT16] = "bfloat16"

#: float dtypes numpy computes slowly or not at all; kernels may compute them in float32
LOW_PRECISION_FLOATS = frozenset(d for d in (np.dtype(np.float16), _BFLOAT16) if d is not None)


def to_numpy(name: str) -> np.dtype:
    """The numpy dtype of a TensorFlow dtype name."""
    try:
        return _TO_NUMPY[name]
    except KeyError:
        if name == "bfloat16":
            raise TFDeployError(
                "dtype bfloat16 needs the ml_dtypes package: pip install ml_dtypes") from None
        raise TFDeployError(f"TensorFlow dtype {name!r} has no numpy equivalent") from None


def from_numpy(dtype) -> str:
    """The TensorFlow dtype name of a numpy dtype (``np.str_``/``bytes`` map to ``string``)."""
    dt = np.dtype(dtype)
    name = _FROM_NUMPY.get(dt)
    if name is None:
        if dt.kind in "SUO":
            return "string"
        raise TFDeployError(f"numpy dtype {dt} has no TensorFlow equivalent")
    return name


def is_known(name: str) -> bool:
    return name in _TO_NUMPY
