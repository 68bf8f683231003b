"""Bit-exact numerical helpers: glibc's libm functions and TF's Philox streams, in numpy; float16
rounding; functions of float32 values from tables of cubics (float64) and of quadratics
(float32)."""

import numpy as _np

#: np.clip's ufunc, without np.clip's Python wrapper (~4 us a call: ~60 calls a CNN, 2 a GELU
#: block); the wrapper where numpy does not expose it
clip = getattr(getattr(_np, "_core", None), "umath", None)
clip = getattr(clip, "clip", None) or _np.clip


def blocks(n: int, block: int) -> list:
    """(start, stop) of the blocks of ``n`` values taken ``block`` at a time, a remainder of
    fewer than ``block // 4`` joining the last block instead of making one of its own (a
    block's numpy calls cost the same whatever its size)."""
    starts = list(range(0, n, block))
    if len(starts) > 1 and n - starts[-1] < block // 4:
        starts.pop()
    return list(zip(starts, starts[1:] + [n]))


def thread_views(local, n: int, make) -> tuple:
    """Views ``[:n]`` of this thread's buffers, ``make()`` on its first use (kept in the
    ``threading.local`` ``local``), with the views of a few recent sizes cached (slicing
    five arrays costs a microsecond)."""
    views = getattr(local, "views", None)
    if views is None:
        views = local.views = {}
        local.base = make()
    b = views.get(n)
    if b is None:
        if len(views) >= 8:
            views.clear()
        b = views[n] = tuple(a[:n] for a in local.base)
    return b
