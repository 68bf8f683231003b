"""Parallel blocks: one large step split into independent blocks of rows over worker threads.

numpy releases the GIL in matrix products and in ufuncs on large arrays, so blocks of rows
run truly in parallel. The caller computes one block itself and waits for the others with a
blocking join (no spinning): on a machine whose cores are busy the blocks simply run one
after the other, so the step costs about its serial time; on free cores it is faster. A step
splits only when each block gets enough work to pay for the handoff (``MIN_WORK``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tfdeploy.numerics import IGNORE_ERRORS, quiet_reset, quiet_set
from tfdeploy.runtime import threads as _threads

#: a step splits only into blocks of at least this much work (multiply-adds, or values for
#: elementwise work): ~0.1-0.3 ms on one core, against tens of microseconds of handoff
MIN_WORK = 1 << 21
#: a matrix product's multiply-add costs a tenth of a depthwise or elementwise one's (BLAS),
#: so a product splits only from this many times ``MIN_WORK`` multiply-adds a block (8 M,
#: ~0.13 ms). Measured on a 2-core VM whose thread handoff costs 10-150 us: with blocks from
#: 2 M, MobileNetV2's 1x1 convolutions at 14 x 14 and 7 x 7 (2-8 M multiply-adds) ran
#: 1.1-1.4x slower split, and the model at batch 1 on two threads took 1.16x its one-thread
#: time (now 0.97-0.99x); EfficientNetB0 b1 1.06 -> 0.98-0.99x (with its squeeze-excite scaled
#: 1x1 convolutions); batch 8 and ResNet50 unchanged. im2col convolutions are products too
#: (a U-Net's 9 M multiply-add layers took 1.9x their time split from 2 M), except narrow ones
#: (RGB stems), whose patch copies cost as much as their products: they keep MIN_WORK
MATMUL_FACTOR = 4

_pool: dict = {"executor": None, "size": 0, "pid": 0}
_lock = threading.Lock()
_inside = threading.local()  # .active: this thread runs a block of a split


def _executor(workers: int) -> ThreadPoolExecutor:
    p = _pool
    if p["executor"] is None or p["size"] != workers or p["pid"] != os.getpid():
        with _lock:  # (after a fork the parent's workers are gone: make new ones)
            if p["executor"] is None or p["size"] != workers or p["pid"] != os.getpid():
                p["executor"] = ThreadPoolExecutor(max_workers=workers,
                                                   thread_name_prefix="tfdeploy")
                p["size"], p["pid"] = workers, os.getpid()
    return p["executor"]


def min_work(matmul: bool = False) -> int:
    """The least work a block gets: ``MIN_WORK``, times ``MATMUL_FACTOR`` for a product's."""
    return MIN_WORK * MATMUL_FACTOR if matmul else MIN_WORK


def blocks(rows: int, work_per_row: float, matmul: bool = False) -> int:
    """How many blocks to split ``rows`` rows of ``work_per_row`` each into (1: don't).
    ``matmul``: the work is a matrix product's multiply-adds (``MATMUL_FACTOR``). Inside a
    block of a split (a kernel that splits its work into calls of other kernels) it is 1: the
    pool's threads are busy, and a block waiting on blocks queued behind itself would wait
    forever."""
    n = _threads.threads()
    if n <= 1 or rows < 2 or getattr(_inside, "active", False):
        return 1
    return max(1, min(n, rows, int(rows * work_per_row) // min_work(matmul)))


def run_blocks(fn: Callable[[int, int], object], rows: int, k: int) -> None:
    """``fn(start, stop)`` over ``k`` contiguous blocks of ``range(rows)``: ``k - 1`` of them
    on the worker threads, the first here; returns when all are done (an error in any block
    is raised here)."""
    bounds = [rows * i // k for i in range(k + 1)]
    ex = _executor(max(1, _threads.threads() - 1))
    futures = [ex.submit(_block, fn, bounds[i], bounds[i + 1]) for i in range(1, k)]
    try:
        _block(fn, bounds[0], bounds[1])
    finally:
        for f in futures:
            f.result()


def by_columns(rows: int, columns: int, parts: int) -> bool:
    """Whether a product of ``rows`` x ``columns`` split into ``parts`` goes by columns
    (``matmul_columns``): where the weight is the larger operand (as many columns as rows
    or more). BLAS packs the whole weight for each block of rows it multiplies, and only its
    share for a block of columns. Two threads against one (two free cores, OpenBLAS at one
    thread), by rows and by columns: 49 x 512 x 2048 (ResNet50's 7 x 7 stage at batch
    1) 1.41x / 1.77x, 49 x 2048 x 512 1.48x / 1.69x, 128 x 768 x 3072 (a BERT-base layer at
    128 tokens) 1.69x / 1.94x, 512 x 768 x 3072 1.92x / 1.95x, 196 x 1024 x 256 1.73x / 1.71x;
    more rows than columns: 392 x 512 x 128 1.56x / 1.48x, 784 x 128 x 512 1.80x / 1.66x."""
    return columns >= max(rows, 32 * parts)


def matmul_columns(x, w, out, parts: int, after: Callable[[int, int], object] | None = None
                   ) -> None:
    """``np.matmul(x, w, out=out)`` (2-D) over ``parts`` threads, by blocks of columns (of 16,
    whole cache lines of the weight's rows); then ``after(start, stop)`` on blocks of the
    result's rows (an epilogue), over the threads too when there is enough of it
    (``MIN_WORK`` values: a hand-off more)."""
    def run(first: int, last: int) -> None:
        np.matmul(x, w[:, first * 16:last * 16], out=out[:, first * 16:last * 16])

    run_blocks(run, -(-w.shape[1] // 16), parts)
    if after is None:
        return
    rows = out.shape[0]
    k = min(parts, rows, out.size // MIN_WORK)
    if k > 1:
        run_blocks(after, rows, k)
    else:
        after(0, rows)


def _block(fn: Callable[[int, int], object], start: int, stop: int) -> None:
    """``fn(start, stop)``, marked as inside a split for this thread (``blocks``)."""
    outer = getattr(_inside, "active", False)
    _inside.active = True
    quiet = quiet_set(IGNORE_ERRORS)  # (a worker thread has numpy's error state of its own)
    try:
        fn(start, stop)
    finally:
        quiet_reset(quiet)
        _inside.active = outer
