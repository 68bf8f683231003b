"""The C heap: large arrays served from memory the process already has, not fresh pages.

glibc's malloc hands out blocks above its mmap threshold (128 KB, rising by itself up to
32 MB as such blocks are freed) as fresh mappings, and gives freed memory at the top of its
heap back to the system beyond its trim threshold. Every large array a kernel makes then
costs page faults: the system maps and zeroes its pages anew on each call. Kernels that make
their results through ``scratch.output`` recycle them, but many kernels end in a numpy call
that allocates (a concatenation, a gather, a resize's temporaries), and so does numpy code
around tfdeploy. A segmentation head (bilinear upsampling, pooling, three convs) took 4,000
page faults a call at batch 1, half its time (17.8 ms against 8.9 with the faults gone); a
small U-Net 1,100 (12.7 against 10.1 ms).

So at its first evaluation tfdeploy sets, for the whole process:

- ``M_MMAP_THRESHOLD`` to 64 MB (32 MB where glibc allows no more): smaller blocks come from
  the heap;
- ``M_TRIM_THRESHOLD`` to ``heap_mb`` (256 MB by default): up to that much freed memory stays
  in the heap for the next call instead of going back to the system;
- ``M_ARENA_MAX`` to 1: threads share the main heap (a thread's own arena grows in 64 MB
  heaps, and blocks larger than what is left in one are mapped afresh each time: at batch 8
  the segmentation head kept 5,700 faults a call on a worker thread). Contention on it costs
  nothing measurable next to the arithmetic on these blocks.

The price is memory: the process keeps up to ``heap_mb`` of freed memory between calls, as
onnxruntime's and TensorFlow's arenas keep theirs. ``td.setup(heap_mb=0)`` leaves the
allocator as glibc set it (or, once set, puts glibc's default thresholds back; threads that
shared the main heap keep sharing it). Nothing is changed when the allocator is not glibc's,
or when the user tuned it (``MALLOC_*_`` environment variables, ``GLIBC_TUNABLES`` with
``glibc.malloc``).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

#: blocks up to this size come from the heap (glibc refuses more than HEAP_MAX / 2 = 32 MB
#: before 2.35; ``_apply`` then settles for that)
MMAP_BYTES = 64 << 20
#: glibc's own default thresholds (before its dynamic adjustment), put back by heap_mb=0
_DEFAULT_BYTES = 128 << 10
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
#: environment variables by which a user tunes glibc's malloc (then tfdeploy keeps off it)
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
              "MALLOC_MMAP_MAX_", "MALLOC_ARENA_MAX", "MALLOC_ARENA_TEST")

_state = {"mb": 256, "done": False, "applied": False}
_lock = threading.Lock()


def user_tuned() -> bool:
    """Whether the user set glibc's malloc parameters through the environment."""
    return any(os.environ.get(v) for v in MALLOC_ENV) or \
        "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "")


def _mallopt():
    """glibc's ``mallopt``, or None when the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):
            return None
        fn = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


def ensure() -> None:
    """Tune the heap once (see the module docstring): cheap after the first call, which
    plans make before their first evaluation."""
    if _state["done"]:
        return
    with _lock:
        if _state["done"]:
            return
        _state["done"] = True
        if _state["mb"] and not user_tuned():
            _state["applied"] = _apply(_state["mb"])


def _apply(mb: int) -> bool:
    mallopt = _mallopt()
    if mallopt is None:
        return False
    if not mallopt(_M_MMAP_THRESHOLD, min(MMAP_BYTES, mb << 20)):
        if not mallopt(_M_MMAP_THRESHOLD, min(32 << 20, mb << 20)):
            return False
    mallopt(_M_TRIM_THRESHOLD, min(mb, (1 << 31) - 1 >> 20) << 20)
    mallopt(_M_ARENA_MAX, 1)
    return True


def configure(mb: int) -> None:
    """``td.setup(heap_mb=mb)``: keep up to ``mb`` MB of freed memory in the heap (0: leave
    glibc's allocator as it was, or put its default thresholds back). Takes effect at once
    if tfdeploy has already evaluated a model, else at its first evaluation."""
    mb = int(mb)
    if mb < 0:
        raise ValueError(f"heap_mb must be at least 0, got {mb}")
    with _lock:
        _state["mb"] = mb
        if not _state["done"]:
            return
        if mb and not user_tuned():
            _state["applied"] = _apply(mb)
        elif _state["applied"]:
            mallopt = _mallopt()
            mallopt(_M_MMAP_THRESHOLD, _DEFAULT_BYTES)
            mallopt(_M_TRIM_THRESHOLD, _DEFAULT_BYTES)
            _state["applied"] = False


def applied() -> bool:
    """Whether tfdeploy has tuned this process's heap."""
    return _state["applied"]
