"""Helpers shared by kernels."""

from __future__ import annotations

import functools
import threading
import weakref

import numpy as np

from tfdeploy import registry
from tfdeploy.dtypes import low_precision, to_numpy

#: the decorators tfdeploy's own kernels register with (marked built-in: compiler passes may
#: rewrite the ops running them; see ``registry.runs_builtin``)
op = functools.partial(registry.op, builtin=True)
specializer = functools.partial(registry.specializer, builtin=True)

__all__ = ["op", "specializer", "np_dtype", "as_array", "all_finite", "low_precision",
           "normalize_axis",
           "to_numpy", "flush_subnormals", "round_half_away", "Tiled"]

def np_dtype(name: str) -> np.dtype:
    """The numpy dtype of a TF dtype-name attribute (``T``, ``DstT``, ``out_type``...)."""
    return to_numpy(name)


def as_array(x, dtype=None) -> np.ndarray:
    """``x`` as an ndarray of ``dtype`` (0-d numpy scalars become 0-d arrays)."""
    if type(x) is np.ndarray and (dtype is None or x.dtype == dtype):
        return x
    return np.asarray(x, dtype=dtype)


_INT_SCALARS = frozenset((np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                          np.uint32, np.uint64))


def normalize_axis(axis, ndim: int) -> tuple[int, ...]:
    """A TF axis tensor (scalar or vector, possibly negative) as a tuple of non-negative ints."""
    c = axis.__class__
    if c is int or c in _INT_SCALARS or c is np.ndarray and axis.ndim == 0 and \
            axis.dtype.kind in "iu":
        a = int(axis)  # (the common case, a scalar: no array made, ~0.8 us a call less)
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor of rank {ndim}")
        return (a % ndim if ndim else 0,)
    axes = np.asarray(axis).reshape(-1).tolist()
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor of rank {ndim}")
        out.append(a % ndim if ndim else 0)
    return tuple(out)


def all_finite(x: np.ndarray) -> bool:
    """Whether float ``x`` holds no inf or NaN: its min and max are finite (numpy's min and max
    reductions propagate NaN). 0.05 ns a value, against 0.2 for a sum or ``isfinite(x).all()``:
    what kernels check before a fast path that would move an inf or NaN."""
    return x.size == 0 or bool(np.isfinite(np.minimum.reduce(x, None)) and
                               np.isfinite(np.maximum.reduce(x, None)))


def flush_subnormals(x: np.ndarray) -> np.ndarray:
    """``x`` with subnormals flushed to (signed) zero, as TF's CPU kernels compute (FTZ/DAZ)."""
    x = np.asarray(x)
    sub = (x != 0) & (np.abs(x) < np.finfo(x.dtype).tiny)
    return np.where(sub, np.copysign(x.dtype.type(0), x), x) if sub.any() else x


def round_half_away(x: np.ndarray) -> np.ndarray:
    """C's round/roundf (halves away from zero), exactly."""
    a = np.abs(x)
    f = np.floor(a)
    return np.copysign(f + (a - f >= 0.5), x)


class Tiled:
    """A constant operand that kernels broadcast into their results (a bias, a LayerNorm's
    gamma and beta), repeated to each small result shape it meets. numpy runs a binary op on
    two arrays of one shape (or with a 0-d array) through its fast path; broadcasting costs
    more per call than the arithmetic at these sizes: adding a row of 64 to 16 x 64 values
    takes 1.1 us, to the same values repeated 0.4 us (16 x 192: 1.4 against 0.6; 128 x 64: 2.4
    against 1.0).

    ``like(y)``: the operand to use against ``y``: a read-only repeated copy when ``y`` has at
    most ``LIMIT`` values, else (or when ``value`` does not broadcast to ``y``'s shape, whose
    error the op then raises) ``value`` itself. At most ``SHAPES`` shapes are kept, and all
    copies together take at most ``BUDGET`` bytes (a server's plans for many shapes, each with
    its layers' constants); beyond either, ``like`` gives ``value``, broadcast as before."""

    __slots__ = ("value", "shapes", "__weakref__")
    LIMIT = 1 << 15
    SHAPES = 8
    BUDGET = 64 << 20
    _used = [0]  # bytes of all copies alive
    _lock = threading.Lock()

    def __init__(self, value: np.ndarray):
        self.value = value
        self.shapes: dict[tuple, np.ndarray] = {}

    def like(self, y: np.ndarray) -> np.ndarray:
        t = self.shapes.get(y.shape)
        return self._repeat(y.shape) if t is None else t

    def _repeat(self, shape: tuple) -> np.ndarray:
        v = t = self.value
        if len(self.shapes) >= self.SHAPES:  # (ever new shapes: broadcast, as numpy would)
            return v
        size = int(np.prod(shape))
        if 0 < v.ndim <= len(shape) and v.shape != shape and 0 < size <= self.LIMIT:
            nbytes = size * v.itemsize
            with Tiled._lock:
                if Tiled._used[0] + nbytes > self.BUDGET:
                    return v
                Tiled._used[0] += nbytes
            try:
                t = np.ascontiguousarray(np.broadcast_to(v, shape))
                t.setflags(write=False)
            except ValueError:
                t = v
            if t is v:
                with Tiled._lock:
                    Tiled._used[0] -= nbytes
            else:
                weakref.finalize(self, Tiled._release, nbytes)
        self.shapes[shape] = t
        return t

    @staticmethod
    def _release(nbytes: int) -> None:
        with Tiled._lock:
            Tiled._used[0] -= nbytes
