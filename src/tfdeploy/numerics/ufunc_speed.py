"""Which of two numpy ufuncs computing the same thing is cheaper on this machine, measured once.

numpy computes its float transcendental functions with SIMD code only on some CPUs: with
AVX-512 (and Intel's SVML, linked on Linux) a float32 ``exp2`` costs 0.22 ns a value and
``exp`` 0.48 (a Sapphire Rapids Xeon); on an AMD EPYC with AVX2 both, and ``tanh``, are calls
of the C library per value: ``exp2`` 5.0 ns, ``tanh`` 4.1 and ``exp`` 2.2. A kernel that can
compute its values through either (swish by ``exp2`` or ``exp``, GELU's tanh form by ``tanh``
or ``exp``) asks :func:`cheaper` once, when it is built: the two ufuncs are timed on 2,048
values, alternately, and the best of several calls of each compared. The choice holds for the
process (its values do not change from call to call); another machine may round the last bit
differently, as TensorFlow's kernels do from CPU to CPU.

:func:`fastest` is the timing every such measured choice shares (``kernels/math/few_rows.py``,
``kernels/nn/winograd.py``'s band), under one lock (``LOCK``): a measurement beside another
would time both forms beside foreign work, and could keep a different answer. Where two forms
are close, two processes may choose differently and give the same rows results that differ in
the last bit; ``td.setup(deterministic=True)`` (:func:`set_measuring`) or
``TFDEPLOY_DETERMINISTIC=1`` turns the measuring off: every choice takes its default form.
"""

from __future__ import annotations

import functools
import os
import threading
import time

import numpy as np

__all__ = ["ENV_DETERMINISTIC", "LOCK", "cheaper", "fastest", "measuring", "register",
           "set_measuring"]

_VALUES = 2048
_ROUNDS = 7
#: one measurement at a time, in the whole process (reentrant: a measured form may itself
#: ask a cached question)
LOCK = threading.RLock()

#: set to 1, no choice is measured in this process (``td.setup(deterministic=True)``): read
#: when this module is first imported, so worker processes (Dask's, a server's) that inherit
#: it choose alike from their start
ENV_DETERMINISTIC = "TFDEPLOY_DETERMINISTIC"
_measuring = os.environ.get(ENV_DETERMINISTIC, "").strip().lower() not in (
    "1", "true", "yes", "on")
#: the caches of measured choices (``register``): emptied when measuring is turned on or off
_caches: list[dict] = []


def measuring() -> bool:
    """Whether choices are measured (the default), or every one takes its default form."""
    return _measuring


def set_measuring(on: bool) -> None:
    """Measure choices (the default) or not: without measuring, every choice takes its
    default form (the product, im2col, ``exp``), the same in every process, so that two
    processes on one machine give the same rows the same bits (measured, two Dask workers may
    time close forms differently and differ in the last bit). The choices made so far are
    forgotten; a plan compiled before keeps what it chose when it was built (the swish's
    power), so set this before the first evaluation (or ``TFDEPLOY_DETERMINISTIC=1``)."""
    global _measuring
    with LOCK:
        _measuring = bool(on)
        for cache in _caches:
            cache.clear()
        cheaper.cache_clear()
        _measure.cache_clear()


def register(cache: dict) -> dict:
    """Register (and return) a module's cache of measured choices, emptied by
    :func:`set_measuring`."""
    _caches.append(cache)
    return cache


def fastest(forms, rounds: int, margin: float) -> int:
    """The index of the fastest of ``forms`` (callables, the first the default), each timed
    ``rounds`` times, alternately, the best of each compared: 0 unless another takes below
    ``margin`` times the first's time; 0 without timing anything when choices are not
    measured (:func:`set_measuring`). The caller holds ``LOCK``."""
    if not _measuring:
        return 0
    best = [float("inf")] * len(forms)
    for _ in range(rounds):
        for i, f in enumerate(forms):
            clock = time.perf_counter
            t0 = clock()
            f()
            best[i] = min(best[i], clock() - t0)
    i = min(range(1, len(forms)), key=best.__getitem__)
    return i if best[i] < margin * best[0] else 0


@functools.cache
def cheaper(a: str, b: str, dtype: str = "float32", margin: float = 0.8) -> bool:
    """Whether numpy's unary ufunc ``a`` costs less than ``margin`` times ``b`` on ``dtype``
    values here (values in [-8, 8]: no overflow). The margin keeps a choice that a noisy
    measurement could flip to the one that is not clearly better: ``b``."""
    # (two caches: this one answers a repeated question without the lock, from the hot path
    # of GELU's tanh form; ``_measure``'s, a thread that waited on the lock without timing
    # again)
    with LOCK:
        return _measure(a, b, dtype, margin)


@functools.cache
def _measure(a: str, b: str, dtype: str, margin: float) -> bool:
    fa, fb = getattr(np, a), getattr(np, b)
    x = np.linspace(-8, 8, _VALUES, dtype=dtype)
    y = np.empty_like(x)
    return fastest([lambda: fb(x, out=y), lambda: fa(x, out=y)], _ROUNDS, margin) == 1
