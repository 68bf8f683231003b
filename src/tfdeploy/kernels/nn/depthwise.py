"""Depthwise 2-D convolution: one ``einsum`` per output region.

The einsum reads a strided view of the region's input: numpy's two-operand sum-of-products
loop reads every tap in place and accumulates into the output in one pass (an in-place multiply
then add per tap takes two passes: 1.5x slower here). With unit column stride a pixel's columns
and channels are one contiguous run, so the view is flattened to (columns x channels) against a
weight tiled along the columns: the inner loop then runs over thousands of values instead of one
pixel's channels (0.14 against 0.2-0.3 ns per multiply-add on MobileNetV2's layers). That run
is taken in chunks of ~4 KB of whole columns (``_CHUNK_BYTES``), so that the output chunk and
the taps' weight stay in L1 while every tap adds into them.

Padding is a copy into a per-thread scratch buffer, never a fresh array (which made the
allocator map and zero fresh pages each call: page faults were ~15% of MobileNetV2's time at
batch 8); strided convolutions (the ones Keras pads with ZeroPadding2D) read the interior of
their input in place and copy only the thin borders, padded (15-20% faster on those layers).
The caller's epilogue (bias, activation...) runs on each finished group of images. Image
groups (or, for fewer images than threads, row ranges of one image) split over threads when
there is enough work (``runtime/parallel.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfdeploy.kernels.common import all_finite
from tfdeploy.kernels.nn.scratch import output, scratch, strided
from tfdeploy.numerics import clip as _clip
from tfdeploy.runtime import parallel
from tfdeploy.runtime.limits import check_array

#: images are taken together up to this many input bytes. Row blocks of L2 size were slower
#: (an einsum call costs ~8 us to set up, and the numpy epilogue is not memory-bound enough to
#: gain from running in cache), so whole images are the unit
_BLOCK_BYTES = 1 << 22
#: a group of images below this many bytes is computed in one einsum from a padded copy, even
#: with a column stride
_SMALL_BYTES = 1 << 18
#: a tiled (column-flattened) weight larger than this is not made: the per-pixel form is used
_TILE_BYTES = 4 << 20
#: column-strided convolutions of at most this many channels go by phases (``_phased``)
_PHASED_CHANNELS = 64
#: unit column strides: the flattened (columns x channels) run is cut into chunks of whole
#: columns of about this many bytes, one einsum axis more: a chunk of the output and the
#: taps' weight stay in L1 while the taps add into it. The whole row's run (32 KB on
#: MobileNetV2's 56 x 56 x 144 layer) went through L2 for each tap: 10-25% slower on
#: MobileNetV2's and EfficientNet's layers from 56 x 56 x 144 to 7 x 7 x 1152 (3x3 and 5x5),
#: the same on 112 x 112 x 32; 2-8 KB chunks were all about as fast, 1 KB slower again.
#: Column strides by phases keep whole rows (chunked, 2-20% slower: their copy is the cost)
_CHUNK_BYTES = 1 << 12

Epilogue = Callable[[np.ndarray, int, int], object]


def chunk_columns(ow: int, c: int, dtype) -> int:
    """The output columns of one chunk of a unit-stride layer's einsum (``_CHUNK_BYTES``); a
    row of at most two chunks that would leave a remainder is one chunk: the remainder's
    einsum is a call more, a quarter of a small map's time (NASNetMobile's 7 x 7 x 176, 5 x 5:
    71 -> 59 us; 14 x 14 x 88 104 -> 86; 28 x 28 x 44 172 -> 146; same values)."""
    k = max(1, min(ow, round(_CHUNK_BYTES / (c * np.dtype(dtype).itemsize))))
    return ow if ow % k and ow <= 2 * k else k


def tiled_weight(w: np.ndarray, ow: int, dtype) -> np.ndarray | None:
    """``w`` [KH, KW, C] repeated along ``ow`` output columns (a chunk's): [KH, KW, OW * C],
    or None when that would be too large."""
    kh, kw, c = w.shape
    if kh * kw * ow * c * np.dtype(dtype).itemsize > _TILE_BYTES:
        return None
    t = np.empty((kh, kw, ow, c), dtype)
    t[...] = w[:, :, None, :]
    t = t.reshape(kh, kw, ow * c)
    t.setflags(write=False)
    return t


def _phased(sw: int, dw: int, kw: int, c: int) -> bool:
    """Whether a column stride ``sw`` is taken by phases (``phased_weight``): undilated
    columns, at least as many taps as the stride (else most of the copy goes unread), and
    few channels, where the per-pixel einsum's inner loop is short (measured, 7x7/2 on
    111x111x32: 2.2 -> 0.9 ms; 5x5/2 on 111x111x11: 1.16 -> 0.28; 3x3/2 on 112x112x64: 0.81
    -> 0.48; with 96 channels or more, MobileNetV2's and EfficientNet's, no faster in the
    model)."""
    return sw > 1 and dw == 1 and kw >= sw and c <= _PHASED_CHANNELS


def phased_weight(w: np.ndarray, ow: int, sw: int, dtype) -> np.ndarray | None:
    """``w`` [KH, KW, C] for a column stride ``sw`` read by phases: [KH, A, SW, OW * C] with
    A = ceil(KW / SW), tap j at (j // SW, j % SW) repeated along ``ow`` output columns and
    zero in the A * SW - KW slots no tap fills; None when that would be too large."""
    kh, kw, c = w.shape
    a = -(-kw // sw)
    if kh * a * sw * ow * c * np.dtype(dtype).itemsize > _TILE_BYTES:
        return None
    t = np.zeros((kh, a * sw, ow, c), dtype)
    t[:, :kw] = w[:, :, None, :]
    t = t.reshape(kh, a, sw, ow * c)
    t.setflags(write=False)
    return t


def depthwise_2d(x: np.ndarray, w: np.ndarray, strides, dilations, pads, oh: int, ow: int,
                 epilogue: Epilogue | None = None, tiles: dict | None = None,
                 clip: tuple | None = None) -> np.ndarray:
    """Depthwise convolution of ``x`` [N, H, W, C] by ``w`` [KH, KW, C, M]: [N, OH, OW, C*M].

    ``pads``: ((top, bottom), (left, right)). ``epilogue(y, start, stop)``, if given, is
    called on each finished group of images: rows ``start:stop`` of ``y.reshape(-1, C*M)``.
    ``tiles``: a dict the caller keeps per constant filter, caching its tiled forms by output
    width. ``clip``: (low, high) 0-d arrays: the convolution of ``clip(x, low, high)`` (a ReLU
    or ReLU6 before it, NASNet's and Xception's separable convolutions), clipped as the input
    is copied padded (every region then reads a copy): no pass of its own.
    """
    kh, kw, c, m = w.shape
    if m != 1:  # channel multiplier: repeat each input channel m times, then one filter each
        # (a hostile multiplier: the result and the repeated input checked first)
        check_array((x.shape[0], oh, ow, c * m), np.result_type(x.dtype, w.dtype), "the result")
        check_array(x.shape[:-1] + (c * m,), x.dtype, "the repeated input")
        x = np.repeat(x, m, axis=-1)
        c *= m
    n, h, wd = x.shape[:3]
    dt = np.result_type(x.dtype, w.dtype)
    out = output((n, oh, ow, c), dt)
    if out.size == 0:
        return out
    if kh * kw == 0:
        out[...] = 0
        if epilogue is not None:
            epilogue(out, 0, n * oh * ow)
        return out
    if x.dtype != dt or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=dt)
    wf = w.reshape(kh, kw, c).astype(dt, copy=False)
    wt = None
    sw = strides[1]
    if sw == 1 or _phased(sw, dilations[1], kw, c) and (
            kw % sw == 0 or all_finite(x)):
        # (a phase's unused slots multiply a neighbouring column by zero: an inf or NaN there
        # would reach outputs whose windows never read it, so those inputs go per pixel)
        k = chunk_columns(ow, c, dt) if sw == 1 else ow
        key = k if sw == 1 else (sw, k)
        wt = tiles.get(key) if tiles is not None else None
        if wt is None or wt.dtype != dt:
            wt = tiled_weight(wf, k, dt) if sw == 1 else phased_weight(wf, k, sw, dt)
            if tiles is not None and wt is not None:
                tiles[key] = wt
    geom = (strides, dilations, pads, (kh, kw))
    image_bytes = x[0].nbytes
    imgs = max(1, min(n, _BLOCK_BYTES // max(image_bytes, 1)))
    # a depthwise multiply-add costs ~0.16-0.3 ns, ten times a matrix product's: counted
    # twice, a layer splits from ~2 M of them (~0.35 ms; measured: 4 M took 0.67 ms on one
    # thread, 0.49 on two; 1.2 M 0.27 and 0.29)
    parts = parallel.blocks(n * oh, 2 * ow * c * kh * kw)
    if parts > 1:
        imgs = min(imgs, -(-n // parts))
    regions = [(0, oh, 0, ow)] if wt is not None or clip is not None else \
        _regions(h, wd, oh, ow, geom, imgs * image_bytes)
    # tasks: (first image, last image, first row, last row); one image's rows split when
    # there are fewer image groups than threads
    tasks = [(b0, min(n, b0 + imgs), 0, oh) for b0 in range(0, n, imgs)]
    if len(tasks) < parts and imgs == 1:
        per = -(-oh * n // parts)
        tasks = [(b, b + 1, r, min(oh, r + per)) for b in range(n) for r in range(0, oh, per)]

    def run(first: int, last: int) -> None:
        for b0, b1, ra, rb in tasks[first:last]:
            for r0, r1, c0, c1 in regions:
                r0, r1 = max(r0, ra), min(r1, rb)
                if r0 < r1:
                    _region(x[b0:b1], wf, wt, out[b0:b1], (r0, r1, c0, c1), geom, clip)
            if epilogue is not None:
                epilogue(out, (b0 * oh + ra) * ow, ((b1 - 1) * oh + rb) * ow)

    parts = min(parts, len(tasks))
    if parts > 1:
        parallel.run_blocks(run, len(tasks), parts)
    else:
        run(0, len(tasks))
    return out


def _regions(h, wd, oh, ow, geom, group_bytes) -> list[tuple[int, int, int, int]]:
    """The output regions (rows r0:r1, columns c0:c1) computed one einsum each: with a column
    stride, the interior, whose taps all fall inside the input (read in place), and the
    borders (copied padded); else the whole output from one padded copy, which measured faster
    for unit column strides (the column-flattened einsum likes whole rows) and for small
    inputs (four einsum calls fewer)."""
    (sh, sw), (dh, dw), ((pt, _), (pl, _)), (kh, kw) = geom
    r_lo, c_lo = -(-pt // sh), -(-pl // sw)
    r_hi = min(oh, max(r_lo, (h - 1 - (kh - 1) * dh + pt) // sh + 1))
    c_hi = min(ow, max(c_lo, (wd - 1 - (kw - 1) * dw + pl) // sw + 1))
    if sw == 1 or group_bytes < _SMALL_BYTES or r_lo >= r_hi or c_lo >= c_hi:
        return [(0, oh, 0, ow)]
    regions = [(0, r_lo, 0, ow), (r_lo, r_hi, 0, c_lo), (r_lo, r_hi, c_lo, c_hi),
               (r_lo, r_hi, c_hi, ow), (r_hi, oh, 0, ow)]
    return [r for r in regions if r[0] < r[1] and r[2] < r[3]]


def _region(x, wf, wt, out, region, geom, clip=None) -> None:
    """Output rows r0:r1, columns c0:c1 of ``out`` [nb, OH, OW, C] from ``x`` [nb, H, W, C]:
    one einsum over the input it reads, in place when that lies inside ``x`` (and there is no
    ``clip``), else from a zero-padded (clipped) copy in scratch."""
    (sh, sw), (dh, dw), ((pt, _), (pl, _)), (kh, kw) = geom
    r0, r1, c0, c1 = region
    nb, h, wd, c = x.shape
    i0, rin = r0 * sh - pt, (r1 - r0 - 1) * sh + (kh - 1) * dh + 1
    j0, win = c0 * sw - pl, (c1 - c0 - 1) * sw + (kw - 1) * dw + 1
    o = out[:, r0:r1, c0:c1]
    at = (out, r0 * out.strides[1] + c0 * out.strides[2])  # (out: depthwise_2d's, contiguous)
    rows, cols = r1 - r0, c1 - c0
    if sw > 1 and wt is not None:
        # by phases: the input's columns j0 + q, j0 + q + sw, ... as row q of a copy, so that
        # every tap reads a unit-stride run of (columns x channels), as below
        a = wt.shape[1]
        wc = cols + a - 1
        src = scratch("depthwise", nb * rin * sw * wc * c, x.dtype).reshape(
            nb, rin, sw, wc, c)
        for q in range(sw):
            _padded_copy(src[:, :, q], x, i0, j0 + q, sw)
        if clip is not None:  # (the copy is whole: one contiguous pass, zeros stay zeros)
            _clip(src, clip[0], clip[1], out=src)
        s = src.strides
        _tap_sums(src, lambda j: src[:, :, :, j:], (nb, rows), (s[0], s[1] * sh),
                  ((kh, s[1] * dh), (a, s[3]), (sw, s[2])), s[3], c, wt, o, at)
        return
    if clip is None and i0 >= 0 and j0 >= 0 and i0 + rin <= h and j0 + win <= wd:
        src = x[:, i0:i0 + rin, j0:j0 + win]
    else:  # (only the padding is zeroed: the interior is copied over)
        src = scratch("depthwise", nb * rin * win * c, x.dtype).reshape(nb, rin, win, c)
        _padded_copy(src, x, i0, j0, 1, clip)
    s = src.strides
    if wt is not None:
        _tap_sums(src, lambda j: src[:, :, j:], (nb, rows), (s[0], s[1] * sh),
                  ((kh, s[1] * dh), (kw, s[2] * dw)), s[2], c, wt, o, at)
        return
    v = strided(src, (nb, rows, cols, kh, kw, c), (s[0], s[1] * sh, s[2] * sw, s[1] * dh,
                                                   s[2] * dw, s[3]))
    np.einsum("nrwijc,ijc->nrwc", v, wf, out=o)


def _tap_sums(src, from_column, lead, lead_strides, taps, column: int, c: int, wt, o,
              at) -> None:
    """``o`` [nb, rows, cols, C] = the sum over the taps of ``src``'s views times ``wt``.

    A pixel's channels follow the previous pixel's in ``src`` (``column`` bytes apart, the
    channels' own stride the itemsize), so (columns x channels) is one unit-stride run, taken
    in chunks of ``k`` whole columns: ``wt`` [*taps, k * C] is the weight of each tap repeated
    along a chunk. ``lead``, ``lead_strides``: the images' and output rows' axes in ``src``;
    ``taps``: (size, stride) of each tap axis; ``from_column(j)``: ``src`` from the input
    column of output column ``j`` on (the last ``cols % k`` columns are one einsum apart).
    ``at``: (the C-contiguous array ``o`` is a view of, ``o``'s byte offset in it), from which
    the einsums' output views are made in 0.4 us instead of numpy's ``as_strided``'s 2.7."""
    cols = o.shape[2]
    k = wt.shape[-1] // c
    nk, rem = divmod(cols, k)
    t = "abc"[:len(taps)]
    shape, strides = tuple(n for n, _ in taps), tuple(st for _, st in taps)
    so = o.strides
    if nk:
        v = strided(src, (*lead, nk, *shape, k * c),
                    (*lead_strides, column * k, *strides, src.itemsize))
        o2 = _view(o, at, 0, (*lead, nk, k * c), (so[0], so[1], so[2] * k, so[3]))
        np.einsum(f"nrk{t}x,{t}x->nrkx", v, wt, out=o2)
    if rem:
        v = strided(from_column(nk * k), (*lead, *shape, rem * c),
                    (*lead_strides, *strides, src.itemsize))
        o2 = _view(o, at, nk * k * so[2], (*lead, rem * c), (so[0], so[1], so[3]))
        np.einsum(f"nr{t}x,{t}x->nrx", v, wt[..., :rem * c], out=o2)


def _view(o, at, offset: int, shape, strides) -> np.ndarray:
    """A writeable view of ``o``'s memory from ``offset`` bytes past its first element (``at``:
    the C-contiguous array ``o`` lies in and ``o``'s offset there)."""
    return np.ndarray(shape, o.dtype, at[0], at[1] + offset, strides)


def _padded_copy(dst, x, i0: int, j0: int, step: int, clip=None) -> None:
    """Fill ``dst`` [nb, R, K, C] with rows ``i0 ...`` and columns ``j0, j0 + step, ...`` of
    ``x`` [nb, H, W, C] (clipped to ``clip``, (low, high), if given: by unit column steps, where
    the ufunc runs along whole rows), zero where those fall outside ``x``."""
    h, wd = x.shape[1:3]
    rin, k = dst.shape[1:3]
    lo, hi = max(i0, 0), min(i0 + rin, h)
    k_lo = min(k, max(0, -(j0 // step)))  # the first column inside x, and past the last
    k_hi = max(k_lo, min(k, (wd - 1 - j0) // step + 1))
    if lo >= hi or k_lo >= k_hi:
        dst[...] = 0
        return
    dst[:, :lo - i0] = 0
    dst[:, hi - i0:] = 0
    inner = dst[:, lo - i0:hi - i0]
    inner[:, :, :k_lo] = 0
    inner[:, :, k_hi:] = 0
    first = j0 + k_lo * step
    src = x[:, lo:hi, first:first + (k_hi - k_lo - 1) * step + 1:step]
    if clip is None:
        inner[:, :, k_lo:k_hi] = src
    else:
        _clip(src, clip[0], clip[1], out=inner[:, :, k_lo:k_hi])
