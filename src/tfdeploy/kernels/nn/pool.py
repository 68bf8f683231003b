"""Pooling kernels: MaxPool, AvgPool (2-D and 3-D), MaxPoolWithArgmax, LRN.

Pooling works on the tensor as laid out (NHWC or NCHW alike): ``ksize`` and ``strides`` name
every dim, so a window is a loop over kernel taps, each a strided view reduced into the
output: MaxPool's one dim at a time (``_separable``), AvgPool's in window order, as TF sums
them. A unit-stride AvgPool (Inception's and NASNet's 3 x 3 SAME) takes each tap as one
contiguous run of the flattened padded input instead (``_FlatPool``), with its geometry and
divisors worked out once per shape; a column-strided one of few channels (NASNet's reduction
cells) reads its taps from a copy of the columns by phase (``_phase_taps``).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from tfdeploy.kernels.common import low_precision, np_dtype, op
from tfdeploy.kernels.nn.conv import out_and_pads
from tfdeploy.kernels.nn.scratch import output, scratch, strided
from tfdeploy.numerics import quiet
from tfdeploy.runtime.limits import check_array

_FORMATS = ("NHWC", "NCHW", "NDHWC", "NCDHW")


def _geometry(shape, ksize, strides, padding, explicit=None):
    """Per dim (output size, pad before, pad after) for a window over every dim."""
    ks, st = list(ksize), list(strides)
    if len(ks) != len(shape) or len(st) != len(shape):
        raise ValueError(f"ksize {ks} and strides {st} must have {len(shape)} entries")
    if any(k < 1 for k in ks):
        raise ValueError(f"ksize must be positive, got {ks}")
    pairs = [(0, 0)] * len(shape)
    if padding == "EXPLICIT":
        p = list(explicit or ())
        if len(p) != 2 * len(shape):
            raise ValueError(f"explicit_paddings must have {2 * len(shape)} entries, got {p}")
        pairs = [(p[2 * i], p[2 * i + 1]) for i in range(len(shape))]
    return [out_and_pads(n, k, s, 1, padding, pr) for n, k, s, pr in zip(shape, ks, st, pairs)]


def _within(shape, ksize, strides, geom, padding):
    """(ksize, geom) with SAME windows larger than the input cut to what they can read.

    Every SAME window overlaps the input, and what it reads of the padding beyond one cell
    changes nothing (the lowest value for a maximum, zeros TF's divisor does not count), so a
    pad larger than the windows' span, ``(out - 1) * stride`` (at least 1), is cut to it and
    the window by as much: each window then covers the same input cells, in the same order,
    and the padded input is at most ~3x the input's size along that dim. Without this a
    hostile ksize of 2**31 made the padded array, and the taps' loop, that long."""
    if padding != "SAME":
        return ksize, geom
    ks, gs = list(ksize), list(geom)
    for d, (k, s, (o, lo, hi)) in enumerate(zip(ksize, strides, geom)):
        span = max((o - 1) * s, 1)
        if lo > span or hi > span:
            lo2, hi2 = min(lo, span), min(hi, span)
            ks[d], gs[d] = k - (lo - lo2) - (hi - hi2), (o, lo2, hi2)
    return ks, gs


def _windows(x, ksize, strides, padding, explicit=None, dtype=None):
    """(outs, ksize, geom): a pool's output shape, checked against the tensor limit, and its
    windows and pads (``_geometry``, SAME windows cut by ``_within``); ksize and geom are None
    for an empty result, which a hostile ksize must not loop over its taps to make."""
    geom = _geometry(x.shape, ksize, strides, padding, explicit)
    outs = [g[0] for g in geom]
    check_array(outs, x.dtype if dtype is None else dtype, "the pooled tensor")
    if not (x.size and all(outs)):
        return outs, None, None
    ks, geom = _within(x.shape, ksize, strides, geom, padding)
    return outs, ks, geom


def _padded(x, geom, value):
    if not any(lo or hi for _, lo, hi in geom):
        return x
    shape = [n + lo + hi for n, (_, lo, hi) in zip(x.shape, geom)]
    check_array(shape, x.dtype, "the padded input")  # (explicit paddings may be huge)
    out = np.empty(shape, dtype=x.dtype)
    inner = tuple(slice(lo, lo + n) for n, (_, lo, _) in zip(x.shape, geom))
    out[inner] = x
    for i, (n, (_, lo, hi)) in enumerate(zip(x.shape, geom)):  # the borders, once
        if lo:
            out[inner[:i] + (slice(0, lo),)] = value
        if hi:
            out[inner[:i] + (slice(lo + n, None),)] = value
    return out


def _taps(xp, ksize, strides, outs):
    """Every window tap of ``xp`` as a strided view of the output's shape."""
    ranges = [range(k) for k in ksize]
    for tap in np.ndindex(*[len(r) for r in ranges]):
        yield xp[tuple(slice(t, t + (o - 1) * s + 1, s) if o else slice(0, 0)
                       for t, o, s in zip(tap, outs, strides))]


#: column-strided pools of at most this many channels read their taps from phase copies
_PHASED_CHANNELS = 64


def _by_phases(shape, ksize, strides) -> bool:
    """Whether a 4-D pool (NHWC) with a column stride takes its taps from column phases
    (``_phase_taps``): few channels, where a tap's strided view runs numpy's inner loop over
    one pixel's channels only, and at least as many taps along the columns as the stride."""
    return len(shape) == 4 and ksize[0] == ksize[3] == strides[0] == strides[3] == 1 and \
        strides[2] > 1 and ksize[2] >= strides[2] and shape[3] <= _PHASED_CHANNELS


def _phase_taps(xp, ksize, strides, outs):
    """``_taps`` of padded ``xp`` [N, H, W, C] with a column stride ``sw``, from a copy of its
    columns by phase, [SW, N, H, columns, C], phase q holding columns q, q + sw, ...: tap
    (i, j) of every output is then phase j % sw from column j // sw on, each output row one
    contiguous run of (columns x channels) (NASNetMobile's 3 x 3 / 2 pool of 111 x 111 x 11
    and 55 x 55 x 22). The same taps in the same order: the same sums."""
    n, hp, _, c = xp.shape
    _, kh, kw, _ = ksize
    sh, sw = strides[1:3]
    oh, ow = outs[1:3]
    cols = ow + (kw - 1) // sw
    ph = scratch("pool_phases", sw * n * hp * cols * c, xp.dtype).reshape(sw, n, hp, cols, c)
    for q in range(sw):  # (a phase's last column may lie past the input: never read)
        part = xp[:, :, q::sw][:, :, :cols]
        ph[q, :, :, :part.shape[2]] = part
    for i in range(kh):
        for j in range(kw):
            yield ph[j % sw, :, i:i + (oh - 1) * sh + 1:sh, j // sw:j // sw + ow]


def _separable(xp, ksize, strides, outs, ufunc):
    """``ufunc`` (max or add) over every window of padded ``xp``, one dim at a time: a window
    over several dims is a window over each in turn. The outer dims go first, on whole
    contiguous rows, and shrink what the inner dims' strided taps then read: a 2 x 2 pool of
    NHWC is one pass of whole rows and one of pixels on half the data, instead of three
    passes of strided pixels (a 3 x 3 pool: four instead of eight). A fresh array."""
    out = xp
    for d, (k, s, o) in enumerate(zip(ksize, strides, outs)):
        if k == 1 and (s == 1 or o <= 1) and out.shape[d] == o:
            continue
        lead = (slice(None),) * d
        taps = [out[lead + (slice(t, t + (o - 1) * s + 1, s) if o else slice(0, 0),)]
                for t in range(k)]
        acc = taps[0].copy() if k == 1 else ufunc(taps[0], taps[1])
        for v in taps[2:]:
            ufunc(acc, v, out=acc)
        out = acc
    return out.copy() if out is xp else out


def _check_format(data_format, ndim):
    if data_format not in _FORMATS or len(data_format) != ndim:
        raise ValueError(f"unsupported data_format {data_format!r} for a rank-{ndim} input")


def _lowest(dt: np.dtype):
    if dt.kind == "f" or low_precision(dt):
        return -np.inf
    if dt.kind in "iu":
        return np.iinfo(dt).min
    raise TypeError(f"MaxPool: unsupported dtype {dt}")


def _max_pool(x, ksize, strides, padding, explicit=None, as_tf_2d=False):
    """The maximum over each window. ``as_tf_2d``: as TF's MaxPool kernels compute it (with
    or without oneDNN), from the dtype's lowest finite value up: a NaN never wins (fmax), and a
    window of -inf and NaN only gives that lowest value."""
    outs, ksize, geom = _windows(x, ksize, strides, padding, explicit)
    if ksize is None:
        return np.empty(outs, x.dtype)
    floats = x.dtype.kind == "f" or low_precision(x.dtype)
    if as_tf_2d and floats and x.ndim == 4:
        depth = _depth_window(x, ksize, strides, geom)
        if depth is not None:
            return _depth_max(x, depth, ksize[depth])
    # (TF pads with the lowest finite value: a window of -inf and padding gives that, in 3-D
    # too, where an inner window of -inf gives -inf)
    xp = _padded(x, geom, _finfo(x.dtype).min if floats else _lowest(x.dtype))
    out = _separable(xp, ksize, strides, outs, np.maximum)
    if as_tf_2d and floats and out.size and \
            not np.minimum.reduce(out, None) > -np.inf:
        # a window gave NaN or -inf (the min is then NaN or -inf): again with fmax, which
        # skips NaN (0.43 against 0.34 ms on ResNet50's pool, so only then), up from the
        # lowest finite value
        out = _separable(xp, ksize, strides, outs, np.fmax)
        np.fmax(out, _finfo(x.dtype).min, out=out)
    return out


def _depth_window(x, ksize, strides, geom) -> int | None:
    """The channel axis of a pool over channels only (TF's depthwise max pool: a window that
    tiles them exactly, none over height and width), else None."""
    for axis in (3, 1):  # NHWC, NCHW
        k = ksize[axis]
        others = [i for i in range(1, 4) if i != axis]
        if k > 1 and strides[axis] == k and x.shape[axis] % k == 0 and \
                not any(lo or hi for _, lo, hi in geom) and \
                all(ksize[i] == 1 and strides[i] == 1 for i in others) and ksize[0] == 1:
            return axis
    return None


def _depth_max(x, axis: int, k: int) -> np.ndarray:
    """TF's depthwise max pool: each window's values in order, a later one taken only when
    greater (``std::max``), so a NaN wins where it comes first, and -inf stays -inf."""
    shape = x.shape[:axis] + (x.shape[axis] // k, k) + x.shape[axis + 1:]
    v = x.reshape(shape)
    lead = (slice(None),) * (axis + 1)
    out = v[lead + (0,)].copy()
    for j in range(1, k):
        vj = v[lead + (j,)]
        np.copyto(out, vj, where=vj > out)
    return out


@functools.lru_cache(maxsize=16)
def _finfo(dt: np.dtype):
    if low_precision(dt):
        import ml_dtypes

        return ml_dtypes.finfo(dt)
    return np.finfo(dt)


@op("MaxPool")
def MaxPool(input, *, ksize, strides, padding, explicit_paddings=(), data_format="NHWC"):
    """MaxPool: the maximum over each window (padding never wins), as TF computes it: NaN is
    skipped, and a window of only -inf and NaN gives the dtype's lowest finite value. Over
    channels only (TF's depthwise max pool), the window's values go in order, a later one
    taken only when greater: a NaN that comes first wins, and a window of -inf gives -inf."""
    _check_format(data_format, input.ndim)
    return _max_pool(input, ksize, strides, padding, explicit_paddings, as_tf_2d=True)


@op("MaxPoolV2")
def MaxPoolV2(input, ksize, strides, *, padding, data_format="NHWC"):
    """MaxPoolV2: MaxPool with ``ksize`` and ``strides`` as inputs."""
    _check_format(data_format, input.ndim)
    return _max_pool(input, np.asarray(ksize).tolist(), np.asarray(strides).tolist(), padding,
                     as_tf_2d=True)


@op("MaxPool3D")
def MaxPool3D(input, *, ksize, strides, padding, data_format="NDHWC"):
    """MaxPool3D: the maximum over each 3-D window.

    Deviation: a window holding NaN gives NaN. TF's result there depends on its CPU: with
    oneDNN (AVX-512) NaN is skipped, as in MaxPool; its reference kernel's result depends on
    where in the window the NaN lies.
    """
    _check_format(data_format, input.ndim)
    return _max_pool(input, ksize, strides, padding)


def _avg_pool(x, ksize, strides, padding):
    dt = x.dtype
    acc = np.dtype(np.float32) if low_precision(dt) else dt
    if x.size and all(s == 1 for s in strides):
        # (strided pools measured no faster so: the padded width's sums are wasted work. The
        # plan, its geometry worked out once per shape: a unit-stride pool's output is no
        # larger than its input, so the checks ``_windows`` makes are moot for it)
        plan = _flat_plan(x.shape, tuple(ksize), padding, acc)
        if plan is not None:
            return plan(x).astype(dt, copy=False)
    outs, cut, geom = _windows(x, ksize, strides, padding)
    if cut is None:
        return np.zeros(outs, dtype=dt)
    ksize = cut
    # the taps in window order, as TF sums them (a separable sum rounds otherwise: ~1e-7
    # relative per window, 5e-6 through NASNetMobile's 52 average pools)
    xp = _padded(x.astype(acc, copy=False), geom, 0)
    taps = _phase_taps(xp, ksize, strides, outs) if _by_phases(xp.shape, ksize, strides) \
        else _taps(xp, ksize, strides, outs)
    out = next(taps)
    second = next(taps, None)
    out = out.copy() if second is None else np.add(out, second)
    for v in taps:
        out += v
    if out.size == 0:
        return np.zeros(outs, dtype=dt)
    if any(k > 1 for k in ksize):  # (a window of one cell is the cell: x / 1 = x)
        out /= _divisor(x.shape, geom, ksize, strides, acc)
    return out.astype(dt, copy=False)


def _divisor(shape, geom, ksize, strides, acc) -> np.ndarray:
    """What each window's sum is divided by: the cells it covers inside the input, per dim
    (as TF counts them), broadcasting over the output."""
    count = np.ones((), dtype=acc)
    for d, ((o, lo, _), n, k, s) in enumerate(zip(geom, shape, ksize, strides)):
        if k == 1:
            continue
        start = np.arange(o) * s - lo
        c = (np.minimum(start + k, n) - np.maximum(start, 0)).astype(acc)
        count = count * c.reshape([-1 if i == d else 1 for i in range(len(shape))])
    return count


#: a unit-stride pool's divisor is kept repeated to its output's shape up to this size
_FULL_DIVISOR_BYTES = 1 << 20
#: a unit-stride average pool adds its taps by chunks of this many sums (see ``_FlatPool``)
_POOL_CHUNK = 1 << 17
#: ...of at least this many columns (a batch's images side by side: runs not too short)
_POOL_COLUMNS = 1024


class _FlatPool:
    """A unit-stride average pool as contiguous runs: in the padded input, flattened, the
    tap at offset (i, j) of every output (r, c) lies ``i * row + j * pixel`` values past the
    window's first cell. So each tap, for every output at once, is one contiguous run of the
    flat input, taken over the padded width: the sums at the padding's columns are computed
    and dropped, and the last tap runs past the end into a few zeros of slack. Each addition
    is then one long vectorised pass (3x3 on NASNetMobile's 28 x 28 x 44: 57 -> 25 us for
    the taps) instead of a pass over strided rows, and the taps still add in window order,
    as TF sums them. Everything but the input is computed once per shape (``_flat_plan``).
    """

    __slots__ = ("pshape", "inner", "borders", "groups", "block", "size", "run", "window",
                 "keep", "outs", "divisor", "dtype", "ksize", "taps", "steps")

    def __init__(self, shape, ksize, geom, acc):
        self.outs = tuple(g[0] for g in geom)
        self.pshape = tuple(n + lo + hi for n, (_, lo, hi) in zip(shape, geom))
        self.inner = tuple(slice(lo, lo + n) for n, (_, lo, _) in zip(shape, geom))
        self.borders = [self.inner[:i] + (part,)
                        for i, (n, (_, lo, hi)) in enumerate(zip(shape, geom))
                        for part in (slice(0, lo) if lo else None,
                                     slice(lo + n, None) if hi else None) if part]
        d0 = next(d for d, k in enumerate(ksize) if k > 1)
        steps = [math.prod(self.pshape[d + 1:]) for d in range(len(shape))]
        self.groups = math.prod(self.pshape[:d0])  # (batch, ...: runs do not cross them)
        self.block = math.prod(self.pshape[d0:])
        slack = sum((k - 1) * steps[d] for d, k in enumerate(ksize) if d > d0)
        self.size = self.groups * self.block + slack
        self.run = self.outs[d0] * steps[d0]  # (the sums of each group, in padded width)
        # the sums as [groups, outs[d0], padded dims after], and the outputs among them
        self.window = (self.groups, self.outs[d0]) + self.pshape[d0 + 1:]
        self.keep = (slice(None), slice(None)) + tuple(slice(0, o) for o in self.outs[d0 + 1:])
        divisor = _divisor(shape, geom, ksize, [1] * len(shape), acc)
        # repeated over every dim but the first (the batch's) when that is small: the divide
        # then runs over same-shape runs, not a broadcast of a few values (28 x 28 x 44: 15
        # -> 8 us; 35 x 35 x 288 77 -> 49)
        whole = (1,) + self.outs[1:]
        if divisor.shape[:1] == (1,) and math.prod(whole) * acc.itemsize <= _FULL_DIVISOR_BYTES:
            divisor = np.ascontiguousarray(np.broadcast_to(divisor, whole))
        self.divisor = divisor
        self.dtype = acc
        #: the taps in window order, and each dim's step between them (bytes)
        self.ksize, self.taps = tuple(ksize), list(np.ndindex(*ksize))
        self.steps = tuple(st * acc.itemsize for st in steps)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        acc = self.dtype
        buf = scratch("avg_pool", self.size, acc)
        xp = buf[:self.groups * self.block].reshape(self.pshape)
        xp[self.inner] = x
        for b in self.borders:
            xp[b] = 0
        buf[self.groups * self.block:] = 0
        sums = scratch("avg_pool_sums", self.groups * self.run, acc).reshape(
            self.groups, self.run)
        # every tap as one view, [*ksize, groups, run], indexed by tap (9 views made apart
        # cost 8 us, more than the additions on a 7 x 7 map)
        every = strided(buf, self.ksize + sums.shape, self.steps + (
            self.block * acc.itemsize, acc.itemsize))
        taps = [every[t] for t in self.taps]
        # over more than ~0.75 MB of sums, by column chunks of ~512 KB: each chunk's taps are
        # added while it is in cache (one thread, 3x3: InceptionV3's 35 x 35 x 288 1.12 ->
        # 0.67 ms, at batch 8 11.2 -> 5.8; smaller ones as before, 8 x 8 x 2048 at 1.03x)
        step = self.run
        if self.groups * self.run > _POOL_CHUNK * 3 // 2:
            step = max(_POOL_COLUMNS, _POOL_CHUNK // self.groups)
        with quiet():  # (the dropped sums may overflow)
            for a in range(0, self.run, step):
                s = sums[:, a:a + step]
                first, second, *rest = [v[:, a:a + step] for v in taps]
                np.add(first, second, out=s)
                for v in rest:
                    s += v
            out = output(self.outs, acc)
            np.divide(sums.reshape(self.window)[self.keep].reshape(self.outs),
                      self.divisor, out=out)
        return out


@functools.lru_cache(maxsize=128)
def _flat_plan(shape, ksize, padding, acc) -> _FlatPool | None:
    """The unit-stride pool of inputs of ``shape``, or None where it has no output (a window
    larger than a VALID input), windows of one cell, or SAME windows ``_within`` cuts."""
    strides = [1] * len(shape)
    geom = _geometry(shape, ksize, strides, padding)
    if not all(o for o, _, _ in geom) or all(k == 1 for k in ksize):
        return None
    if list(_within(shape, ksize, strides, geom, padding)[0]) != list(ksize):
        return None
    return _FlatPool(shape, ksize, geom, acc)


@op("AvgPool")
def AvgPool(value, *, ksize, strides, padding, data_format="NHWC"):
    """AvgPool: the mean over each window (SAME borders average the valid cells only)."""
    _check_format(data_format, value.ndim)
    return _avg_pool(value, ksize, strides, padding)


@op("AvgPool3D")
def AvgPool3D(input, *, ksize, strides, padding, data_format="NDHWC"):
    """AvgPool3D: the mean over each 3-D window."""
    _check_format(data_format, input.ndim)
    return _avg_pool(input, ksize, strides, padding)


@op("MaxPoolWithArgmax")
def MaxPoolWithArgmax(input, *, ksize, strides, padding, Targmax="int64",
                      include_batch_in_index=False):
    """MaxPoolWithArgmax: MaxPool (NHWC) and the flat index of each maximum,
    ``((b * height + y) * width + x) * channels + c`` (b only with include_batch_in_index).

    As TF's kernel computes it: padding is never read (an index always names an input
    value), the window's first value in row-major order starts the maximum, and a later value
    replaces it only when strictly greater. So ties go to the first, a window of -inf gives
    -inf and the first one's index, and a NaN wins only where it comes first (a NaN compares
    false both ways).
    """
    if input.ndim != 4:
        raise ValueError(f"MaxPoolWithArgmax: expected a rank-4 NHWC input, got shape "
                         f"{list(input.shape)}")
    if ksize[0] != 1 or ksize[3] != 1 or strides[0] != 1 or strides[3] != 1:
        raise ValueError("MaxPoolWithArgmax: pooling over the batch or depth is not supported")
    outs, ksize, geom = _windows(input, ksize, strides, padding, dtype=np.int64)
    if ksize is None:
        return np.empty(outs, input.dtype), np.empty(outs, np_dtype(Targmax))
    n, h, w, c = input.shape
    (_, oh, ow, _), (top, left) = [g[0] for g in geom], (geom[1][1], geom[2][1])
    xp = _padded(input, geom, _lowest(input.dtype))  # (never read: see ``inside``)
    ys = np.arange(oh) * strides[1] - top
    xs = np.arange(ow) * strides[2] - left
    base = np.arange(n).reshape(n, 1, 1, 1) * (h * w * c) if include_batch_in_index else 0
    chan = np.arange(c).reshape(1, 1, 1, c)
    out = np.zeros((n, oh, ow, c), input.dtype)
    arg = np.zeros((n, oh, ow, c), np.int64)
    started = np.zeros((1, oh, ow, 1), bool)  # the window has met a value of the input
    for tap, v in zip(np.ndindex(ksize[1], ksize[2]), _taps(xp, ksize, strides,
                                                              [n, oh, ow, c])):
        y, x = (ys + tap[0]).reshape(1, oh, 1, 1), (xs + tap[1]).reshape(1, 1, ow, 1)
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        take = inside & (~started | (v > out))
        np.copyto(out, v, where=take)
        np.copyto(arg, (y * w + x) * c + chan + base, where=take)
        started |= inside
    return out, arg.astype(np_dtype(Targmax), copy=False)


#: TF's CPU LRN sums each window by a running sum over the channels beyond this depth (for beta
#: 0.5 or 1), by a product with a band matrix below it
_LRN_RUNNING_DEPTH = 384


@op("LRN")
def LRN(input, *, depth_radius=5, bias=1.0, alpha=1.0, beta=0.5):
    """LRN: local response normalisation over the last dim,
    ``input / (bias + alpha * sum(input[..., d-r:d+r+1] ** 2)) ** beta``.

    The window sums are TF's: a product of the squares with a band matrix of ones, so an inf
    square gives inf in its windows and NaN (inf * 0) in every other channel of its pixel; over
    384 channels with beta 0.5 or 1, a running sum (here prefix sums), so an inf gives NaN in
    the windows after it and leaves those before it alone.
    """
    dt = input.dtype
    x = input.astype(np.float32) if low_precision(dt) else input
    c = x.shape[-1]
    if x.size == 0:
        return input.copy()
    with np.errstate(all="ignore"):  # (inf and NaN go as TF's do)
        return _lrn(x, c, depth_radius, bias, alpha, beta).astype(dt, copy=False)


def _lrn(x, c, depth_radius, bias, alpha, beta):
    sq = np.square(x)
    if c > _LRN_RUNNING_DEPTH and beta in (0.5, 1.0):
        cs = np.zeros(x.shape[:-1] + (c + 1,), dtype=x.dtype)
        np.cumsum(sq, axis=-1, out=cs[..., 1:])
        hi = np.minimum(np.arange(c) + depth_radius + 1, c)
        lo = np.maximum(np.arange(c) - depth_radius, 0)
        s = cs[..., hi] - cs[..., lo]
    else:
        i = np.arange(c)
        band = (np.abs(i[:, None] - i[None, :]) <= depth_radius).astype(x.dtype)
        s = np.matmul(sq.reshape(-1, c), band).reshape(x.shape)
    return x / (x.dtype.type(bias) + x.dtype.type(alpha) * s) ** x.dtype.type(beta)
