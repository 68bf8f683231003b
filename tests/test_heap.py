"""The C heap tuned at the first evaluation (runtime/heap.py): large arrays come from memory
the process keeps, not from fresh mappings; off when asked or when the user tuned malloc.

Each case runs in a fresh process (the setting is the process's) and looks where a 40 MB
array's memory lies: in the heap (``[heap]`` in /proc/self/maps) when tuned; untuned, glibc
maps a block that large afresh every time (its own threshold stops rising at 32 MB).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

import tfdeploy as td
from tfdeploy.runtime import heap

HERE = os.path.dirname(os.path.abspath(__file__))


def _glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "gnu_get_libc_version")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _glibc(), reason="the tuning is glibc's mallopt")

_SCRIPT = r"""
import sys, threading
import numpy as np
sys.path.insert(0, {here!r})
import tfdeploy as td
from tfdeploy.runtime import heap
from graphs import dense_softmax

def in_heap():
    a = np.empty(40 << 20, np.uint8)
    a.fill(1)
    addr = a.ctypes.data
    with open("/proc/self/maps") as f:
        for line in f:
            if line.rstrip().endswith("[heap]"):
                lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
                if lo <= addr < hi:
                    return True
    return False

{before}
m, _ = dense_softmax()
y = m(np.ones((2, 784), np.float32))
assert y.shape == (2, 100)
{after}
first = in_heap()
again = in_heap()
seen = []
t = threading.Thread(target=lambda: seen.append(in_heap()))
t.start()
t.join()
print(heap.applied(), first and again, seen[0])
"""


def _run(before: str = "", after: str = "", env: dict | None = None) -> tuple[bool, ...]:
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    e.update(env or {})
    code = _SCRIPT.format(here=HERE, before=before, after=after)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=e, timeout=120)
    assert out.returncode == 0, out.stderr
    return tuple(v == "True" for v in out.stdout.split())


def test_the_first_evaluation_keeps_large_blocks_in_the_heap():
    assert _run() == (True, True, True)  # (a thread started afterwards shares the heap)


def test_heap_mb_0_leaves_the_allocator_alone():
    assert _run(before="td.setup(heap_mb=0)") == (False, False, False)


def test_heap_mb_0_afterwards_puts_glibcs_thresholds_back():
    assert _run(after="td.setup(heap_mb=0)")[:2] == (False, False)


def test_a_user_tuned_allocator_is_left_alone():
    assert _run(env={"MALLOC_ARENA_MAX": "2"})[:2] == (False, False)


def test_heap_mb_must_not_be_negative():
    with pytest.raises(ValueError, match="heap_mb"):
        td.setup(heap_mb=-1)
    assert heap.MMAP_BYTES == 64 << 20
    np.testing.assert_equal(heap.user_tuned(), any(os.environ.get(v) for v in heap.MALLOC_ENV)
                            or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""))
