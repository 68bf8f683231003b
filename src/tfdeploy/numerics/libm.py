"""Bit-exact numpy emulations of the glibc functions TensorFlow's random kernels call.

TensorFlow's random kernels call the C library: the Box-Muller transform
(``random_distributions.h``) calls ``logf`` and ``sincosf`` for float32 normals and ``log`` for
float64 ones; other samplers call ``log`` and ``exp``. On Linux that is glibc, whose
implementations (since glibc 2.28) are Arm's Optimized Routines: table-driven, evaluated in
double precision with fused multiply-adds, accurate to about 0.8 ULP but *not* correctly
rounded. To be bit-exact with TF, this module evaluates the same algorithms, with the same
tables, in the same order, with every fused multiply-add emulated exactly (``fma`` below).

The operation order is that of glibc's x86-64 FMA variants (``__logf_fma``, ``__sincosf_fma``,
``__log_fma``, ``__exp_fma``, ``__expf_fma``, ``__pow_fma``), which glibc selects on every
x86-64 CPU with FMA (all since 2013). Each function handles the domain documented on it.

The tables and polynomial coefficients are from Arm Optimized Routines
(https://github.com/ARM-software/optimized-routines, ``math/logf_data.c``, ``math/log_data.c``,
``math/sincosf_data.c``, ``math/exp_data.c``,
``math/exp2f_data.c``, ``math/pow_log_data.c``): Copyright (c) 2017-2018, Arm Limited.
SPDX-License-Identifier: MIT. ``log1p`` is fdlibm's (Copyright (C) 1993 by Sun Microsystems:
"Permission to use, copy, modify, and distribute this software is freely granted, provided that
this notice is preserved."). The numpy code is ours.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.numerics import libm_tables as tables
from tfdeploy.numerics.fma import fma, hex_pairs, plain, split, two_sum

__all__ = ["fma", "logf", "sincosf", "log", "log1p", "exp", "expf", "pow"]

_F64 = np.float64


# -- logf -------------------------------------------------------------------------------------

_LOGF_INVC, _LOGF_LOGC = hex_pairs("""
0x1.661ec79f8f3bep+0 -0x1.57bf7808caadep-2
0x1.571ed4aaf883dp+0 -0x1.2bef0a7c06ddbp-2
0x1.49539f0f010bp+0 -0x1.01eae7f513a67p-2
0x1.3c995b0b80385p+0 -0x1.b31d8a68224e9p-3
0x1.30d190c8864a5p+0 -0x1.6574f0ac07758p-3
0x1.25e227b0b8eap+0 -0x1.1aa2bc79c81p-3
0x1.1bb4a4a1a343fp+0 -0x1.a4e76ce8c0e5ep-4
0x1.12358f08ae5bap+0 -0x1.1973c5a611cccp-4
0x1.0953f419900a7p+0 -0x1.252f438e10c1ep-5
0x1p+0 0x0p+0
0x1.e608cfd9a47acp-1 0x1.aa5aa5df25984p-5
0x1.ca4b31f026aap-1 0x1.c5e53aa362eb4p-4
0x1.b2036576afce6p-1 0x1.526e57720db08p-3
0x1.9c2d163a1aa2dp-1 0x1.bc2860d22477p-3
0x1.886e6037841edp-1 0x1.1058bc8a07ee1p-2
0x1.767dcf5534862p-1 0x1.4043057b6ee09p-2
""")
_LOGF_LN2 = float.fromhex("0x1.62e42fefa39efp-1")
_LOGF_A = [float.fromhex(h) for h in
           ("-0x1.00ea348b88334p-2", "0x1.5575b0be00b6ap-2", "-0x1.ffffef20a4123p-2")]


def _logf_double(ix: np.ndarray, f) -> np.ndarray:
    """glibc logf before its final rounding to float32, with ``f`` as the fused multiply-add
    (``ix``: the bits of a positive float32, as int64; subnormals normalised as glibc does)."""
    tmp = ix - 0x3F330000
    i = (tmp >> 19) & 15
    k = (tmp >> 23).astype(_F64)
    z = ((ix - (tmp & 0xFF800000)) & 0xFFFFFFFF).astype(np.uint32).view(np.float32).astype(_F64)
    a0, a1, a2 = _LOGF_A
    r = f(z, _LOGF_INVC[i], -1.0)
    y0 = f(k, _LOGF_LN2, _LOGF_LOGC[i])
    y = f(r, a1, a2)
    r2 = r * r
    t = r + y0
    y = f(r2, a0, y)
    return f(r2, y, t)


# A double within 2^-40 (relative) of a float32 rounding midpoint: 2^12 units of the double's
# last place out of the 2^29 between float32 neighbours. The two-rounding evaluation differs
# from the fused one by far less (a few units of 2^-52, relative), so outside this band both
# round to the same float32; inside it (about 1 value in 65,000) the exact evaluation decides.
_NEAR_MIDPOINT = 1 << 12


def _near_float32_midpoint(y: np.ndarray) -> np.ndarray:
    low = (y.view(np.uint64) & np.uint64((1 << 29) - 1)).astype(np.int64)
    return np.abs(low - (1 << 28)) < _NEAR_MIDPOINT


def logf(x: np.ndarray) -> np.ndarray:
    """glibc ``logf`` for float32, every input (zero, negative, subnormal, inf, nan)."""
    x = np.asarray(x, np.float32)
    ix = x.view(np.uint32).astype(np.int64)
    special = (ix < 0x00800000) | (ix >= 0x7F800000)  # zero, subnormal, negative, inf, nan
    if special.any():
        sub = special & (ix > 0) & (ix < 0x00800000)
        bad = special & ~sub
        with np.errstate(all="ignore"):
            ix = np.where(sub, (x * np.float32(2.0 ** 23)).view(np.uint32).astype(np.int64)
                          - (23 << 23), ix)
    y = _logf_double(ix, plain)
    redo = _near_float32_midpoint(y)
    if redo.any():
        y[redo] = _logf_double(ix[redo], fma)
    out = y.astype(np.float32)
    if special.any():
        with np.errstate(all="ignore"):
            out[bad] = np.log(x[bad])  # -inf at zeros, inf, nan: IEEE, as glibc's
    return out


# -- sincosf ----------------------------------------------------------------------------------

_HPI_INV = float.fromhex("0x1.45f306dc9c883p+23")  # 2/pi * 2^24
_HPI = float.fromhex("0x1.921fb54442d18p+0")
_HPI_HI, _HPI_LO = (float(v) for v in split(np.float64(_HPI)))
# cosine polynomial c0..c4 (negated in the table for quadrants 2 and 3), sine polynomial s1..s3
_COS_C = [float.fromhex(h) for h in ("0x1p+0", "-0x1.ffffffd0c621cp-2", "0x1.55553e1068f19p-5",
                                     "-0x1.6c087e89a359dp-10", "0x1.99343027bf8c3p-16")]
_SIN_S = [float.fromhex(h) for h in
          ("-0x1.555545995a603p-3", "0x1.1107605230bc4p-7", "-0x1.994eb3774cf24p-13")]
_QUADRANT_SIGN = np.array([1.0, -1.0, -1.0, 1.0])


def _sincosf_double(y: np.ndarray, f) -> tuple[np.ndarray, np.ndarray]:
    """glibc sincosf before its final rounding, with ``f`` as the polynomial's multiply-add."""
    top = (y.view(np.uint32) >> np.uint32(20)) & np.uint32(0x7FF)
    x = y.astype(_F64)
    # |y| < pi/4: no reduction; otherwise one multiply-subtract by n * pi/2, always fused (the
    # cancellation near 3*pi/2 would magnify a second rounding)
    n = ((x * _HPI_INV).astype(np.int32) + 0x800000) >> 24
    n = np.where(top < 0x3F4, 0, n)
    nd = n.astype(_F64)
    p = nd * _HPI
    pe = (nd * _HPI_HI - p) + nd * _HPI_LO  # n < 8: both products exact, so is the sum
    xr = (x - p) - pe  # x - p is exact (Sterbenz): xr = RN(x - n*pi/2), one rounding
    xs = xr * _QUADRANT_SIGN[n & 3]
    x2 = xr * xr
    csign = np.where(n & 2, -1.0, 1.0)
    c0, c1, c2, c3, c4 = _COS_C
    s1, s2, s3 = _SIN_S
    x3 = x2 * xs
    x4 = x2 * x2
    x5 = x2 * x3
    x6 = x2 * x4
    ps = f(x2, s3, s2)
    pc = f(x2, csign * c4, csign * c3)
    c = f(x2, csign * c1, csign * c0)
    s = f(x3, s1, xs)
    c = f(x4, csign * c2, c)
    s = f(ps, x5, s)
    c = f(pc, x6, c)
    odd = (n & 1).astype(bool)
    return np.where(odd, c, s), np.where(odd, s, c)


def sincosf(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """glibc ``sincosf`` for float32 ``|y| < 120`` (TF's angles lie in [0, 2*pi))."""
    y = np.asarray(y, np.float32)
    sin, cos = _sincosf_double(y, plain)
    redo = _near_float32_midpoint(sin) | _near_float32_midpoint(cos)
    if redo.any():
        sin[redo], cos[redo] = _sincosf_double(y[redo], fma)
    sin, cos = sin.astype(np.float32), cos.astype(np.float32)
    tiny = ((y.view(np.uint32) >> np.uint32(20)) & np.uint32(0x7FF)) < 0x398
    if tiny.any():  # |y| < 2^-12: sin y = y, cos y = 1
        sin = np.where(tiny, y, sin)
        cos = np.where(tiny, np.float32(1.0), cos)
    return sin, cos


# -- log --------------------------------------------------------------------------------------

_LN2HI = float.fromhex("0x1.62e42fefa3800p-1")
_LN2LO = float.fromhex("0x1.ef35793c76730p-45")
_LOG_A = [float.fromhex(h) for h in ("-0x1.0000000000001p-1", "0x1.555555551305bp-2",
                                     "-0x1.fffffffeb4590p-3", "0x1.999b324f10111p-3",
                                     "-0x1.55575e506c89fp-3")]
_LOG_B = [float.fromhex(h) for h in (
    "-0x1p-1", "0x1.5555555555577p-2", "-0x1.ffffffffffdcbp-3", "0x1.999999995dd0cp-3",
    "-0x1.55555556745a7p-3", "0x1.24924a344de30p-3", "-0x1.fffffa4423d65p-4",
    "0x1.c7184282ad6cap-4", "-0x1.999eb43b068ffp-4", "0x1.78182f7afd085p-4",
    "-0x1.5521375d145cdp-4")]
_LOG_NEAR1_LO = np.uint64(0x3FEE000000000000)  # 1 - 2^-4
_LOG_NEAR1_SPAN = np.uint64(0x3FF1090000000000 - 0x3FEE000000000000)  # up to 1 + 0x1.09p-4
_LOG_OFF = 0x3FE6000000000000

_LOG_INVC, _LOG_LOGC = hex_pairs(tables.LOG)


_LOG_INVC_HI, _LOG_INVC_LO = split(_LOG_INVC)


def _log_main(x: np.ndarray, f) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """glibc log away from 1 as (hi, t, size): log(x) = RN(hi + t); ``size`` bounds the terms of
    ``t`` whose rounding depends on ``f`` being fused."""
    xi = x.view(np.int64)
    tmp = xi - _LOG_OFF
    i = (tmp >> 45) & 127
    kd = (tmp >> 52).astype(_F64)
    z = (xi - (tmp & np.int64(-(1 << 52)))).view(_F64)
    # r = fma(z, invc, -1) exactly: z*invc = p + pe, and p - 1 is exact (p is within 2^-7 of 1)
    invc = _LOG_INVC[i]
    p = z * invc
    zh, zl = split(z)
    ih, il = _LOG_INVC_HI[i], _LOG_INVC_LO[i]
    r = (p - 1.0) + (((zh * ih - p) + zh * il + zl * ih) + zl * il)
    a0, a1, a2, a3, a4 = _LOG_A
    w = kd * _LN2HI + _LOG_LOGC[i]  # kd * Ln2hi is exact: fused or not, one rounding
    pa = f(r, a2, a1)
    hi = r + w
    r2 = r * r
    lo = f(kd, _LN2LO, (w - hi) + r)
    r3 = r * r2
    q = f(r, a4, a3)
    lo = f(r2, a0, lo)
    pa = f(q, r2, pa)
    t = f(r3, pa, lo)
    return hi, t, r2 + np.abs(t) + 2.0**-34


def _log_near1(x: np.ndarray, f) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """glibc log for 1 - 2^-4 <= x < 1 + 0x1.09p-4, as ``_log_main``."""
    b = _LOG_B
    r = x - 1.0
    p1 = f(r, b[2], b[1])
    p2 = f(r, b[5], b[4])
    p3 = f(r, b[8], b[7])
    r2 = r * r
    p1 = f(r2, b[3], p1)
    p2 = f(r2, b[6], p2)
    r3 = r * r2
    p3 = f(r2, b[9], p3)
    p3 = f(r3, b[10], p3)
    pb = f(f(p3, r3, p2), r3, p1)
    # hi + lo = r - r*r/2, r split into 26-bit halves so that the products are exact
    rw = r * 134217728.0 + r
    rhi = rw - r * 134217728.0
    rlo = r - rhi
    rr = rhi * rhi
    hi = r + rr * b[0]
    lo = (r - hi) + rr * b[0]
    lo = f(b[0] * rlo, r + rhi, lo)
    t = f(pb, r3, lo)
    return hi, t, np.abs(r3) + r2 * 2.0**-26 + np.abs(t)


def _log_part(x: np.ndarray, part) -> np.ndarray:
    """RN(hi + t) from the fast evaluation where provably the same as the fused one, else fused.

    The unfused evaluation moves ``t`` by at most a few units of 2^-53 times ``size``; the sum
    rounds the same way unless it lies within that of a rounding midpoint (or at a power of 2).
    """
    hi, t, size = part(x, plain)
    s, e = two_sum(hi, t)
    safe = (np.abs(e) + size * 2.0**-48 < 0.5 * np.spacing(np.abs(s)))
    safe &= (s.view(np.uint64) & np.uint64((1 << 52) - 1)) != 0
    if not safe.all():
        redo = ~safe
        hi, t, _ = part(x[redo], fma)
        s[redo] = hi + t
    return s


def log(x: np.ndarray) -> np.ndarray:
    """glibc ``log`` for float64, every input (zero, negative, subnormal, inf, nan)."""
    x = np.asarray(x, _F64)
    ix = x.view(np.uint64)
    top = ix >> np.uint64(48)
    special = (top < 0x0010) | (top >= 0x7FF0)  # zero, subnormal, negative, inf, nan
    if special.any():
        out = np.empty_like(x)
        sub = special & (ix > 0) & (top < 0x0010)
        bad = special & ~sub
        with np.errstate(all="ignore"):
            out[bad] = np.log(x[bad])  # -inf at zeros, inf, nan: IEEE, as glibc's
        # subnormals: normalised, the exponent going negative (only its bits are used)
        bits = (x[sub] * 2.0 ** 52).view(np.uint64) - np.uint64(52 << 52)
        out[sub] = _log_part(bits.view(_F64), _log_main)
        rest = ~special
        if rest.any():
            out[rest] = log(x[rest])
        return out
    near = (ix - _LOG_NEAR1_LO) < _LOG_NEAR1_SPAN
    if not near.any():
        return _log_part(x, _log_main)
    out = np.empty_like(x)
    out[near] = _log_part(x[near], _log_near1)
    if not near.all():
        out[~near] = _log_part(x[~near], _log_main)
    return out


# -- exp --------------------------------------------------------------------------------------

_EXP_INVLN2N = float.fromhex("0x1.71547652b82fep+7")  # N / ln 2, N = 128
_EXP_NEGLN2HIN = float.fromhex("-0x1.62e42fefa0000p-8")
_EXP_NEGLN2LON = float.fromhex("-0x1.cf79abc9e3b3ap-47")
_EXP_C = [float.fromhex(h) for h in ("0x1.ffffffffffdbdp-2", "0x1.555555555543cp-3",
                                     "0x1.55555cf172b91p-5", "0x1.1111167a4d017p-7")]
_EXP_SHIFT = float.fromhex("0x1.8p52")
# 2^(i/N) as (tail, scale bits) pairs: scale = asdouble(bits), 2^(i/N) ~= scale * (1 + tail)
_EXP_TAB = np.array([int(h, 16) for h in tables.EXP.split()], np.uint64).reshape(-1, 2)
_EXP_TAIL = np.ascontiguousarray(_EXP_TAB[:, 0]).view(_F64)
_EXP_SBITS = np.ascontiguousarray(_EXP_TAB[:, 1])


def exp(x: np.ndarray) -> np.ndarray:
    """glibc ``exp`` for float64 ``x``, every input (under/overflow, inf, nan included)."""
    x = np.asarray(x, _F64)
    out = np.empty_like(x)
    nan_inf = ~np.isfinite(x)
    out[nan_inf] = np.where(np.isnan(x[nan_inf]), x[nan_inf],
                            np.where(x[nan_inf] > 0, np.inf, 0.0))
    fin = ~nan_inf
    out[fin] = _exp_inline(x[fin], None, np.uint64(0))
    return out


_SIGN_BIAS = np.uint64(0x800 << 7)


def _exp_inline(x: np.ndarray, xtail, sign_bias) -> np.ndarray:
    """sign * exp(x + xtail) for finite x (glibc's exp_inline; sign negative where
    ``sign_bias`` is ``_SIGN_BIAS``)."""
    abstop = ((x.view(np.uint64) >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    neg = np.broadcast_to(np.asarray(sign_bias, np.uint64) != 0, x.shape)
    out = np.empty_like(x)
    tiny = abstop < 0x3C9  # |x| < 2^-54
    huge = abstop >= 0x409  # |x| >= 1024
    main = ~(tiny | huge)
    one = 1.0 + x[tiny]
    out[tiny] = np.where(neg[tiny], -one, one)
    h = x[huge]
    out[huge] = np.where(h > 0, np.inf, 0.0) * np.where(neg[huge], -1.0, 1.0)
    if main.any():
        tail = None if xtail is None else np.broadcast_to(xtail, x.shape)[main]
        bias = np.broadcast_to(np.asarray(sign_bias, np.uint64), x.shape)[main]
        with np.errstate(all="ignore"):  # scales beyond the range are fixed by _exp_special
            out[main] = _exp_main(x[main], tail, bias, abstop[main])
    return out


def _exp_main(xm, xtail, sign_bias, abstop) -> np.ndarray:
    kds = fma(xm, _EXP_INVLN2N, _EXP_SHIFT)
    ki = kds.view(np.uint64)
    kd = kds - _EXP_SHIFT
    r = fma(kd, _EXP_NEGLN2LON, fma(kd, _EXP_NEGLN2HIN, xm))
    if xtail is not None:
        r = xtail + r
    c2, c3, c4, c5 = _EXP_C
    idx = (ki & np.uint64(127)).astype(np.intp)
    sbits = _EXP_SBITS[idx] + ((ki + sign_bias) << np.uint64(45))
    p23 = fma(r, c3, c2)
    r2 = r * r
    p45 = fma(r, c5, c4)
    tmp = fma(r2, p23, _EXP_TAIL[idx] + r)
    tmp = fma(r2 * r2, p45, tmp)
    res = fma(sbits.view(_F64), tmp, sbits.view(_F64))
    big = abstop == 0x408  # 512 <= |x| < 1024: the scale may leave the range
    if big.any():
        res[big] = _exp_special(tmp[big], sbits[big], ki[big])
    return res


def _exp_special(tmp, sbits, ki) -> np.ndarray:
    """glibc's exp/pow specialcase: results near overflow, or subnormal."""
    up = (ki & np.uint64(0x80000000)) == 0
    out = np.empty_like(tmp)
    if up.any():
        scale = (sbits[up] - np.uint64(1009 << 52)).view(_F64)
        out[up] = fma(scale, tmp[up], scale) * 2.0 ** 1009
    dn = ~up
    if dn.any():
        sb = sbits[dn] + np.uint64(1022 << 52)
        scale = sb.view(_F64)
        st = scale * tmp[dn]
        y = scale + st
        small = np.abs(y) < 1.0
        if small.any():  # round to the subnormal precision before scaling (no double rounding)
            ys, ss, sts = y[small], scale[small], st[small]
            one = np.where(ys < 0.0, -1.0, 1.0)
            lo = (ss - ys) + sts
            hi = one + ys
            lo = ((one - hi) + ys) + lo
            ys = (hi + lo) - one
            signed_zero = (sb[small] & np.uint64(1 << 63)).view(_F64)
            y[small] = np.where(ys == 0.0, signed_zero, ys)
        out[dn] = 2.0 ** -1022 * y
    return out


# -- pow --------------------------------------------------------------------------------------

_POW_LN2HI = float.fromhex("0x1.62e42fefa3800p-1")
_POW_LN2LO = float.fromhex("0x1.ef35793c76730p-45")
# log1p(r) - r + r^2/2 ~= ar^3 * (A1 + r A2 + ar^2 (A3 + r A4 + ar^2 (A5 + r A6))), ar = -r/2
_POW_A = [float.fromhex(h) for h in (
    "-0x1p-1", "-0x1.5555555555560p-1", "0x1.0000000000006p-1", "0x1.999999959554ep-1",
    "-0x1.555555529a47ap-1", "-0x1.2495b9b4845e9p+0", "0x1.0002b8b263fc3p+0")]
# (invc, logc, logctail): 1/c = j/N or j/N/2, log(c) to about 68 bits as logc + logctail
_POW_TAB = np.array([float.fromhex(h) for h in tables.POW.split()], _F64).reshape(-1, 3)
_POW_INVC, _POW_LOGC, _POW_LOGCTAIL = (np.ascontiguousarray(_POW_TAB[:, j]) for j in range(3))
_POW_OFF = 0x3FE6955500000000
_ONE_BITS = np.uint64(0x3FF0000000000000)
_INF_BITS = np.uint64(0x7FF0000000000000)


def _pow_log(ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """glibc pow's log_inline: log(x) = hi + lo with about 68 bits (``ix``: x's bits)."""
    tmp = ix.view(np.int64) - _POW_OFF
    i = (tmp >> 45) & 127
    kd = (tmp >> 52).astype(_F64)
    z = (ix.view(np.int64) - (tmp & np.int64(-(1 << 52)))).view(_F64)
    a0, a1, a2, a3, a4, a5, a6 = _POW_A
    r = fma(z, _POW_INVC[i], -1.0)  # exact: z/c - 1 is representable
    t1 = fma(kd, _POW_LN2HI, _POW_LOGC[i])
    lo1 = fma(kd, _POW_LN2LO, _POW_LOGCTAIL[i])
    ar = a0 * r
    p12 = fma(r, a2, a1)
    p34 = fma(r, a4, a3)
    t2 = r + t1
    ar2 = r * ar
    lo2 = (t1 - t2) + r
    ar3 = r * ar2
    lo3 = fma(ar, r, -ar2)
    p56 = fma(r, a6, a5)
    hi = t2 + ar2
    p = fma(p56, ar2, p34)
    lo4 = (t2 - hi) + ar2
    q = fma(ar2, p, p12)
    lo = fma(ar3, q, ((lo1 + lo2) + lo3) + lo4)
    y = hi + lo
    return y, (hi - y) + lo


def _checkint(iy: np.ndarray) -> np.ndarray:
    """0 if y is not an integer, 1 if odd, 2 if even (y non-zero finite, as bits)."""
    e = ((iy >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    sh = np.clip(0x433 - e, 0, 63).astype(np.uint64)
    frac = (iy & ((np.uint64(1) << sh) - np.uint64(1))) != 0
    odd = (iy & (np.uint64(1) << sh)) != 0
    return np.where(e < 0x3FF, 0, np.where(e > 0x433, 2, np.where(frac, 0, np.where(odd, 1, 2))))


def pow(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # noqa: A001 - glibc's name
    """glibc ``pow`` for float64, every input (signs, zeros, infinities, nan, subnormals)."""
    x, y = np.broadcast_arrays(np.asarray(x, _F64), np.asarray(y, _F64))
    shape = x.shape
    x, y = x.reshape(-1), y.reshape(-1)
    ix, iy = x.view(np.uint64).copy(), y.view(np.uint64)
    topx = (ix >> np.uint64(52)).astype(np.int64)
    topy = ((iy >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    out = np.full(x.shape, np.nan)
    todo = np.ones(x.shape, bool)
    sign_bias = np.zeros(x.shape, np.uint64)
    two = np.uint64(2)
    special = (topx - 1 >= 0x7FE) | (topx - 1 < 0) | (topy < 0x3BE) | (topy >= 0x43E)
    with np.errstate(all="ignore"):
        if special.any():
            # y is 0, inf or nan
            yzin = special & (two * iy - np.uint64(1) >= two * _INF_BITS - np.uint64(1))
            xnan_ynan = (two * ix > two * _INF_BITS) | (two * iy > two * _INF_BITS)
            xlt1 = two * ix < two * _ONE_BITS
            r = np.where(two * iy == 0, 1.0,
                np.where(ix == _ONE_BITS, 1.0,
                np.where(xnan_ynan, x + y,
                np.where(two * ix == two * _ONE_BITS, 1.0,
                np.where(xlt1 == ((iy >> np.uint64(63)) == 0), 0.0, y * y)))))
            out[yzin], todo[yzin] = r[yzin], False
            # x is 0, inf or nan
            xzin = special & todo & (two * ix - np.uint64(1) >= two * _INF_BITS - np.uint64(1))
            negx = (ix >> np.uint64(63)) == 1
            finite_y = todo & ~xzin & special
            yint = np.zeros(x.shape, np.int64)
            yint[xzin | finite_y] = _checkint(iy[xzin | finite_y])
            x2 = np.where(negx & (yint == 1), -(x * x), x * x)
            r = np.where((iy >> np.uint64(63)) == 1, 1.0 / x2, x2)
            out[xzin], todo[xzin] = r[xzin], False
            # x and y non-zero finite: negative x needs an integer y
            m = finite_y & negx
            bad = m & (yint == 0)
            out[bad], todo[bad] = np.nan, False
            sign_bias[m & (yint == 1)] = _SIGN_BIAS
            ix[m] &= np.uint64(0x7FFFFFFFFFFFFFFF)
            # |y| < 2^-65 or |y| >= 2^63
            m = finite_y & todo & ((topy < 0x3BE) | (topy >= 0x43E))
            gt1 = ix > _ONE_BITS
            ypos = (iy >> np.uint64(63)) == 0
            r = np.where(ix == _ONE_BITS, 1.0,
                np.where(topy < 0x3BE, np.where(gt1, 1.0 + y, 1.0 - y),
                np.where(gt1 == ypos, np.inf, 0.0)))
            out[m], todo[m] = r[m], False
            # subnormal x: normalise, the exponent going negative
            m = todo & ((ix >> np.uint64(52)) == 0)
            if m.any():
                xs = (np.abs(x[m]) * 2.0 ** 52).view(np.uint64)
                ix[m] = xs - np.uint64(52 << 52)
        if todo.any():
            hi, lo = _pow_log(ix[todo])
            yt = y[todo]
            ehi = yt * hi
            elo = fma(yt, lo, fma(yt, hi, -ehi))
            out[todo] = _exp_inline(ehi, elo, sign_bias[todo])
    return out.reshape(shape)


# -- expf -------------------------------------------------------------------------------------

_EXPF_INVLN2N = float.fromhex("0x1.71547652b82fep+5")  # N / ln 2, N = 32
_EXPF_C = [float.fromhex(h) for h in
           ("0x1.c6af84b912394p-20", "0x1.ebfce50fac4f3p-13", "0x1.62e42ff0c52d6p-6")]
# 2^(i/N) bits with the exponent field's low end left for k/N
_EXPF_TAB = np.array([int(h, 16) for h in """
3ff0000000000000 3fefd9b0d3158574 3fefb5586cf9890f 3fef9301d0125b51 3fef72b83c7d517b
3fef54873168b9aa 3fef387a6e756238 3fef1e9df51fdee1 3fef06fe0a31b715 3feef1a7373aa9cb
3feedea64c123422 3feece086061892d 3feebfdad5362a27 3feeb42b569d4f82 3feeab07dd485429
3feea47eb03a5585 3feea09e667f3bcd 3fee9f75e8ec5f74 3feea11473eb0187 3feea589994cce13
3feeace5422aa0db 3feeb737b0cdc5e5 3feec49182a3f090 3feed503b23e255d 3feee89f995ad3ad
3feeff76f2fb5e47 3fef199bdd85529c 3fef3720dcef9069 3fef5818dcfba487 3fef7c97337b9b5f
3fefa4afa2a490da 3fefd0765b6e4540""".split()], np.uint64)


def expf(x: np.ndarray) -> np.ndarray:
    """glibc ``expf`` for float32 ``x``, every input (under/overflow, inf, nan included)."""
    x = np.asarray(x, np.float32)
    xd = x.astype(_F64)
    c0, c1, c2 = _EXPF_C
    with np.errstate(all="ignore"):  # the lanes the special cases replace
        kds = fma(xd, _EXPF_INVLN2N, _EXP_SHIFT)
        ki = kds.view(np.uint64)
        kd = kds - _EXP_SHIFT
        r = fma(xd, _EXPF_INVLN2N, -kd)  # z - kd with z = x * N/ln2 unrounded
        s = (_EXPF_TAB[(ki & np.uint64(31)).astype(np.intp)] + (ki << np.uint64(47))).view(_F64)
        y = fma(fma(r, c0, c1), r * r, fma(r, c2, 1.0))
        out = (y * s).astype(np.float32)
    abstop = (x.view(np.uint32) >> np.uint32(20)) & np.uint32(0x7FF)
    big = abstop >= 0x42B  # |x| >= 88, inf, nan
    if big.any():
        xb = x[big]
        res = out[big]
        res = np.where(xb > np.float32(float.fromhex("0x1.62e42ep6")), np.float32(np.inf), res)
        res = np.where(xb < np.float32(float.fromhex("-0x1.9d1d9ep6")),  # may underflow
                       np.float32(2.0 ** -149), res)
        res = np.where(xb < np.float32(float.fromhex("-0x1.9fe368p6")), np.float32(0.0), res)
        res = np.where(np.isnan(xb), xb, res)
        out[big] = res
    return out


# -- log1p ------------------------------------------------------------------------------------

_L1P_LN2_HI = 6.93147180369123816490e-01
_L1P_LN2_LO = 1.90821492927058770002e-10
_L1P_LP = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
       2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
       1.479819860511658591e-01)


def log1p(x: np.ndarray) -> np.ndarray:
    """glibc ``log1p`` for float64, every input: fdlibm's algorithm (Sun's ``s_log1p.c``, whose
    constants these are) as glibc's x86-64 FMA variant (``__log1p_fma``) evaluates it, its
    fused multiply-adds included."""
    x = np.asarray(x, np.float64)
    bits = x.view(np.uint64)
    hx = (bits >> np.uint64(32)).astype(np.int64)
    hx = np.where(hx >= 1 << 31, hx - (1 << 32), hx)  # the signed high word
    ax = hx & 0x7FFFFFFF
    with np.errstate(all="ignore"):
        out = np.log1p(x)  # x <= -1, inf and nan: IEEE special values, as glibc's
        ok = np.isfinite(x) & (x > -1)
        tiny = ok & (ax < 0x3E200000)
        out[tiny] = np.where(ax[tiny] < 0x3C900000, x[tiny], x[tiny] - x[tiny] * x[tiny] * 0.5)
        ok &= ~tiny
        direct = ok & (hx < 0x3FDA827A) & ((hx > 0) | (hx <= -1076707645))  # 0xbfd2bec3
        f = np.where(direct, x, 0.0)
        k = np.zeros(x.shape, np.int64)
        c = np.zeros(x.shape)
        hu = np.ones(x.shape, np.int64)
        red = ok & ~direct
        if red.any():
            xr = x[red]
            big = xr >= 2.0**53
            u = np.where(big, xr, 1.0 + xr)
            hu_r = (u.view(np.uint64) >> np.uint64(32)).astype(np.int64)
            kr = (hu_r >> 20) - 1023
            cr = np.where(kr > 0, 1.0 - (u - xr), xr - (u - 1.0)) / u
            cr = np.where(big, 0.0, cr)
            hu_r &= 0x000FFFFF
            low = u.view(np.uint64) & np.uint64(0xFFFFFFFF)
            up = hu_r >= 0x6A09E
            kr = kr + up
            top = np.where(up, hu_r | 0x3FE00000, hu_r | 0x3FF00000).astype(np.uint64)
            u = ((top << np.uint64(32)) | low).view(np.float64)
            hu_r = np.where(up, (0x00100000 - hu_r) >> 2, hu_r)
            f[red], k[red], c[red], hu[red] = u - 1.0, kr, cr, hu_r
        kd = k.astype(np.float64)
        hfsq = 0.5 * f * f
        # |f| < 2**-20
        near = ok & (hu == 0)
        zero = near & (f == 0)
        out[zero] = kd[zero] * _L1P_LN2_HI + fma(kd[zero], _L1P_LN2_LO, c[zero])
        near &= ~zero
        R = hfsq * fma(-f, 0.66666666666666666, 1.0)
        klo = fma(kd, _L1P_LN2_LO, c)
        res_near = np.where(k == 0, f - R, kd * _L1P_LN2_HI - ((R - klo) - f))
        out[near] = res_near[near]
        main = ok & (hu != 0)
        s = f / (2.0 + f)
        z = s * s
        z2 = z * z
        z4 = z2 * z2
        lp = _L1P_LP
        r2, r3, r4 = fma(z, lp[2], lp[1]), fma(z, lp[4], lp[3]), fma(z, lp[6], lp[5])
        R = fma(z4 * z2, r4, fma(z4, r3, fma(z, lp[0], z2 * r2)))
        res = np.where(k == 0, f - (hfsq - s * (hfsq + R)),
                       kd * _L1P_LN2_HI - ((hfsq - (s * (hfsq + R) + klo)) - f))
        out[main] = res[main]
    return out
