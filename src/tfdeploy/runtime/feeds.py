"""Feeds: each value fed to a plan checked against its placeholder and cast, before any
compute. The generated code checks the common case (an ndarray of the right dtype and shape)
inline and calls a FeedCheck only for the rest."""

from __future__ import annotations

import numpy as np

from tfdeploy import dtypes
from tfdeploy.errors import FeedError


class FeedCheck:
    """Validates and casts one fed value against its placeholder, before any compute."""

    __slots__ = ("name", "dtype", "shape")

    def __init__(self, name: str, dtype: str | None, shape):
        self.name = name
        self.dtype = dtypes.to_numpy(dtype) if isinstance(dtype, str) and \
            dtypes.is_known(dtype) else None
        # (dims < 0 are unknown, as TF's -1)
        self.shape = tuple(d if type(d) is int and d >= 0 else None for d in shape) \
            if isinstance(shape, list) else None

    def __call__(self, value):
        if type(value) is np.ndarray:
            a = value
        else:
            try:
                a = np.asarray(value)
            except (ValueError, TypeError) as e:  # a ragged nested list, say
                raise FeedError(f"input {self.name!r}: the value fed is not an array "
                                f"({type(value).__name__}: {e})") from None
        dt = self.dtype
        if dt is not None and (a.dtype != dt or dt.kind == "O"):
            if dt.kind == "O":
                a = _as_bytes(a) if a.dtype.kind in "SUO" else _fail_dtype(self, a)
            elif np.can_cast(a.dtype, dt, "same_kind") or (
                    a.dtype.kind == "b" and dt.kind in "biuf"):
                a = a.astype(dt)
            else:
                _fail_dtype(self, a)
        shape = self.shape
        if shape is not None:
            if a.ndim != len(shape):
                raise FeedError(f"input {self.name!r} expects rank {len(shape)} (shape "
                                f"{_fmt_shape(shape)}), got an array of shape {a.shape}")
            for got, want in zip(a.shape, shape):
                if want is not None and got != want:
                    raise FeedError(f"input {self.name!r} expects shape {_fmt_shape(shape)}, "
                                    f"got {a.shape}")
        return a


def _as_bytes(a: np.ndarray) -> np.ndarray:
    """A string feed as TF holds it: an object array of bytes (str is encoded as UTF-8)."""
    if a.dtype.kind == "U":
        return np.char.encode(a, "utf-8").astype(object)
    if a.dtype.kind == "S":
        return a.astype(object)
    flat = a.reshape(-1)
    if any(type(v) is not bytes for v in flat.tolist()):
        out = np.empty(flat.shape, dtype=object)
        for i, v in enumerate(flat.tolist()):
            if isinstance(v, str):
                v = v.encode("utf-8")
            elif not isinstance(v, bytes):
                raise FeedError(f"string input holds a {type(v).__name__}: {v!r}")
            out[i] = v
        return out.reshape(a.shape)
    return a


def _fail_dtype(check: FeedCheck, a: np.ndarray):
    raise FeedError(f"input {check.name!r} expects {dtypes.from_numpy(check.dtype)}, got an "
                    f"array of {a.dtype} that cannot be cast to it without losing its kind")


def _fmt_shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"
