"""Depthwise 2-D convolution: one ``einsum`` per block of output rows.

The einsum reads a strided view of the block's input rows: numpy's two-operand sum-of-products
loop reads every tap in place and accumulates into the output in one pass (an in-place multiply
then add per tap takes two passes: 1.5x slower here). With unit column stride a pixel's columns
and channels are one contiguous run, so the view is flattened to (columns x channels) against a
weight tiled along the columns: the inner loop then runs over thousands of values instead of one
pixel's channels (0.14 against 0.2-0.3 ns per multiply-add on MobileNetV2's layers).

Rows that touch the padding are copied, padded, into a per-thread scratch buffer (a temporary
array per call made the allocator map and zero fresh pages each time: page faults were ~15% of
MobileNetV2's time at batch 8). The caller's epilogue (bias, activation...) runs on each block
as it is finished.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from tfdeploy.kernels.nn.scratch import scratch

#: the input rows of one block are about this many bytes. Blocks bound the scratch buffer; made
#: L2-sized they were slower (an einsum call costs ~8 us to set up, and the numpy epilogue is
#: not memory-bound enough to gain from running in cache), so whole images are the rule
_BLOCK_BYTES = 1 << 22
#: a tiled (column-flattened) weight larger than this is not made: the per-pixel form is used
_TILE_BYTES = 4 << 20

Epilogue = Callable[[np.ndarray, int, int], object]


def tiled_weight(w: np.ndarray, ow: int, dtype) -> np.ndarray | None:
    """``w`` [KH, KW, C] repeated along ``ow`` output columns: [KH, KW, OW * C], or None when
    that would be too large."""
    kh, kw, c = w.shape
    if kh * kw * ow * c * np.dtype(dtype).itemsize > _TILE_BYTES:
        return None
    t = np.empty((kh, kw, ow, c), dtype)
    t[...] = w[:, :, None, :]
    t = t.reshape(kh, kw, ow * c)
    t.setflags(write=False)
    return t


def _block_rows(n: int, oh: int, rows_in: Callable[[int], int], row_bytes: int):
    """(images per block, output rows per block): whole images when one fits the block."""
    if rows_in(oh) * row_bytes <= _BLOCK_BYTES:
        return max(1, min(n, _BLOCK_BYTES // max(rows_in(oh) * row_bytes, 1))), oh
    rows = 1
    while rows < oh and rows_in(rows * 2) * row_bytes <= _BLOCK_BYTES:
        rows *= 2
    return 1, rows


def depthwise_2d(x: np.ndarray, w: np.ndarray, strides, dilations, pads, oh: int, ow: int,
                 epilogue: Epilogue | None = None, tiles: dict | None = None) -> np.ndarray:
    """Depthwise convolution of ``x`` [N, H, W, C] by ``w`` [KH, KW, C, M]: [N, OH, OW, C*M].

    ``pads``: ((top, bottom), (left, right)). ``epilogue(y, start, stop)``, if given, is
    called on each finished block: rows ``start:stop`` of ``y.reshape(-1, C*M)``. ``tiles``:
    a dict the caller keeps per constant filter, caching its tiled forms by output width.
    """
    kh, kw, c, m = w.shape
    if m != 1:  # channel multiplier: repeat each input channel m times, then one filter each
        x = np.repeat(x, m, axis=-1)
        c *= m
    n, h, wd = x.shape[:3]
    dt = np.result_type(x.dtype, w.dtype)
    out = np.empty((n, oh, ow, c), dt)
    if out.size == 0:
        return out
    if kh * kw == 0:
        out[...] = 0
        if epilogue is not None:
            epilogue(out, 0, n * oh * ow)
        return out
    wf = w.reshape(kh, kw, c).astype(dt, copy=False)
    (sh, sw), (dh, dw) = strides, dilations
    (pt, pb), (pl, pr) = pads
    wp = pl + wd + pr
    isz = np.dtype(dt).itemsize
    wt = None
    if sw == 1:
        wt = tiles.get(ow) if tiles is not None else None
        if wt is None or wt.dtype != dt:
            wt = tiled_weight(wf, ow, dt)
            if tiles is not None and wt is not None:
                tiles[ow] = wt
    direct = x.dtype == dt and x.flags.c_contiguous and not (pl or pr)

    def rows_in(r: int) -> int:
        return (r - 1) * sh + (kh - 1) * dh + 1

    imgs, rows = _block_rows(n, oh, rows_in, wp * c * isz)
    for b0 in range(0, n, imgs):
        b1 = min(n, b0 + imgs)
        for r0 in range(0, oh, rows):
            r1 = min(oh, r0 + rows)
            i0 = r0 * sh - pt
            rin = rows_in(r1 - r0)
            if direct and i0 >= 0 and i0 + rin <= h:
                src = x[b0:b1, i0:i0 + rin]
            else:
                src = _padded_rows(x, b0, b1, i0, rin, pl, wp, dt)
            _block(src, wf, wt, out[b0:b1, r0:r1], (sh, sw), (dh, dw))
            if epilogue is not None:
                epilogue(out, (b0 * oh + r0) * ow, ((b1 - 1) * oh + r1) * ow)
    return out


def _padded_rows(x, b0, b1, i0, rin, pl, wp, dt) -> np.ndarray:
    """Input rows ``i0 : i0 + rin`` of images ``b0:b1``, zero-padded to ``wp`` columns
    (``pl`` on the left) and zero outside the input: a scratch buffer."""
    nb, h, wd, c = b1 - b0, x.shape[1], x.shape[2], x.shape[3]
    buf = scratch("depthwise", nb * rin * wp * c, dt).reshape(nb, rin, wp, c)
    lo, hi = min(max(i0, 0), i0 + rin), max(min(i0 + rin, h), i0)
    buf[:, :lo - i0] = 0
    buf[:, hi - i0:] = 0
    mid = buf[:, lo - i0:hi - i0]
    if pl:
        mid[:, :, :pl] = 0
    if wp > pl + wd:
        mid[:, :, pl + wd:] = 0
    if hi > lo:
        mid[:, :, pl:pl + wd] = x[b0:b1, lo:hi]
    return buf


def _block(src, wf, wt, out, strides, dilations) -> None:
    """One block: ``out`` [nb, rows, OW, C] from its input rows ``src`` [nb, rows_in, W', C]
    (padding included), in one einsum."""
    (sh, sw), (dh, dw) = strides, dilations
    nb, rows, ow, c = out.shape
    kh, kw = wf.shape[:2]
    s = src.strides
    if wt is not None and s[2] == c * s[3]:
        v = as_strided(src, (nb, rows, kh, kw, ow * c), (s[0], s[1] * sh, s[1] * dh, s[2] * dw,
                                                          s[3]), writeable=False)
        np.einsum("nrijq,ijq->nrq", v, wt, out=out.reshape(nb, rows, ow * c))
        return
    v = as_strided(src, (nb, rows, ow, kh, kw, c), (s[0], s[1] * sh, s[2] * sw, s[1] * dh,
                                                    s[2] * dw, s[3]), writeable=False)
    np.einsum("nrwijc,ijc->nrwc", v, wf, out=out)
