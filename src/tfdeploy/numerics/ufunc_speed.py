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
"""

from __future__ import annotations

import functools
import threading
import time

import numpy as np

__all__ = ["cheaper"]

_VALUES = 2048
_ROUNDS = 7
_LOCK = threading.Lock()  # (one measurement at a time: two threads compiling plans at once
# would each time the ufuncs beside the other's work, and could keep different answers)


@functools.cache
def cheaper(a: str, b: str, dtype: str = "float32", margin: float = 0.8) -> bool:
    """Whether numpy's unary ufunc ``a`` costs less than ``margin`` times ``b`` on ``dtype``
    values here (values in [-8, 8]: no overflow). The margin keeps a choice that a noisy
    measurement could flip to the one that is not clearly better: ``b``."""
    # (two caches: this one answers a repeated question without the lock, from the hot path
    # of GELU's tanh form; ``_measure``'s, a thread that waited on the lock without timing
    # again)
    with _LOCK:
        return _measure(a, b, dtype, margin)


@functools.cache
def _measure(a: str, b: str, dtype: str, margin: float) -> bool:
    fa, fb = getattr(np, a), getattr(np, b)
    x = np.linspace(-8, 8, _VALUES, dtype=dtype)
    y = np.empty_like(x)
    best_a = best_b = float("inf")
    clock = time.perf_counter
    for _ in range(_ROUNDS):
        t0 = clock()
        fa(x, out=y)
        t1 = clock()
        fb(x, out=y)
        t2 = clock()
        best_a, best_b = min(best_a, t1 - t0), min(best_b, t2 - t1)
    return best_a < margin * best_b
