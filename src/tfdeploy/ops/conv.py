"""Convolution kernels: Conv2D, Conv3D, DepthwiseConv2dNative and their input gradients.

Convolutions run channels-last; channels-first inputs are transposed in and out. A conv is one
matmul over im2col patches (an ``as_strided`` view copied once, in blocks when it is large),
which was faster than a loop over kernel taps in benchmarks on 3x3 and 7x7 kernels.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..registry import op
from ._util import low_precision

#: im2col blocks are kept under this many bytes
_BLOCK_BYTES = 1 << 25


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


def pad_spatial(x: np.ndarray, pads, value=0) -> np.ndarray:
    """``x`` (channels-last) with its spatial dims padded by ``pads`` [(lo, hi), ...]."""
    if not any(lo or hi for lo, hi in pads):
        return x
    shape = (x.shape[0],) + tuple(d + lo + hi for d, (lo, hi) in
                                  zip(x.shape[1:-1], pads)) + (x.shape[-1],)
    out = np.full(shape, value, dtype=x.dtype)
    out[(slice(None),) + tuple(slice(lo, lo + d) for d, (lo, _) in
                               zip(x.shape[1:-1], pads))] = x
    return out


def _to_last(x, first):
    return np.moveaxis(x, 1, -1) if first else x


def _from_last(x, first):
    return np.ascontiguousarray(np.moveaxis(x, -1, 1)) if first else x


def _geometry(x_shape, k_shape, strides, dilations, padding, pairs):
    outs, pads = [], []
    for i, (n, k, s, d) in enumerate(zip(x_shape, k_shape, strides, dilations)):
        o, lo, hi = out_and_pads(n, k, s, d, padding, pairs[i] if pairs else (0, 0))
        outs.append(o)
        pads.append((lo, hi))
    return outs, pads


def conv_nd(x: np.ndarray, w: np.ndarray, strides, dilations, pads, outs) -> np.ndarray:
    """Channels-last N-d convolution of ``x`` [N, *S, C] with ``w`` [*K, C/G, O] (G groups)."""
    nsp = x.ndim - 2
    ks, cg, co = w.shape[:nsp], w.shape[-2], w.shape[-1]
    c = x.shape[-1]
    if cg == 0 or c % cg or co % (c // cg):
        raise ValueError(f"input depth {c} must be a multiple of the filter depth {cg}, and "
                         f"the output channels {co} a multiple of the number of groups")
    g = c // cg
    xp = pad_spatial(x, pads)
    n = x.shape[0]
    kk = int(np.prod(ks, dtype=np.int64))
    out = np.empty((n, *outs, co), dtype=np.result_type(x.dtype, w.dtype))
    if out.size == 0:
        out[...] = 0
        return out
    if kk * cg == 0:
        out[...] = 0
        return out
    if all(k == 1 for k in ks) and g == 1:
        # 1x1 convolution: a strided view then a plain matmul
        v = xp[(slice(None),) + tuple(slice(0, (o - 1) * s + 1, s)
                                      for o, s in zip(outs, strides))]
        return (v.reshape(-1, c) @ w.reshape(c, co)).reshape(out.shape)
    st = xp.strides
    view = as_strided(xp, (n, *outs, *ks, c),
                      (st[0], *(st[1 + i] * strides[i] for i in range(nsp)),
                       *(st[1 + i] * dilations[i] for i in range(nsp)), st[-1]),
                      writeable=False)
    if g == 1:
        wm = w.reshape(kk * c, co)
    else:
        # [*K, Cg, G, Og] -> [G, K*Cg, Og]
        wm = w.reshape(kk, cg, g, co // g).transpose(2, 0, 1, 3).reshape(g, kk * cg, co // g)
    row = int(np.prod(outs[1:], dtype=np.int64)) * kk * c * xp.itemsize
    block = max(1, _BLOCK_BYTES // max(row * n, 1))
    for r0 in range(0, outs[0], block):
        r1 = min(outs[0], r0 + block)
        p = view[:, r0:r1]
        m = p.shape[0] * int(np.prod(p.shape[1:1 + nsp], dtype=np.int64))
        if g == 1:
            res = p.reshape(m, kk * c) @ wm
        else:
            pm = p.reshape(m, kk, g, cg).transpose(2, 0, 1, 3).reshape(g, m, kk * cg)
            res = np.matmul(pm, wm).transpose(1, 0, 2).reshape(m, co)
        out[:, r0:r1] = res.reshape(out[:, r0:r1].shape)
    return out


def _conv(input, filter, strides, padding, explicit_paddings, data_format, dilations):
    first, nsp = _spatial(data_format)
    if input.ndim != nsp + 2 or filter.ndim != nsp + 2:
        raise ValueError(f"expected a rank-{nsp + 2} input and filter for {data_format}, got "
                         f"shapes {list(input.shape)} and {list(filter.shape)}")
    st = _spatial_attr(strides, data_format, "strides")
    dl = _spatial_attr(dilations, data_format, "dilations")
    pairs = explicit_pairs(explicit_paddings, data_format) if padding == "EXPLICIT" else None
    x = _to_last(input, first)
    outs, pads = _geometry(x.shape[1:-1], filter.shape[:nsp], st, dl, padding, pairs)
    dt = input.dtype
    if low_precision(dt):
        x, filter = x.astype(np.float32), filter.astype(np.float32)
    y = conv_nd(x, filter, st, dl, pads, outs)
    return _from_last(y.astype(dt, copy=False), first)


@op("Conv2D")
def Conv2D(input, filter, *, strides, padding, explicit_paddings=(), data_format="NHWC",
           dilations=(1, 1, 1, 1)):
    """Conv2D: 2-D convolution (grouped when the input depth is a multiple of the filter's)."""
    return _conv(input, filter, strides, padding, explicit_paddings, data_format, dilations)


@op("Conv3D")
def Conv3D(input, filter, *, strides, padding, data_format="NDHWC", dilations=(1, 1, 1, 1, 1)):
    """Conv3D: 3-D convolution."""
    return _conv(input, filter, strides, padding, (), data_format, dilations)


@op("DepthwiseConv2dNative")
def DepthwiseConv2dNative(input, filter, *, strides, padding, explicit_paddings=(),
                          data_format="NHWC", dilations=(1, 1, 1, 1)):
    """DepthwiseConv2dNative: each input channel convolved with its own ``M`` filters."""
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
    dt = input.dtype
    w = filter
    if low_precision(dt):
        x, w = x.astype(np.float32), w.astype(np.float32)
    xp = pad_spatial(x, pads)
    out = np.zeros((x.shape[0], oh, ow, c, m), dtype=np.result_type(x.dtype, w.dtype))
    if out.size:
        (sh, sw), (dh, dw) = st, dl
        tmp = np.empty_like(out)
        for i in range(kh):
            for j in range(kw):
                v = xp[:, i * dh: i * dh + (oh - 1) * sh + 1: sh,
                       j * dw: j * dw + (ow - 1) * sw + 1: sw, :, None]
                np.multiply(v, w[i, j], out=tmp)
                out += tmp
    y = out.reshape(x.shape[0], oh, ow, c * m).astype(dt, copy=False)
    return _from_last(y, first)


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
    kk = int(np.prod(ks, dtype=np.int64))
    size = [max(d + lo + hi, (o - 1) * s + (k - 1) * dl + 1) if o else d + lo + hi
            for d, (lo, hi), o, s, k, dl in zip(shape[1:-1], pads, outs, strides, ks, dilations)]
    dxp = np.zeros((n, *size, c), dtype=np.result_type(dy.dtype, w.dtype))
    if dy.size and kk and c:
        col = (dy.reshape(-1, co) @ w.reshape(kk * c, co).T).reshape(n, *outs, *ks, c)
        for tap in np.ndindex(*ks):
            sl = tuple(slice(t * dl, t * dl + (o - 1) * s + 1, s)
                       for t, o, s, dl in zip(tap, outs, strides, dilations))
            dxp[(slice(None),) + sl] += col[(slice(None),) * (1 + nsp) + tap]
    return dxp[(slice(None),) + tuple(slice(lo, lo + d) for d, (lo, _) in
                                      zip(shape[1:-1], pads))]


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
    if list(dy.shape[1:-1]) != outs or dy.shape[0] != shape[0]:
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
    if list(dy.shape[1:3]) != [oh, ow] or dy.shape[-1] != c * m or c != shape[-1]:
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
    dxp = np.zeros((shape[0], *size, c), dtype=np.result_type(dy.dtype, w.dtype))
    if dy.size:
        for i in range(kh):
            for j in range(kw):
                dxp[:, i * dh: i * dh + (oh - 1) * sh + 1: sh,
                    j * dw: j * dw + (ow - 1) * sw + 1: sw] += (dy5 * w[i, j]).sum(-1)
    (t, _), (left, _) = pads
    dx = dxp[:, t:t + shape[1], left:left + shape[2]]
    return _from_last(dx.astype(dt, copy=False), first)
