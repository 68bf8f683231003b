"""Threads: tfdeploy's own parallelism, and the BLAS library's kept out of its way.

A multi-threaded BLAS is what makes "more threads" slower: OpenBLAS splits even small
matrix products over all cores and its threads wait for each other by spinning, so one thread
descheduled by another process (or by TensorFlow's pools in the same process) stalls every
product. On a shared 2-core machine MobileNetV2 ran 3-6x slower with OpenBLAS's default
threads than with one. So tfdeploy runs BLAS with one thread and splits large steps itself
(``parallel.py``): independent blocks of rows on a pool of worker threads, joined by blocking
waits, so a busy machine costs at most the serial time, and free cores make large batches
faster.

``configure(threads)`` (``td.setup(threads=n)``) sets how many threads tfdeploy uses; by
default the CPUs this process may run on. BLAS is set to one thread when tfdeploy first
evaluates a model, unless the user chose its thread count (``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``...) or ``td.setup(blas_threads=...)``: the setting is
the process's, so numpy code outside tfdeploy is single-threaded too from then on.
"""

from __future__ import annotations

import ctypes
import os

#: environment variables by which a user chooses BLAS's thread count (then tfdeploy keeps it)
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")

#: environment variables that make numpy or its BLAS use older SIMD kernels than the CPU has
#: (``blas_kernels``): OpenBLAS's core type forced (``OPENBLAS_CORETYPE=Haswell`` on an
#: AVX-512 CPU made ResNet50's matrix products 1.57x slower: 70.4 against 44.7 ms at batch 1 on
#: an AMD EPYC), numpy's dispatch narrowed, MKL's instructions capped
KERNEL_ENV = ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES", "MKL_ENABLE_INSTRUCTIONS",
              "MKL_CBWR")

# OpenBLAS (system, and numpy's bundled scipy-openblas with its symbol suffixes), MKL, BLIS
_SETTERS = ("openblas_set_num_threads", "openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
            "MKL_Set_Num_Threads", "bli_thread_set_num_threads")

_state = {"threads": None, "blas": None, "blas_done": False}


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def threads() -> int:
    """How many threads tfdeploy uses for one evaluation."""
    n = _state["threads"]
    return n if n is not None else cpu_count()


def configure(threads: int | None = None, blas_threads: int | None = None) -> None:
    """Set tfdeploy's thread count and (optionally) BLAS's; see the module docstring."""
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        _state["threads"] = int(threads)
    if blas_threads is not None:
        if int(blas_threads) < 1:
            raise ValueError(f"blas_threads must be at least 1, got {blas_threads}")
        _state["blas"] = int(blas_threads)
        _state["blas_done"] = False
        ensure_blas()


def ensure_blas() -> None:
    """Put BLAS at its thread count once (1, unless the user chose): cheap after the first
    call, which plans make before their first evaluation."""
    if _state["blas_done"]:
        return
    _state["blas_done"] = True
    n = _state["blas"]
    if n is None:
        if any(os.environ.get(v) for v in BLAS_ENV):
            return  # the user chose
        n = 1
    set_blas_threads(n)


def set_blas_threads(n: int) -> bool:
    """Limit the loaded BLAS libraries to ``n`` threads (threadpoolctl where installed, else
    the libraries' own setters found among the process's mapped libraries); False if no BLAS
    library was found."""
    import numpy  # noqa: F401  (loads the BLAS library)

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        threadpool_limits(limits=n, user_api="blas")
        return True
    done = False
    for fn in _blas_functions(_SETTERS):
        fn(ctypes.c_int(n))
        done = True
    return done


def _blas_functions(names):
    """For each BLAS library the process has mapped, the first of ``names`` it exports."""
    for path in sorted(_loaded_libraries()):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                yield fn
                break


_CORENAMES = ("openblas_get_corename", "openblas_get_corename64_",
              "scipy_openblas_get_corename", "scipy_openblas_get_corename64_")


def blas_kernels() -> dict:
    """What chooses the SIMD kernels numpy and its BLAS run: ``{"core": OpenBLAS's core type
    in use ("SkylakeX", "Haswell"...; None without OpenBLAS), "env": {variable: value} for the
    ``KERNEL_ENV`` variables set}``. For reports (``tfdeploy bench``, the benchmark suite):
    a forced core type is the first thing to rule out when matrix products are slow."""
    import numpy  # noqa: F401  (loads the BLAS library)

    core = None
    for fn in _blas_functions(_CORENAMES):
        fn.restype = ctypes.c_char_p
        fn.argtypes = []
        got = fn()
        core = got.decode(errors="replace").strip() if got else None
        if core:
            break
    return {"core": core,
            "env": {v: os.environ[v] for v in KERNEL_ENV if os.environ.get(v)}}


def kernel_note() -> str | None:
    """A warning for reports when the environment narrows numpy's or BLAS's kernels (see
    ``blas_kernels``), else None."""
    k = blas_kernels()
    if not k["env"]:
        return None
    core = f" (OpenBLAS's kernels in use: {k['core']})" if k["core"] else ""
    return ("note: " + ", ".join(f"{v}={x}" for v, x in k["env"].items())
            + (" is set" if len(k["env"]) == 1 else " are set")
            + core + ": numpy or its BLAS may run older SIMD kernels than this CPU has, and "
            "matrix products slower; unset it to measure what the CPU can do")


def _loaded_libraries() -> set[str]:
    try:
        with open("/proc/self/maps") as f:  # Linux; elsewhere threadpoolctl or nothing
            return {line.split()[-1] for line in f
                    if "/" in line and ("blas" in line.lower() or "mkl_rt" in line or
                                        "libblis" in line)}
    except OSError:
        return set()
