"""Bitwise kernels on integer tensors (numpy broadcasting, as TF's)."""

from __future__ import annotations

import numpy as np

from tfdeploy.kernels.common import op


def _check_int(*xs: np.ndarray) -> None:
    for x in xs:
        if x.dtype.kind not in "iu":
            raise TypeError(f"bitwise ops need integer tensors, got {x.dtype}")


def _unsigned(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"u{dtype.itemsize}")


@op("BitwiseAnd")
def BitwiseAnd(x, y):
    """BitwiseAnd: elementwise x & y."""
    _check_int(x, y)
    return np.asarray(np.bitwise_and(x, y))


@op("BitwiseOr")
def BitwiseOr(x, y):
    """BitwiseOr: elementwise x | y."""
    _check_int(x, y)
    return np.asarray(np.bitwise_or(x, y))


@op("BitwiseXor")
def BitwiseXor(x, y):
    """BitwiseXor: elementwise x ^ y."""
    _check_int(x, y)
    return np.asarray(np.bitwise_xor(x, y))


@op("Invert")
def Invert(x):
    """Invert: elementwise bitwise complement ~x."""
    _check_int(x)
    return np.asarray(np.invert(x))


def _shift_count(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """TF clamps shift counts to [0, bits - 1] (no undefined behaviour)."""
    return np.clip(y, 0, dtype.itemsize * 8 - 1)


@op("LeftShift")
def LeftShift(x, y):
    """LeftShift: elementwise x << y, counts clamped to [0, bits - 1], bits shifted out lost."""
    _check_int(x, y)
    u = _unsigned(x.dtype)
    out = np.left_shift(x.astype(u), _shift_count(y, x.dtype).astype(u))
    return np.asarray(out).astype(x.dtype)


@op("RightShift")
def RightShift(x, y):
    """RightShift: elementwise x >> y (arithmetic for signed types), counts clamped to
    [0, bits - 1]."""
    _check_int(x, y)
    return np.asarray(np.right_shift(x, _shift_count(y, x.dtype).astype(x.dtype)))


_BYTE_COUNTS = np.array([bin(i).count("1") for i in range(256)], np.uint8)


@op("PopulationCount")
def PopulationCount(x):
    """PopulationCount: number of set bits of each element (two's complement), as uint8."""
    _check_int(x)
    u = (x if x.flags.c_contiguous else x.copy()).view(_unsigned(x.dtype))
    if hasattr(np, "bitwise_count"):
        return np.asarray(np.bitwise_count(u)).astype(np.uint8, copy=False)
    b = u.view(np.uint8).reshape(x.shape + (x.dtype.itemsize,))
    return _BYTE_COUNTS[b].sum(axis=-1, dtype=np.uint8)
