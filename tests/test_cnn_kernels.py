"""The convolution kernels' block structure: depthwise blocks (rows, images, padded seams),
the epilogue hook of every conv path (each output row finished exactly once, in order), the
fused kernels that drive it, and the per-thread scratch buffers."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from tfdeploy.kernels.nn import conv, depthwise, fused, runner, scratch
from tfdeploy.runtime import constants

RNG = np.random.default_rng(0)


def _r(*shape, dtype=np.float32):
    return RNG.uniform(-1, 1, shape).astype(dtype)


def _reference_depthwise(x, w, strides, dilations, pads, oh, ow):
    """Depthwise convolution by one loop over taps, in float64, from a padded copy."""
    kh, kw, c, m = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    xp = np.pad(x.astype(np.float64), ((0, 0), pads[0], pads[1], (0, 0)))
    xp = np.repeat(xp, m, axis=-1)
    out = np.zeros((x.shape[0], oh, ow, c * m))
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + (oh - 1) * sh + 1, sh)
            cols = slice(j * dw, j * dw + (ow - 1) * sw + 1, sw)
            out += xp[:, rows, cols] * w[i, j].reshape(-1).astype(np.float64)
    return out


class _Recorder:
    """An epilogue recording the row ranges it is given (and adding 1 to them)."""

    def __init__(self):
        self.ranges = []

    def __call__(self, y, start, stop):
        self.ranges.append((start, stop))
        y.reshape(-1, y.shape[-1])[start:stop] += 1

    def check(self, y):
        rows = y.size // y.shape[-1]
        assert self.ranges and self.ranges[0][0] == 0 and self.ranges[-1][1] == rows
        for (_, a), (b, _) in zip(self.ranges, self.ranges[1:]):
            assert a == b  # contiguous, in order, no row twice


DW_CASES = [
    # (input, filter, strides, dilations, pads)
    ((2, 13, 11, 5), (3, 3, 5, 1), (1, 1), (1, 1), ((1, 1), (1, 1))),
    ((1, 17, 16, 8), (3, 3, 8, 1), (2, 2), (1, 1), ((0, 1), (0, 1))),
    ((3, 12, 9, 4), (5, 5, 4, 1), (2, 1), (1, 1), ((1, 2), (2, 2))),
    ((1, 15, 14, 3), (3, 3, 3, 2), (1, 2), (2, 1), ((2, 2), (0, 0))),
    ((2, 10, 10, 6), (3, 2, 6, 1), (1, 1), (1, 1), ((0, 0), (0, 0))),  # no padding: direct
    ((1, 9, 8, 300), (3, 3, 300, 1), (1, 1), (1, 1), ((3, 0), (0, 4))),
    ((2, 4, 6, 5), (3, 3, 5, 1), (1, 2), (1, 1), ((1, 1), (1, 1))),  # a 2x1 interior
    ((1, 3, 6, 4), (3, 3, 4, 1), (1, 2), (1, 1), ((2, 2), (2, 2))),  # no interior at all
    ((0, 9, 8, 4), (3, 3, 4, 1), (1, 1), (1, 1), ((1, 1), (1, 1))),
    # column strides by phases (few channels): 5 taps by 3, 2 by 2, a multiplier, 7x7/2
    # padded unevenly; and 65 channels, past the phases' limit
    ((2, 14, 17, 3), (3, 5, 3, 1), (2, 3), (1, 1), ((1, 1), (2, 2))),
    ((1, 8, 10, 6), (2, 2, 6, 1), (2, 2), (1, 1), ((0, 0), (0, 0))),
    ((1, 9, 11, 4), (3, 3, 4, 2), (2, 2), (1, 1), ((1, 1), (1, 1))),
    ((1, 23, 23, 5), (7, 7, 5, 1), (2, 2), (1, 1), ((2, 3), (2, 3))),
    ((1, 11, 13, 65), (3, 3, 65, 1), (2, 2), (1, 1), ((1, 1), (1, 1))),
]


def test_depthwise_chunks_take_a_short_row_whole():
    """A row of at most two chunks that would leave a remainder (a second einsum call) is
    one chunk; longer rows keep ~4 KB chunks, their remainder apart."""
    f32 = np.float32
    assert depthwise.chunk_columns(7, 176, f32) == 7  # (6 + 1 columns before)
    assert depthwise.chunk_columns(28, 44, f32) == 28  # (23 + 5)
    assert depthwise.chunk_columns(56, 144, f32) == 7  # (no remainder)
    assert depthwise.chunk_columns(14, 384, f32) == 3  # (4 chunks + 2)
    assert depthwise.chunk_columns(112, 32, f32) == 32 and depthwise.chunk_columns(3, 8, f32) == 3


@pytest.mark.parametrize("chunk", [None, 64], ids=["chunks", "small_chunks"])
@pytest.mark.parametrize("block, small", [(1 << 9, 0), (1 << 12, 0), (1 << 30, 1 << 30)],
                         ids=["image_regions", "images_regions", "whole"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", DW_CASES, ids=[str(i) for i in range(len(DW_CASES))])
def test_depthwise_blocks(case, dtype, block, small, chunk, monkeypatch):
    """Groups of one or more images, each by interior and borders or in one piece; the
    unit-stride and phased einsums by chunks of columns: a row's worth, and 1-4 columns with
    the remainder apart (``small_chunks``)."""
    monkeypatch.setattr(depthwise, "_BLOCK_BYTES", block)
    monkeypatch.setattr(depthwise, "_SMALL_BYTES", small)
    if chunk is not None:
        monkeypatch.setattr(depthwise, "_CHUNK_BYTES", chunk)
    xs, ws, st, dl, pads = case
    x, w = _r(*xs, dtype=dtype), _r(*ws, dtype=dtype)
    oh = (xs[1] + sum(pads[0]) - (ws[0] - 1) * dl[0] - 1) // st[0] + 1
    ow = (xs[2] + sum(pads[1]) - (ws[1] - 1) * dl[1] - 1) // st[1] + 1
    want = _reference_depthwise(x, w, st, dl, pads, oh, ow)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    tiles: dict = {}
    for _ in range(2):  # the second time with the tiled weight cached
        got = depthwise.depthwise_2d(x, w, st, dl, pads, oh, ow, tiles=tiles)
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    if x.shape[0]:
        rec = _Recorder()
        got = depthwise.depthwise_2d(x, w, st, dl, pads, oh, ow, epilogue=rec)
        rec.check(got)
        np.testing.assert_allclose(got, want + 1, rtol=tol, atol=tol)
    # a non-contiguous input (a channels-first tensor moved to channels-last)
    xt = np.ascontiguousarray(np.moveaxis(x, -1, 1)).transpose(0, 2, 3, 1)
    got = depthwise.depthwise_2d(xt, w, st, dl, pads, oh, ow)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    # clipped as it is copied (a ReLU/ReLU6 prologue): both bounds bite, the input unchanged
    lo, hi = np.zeros((), dtype), np.full((), 0.5, dtype)
    x0 = x.copy()
    got = depthwise.depthwise_2d(x, w, st, dl, pads, oh, ow, tiles=tiles, clip=(lo, hi))
    np.testing.assert_allclose(got, _reference_depthwise(np.clip(x, 0, 0.5), w, st, dl, pads,
                                                         oh, ow), rtol=tol, atol=tol)
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("case", [DW_CASES[0], DW_CASES[1], DW_CASES[9], DW_CASES[13]],
                         ids=["unit", "strided", "phases", "many_channels"])
def test_depthwise_clip_of_infinities(case):
    """A clipped input's -inf becomes 0 and +inf the top, before any tap reads it (phases
    take non-finite inputs per pixel: the clip applies there too); NaN stays NaN."""
    xs, ws, st, dl, pads = case
    x, w = _r(*xs), _r(*ws)
    x[0, 1, 1, 0], x[0, 2, 3, 1], x[0, 0, 2, 2 % xs[3]] = -np.inf, np.inf, np.nan
    oh = (xs[1] + sum(pads[0]) - (ws[0] - 1) * dl[0] - 1) // st[0] + 1
    ow = (xs[2] + sum(pads[1]) - (ws[1] - 1) * dl[1] - 1) // st[1] + 1
    six = np.full((), 6, np.float32)
    got = depthwise.depthwise_2d(x, w, st, dl, pads, oh, ow, clip=(np.zeros((), np.float32),
                                                                   six))
    want = _reference_depthwise(np.clip(x, 0, 6), w, st, dl, pads, oh, ow)
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(got).any()
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-5, atol=1e-5)


CONV_CASES = [
    # (input, filter, strides, pads): im2col by rows, by images, channel-major, grouped, 1x1,
    # by taps
    ((2, 40, 30, 16), (3, 3, 16, 12), (1, 1), ((1, 1), (1, 1))),
    ((5, 9, 9, 8), (3, 3, 8, 4), (1, 1), ((0, 0), (0, 0))),
    ((1, 60, 50, 3), (7, 7, 3, 4), (2, 2), ((3, 3), (3, 3))),
    ((2, 20, 20, 16), (3, 3, 8, 6), (1, 1), ((1, 1), (1, 1))),  # (groups of 8: products)
    ((3, 30, 40, 12), (1, 1, 12, 20), (1, 1), ((0, 0), (0, 0))),
    ((2, 31, 30, 12), (1, 1, 12, 20), (2, 2), ((0, 0), (0, 0))),
    ((1, 40, 36, 16), (3, 3, 16, 4), (1, 1), ((1, 1), (1, 1))),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[str(i) for i in range(len(CONV_CASES))])
def test_conv_epilogue_blocks(case, monkeypatch):
    monkeypatch.setattr(conv, "_BLOCK_BYTES", 1 << 14)
    monkeypatch.setattr(conv, "_TAPS_BYTES", 1 << 14)
    monkeypatch.setattr(conv, "_MIN_ROWS", 64)
    monkeypatch.setattr(conv, "_GEMM_BLOCK_BYTES", 1 << 12)
    xs, ws, st, pads = case
    x, w = _r(*xs), _r(*ws)
    outs = [(xs[1 + i] + sum(pads[i]) - ws[i]) // st[i] + 1 for i in range(2)]
    want = conv.conv_nd(x, w, st, (1, 1), pads, outs)
    rec = _Recorder()
    got = conv.conv_nd(x, w, st, (1, 1), pads, outs, epilogue=rec)
    rec.check(got)
    assert len(rec.ranges) > 1
    np.testing.assert_allclose(got, want + 1, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("xs, ws, st, dl, pads", [
    ((2, 12, 11, 16), (3, 3, 16, 8), (1, 1), (1, 1), ((1, 1), (1, 1))),
    ((3, 9, 14, 12), (5, 3, 12, 32), (1, 2), (1, 1), ((2, 0), (0, 1))),
    ((1, 10, 13, 16), (2, 3, 16, 7), (1, 1), (1, 2), ((0, 1), (2, 2))),
    ((2, 7, 7, 16), (4, 4, 16, 3), (1, 3), (1, 1), ((0, 0), (0, 0))),
    # dilated rows (passes/atrous.py): kernel row i reads the copy from row i * dilation on
    ((1, 12, 11, 16), (3, 3, 16, 5), (1, 1), (2, 2), ((2, 2), (2, 2))),
    ((2, 14, 9, 16), (3, 2, 16, 4), (1, 2), (3, 1), ((0, 1), (3, 3))),
])
@pytest.mark.parametrize("small_blocks", [False, True])
def test_conv_by_kernel_rows(xs, ws, st, dl, pads, small_blocks, monkeypatch):
    """Few output channels and unit row stride: the patches of one kernel row copied, KH
    products summed; the values of im2col's single product, each output row through the
    epilogue once, in blocks of a few rows or of whole images."""
    if small_blocks:
        monkeypatch.setattr(conv, "_BLOCK_BYTES", 1)
        monkeypatch.setattr(conv, "_MIN_ROWS", 1)
    x, w = _r(*xs), _r(*ws)
    outs = [(xs[1 + i] + sum(pads[i]) - (ws[i] - 1) * dl[i] - 1) // st[i] + 1 for i in range(2)]
    calls = []
    real = conv._by_rows
    monkeypatch.setattr(conv, "_by_rows", lambda *a: calls.append(1) or real(*a))
    rec = _Recorder()
    got = conv.conv_nd(x, w, st, dl, pads, outs, epilogue=rec)
    assert calls
    rec.check(got)
    monkeypatch.setattr(conv, "_ROWS_CO", 0)
    want = conv.conv_nd(x, w, st, dl, pads, outs)
    assert len(calls) == 1
    np.testing.assert_allclose(got, want + 1, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("xs, ws, dl, pads, dtype", [
    ((2, 34, 33, 16), (3, 3, 16, 3), (1, 1), ((1, 1), (1, 1)), np.float32),
    ((1, 40, 36, 12), (5, 3, 12, 8), (1, 1), ((2, 0), (0, 1)), np.float32),
    ((1, 40, 38, 16), (3, 3, 16, 5), (2, 3), ((2, 2), (3, 3)), np.float32),
    ((1, 36, 36, 8), (9, 9, 8, 3), (1, 1), ((4, 4), (4, 4)), np.float32),
    ((2, 34, 32, 16), (3, 3, 16, 1), (1, 1), ((0, 0), (1, 1)), np.float64),
])
@pytest.mark.parametrize("small_blocks", [False, True])
def test_conv_by_taps(xs, ws, dl, pads, dtype, small_blocks, monkeypatch):
    """At most 8 output channels, unit strides, 1024 output pixels or more: every tap's
    product at once, each tap's rows added at its offset; im2col's values, each output row
    through the epilogue once, in one block an image or (``_TAPS_BYTES`` tiny) in blocks of
    a few rows whose taps reach into the next block's."""
    if small_blocks:
        monkeypatch.setattr(conv, "_TAPS_BYTES", 1)
    x, w = _r(*xs, dtype=dtype), _r(*ws, dtype=dtype)
    outs = [xs[1 + i] + sum(pads[i]) - (ws[i] - 1) * dl[i] for i in range(2)]
    calls = []
    real = conv._by_taps
    monkeypatch.setattr(conv, "_by_taps", lambda *a: calls.append(1) or real(*a))
    rec = _Recorder()
    got = conv.conv_nd(x, w, (1, 1), dl, pads, outs, epilogue=rec)
    assert calls
    rec.check(got)
    assert (len(rec.ranges) > xs[0]) == small_blocks
    monkeypatch.setattr(conv, "_TAPS_CO", 0)
    want = conv.conv_nd(x, w, (1, 1), dl, pads, outs)
    assert len(calls) == 1 and got.dtype == want.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want + 1, rtol=tol, atol=tol * np.abs(want).max())


def test_conv_by_taps_only_where_it_pays(monkeypatch):
    """Small maps, narrow inputs (an RGB stem), 9 output channels and strides keep their
    paths."""
    calls = []
    real = conv._by_taps
    monkeypatch.setattr(conv, "_by_taps", lambda *a: calls.append(1) or real(*a))
    for xs, ws, st in [((1, 31, 33, 16), (3, 3, 16, 4), (1, 1)),  # 1023 pixels
                       ((1, 40, 40, 3), (3, 3, 3, 4), (1, 1)),  # 3 channels in
                       ((1, 40, 40, 16), (3, 3, 16, 9), (1, 1)),
                       ((1, 80, 80, 16), (3, 3, 16, 4), (2, 2))]:
        outs = [(xs[1 + i] - ws[i]) // st[i] + 1 for i in range(2)]
        conv.conv_nd(_r(*xs), _r(*ws), st, (1, 1), ((0, 0), (0, 0)), outs)
    assert not calls
    conv.conv_nd(_r(1, 34, 34, 16), _r(3, 3, 16, 4), (1, 1), (1, 1), ((0, 0), (0, 0)),
                 [32, 32])
    assert calls == [1]


def test_conv_runner_refuses_an_epilogue_it_cannot_run_by_rows():
    run = runner.conv_runner("Conv2D", {"strides": [1, 1, 1, 1], "padding": "SAME",
                                      "data_format": "NCHW"}, _r(3, 3, 2, 4))
    x = _r(1, 2, 5, 5)
    assert run(x).shape == (1, 4, 5, 5)
    with pytest.raises(ValueError, match="channels-last"):
        run(x, _Recorder())
    assert runner.conv_runner("MatMul", {}, _r(2, 2)) is None


def test_fused_chain_blocked_with_a_broadcast_residual():
    """A residual that broadcasts cannot be taken by rows: the epilogue then runs after the
    core, on the whole output (and nothing was applied twice)."""
    w = _r(3, 3, 4, 6)
    core = runner.conv_runner("Conv2D", {"strides": [1, 1, 1, 1], "padding": "SAME"}, w)
    ops = [fused.epilogue_op("add_input", np.dtype(np.float32), 0),
           fused.epilogue_op("relu", np.dtype(np.float32))]
    chain = fused.FusedChain(core, np.dtype(np.float32), ops, None, "test", 6, blocked=True)
    x = _r(2, 9, 7, 4)
    y = conv.Conv2D(x, w, strides=[1, 1, 1, 1], padding="SAME")
    for r in (_r(2, 9, 7, 6), _r(1, 1, 7, 6), _r(6)):
        np.testing.assert_allclose(chain(x, r), np.maximum(y + r, 0), rtol=1e-6, atol=1e-6)


def test_scratch_is_per_thread_and_reused():
    a = scratch.scratch("test", 100, np.float32)
    b = scratch.scratch("test", 50, np.float32)
    assert np.shares_memory(a, b)  # reused by the next call in this thread
    assert not np.shares_memory(a, scratch.scratch("other", 100, np.float32))
    assert not np.shares_memory(a, scratch.scratch("test", 100, np.float64))
    seen = []
    t = threading.Thread(target=lambda: seen.append(scratch.scratch("test", 100, np.float32)))
    t.start()
    t.join()
    assert not np.shares_memory(a, seen[0])
    big = scratch.KEEP_BYTES // 4 + 1
    assert not np.shares_memory(scratch.scratch("test", big, np.float32),
                                scratch.scratch("test", big, np.float32))


@pytest.mark.parametrize("biased", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("clipped", [False, True], ids=["plain", "relu6_prologue"])
@pytest.mark.parametrize("case", DW_CASES, ids=[str(i) for i in range(len(DW_CASES))])
def test_depthwise_runner_keeps_its_layout(case, clipped, biased):
    """The runner's layout, made once per input shape, called again on other inputs of the
    shape, with a ReLU6 prologue clipping as it copies, on a read-only input, on an input
    with inf and NaN (phased layouts go per pixel for it) and on a strided view:
    ``depthwise_2d``'s values every time, the input unchanged."""
    xs, ws, st, dl, pads = case
    w, b = _r(*ws), _r(ws[2] * ws[3]) if biased else np.float32(0)
    attrs = {"strides": [1, *st, 1], "dilations": [1, *dl, 1], "padding": "EXPLICIT",
             "explicit_paddings": [0, 0, *pads[0], *pads[1], 0, 0]}
    pro = fused.prologue_op([("relu6", None)], np.dtype(np.float32), xs[3]) if clipped else None
    run = runner.conv_runner("DepthwiseConv2dNative", attrs, w, b if biased else None, pro)
    oh = (xs[1] + sum(pads[0]) - (ws[0] - 1) * dl[0] - 1) // st[0] + 1
    ow = (xs[2] + sum(pads[1]) - (ws[1] - 1) * dl[1] - 1) // st[1] + 1
    clip = (np.zeros((), np.float32), np.full((), 6, np.float32)) if clipped else None
    for i in range(4):
        x = _r(*xs) * 8 + 4  # (clipped at both ends)
        if i == 2 and x.size:
            x[0, 1, 1, 0], x[0, 2, 3, 1], x[0, 0, 2, 2 % xs[3]] = -np.inf, np.inf, np.nan
        if i == 3:  # (a strided view: made contiguous)
            x = np.concatenate([x, x], axis=-1)[..., ::2]
        if i == 1:  # (read-only: a constant's, a memory-mapped file's)
            x.flags.writeable = False
        keep = x.copy()
        want = depthwise.depthwise_2d(x, w, st, dl, pads, oh, ow, clip=clip) + b
        rec = _Recorder()
        got = run(x, rec if x.size else None)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want + (1 if x.size else 0), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(x, keep)


def test_depthwise_layout_is_shared_by_threads():
    """One layout (a runner's, per input shape) run by several threads at once: each call's
    copy is in its own thread's scratch buffer, so every result is the one it gives alone."""
    w, pads = _r(3, 3, 16, 1), ((1, 1), (1, 1))
    lay = depthwise.layout((2, 9, 9, 16), w, (1, 1), (1, 1), pads, 9, 9, parts=1)
    xs = [_r(2, 9, 9, 16) for _ in range(4)]
    np.testing.assert_allclose(lay(xs[0]), _reference_depthwise(xs[0], w, (1, 1), (1, 1),
                                                                pads, 9, 9), rtol=1e-5, atol=1e-5)
    wants = [lay(v) for v in xs]  # (alone: exact)
    errors = []

    def work(k):
        for i in range(200):
            j = (k + i) % 4
            if not np.array_equal(lay(xs[j]), wants[j]):
                errors.append(j)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # (the threads take turns between any two steps)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors


def test_depthwise_by_phases_keeps_non_finite_values_in_their_windows(monkeypatch):
    """A 3x3/2 convolution by phases multiplies a column outside some windows by a zero
    weight: with an inf or NaN in the input it runs per pixel, as TF computes it."""
    x, w = _r(1, 9, 10, 4), _r(3, 3, 4, 1)
    x[0, 4, 5, 1], x[0, 2, 8, 3] = np.inf, np.nan
    pads = ((1, 1), (1, 1))
    got = depthwise.depthwise_2d(x, w, (2, 2), (1, 1), pads, 5, 5)
    monkeypatch.setattr(depthwise, "_PHASED_CHANNELS", 0)
    want = depthwise.depthwise_2d(x, w, (2, 2), (1, 1), pads, 5, 5)
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(want).sum() > want.size // 2


def test_winograd_leaves_non_finite_inputs_to_im2col():
    """Winograd's sums of differences would turn an inf into NaN where the convolution is
    +-inf: an input holding inf or NaN, or a filter holding one, goes by im2col, as TF."""
    same = {"strides": [1, 1, 1, 1], "padding": "SAME"}
    w, b = _r(3, 3, 128, 128), _r(128)
    run = runner.conv_runner("Conv2D", same, w, b)
    x = _r(1, 24, 24, 128)
    run(x)
    assert run.wino is not None  # (this layer takes Winograd)
    x[0, 5, 5, 3], x[0, 12, 20, 7], x[0, 20, 2, 9] = np.inf, -np.inf, np.nan
    want = conv.Conv2D(x, w, **same) + b
    got = run(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    assert np.isinf(want).sum() > 100
    ok = np.isfinite(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-5, atol=1e-4)
    w[1, 1, 0, 0] = np.inf
    run = runner.conv_runner("Conv2D", same, w)
    x = _r(1, 24, 24, 128)
    got = run(x)
    assert run.wino is None
    np.testing.assert_array_equal(np.isnan(got), np.isnan(conv.Conv2D(x, w, **same)))


def test_winograd_band_is_measured(monkeypatch):
    """Below applies' channel threshold, down to C K / (C + K) = 32, a 3x3 convolution takes
    Winograd where it measured faster on its first input (once per shape); outside the band
    nothing is timed. Either way the convolution's values."""
    from tfdeploy.kernels.nn import winograd

    same = {"strides": [1, 1, 1, 1], "padding": "SAME"}
    geom = lambda c, k, h=28: ((1, h, h, c), (3, 3, c, k), np.float32, (1, 1), (1, 1),  # noqa
                               ((1, 1), (1, 1)))
    assert winograd.borderline(*geom(96, 96)) and winograd.borderline(*geom(256, 64))
    assert not winograd.borderline(*geom(128, 128))  # (applies)
    assert winograd.borderline(*geom(64, 64))
    assert not winograd.borderline(*geom(32, 256)) and not winograd.borderline(*geom(128, 32))
    assert not winograd.borderline(*geom(96, 96, h=4))  # (too little work an image)
    calls = []
    for faster in (True, False):
        monkeypatch.setattr(winograd, "_PAYS", {})
        calls.clear()
        monkeypatch.setattr(winograd, "pays",
                            lambda key, wino, im2col, faster=faster:
                            calls.append(key) or faster)
        w, b = _r(3, 3, 96, 96), _r(96)
        run = runner.conv_runner("Conv2D", same, w, b)
        x = _r(1, 28, 28, 96)
        got = run(x)
        run(_r(1, 28, 28, 96))  # (the same shape: no second measurement)
        assert len(calls) == 1 and (run.wino is not None) == faster
        np.testing.assert_allclose(got, conv.Conv2D(x, w, **same) + b, rtol=1e-4, atol=1e-4)
        # outside the band: not measured
        calls.clear()
        run = runner.conv_runner("Conv2D", same, _r(3, 3, 128, 32))
        run(_r(1, 28, 28, 128))
        assert calls == [] and run.wino is None
    # the measurement itself: the faster of the two by the margin, kept per key
    monkeypatch.undo()
    monkeypatch.setattr(winograd, "_PAYS", {})
    ticks = iter([0, 10, 0, 1] * 2)  # im2col 10, Winograd 1: Winograd
    monkeypatch.setattr(time, "perf_counter", lambda: next(ticks))
    assert winograd.pays("k", lambda: None, lambda: None) is True
    assert winograd.pays("k", lambda: 1 / 0, lambda: 1 / 0) is True  # (kept: not run again)
    ticks = iter([0, 10, 0, 9.5] * 2)  # 9.5 against 10: not below 0.9 x
    assert winograd.pays("k2", lambda: None, lambda: None) is False
    monkeypatch.undo()
    # a real measurement through the runner: the transform kept only where Winograd is taken
    for margin in (1e9, 0.0):
        monkeypatch.setattr(winograd, "_PAYS", {})
        monkeypatch.setattr(winograd, "_MARGIN", margin)
        w = _r(3, 3, 96, 96)
        run = runner.conv_runner("Conv2D", same, w)
        x = _r(1, 28, 28, 96)
        np.testing.assert_allclose(run(x), conv.Conv2D(x, w, **same), rtol=1e-4, atol=1e-4)
        assert (run.wino is not None) == bool(margin) and len(winograd._PAYS) == 1


def test_depthwise_regions():
    geom = ((2, 2), (1, 1), ((0, 1), (0, 1)), (3, 3))
    # a strided conv: the interior read in place, the bottom row and right column padded
    assert depthwise._regions(112, 112, 56, 56, geom, 1 << 22) == [
        (0, 55, 0, 55), (0, 55, 55, 56), (55, 56, 0, 56)]
    assert depthwise._regions(112, 112, 56, 56, geom, 1 << 10) == [(0, 56, 0, 56)]  # small
    unit = ((1, 1), (1, 1), ((1, 1), (1, 1)), (3, 3))
    assert depthwise._regions(56, 56, 56, 56, unit, 1 << 22) == [(0, 56, 0, 56)]


@pytest.mark.parametrize("op, ws, attrs", [
    ("Conv2D", (1, 1, 4, 6), {}),  # the unit-stride 1x1 path
    ("Conv2D", (1, 1, 4, 6), {"strides": [1, 2, 2, 1]}),
    ("Conv2D", (3, 3, 4, 6), {"padding": "VALID"}),
    ("Conv2D", (3, 3, 2, 6), {}),  # grouped
    ("DepthwiseConv2dNative", (3, 3, 4, 2), {"strides": [1, 2, 1, 1]}),
    ("Conv2D", (3, 3, 4, 6), {"data_format": "NCHW"}),
])
def test_conv_runner_per_shape(op, ws, attrs):
    """The runner's memo of one call per input shape and dtype gives the op's results for
    every shape and dtype, and its errors every time."""
    kernel = conv.Conv2D if op == "Conv2D" else conv.DepthwiseConv2dNative
    attrs = {"strides": [1, 1, 1, 1], "padding": "SAME", **attrs}
    if attrs.get("data_format") == "NCHW":
        attrs["strides"] = [attrs["strides"][i] for i in (0, 3, 1, 2)]
    w = _r(*ws)
    run = runner.conv_runner(op, attrs, w)
    first = attrs.get("data_format") == "NCHW"
    for n, h, dt in [(2, 9, np.float32), (1, 9, np.float32), (2, 7, np.float32),
                     (2, 9, np.float64), (0, 9, np.float32)] + [(1, s, np.float32)
                                                                for s in range(3, 22)]:
        x = _r(n, 4, h, h - 1, dtype=dt) if first else _r(n, h, h - 1, 4, dtype=dt)
        want = kernel(x, w, **attrs)
        got = run(x)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    bad = _r(1, 5, 5, 3) if not first else _r(1, 3, 5, 5)
    for _ in range(2):
        with pytest.raises(ValueError):
            run(bad)


@pytest.mark.parametrize("op, ws, strides", [
    ("Conv2D", (1, 1, 4, 9), 1),  # an expansion: the bias in the matmul (a ones column)
    ("Conv2D", (1, 1, 9, 4), 1),  # a projection: the bias added to each block
    ("Conv2D", (1, 1, 4, 9), 2),
    ("Conv2D", (3, 3, 4, 9), 1),
    ("DepthwiseConv2dNative", (3, 3, 4, 1), 2),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_runner_bias(op, ws, strides, dtype):
    kernel = conv.Conv2D if op == "Conv2D" else conv.DepthwiseConv2dNative
    attrs = {"strides": [1, strides, strides, 1], "padding": "SAME"}
    w = _r(*ws, dtype=dtype)
    b = _r(ws[3] if op == "Conv2D" else ws[2] * ws[3], dtype=dtype)
    run = runner.conv_runner(op, attrs, w, b)
    assert (run.augmented is not None) == (op == "Conv2D" and ws[:3] == (1, 1, 4))
    x = _r(2, 7, 6, w.shape[2], dtype=dtype)
    want = kernel(x, w, **attrs) + b
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(run(x), want, rtol=tol, atol=tol)
    rec = _Recorder()
    got = run(x, rec)
    rec.check(got)
    np.testing.assert_allclose(got, want + 1, rtol=tol, atol=tol)
    if op == "Conv2D" and ws[:2] == (1, 1) and strides == 1:
        for n, h in ((1, 3), (2, 3), (2, 9)):  # the scale in the weights, or in scratch
            f, s = _r(n, h, h, w.shape[2], dtype=dtype), _r(n, 1, 1, w.shape[2], dtype=dtype)
            want = kernel(f * s, w, **attrs) + b
            np.testing.assert_allclose(run.scaled(f, s), want, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="channels-last"):
        runner.conv_runner(op, {**attrs, "data_format": "NCHW"}, w, b)


def test_biased_epilogue_rows():
    """The bias added to any range of rows: whole output rows through the tiled bias, others
    channel-wise, then the epilogue on the same rows."""
    b = _r(3)
    rec = _Recorder()
    ep = runner._biased(rec, b, np.tile(b, 4))
    y = np.zeros((2, 5, 4, 3), np.float32)
    for start, stop in ((0, 8), (8, 11), (11, 40)):
        ep(y, start, stop)
    rec.check(y)
    np.testing.assert_allclose(y, np.broadcast_to(b + 1, y.shape), rtol=1e-6)


# --- the conv kernels over threads ---------------------------------------------------------

class _SharedRecorder(_Recorder):
    """A recorder several threads may call at once: each output row exactly once, any order."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.threads = set()

    def __call__(self, y, start, stop):
        with self.lock:
            self.ranges.append((start, stop))
            self.threads.add(threading.get_ident())
        y.reshape(-1, y.shape[-1])[start:stop] += 1

    def check(self, y):
        self.ranges.sort()
        super().check(y)


@pytest.mark.parametrize("case", DW_CASES, ids=[str(i) for i in range(len(DW_CASES))])
def test_depthwise_over_threads(case, split_everything, monkeypatch):
    """Image groups, or row ranges of one image, over threads: the same values, each row
    through the epilogue once."""
    xs, ws, st, dl, pads = case
    x, w = _r(*xs), _r(*ws)
    oh = (xs[1] + sum(pads[0]) - (ws[0] - 1) * dl[0] - 1) // st[0] + 1
    ow = (xs[2] + sum(pads[1]) - (ws[1] - 1) * dl[1] - 1) // st[1] + 1
    want = _reference_depthwise(x, w, st, dl, pads, oh, ow)
    for block in (1 << 30, 1 << 9):  # many images a group; one
        monkeypatch.setattr(depthwise, "_BLOCK_BYTES", block)
        np.testing.assert_allclose(depthwise.depthwise_2d(x, w, st, dl, pads, oh, ow), want,
                                   rtol=1e-5, atol=1e-5)
        if x.shape[0]:
            rec = _SharedRecorder()
            got = depthwise.depthwise_2d(x, w, st, dl, pads, oh, ow, epilogue=rec)
            rec.check(got)
            assert len(rec.threads) > 1
            np.testing.assert_allclose(got, want + 1, rtol=1e-5, atol=1e-5)
    assert split_everything or not x.shape[0]


@pytest.mark.parametrize("case", DW_CASES, ids=[str(i) for i in range(len(DW_CASES))])
def test_depthwise_runner_layout_per_thread_split(case, split_everything, monkeypatch):
    """The runner keeps a layout per thread split: called with one thread, then four, then
    one again, each call gives the values, each row through the epilogue once, split over
    threads where there are four."""
    from tfdeploy.runtime import threads

    xs, ws, st, dl, pads = case
    x, w, b = _r(*xs), _r(*ws), _r(ws[2] * ws[3])
    attrs = {"strides": [1, *st, 1], "dilations": [1, *dl, 1], "padding": "EXPLICIT",
             "explicit_paddings": [0, 0, *pads[0], *pads[1], 0, 0]}
    run = runner.conv_runner("DepthwiseConv2dNative", attrs, w, b)
    oh = (xs[1] + sum(pads[0]) - (ws[0] - 1) * dl[0] - 1) // st[0] + 1
    ow = (xs[2] + sum(pads[1]) - (ws[1] - 1) * dl[1] - 1) // st[1] + 1
    want = _reference_depthwise(x, w, st, dl, pads, oh, ow) + b
    for n in (1, 4, 1):
        monkeypatch.setitem(threads._state, "threads", n)
        rec = _SharedRecorder()
        got = run(x, rec if x.size else None)
        if x.size:
            rec.check(got)
            assert (len(rec.threads) > 1) == (n > 1)
        np.testing.assert_allclose(got, want + (1 if x.size else 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CONV_CASES, ids=[str(i) for i in range(len(CONV_CASES))])
def test_conv_over_threads(case, split_everything):
    xs, ws, st, pads = case
    x, w = _r(*xs), _r(*ws)
    outs = [(xs[1 + i] + sum(pads[i]) - ws[i]) // st[i] + 1 for i in range(2)]
    want = _reference_conv(x, w, st, pads, outs)
    np.testing.assert_allclose(conv.conv_nd(x, w, st, (1, 1), pads, outs), want,
                               rtol=1e-5, atol=1e-5)
    rec = _SharedRecorder()
    got = conv.conv_nd(x, w, st, (1, 1), pads, outs, epilogue=rec)
    rec.check(got)
    np.testing.assert_allclose(got, want + 1, rtol=1e-5, atol=1e-5)
    if ws[2] == xs[3]:  # (the grouped case runs its own batched matmul, unsplit)
        assert split_everything and len(rec.threads) > 1


def _reference_conv(x, w, strides, pads, outs):
    """A convolution by one loop over taps, in float64."""
    xp = np.pad(x.astype(np.float64), ((0, 0), pads[0], pads[1], (0, 0)))
    kh, kw, cg, co = w.shape
    g = x.shape[-1] // cg
    out = np.zeros((x.shape[0], *outs, co))
    for i in range(kh):
        for j in range(kw):
            v = xp[:, i:i + (outs[0] - 1) * strides[0] + 1:strides[0],
                   j:j + (outs[1] - 1) * strides[1] + 1:strides[1]]
            for k in range(g):
                part = v[..., k * cg:(k + 1) * cg]
                og = co // g
                out[..., k * og:(k + 1) * og] += part @ w[i, j, :, k * og:(k + 1) * og]
    return out


@pytest.mark.parametrize("ws", [(1, 1, 4, 9), (1, 1, 9, 4), (3, 3, 4, 9)],
                         ids=["expansion", "projection", "3x3"])
def test_fused_conv_chain_over_threads(ws, split_everything):
    """A fused conv chain (bias, residual, relu) split over threads gives the unsplit
    result; a residual the blocks cannot take still falls back whole."""
    w, b = _r(*ws), _r(ws[3])
    core = runner.conv_runner("Conv2D", {"strides": [1, 1, 1, 1], "padding": "SAME"}, w, b)
    dt = np.dtype(np.float32)
    ops = [fused.epilogue_op("add_input", dt, 0), fused.epilogue_op("relu", dt)]
    chain = fused.FusedChain(core, dt, ops, None, "test", ws[3], blocked=True)
    x = _r(3, 11, 10, ws[2])
    y = conv.Conv2D(x, w, strides=[1, 1, 1, 1], padding="SAME") + b
    for r in (_r(3, 11, 10, ws[3]), _r(1, 1, 10, ws[3])):
        np.testing.assert_allclose(chain(x, r), np.maximum(y + r, 0), rtol=1e-5, atol=1e-5)
    assert split_everything


WINO_CASES = [
    # (input, output channels, pads)
    ((1, 8, 8, 5), 7, ((1, 1), (1, 1))),  # SAME, even
    ((2, 7, 9, 6), 4, ((1, 1), (1, 1))),  # odd rows and columns: partial tiles cropped
    ((1, 9, 6, 3), 5, ((0, 0), (0, 0))),  # VALID
    ((3, 6, 7, 4), 6, ((2, 1), (0, 2))),  # asymmetric
    ((1, 3, 3, 2), 3, ((0, 0), (0, 0))),  # one output pixel
    ((0, 6, 6, 4), 4, ((1, 1), (1, 1))),  # no images
]


@pytest.mark.parametrize("chunk", [1 << 30, 1], ids=["images", "tile_rows"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", WINO_CASES, ids=[str(i) for i in range(len(WINO_CASES))])
def test_winograd_3x3(case, dtype, chunk, monkeypatch):
    """F(2x2, 3x3) gives the convolution (against a float64 loop over taps, to the direct
    method's accuracy) for every padding and size, in chunks of whole images or of single
    tile rows, each output row through the epilogue once, in order."""
    from tfdeploy.kernels.nn import winograd

    monkeypatch.setattr(winograd, "_CHUNK_BYTES", chunk)
    xs, k, pads = case
    x, w = _r(*xs, dtype=dtype), _r(3, 3, xs[3], k, dtype=dtype)
    outs = [xs[1 + i] + sum(pads[i]) - 2 for i in range(2)]
    want = _reference_conv(x, w, (1, 1), pads, outs)
    u = winograd.weights(w)
    assert u.shape == (16, xs[3], k) and u.dtype == dtype and not u.flags.writeable
    tol = 1e-5 if dtype == np.float32 else 1e-12
    got = winograd.conv3x3(x, u, pads, outs)
    assert got.shape == want.shape and got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    # any layout: each chunk copies what it reads
    np.testing.assert_array_equal(winograd.conv3x3(np.asfortranarray(x), u, pads, outs), got)
    if xs[0]:
        rec = _Recorder()
        got = winograd.conv3x3(x, u, pads, outs, rec)
        rec.check(got)
        np.testing.assert_allclose(got, want + 1, rtol=tol, atol=tol)


@pytest.mark.parametrize("chunk", [1 << 13, 7, 1], ids=["default", "7", "1"])
def test_winograd_weights_by_chunks(chunk, monkeypatch):
    """The filter transform ``G w G^T``, taken in chunks of channel pairs (here one chunk or
    many, a short last one included), is the float64 transform of each filter rounded once:
    bit for bit on float32 filters, to float64 rounding (of the terms' size) on float64 ones."""
    from tfdeploy.kernels.nn import winograd

    monkeypatch.setattr(winograd, "_WEIGHT_CHUNK", chunk)
    g = winograd._G
    for c, k, dtype in ((96, 100, np.float32), (5, 3, np.float32), (9, 4, np.float64),
                        (4, 0, np.float32)):
        w = _r(3, 3, c, k, dtype=dtype) * np.exp(RNG.uniform(-8, 8, (3, 3, c, k))).astype(dtype)
        want, mag = np.zeros((4, 4, c, k)), np.zeros((4, 4, c, k))  # (mag: sums of |terms|)
        for a in range(4):
            for b in range(4):
                for i in range(3):
                    for j in range(3):
                        term = g[a, i] * g[b, j] * w[i, j].astype(np.float64)
                        want[a, b] += term
                        mag[a, b] += np.abs(term)
        u = winograd.weights(w)
        assert u.shape == (16, c, k) and u.dtype == dtype and not u.flags.writeable
        if dtype == np.float32:
            np.testing.assert_array_equal(u, want.reshape(16, c, k).astype(dtype))
        else:
            err = np.abs(u - want.reshape(16, c, k))
            assert np.all(err <= 4 * np.finfo(np.float64).eps * mag.reshape(16, c, k))


@pytest.mark.parametrize("many_tiles", [True, False], ids=["tile_rows", "products"])
def test_winograd_over_threads(many_tiles, split_everything, monkeypatch):
    """Over threads: chunks of tile rows (each output row through the epilogue once, on
    several threads), or, with too few tiles for that, one chunk whose 16 products split."""
    from tfdeploy.kernels.nn import winograd

    monkeypatch.setattr(winograd, "_SPLIT_CHUNK_BYTES", 1)
    monkeypatch.setattr(winograd, "_MIN_TILES", 1 if many_tiles else 128)
    x, w = _r(2, 9, 8, 4), _r(3, 3, 4, 5)
    pads, outs = ((1, 1), (1, 1)), (9, 8)
    want = _reference_conv(x, w, (1, 1), pads, outs)
    rec = _SharedRecorder()
    got = winograd.conv3x3(x, winograd.weights(w), pads, outs, rec)
    rec.check(got)
    np.testing.assert_allclose(got, want + 1, rtol=1e-5, atol=1e-5)
    if many_tiles:
        assert len(rec.threads) > 1
    else:
        assert len(rec.ranges) == 1 and (16, 4) in split_everything


def test_winograd_chunks_are_larger_over_threads(split_calls, monkeypatch):
    """Split over threads, the chunks take ``_SPLIT_CHUNK_BYTES`` (few numpy calls per thread:
    whole images here), on one thread ``_CHUNK_BYTES`` (tile rows here)."""
    from tfdeploy.kernels.nn import winograd
    from tfdeploy.runtime import parallel, threads

    monkeypatch.setattr(winograd, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(winograd, "_MIN_TILES", 1)
    monkeypatch.setattr(parallel, "MIN_WORK", 1)
    x, w = _r(4, 12, 10, 8), _r(3, 3, 8, 8)
    pads, outs = ((1, 1), (1, 1)), (12, 10)
    want = _reference_conv(x, w, (1, 1), pads, outs)
    # (pixels of a chunk: one tile row of 2 x 10, or two whole 12 x 10 images, one per thread)
    for n_threads, chunk_rows in ((1, {20}), (2, {240})):
        monkeypatch.setitem(threads._state, "threads", n_threads)
        rec = _SharedRecorder()
        got = winograd.conv3x3(x, winograd.weights(w), pads, outs, rec)
        np.testing.assert_allclose(got, want + 1, rtol=1e-5, atol=1e-5)
        assert {b - a for a, b in rec.ranges} == chunk_rows
    assert split_calls == [(2, 2)]


def test_winograd_in_the_conv_runner():
    """The conv runner takes F(2x2, 3x3) for the 3x3 unit-stride layers where it pays (enough
    channels and pixels), with the bias and the epilogue, and im2col elsewhere."""
    from tfdeploy.kernels.nn import winograd

    same = {"strides": [1, 1, 1, 1], "padding": "SAME"}
    assert winograd.applies((1, 24, 24, 128), (3, 3, 128, 128), np.float32, [1, 1], [1, 1],
                            ((1, 1), (1, 1)))
    for xs, ws, st, dt in [((1, 24, 24, 64), (3, 3, 64, 64), [1, 1], np.float32),  # 64 / 64
                           ((1, 24, 24, 256), (3, 3, 256, 32), [1, 1], np.float32),  # few out
                           ((1, 8, 8, 128), (3, 3, 128, 128), [1, 1], np.float32),  # pixels
                           ((1, 24, 24, 128), (3, 3, 128, 128), [2, 2], np.float32),
                           ((1, 24, 24, 128), (3, 3, 128, 128), [1, 1], np.float16),
                           ((1, 24, 24, 128), (5, 5, 128, 128), [1, 1], np.float32)]:
        assert not winograd.applies(xs, ws, dt, st, [1, 1], ((1, 1), (1, 1)))
    w, b = _r(3, 3, 128, 128) * np.float32(0.1), _r(128)
    run = runner.conv_runner("Conv2D", same, w, b)
    x = _r(2, 24, 23, 128)
    want = conv.Conv2D(x, w, **same) + b
    rec = _SharedRecorder()  # (the images may go to two threads)
    got = run(x, rec)
    assert run.wino is not None
    rec.check(got)
    np.testing.assert_allclose(got, want + 1, rtol=1e-5, atol=1e-5)
    small = _r(1, 5, 5, 128)  # the same runner, another shape: im2col
    np.testing.assert_allclose(run(small), conv.Conv2D(small, w, **same) + b, rtol=1e-5,
                               atol=1e-5)


def test_products_split_by_the_matmul_threshold(monkeypatch):
    """The 1x1 convolutions (plain, bias in the product, squeeze-excite scaled) and im2col
    ones ask for the matrix products' threshold (``parallel.MATMUL_FACTOR``); narrow convs
    and depthwise work do not."""
    from tfdeploy.runtime import parallel

    asked = []
    real = parallel.blocks

    def blocks(rows, work_per_row, matmul=False):
        asked.append(matmul)
        return real(rows, work_per_row, matmul)

    monkeypatch.setattr(parallel, "blocks", blocks)
    same = {"strides": [1, 1, 1, 1], "padding": "SAME"}
    f, s = _r(2, 5, 7, 6), _r(2, 1, 1, 6)
    runs = {"plain": lambda: runner.conv_runner("Conv2D", same, _r(1, 1, 6, 4), None)(f),
            "bias in the product": lambda: runner.conv_runner(
                "Conv2D", same, _r(1, 1, 6, 40), _r(40))(f),
            "scaled": lambda: runner.conv_runner("Conv2D", same, _r(1, 1, 6, 4),
                                                 _r(4)).scaled(f, s)}
    for what, run in runs.items():
        asked.clear()
        run()
        assert asked and all(asked), what
    asked.clear()
    runner.conv_runner("DepthwiseConv2dNative", same, _r(3, 3, 6, 1), None)(f)
    assert asked and not any(asked)
    # im2col: as products, but a narrow conv (patch rows of < 32 values: an RGB stem) not
    asked.clear()
    conv.conv_nd(_r(1, 9, 9, 16), _r(3, 3, 16, 40), (1, 1), (1, 1), ((1, 1), (1, 1)), (9, 9))
    assert asked == [True]
    asked.clear()
    conv.conv_nd(_r(1, 9, 9, 3), _r(3, 3, 3, 40), (1, 1), (1, 1), ((1, 1), (1, 1)), (9, 9))
    assert asked == [False]


@pytest.mark.parametrize("n", [1, 3])
def test_scaled_pointwise_over_threads(n, split_everything):
    """A squeeze-excite scale folded into a 1x1 conv's weights (one weight per image) runs
    its rows over threads, blocks spanning images: the unsplit values, each row through the
    epilogue once."""
    w, b = _r(1, 1, 6, 4), _r(4)
    run = runner.conv_runner("Conv2D", {"strides": [1, 1, 1, 1], "padding": "SAME"}, w, b)
    f, s = _r(n, 5, 7, 6), _r(n, 1, 1, 6)
    want = conv.Conv2D(f * s, w, strides=[1, 1, 1, 1], padding="SAME") + b
    rec = _SharedRecorder()
    got = run.scaled(f, s, rec)
    rec.check(got)
    assert len(rec.threads) > 1
    np.testing.assert_allclose(got, want + 1, rtol=1e-5, atol=1e-5)


def _reference_bilinear(x, oh, ow, align, half):
    """TF's ResizeBilinear in float32 and in its order, over whole arrays."""
    from tfdeploy.kernels.image import resize

    ylo, yhi, yl = resize._linear_axis(x.shape[1], oh, align, half)
    xlo, xhi, xl = resize._linear_axis(x.shape[2], ow, align, half)
    t, b = x[:, ylo], x[:, yhi]
    with np.errstate(invalid="ignore"):
        top = t[:, :, xlo] + (t[:, :, xhi] - t[:, :, xlo]) * xl[:, None]
        bottom = b[:, :, xlo] + (b[:, :, xhi] - b[:, :, xlo]) * xl[:, None]
        return top + (bottom - top) * yl[:, None, None]


BILINEAR_CASES = [
    # (input, output size, align_corners, half_pixel_centers)
    ((3, 16, 12, 5), (32, 24), False, True),  # up by 2: each chunk reads a run of rows
    ((2, 23, 30, 3), (9, 11), True, False),  # down: rows apart, a gathered copy
    ((1, 10, 40, 2), (25, 13), False, False),  # legacy, up in rows and down in columns
    ((4, 1, 1, 3), (3, 2), False, True),
    # upsamplings whose rows go by phases (resize._phases)
    ((2, 8, 6, 5), (32, 24), False, True),  # by 4: four phases, edges clamped
    ((1, 7, 5, 3), (14, 10), False, False),  # legacy by 2: exact hits (one row read twice)
    ((2, 5, 4, 2), (9, 7), True, False),  # align_corners 5 -> 9: period 9, exact hits
    ((1, 6, 4, 3), (18, 8), False, True),  # by 3: weights differ from row to row
    ((1, 1, 3, 2), (4, 6), False, True),  # one row: every output row reads it twice
]


@pytest.mark.parametrize("chunk", [1, 200, 3000, 1 << 19],
                         ids=["rows", "few_rows", "images", "default"])
@pytest.mark.parametrize("case", BILINEAR_CASES, ids=[str(i) for i in range(len(BILINEAR_CASES))])
def test_resize_bilinear_by_chunks(case, chunk, monkeypatch):
    """By chunks of one output row, of a few, of several whole images and of the default size,
    the same values as TF's arithmetic over whole arrays, bit for bit (NaN and inf where
    they reach; a NaN's sign is not compared)."""
    from tfdeploy.kernels.image import resize

    monkeypatch.setattr(resize, "_CHUNK_BYTES", chunk)
    monkeypatch.setattr(resize, "_PHASES_CHUNK_BYTES", chunk)
    xs, (oh, ow), align, half = case
    x = _r(*xs)
    x.flat[::17] = np.nan
    x.flat[5::23] = np.inf
    with np.errstate(invalid="ignore"):  # (inf - inf)
        got = resize.ResizeBilinear(x, np.array([oh, ow], np.int32), align_corners=align,
                                    half_pixel_centers=half)
    want = _reference_bilinear(x, oh, ow, align, half)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    keep = ~np.isnan(want)
    np.testing.assert_array_equal(got[keep].view(np.int32), want[keep].view(np.int32))


def test_resize_bilinear_upsamplings_go_by_phases():
    """The upsamplings above make their rows by phases (not by the gathers, which would pass
    the test above as well), in few groups: an upsampling by 4 in two (the phases reading
    rows q - 1 and q, and those reading q and q + 1), and its clamped edges in two more."""
    from tfdeploy.kernels.image import resize

    for xs, (oh, ow), align, half in BILINEAR_CASES[4:]:
        *_, chunks = resize._bilinear_plan(*xs[1:3], oh, ow, xs[3], align, half, 1 << 19)
        assert all(ch[3] is not None for ch in chunks), (xs, oh)
    *_, chunks = resize._bilinear_plan(8, 6, 32, 24, 5, False, True, 1 << 19)
    (groups,) = [ch[3] for ch in chunks]
    assert sorted((g[2], g[3], g[6]) for g in groups) == [(2, 1, True)] * 2 + [(2, 7, False)] * 2
    *_, chunks = resize._bilinear_plan(16, 12, 8, 6, 5, False, True, 1 << 19)  # down
    assert all(ch[3] is None for ch in chunks)


@pytest.mark.parametrize("align, half", [(False, False), (False, True), (True, False)])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.float64])
def test_resize_nearest_by_whole_factors(align, half, dtype, monkeypatch):
    """Upsamplings by whole factors as one broadcast copy where each pixel repeats (legacy and
    half-pixel), the gathers elsewhere (align_corners), the same values as the gathers."""
    from tfdeploy.kernels.image import resize

    x = (_r(2, 4, 5, 3) * 50).astype(dtype)
    copies = []
    monkeypatch.setattr(resize, "output", lambda shape, dt: copies.append(shape) or
                        np.empty(shape, dt))
    whole = []
    for oh, ow in [(8, 15), (4, 10), (12, 5), (9, 15)]:
        got = resize.ResizeNearestNeighbor(x, np.array([oh, ow]), align_corners=align,
                                           half_pixel_centers=half)
        yi = resize.nearest_axis(4, oh, align, half)
        xi = resize.nearest_axis(5, ow, align, half)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, x[:, yi][:, :, xi])
        if oh % 4 == ow % 5 == 0 and np.array_equal(yi, np.arange(oh) // (oh // 4)) \
                and np.array_equal(xi, np.arange(ow) // (ow // 5)):
            whole.append((2, oh, ow, 3))
    assert copies == whole
    if not align:  # (align_corners picks i // factor only by chance: 5 -> 10 does)
        assert whole == [(2, 8, 15, 3), (2, 4, 10, 3), (2, 12, 5, 3)]


@pytest.mark.parametrize("case", [BILINEAR_CASES[0], BILINEAR_CASES[1], BILINEAR_CASES[4]],
                         ids=["up", "down", "phases"])
def test_resize_bilinear_over_threads(case, split_everything, monkeypatch):
    from tfdeploy.kernels.image import resize

    monkeypatch.setattr(resize, "_CHUNK_BYTES", 200)
    monkeypatch.setattr(resize, "_PHASES_CHUNK_BYTES", 200)
    xs, (oh, ow), align, half = case
    x = _r(*xs)
    got = resize.ResizeBilinear(x, np.array([oh, ow], np.int32), align_corners=align,
                                half_pixel_centers=half)
    assert split_everything and split_everything[0][1] > 1
    np.testing.assert_array_equal(got, _reference_bilinear(x, oh, ow, align, half))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_augmented_pointwise_by_blocks(dtype, monkeypatch):
    """An expansion (the bias in the product, against a ones column) runs in blocks of rows,
    each copied, multiplied and finished by the epilogue in turn: blocks of at most the
    step's rows, the last one shorter, the values those of the whole."""
    monkeypatch.setattr(conv, "_MIN_ROWS", 8)
    monkeypatch.setattr(conv, "_GEMM_BLOCK_BYTES", 40 * 9 * np.dtype(dtype).itemsize)
    attrs = {"strides": [1, 1, 1, 1], "padding": "SAME"}
    w, b = _r(1, 1, 4, 9, dtype=dtype), _r(9, dtype=dtype)
    run = runner.conv_runner("Conv2D", attrs, w, b)
    assert run.augmented is not None
    x = _r(3, 7, 6, 4, dtype=dtype)  # 126 rows: blocks of 40, the last of 6
    want = conv.Conv2D(x, w, **attrs) + b
    rec = _Recorder()
    got = run(x, rec)
    rec.check(got)
    assert [e - s for s, e in rec.ranges] == [40, 40, 40, 6]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want + 1, rtol=tol, atol=tol)
    np.testing.assert_allclose(run(x), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("ws, strides", [((1, 1, 6, 4), 1), ((1, 1, 6, 9), 1),
                                         ((1, 1, 6, 4), 2), ((3, 3, 6, 4), 1)],
                         ids=["product", "augmented", "strided", "3x3"])
def test_conv_runner_prologue(ws, strides, monkeypatch):
    """A prologue (elementwise ops on the input, ``fused.prologue_op``) runs on each block of
    a unit-stride 1x1 conv's rows as it multiplies them (the bias in the product or not), and
    on a copy of the whole input for any other conv: the values of the ops then the conv,
    the input never written."""
    monkeypatch.setattr(runner, "_PROLOGUE_BYTES", 1)  # (blocks of 64 rows)
    w, b = _r(*ws), _r(ws[3])
    s, t = _r(6) + 1, _r(6)
    pro = fused.prologue_op([("mul", s), ("add", t), ("relu6", None)], np.dtype(np.float32), 6)
    attrs = {"strides": [1, strides, strides, 1], "padding": "SAME"}
    run = runner.conv_runner("Conv2D", attrs, w, b, pro)
    x = _r(3, 11, 7, 6) * 8
    keep = x.copy()
    want = conv.Conv2D(np.clip(x * s + t, 0, 6), w, **attrs) + b
    rec = _Recorder()
    got = run(x, rec)
    rec.check(got)
    np.testing.assert_allclose(got, want + 1, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(x, keep)
    if ws[:2] == (1, 1) and strides == 1:
        assert len(rec.ranges) >= 3  # (231 rows)


def test_conv_runner_groups_of_one_channel_run_as_depthwise():
    """A Conv2D whose groups are single input channels (filter [KH, KW, 1, O]) is the
    depthwise convolution with O / C filters per channel: the runner takes the depthwise
    kernel (with its bias and epilogue), whatever depth C its inputs have from call to call."""
    w, b = _r(3, 3, 1, 8), _r(8)
    attrs = {"strides": [1, 1, 1, 1], "padding": "SAME"}
    run = runner.conv_runner("Conv2D", attrs, w, b)
    for c in (8, 4, 2, 8):  # 1, 2 and 4 filters per channel, each shape twice
        x = _r(2, 7, 6, c)
        m = 8 // c
        want = np.concatenate([conv.Conv2D(x[..., i:i + 1], w[..., i * m:(i + 1) * m], **attrs)
                               for i in range(c)], axis=-1) + b
        for _ in range(2):
            rec = _Recorder()
            got = run(x, rec)
            rec.check(got)
            np.testing.assert_allclose(got, want + 1, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(conv.Conv2D(x, w, **attrs) + b, want, rtol=1e-5, atol=1e-5)
    assert {k for k in run.tiles if isinstance(k, tuple)} == {("groups", 8), ("groups", 4),
                                                              ("groups", 2)}


@pytest.mark.parametrize("ws, strides", [((3, 3, 2, 16), 1), ((3, 3, 4, 8), 1),
                                         ((3, 3, 4, 8), 2), ((3, 3, 8, 4), 1)],
                         ids=["sum_of_2", "sum_of_4", "strided_products", "products"])
def test_grouped_conv_paths(ws, strides):
    """Grouped convolutions: groups of up to 4 channels as depthwise convolutions summed
    (unit strides), others one product per group from patches copied once: the values of a
    convolution per group, through the runner with its bias and epilogue too."""
    w, b = _r(*ws), _r(ws[3])
    c = 16
    g = c // ws[2]
    m = ws[3] // g
    attrs = {"strides": [1, strides, strides, 1], "padding": "SAME"}
    x = _r(2, 9, 8, c)
    want = np.concatenate([conv.Conv2D(x[..., i * ws[2]:(i + 1) * ws[2]],
                                       w[..., i * m:(i + 1) * m], **attrs)
                           for i in range(g)], axis=-1)
    np.testing.assert_allclose(conv.Conv2D(x, w, **attrs), want, rtol=1e-5, atol=1e-5)
    run = runner.conv_runner("Conv2D", attrs, w, b)
    rec = _Recorder()
    got = run(x, rec)
    rec.check(got)
    np.testing.assert_allclose(got, want + b + 1, rtol=1e-5, atol=1e-5)


def _reference_transpose(shape, w, dy, strides, pads):
    """The transposed convolution written out: each tap's products added into a float64
    padded output at their positions, then cropped (unit dilations)."""
    nsp = len(shape) - 2
    ks, outs = w.shape[:nsp], dy.shape[1:-1]
    size = [max(d + lo + hi, (o - 1) * s + k) for d, (lo, hi), o, s, k in
            zip(shape[1:-1], pads, outs, strides, ks)]
    dxp = np.zeros((shape[0], *size, shape[-1]))
    for tap in np.ndindex(*ks):
        sl = tuple(slice(t, t + (o - 1) * s + 1, s) for t, o, s in zip(tap, outs, strides))
        dxp[(slice(None),) + sl] += dy.astype(np.float64) @ w[tap].astype(np.float64).T
    return dxp[(slice(None),) + tuple(slice(lo, lo + d) for d, (lo, _) in
                                      zip(shape[1:-1], pads))]


def _transpose_geometries(count: int, seed: int = 1):
    """Random transposed convolutions with 1-3 spatial axes: strides 1-4 (above the kernel
    too: phases no tap reaches), kernels 1-5, pads 0-5 on either side, leftover input rows
    the forward convolution never read."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        nsp = int(rng.integers(1, 4))
        ks = [int(rng.integers(1, 6)) for _ in range(nsp)]
        strides = [int(rng.integers(1, 5)) for _ in range(nsp)]
        pads, dims, outs = [], [], []
        for k, s in zip(ks, strides):
            lo, hi = (int(v) for v in rng.integers(0, 6, 2))
            d = max(1, k - lo - hi) + int(rng.integers(0, 9))
            o = (d + lo + hi - k) // s + 1
            if o < 1:
                d, o = d + k, (d + k + lo + hi - k) // s + 1
            pads.append((lo, hi))
            dims.append(d)
            outs.append(o)
        n, c, co = int(rng.integers(1, 3)), int(rng.integers(1, 6)), int(rng.integers(1, 6))
        yield [n, *dims, c], [*ks, c, co], strides, pads, [n, *outs, co]


@pytest.mark.parametrize("taps_below", [0, 1 << 20], ids=["phases", "taps"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transposed_conv_by_phases_and_taps(dtype, taps_below, monkeypatch):
    """A transposed convolution by phases (one convolution of dy by each phase's flipped
    sub-filter) or by taps (one product for every tap, each tap's plane added into a
    channels-first output) gives the taps' products summed at their positions, for 1-3
    spatial axes, strides below, at and above the kernel, any padding, leftover rows."""
    monkeypatch.setattr(conv, "_TAPS_BELOW", taps_below)
    rng = np.random.default_rng(2)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for shape, ws, strides, pads, ys in _transpose_geometries(150):
        w = rng.uniform(-1, 1, ws).astype(dtype)
        w.setflags(write=False)
        dy = rng.uniform(-1, 1, ys).astype(dtype)
        want = _reference_transpose(shape, w, dy, strides, pads)
        got = conv.conv_transpose_nd(shape, w, dy, strides, [1] * len(strides), pads)
        assert got.shape == want.shape and got.dtype == dtype, (shape, ws, strides, pads)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol,
                                   err_msg=str((shape, ws, strides, pads)))


def test_transposed_conv_phase_filters_kept_for_constants_only(monkeypatch):
    """A constant (read-only) filter's phase sub-filters are made once; a writeable filter's
    on every call, so a change to its values shows; a filter holding inf goes by the taps'
    scatter (the phases would multiply it by dy's zero padding: NaN where there is no
    term), as does a constant one."""
    monkeypatch.setattr(conv, "_TAPS_BELOW", 0)  # (3 channels: by phases here)
    shape, strides, pads = [1, 9, 8, 3], [2, 2], [(1, 2), (2, 1)]
    dy = _r(1, 5, 4, 4)
    w = _r(3, 3, 3, 4)
    want = _reference_transpose(shape, w, dy, strides, pads)
    got = conv.conv_transpose_nd(shape, w, dy, strides, [1, 1], pads)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    assert id(w) not in constants._DERIVED
    w *= 2  # (a writeable filter: its sub-filters are made again)
    got = conv.conv_transpose_nd(shape, w, dy, strides, [1, 1], pads)
    np.testing.assert_allclose(got, 2 * want, rtol=2e-5, atol=2e-5)

    c = w.copy()
    c.setflags(write=False)
    first = conv.conv_transpose_nd(shape, c, dy, strides, [1, 1], pads).copy()
    kept = constants._DERIVED[id(c)][1][("phases", (2, 2))]
    assert len(kept) == 4
    np.testing.assert_array_equal(conv.conv_transpose_nd(shape, c, dy, strides, [1, 1], pads),
                                  first)
    assert constants._DERIVED[id(c)][1][("phases", (2, 2))] is kept
    # the same constant with other strides (two nodes sharing a filter): its own sub-filters
    other = [1, 11, 7, 3]
    np.testing.assert_allclose(
        conv.conv_transpose_nd(other, c, dy, [3, 1], [1, 1], [(1, 1), (1, 1)]),
        _reference_transpose(other, c, dy, [3, 1], [(1, 1), (1, 1)]), rtol=2e-5, atol=2e-5)
    view = np.ndarray(c.shape, c.dtype, w)  # (a read-only view of writeable memory)
    view.setflags(write=False)
    assert not constants.immutable(view) and constants.immutable(c)
    key = id(c)
    del c, kept
    assert key not in constants._DERIVED  # (gone with its filter)

    for constant in (False, True):
        bad = w.copy()
        bad[1, 1, 0, 0] = np.inf
        bad.setflags(write=not constant)
        want = _reference_transpose(shape, bad, dy, strides, pads)
        got = conv.conv_transpose_nd(shape, bad, dy, strides, [1, 1], pads)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert np.isnan(want).sum() < want.size // 2 and np.isinf(got).any()
        np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)],
                                   rtol=2e-5, atol=2e-5)


def test_transposed_conv_paths_by_channels(monkeypatch):
    """Fewer than ``_TAPS_BELOW`` output channels go by taps, more by phases; both keep
    infinities and NaN where the taps' sum has them (the taps by computing only the sum's
    terms)."""
    calls = []
    for name in ("_transpose_by_taps", "_transpose_by_phases"):
        f = getattr(conv, name)
        monkeypatch.setattr(conv, name, lambda *a, f=f, name=name: calls.append(name) or f(*a))
    dy = _r(2, 4, 5, 6)
    dy[0, 1, 2, 3], dy[1, 3, 0, 0] = np.inf, np.nan
    for c, path in ((conv._TAPS_BELOW - 1, "_transpose_by_taps"),
                    (conv._TAPS_BELOW, "_transpose_by_phases")):
        shape, w = [2, 8, 10, c], _r(3, 3, c, 6)
        pads = [(1, 1), (1, 1)]
        with np.errstate(invalid="ignore"):
            want = _reference_transpose(shape, w, dy, [2, 2], pads)
            got = conv.conv_transpose_nd(shape, w, dy, [2, 2], [1, 1], pads)
        assert calls[-1] == path
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        assert np.isnan(want).any() and np.isinf(want).any()
        ok = np.isfinite(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("shape,ksize,padding", [
    ((2, 7, 7, 5), (1, 3, 3, 1), "SAME"), ((1, 6, 9, 4), (1, 5, 2, 1), "VALID"),
    ((2, 3, 6, 6), (1, 1, 3, 3), "SAME"), ((1, 4, 4, 3), (1, 9, 9, 1), "SAME"),
])
def test_unit_stride_average_pool_plan_forms_agree(shape, ksize, padding, monkeypatch):
    """The unit-stride pool's plan, made once per shape, gives the generic path's values bit
    for bit: with its divisor repeated to the output's shape or broadcast, with its taps taken
    from one view of a kept scratch buffer or of one made for the call; a SAME window larger
    than the input (cut to it) goes the generic way."""
    from tfdeploy.kernels.nn import pool

    x = _r(*shape)
    kw = dict(ksize=list(ksize), strides=[1] * 4, padding=padding)
    got = pool.AvgPool(x, **kw).copy()
    pool._flat_plan.cache_clear()
    monkeypatch.setattr(pool, "_FULL_DIVISOR_BYTES", 0)
    np.testing.assert_array_equal(pool.AvgPool(x, **kw), got)
    monkeypatch.setattr(scratch, "KEEP_BYTES", 0)
    np.testing.assert_array_equal(pool.AvgPool(x, **kw), got)
    pool._flat_plan.cache_clear()  # (no plan of the forms above kept for later tests)
    monkeypatch.setattr(pool, "_flat_plan", lambda *a: None)  # (the generic taps)
    np.testing.assert_array_equal(pool.AvgPool(x, **kw), got)


@pytest.mark.parametrize("shape, ksize, padding", [
    ((1, 35, 35, 12), (1, 3, 3, 1), "SAME"),
    ((3, 9, 11, 5), (1, 3, 2, 1), "VALID"),
    ((2, 5, 6, 7, 3), (1, 2, 3, 3, 1), "SAME"),
])
def test_flat_average_pool_by_chunks(shape, ksize, padding, monkeypatch):
    """The unit-stride average pool adds its taps by column chunks once its sums exceed
    1.5 chunks: the same values bit for bit as in one pass (each sum adds the taps in window
    order either way), a chunk cut anywhere, and the mean of each window's valid cells."""
    from tfdeploy.kernels.nn import pool

    x = _r(*shape)
    plan = pool._flat_plan(shape, ksize, padding, np.dtype(np.float32))
    whole = plan(x).copy()
    monkeypatch.setattr(pool, "_POOL_COLUMNS", 1)
    for chunk in (7, 64, 1000):
        monkeypatch.setattr(pool, "_POOL_CHUNK", chunk)
        # (the sums' scratch buffer, left from the last call, spoiled: every sum is made)
        scratch.scratch("avg_pool_sums", plan.groups * plan.run, np.float32)[:] = np.nan
        np.testing.assert_array_equal(plan(x), whole)
    # against the windows written out in float64
    geom = pool._geometry(shape, ksize, [1] * len(shape), padding)
    want = np.empty(whole.shape)
    for idx in np.ndindex(*whole.shape[:-1]):
        window = tuple(slice(max(0, i - lo), min(n, i - lo + k)) for i, (_, lo, _), n, k in
                       zip(idx, geom, shape, ksize))
        want[idx] = x[window].astype(np.float64).reshape(-1, shape[-1]).mean(axis=0)
    np.testing.assert_allclose(whole, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("by_exp2", [True, False])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [None, 1.7, -0.5])
def test_swish_epilogue_by_exp2_or_exp(monkeypatch, by_exp2, dt, beta):
    """The swish epilogue y * sigmoid(beta y) takes its power by exp2 or by exp, whichever
    numpy computes faster here (``numerics/ufunc_speed.py``: exp2 with AVX-512, exp with
    AVX2): either gives y / (1 + e ** (-beta y)) to a rounding of the scaled argument
    (< 1e-6 |y|), over the range, in the tails (-0 where the power overflows), at 0, and
    with infinities and NaN as the unfused ops give them."""
    monkeypatch.setattr(fused, "cheaper", lambda a, b, dtype: by_exp2)
    f = fused.epilogue_op("swish", np.dtype(dt), beta)
    y = np.concatenate([np.linspace(-120, 120, 4001), [0.0, -0.0, 1e-30, -1e-30, 300, -300],
                        [np.inf, -np.inf, np.nan]]).astype(dt)
    b = 1.0 if beta is None else beta
    with np.errstate(over="ignore", invalid="ignore"):
        want = y.astype(np.float64) / (1 + np.exp(-b * y.astype(np.float64)))
        got = f(y.copy(), ())  # (a kernel outside a plan: the plan's call silences inf / NaN)
    assert got.dtype == dt
    finite = np.isfinite(y)
    err = np.abs(got[finite].astype(np.float64) - want[finite])
    assert np.all(err <= 1e-6 * np.abs(y[finite]) + 1e-300), float(err.max())
    sig = np.sign(b)  # y = +-inf: inf * sigmoid(+-inf), NaN where that is inf * 0
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(got[~finite], y[~finite] * (sig * y[~finite] > 0))


def test_cheaper_times_two_ufuncs_once():
    """``cheaper`` (which of two ufuncs a kernel computes its values by) measures: a negation
    costs less than a float64 sine on any CPU, not the other way round, and a ufunc is not
    cheaper than itself (the margin); the answer is kept for the process."""
    from tfdeploy.numerics.ufunc_speed import cheaper

    assert cheaper("negative", "sin", "float64")
    assert not cheaper("sin", "negative", "float64")
    assert not cheaper("exp", "exp", "float32")
    assert cheaper.cache_info().currsize >= 3


TRIM_CASES = [
    # (op, input, filter, strides, dilations, padding, explicit (top, bottom, left, right))
    ("Conv2D", (2, 5, 6, 3), (3, 3, 3, 4), (1, 1), (6, 7), "SAME", None),
    ("Conv2D", (1, 4, 5, 2), (3, 3, 2, 3), (4, 1), (1, 1), "EXPLICIT", (6, 0, 0, 4)),
    ("Conv2D", (1, 4, 5, 2), (3, 3, 2, 3), (20, 1), (1, 1), "EXPLICIT", (10, 0, 0, 0)),
    ("Conv2D", (1, 4, 2, 2), (3, 5, 2, 3), (1, 1), (1, 1), "EXPLICIT", (0, 0, 0, 6)),
    ("Conv2D", (2, 1, 1, 8), (3, 3, 8, 16), (1, 1), (1, 1), "SAME", None),  # -> 1x1
    ("Conv2D", (1, 2, 2, 4), (5, 5, 4, 8), (1, 1), (1, 1), "SAME", None),  # -> 3x3 (2 taps)
    ("Conv2D", (1, 3, 4, 6), (3, 3, 1, 6), (1, 1), (3, 4), "SAME", None),  # groups of one
    ("Conv2D", (1, 3, 4, 6), (3, 3, 3, 4), (1, 1), (5, 1), "SAME", None),  # groups of three
    ("DepthwiseConv2dNative", (1, 4, 5, 3), (3, 3, 3, 2), (1, 1), (5, 9), "SAME", None),
    ("DepthwiseConv2dNative", (2, 5, 5, 3), (3, 3, 3, 1), (2, 2), (7, 7), "SAME", None),
]


def _trim_case(case):
    op, xs, ws, st, dl, pad, ex = case
    attrs = {"strides": [1, *st, 1], "dilations": [1, *dl, 1], "padding": pad}
    if ex:
        attrs["explicit_paddings"] = [0, 0, *ex, 0, 0]
    kernel = conv.Conv2D if op == "Conv2D" else conv.DepthwiseConv2dNative
    return op, kernel, attrs, _r(*xs), _r(*ws)


def _geometry_of(x, w, attrs):
    pairs = None
    if attrs["padding"] == "EXPLICIT":
        e = attrs["explicit_paddings"]
        pairs = [(e[2], e[3]), (e[4], e[5])]
    outs, pads = conv._geometry(x.shape[1:3], w.shape[:2], attrs["strides"][1:3],
                                attrs["dilations"][1:3], attrs["padding"], pairs)
    return x.shape[1:3], w.shape[:2], attrs["strides"][1:3], attrs["dilations"][1:3], pads, outs


@pytest.mark.parametrize("case", TRIM_CASES, ids=[str(i) for i in range(len(TRIM_CASES))])
def test_taps_reading_only_padding_are_cut(case, monkeypatch):
    """A convolution whose dilation or padding puts taps on padding for every output leaves
    those taps out (``trim_taps``): the op's kernel and the runner of a constant filter (with
    a bias and an epilogue) give the values of the whole filter over the padded input."""
    op, kernel, attrs, x, w = _trim_case(case)
    assert conv.trim_taps(*_geometry_of(x, w, attrs)) is not None  # (the case cuts)
    got = kernel(x, w, **attrs)
    b = _r(got.shape[-1])
    ran = runner.conv_runner(op, attrs, w, b)
    rec = _Recorder()
    fused = ran(x, rec)
    rec.check(fused)
    monkeypatch.setattr(conv, "trim_taps", lambda *a, **k: None)
    monkeypatch.setattr(runner, "trim_taps", lambda *a, **k: None)
    want = kernel(x, w, **attrs)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fused, want + b + 1, rtol=1e-6, atol=1e-6)


def test_trim_taps_geometry():
    """The cut filter and its pads: the same output size, and taps cut only as far as the
    pads go (the input is never cropped)."""
    # SAME, dilation past the input: only the middle tap reads it
    assert conv.trim_taps([4], [3], [1], [100], [(100, 100)], [4]) == ((slice(1, 2),),
                                                                        [(0, 0)])
    # pad 98 with dilation 100: tap 1 reads rows 2..5, but cutting tap 0 would crop 2 rows;
    # tap 2 reads only past the input
    assert conv.trim_taps([6], [3], [1], [100], [(98, 0)], [4]) == ((slice(0, 2),), [(98, 0)])
    # every tap on padding: none kept
    assert conv.trim_taps([4], [3], [20], [1], [(10, 0)], [1]) == ((slice(3, 3),), [(0, 0)])
    # trailing taps past the input (EXPLICIT padding after it)
    assert conv.trim_taps([2], [5], [1], [1], [(0, 6)], [4]) == ((slice(0, 2),), [(0, 3)])
    assert conv.trim_taps([5], [3], [1], [1], [(1, 1)], [5]) is None
    # an inf or NaN weight keeps its taps: TF's reference kernels make NaN from the padding
    w = np.ones((3, 1, 1, 1), np.float32)
    assert conv.trim_taps([4], [3], [1], [100], [(100, 100)], [4], w) is not None
    w[0] = np.nan
    assert conv.trim_taps([4], [3], [1], [100], [(100, 100)], [4], w) is None


@pytest.mark.parametrize("op", ["Conv2D", "DepthwiseConv2dNative"])
def test_non_finite_weights_on_padding_still_make_nan(op):
    """TF's reference kernels multiply the padding by the weights: an inf or NaN weight that
    reads only padding makes NaN, in the kernel and in the runner alike (TF with oneDNN skips
    the padding; tfdeploy follows the reference kernels)."""
    kernel = conv.Conv2D if op == "Conv2D" else conv.DepthwiseConv2dNative
    attrs = {"strides": [1, 1, 1, 1], "padding": "SAME", "dilations": [1, 5, 5, 1]}
    x = _r(1, 3, 3, 2)
    w = _r(3, 3, 2, 2)
    w[0, 0, 0, 0] = np.inf
    with np.errstate(invalid="ignore"):  # (inf * 0: as a plan's call, silenced)
        got = kernel(x, w, **attrs)
        assert np.isnan(got[..., 0]).all() and np.isfinite(got[..., 1:]).all()
        np.testing.assert_array_equal(runner.conv_runner(op, attrs, w)(x), got)


@pytest.mark.parametrize("strides", [2, 3, 2 ** 62])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_pointwise_runner_with_one_output_of_a_larger_input(strides, padding):
    """A strided 1x1 conv whose output is one pixel (ResNet's shortcut at a 2 x 2 map, or a
    hostile stride that passes the input) is no unit-stride product of the whole input."""
    w, b = _r(1, 1, 4, 6), _r(6)
    attrs = {"strides": [1, strides, strides, 1], "padding": padding}
    x = _r(2, 2, 2, 4)
    got = runner.conv_runner("Conv2D", attrs, w, b)(x)
    np.testing.assert_allclose(got, conv.Conv2D(x, w, **attrs) + b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got, (x[:, :1, :1] @ w[0, 0]) + b, rtol=1e-6, atol=1e-6)
