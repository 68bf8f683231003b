"""Bit-exact numerical helpers: glibc's libm functions and TF's Philox streams, in numpy; float16
rounding; functions of float32 values from tables of cubics (float64) and of quadratics
(float32)."""

import contextlib

import numpy as _np

#: np.clip's ufunc, without np.clip's Python wrapper (~4 us a call: ~60 calls a CNN, 2 a GELU
#: block); the wrapper where numpy does not expose it
clip = getattr(getattr(_np, "_core", None), "umath", None)
clip = getattr(clip, "clip", None) or _np.clip

# numpy's floating-point error state (np.errstate) is a context variable since numpy 2.0;
# setting it to a prepared "ignore everything" state costs 0.13 us, np.errstate 0.87 (its
# Python wrapper builds the state on every entry). Where numpy does not expose it, np.errstate.
try:
    from numpy._core._multiarray_umath import _extobj_contextvar as _ERR_STATE
    from numpy._core._multiarray_umath import _make_extobj
    IGNORE_ERRORS = _make_extobj(all="ignore")
    quiet_set, quiet_reset = _ERR_STATE.set, _ERR_STATE.reset
except (ImportError, AttributeError, TypeError):  # (numpy 1.x)
    _ERR_STATE = IGNORE_ERRORS = None

    def quiet_set(_state):
        """numpy 1.x: np.errstate(all="ignore") entered; its token for ``quiet_reset``."""
        e = _np.errstate(all="ignore")
        e.__enter__()
        return e

    def quiet_reset(token):
        token.__exit__(None, None, None)


class _Quiet:
    __slots__ = ("token",)

    def __enter__(self):
        self.token = quiet_set(IGNORE_ERRORS)

    def __exit__(self, *exc):
        quiet_reset(self.token)


_ALREADY = contextlib.nullcontext()


def quiet():
    """``np.errstate(all="ignore")``, cheaper: floating-point errors (overflow to inf, NaN from
    inf - inf, division by zero...) give TF's values without numpy's RuntimeWarnings. A
    compiled plan runs its whole call so (``codegen``); inside one, this costs 0.1 us."""
    if _ERR_STATE is not None and _ERR_STATE.get() is IGNORE_ERRORS:
        return _ALREADY
    return _Quiet()


def cpp_min(x, y):
    """C++'s ``std::min(x, y)`` elementwise (Eigen's ``numext::mini`` on the CPU): ``x`` unless
    ``y < x``, so a NaN ``y`` is skipped and a NaN ``x`` kept, where numpy's minimum propagates
    either. TF's kernels that reduce by it treat NaN by its place."""
    return _np.where(y < x, y, x)


def cpp_max(x, y):
    """C++'s ``std::max(x, y)`` elementwise: ``x`` unless ``x < y`` (see :func:`cpp_min`)."""
    return _np.where(x < y, y, x)


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
