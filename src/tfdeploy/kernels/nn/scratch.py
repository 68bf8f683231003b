"""Per-thread scratch buffers for kernels' temporaries (padded blocks, im2col patches), and
cheap strided views.

A fresh multi-megabyte ``np.empty`` per call costs page faults (the allocator returns large
blocks to the system and maps them again): on MobileNetV2 a fifth of the run was the kernel
zeroing pages. A temporary that never leaves its kernel can instead live in a buffer kept per
thread and reused by the next call: no shared state, so two threads may still evaluate one
model at once. Kernels must never return a scratch buffer or a view of one.
"""

from __future__ import annotations

import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

#: buffers above this size are not kept (one huge input should not pin its memory forever)
KEEP_BYTES = 32 << 20

_local = threading.local()


def scratch(key: str, n: int, dtype) -> np.ndarray:
    """A flat, uninitialised array of ``n`` values of ``dtype``, private to this thread. The
    next call with the same ``key`` and dtype reuses its memory: a kernel takes one key per
    temporary it holds at once, and never lets it escape."""
    dtype = np.dtype(dtype)
    if n * dtype.itemsize > KEEP_BYTES:
        return np.empty(n, dtype)
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    buf = bufs.get((key, dtype))
    if buf is None or buf.size < n:
        buf = bufs[(key, dtype)] = np.empty(n, dtype)
    return buf[:n]


def strided(x: np.ndarray, shape, strides) -> np.ndarray:
    """A read-only view of ``x``'s memory with ``shape`` and ``strides`` (bytes), from its
    first element: ``as_strided`` in ~1 us instead of ~10 (it goes through
    ``__array_interface__``), which matters for layers of a few microseconds."""
    if x.flags.c_contiguous:
        v = np.ndarray(shape, x.dtype, x, 0, strides)
        v.flags.writeable = False
        return v
    return as_strided(x, shape, strides, writeable=False)
