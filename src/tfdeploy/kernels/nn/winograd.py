"""3x3 convolutions by Winograd's minimal filtering, F(2x2, 3x3).

A unit-stride 3x3 convolution computes each 2x2 block of output pixels from a 4x4 tile of
input: directly, 36 multiplications per channel pair; Winograd's F(2x2, 3x3) transforms the
tile (``V = B^T d B``) and the filter (``U = G g G^T``, once at load) so that the block is
``A^T (U * V) A``: 16 multiplications. Summed over the input channels, the 16 products are 16
matrix products ``V[t] @ U[t]`` (tiles x C by C x K), which BLAS runs at full speed, and the
transforms are additions and subtractions only, on whole arrays: 2.25x fewer multiplications,
minus the transforms' passes over memory. ResNet50's 3x3 layers take 30-35% less time than
im2col and one product on its 28 x 28 and 14 x 14 maps, 15% on 56 x 56 and 7 x 7.

Where it pays depends on the CPU and its BLAS kernels: ``applies`` takes the layers that pay
on every machine measured; in a band below (``borderline``: C K / (C + K) from 32) Winograd
is timed against im2col on the first input of each shape (``pays``). A stack of 96 -> 96 and
256 -> 64 layers, one thread, on an AMD EPYC: 0.91x at batch 8 (OpenBLAS's SkylakeX
kernels), 0.72x at batch 1 (its Haswell kernels, whose im2col product is slower there).

Accuracy: the transforms' coefficients are 0, +-1 and +-1/2, and the filter's transform is
computed in float64 once, so the result's error is that of the direct method's order (checked
against a float64 convolution in ``tests/test_cnn_kernels.py``).

The tiles are processed in chunks of whole tile rows (images together when they are small) so
the transformed arrays stay a few megabytes, in per-thread scratch buffers; chunks split over
threads (``runtime/parallel.py``), and the caller's epilogue runs on each chunk's output rows
as soon as they are written.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfdeploy.kernels.nn.scratch import output, scratch, strided
from tfdeploy.numerics.ufunc_speed import LOCK, fastest, register
from tfdeploy.runtime import parallel

_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
#: a chunk's transformed input (16 values per tile and channel) stays about this size, so the
#: transforms' passes run in cache (in a whole model, 4 MB chunks made ResNet's 56 x 56 layers
#: 20% slower: the other layers had evicted them from L3)...
_CHUNK_BYTES = 1 << 19
#: ...or this size when the chunks split over threads: each chunk is some thirty numpy calls,
#: whose Python side holds the GIL, and sixteen products, so threads running small chunks
#: side by side wait on each other (two threads on ResNet50's 56 x 56 layers at batch 8: 0.79
#: of one thread's time with 512 KB chunks, 0.59 with 2 MB; the model 0.948x at batch 8 and
#: 0.968x at batch 1, and one thread no faster with 2 MB: 1.004x, 1.012x)
_SPLIT_CHUNK_BYTES = 1 << 21
#: ...but holds at least this many tiles: the 16 products' rows (fewer cost BLAS efficiency)
_MIN_TILES = 128
#: Winograd pays from C K / (C + K) >= _MIN_CK (128 channels in and out) and _MIN_MACS
#: multiply-adds an image (see ``applies``)
_MIN_CK = 64
_MIN_MACS = 16 << 20
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
#: ``weights`` transforms this many channel pairs at a time (its float64 temporaries ~2 MB)
_WEIGHT_CHUNK = 1 << 13


def weights(w: np.ndarray) -> np.ndarray:
    """The filter ``w`` [3, 3, C, K] transformed, ``G w G^T``: [16, C, K], read-only. In
    float64, as two products with G, over the taps' rows then their columns, on chunks of
    ``_WEIGHT_CHUNK`` channel pairs: the three-operand einsum it replaces looped over every
    index (a 512 x 512 layer 39 -> 6 ms; ResNet50's first two calls spent 0.65 s in it, one
    transform per 3x3 layer in the traced plan's runners and again in the fused plan's). The
    same float32 values as the einsum's: G's coefficients are 0, 1 and +-1/2, so the float64
    sums are exact unless a filter's weights differ in magnitude by some 2**27 (a float64
    filter's transform may differ in its last bits: the sums' order is not the einsum's)."""
    c, k = w.shape[2:]
    src = w.reshape(3, 3, c * k)
    u = np.empty((4, 4, c * k), w.dtype)
    for a in range(0, c * k, _WEIGHT_CHUNK):
        b = min(c * k, a + _WEIGHT_CHUNK)
        rows = np.matmul(_G, src[:, :, a:b].astype(np.float64).reshape(3, -1))
        u[:, :, a:b] = np.matmul(_G, rows.reshape(4, 3, b - a))
    u = u.reshape(16, c, k)
    u.setflags(write=False)
    return u


def applies(x_shape, w_shape, dtype, strides, dilations, pads) -> bool:
    """Whether F(2x2, 3x3) serves this convolution and pays: NHWC [N, H, W, C] by a [3, 3, C, K]
    filter, unit strides and dilations, float32/float64, paddings of at most 2, and enough
    work per image in the products against the transforms' passes: C K / (C + K) >= 64, i.e.
    128 channels in and out, and 16 M multiply-adds an image. Measured against ``conv_nd``
    (im2col, or by kernel rows to at most 32 channels) on an Intel Xeon (Sapphire Rapids
    class), one thread, 14-56 pixels square, batch 1 and 8: Winograd's time over conv_nd's
    1.23-1.67 at 32 channels out, 1.09-1.19 at 64 -> 64, 1.02-1.06 at 96 -> 96, 0.99-1.00
    at 256 -> 64 (C K / (C + K) = 51); 0.87-0.94 at 128 -> 128, 0.82-0.89 at 80-96, 0.67-0.84
    at 256 -> 256 and 512 -> 512. (The threshold had been 24, set before the rows path: it
    sent DenseNet121's 128 -> 32 growth layers to Winograd at 1.3x their time.)"""
    return _fits(x_shape, w_shape, dtype, strides, dilations, pads, _MIN_CK)


def _fits(x_shape, w_shape, dtype, strides, dilations, pads, min_ck: int) -> bool:
    """``applies``'s checks with C K / (C + K) >= ``min_ck``."""
    if len(x_shape) != 4 or tuple(w_shape[:2]) != (3, 3) or x_shape[-1] != w_shape[2] or \
            np.dtype(dtype) not in _FLOATS or list(strides) != [1, 1] or \
            list(dilations) != [1, 1] or any(p < 0 or p > 2 for pair in pads for p in pair):
        return False
    c, k = w_shape[2], w_shape[3]
    oh = x_shape[1] + pads[0][0] + pads[0][1] - 2
    ow = x_shape[2] + pads[1][0] + pads[1][1] - 2
    return oh >= 2 and ow >= 2 and c * k >= min_ck * (c + k) and \
        9 * oh * ow * c * k >= _MIN_MACS


#: below ``_MIN_CK`` down to this, Winograd is measured against im2col once per shape
#: (``borderline``, ``pays``): where it pays there depends on the CPU and BLAS kernels. One
#: thread, an AMD EPYC (Zen 4), Winograd's time over im2col's with OpenBLAS's SkylakeX
#: kernels: 96 -> 96 at 56 x 56 0.87-0.88, 256 -> 64 at 28 x 28 0.79-0.83, 64 -> 64 at 56 x 56
#: 0.96-1.13; with its Haswell kernels 64 -> 64 0.80-0.81 (ResNet50's first stage); the Xeon:
#: 1.02-1.06, 0.99-1.00, 1.09-1.19. (DenseNet's 128 -> 32, C K / (C + K) = 26: 1.3 there)
_MEASURED_CK = 32
#: Winograd is taken in the band below this fraction of im2col's time
_MARGIN = 0.9
_PAYS: dict = register({})  # (input shape, filter's C and K, dtype, pads) -> faster


def borderline(x_shape, w_shape, dtype, strides, dilations, pads) -> bool:
    """Whether Winograd serves this convolution but ``applies`` leaves it out only for its
    channels: C K / (C + K) in [``_MEASURED_CK``, ``_MIN_CK``), with enough work an image.
    There the choice is measured (``pays``)."""
    return _fits(x_shape, w_shape, dtype, strides, dilations, pads, _MEASURED_CK) and \
        not _fits(x_shape, w_shape, dtype, strides, dilations, pads, _MIN_CK)


def pays(key, winograd: Callable[[], object], im2col: Callable[[], object]) -> bool:
    """Whether ``winograd()`` takes below ``_MARGIN`` times ``im2col()``'s time (the same
    convolution, on the first input of its shape), measured once per ``key`` for the process:
    each run twice, alternately, the best of each compared."""
    with LOCK:  # (one measurement at a time: another's work beside it would skew it)
        got = _PAYS.get(key)
        if got is None:
            with np.errstate(all="ignore"):
                got = _PAYS[key] = fastest([im2col, winograd], 2, _MARGIN) == 1
    return got


def conv3x3(x: np.ndarray, u: np.ndarray, pads, outs, epilogue=None) -> np.ndarray:
    """The convolution of ``x`` [N, H, W, C] (any layout: each chunk copies what it reads)
    whose transformed filter is ``u`` (``weights``) with ``pads`` ((top, bottom), (left,
    right)): [N, OH, OW, K]. ``epilogue(y, start, stop)`` runs on rows ``start:stop`` of
    ``y.reshape(-1, K)`` once they are final."""
    n, h, wd, c = x.shape
    k = u.shape[2]
    oh, ow = outs
    out = output((n, oh, ow, k), x.dtype)
    if out.size == 0:
        return out
    th, tw = -(-oh // 2), -(-ow // 2)
    per_row = 16 * tw * max(c, k) * x.itemsize  # transformed bytes of one tile row
    parts = parallel.blocks(n * th, 2 * ow * 9 * c * k)
    budget = _CHUNK_BYTES if parts == 1 else _SPLIT_CHUNK_BYTES
    rows = max(1, budget // per_row, -(-_MIN_TILES // tw))
    if parts > 1 and n < parts:
        if n * th * tw < parts * _MIN_TILES:
            # too few tiles to split (the products would be short and every thread would
            # read all of the filter): one chunk, its 16 products split over the threads
            _chunk(x, u, pads, out, (0, n, 0, th), epilogue, parts)
            return out
        rows = min(rows, -(-th // -(-parts // n)))  # the images' tile rows split
    if rows >= th:  # whole images per chunk, as many chunks as threads at least
        imgs = max(1, rows // th)
        if parts > 1:
            imgs = min(imgs, -(-n // parts))
        chunks = [(b, min(n, b + imgs), 0, th) for b in range(0, n, imgs)]
    else:
        chunks = [(b, b + 1, r, min(th, r + rows)) for b in range(n) for r in range(0, th, rows)]
    parts = min(len(chunks), parts)

    def run(first: int, last: int) -> None:
        for chunk in chunks[first:last]:
            _chunk(x, u, pads, out, chunk, epilogue)

    if parts > 1:
        parallel.run_blocks(run, len(chunks), parts)
    else:
        run(0, len(chunks))
    return out


def _chunk(x, u, pads, out, chunk, epilogue, parts: int = 1) -> None:
    """Output tile rows ``ty0:ty1`` of images ``b0:b1`` (see ``conv3x3``); ``parts``: threads
    to split the 16 products over."""
    b0, b1, ty0, ty1 = chunk
    n, h, wd, c = x.shape
    _, oh, ow, k = out.shape
    (pt, _), (pl, _) = pads
    nb, nty, tw = b1 - b0, ty1 - ty0, -(-ow // 2)
    ph, pw = 2 * nty + 2, 2 * tw + 2
    dt = x.dtype
    # the input this chunk reads, zero-padded: rows from 2 ty0 - pt, columns from -pl
    p = scratch("wino_in", nb * ph * pw * c, dt).reshape(nb, ph, pw, c)
    r0 = 2 * ty0 - pt
    lo, hi = max(r0, 0), min(r0 + ph, h)
    left, right = max(-pl, 0), min(pw - pl, wd)
    if lo > r0 or hi < r0 + ph or left > -pl or right < pw - pl:
        p[...] = 0
    if lo < hi and left < right:
        p[:, lo - r0:hi - r0, left + pl:right + pl] = x[b0:b1, lo:hi, left:right]
    s = p.strides
    t = nb * nty * tw
    # input transform V = B^T d B: over the tile's rows (i), then its columns (j)
    d = [strided(p[:, i:], (nb, nty, tw, 4, c), (s[0], 2 * s[1], 2 * s[2], s[2], s[3]))
         for i in range(4)]
    r = scratch("wino_rows", 4 * t * 4 * c, dt).reshape(4, nb, nty, tw, 4, c)
    np.subtract(d[0], d[2], out=r[0])
    np.add(d[1], d[2], out=r[1])
    np.subtract(d[2], d[1], out=r[2])
    np.subtract(d[1], d[3], out=r[3])
    v = scratch("wino_v", 16 * t * c, dt).reshape(4, 4, nb, nty, tw, c)
    np.subtract(r[..., 0, :], r[..., 2, :], out=v[:, 0])
    np.add(r[..., 1, :], r[..., 2, :], out=v[:, 1])
    np.subtract(r[..., 2, :], r[..., 1, :], out=v[:, 2])
    np.subtract(r[..., 1, :], r[..., 3, :], out=v[:, 3])
    # the 16 products, then the output transform A^T M A: over rows (a), then columns (b)
    m = scratch("wino_m", 16 * t * k, dt).reshape(16, t, k)
    vm = v.reshape(16, t, c)
    if parts > 1:
        parallel.run_blocks(lambda a, b: np.matmul(vm[a:b], u[a:b], out=m[a:b]), 16, parts)
    else:
        np.matmul(vm, u, out=m)
    m = m.reshape(4, 4, t, k)
    sr = scratch("wino_s", 2 * 4 * t * k, dt).reshape(2, 4, t, k)
    np.add(m[0], m[1], out=sr[0])
    sr[0] += m[2]
    np.subtract(m[1], m[2], out=sr[1])
    sr[1] -= m[3]
    sr = sr.reshape(2, 4, nb, nty, tw, k)
    rows = min(oh, 2 * ty1) - 2 * ty0
    # written in place when the chunk's output is whole, contiguous rows (a chunk is whole
    # images, or rows of one image), else into scratch and cropped
    y = out[b0:b1, 2 * ty0:2 * ty0 + rows]
    direct = ow == 2 * tw and rows == 2 * nty and y.flags.c_contiguous
    if not direct:
        y = scratch("wino_out", nb * 2 * nty * 2 * tw * k, dt).reshape(nb, 2 * nty, 2 * tw, k)
    y6 = y.reshape(nb, nty, 2, tw, 2, k)
    for o in range(2):
        np.add(sr[o, 0], sr[o, 1], out=y6[:, :, o, :, 0])
        y6[:, :, o, :, 0] += sr[o, 2]
        np.subtract(sr[o, 1], sr[o, 2], out=y6[:, :, o, :, 1])
        y6[:, :, o, :, 1] -= sr[o, 3]
    if not direct:
        out[b0:b1, 2 * ty0:2 * ty0 + rows] = y[:, :rows, :ow]
    if epilogue is not None:
        if ty0 == 0 and ty1 * 2 >= oh:  # whole images
            epilogue(out, b0 * oh * ow, b1 * oh * ow)
        else:
            start = (b0 * oh + 2 * ty0) * ow
            epilogue(out, start, start + rows * ow)
