"""The thread count of the BLAS library numpy calls, set at run time.

A server evaluates requests in several threads (and batches), which is how it uses the cores;
a multi-threaded BLAS under each of them oversubscribes the CPU. On a busy 2-core machine,
OpenBLAS with 2 threads made a 784-1024-1024-10 MLP 4x (one row) to 9x (64 rows) slower
than with 1. ``--tensorflow_intra_op_parallelism`` (TF Serving's flag for the threads inside
one op) sets it; the server's default is 1.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("tfdeploy.serve")

# OpenBLAS (system, and numpy's bundled scipy-openblas with its symbol suffixes), MKL
_SETTERS = ("openblas_set_num_threads", "openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
            "MKL_Set_Num_Threads")


def _loaded_libraries() -> set[str]:
    try:
        with open("/proc/self/maps") as f:  # Linux; elsewhere the setting is left as it is
            return {line.split()[-1] for line in f
                    if "/" in line and ("blas" in line.lower() or "mkl_rt" in line)}
    except OSError:
        return set()


def set_blas_threads(n: int) -> bool:
    """Limit every loaded BLAS library to ``n`` threads; False if none could be found."""
    import numpy  # noqa: F401  (loads the BLAS library)

    done = False
    for path in _loaded_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                done = True
                break
    if not done:
        log.info("no BLAS library found to set its thread count (set OPENBLAS_NUM_THREADS "
                 "or OMP_NUM_THREADS instead)")
    return done
