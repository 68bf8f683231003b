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

import math
from collections.abc import Callable

import numpy as np

from tfdeploy.kernels.common import all_finite
from tfdeploy.kernels.nn.scratch import output, scratch
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
        w = w.reshape(kh, kw, c * m, 1)
    dt = np.result_type(x.dtype, w.dtype)
    if x.dtype != dt or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=dt)
    phased_ok = not needs_finite(w.shape, strides, dilations) or all_finite(x)
    return layout(x.shape, w.astype(dt, copy=False), strides, dilations, pads, oh, ow, tiles,
                  clip, phased_ok=phased_ok)(x, epilogue)


def needs_finite(w_shape, strides, dilations) -> bool:
    """Whether the layout of a filter of ``w_shape`` [KH, KW, C, 1] holds only for a finite
    input: a phased weight's unused slots multiply a neighbouring column by zero, and an inf
    or NaN there would reach outputs whose windows never read it, so such inputs go per pixel
    (``layout``'s ``phased_ok``)."""
    kw, c = w_shape[1], w_shape[2]
    return _phased(strides[1], dilations[1], kw, c) and kw % strides[1] != 0


def split(shape, w_shape, oh: int, ow: int) -> int:
    """The threads a convolution of an input of ``shape`` by a filter of ``w_shape`` splits
    over. A depthwise multiply-add costs ~0.16-0.3 ns, ten times a matrix product's: counted
    twice, a layer splits from ~2 M of them (~0.35 ms; measured: 4 M took 0.67 ms on one
    thread, 0.49 on two; 1.2 M 0.27 and 0.29)."""
    return parallel.blocks(shape[0] * oh, 2 * ow * shape[3] * w_shape[0] * w_shape[1])


def layout(shape, w: np.ndarray, strides, dilations, pads, oh: int, ow: int,
           tiles: dict | None = None, clip: tuple | None = None, parts: int | None = None,
           phased_ok: bool = True) -> Layout:
    """The :class:`Layout` of ``depthwise_2d`` for C-contiguous inputs of ``shape`` [N, H, W,
    C] and ``w`` [KH, KW, C, 1] of the inputs' dtype (the other arguments as
    ``depthwise_2d``'s). ``parts``: the thread split (None: ``split``'s now);
    ``phased_ok``: False for an input that is not all finite where ``needs_finite``."""
    n, h, wd, c = shape
    kh, kw = w.shape[:2]
    dt = w.dtype
    if kh * kw == 0 or 0 in (n, oh, ow, c):
        return Layout(dt, (n, oh, ow, c), None, 1)
    wf = w.reshape(kh, kw, c)
    wt = None
    sw = strides[1]
    if sw == 1 or phased_ok and _phased(sw, dilations[1], kw, c):
        k = chunk_columns(ow, c, dt) if sw == 1 else ow
        key = k if sw == 1 else (sw, k)
        wt = tiles.get(key) if tiles is not None else None
        if wt is None or wt.dtype != dt:
            wt = tiled_weight(wf, k, dt) if sw == 1 else phased_weight(wf, k, sw, dt)
            if tiles is not None and wt is not None:
                tiles[key] = wt
    geom = (strides, dilations, pads, (kh, kw))
    image_bytes = h * wd * c * dt.itemsize
    imgs = max(1, min(n, _BLOCK_BYTES // max(image_bytes, 1)))
    if parts is None:
        parts = split(shape, w.shape, oh, ow)
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
    return Layout(dt, (n, oh, ow, c), [
        ([_step(shape, (n, oh, ow, c), (b0, b1), (max(r0, ra), min(r1, rb), c0, c1), geom,
                wf, wt, clip)
          for r0, r1, c0, c1 in regions if max(r0, ra) < min(r1, rb)],
         (b0 * oh + ra) * ow, ((b1 - 1) * oh + rb) * ow)
        for b0, b1, ra, rb in tasks], min(parts, len(tasks)))


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


class Layout:
    """What ``depthwise_2d`` works out from the input's shape alone: the tiled weight, the
    regions and thread tasks, each padded copy's geometry and each einsum's operands as
    (shape, strides, byte offset) on the input, the copy or the output. Called as
    ``layout(x, epilogue)``, it makes the copies and runs the einsums on views made by
    ``np.ndarray`` (0.4 us each). The conv runner keeps one per input shape and thread split:
    a small map's layer was half Python (NASNetMobile's 7 x 7 x 176, 3x3: 37 -> 28 us with
    its bias, 13 of them the einsum). NASNetMobile 0.942x, MobileNetV3Small 0.953x,
    MobileNetV2 0.975x (batch 8 too), EfficientNetB0 0.980x.

    Keeping a small layer's padded copy per thread, its padding zeroed once, saved ~4 us a
    layer alone but nothing in the models (NASNetMobile 3% slower: each layer's own copy is
    out of cache when it comes round again, the shared scratch buffer is not)."""

    __slots__ = ("dtype", "out_shape", "tasks", "parts")

    def __init__(self, dtype, out_shape, tasks, parts: int):
        self.dtype, self.out_shape, self.tasks, self.parts = dtype, out_shape, tasks, parts

    def __call__(self, x: np.ndarray, epilogue: Epilogue | None = None) -> np.ndarray:
        """The convolution of ``x`` (C-contiguous, of the layout's input shape and dtype)."""
        out = output(self.out_shape, self.dtype)
        if self.tasks is None:  # (an empty result, or no taps: zeros)
            if out.size:
                out[...] = 0
                if epilogue is not None:
                    epilogue(out, 0, out.size // out.shape[-1])
            return out
        if self.parts > 1:
            parallel.run_blocks(lambda a, b: self._run(x, out, epilogue, a, b),
                                len(self.tasks), self.parts)
        else:
            self._run(x, out, epilogue, 0, len(self.tasks))
        return out

    def _run(self, x, out, epilogue, first: int, last: int) -> None:
        dt = self.dtype
        for steps, start, stop in self.tasks[first:last]:
            for copy, einsums in steps:
                src = x if copy is None else self._copy(x, copy)
                for subs, ishape, istrides, ioff, wgt, oshape, ostrides, ooff in einsums:
                    np.einsum(subs, np.ndarray(ishape, dt, src, ioff, istrides), wgt,
                              out=np.ndarray(oshape, dt, out, ooff, ostrides))
            if epilogue is not None:
                epilogue(out, start, stop)

    def _copy(self, x, copy) -> np.ndarray:
        """The padded (clipped) copy a step reads, in scratch. ``copy``: (its shape, its
        images (b0, b1), per phase (phase, first row, first column, column step), clip,
        whether by phases)."""
        shape, (b0, b1), phases, clip, phased = copy
        src = scratch("depthwise", math.prod(shape), self.dtype).reshape(shape)
        xb = x[b0:b1]
        for q, i0, j0, step in phases:
            _padded_copy(src[:, :, q] if phased else src, xb, i0, j0, step,
                         None if phased else clip)
        if phased and clip is not None:  # (the copy is whole: one contiguous pass, zeros stay)
            _clip(src, clip[0], clip[1], out=src)
        return src


def _step(shape, out_shape, images, region, geom, wf, wt, clip):
    """Output rows r0:r1, columns c0:c1 (``region``) of images b0:b1 (``images``) as (copy,
    einsums): ``Layout``'s einsums over the input they read, in place when that lies inside
    the input and there is no ``clip`` (copy None), else from a zero-padded (clipped) copy
    (``Layout._copy``)."""
    (sh, sw), (dh, dw), ((pt, _), (pl, _)), (kh, kw) = geom
    _, h, wd, c = shape
    (b0, b1), (r0, r1, c0, c1) = images, region
    nb, rows, cols = b1 - b0, r1 - r0, c1 - c0
    i0, rin = r0 * sh - pt, (rows - 1) * sh + (kh - 1) * dh + 1
    j0, win = c0 * sw - pl, (cols - 1) * sw + (kw - 1) * dw + 1
    so = _strides(out_shape, wf.itemsize)
    at = b0 * so[0] + r0 * so[1] + c0 * so[2]  # (the region's offset in the output)
    if sw > 1 and wt is not None:
        # by phases: the input's columns j0 + q, j0 + q + sw, ... as row q of a copy, so that
        # every tap reads a unit-stride run of (columns x channels), as below
        a = wt.shape[1]
        copy = ((nb, rin, sw, cols + a - 1, c), images,
                [(q, i0, j0 + q, sw) for q in range(sw)], clip, True)
        s = _strides(copy[0], wf.itemsize)
        return copy, _tap_sums((nb, rows), (s[0], s[1] * sh), 0,
                               ((kh, s[1] * dh), (a, s[3]), (sw, s[2])), s[3], cols, c, wt,
                               so, at)
    if clip is None and i0 >= 0 and j0 >= 0 and i0 + rin <= h and j0 + win <= wd:
        copy, s = None, _strides(shape, wf.itemsize)  # (read in place)
        base = b0 * s[0] + i0 * s[1] + j0 * s[2]
    else:  # (only the padding is zeroed: the interior is copied over)
        copy = ((nb, rin, win, c), images, [(0, i0, j0, 1)], clip, False)
        s, base = _strides(copy[0], wf.itemsize), 0
    if wt is not None:
        return copy, _tap_sums((nb, rows), (s[0], s[1] * sh), base,
                               ((kh, s[1] * dh), (kw, s[2] * dw)), s[2], cols, c, wt, so, at)
    return copy, [("nrwijc,ijc->nrwc", (nb, rows, cols, kh, kw, c),
                   (s[0], s[1] * sh, s[2] * sw, s[1] * dh, s[2] * dw, s[3]), base, wf,
                   (nb, rows, cols, c), so, at)]


def _strides(shape, itemsize: int) -> tuple:
    """The byte strides of a C-contiguous array of ``shape``."""
    out = [itemsize]
    for d in reversed(shape[1:]):
        out.append(out[-1] * d)
    return tuple(reversed(out))


def _tap_sums(lead, lead_strides, base: int, taps, column: int, cols: int, c: int, wt, so,
              at: int) -> list:
    """The einsums (as ``Layout`` runs them) of ``cols`` output columns at byte ``at`` of the
    output (strides ``so``): [nb, rows, cols, C] = the sum over the taps of the source's
    views times ``wt``.

    A pixel's channels follow the previous pixel's in the source (``column`` bytes apart, the
    channels' own stride the itemsize), so (columns x channels) is one unit-stride run, taken
    in chunks of ``k`` whole columns: ``wt`` [*taps, k * C] is the weight of each tap repeated
    along a chunk. ``lead``, ``lead_strides``: the images' and output rows' axes in the
    source, from byte ``base`` on; ``taps``: (size, stride) of each tap axis. The last
    ``cols % k`` columns are one einsum apart."""
    k = wt.shape[-1] // c
    nk, rem = divmod(cols, k)
    t = "abc"[:len(taps)]
    shape, strides = tuple(n for n, _ in taps), tuple(st for _, st in taps)
    one = wt.itemsize
    sums = []
    if nk:
        sums.append((f"nrk{t}x,{t}x->nrkx", (*lead, nk, *shape, k * c),
                     (*lead_strides, column * k, *strides, one), base, wt,
                     (*lead, nk, k * c), (so[0], so[1], so[2] * k, so[3]), at))
    if rem:
        sums.append((f"nr{t}x,{t}x->nrx", (*lead, *shape, rem * c),
                     (*lead_strides, *strides, one), base + nk * k * column,
                     wt[..., :rem * c], (*lead, rem * c), (so[0], so[1], so[3]),
                     at + nk * k * so[2]))
    return sums


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
