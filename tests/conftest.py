import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def split_calls(monkeypatch):
    """The (rows, blocks) of each split over threads (``parallel.run_blocks``), as it runs."""
    from tfdeploy.runtime import parallel

    calls = []
    real = parallel.run_blocks

    def counted(fn, rows, k):
        calls.append((rows, k))
        return real(fn, rows, k)

    monkeypatch.setattr(parallel, "run_blocks", counted)
    return calls


@pytest.fixture
def split_everything(split_calls, monkeypatch):
    """Four threads, and every step worth splitting; the (rows, blocks) of each split."""
    from tfdeploy.runtime import parallel, threads

    monkeypatch.setattr(parallel, "MIN_WORK", 1)
    monkeypatch.setitem(threads._state, "threads", 4)
    return split_calls


@pytest.fixture(scope="session")
def glibc():
    """The process's C math library when it is glibc >= 2.28 on x86-64 with FMA: the functions
    TF's kernels call, as TF's Linux wheels get them (tests/test_libm*.py compare with it)."""
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("reference needs glibc on x86-64")
    libc_name, version = platform.libc_ver()
    if libc_name != "glibc" or tuple(int(v) for v in version.split(".")[:2]) < (2, 28):
        pytest.skip("reference needs glibc >= 2.28")
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("cannot read CPU flags")
    if " fma " not in flags:
        pytest.skip("glibc picks its non-FMA variants on this CPU")
    m = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    d, f = ctypes.c_double, ctypes.c_float
    for name, t, n in [("log", d, 1), ("exp", d, 1), ("log1p", d, 1), ("sin", d, 1),
                       ("cos", d, 1), ("pow", d, 2), ("logf", f, 1), ("expf", f, 1)]:
        fn = getattr(m, name)
        fn.restype, fn.argtypes = t, [t] * n
    m.sincosf.restype = None
    m.sincosf.argtypes = [f] + [ctypes.POINTER(f)] * 2
    m.sincos.restype = None
    m.sincos.argtypes = [d] + [ctypes.POINTER(d)] * 2
    return m
