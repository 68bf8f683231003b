"""Image kernels: colour space and adjustments, patches, projective transforms.

Resizing lives in image_resize.py, non-max suppression in image_nms.py.
"""

from __future__ import annotations

import math

import numpy as np

from tfdeploy.kernels.common import low_precision, op, round_half_away
from tfdeploy.runtime.limits import check_array

_F32 = np.float32


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(_F32) if low_precision(dtype) else dtype


def _check_rgb(images: np.ndarray, what: str = "images") -> None:
    if images.ndim < 1 or images.shape[-1] != 3:
        raise ValueError(f"{what} must have 3 channels in the last dimension, "
                         f"got shape {images.shape}")


# -- colour spaces --------------------------------------------------------------------------

@op("RGBToHSV")
def RGBToHSV(images):
    """RGBToHSV: RGB in [0, 1] to hue, saturation, value (last dimension of size 3)."""
    _check_rgb(images)
    t = images.dtype
    x = images.astype(_compute_dtype(t), copy=False)
    ct = x.dtype.type
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = np.max(x, axis=-1)
    rng = v - np.min(x, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(v > 0, rng / v, ct(0))
        norm = (ct(1) / rng) * (ct(1) / ct(6))
        h = np.where(r == v, norm * (g - b),
                     np.where(g == v, norm * (b - r) + ct(2) / ct(6),
                              norm * (r - g) + ct(4) / ct(6)))
    h = np.where(rng > 0, h, ct(0))
    h = np.where(h < 0, h + ct(1), h)
    return np.stack([h, s, v], axis=-1).astype(t, copy=False)


@op("HSVToRGB")
def HSVToRGB(images):
    """HSVToRGB: hue, saturation, value (last dimension of size 3) to RGB."""
    _check_rgb(images)
    t = images.dtype
    x = images.astype(_compute_dtype(t), copy=False)
    ct = x.dtype.type
    h, s, v = x[..., 0], x[..., 1], x[..., 2]
    dh = h * ct(6)
    dr = np.clip(np.abs(dh - ct(3)) - ct(1), ct(0), ct(1))
    dg = np.clip(-np.abs(dh - ct(2)) + ct(2), ct(0), ct(1))
    db = np.clip(-np.abs(dh - ct(4)) + ct(2), ct(0), ct(1))
    one_s = -s + ct(1)
    out = np.stack([(one_s + s * dr) * v, (one_s + s * dg) * v, (one_s + s * db) * v], axis=-1)
    return out.astype(t, copy=False)


# -- adjustments ----------------------------------------------------------------------------

def _check_image(images: np.ndarray) -> None:
    if images.ndim < 3:
        raise ValueError(f"images must be at least 3-D [..., height, width, channels], "
                         f"got shape {images.shape}")


@op("AdjustContrastv2")
def AdjustContrastv2(images, contrast_factor):
    """AdjustContrastv2: (x - mean) * contrast_factor + mean, mean over height and width."""
    _check_image(images)
    t = images.dtype
    if images.size == 0:  # (no pixels: no mean, whose channels alone may be gigabytes)
        return np.empty(images.shape, t)
    x = images.astype(_F32, copy=False)
    h, w = images.shape[-3], images.shape[-2]
    mean = (np.sum(x, axis=(-3, -2), keepdims=True) / _F32(h * w)).astype(t)
    adjusted = (images - mean).astype(_F32) * _F32(contrast_factor)
    return (mean + adjusted.astype(t)).astype(t, copy=False)


def _rgb_to_hsv32(r, g, b):
    """TF's scalar rgb_to_hsv of AdjustSaturation, vectorised (float32)."""
    vv = np.maximum(r, np.maximum(g, b))
    rng = vv - np.minimum(r, np.minimum(g, b))
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(vv > 0, rng / vv, _F32(0))
        norm = _F32(1) / (_F32(6) * rng)
        hh = np.where(r == vv, norm * (g - b),
                      np.where(g == vv,
                               ((norm * (b - r)).astype(np.float64) + 2.0 / 6.0).astype(_F32),
                               ((norm * (r - g)).astype(np.float64) + 4.0 / 6.0).astype(_F32)))
    hh = np.where(rng <= 0, _F32(0), hh)
    hh = np.where(hh < 0, hh + _F32(1), hh)
    return hh, s, vv


def _wrap_loop(x: np.ndarray, low_ok, high_ok, step) -> np.ndarray:
    """Repeat ``x += step`` / ``x -= step`` like TF's while loops (finite values only)."""
    fin = np.isfinite(x)
    while True:
        m = fin & ~low_ok(x)
        if not m.any():
            break
        x = np.where(m, x + step, x)
    while True:
        m = fin & ~high_ok(x)
        if not m.any():
            break
        x = np.where(m, x - step, x)
    return x


def _hsv_to_rgb32(h, s, v):
    c = s * v
    m = v - c
    dh = h * _F32(6)
    cat = np.where(np.isfinite(dh), dh, 0).astype(np.int64)
    fmodu = _wrap_loop(dh, lambda a: a > 0, lambda a: a < 2, _F32(2))
    x = c * (_F32(1) - np.abs(fmodu - _F32(1)))
    z = np.zeros_like(c)
    rr = np.select([cat == 0, cat == 1, cat == 4, cat == 5], [c, x, x, c], z)
    gg = np.select([cat == 0, cat == 1, cat == 2, cat == 3], [x, c, c, x], z)
    bb = np.select([cat == 2, cat == 3, cat == 4, cat == 5], [x, c, c, x], z)
    return rr + m, gg + m, bb + m


@op("AdjustSaturation")
def AdjustSaturation(images, scale):
    """AdjustSaturation: scale the HSV saturation of RGB images, clipped to [0, 1]."""
    _check_image(images)
    _check_rgb(images)
    t = images.dtype
    x = images.astype(_F32, copy=False)
    h, s, v = _rgb_to_hsv32(x[..., 0], x[..., 1], x[..., 2])
    s = np.minimum(_F32(1), np.maximum(_F32(0), s * _F32(scale)))
    return np.stack(_hsv_to_rgb32(h, s, v), axis=-1).astype(t, copy=False)


@op("AdjustHue")
def AdjustHue(images, delta):
    """AdjustHue: rotate the hue of RGB images by delta (a fraction of the colour circle)."""
    _check_image(images)
    _check_rgb(images)
    t = images.dtype
    x = images.astype(_F32, copy=False)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    rg = r < g
    conds = [rg & (b < r), rg & (b > g), rg, b < g, b > r]
    vmax = np.select(conds, [g, b, g, r, b], r)
    vmid = np.select(conds, [r, g, b, g, r], b)
    vmin = np.select(conds, [b, r, r, b, g], g)
    cat = np.select(conds, [1, 3, 2, 0, 4], 5)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (vmid - vmin) / (vmax - vmin)
    hue = cat.astype(_F32) + np.where(cat % 2 == 0, ratio, _F32(1) - ratio)
    hue = np.where(vmax == vmin, _F32(0), hue)
    hue = hue + _F32(delta) * _F32(6)
    hue = _wrap_loop(hue, lambda a: a >= 0, lambda a: a < 6, _F32(6))
    cat = np.where(np.isfinite(hue), hue, 0).astype(np.int64)
    ratio = hue - cat.astype(_F32)
    ratio = np.where(cat % 2 == 0, ratio, _F32(1) - ratio)
    vmid = vmin + ratio * (vmax - vmin)
    out_r = np.select([cat == 0, cat == 1, cat == 2, cat == 3, cat == 4],
                      [vmax, vmid, vmin, vmin, vmid], vmax)
    out_g = np.select([cat == 0, cat == 1, cat == 2, cat == 3, cat == 4],
                      [vmid, vmax, vmax, vmid, vmin], vmin)
    out_b = np.select([cat == 0, cat == 1, cat == 2, cat == 3, cat == 4],
                      [vmin, vmin, vmid, vmax, vmax], vmid)
    return np.stack([out_r, out_g, out_b], axis=-1).astype(t, copy=False)


# -- patches --------------------------------------------------------------------------------

def _patch_geometry(size: int, k: int, stride: int, rate: int, padding: str):
    keff = k + (k - 1) * (rate - 1)
    if padding == "VALID":
        out = max(-(-(size - keff + 1) // stride), 0)
        return out, 0
    if padding == "SAME":
        out = -(-size // stride)
        return out, max((out - 1) * stride + keff - size, 0) // 2
    raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")


def _extract_patches(x: np.ndarray, ksizes, strides, rates, padding: str) -> np.ndarray:
    """Patches over the spatial axes 1..n of x [batch, *spatial, depth] (taps, then depth)."""
    spatial = x.shape[1:-1]
    geo = [_patch_geometry(s, k, st, r, padding)
           for s, k, st, r in zip(spatial, ksizes, strides, rates)]
    outs = [g[0] for g in geo]
    # (hostile ksizes or rates: the patches and the padded input within the tensor limit
    # before the loop over the taps)
    shape = (x.shape[0], *outs, math.prod(ksizes) * x.shape[-1])
    check_array(shape, x.dtype, "the patches")
    if not math.prod(shape):  # (no loop over a hostile window's taps for nothing)
        return np.zeros(shape, x.dtype)
    # pad enough on both sides that every tap of every output is in range
    pads = [(0, 0)]
    for s, (o, before), k, st, r in zip(spatial, geo, ksizes, strides, rates):
        need = (o - 1) * st + (k - 1) * r + 1 if o > 0 else 0
        pads.append((before, max(need - before - s, 0)))
    pads.append((0, 0))
    check_array([d + lo + hi for d, (lo, hi) in zip(x.shape, pads)], x.dtype, "the padded input")
    xp = np.pad(x, pads) if any(p != (0, 0) for p in pads) else x
    taps = []
    for tap in np.ndindex(*ksizes):
        sl = [slice(None)]
        for t, o, st, r in zip(tap, outs, strides, rates):
            sl.append(slice(t * r, t * r + (o - 1) * st + 1, st) if o > 0 else slice(0, 0))
        sl.append(slice(None))
        taps.append(xp[tuple(sl)])
    out = np.stack(taps, axis=-2)  # [batch, *outs, taps, depth]
    # (the depth spelled out: -1 is ambiguous for an empty batch)
    return out.reshape(x.shape[0], *outs, len(taps) * x.shape[-1])


@op("ExtractImagePatches")
def ExtractImagePatches(images, *, ksizes, strides, rates, padding):
    """ExtractImagePatches: sliding ksizes patches of NHWC images, flattened into depth."""
    if images.ndim != 4:
        raise ValueError(f"images must be 4-D, got shape {images.shape}")
    for name, v in (("ksizes", ksizes), ("strides", strides), ("rates", rates)):
        if len(v) != 4 or v[0] != 1 or v[3] != 1:
            raise ValueError(f"{name} must be [1, rows, cols, 1], got {v}")
    return _extract_patches(images, ksizes[1:3], strides[1:3], rates[1:3], padding)


@op("ExtractVolumePatches")
def ExtractVolumePatches(input, *, ksizes, strides, padding):
    """ExtractVolumePatches: sliding ksizes patches of NDHWC volumes, flattened into depth."""
    if input.ndim != 5:
        raise ValueError(f"input must be 5-D, got shape {input.shape}")
    for name, v in (("ksizes", ksizes), ("strides", strides)):
        if len(v) != 5 or v[0] != 1 or v[4] != 1:
            raise ValueError(f"{name} must be [1, planes, rows, cols, 1], got {v}")
    return _extract_patches(input, ksizes[1:4], strides[1:4], [1, 1, 1], padding)


# -- projective transform -------------------------------------------------------------------

def _map_reflect(c: np.ndarray, n: int) -> np.ndarray:
    if n <= 1:
        return np.zeros_like(c)
    sz2 = 2 * n
    neg = c < 0
    cn = (sz2 * np.trunc(-c / _F32(sz2))).astype(_F32) + c
    cn = np.where(cn < -n, cn + _F32(sz2), -cn - _F32(1))
    cp = c - (sz2 * np.trunc(c / _F32(sz2))).astype(_F32)
    cp = np.where(cp >= n, _F32(sz2) - cp - _F32(1), cp)
    out = np.where(neg, cn, np.where(c > n - 1, cp, c))
    return np.clip(out, _F32(0), _F32(n - 1))


def _map_wrap(c: np.ndarray, n: int) -> np.ndarray:
    if n <= 1:
        return np.zeros_like(c)
    sz = _F32(n - 1)
    cn = c + (n * (np.trunc(-c / sz) + 1)).astype(_F32)
    cp = c - (n * np.trunc(c / sz)).astype(_F32)
    out = np.where(c < 0, cn, np.where(c > n - 1, cp, c))
    return np.clip(out, _F32(0), _F32(n - 1))


_FILL_MODES = {
    "REFLECT": _map_reflect,
    "WRAP": _map_wrap,
    "CONSTANT": lambda c, n: c,
    "NEAREST": lambda c, n: np.clip(c, _F32(0), _F32(n - 1)),
}


def _projective(images, transforms, output_shape, fill_value, interpolation, fill_mode,
                dtype):
    if interpolation not in ("NEAREST", "BILINEAR"):
        raise ValueError(f"interpolation must be NEAREST or BILINEAR, got {interpolation!r}")
    if fill_mode not in _FILL_MODES:
        raise ValueError(f"fill_mode must be one of {sorted(_FILL_MODES)}, got {fill_mode!r}")
    if images.ndim != 4:
        raise ValueError(f"images must be 4-D, got shape {images.shape}")
    batch, h, w, ch = images.shape
    tr = np.asarray(transforms, _F32)
    if tr.ndim != 2 or tr.shape[1] != 8 or tr.shape[0] not in (1, batch):
        raise ValueError(f"transforms must be [num_images or 1, 8], got shape {tr.shape}")
    if output_shape is None:
        oh, ow = h, w
    else:
        shp = np.asarray(output_shape).reshape(-1)
        if shp.shape != (2,) or shp[0] <= 0 or shp[1] <= 0:
            raise ValueError(f"output_shape must be two positive elements, got {shp.tolist()}")
        oh, ow = int(shp[0]), int(shp[1])
    t = np.dtype(dtype) if dtype is not None else images.dtype
    check_array((images.shape[0], oh, ow, images.shape[3]), np.float64, "the transformed images")
    fill_t = np.asarray(_F32(fill_value)).astype(t)
    fill = _F32(fill_t)
    if batch == 0 or ch == 0:
        return np.zeros((batch, oh, ow, ch), t)
    tr = np.broadcast_to(tr, (batch, 8))[:, :, None, None]
    ox = np.arange(ow, dtype=_F32)[None, None, :]
    oy = np.arange(oh, dtype=_F32)[None, :, None]
    proj = tr[:, 6] * ox + tr[:, 7] * oy + _F32(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ix = (tr[:, 0] * ox + tr[:, 1] * oy + tr[:, 2]) / proj
        iy = (tr[:, 3] * ox + tr[:, 4] * oy + tr[:, 5]) / proj
    mapper = _FILL_MODES[fill_mode]
    x = mapper(ix.astype(_F32), w)
    y = mapper(iy.astype(_F32), h)
    inside = (proj != 0) & np.isfinite(x) & np.isfinite(y)
    x = np.where(inside, x, _F32(0))
    y = np.where(inside, y, _F32(0))
    bidx = np.arange(batch)[:, None, None]

    def index(c, n):  # coordinates far outside only need to stay outside
        return np.clip(c, -2, n + 1).astype(np.int64)

    def read(yi, xi):
        ok = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
        v = images[bidx, np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
        return ok[..., None], v

    if interpolation == "NEAREST":
        ok, v = read(index(round_half_away(y), h), index(round_half_away(x), w))
        out = np.where(ok & inside[..., None], v, fill_t)
        return out.astype(t, copy=False)
    yf, xf = np.floor(y), np.floor(x)
    yc, xc = yf + _F32(1), xf + _F32(1)
    y0, x0 = index(yf, h), index(xf, w)
    y1, x1 = y0 + 1, x0 + 1

    def val(yi, xi):
        ok, v = read(yi, xi)
        return np.where(ok, v.astype(_F32, copy=False), fill)

    wx0, wx1 = (xc - x)[..., None], (x - xf)[..., None]
    top = wx0 * val(y0, x0) + wx1 * val(y0, x1)
    bottom = wx0 * val(y1, x0) + wx1 * val(y1, x1)
    res = (yc - y)[..., None] * top + (y - yf)[..., None] * bottom
    res = np.where(inside[..., None], res, fill)
    if t.kind in "iu":
        with np.errstate(invalid="ignore"):
            return np.trunc(res).astype(t)
    return res.astype(t)


@op("ImageProjectiveTransformV3")
def ImageProjectiveTransformV3(images, transforms, output_shape, fill_value, *, dtype=None,
                               interpolation="NEAREST", fill_mode="CONSTANT"):
    """ImageProjectiveTransformV3: warp NHWC images by projective transforms (output pixel ->
    input point), with NEAREST/BILINEAR sampling and REFLECT/WRAP/CONSTANT/NEAREST fill."""
    return _projective(images, transforms, output_shape, fill_value, interpolation,
                       fill_mode, dtype)


@op("ImageProjectiveTransformV2")
def ImageProjectiveTransformV2(images, transforms, output_shape, *, dtype=None,
                               interpolation="NEAREST", fill_mode="CONSTANT"):
    """ImageProjectiveTransformV2: ImageProjectiveTransformV3 with fill value 0."""
    return _projective(images, transforms, output_shape, 0.0, interpolation, fill_mode, dtype)
