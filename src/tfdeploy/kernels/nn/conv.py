"""Convolution kernels: Conv2D, Conv3D, DepthwiseConv2dNative and their input gradients.

Convolutions run channels-last; channels-first inputs are transposed in and out. A conv is a
matmul over im2col patches: a 1x1 conv multiplies the input itself; larger kernels copy an
``as_strided`` view of the patches into a cache-sized per-thread buffer block by block and
multiply each block straight into the output (BLAS sgemm/dgemm); few output channels go by
kernel rows (``_by_rows``) or, to at most 8, by taps (``_by_taps``: one product for every tap,
each tap's rows then added at its offset). Depthwise convolutions are in
``depthwise.py``; grouped 2-D convolutions whose groups are single channels are depthwise ones
and run there, groups of a few channels (unit strides) as a sum of depthwise convolutions,
wider groups as one product per group. Each core takes an optional epilogue, called on each
output block right after it is computed: the fused kernels (``runner.py``) apply bias,
activation and residual through it.

Transposed convolutions (the input gradients: Conv2DTranspose, Conv3DTranspose) with a unit
dilation and a finite float filter run by phases (``_transpose_by_phases``): one convolution of
``dy`` per phase of the strides, by the taps that phase receives, written into every s-th
output position, or all phases in one convolution where the strides divide the filter
(``_transpose_stacked``); to fewer than 8 channels, by taps (``_transpose_by_taps``): one
product for all taps, each tap's plane added into a channels-first output. A stride equal to
the kernel (each output position one tap) is one product whose taps interleave in a copy;
other cases add each tap's product into the output.
"""

from __future__ import annotations

import math

import numpy as np

from tfdeploy.kernels.common import all_finite, low_precision, op
from tfdeploy.kernels.nn.depthwise import Epilogue, depthwise_2d
from tfdeploy.kernels.nn.scratch import output, scratch, strided
from tfdeploy.runtime import parallel
from tfdeploy.runtime.constants import derived
from tfdeploy.runtime.limits import check_array

#: im2col patches are copied in blocks of about this many bytes (cache-sized, and reused:
#: a fresh large buffer per block costs page faults), but never fewer than _MIN_ROWS rows
_BLOCK_BYTES = 1 << 20
_MIN_ROWS = 512
#: a 1x1 convolution with an epilogue multiplies blocks of about this many output bytes
_GEMM_BLOCK_BYTES = 1 << 22
#: 2-D convolutions in groups of at most this many input channels run as that many depthwise
#: convolutions summed (``_grouped_by_depthwise``): 56 x 56 x 128 in groups of 2 channels 11.2
#: -> 2.3 ms, of 4 (ResNeXt's) 6.5 -> 4.0; of 8 the products are faster (4.0 against 7.9), and
#: so are they with strides (the strided depthwise kernel goes per pixel)
_DEPTHWISE_SUM = 4
#: 2-D convolutions of at most this many output channels (and unit row stride and dilation)
#: go by kernel rows (``_by_rows``)
_ROWS_CO = 32
#: 2-D unit-stride convolutions to at most this many output channels go by taps
#: (``_by_taps``) from this many output pixels an image (below, the taps' additions cost more
#: than they save: 16 x 16 x 64 -> 4 took 1.18x im2col's time), their products computed for
#: blocks of about ``_TAPS_BYTES`` (9 x 9 taps, 128 x 128: 5.3 ms with 2 MB, 4.6 with 4)
_TAPS_CO = 8
_TAPS_PIXELS = 1024
_TAPS_BYTES = 1 << 22
#: below this many values per patch row (kernel width x channels), patches are copied
#: channel-major: a row-major copy would move runs too short to be fast
_NARROW = 32
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _spatial(data_format: str) -> tuple[bool, int]:
    """(channels_first, number of spatial dims) of a data format such as NHWC or NCDHW."""
    if data_format not in ("NHWC", "NCHW", "NWC", "NCW", "NDHWC", "NCDHW"):
        raise ValueError(f"unsupported data_format {data_format!r}")
    return data_format[1] == "C", len(data_format) - 2


def _spatial_attr(values, data_format: str, name: str) -> list[int]:
    """The spatial entries of a per-dim attribute (strides, dilations, ksize) given in
    ``data_format`` order."""
    first, nsp = _spatial(data_format)
    v = list(values)
    if len(v) != nsp + 2:
        raise ValueError(f"{name} must have {nsp + 2} entries for {data_format}, got {v}")
    return v[2:] if first else v[1:-1]


def out_and_pads(size: int, k: int, stride: int, dilation: int, padding: str,
                 explicit: tuple[int, int] = (0, 0)) -> tuple[int, int, int]:
    """(output size, pad before, pad after) of one spatial dim, as TF computes them."""
    if stride < 1 or dilation < 1:
        raise ValueError(f"strides and dilations must be positive, got {stride}, {dilation}")
    ek = (k - 1) * dilation + 1
    if padding == "VALID":
        lo = hi = 0
        out = max((size - ek) // stride + 1, 0) if size >= ek else 0
    elif padding == "SAME":
        out = -(-size // stride)
        total = max((out - 1) * stride + ek - size, 0)
        lo, hi = total // 2, total - total // 2
    elif padding == "EXPLICIT":
        lo, hi = explicit
        if lo < 0 or hi < 0:
            raise ValueError(f"explicit paddings must be non-negative, got {explicit}")
        full = size + lo + hi
        out = (full - ek) // stride + 1 if full >= ek else 0
    else:
        raise ValueError(f"unknown padding {padding!r}")
    return out, lo, hi


def explicit_pairs(explicit_paddings, data_format: str) -> list[tuple[int, int]]:
    """The spatial (before, after) pairs of an ``explicit_paddings`` attribute."""
    first, nsp = _spatial(data_format)
    p = list(explicit_paddings)
    if len(p) != 2 * (nsp + 2):
        raise ValueError(f"explicit_paddings must have {2 * (nsp + 2)} entries, got {p}")
    pairs = [(p[2 * i], p[2 * i + 1]) for i in range(nsp + 2)]
    other = pairs[:2] if first else [pairs[0], pairs[-1]]
    if any(v for pr in other for v in pr):
        raise ValueError("explicit_paddings on the batch and channel dims must be 0")
    return pairs[2:] if first else pairs[1:-1]


def pad_spatial(x: np.ndarray, pads, value=0, key: str | None = None) -> np.ndarray:
    """``x`` (channels-last) with its spatial dims padded by ``pads`` [(lo, hi), ...]; in this
    thread's scratch buffer ``key`` (see ``scratch``) when given: a temporary only."""
    if not any(lo or hi for lo, hi in pads):
        return x
    shape = (x.shape[0],) + tuple(d + lo + hi for d, (lo, hi) in
                                  zip(x.shape[1:-1], pads)) + (x.shape[-1],)
    if any(lo + hi > d for d, (lo, hi) in zip(x.shape[1:-1], pads)):
        # (a hostile dilation or padding; pads within the dims at most double each)
        check_array(shape, x.dtype, "the padded input")
    if key is None:
        out = np.empty(shape, dtype=x.dtype)
    else:
        out = scratch(key, math.prod(shape), x.dtype).reshape(shape)
    inner = tuple(slice(lo, lo + d) for d, (lo, _) in zip(x.shape[1:-1], pads))
    out[(slice(None),) + inner] = x
    # write each cell once: the borders only, not a full fill then the interior again
    for i, (d, (lo, hi)) in enumerate(zip(x.shape[1:-1], pads)):
        before = (slice(None),) + inner[:i]
        if lo:
            out[before + (slice(0, lo),)] = value
        if hi:
            out[before + (slice(lo + d, None),)] = value
    return out


def _to_last(x, first):
    return np.moveaxis(x, 1, -1) if first else x


def _from_last(x, first):
    return np.ascontiguousarray(np.moveaxis(x, -1, 1)) if first else x


def _geometry(x_shape, k_shape, strides, dilations, padding, pairs):
    """(output sizes, pads) of each spatial dim; ``strides`` (a list) is set to 1 in place
    where it passes the padded input (one output, which the stride then does not move: a
    hostile 2**62 would overflow the strided views' byte offsets)."""
    outs, pads = [], []
    for i, (n, k, s, d) in enumerate(zip(x_shape, k_shape, strides, dilations)):
        o, lo, hi = out_and_pads(n, k, s, d, padding, pairs[i] if pairs else (0, 0))
        outs.append(o)
        pads.append((lo, hi))
        if o == 1 and s > n + lo + hi:
            strides[i] = 1
    return outs, pads


def trim_taps(sizes, ks, strides, dilations, pads, outs, w: np.ndarray | None = None):
    """(tap slices, pads) of the same convolution without the taps that read only padding for
    every output (a dilation or padding larger than the input: DeepLab's rates beyond its
    feature map, or a hostile dilation of 2**31 that would pad 4 rows to 2**32), or None when
    every tap reads some input. Taps are cut from the ends of each dim, before the input only
    as far as the pads go (the input is never cropped); a dim where every tap reads only
    padding keeps no tap (the convolution is then zero). Such a tap adds only zeros, unless
    its weight is inf or NaN: TF's reference kernels then make NaN from the padding (which
    tfdeploy follows; TF with oneDNN skips the padding), so a filter ``w`` that is not all
    finite keeps its taps."""
    cuts, new, cut = [], [], False
    for n, k, s, d, (lo, hi), o in zip(sizes, ks, strides, dilations, pads, outs):
        span = (o - 1) * s  # tap t reads input rows t * d - lo + [0, span]
        if o <= 0 or n <= 0:
            return None
        a = min(k, -(-(lo - span) // d)) if lo > span else 0  # taps before the input
        b = min(k, -(-(n + lo) // d))  # the first tap past it
        a = min(a, lo // d) if a < b else b  # (none left: all cut; else no crop)
        if a == 0 and b == k:
            cuts.append(slice(None))
            new.append((lo, hi))
            continue
        cut = True
        cuts.append(slice(a, b))
        lo -= a * d
        new.append((lo, max(0, span + (b - a - 1) * d + 1 - n - lo)) if b > a else (0, 0))
    if not cut or w is not None and w.dtype.kind in "fc" and not all_finite(w):
        return None
    return tuple(cuts), new


def trim_key(cuts) -> tuple:
    """A hashable key of ``trim_taps``' slices (a cut filter's derived forms kept apart)."""
    return ("cut",) + tuple((c.start, c.stop) for c in cuts)


def _blocks(n: int, rows: int, pixels_per_row: int, row_bytes: int, parts: int = 1):
    """(image slice, row slice) blocks covering an [n, rows, ...] output, each about
    ``_BLOCK_BYTES`` of patches and at least ``_MIN_ROWS`` matmul rows when possible; at
    least ``parts`` blocks where there are that many rows (one per thread)."""
    want = max(_MIN_ROWS * row_bytes // max(pixels_per_row, 1), _BLOCK_BYTES, 1)
    per = max(1, want // max(row_bytes, 1))
    if parts > 1:
        per = min(per, max(1, -(-n * rows // parts)))
    if per < rows:
        return [(slice(b, b + 1), slice(r, min(rows, r + per)))
                for b in range(n) for r in range(0, rows, per)]
    imgs = max(1, per // rows)
    return [(slice(b, min(n, b + imgs)), slice(None)) for b in range(0, n, imgs)]


def depthwise_groups(w_shape, c: int) -> bool:
    """Whether a 2-D convolution of ``c`` input channels by a filter of ``w_shape`` [KH, KW,
    C/G, O] is grouped by single channels: a depthwise convolution (ConvNeXt's 7x7 layers are
    Conv2D(groups=C)), which the depthwise kernel runs, filter [KH, KW, C, O/C]: 70x faster
    than one product per group."""
    return len(w_shape) == 4 and w_shape[2] == 1 and c > 1 and w_shape[3] % c == 0


def _groups(c: int, cg: int, co: int) -> int:
    """The number of groups of a convolution of ``c`` input channels by a filter of depth
    ``cg`` to ``co`` output channels, or the error TF gives."""
    if c == 0 and cg:
        raise ValueError(f"input depth 0: a grouped convolution by a filter of depth {cg} must "
                         "have at least one group")
    if cg == 0 or c % cg or co % (c // cg):
        raise ValueError(f"input depth {c} must be a multiple of the filter depth {cg}, and "
                         f"the output channels {co} a multiple of the number of groups")
    return c // cg


def conv_nd(x: np.ndarray, w: np.ndarray, strides, dilations, pads, outs,
            epilogue: Epilogue | None = None) -> np.ndarray:
    """Channels-last N-d convolution of ``x`` [N, *S, C] with ``w`` [*K, C/G, O] (G groups).

    ``epilogue(y, start, stop)``, if given, is called on each finished block of the output:
    rows ``start:stop`` of ``y.reshape(-1, O)``, while they are still in cache.
    """
    nsp = x.ndim - 2
    ks, cg, co = w.shape[:nsp], w.shape[-2], w.shape[-1]
    c = x.shape[-1]
    g = _groups(c, cg, co)
    n = x.shape[0]
    if depthwise_groups(w.shape, c):  # (one input channel a group: a depthwise convolution)
        return depthwise_2d(x, w.reshape(*ks, c, co // c), strides, dilations, pads, *outs,
                            epilogue)
    if nsp == 2 and g > 1 and cg <= _DEPTHWISE_SUM and x.shape[0] and all(outs) and \
            all(s == 1 for s in strides):  # (strided depthwise goes per pixel: slower)
        return _grouped_by_depthwise(x, w, strides, dilations, pads, outs, epilogue)
    kk = math.prod(ks)
    out = output((n, *outs, co), np.result_type(x.dtype, w.dtype))
    if out.size == 0:
        return out
    if kk * cg == 0:
        out[...] = 0
        if epilogue is not None:
            epilogue(out, 0, out.size // co)
        return out
    if all(k == 1 for k in ks) and g == 1:
        _pointwise(x, w.reshape(c, co), strides, pads, outs, out, epilogue)
        return out
    xp = pad_spatial(x, pads, key="conv_pad")
    row = math.prod(outs[1:])  # output pixels per outer output row
    if g > 1:
        _grouped(xp, w, strides, dilations, outs, out, epilogue)
        return out
    k = kk * c
    narrow = c * ks[-1] < _NARROW
    # split over threads from a product's threshold (parallel.MATMUL_FACTOR), but a narrow
    # conv (an RGB stem: its patch copies cost as much as its products) from MIN_WORK. Two
    # threads: a U-Net's 16 x 16 x 64 layers (9 M multiply-adds, 0.15 ms) took 1.9x their
    # one-thread time split, the model at batch 1 0.857x with this; EfficientNetB0's stem
    # keeps its split (as a product it lost 1.5% of the model's time); MobileNetV2,
    # ResNet50 unchanged
    parts = parallel.blocks(n * outs[0], row * k * co, matmul=not narrow)
    if nsp == 2 and co <= _TAPS_CO and kk > 1 and list(strides) == [1, 1] and \
            xp.dtype in _FLOATS and not narrow and row * outs[0] >= _TAPS_PIXELS:
        _by_taps(np.ascontiguousarray(xp), w, dilations, outs, out, epilogue, parts)
        return out
    if nsp == 2 and co <= _ROWS_CO and ks[0] > 1 and strides[0] == 1 and not narrow:
        _by_rows(xp, w, strides, dilations, outs, out, epilogue, parts)
        return out
    blocks = _blocks(n, outs[0], row, row * k * xp.itemsize, parts)
    bs, rs = blocks[0]
    size = len(range(n)[bs]) * len(range(outs[0])[rs]) * row * k
    view = _patches(xp, ks, strides, dilations, outs, narrow)
    wm = w.reshape(k, co)
    lead = (slice(None),) * (nsp + 1)

    def run(first: int, last: int) -> None:
        buf = scratch("conv_patches", size, xp.dtype)  # (per thread)
        for bs, rs in blocks[first:last]:
            # few channels (an RGB stem): patches copied channel-major, so each copy moves
            # long rows, and BLAS reads the [K, M] buffer transposed
            p = view[lead + (bs, rs)] if narrow else view[bs, rs]
            m = p.size // k
            pb = buf[:p.size].reshape(p.shape)
            np.copyto(pb, p)
            np.matmul(pb.reshape(k, m).T if narrow else pb.reshape(m, k), wm,
                      out=out[bs, rs].reshape(m, co))
            if epilogue is not None:
                start = (bs.start * outs[0] + (rs.start or 0)) * row
                epilogue(out, start, start + m)

    _over(run, len(blocks), parts)
    return out


def _over(run, count: int, parts: int) -> None:
    """``run(0, count)``, split over up to ``parts`` threads (``runtime/parallel.py``)."""
    parts = min(parts, count)
    if parts > 1:
        parallel.run_blocks(run, count, parts)
    else:
        run(0, count)


def _by_rows(xp, w, strides, dilations, outs, out, epilogue, parts: int) -> None:
    """A 2-D convolution of few output channels by kernel rows: each block of output rows
    copies the patches of one kernel row only ([rows + KH - 1, OW, KW x C], KH times less
    than im2col) and sums KH products of K = KW x C, each reading the copy from its row on.
    For unit row stride (a kernel row's patches of consecutive output rows are then
    consecutive rows of the copy, kernel row i's from row i * dilation on). With 16-32 output
    channels the copies cost as much as the products, which BLAS runs at half speed:
    128x128x32 -> 16, 3x3: 2.75 -> 2.44 ms; 128x128x16 -> 16 dilated by 2 (as
    ``passes/atrous.py`` makes them): 1.94 ms by im2col, 1.46 by rows."""
    n, (oh, ow), c, co = xp.shape[0], outs, xp.shape[-1], w.shape[-1]
    kh, kw = w.shape[:2]
    dh = dilations[0]
    reach = (kh - 1) * dh  # (the rows a block copies beyond its own)
    q = kw * c
    st = xp.strides
    # [N, rows of the padded input, OW, KW, C]: the patches of one kernel row
    view = strided(xp, (n, xp.shape[1], ow, kw, c),
                   (st[0], st[1], st[2] * strides[1], st[2] * dilations[1], st[3]))
    wr = w.reshape(kh, q, co)
    blocks = _blocks(n, oh, ow, ow * q * xp.itemsize, parts)
    # a block's images go together: one copy, and each of the KH products one batched call
    # over them (numpy loops the images in C); per image, a 32-image batch of 14 x 14 maps
    # was some 300 small calls, slower on two threads than on one (their Python side holds
    # the GIL)
    spans = [(range(n)[bs], range(oh)[rs]) for bs, rs in blocks]
    size = max(len(b) * (len(r) + reach) for b, r in spans) * ow
    most = max(len(b) * len(r) for b, r in spans) * ow

    def run(first: int, last: int) -> None:
        buf = scratch("conv_rows", size * q, xp.dtype)  # (per thread)
        acc = scratch("conv_rows_acc", most * co, out.dtype)
        for imgs, rows in spans[first:last]:
            b0, b1, r0, r1 = imgs.start, imgs.stop, rows.start, rows.stop
            nb, m = b1 - b0, (r1 - r0) * ow
            p = buf[:nb * (r1 - r0 + reach) * ow * q].reshape(nb, r1 - r0 + reach, ow, kw, c)
            np.copyto(p, view[b0:b1, r0:r1 + reach])
            pm = p.reshape(nb, -1, q)
            # (whole images, or rows of one: a contiguous run of the output's rows)
            start = (b0 * oh + r0) * ow
            ob = out.reshape(-1, co)[start:start + nb * m].reshape(nb, m, co)
            part = acc[:nb * m * co].reshape(nb, m, co)
            np.matmul(pm[:, :m], wr[0], out=ob)
            for i in range(1, kh):
                np.matmul(pm[:, i * dh * ow:i * dh * ow + m], wr[i], out=part)
                ob += part
            if epilogue is not None:
                epilogue(out, start, start + nb * m)

    _over(run, len(blocks), parts)


def _by_taps(xp, w, dilations, outs, out, epilogue, parts: int) -> None:
    """A unit-stride 2-D convolution to few output channels (an RGB, mask or few-class
    layer) by taps: for a block of output rows, one product of every tap's filter [KH KW O,
    C] with the input rows the block reads, [C, pixels] (BLAS's rows: KH KW O; im2col's
    product would have only O columns, at a fraction of BLAS's speed, after a copy of KH KW
    times the input), then each tap's O rows added into the block's sums at the tap's
    offset. Over the padded input flattened, tap (i, j) of output (r, c) is ``i dh wp + j dw``
    values past input (r, c) (wp: the padded width): one contiguous run of the products for
    all outputs, taken over the padded width, whose sums at the last ``wp - ow`` columns of
    each row are computed and dropped. The sums go in tap order outside the product.
    A block's rows are its outputs' (``_TAPS_BYTES`` of products) and the ``(KH - 1) dh``
    below, computed again by the next block. One thread, against im2col or kernel rows: 32 ->
    3 channels, 9 x 9, 128 x 128 (a style-transfer net's last layer) 6.50 -> 4.64 ms; 3 x 3,
    128 x 128, 64 -> 3 1.97 -> 1.50, 16 -> 1 0.40 -> 0.30; 64 x 64, 32 -> 8 0.44 -> 0.33, at
    batch 8 32 -> 4 2.92 -> 1.90; 224 x 224, 32 -> 3 3.02 -> 2.73. At 9 channels no faster.
    A narrow input (an RGB stem: C KW < 32) stays with im2col (1 -> 4 channels took 2.2x)."""
    n, hp, wp, c = xp.shape
    kh, kw, _, co = w.shape
    dh, dw = dilations
    oh, ow = outs
    kk, reach = kh * kw, (kh - 1) * dh
    wt = np.ascontiguousarray(w.reshape(kk, c, co).transpose(0, 2, 1)).reshape(kk * co, c)
    offsets = [i * dh * wp + j * dw for i in range(kh) for j in range(kw)]
    rows = min(oh, max(1, 3 * reach, _TAPS_BYTES // (kk * co * wp * xp.itemsize)))
    if n < parts:  # (fewer images than threads: blocks of rows for each)
        rows = min(rows, max(1, 3 * reach, -(-oh // parts)))
    spans = [(b, r0, min(oh, r0 + rows)) for b in range(n) for r0 in range(0, oh, rows)]
    xf = xp.reshape(n, hp * wp, c)

    def run(first: int, last: int) -> None:
        ybuf = scratch("conv_taps", kk * co * (rows + reach) * wp, out.dtype)
        acc = scratch("conv_taps_acc", co * rows * wp, out.dtype)
        for b, r0, r1 in spans[first:last]:
            m, q0, q1 = (r1 - r0) * wp, r0 * wp, (r1 + reach) * wp
            y = ybuf[:kk * co * (q1 - q0)].reshape(kk * co, q1 - q0)
            np.matmul(wt, xf[b, q0:q1].T, out=y)
            a = acc[:co * m].reshape(co, m)
            np.copyto(a, y[:co, :m])
            for t in range(1, kk):
                # (the last taps' runs end past the block: their dropped sums)
                o = offsets[t]
                e = min(m, q1 - q0 - o)
                a[:, :e] += y[t * co:(t + 1) * co, o:o + e]
            np.copyto(out[b, r0:r1], a.reshape(co, r1 - r0, wp)[:, :, :ow].transpose(1, 2, 0))
            if epilogue is not None:
                start = (b * oh + r0) * ow
                epilogue(out, start, start + (r1 - r0) * ow)

    _over(run, len(spans), parts)


def _patches(xp, ks, strides, dilations, outs, channel_major: bool) -> np.ndarray:
    """The im2col view of padded ``xp``: [N, *O, *K, C], or [*K, C, N, *O] channel-major.

    Channel-major with a unit stride along the last spatial dim reads a channels-first copy
    of ``xp`` (a per-thread scratch buffer: the input of a narrow convolution is small), so
    each patch row is a contiguous run of input columns instead of every C-th value (copying
    the patches of a 3-channel 16x32x32 Conv3D: 0.48 -> 0.29 ms; 128x128 RGB, 3x3: 0.13 ->
    0.075). With a column stride the copy gains nothing (ResNet's 7x7/2 stem: 0.63 -> 0.70)."""
    nsp = len(ks)
    n, c = xp.shape[0], xp.shape[-1]
    if channel_major and strides[-1] == 1 and dilations[-1] == 1:
        xc = scratch("conv_channels_first", xp.size, xp.dtype).reshape(
            (c,) + xp.shape[:-1])
        np.copyto(xc, xp.transpose((xp.ndim - 1, *range(xp.ndim - 1))))  # (np.moveaxis's wrapper)
        sc = xc.strides
        return strided(xc, (*ks, c, n, *outs),
                       (*(sc[2 + i] * dilations[i] for i in range(nsp)), sc[0], sc[1],
                        *(sc[2 + i] * strides[i] for i in range(nsp))))
    st = xp.strides
    sp_out = tuple(st[1 + i] * strides[i] for i in range(nsp))
    sp_tap = tuple(st[1 + i] * dilations[i] for i in range(nsp))
    if channel_major:
        return strided(xp, (*ks, c, n, *outs), (*sp_tap, st[-1], st[0], *sp_out))
    return strided(xp, (n, *outs, *ks, c), (st[0], *sp_out, *sp_tap, st[-1]))


def _pointwise(x, wm, strides, pads, outs, out, epilogue) -> None:
    """A 1x1 convolution: one matmul on the input itself when it is not strided; with an
    epilogue, matmuls over blocks of rows, each finished while in cache."""
    c, co = wm.shape
    v = pad_spatial(x, pads, key="conv_pad")[(slice(None),) + tuple(
        slice(0, (o - 1) * s + 1, s) for o, s in zip(outs, strides))]
    if not v.flags.c_contiguous:  # strided: gathered into scratch, not a fresh copy
        buf = scratch("conv_gather", v.size, v.dtype).reshape(v.shape)
        np.copyto(buf, v)
        v = buf
    xm, ym = v.reshape(-1, c), out.reshape(-1, co)
    m = ym.shape[0]
    step = m if epilogue is None else _gemm_rows(m, c, co, x.itemsize)
    gemm_rows(xm, wm, ym, out, step, epilogue)


def gemm_rows(xm, wm, ym, out, step: int, epilogue, prologue=None) -> None:
    """``ym = xm @ wm`` in blocks of ``step`` rows, ``epilogue(out, start, stop)`` after
    each; the rows split over threads when there is enough work (``runtime/parallel.py``).
    ``prologue(src, dst)``: applied to each block of ``xm`` first, into a scratch block."""
    m, (c, co) = ym.shape[0], wm.shape
    step = max(1, step)

    def run(first: int, last: int) -> None:
        buf = None if prologue is None else \
            scratch("conv_prologue", min(step, last - first) * c, xm.dtype)  # (per thread)
        for r in range(first, last, step):
            e = min(last, r + step)
            xb = xm[r:e]
            if buf is not None:
                xb = buf[:xb.size].reshape(xb.shape)
                prologue(xm[r:e], xb)
            np.matmul(xb, wm, out=ym[r:e])
            if epilogue is not None:
                epilogue(out, r, e)

    parts = parallel.blocks(m, c * co, matmul=True)
    if parts > 1 and prologue is None and parallel.by_columns(m, co, parts):
        parallel.matmul_columns(xm, wm, ym, parts, None if epilogue is None else
                                lambda a, b: epilogue(out, a, b))
    elif parts > 1:
        parallel.run_blocks(run, m, parts)
    else:
        run(0, m)


def _gemm_rows(m: int, k: int, co: int, itemsize: int) -> int:
    """Rows per matmul of a blocked 1x1 convolution: an output block of about
    ``_GEMM_BLOCK_BYTES``, but no fewer than ``_MIN_ROWS`` rows (BLAS packs the weight per
    call: short calls waste it)."""
    rows = max(_MIN_ROWS, _GEMM_BLOCK_BYTES // max(co * itemsize, 1))
    return m if rows * 2 > m else rows


def _grouped_by_depthwise(x, w, strides, dilations, pads, outs, epilogue):
    """A 2-D convolution in groups of ``Cg <= _DEPTHWISE_SUM`` input channels as ``Cg``
    depthwise convolutions summed: the one of input channel ``i`` of every group, with that
    channel's filters [KH, KW, G, O/G]."""
    kh, kw, cg, co = w.shape
    g = x.shape[-1] // cg
    wr = w.reshape(kh, kw, cg, g, co // g)
    out = None
    for i in range(cg):
        y = depthwise_2d(x[..., i::cg], wr[:, :, i], strides, dilations, pads, *outs)
        out = y if out is None else np.add(out, y, out=out)
    if epilogue is not None:
        epilogue(out, 0, out.size // co)
    return out


def _grouped(xp, w, strides, dilations, outs, out, epilogue) -> None:
    """A grouped convolution: [*K, Cg, G, Og] -> [G, K*Cg, Og], one batched matmul per
    block, its patches copied once into [G, rows, K*Cg]."""
    nsp = xp.ndim - 2
    ks, cg, co = w.shape[:nsp], w.shape[-2], w.shape[-1]
    c, n = xp.shape[-1], xp.shape[0]
    g, kk = c // cg, math.prod(ks)
    row = math.prod(outs[1:])
    wm = w.reshape(kk, cg, g, co // g).transpose(2, 0, 1, 3).reshape(g, kk * cg, co // g)
    view = _patches(xp, ks, strides, dilations, outs, False)
    for bs, rs in _blocks(n, outs[0], row, row * kk * c * xp.itemsize):
        p = view[bs, rs]
        m = p.shape[0] * p.shape[1] * row
        # [images, *positions, *taps, G, Cg] -> [G, images, *positions, *taps, Cg]: one copy
        p7 = p.reshape(p.shape[:-1] + (g, cg))
        order = (p7.ndim - 2, *range(p7.ndim - 2), p7.ndim - 1)
        buf = scratch("conv_groups", p.size, xp.dtype).reshape(
            tuple(p7.shape[a] for a in order))
        np.copyto(buf, p7.transpose(order))
        pm = buf.reshape(g, m, kk * cg)
        out[bs, rs] = np.matmul(pm, wm).transpose(1, 0, 2).reshape(out[bs, rs].shape)
        if epilogue is not None:
            start = (bs.start * outs[0] + (rs.start or 0)) * row
            epilogue(out, start, start + m)


def _conv(input, filter, strides, padding, explicit_paddings, data_format, dilations,
          epilogue: Epilogue | None = None):
    first, nsp = _spatial(data_format)
    if input.ndim != nsp + 2 or filter.ndim != nsp + 2:
        raise ValueError(f"expected a rank-{nsp + 2} input and filter for {data_format}, got "
                         f"shapes {list(input.shape)} and {list(filter.shape)}")
    st = _spatial_attr(strides, data_format, "strides")
    dl = _spatial_attr(dilations, data_format, "dilations")
    pairs = explicit_pairs(explicit_paddings, data_format) if padding == "EXPLICIT" else None
    x = _to_last(input, first)
    outs, pads = _geometry(x.shape[1:-1], filter.shape[:nsp], st, dl, padding, pairs)
    trim = trim_taps(x.shape[1:-1], filter.shape[:nsp], st, dl, pads, outs, filter)
    if trim is not None:
        filter, pads = filter[trim[0] + (slice(None),) * 2], trim[1]
    dt = input.dtype
    if low_precision(dt):
        x, filter = x.astype(np.float32), filter.astype(np.float32)
    y = conv_nd(x, filter, st, dl, pads, outs, _check_epilogue(epilogue, first, dt))
    return _from_last(y.astype(dt, copy=False), first)


def _check_epilogue(epilogue, first: bool, dt: np.dtype):
    if epilogue is not None and (first or low_precision(dt)):
        raise ValueError("an epilogue by blocks needs a channels-last float32/float64 conv")
    return epilogue


@op("Conv2D")
def Conv2D(input, filter, *, strides, padding, explicit_paddings=(), data_format="NHWC",
           dilations=(1, 1, 1, 1)):
    """Conv2D: 2-D convolution (grouped when the input depth is a multiple of the filter's)."""
    return _conv(input, filter, strides, padding, explicit_paddings, data_format, dilations)


@op("Conv3D")
def Conv3D(input, filter, *, strides, padding, data_format="NDHWC", dilations=(1, 1, 1, 1, 1)):
    """Conv3D: 3-D convolution."""
    return _conv(input, filter, strides, padding, (), data_format, dilations)


def _depthwise(input, filter, strides, padding, explicit_paddings, data_format, dilations,
               epilogue: Epilogue | None = None, tiles: dict | None = None):
    first, _ = _spatial(data_format)
    if input.ndim != 4 or filter.ndim != 4:
        raise ValueError(f"expected a rank-4 input and filter, got shapes {list(input.shape)} "
                         f"and {list(filter.shape)}")
    st = _spatial_attr(strides, data_format, "strides")
    dl = _spatial_attr(dilations, data_format, "dilations")
    pairs = explicit_pairs(explicit_paddings, data_format) if padding == "EXPLICIT" else None
    x = _to_last(input, first)
    kh, kw, c, m = filter.shape
    if x.shape[-1] != c:
        raise ValueError(f"input depth {x.shape[-1]} != filter depth {c}")
    (oh, ow), pads = _geometry(x.shape[1:3], (kh, kw), st, dl, padding, pairs)
    w = filter
    trim = trim_taps(x.shape[1:3], (kh, kw), st, dl, pads, (oh, ow), w)
    if trim is not None:  # (the tiled weights of the cut filter are kept apart)
        w, pads = w[trim[0]], trim[1]
        if tiles is not None:
            tiles = tiles.setdefault(trim_key(trim[0]), {})
    dt = input.dtype
    if low_precision(dt):
        x, w = x.astype(np.float32), w.astype(np.float32)
    out = depthwise_2d(x, w, st, dl, pads, oh, ow, _check_epilogue(epilogue, first, dt), tiles)
    return _from_last(out.astype(dt, copy=False), first)


@op("DepthwiseConv2dNative")
def DepthwiseConv2dNative(input, filter, *, strides, padding, explicit_paddings=(),
                          data_format="NHWC", dilations=(1, 1, 1, 1)):
    """DepthwiseConv2dNative: each input channel convolved with its own ``M`` filters."""
    return _depthwise(input, filter, strides, padding, explicit_paddings, data_format,
                      dilations)


# --- input gradients (transposed convolutions) --------------------------------------------------


def _input_shape(sizes, data_format: str, filter, out_backprop) -> list[int]:
    """The full channels-last input shape from an ``input_sizes`` vector."""
    first, nsp = _spatial(data_format)
    s = [int(v) for v in np.asarray(sizes).reshape(-1)]
    if len(s) == nsp:  # spatial dims only
        return [out_backprop.shape[0], *s, filter.shape[-2]]
    if len(s) != nsp + 2:
        raise ValueError(f"input_sizes must have {nsp} or {nsp + 2} entries, got {s}")
    return [s[0], *s[2:], s[1]] if first else s


def conv_transpose_nd(shape, w, dy, strides, dilations, pads) -> np.ndarray:
    """The gradient of :func:`conv_nd` with respect to its input of ``shape`` (channels-last)."""
    nsp = len(shape) - 2
    ks, c, co = w.shape[:nsp], w.shape[-2], w.shape[-1]
    if c != shape[-1]:
        raise ValueError(f"input depth {shape[-1]} != filter depth {c} (grouped transposed "
                         "convolutions are not supported)")
    n, outs = dy.shape[0], dy.shape[1:-1]
    kk = math.prod(ks)
    size = [max(d + lo + hi, (o - 1) * s + (k - 1) * dl + 1) if o else d + lo + hi
            for d, (lo, hi), o, s, k, dl in zip(shape[1:-1], pads, outs, strides, ks, dilations)]
    dt = np.result_type(dy.dtype, w.dtype)
    check_array((n, *size, c), dt, "the padded gradient")  # (a hostile dilation or padding)
    stride_is_kernel = all(s == k and dl == 1 and z == o * k for s, k, dl, z, o in
                           zip(strides, ks, dilations, size, outs))
    if dy.size and kk and c and dt in _FLOATS and not stride_is_kernel and \
            all(d == 1 for d in dilations) and math.prod(shape):
        w = w.astype(dt, copy=False)
        if c < _TAPS_BELOW:
            return _transpose_by_taps(shape, w, dy.astype(dt, copy=False), strides, pads, size)
        filters = _phase_filters(w, strides)
        if filters is not None and all(k % s == 0 for k, s in zip(ks, strides)):
            dx = _transpose_stacked(shape, dy.astype(dt, copy=False), strides, pads,
                                    _stacked_filter(w, strides, filters))
            if dx is not None:
                return dx
        if filters is not None:
            return _transpose_by_phases(shape, w, dy.astype(dt, copy=False), strides, pads,
                                        filters)
    if not (dy.size and kk and c):
        dxp = np.zeros((n, *size, c), dtype=dt)
    else:
        col = (dy.reshape(-1, co) @ w.reshape(kk * c, co).T).reshape(n, *outs, *ks, c)
        if stride_is_kernel:
            # stride = kernel (Conv2DTranspose upsampling by 2 with a 2 x 2 kernel): each
            # output pixel gets exactly one tap, so the taps interleave in one copy instead
            # of strided additions into zeros (the same values, but for a -0.0 the sum made
            # +0.0)
            perm = [0] + [p for i in range(nsp) for p in (1 + i, 1 + nsp + i)] + [1 + 2 * nsp]
            dxp = np.ascontiguousarray(col.transpose(perm)).reshape(n, *size, c)
        else:
            dxp = np.zeros((n, *size, c), dtype=dt)
            for tap in np.ndindex(*ks):
                sl = tuple(slice(t * dl, t * dl + (o - 1) * s + 1, s)
                           for t, o, s, dl in zip(tap, outs, strides, dilations))
                dxp[(slice(None),) + sl] += col[(slice(None),) * (1 + nsp) + tap]
    return dxp[(slice(None),) + tuple(slice(lo, lo + d) for d, (lo, _) in
                                      zip(shape[1:-1], pads))]


#: transposed convolutions to fewer channels than this go by taps (``_transpose_by_taps``)
_TAPS_BELOW = 8


def _transpose_by_taps(shape, w, dy, strides, pads, size) -> np.ndarray:
    """:func:`conv_transpose_nd` to few output channels C (an RGB or mask layer), unit
    dilations: every tap's products at once, ``[*K, C] x [O]`` by the [O, pixels] ``dy``
    transposed (one product whose columns are all the output's channels and taps, where a
    phase's convolution would make a product of C columns from nine times the patches), then
    each tap's [C, pixels] plane added into a channels-first output at its positions, which
    is transposed to channels-last at the end. A DCGAN generator's 5 x 5, stride-2 layer to 64 x
    64 x 3 at batch 8: 2.41 ms by phases, 1.47 by taps; 128 x 128 x 2 from 16 channels, 3 x 3:
    3.99 -> 1.81 (at 8 channels the two are level, at 16 phases take 0.56 of the time).
    ``size``: the padded output's spatial dims (``conv_transpose_nd``'s)."""
    nsp = len(shape) - 2
    ks, c, co = w.shape[:nsp], w.shape[-2], w.shape[-1]
    n, outs = dy.shape[0], dy.shape[1:-1]
    kk, m = math.prod(ks), math.prod(dy.shape[:-1])
    cols = scratch("transpose_taps", kk * c * m, dy.dtype).reshape(kk * c, m)
    np.matmul(w.reshape(kk * c, co), dy.reshape(m, co).T, out=cols)
    cols = cols.reshape(*ks, c, n, *outs)
    dxp = scratch("transpose_sums", c * n * math.prod(size), dy.dtype).reshape(c, n, *size)
    dxp[...] = 0
    lead = (slice(None), slice(None))
    for tap in np.ndindex(*ks):
        dxp[lead + tuple(slice(t, t + (o - 1) * s + 1, s)
                         for t, o, s in zip(tap, outs, strides))] += cols[tap]
    dx = output(tuple(shape), dy.dtype)
    np.copyto(dx, np.moveaxis(dxp[lead + tuple(slice(lo, lo + d) for d, (lo, _) in
                                               zip(shape[1:-1], pads))], 0, -1))
    return dx


def _phase_filters(w: np.ndarray, strides) -> dict | None:
    """The dict of phase -> filter that ``_transpose_by_phases`` fills for ``w``: kept with a
    constant filter (``runtime.constants.derived``), so the copies are made once (a DCGAN
    generator's first 5 x 5 x 128 x 256 filter, copied on each call, made it 1.4x slower at
    batch 1), else fresh. None for a filter holding an inf or a NaN: the phases' convolutions
    multiply it by the zeros padding ``dy`` too (0 * inf is NaN), where the transposed
    convolution has no such term."""
    return derived(w, ("phases", tuple(strides)), lambda: {} if all_finite(w) else None)


def _transpose_by_phases(shape, w, dy, strides, pads, filters: dict) -> np.ndarray:
    """:func:`conv_transpose_nd` with unit dilations, by phases: along each axis, the output
    positions ``q = m s + r`` (in the padded input's coordinates) receive the taps ``r, r + s,
    r + 2 s...`` only, ``dx[m s + r] = sum_j dy[m - j] w[r + j s]``, a unit-stride
    convolution of ``dy`` (zero-padded) by that sub-filter, flipped, its channel axes swapped.
    Each of the ``prod(s)`` phases is one :func:`conv_nd` (patches and one matrix product)
    whose result is copied into every ``s``-th output position; a phase no tap reaches is
    zero. ``filters`` (``_phase_filters``) keeps the sub-filters.

    The scatter it replaces added each tap's product into the output through strided views,
    runs of C values: a DCGAN generator's 5 x 5, stride-2 layers (25 additions each) took
    1.5x TensorFlow's time at batch 8, its RGB layer 3.6 ms, 2.5 by phases."""
    nsp = len(shape) - 2
    ks, outs = w.shape[:nsp], dy.shape[1:-1]
    dx = output(tuple(shape), dy.dtype)
    for phase in np.ndindex(*strides):
        src, dst, pad, sub = [slice(None)], [slice(None)], [], []
        reached = True
        for r, s, k, d, (lo, _), o in zip(phase, strides, ks, shape[1:-1], pads, outs):
            taps = -(-(k - r) // s) if r < k else 0  # (J: r + j s < k)
            m0, m1 = -(-(lo - r) // s), (lo + d - 1 - r) // s  # (q inside the crop)
            dst.append(slice(m0 * s + r - lo, None, s))
            first = m0 - taps + 1  # (the first row of dy the windows read)
            reached = reached and taps > 0 and m0 <= m1 and m1 >= 0 and first < o
            if reached:
                a, b = max(0, first), min(o, m1 + 1)
                src.append(slice(a, b))
                pad.append((a - first, m1 + 1 - b))
                sub.append(slice(r + (taps - 1) * s, None if r == 0 else r - 1, -s))
        view = dx[tuple(dst)]
        if not reached:
            view[...] = 0
            continue
        wf = filters.get(phase)
        if wf is None:
            wf = filters[phase] = np.ascontiguousarray(w[tuple(sub)].swapaxes(-1, -2))
        view[...] = conv_nd(dy[tuple(src)], wf, [1] * nsp, [1] * nsp, pad,
                            list(view.shape[1:-1]))
    return dx


def _stacked_filter(w: np.ndarray, strides, filters: dict) -> np.ndarray:
    """The filter of ``_transpose_stacked`` for ``w`` [*K, C, O]: [*T, O, prod(s) x C] with
    T = K / s, phase r's tap i (counted from the oldest row of its window) ``w[r + (T - 1 -
    i) s]`` transposed; kept in ``filters`` (``_phase_filters``: made once for a constant
    filter)."""
    wc = filters.get("stacked")
    if wc is None:
        nsp = len(strides)
        ks, c, co = w.shape[:nsp], w.shape[-2], w.shape[-1]
        ts = [k // s for k, s in zip(ks, strides)]
        wc = np.zeros((*ts, co, *strides, c), w.dtype)
        for phase in np.ndindex(*strides):
            for tap in np.ndindex(*ts):
                src = tuple(r + (t - 1 - i) * s for r, t, i, s in zip(phase, ts, tap, strides))
                wc[tap + (slice(None),) + phase] = w[src].T
        wc = filters["stacked"] = wc.reshape(*ts, co, math.prod(strides) * c)
    return wc


def _transpose_stacked(shape, dy, strides, pads, wc) -> np.ndarray | None:
    """:func:`conv_transpose_nd` with unit dilations where the strides divide the kernel
    (every phase receives T = K / s taps): all phases in one convolution of ``dy`` by the
    phases' sub-filters side by side (``_stacked_filter``, prod(s) x C columns), each
    output position of a phase then copied from its columns at grid position m (the window
    ``dy[m - T + 1 .. m]``, zero outside). The same products as ``_transpose_by_phases``
    (its pads are the same zeros) but in one product whose columns are prod(s) times as
    many: BLAS runs narrow products at half speed. A 4 x 4, stride-2 transposed convolution
    of 64 x 64 x 32 to 128 x 128 x 16: 1.43 -> 0.81 ms; 32 x 32 x 64 to 64 x 64 x 32: 0.85 ->
    0.58; at batch 8, 16 x 16 x 128 to 32 x 32 x 64: 4.9 -> 4.1. (Where s does not divide
    K the phases' windows differ: padded with zero taps, a 5 x 5, stride-2 layer did 36
    taps' work for 25 and took 1.18x the time by phases.) None for a crop beyond every
    window (``_transpose_by_phases`` then)."""
    nsp = len(shape) - 2
    ts, outs = wc.shape[:nsp], dy.shape[1:-1]
    src, cpads, grid, spans = [slice(None)], [], [], []
    for d, (lo, _), s, t, o in zip(shape[1:-1], pads, strides, ts, outs):
        # phase r's grid positions m: its output positions q = m s + r inside the crop
        per = [(-(-(lo - r) // s), (lo + d - 1 - r) // s) for r in range(s)]
        m0, m1 = min(a for a, _ in per), max(b for _, b in per)
        a, b = max(0, m0 - t + 1), max(0, min(o, m1 + 1))
        if a > b:  # (a crop past all of dy's windows: by phases)
            return None
        src.append(slice(a, b))
        cpads.append((a - (m0 - t + 1), m1 + 1 - b))
        grid.append(m1 - m0 + 1)
        spans.append((m0, per))
    z = conv_nd(dy[tuple(src)], wc, [1] * nsp, [1] * nsp, cpads, grid)
    z = z.reshape(z.shape[0], *grid, *strides, shape[-1])
    dx = output(tuple(shape), dy.dtype)
    for phase in np.ndindex(*strides):
        dst, sel = [slice(None)], [slice(None)]
        for r, s, (m0, per), (lo, _) in zip(phase, strides, spans, pads):
            a, b = per[r]
            dst.append(slice(a * s + r - lo, None, s))
            sel.append(slice(a - m0, b - m0 + 1))
        np.copyto(dx[tuple(dst)], z[tuple(sel) + phase])
    return dx


def _conv_backprop_input(sizes, filter, out_backprop, strides, padding, explicit_paddings,
                         data_format, dilations):
    first, nsp = _spatial(data_format)
    if filter.ndim != nsp + 2 or out_backprop.ndim != nsp + 2:
        raise ValueError(f"expected a rank-{nsp + 2} filter and out_backprop, got shapes "
                         f"{list(filter.shape)} and {list(out_backprop.shape)}")
    shape = _input_shape(sizes, data_format, filter, out_backprop)
    st = _spatial_attr(strides, data_format, "strides")
    dl = _spatial_attr(dilations, data_format, "dilations")
    pairs = explicit_pairs(explicit_paddings, data_format) if padding == "EXPLICIT" else None
    dy = _to_last(out_backprop, first)
    outs, pads = _geometry(shape[1:-1], filter.shape[:nsp], st, dl, padding, pairs)
    if dy.shape[0] != shape[0]:
        raise ValueError(f"input and out_backprop must have the same batch size: input_sizes "
                         f"says {shape[0]}, out_backprop has {dy.shape[0]}")
    if list(dy.shape[1:-1]) != outs:
        raise ValueError(f"out_backprop spatial shape {list(dy.shape[1:-1])} does not match "
                         f"the convolution output {outs} of input shape {shape}")
    dt = out_backprop.dtype
    w = filter
    if low_precision(dt):
        dy, w = dy.astype(np.float32), w.astype(np.float32)
    dx = conv_transpose_nd(shape, w, dy, st, dl, pads)
    return _from_last(dx.astype(dt, copy=False), first)


@op("Conv2DBackpropInput")
def Conv2DBackpropInput(input_sizes, filter, out_backprop, *, strides, padding,
                        explicit_paddings=(), data_format="NHWC", dilations=(1, 1, 1, 1)):
    """Conv2DBackpropInput: the gradient of Conv2D with respect to its input (a transposed
    convolution)."""
    return _conv_backprop_input(input_sizes, filter, out_backprop, strides, padding,
                                explicit_paddings, data_format, dilations)


@op("Conv3DBackpropInputV2")
def Conv3DBackpropInputV2(input_sizes, filter, out_backprop, *, strides, padding,
                          data_format="NDHWC", dilations=(1, 1, 1, 1, 1)):
    """Conv3DBackpropInputV2: the gradient of Conv3D with respect to its input."""
    return _conv_backprop_input(input_sizes, filter, out_backprop, strides, padding, (),
                                data_format, dilations)


@op("DepthwiseConv2dNativeBackpropInput")
def DepthwiseConv2dNativeBackpropInput(input_sizes, filter, out_backprop, *, strides, padding,
                                       explicit_paddings=(), data_format="NHWC",
                                       dilations=(1, 1, 1, 1)):
    """DepthwiseConv2dNativeBackpropInput: the gradient of DepthwiseConv2dNative with respect
    to its input.

    Like TF's CPU kernel, this ignores ``dilations``.
    """
    first, _ = _spatial(data_format)
    shape = _input_shape(input_sizes, data_format, filter, out_backprop)
    st = _spatial_attr(strides, data_format, "strides")
    dl = [1, 1]
    pairs = explicit_pairs(explicit_paddings, data_format) if padding == "EXPLICIT" else None
    kh, kw, c, m = filter.shape
    (oh, ow), pads = _geometry(shape[1:3], (kh, kw), st, dl, padding, pairs)
    dy = _to_last(out_backprop, first)
    if list(dy.shape[1:3]) != [oh, ow] or dy.shape[-1] != c * m or c != shape[-1] or \
            dy.shape[0] != shape[0]:
        raise ValueError(f"out_backprop shape {list(dy.shape)} does not match the depthwise "
                         f"convolution of input shape {shape} by filter {list(filter.shape)}")
    dt = out_backprop.dtype
    w = filter
    if low_precision(dt):
        dy, w = dy.astype(np.float32), w.astype(np.float32)
    # a depthwise conv is a grouped conv with one input channel per group: transpose per tap
    dy5 = dy.reshape(dy.shape[0], oh, ow, c, m)
    (sh, sw), (dh, dw) = st, dl
    size = [max(d + lo + hi, (o - 1) * s + (k - 1) * d_ + 1)
            for d, (lo, hi), o, s, k, d_ in zip(shape[1:3], pads, (oh, ow), st, (kh, kw), dl)]
    rt = np.result_type(dy.dtype, w.dtype)
    check_array((shape[0], *size, c), rt, "the padded gradient")  # (hostile paddings)
    dxp = np.zeros((shape[0], *size, c), dtype=rt)
    if dy.size:
        for i in range(kh):
            for j in range(kw):
                dxp[:, i * dh: i * dh + (oh - 1) * sh + 1: sh,
                    j * dw: j * dw + (ow - 1) * sw + 1: sw] += (dy5 * w[i, j]).sum(-1)
    (t, _), (left, _) = pads
    dx = dxp[:, t:t + shape[1], left:left + shape[2]]
    return _from_last(dx.astype(dt, copy=False), first)
