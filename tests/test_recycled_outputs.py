"""Recycled results (``kernels/nn/scratch.output``): a large conv result is reused only when
nothing holds it any more, so a model called again allocates nothing large, and nothing a
caller or the plan still holds is ever overwritten."""

from __future__ import annotations

import gc
import threading
import tracemalloc

import numpy as np
import pytest

from graphs import const, model_of, placeholder
from tfdeploy.ir.graph import Node
from tfdeploy.kernels.nn import scratch

SHAPE = (4, 64, 64, 8)  # 512 KB of float32: above OUTPUT_MIN_BYTES


@pytest.fixture(autouse=True)
def _fresh_pool():
    scratch.release_outputs()
    yield
    scratch.release_outputs()


def test_reused_only_when_nothing_holds_it():
    a = scratch.output(SHAPE, np.float32)
    assert a.flags.c_contiguous and a.flags.writeable and a.shape == SHAPE
    b = scratch.output(SHAPE, np.float32)
    assert not np.shares_memory(a, b)  # a is held: never handed out twice
    pa = a.ctypes.data
    del a
    c = scratch.output(SHAPE, np.float32)
    assert c.ctypes.data == pa  # nobody held it: reused
    view = c[1:]
    del c
    d = scratch.output(SHAPE, np.float32)
    assert d.ctypes.data != pa and not np.shares_memory(d, view)  # a view keeps it
    del d, view, b
    small = scratch.output((4, 4), np.float32)
    assert all(buf.size >= scratch.OUTPUT_MIN_BYTES for buf in scratch._local.outputs)
    assert small.base is None  # small results are not kept
    assert small.shape == (4, 4)
    assert scratch.output(SHAPE, np.float64).dtype == np.float64
    del small
    f = scratch.output(SHAPE, np.float32)
    pf = f.ctypes.data
    del f  # a free result of the same size serves another shape, as a view of itself
    g = scratch.output((8, 32, 64, 8), np.float32)
    assert g.ctypes.data == pf and g.shape == (8, 32, 64, 8) and g.flags.c_contiguous
    del g
    h = scratch.output(SHAPE, np.float32)
    assert h.ctypes.data == pf and h.shape == SHAPE


def test_pool_is_per_thread_and_bounded():
    a = scratch.output(SHAPE, np.float32)
    pa = a.ctypes.data
    del a
    seen = []
    t = threading.Thread(target=lambda: seen.append(scratch.output(SHAPE, np.float32)
                                                    .ctypes.data))
    t.start()
    t.join()
    assert seen[0] != pa  # another thread's pool: its own buffer
    held = [scratch.output(SHAPE, np.float32) for _ in range(scratch.OUTPUT_KEEP + 3)]
    assert len({h.ctypes.data for h in held}) == len(held)
    assert len(scratch._local.outputs) == scratch.OUTPUT_KEEP


def test_the_free_buffer_handed_out_last_is_taken_whatever_its_size():
    """The buffer the previous layer read is still in cache: of the free buffers large enough
    (up to OUTPUT_FIT times the result), the one handed out last serves the next result."""
    half = (2, 64, 64, 8)  # 256 KB
    a = scratch.output(SHAPE, np.float32)
    b = scratch.output(half, np.float32)
    pa, pb = a.ctypes.data, b.ctypes.data
    del a, b
    c = scratch.output(half, np.float32)
    assert c.ctypes.data == pb  # both free and large enough: the last one handed out
    d = scratch.output((3, 64, 64, 8), np.float32)  # 384 KB: only a's buffer holds it
    assert d.ctypes.data == pa and d.shape == (3, 64, 64, 8) and d.flags.c_contiguous
    del c, d
    e = scratch.output(half, np.float64)  # another dtype, the same bytes: a's buffer now
    assert e.ctypes.data == pa and e.dtype == np.float64
    del e
    big = SHAPE[0] * scratch.OUTPUT_FIT * 2
    f = scratch.output((big, 64, 64, 8), np.float32)
    pf = f.ctypes.data
    del f
    g = scratch.output(SHAPE, np.float32)  # a free buffer 16x larger does not serve it
    assert g.ctypes.data != pf and g.ctypes.data == pa


def _conv_model(view_out=False):
    w = np.random.default_rng(0).uniform(-1, 1, (3, 3, 8, 8)).astype(np.float32)
    b = np.linspace(-1, 1, 8).astype(np.float32)
    nodes = [placeholder("x", "float32", [None, 64, 64, 8]), const("w", w), const("b", b),
             const("w2", w[1:2, 1:2]),
             Node("c1", "Conv2D", ["x", "w"], {"T": "float32", "strides": [1, 1, 1, 1],
                                              "padding": "SAME", "data_format": "NHWC",
                                              "dilations": [1, 1, 1, 1]}),
             Node("b1", "BiasAdd", ["c1", "b"], {"T": "float32"}),
             Node("r1", "Relu", ["b1"], {"T": "float32"}),
             Node("c2", "Conv2D", ["r1", "w2"], {"T": "float32", "strides": [1, 1, 1, 1],
                                                "padding": "VALID", "data_format": "NHWC",
                                                "dilations": [1, 1, 1, 1]}),
             Node("out", "Relu", ["c2"], {"T": "float32"})]
    if view_out:
        nodes += [const("shape", np.array([-1, 8], np.int32)),
                  Node("flat", "Reshape", ["out", "shape"], {"T": "float32",
                                                            "Tshape": "int32"})]
    return model_of(nodes, ["x"], ["flat" if view_out else "out"])


@pytest.mark.parametrize("view_out", [False, True])
def test_results_held_by_the_caller_are_never_overwritten(view_out):
    m = _conv_model(view_out)
    rng = np.random.default_rng(1)
    xs = [rng.uniform(-1, 1, SHAPE).astype(np.float32) for _ in range(4)]
    want = [m(x).copy() for x in xs]
    got = [m(x) for x in xs]  # each kept while the next calls run
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert len({g.ctypes.data for g in got}) == len(got)


def test_steady_state_allocates_nothing_large():
    m = _conv_model()
    x = np.random.default_rng(2).uniform(-1, 1, SHAPE).astype(np.float32)
    want = m(x).copy()
    for _ in range(3):
        m(x)
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            m(x)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(m(x), want)
    # no result of the size of an activation is made (one is 512 KB)
    assert peak < scratch.OUTPUT_MIN_BYTES, peak


def test_setup_sets_the_limit():
    import tfdeploy as td

    saved = scratch.OUTPUT_KEEP_BYTES
    try:
        td.setup(recycle_mb=0)
        a = scratch.output(SHAPE, np.float32)
        assert a.shape == SHAPE and not scratch._local.outputs  # nothing kept
        td.setup(recycle_mb=1)  # room for two results of 512 KB
        held = [scratch.output(SHAPE, np.float32) for _ in range(3)]
        assert scratch._local.output_bytes == 2 * held[0].nbytes
        with pytest.raises(ValueError, match="recycle_mb must be at least 0"):
            td.setup(recycle_mb=-1)
    finally:
        scratch.keep_outputs(saved >> 20)


def test_huge_results_are_not_kept(monkeypatch):
    monkeypatch.setattr(scratch, "OUTPUT_MAX_BYTES", 1 << 19)
    a = scratch.output((8, 64, 64, 8), np.float32)  # 1 MB
    assert a.nbytes == 1 << 20 and not scratch._local.outputs
    assert scratch.output(SHAPE, np.float32).nbytes == 1 << 19 and scratch._local.outputs
