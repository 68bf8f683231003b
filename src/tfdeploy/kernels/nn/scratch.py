"""Per-thread scratch buffers for kernels' temporaries (padded blocks, im2col patches), and
cheap strided views.

A fresh multi-megabyte ``np.empty`` per call costs page faults (the allocator returns large
blocks to the system and maps them again): on MobileNetV2 a fifth of the run was the kernel
zeroing pages. A temporary that never leaves its kernel can instead live in a buffer kept per
thread and reused by the next call: no shared state, so two threads may still evaluate one
model at once. Kernels must never return a scratch buffer or a view of one.

A kernel's *result* cannot live in a scratch buffer (the plan passes it on, the caller may keep
it), but it can be recycled: :func:`output` keeps, per thread, the large buffers it made and
hands one out again once nothing but the pool holds it (its reference count says so: the plan
has freed the result, no view of it is alive, the caller has dropped it). A model called again
with the same shapes then allocates nothing large in its steady state (MobileNetV2 at batch 8
made ~70 MB of fresh arrays a call, each mapped and zeroed by the system anew).

Of the free buffers large enough (up to ``OUTPUT_FIT`` times the result), the one handed out
last is taken: in a chain of layers that is the one the previous layer read, still in cache,
whatever its shape. Kept by exact size instead, a layer's buffer was the one the same layer
used a whole call ago, out of cache by then: writing into it read it back from memory first
(MobileNetV2 at batch 1: 2.7% and 3.8% slower in two A/B runs in one process, one thread;
batch 8 and EfficientNetB0 0.4%; ResNet50 0.3%), and the pool kept a buffer per size (4
buffers of 9.8 MB in all now at batch 1).
"""

from __future__ import annotations

import sys
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from tfdeploy.runtime.limits import check_elements

#: buffers above this size are not kept (one huge input should not pin its memory forever)
KEEP_BYTES = 32 << 20

_local = threading.local()

#: results below this size come from np.empty: the allocator serves them from its heap without
#: system calls or page faults
OUTPUT_MIN_BYTES = 1 << 18
#: at most this many buffers are kept per thread, and this many bytes of them in all (the
#: ones handed out longest ago go first)
OUTPUT_KEEP = 32
OUTPUT_KEEP_BYTES = 512 << 20
#: a free buffer serves a result of at least 1 / OUTPUT_FIT of its size
OUTPUT_FIT = 8
#: a single result above this size is never kept (MobileNetV2's largest at batch 8: 38 MB)
OUTPUT_MAX_BYTES = 128 << 20


def _free_count() -> int:
    """A kept result's reference count when nothing else holds it, measured as ``output``
    reads it (the pool's list, the loop variable, getrefcount's argument: 3 on CPython up to
    3.13; an interpreter that borrows references, as 3.14 may, counts fewer, and must not
    make a result in use look free)."""
    kept = [np.empty(0)]
    for i in range(len(kept) - 1, -1, -1):
        buf = kept[i]
        return sys.getrefcount(buf)
    raise AssertionError


_FREE = _free_count()


def scratch(key: str, n: int, dtype) -> np.ndarray:
    """A flat, uninitialised array of ``n`` values of ``dtype``, private to this thread. The
    next call with the same ``key`` and dtype reuses its memory: a kernel takes one key per
    temporary it holds at once, and never lets it escape."""
    dtype = np.dtype(dtype)
    if n * dtype.itemsize > KEEP_BYTES:
        # (the tensor limit holds for temporaries too: a hostile dilation or padding made
        # padded inputs of hundreds of GB)
        check_elements((n,), dtype.itemsize, "a temporary of the kernel")
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


def output(shape: tuple, dtype) -> np.ndarray:
    """An uninitialised, writeable C-contiguous array of ``shape`` and ``dtype`` for a kernel's
    result: a fresh one, or a view of a buffer this thread made for an earlier result that
    nobody holds any more (see the module docstring). Unlike a scratch buffer it may be
    returned."""
    dtype = np.dtype(dtype)
    nbytes = dtype.itemsize
    for d in shape:
        nbytes *= d
    if nbytes < OUTPUT_MIN_BYTES or nbytes > OUTPUT_MAX_BYTES or not OUTPUT_KEEP_BYTES:
        if nbytes > OUTPUT_MAX_BYTES:
            check_elements(shape, dtype.itemsize, "the result")
        return np.empty(shape, dtype)
    kept = getattr(_local, "outputs", None)
    if kept is None:
        kept = _local.outputs = []  # bytes buffers, the one handed out last at the end
        _local.output_bytes = 0
    largest = nbytes * OUTPUT_FIT
    found = None
    for i in range(len(kept) - 1, -1, -1):
        buf = kept[i]
        if nbytes <= buf.size <= largest and sys.getrefcount(buf) == _FREE:
            found = kept.pop(i)
            break
    if found is None:
        found = np.empty(nbytes, np.uint8)
        _local.output_bytes += nbytes
        while kept and (len(kept) >= OUTPUT_KEEP or
                        _local.output_bytes > OUTPUT_KEEP_BYTES):  # (in use or not)
            _local.output_bytes -= kept.pop(0).size
        if _local.output_bytes > OUTPUT_KEEP_BYTES:  # (alone over the limit)
            _local.output_bytes -= nbytes
            return found.view(dtype).reshape(shape)
    kept.append(found)
    return found[:nbytes].view(dtype).reshape(shape)


def release_outputs() -> None:
    """Drop this thread's kept results (memory goes back as the arrays die)."""
    _local.outputs = []
    _local.output_bytes = 0


def keep_outputs(mb: int) -> None:
    """Keep at most ``mb`` MB of results per thread from now on (``td.setup(recycle_mb=)``);
    0 keeps none. This thread's kept results are dropped; other threads keep theirs until
    their next results find the new limit."""
    mb = int(mb)
    if mb < 0:
        raise ValueError(f"recycle_mb must be at least 0, got {mb}")
    global OUTPUT_KEEP_BYTES
    OUTPUT_KEEP_BYTES = mb << 20
    release_outputs()
