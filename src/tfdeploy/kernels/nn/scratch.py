"""Per-thread scratch buffers for kernels' temporaries (padded blocks, im2col patches).

A fresh multi-megabyte ``np.empty`` per call costs page faults (the allocator returns large
blocks to the system and maps them again): on MobileNetV2 a fifth of the run was the kernel
zeroing pages. A temporary that never leaves its kernel can instead live in a buffer kept per
thread and reused by the next call: no shared state, so two threads may still evaluate one
model at once. Kernels must never return a scratch buffer or a view of one.
"""

from __future__ import annotations

import threading

import numpy as np

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
