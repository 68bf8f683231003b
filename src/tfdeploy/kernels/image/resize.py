"""Image resizing kernels: ResizeBilinear/NearestNeighbor/Bicubic/Area, ScaleAndTranslate,
CropAndResize.

Each resize is separable: the source coordinates and weights of one axis are computed once
(as TF's kernels do, in float32), then applied with gathers or a small weight matrix. A
weight matrix multiplies every input pixel, so an inf or NaN would reach outputs that never
read it (inf * 0 = NaN): an input holding one goes tap by tap over each output's span, as
TF's kernels do (``_Spans``).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from tfdeploy.kernels.common import all_finite, op, round_half_away
from tfdeploy.kernels.nn.scratch import output, scratch
from tfdeploy.runtime import parallel
from tfdeploy.runtime.limits import check_array

_F32 = np.float32
#: ResizeBilinear's passes run over chunks of about this many output bytes: their
#: temporaries stay in the core's L2 between passes
_CHUNK_BYTES = 1 << 19
#: by phases (``_phases``), over chunks of up to this many output bytes, or of the output
#: shared among the threads that split it: fewer numpy calls matter more there than L2 (one
#: thread, 32 x 32 x 64 to 128 x 128: 0.83x the gathers' time in 512 KB chunks, 0.58x in 4 MB)
_PHASES_CHUNK_BYTES = 1 << 22


def _check_resize(images: np.ndarray, size: np.ndarray, align_corners: bool = False,
                  half_pixel_centers: bool = False) -> tuple[int, int]:
    if align_corners and half_pixel_centers:
        raise ValueError("if half_pixel_centers is True, align_corners must be False")
    if images.ndim != 4:
        raise ValueError(f"images must be 4-D [batch, height, width, channels], "
                         f"got shape {images.shape}")
    size = np.asarray(size).reshape(-1)
    if size.shape != (2,):
        raise ValueError(f"size must be a vector of 2 elements, got shape {np.shape(size)}")
    oh, ow = int(size[0]), int(size[1])
    if oh <= 0 or ow <= 0:
        raise ValueError(f"output dimensions must be positive, got {oh}x{ow}")
    if images.shape[1] <= 0 or images.shape[2] <= 0:
        raise ValueError(f"input image must be of non-zero size, got shape {images.shape}")
    check_array((images.shape[0], oh, ow, images.shape[3]), np.float32, "the resized images")
    return oh, ow


def _empty(images: np.ndarray, oh: int, ow: int, dtype) -> np.ndarray | None:
    """The empty result of a resize of no images or no channels, or None: made before the
    per-axis tables, whose size a hostile ``size`` sets whatever the result's (2**31 rows of
    them were 8-16 GB for an empty result)."""
    n, _, _, c = images.shape
    return None if n and c else np.empty((n, oh, ow, c), dtype)


def _resize_scale(in_size: int, out_size: int, align_corners: bool) -> np.float32:
    if align_corners and out_size > 1:
        return _F32(in_size - 1) / _F32(out_size - 1)
    return _F32(in_size) / _F32(out_size)


def _source(out_size: int, scale: np.float32, half_pixel: bool) -> np.ndarray:
    """TF's HalfPixelScaler / LegacyScaler: float32 source coordinate of each output pixel."""
    i = np.arange(out_size, dtype=_F32)
    if half_pixel:
        return (i + _F32(0.5)) * scale - _F32(0.5)
    return i * scale


def _as_float32(images: np.ndarray) -> np.ndarray:
    return images if images.dtype == _F32 else images.astype(_F32)


class _Spans:
    """One axis of a resampling as TF's kernels run it: output ``o`` sums, in order, the
    input pixels ``starts[o] + k`` weighted by ``weights[o, k]`` for ``k < counts[o]``."""

    __slots__ = ("starts", "weights", "counts", "in_size")

    def __init__(self, starts, weights, counts, in_size: int):
        self.starts, self.weights, self.counts = starts, weights.astype(_F32), counts
        self.in_size = in_size

    def matrix(self) -> np.ndarray:
        """The [out, in] weight matrix (for finite inputs: one BLAS product per axis)."""
        out, span = self.weights.shape
        m = np.zeros((out, self.in_size), _F32)
        k = np.arange(span)[None, :]
        used = k < self.counts[:, None]
        rows = np.broadcast_to(np.arange(out)[:, None], used.shape)
        cols = np.clip(self.starts[:, None] + k, 0, self.in_size - 1)
        np.add.at(m, (rows[used], cols[used]), self.weights[used])
        return m

    def gather(self, x: np.ndarray, axis: int) -> np.ndarray:
        """The resampling of ``x`` along ``axis``, tap by tap: a pixel reaches only the outputs
        whose spans hold it."""
        out = np.zeros(x.shape[:axis] + (self.starts.size,) + x.shape[axis + 1:], _F32)
        shape = [1] * x.ndim
        shape[axis] = -1
        with np.errstate(invalid="ignore", over="ignore"):
            for k in range(self.weights.shape[1]):
                idx = np.clip(self.starts + k, 0, self.in_size - 1)
                term = np.take(x, idx, axis=axis) * self.weights[:, k].reshape(shape)
                np.add(out, term, out=out, where=(k < self.counts).reshape(shape))
        return out


def _separable(x: np.ndarray, sy: _Spans, sx: _Spans, rows_first: bool) -> np.ndarray:
    """Resample NHWC ``x`` along its rows (``sy``) and columns (``sx``): two BLAS products
    with the weight matrices, or for an input holding inf or NaN two passes tap by tap."""
    if not all_finite(x):
        if rows_first:
            return sx.gather(sy.gather(x, 1), 2)
        return sy.gather(sx.gather(x, 2), 1)
    my, mx = sy.matrix(), sx.matrix()
    b, h, w, c = x.shape
    oh = my.shape[0]

    def rows(t):  # [b, h, W, c] -> [b, oh, W, c]
        return np.matmul(my, t.reshape(b, h, t.shape[2] * c)).reshape(b, oh, t.shape[2], c)

    def cols(t):  # [b, H, w, c] -> [b, H, ow, c]
        return np.matmul(mx, t)

    return cols(rows(x)) if rows_first else rows(cols(x))


# -- bilinear -------------------------------------------------------------------------------

def _linear_axis(in_size: int, out_size: int, align_corners: bool, half_pixel: bool):
    src = _source(out_size, _resize_scale(in_size, out_size, align_corners), half_pixel)
    fl = np.floor(src)
    lo = np.maximum(fl.astype(np.int64), 0)
    hi = np.minimum(np.ceil(src).astype(np.int64), in_size - 1)
    return lo, hi, (src - fl).astype(_F32)


#: the output rows of a bilinear resize go by phases (``_phases``) when their period (output
#: rows per whole number of input rows: 4 for an upsampling by 4) is from 2 to this
_MAX_PERIOD = 16


def _period(in_size: int, out_size: int) -> int:
    """Outputs per whole number of inputs: 4 for an upsampling by 4, 1 for a downsampling by
    2, 3 for 2 -> 3."""
    return out_size // math.gcd(in_size, out_size)


def _phase_period(h: int, oh: int) -> int:
    """The period of a resize's rows from ``h`` to ``oh`` where they go by phases (an
    upsampling of period at most ``_MAX_PERIOD``), else 0."""
    period = _period(h, oh)
    return period if oh > h and period <= _MAX_PERIOD else 0


def _phases(lo: np.ndarray, hi: np.ndarray, lerp: np.ndarray, period: int):
    """The output rows ``0 .. len(lo) - 1`` of a bilinear resampling, reading rows ``lo`` and
    ``hi`` with weight ``lerp``, as a few groups of strided views, or None where they do not
    split so (``len(lo)`` is a multiple of ``period``).

    Output rows ``k * period + j`` of one phase ``j`` that read rows ``a = s0 + step * k``
    and ``a + 1`` form a run, as do those that read one row twice (``same``: the clamped
    edges, exact hits); runs alike but for their phase form a group ``(k0, j0, phases,
    count, s0, step, same, lerps)``: output rows ``(k0 + k) * period + j0 + j`` for ``k <
    count``, ``j < phases``, read row ``s0 + step * k`` (and the next) with weight
    ``lerps[k, j, 0]``."""
    n = lo.size
    same = lo == hi
    if np.any(~same & (hi != lo + 1)):
        return None
    runs = []
    for j in range(min(period, n)):
        idx = np.arange(j, n, period)
        aj, sj = lo[idx], same[idx]
        k = 0
        while k < idx.size:
            e = k + 1
            step = int(aj[e] - aj[k]) if e < idx.size else 1
            if step >= 1:
                while e < idx.size and sj[e] == sj[k] and aj[e] - aj[e - 1] == step:
                    e += 1
            else:
                step = 1
            runs.append((int(idx[k]) // period, j, e - k, int(aj[k]), step, bool(sj[k]),
                         lerp[idx[k:e]].astype(_F32)))
            k = e
            if len(runs) > 2 * _MAX_PERIOD:
                return None
    groups = []
    for k0, j, count, s0, step, same_, lw in sorted(runs, key=lambda r: (r[0], r[2:6], r[1])):
        g = groups[-1] if groups else None
        if g and (g[0], *g[3:7]) == (k0, count, s0, step, same_) and g[1] + g[2] == j:
            g[2] += 1
            g[7].append(lw)
        else:
            groups.append([k0, j, 1, count, s0, step, same_, [lw]])
    return tuple((k0, j0, g, count, s0, step, same_, np.stack(lw, axis=1)[:, :, None])
                 for k0, j0, g, count, s0, step, same_, lw in groups)


def _by_phases(rows: np.ndarray, groups, period: int, out: np.ndarray) -> None:
    """``out`` [images, n, k] from ``rows`` [images, N, k] by ``_phases``' groups, in TF's
    arithmetic and order: ``top + (bottom - top) * lerp``. The differences of neighbouring
    rows are taken once for all phases (each row serves ``period`` outputs as top, as many
    as bottom): then a product and a sum over strided views make each group's rows."""
    v = out.view()
    v.shape = (out.shape[0], out.shape[1] // period, period, out.shape[2])  # (never a copy)
    diff = None
    if rows.shape[1] > 1 and not all(g[6] for g in groups):
        shape = (rows.shape[0], rows.shape[1] - 1, rows.shape[2])
        diff = scratch("bilinear_diff", math.prod(shape), _F32).reshape(shape)
        np.subtract(rows[:, 1:], rows[:, :-1], out=diff)
    for k0, j0, g, count, s0, step, same, lerps in groups:
        o = v[:, k0:k0 + count, j0:j0 + g]
        sl = slice(s0, s0 + step * (count - 1) + 1, step)
        top = rows[:, sl, None]
        if same:
            np.subtract(top, top, out=o)
            np.multiply(o, lerps, out=o)
        else:
            np.multiply(diff[:, sl, None], lerps, out=o)
        np.add(o, top, out=o)


@functools.lru_cache(maxsize=64)
def _bilinear_plan(h: int, w: int, oh: int, ow: int, c: int, align_corners: bool,
                   half_pixel: bool, chunk_bytes: int):
    """The column taps and, per chunk of output rows, the input rows it reads and how its
    rows are made of them: ``(xlo, xhi, xlerp, images a chunk, chunks)``, each column's
    weight repeated over its channels (a product with a whole row of them is about 1.5x
    faster than numpy's broadcast of an [ow, 1] column). A chunk is ``chunk_bytes`` of
    output rows (a whole number of the rows' period), or of whole images where one image is
    smaller: ``(r0, r1, used, phases, top, bottom, ylerp)``, ``used`` the input rows it
    reads (a slice where they are a run), its rows by ``phases`` (``_phases``) among them or,
    where that is None, gathered: ``top`` and ``bottom`` among them with weights
    ``ylerp``."""
    ylo, yhi, ylerp = _linear_axis(h, oh, align_corners, half_pixel)
    xlo, xhi, xlerp = _linear_axis(w, ow, align_corners, half_pixel)
    period = _phase_period(h, oh)
    rows = max(1, chunk_bytes // (ow * c * 4))  # output rows a chunk
    if period:
        rows = max(period, rows // period * period)
    chunks = []
    for r0 in range(0, oh, rows):
        r1 = min(oh, r0 + rows)
        used, inverse = np.unique(np.concatenate([ylo[r0:r1], yhi[r0:r1]]),
                                  return_inverse=True)
        if used[-1] - used[0] + 1 == used.size:  # a run of rows: a view, not a copy
            used = slice(int(used[0]), int(used[-1]) + 1)
        n = r1 - r0
        top, bottom, lerp = inverse[:n], inverse[n:], ylerp[r0:r1]
        phases = _phases(top, bottom, lerp, period) if period else None
        chunks.append((r0, r1, used, phases, top, bottom, lerp[:, None, None]))
    images = max(1, chunk_bytes // (oh * ow * c * 4)) if len(chunks) == 1 else 1
    return xlo, xhi, np.repeat(xlerp, c), images, tuple(chunks)


@op("ResizeBilinear")
def ResizeBilinear(images, size, *, align_corners=False, half_pixel_centers=False):
    """ResizeBilinear: bilinear resize of NHWC images; float32 output for every input dtype.

    TF's arithmetic, in float32 and in its order (top = tl + (tr - tl) * x_lerp, likewise
    bottom, then top + (bottom - top) * y_lerp): the same values, bit for bit. Each input row
    is interpolated along its columns once for all the output rows that read it (an
    upsampling by 2 reads each twice, as top and as bottom); an upsampling whose rows repeat
    with a short period (``_period``: by 2, by 4, 2 -> 3) then makes its output rows by
    phases (``_phases``: the neighbours' differences once, then a product and a sum over
    strided views, two passes over the output), others by gathering each output row's top
    and bottom rows (five passes). The passes run over chunks of output rows (or of whole
    images) of about ``_CHUNK_BYTES`` (by phases ``_PHASES_CHUNK_BYTES``, or the output shared
    among the threads), and the chunks split over threads (the same values however they
    split). One thread, 32 x 32 x 64 to 128 x 128: gathers 1.81 ms, rows once
    0.46, by phases 0.30 (TF 0.26); at batch 8 6.2 -> 3.4 ms (TF 1.6-2.0)."""
    oh, ow = _check_resize(images, size, align_corners, half_pixel_centers)
    n, h, w, c = images.shape
    x = _as_float32(images)
    out = output((n, oh, ow, c), _F32)
    if out.size == 0:
        return out
    period = _phase_period(h, oh)
    chunk = _CHUNK_BYTES
    if period:  # by phases: larger chunks, at least one a thread
        chunk = out.nbytes // parallel.blocks(n * oh, 10 * ow * c)
        chunk = min(_PHASES_CHUNK_BYTES, max(_CHUNK_BYTES, chunk))
    xlo, xhi, xlerp, per, chunks = _bilinear_plan(h, w, oh, ow, c, bool(align_corners),
                                                   bool(half_pixel_centers), chunk)

    def run(start: int, stop: int) -> None:
        for t in range(start, stop):
            g, k = divmod(t, len(chunks))
            r0, r1, used, phases, top_rows, bottom_rows, ylerp = chunks[k]
            b0, b1 = g * per, min(n, g * per + per)
            src = x[b0:b1, used] if isinstance(used, slice) else np.take(x[b0:b1], used, axis=1)
            if phases is None:
                rows = np.take(src, xhi, axis=2)  # [images, rows used, ow, c]
                left = np.take(src, xlo, axis=2)
            else:  # (larger chunks: temporaries of a few MB, kept rather than mapped anew)
                shape = src.shape[:2] + (ow, c)
                size = math.prod(shape)
                rows = scratch("bilinear_rows", size, _F32).reshape(shape)
                left = scratch("bilinear_left", size, _F32).reshape(shape)
                np.take(src, xhi, axis=2, out=rows, mode="clip")
                np.take(src, xlo, axis=2, out=left, mode="clip")
            flat = rows.reshape(rows.shape[:2] + (-1,))
            np.subtract(rows, left, out=rows)
            np.multiply(flat, xlerp, out=flat)
            np.add(rows, left, out=rows)
            top = out[b0:b1, r0:r1]
            if phases is not None:
                _by_phases(flat, phases, period, top.reshape(top.shape[:2] + (-1,)))
                continue
            # (mode "clip": the rows are valid, and take's default buffers an ``out``)
            np.take(rows, top_rows, axis=1, out=top, mode="clip")
            bottom = np.take(rows, bottom_rows, axis=1)
            np.subtract(bottom, top, out=bottom)
            np.multiply(bottom, ylerp, out=bottom)
            np.add(top, bottom, out=top)

    tasks = -(-n // per) * len(chunks)
    parts = parallel.blocks(tasks, 10 * out.size // tasks)
    if parts > 1:
        parallel.run_blocks(run, tasks, parts)
    else:
        run(0, tasks)
    return out


# -- nearest --------------------------------------------------------------------------------

def nearest_axis(in_size: int, out_size: int, align_corners: bool, half_pixel: bool):
    scale = _resize_scale(in_size, out_size, align_corners)
    i = np.arange(out_size, dtype=_F32)
    src = (i + _F32(0.5)) * scale if half_pixel else i * scale
    idx = round_half_away(src) if align_corners else np.floor(src)
    idx = np.minimum(idx.astype(np.int64), in_size - 1)
    return np.maximum(idx, 0) if half_pixel else idx


@op("ResizeNearestNeighbor")
def ResizeNearestNeighbor(images, size, *, align_corners=False, half_pixel_centers=False):
    """ResizeNearestNeighbor: nearest-neighbour resize of NHWC images; keeps the dtype.

    Where each input pixel is repeated a whole number of times along both axes (an
    upsampling by whole factors that picks ``i // factor``), one broadcast copy into the
    output (0.5-0.8x the two gathers' time: 32 x 32 x 64 by 2, 0.049 -> 0.025 ms)."""
    oh, ow = _check_resize(images, size, align_corners, half_pixel_centers)
    empty = _empty(images, oh, ow, images.dtype)
    if empty is not None:
        return empty
    n, h, w, c = images.shape
    yi = nearest_axis(h, oh, align_corners, half_pixel_centers)
    xi = nearest_axis(w, ow, align_corners, half_pixel_centers)
    sy, sx = oh // h, ow // w
    if (oh == h * sy and ow == w * sx and np.array_equal(yi, np.arange(oh) // sy)
            and np.array_equal(xi, np.arange(ow) // sx)):
        out = output((n, oh, ow, c), images.dtype)
        out.reshape(n, h, sy, w, sx, c)[...] = images[:, :, None, :, None, :]
        return out
    return images[:, yi][:, :, xi]


# -- bicubic --------------------------------------------------------------------------------

_TABLE_SIZE = 1024
_cubic_tables: dict[bool, np.ndarray] = {}


def _cubic_table(keys: bool) -> np.ndarray:
    """TF's 1025x2 table of cubic coefficients (a=-0.5 Keys, a=-0.75 legacy), as float32."""
    t = _cubic_tables.get(keys)
    if t is None:
        a = -0.5 if keys else -0.75
        x = (np.arange(_TABLE_SIZE + 1) * 1.0 / _TABLE_SIZE).astype(_F32).astype(np.float64)
        t0 = (((a + 2) * x - (a + 3)) * x * x + 1).astype(_F32)
        x1 = (x + 1.0).astype(_F32).astype(np.float64)
        t1 = (((a * x1 - 5 * a) * x1 + 8 * a) * x1 - 4 * a).astype(_F32)
        t = _cubic_tables[keys] = np.stack([t0, t1], axis=1)
    return t


def _cubic_axis(in_size: int, out_size: int, align_corners: bool, half_pixel: bool):
    """Four (index, weight) pairs per output pixel: index arrays [4, out], weights [4, out]."""
    src = _source(out_size, _resize_scale(in_size, out_size, align_corners), half_pixel)
    loc = np.floor(src).astype(np.int64)
    delta = (src - loc.astype(_F32)).astype(_F32)
    offset = np.rint(delta * _F32(_TABLE_SIZE)).astype(np.int64)
    table = _cubic_table(half_pixel)
    w = np.stack([table[offset, 1], table[offset, 0],
                  table[_TABLE_SIZE - offset, 0], table[_TABLE_SIZE - offset, 1]])
    want = loc[None, :] + np.arange(-1, 3)[:, None]
    idx = np.clip(want, 0, in_size - 1)
    if half_pixel:  # Keys: taps outside the image get weight 0, the rest renormalised
        w = np.where(idx == want, w, _F32(0))
        total = ((w[0] + w[1]) + w[2]) + w[3]
        ok = np.abs(total) >= _F32(1000) * np.finfo(_F32).tiny
        w = np.where(ok, w * (_F32(1) / np.where(ok, total, _F32(1))), w)
    return idx, w.astype(_F32)


@op("ResizeBicubic")
def ResizeBicubic(images, size, *, align_corners=False, half_pixel_centers=False):
    """ResizeBicubic: bicubic resize of NHWC images; float32 output for every input dtype."""
    oh, ow = _check_resize(images, size, align_corners, half_pixel_centers)
    empty = _empty(images, oh, ow, _F32)
    if empty is not None:
        return empty
    _, h, w, _ = images.shape
    yi, yw = _cubic_axis(h, oh, align_corners, half_pixel_centers)
    xi, xw = _cubic_axis(w, ow, align_corners, half_pixel_centers)
    x = _as_float32(images)
    rows = x[:, yi[0]] * yw[0][:, None, None]
    for k in range(1, 4):
        rows = rows + x[:, yi[k]] * yw[k][:, None, None]
    out = rows[:, :, xi[0]] * xw[0][:, None]
    for k in range(1, 4):
        out = out + rows[:, :, xi[k]] * xw[k][:, None]
    return out


# -- area -----------------------------------------------------------------------------------

def _area_spans(in_size: int, out_size: int, scale: np.float32) -> _Spans:
    """The overlap of each input cell with each output cell's footprint (cells past the
    input's edge read its last pixel, as TF's kernel bounds them)."""
    o = np.arange(out_size)
    start = o.astype(_F32) * scale
    end = (o + 1).astype(_F32) * scale
    first = np.floor(start).astype(np.int64)
    last = np.ceil(end).astype(np.int64)
    span = int((last - first).max())
    cells = first[:, None] + np.arange(span)[None, :]
    cf = cells.astype(_F32)
    s, e = start[:, None], end[:, None]
    w = np.where(cf < s, np.where(cf + 1 > e, scale, cf + 1 - s),
                 np.where(cf + 1 > e, e - cf, _F32(1))).astype(_F32)
    return _Spans(first, w, last - first, in_size)


@op("ResizeArea")
def ResizeArea(images, size, *, align_corners=False):
    """ResizeArea: area-averaging resize of NHWC images; float32 output for every input dtype."""
    oh, ow = _check_resize(images, size, align_corners)
    empty = _empty(images, oh, ow, _F32)
    if empty is not None:
        return empty
    _, h, w, _ = images.shape
    hs = _resize_scale(h, oh, align_corners)
    ws = _resize_scale(w, ow, align_corners)
    sy = _area_spans(h, oh, hs)
    sx = _area_spans(w, ow, ws)
    return _separable(_as_float32(images), sy, sx, rows_first=False) * (_F32(1) / (hs * ws))


# -- ScaleAndTranslate ----------------------------------------------------------------------

_PI = _F32(3.14159265359)


def _lanczos(radius: float):
    r = _F32(radius)

    def k(x):
        x = np.abs(x)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = r * np.sin(_PI * x) * np.sin(_PI * x / r) / (_PI * _PI * x * x)
        return np.where(x > r, _F32(0), np.where(x <= _F32(1e-3), _F32(1), v))
    return k, radius


def _gaussian(x):
    x = np.abs(x)
    sigma = _F32(1.5) / _F32(3)
    v = np.exp(-(x * x).astype(np.float64) / (2.0 * float(sigma) * float(sigma)))
    return np.where(x >= _F32(1.5), _F32(0), v.astype(_F32))


def _box(x):
    x = np.abs(x)
    return np.where(x < 0.5, _F32(1), np.where(x == 0.5, _F32(0.5), _F32(0)))


def _triangle(x):
    x = np.abs(x)
    return np.where(x < 1, _F32(1) - x, _F32(0))


def _keys_cubic(x):
    x = np.abs(x)
    far = ((_F32(-0.5) * x + _F32(2.5)) * x - _F32(4)) * x + _F32(2)
    near = ((_F32(1.5) * x - _F32(2.5)) * x) * x + _F32(1)
    return np.where(x >= 2, _F32(0), np.where(x >= 1, far, near))


def _mitchell_cubic(x):
    x = np.abs(x)
    far = (((_F32(-7.0 / 18.0) * x + _F32(2)) * x - _F32(10.0 / 3.0)) * x + _F32(16.0 / 9.0))
    near = (((_F32(7.0 / 6.0) * x - _F32(2)) * x) * x + _F32(8.0 / 9.0))
    return np.where(x >= 2, _F32(0), np.where(x >= 1, far, near))


_SAMPLING_KERNELS = {
    "lanczos1": _lanczos(1.0), "lanczos3": _lanczos(3.0), "lanczos5": _lanczos(5.0),
    "gaussian": (_gaussian, 1.5), "box": (_box, 1.0), "triangle": (_triangle, 1.0),
    "keyscubic": (_keys_cubic, 2.0), "mitchellcubic": (_mitchell_cubic, 2.0),
}


def _sampling_spans(kernel_type: str, out_size: int, in_size: int, scale, translate,
                    antialias: bool) -> _Spans:
    """TF's ComputeSpans: each output's span of ``min(2 ceil(radius * kernel scale) + 1,
    in_size)`` input pixels from its start (the kernel scaled when downsampling), weights
    normalised to sum to 1; an output sampling outside the input gets zero weights from 0."""
    kernel, radius = _SAMPLING_KERNELS[kernel_type]
    inv_scale = _F32(1.0 / float(scale))
    inv_translate = -inv_scale * _F32(translate)
    kscale = max(inv_scale, _F32(1)) if antialias else _F32(1)
    span = min(2 * int(np.ceil(_F32(radius) * kscale)) + 1, in_size)
    sample = (np.arange(out_size, dtype=_F32) + _F32(0.5)) * inv_scale + inv_translate
    reach = _F32(radius) * kscale
    start = np.clip(np.ceil(sample - reach - _F32(0.5)).astype(np.int64), 0, in_size - 1)
    end = np.clip(np.floor(sample + reach - _F32(0.5)).astype(np.int64), 0, in_size - 1) + 1
    src = start[:, None] + np.arange(span)[None, :]
    inside = src < end[:, None]
    pos = src.astype(_F32) + _F32(0.5) - sample[:, None]
    w = np.where(inside, kernel(np.abs(pos * (_F32(1) / kscale))), _F32(0)).astype(_F32)
    total = np.zeros(out_size, _F32)
    for k in range(span):  # sequential float32 sum, as TF
        total = total + w[:, k]
    outside = ~((sample >= 0) & (sample <= in_size))
    ok = (np.abs(total) >= _F32(1000) * np.finfo(_F32).tiny) & ~outside
    w = np.where(ok[:, None], w * (_F32(1) / np.where(ok, total, _F32(1)))[:, None], _F32(0))
    start = np.where(outside, 0, start)
    return _Spans(start, w, np.minimum(start + span, in_size) - start, in_size)


@op("ScaleAndTranslate")
def ScaleAndTranslate(images, size, scale, translation, *, kernel_type="lanczos3",
                      antialias=True):
    """ScaleAndTranslate: resample NHWC images with a sampling kernel (rows, then columns);
    float32 output."""
    if kernel_type not in _SAMPLING_KERNELS:
        raise ValueError(f"unrecognized kernel type {kernel_type!r}; expected one of "
                         f"{sorted(_SAMPLING_KERNELS)}")
    oh, ow = _check_resize(images, size)
    if images.shape[3] <= 0:
        raise ValueError("image must have at least one channel")
    scale = np.asarray(scale, _F32).reshape(-1)
    translation = np.asarray(translation, _F32).reshape(-1)
    if scale.shape != (2,) or translation.shape != (2,):
        raise ValueError("scale and translation must have two elements each")
    if not (scale[0] > 0 and scale[1] > 0):
        raise ValueError(f"scale must be greater than zero, got {scale.tolist()}")
    empty = _empty(images, oh, ow, _F32)
    if empty is not None:
        return empty
    _, h, w, _ = images.shape
    sy = _sampling_spans(kernel_type, oh, h, scale[0], translation[0], antialias)
    sx = _sampling_spans(kernel_type, ow, w, scale[1], translation[1], antialias)
    return _separable(_as_float32(images), sy, sx, rows_first=True)


# -- CropAndResize --------------------------------------------------------------------------

def _crop_coords(lo, hi, crop: int, size: int) -> np.ndarray:
    """[boxes, crop] float32 source coordinates along one axis, as TF computes them."""
    if crop > 1:
        step = (hi - lo) * _F32(size - 1) / _F32(crop - 1)
        return lo[:, None] * _F32(size - 1) + np.arange(crop, dtype=_F32)[None, :] * step[:, None]
    mid = (0.5 * (lo.astype(np.float64) + hi) * (size - 1)).astype(_F32)
    return mid[:, None]


@op("CropAndResize")
def CropAndResize(image, boxes, box_ind, crop_size, *, method="bilinear",
                  extrapolation_value=0.0):
    """CropAndResize: crops of NHWC images at normalised boxes, resized (bilinear or nearest)
    to crop_size; float32 output."""
    if method not in ("bilinear", "nearest"):
        raise ValueError(f"method must be 'bilinear' or 'nearest', got {method!r}")
    if image.ndim != 4:
        raise ValueError(f"input image must be 4-D, got shape {image.shape}")
    batch, h, w, depth = image.shape
    if h <= 0 or w <= 0:
        raise ValueError("image dimensions must be positive")
    boxes = np.asarray(boxes, _F32)
    box_ind = np.asarray(box_ind).reshape(-1)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or box_ind.shape[0] != boxes.shape[0]:
        raise ValueError(f"boxes must be [num_boxes, 4] and box_ind [num_boxes], got "
                         f"{boxes.shape} and {np.shape(box_ind)}")
    crop = np.asarray(crop_size).reshape(-1)
    if crop.shape != (2,) or crop[0] <= 0 or crop[1] <= 0:
        raise ValueError(f"crop_size must be two positive elements, got {crop.tolist()}")
    ch, cw = int(crop[0]), int(crop[1])
    check_array((boxes.shape[0], ch, cw, depth), _F32, "the crops")
    if not (boxes.shape[0] and depth):  # (no coordinate tables of a hostile crop size)
        return np.empty((boxes.shape[0], ch, cw, depth), _F32)
    if boxes.size and not np.isfinite(boxes).all():
        raise ValueError("boxes contains at least one element that is not finite")
    if box_ind.size and (box_ind.min() < 0 or box_ind.max() >= batch):
        raise ValueError(f"box_ind has values outside [0, {batch})")
    fill = _F32(extrapolation_value)
    iy = _crop_coords(boxes[:, 0], boxes[:, 2], ch, h)  # [n, ch]
    ix = _crop_coords(boxes[:, 1], boxes[:, 3], cw, w)  # [n, cw]
    oky = (iy >= 0) & (iy <= h - 1)
    okx = (ix >= 0) & (ix <= w - 1)
    x = _as_float32(image)
    b = box_ind.astype(np.int64)[:, None, None]
    if method == "nearest":
        ry = np.clip(round_half_away(iy), 0, h - 1).astype(np.int64)[:, :, None]
        rx = np.clip(round_half_away(ix), 0, w - 1).astype(np.int64)[:, None, :]
        out = x[b, ry, rx]
    else:
        fy = np.floor(iy)
        fx = np.floor(ix)
        ty = np.clip(fy, 0, h - 1).astype(np.int64)
        by = np.clip(np.ceil(iy), 0, h - 1).astype(np.int64)
        lx = np.clip(fx, 0, w - 1).astype(np.int64)
        rx = np.clip(np.ceil(ix), 0, w - 1).astype(np.int64)
        ylerp = (iy - fy).astype(_F32)[:, :, None, None]
        xlerp = (ix - fx).astype(_F32)[:, None, :, None]
        ty, by = ty[:, :, None], by[:, :, None]
        lx, rx = lx[:, None, :], rx[:, None, :]
        tl, tr = x[b, ty, lx], x[b, ty, rx]
        bl, br = x[b, by, lx], x[b, by, rx]
        top = tl + (tr - tl) * xlerp
        bottom = bl + (br - bl) * xlerp
        out = top + (bottom - top) * ylerp
    ok = (oky[:, :, None] & okx[:, None, :])[..., None]
    return np.where(ok, out, fill).astype(_F32, copy=False).reshape(
        boxes.shape[0], ch, cw, depth)
