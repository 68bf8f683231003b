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

__all__ = ["fma", "logf", "sincosf", "log", "log1p", "exp", "expf", "pow"]

_F64 = np.float64
_SPLIT = 134217729.0  # 2**27 + 1, Veltkamp's splitter for doubles


# -- exact double arithmetic -------------------------------------------------------------------

def _two_sum(a, b):
    """s + e == a + b exactly, s = RN(a + b) (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a):
    t = a * _SPLIT
    hi = t - (t - a)
    return hi, a - hi


def _two_prod(a, b):
    """p + e == a * b exactly, p = RN(a * b) (Dekker; no overflow or underflow in our uses)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _round_odd_sum(a, b):
    """a + b rounded to odd (truncated, the last bit set when inexact), on the bit pattern."""
    s, e = _two_sum(a, b)
    bits = s.view(np.int64)
    fix = (e != 0) & ((bits & 1) == 0)
    # one unit toward e: up in magnitude when s and e have the same sign, else down
    step = np.where((bits ^ e.view(np.int64)) < 0, -1, 1)
    return (bits + fix * step).view(_F64)


def _fma_parts(p, pe, c):
    """RN(p + pe + c) where p + pe is a product, exactly: p + c = s + se exactly, then
    RN(s + RO(pe + se)) is the correctly rounded sum of the three (Boldo & Melquiond,
    "Emulation of FMA and correctly rounded sums: proved algorithms using rounding to odd",
    IEEE TC 2008)."""
    s, se = _two_sum(p, c)
    return s + _round_odd_sum(pe, se)


def fma(a, b, c):
    """RN(a * b + c) with a single rounding, as the FMA instruction computes it."""
    a, b, c = np.asarray(a, _F64), np.asarray(b, _F64), np.asarray(c, _F64)
    p, pe = _two_prod(a, b)
    return _fma_parts(p, pe, c)


def _hex_pairs(text: str) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([float.fromhex(t) for t in text.split()], _F64).reshape(-1, 2)
    return np.ascontiguousarray(v[:, 0]), np.ascontiguousarray(v[:, 1])


# -- logf -------------------------------------------------------------------------------------

_LOGF_INVC, _LOGF_LOGC = _hex_pairs("""
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


def _plain(a, b, c):
    """a * b + c with two roundings: the fast first try (see ``_ziv_float32``)."""
    return a * b + c


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
    y = _logf_double(ix, _plain)
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
_HPI_HI, _HPI_LO = (float(v) for v in _split(np.float64(_HPI)))
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
    sin, cos = _sincosf_double(y, _plain)
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

_LOG_INVC, _LOG_LOGC = _hex_pairs("""
0x1.734f0c3e0de9fp+0 -0x1.7cc7f79e69000p-2
0x1.713786a2ce91fp+0 -0x1.76feec20d0000p-2
0x1.6f26008fab5a0p+0 -0x1.713e31351e000p-2
0x1.6d1a61f138c7dp+0 -0x1.6b85b38287800p-2
0x1.6b1490bc5b4d1p+0 -0x1.65d5590807800p-2
0x1.69147332f0cbap+0 -0x1.602d076180000p-2
0x1.6719f18224223p+0 -0x1.5a8ca86909000p-2
0x1.6524f99a51ed9p+0 -0x1.54f4356035000p-2
0x1.63356aa8f24c4p+0 -0x1.4f637c36b4000p-2
0x1.614b36b9ddc14p+0 -0x1.49da7fda85000p-2
0x1.5f66452c65c4cp+0 -0x1.445923989a800p-2
0x1.5d867b5912c4fp+0 -0x1.3edf439b0b800p-2
0x1.5babccb5b90dep+0 -0x1.396ce448f7000p-2
0x1.59d61f2d91a78p+0 -0x1.3401e17bda000p-2
0x1.5805612465687p+0 -0x1.2e9e2ef468000p-2
0x1.56397cee76bd3p+0 -0x1.2941b3830e000p-2
0x1.54725e2a77f93p+0 -0x1.23ec58cda8800p-2
0x1.52aff42064583p+0 -0x1.1e9e129279000p-2
0x1.50f22dbb2bddfp+0 -0x1.1956d2b48f800p-2
0x1.4f38f4734ded7p+0 -0x1.141679ab9f800p-2
0x1.4d843cfde2840p+0 -0x1.0edd094ef9800p-2
0x1.4bd3ec078a3c8p+0 -0x1.09aa518db1000p-2
0x1.4a27fc3e0258ap+0 -0x1.047e65263b800p-2
0x1.4880524d48434p+0 -0x1.feb224586f000p-3
0x1.46dce1b192d0bp+0 -0x1.f474a7517b000p-3
0x1.453d9d3391854p+0 -0x1.ea4443d103000p-3
0x1.43a2744b4845ap+0 -0x1.e020d44e9b000p-3
0x1.420b54115f8fbp+0 -0x1.d60a22977f000p-3
0x1.40782da3ef4b1p+0 -0x1.cc00104959000p-3
0x1.3ee8f5d57fe8fp+0 -0x1.c202956891000p-3
0x1.3d5d9a00b4ce9p+0 -0x1.b81178d811000p-3
0x1.3bd60c010c12bp+0 -0x1.ae2c9ccd3d000p-3
0x1.3a5242b75dab8p+0 -0x1.a45402e129000p-3
0x1.38d22cd9fd002p+0 -0x1.9a877681df000p-3
0x1.3755bc5847a1cp+0 -0x1.90c6d69483000p-3
0x1.35dce49ad36e2p+0 -0x1.87120a645c000p-3
0x1.34679984dd440p+0 -0x1.7d68fb4143000p-3
0x1.32f5cceffcb24p+0 -0x1.73cb83c627000p-3
0x1.3187775a10d49p+0 -0x1.6a39a9b376000p-3
0x1.301c8373e3990p+0 -0x1.60b3154b7a000p-3
0x1.2eb4ebb95f841p+0 -0x1.5737d76243000p-3
0x1.2d50a0219a9d1p+0 -0x1.4dc7b8fc23000p-3
0x1.2bef9a8b7fd2ap+0 -0x1.4462c51d20000p-3
0x1.2a91c7a0c1babp+0 -0x1.3b08abc830000p-3
0x1.293726014b530p+0 -0x1.31b996b490000p-3
0x1.27dfa5757a1f5p+0 -0x1.2875490a44000p-3
0x1.268b39b1d3bbfp+0 -0x1.1f3b9f879a000p-3
0x1.2539d838ff5bdp+0 -0x1.160c8252ca000p-3
0x1.23eb7aac9083bp+0 -0x1.0ce7f57f72000p-3
0x1.22a012ba940b6p+0 -0x1.03cdc49fea000p-3
0x1.2157996cc4132p+0 -0x1.f57bdbc4b8000p-4
0x1.201201dd2fc9bp+0 -0x1.e370896404000p-4
0x1.1ecf4494d480bp+0 -0x1.d17983ef94000p-4
0x1.1d8f5528f6569p+0 -0x1.bf9674ed8a000p-4
0x1.1c52311577e7cp+0 -0x1.adc79202f6000p-4
0x1.1b17c74cb26e9p+0 -0x1.9c0c3e7288000p-4
0x1.19e010c2c1ab6p+0 -0x1.8a646b372c000p-4
0x1.18ab07bb670bdp+0 -0x1.78d01b3ac0000p-4
0x1.1778a25efbcb6p+0 -0x1.674f145380000p-4
0x1.1648d354c31dap+0 -0x1.55e0e6d878000p-4
0x1.151b990275fddp+0 -0x1.4485cdea1e000p-4
0x1.13f0ea432d24cp+0 -0x1.333d94d6aa000p-4
0x1.12c8b7210f9dap+0 -0x1.22079f8c56000p-4
0x1.11a3028ecb531p+0 -0x1.10e4698622000p-4
0x1.107fbda8434afp+0 -0x1.ffa6c6ad20000p-5
0x1.0f5ee0f4e6bb3p+0 -0x1.dda8d4a774000p-5
0x1.0e4065d2a9fcep+0 -0x1.bbcece4850000p-5
0x1.0d244632ca521p+0 -0x1.9a1894012c000p-5
0x1.0c0a77ce2981ap+0 -0x1.788583302c000p-5
0x1.0af2f83c636d1p+0 -0x1.5715e67d68000p-5
0x1.09ddb98a01339p+0 -0x1.35c8a49658000p-5
0x1.08cabaf52e7dfp+0 -0x1.149e364154000p-5
0x1.07b9f2f4e28fbp+0 -0x1.e72c082eb8000p-6
0x1.06ab58c358f19p+0 -0x1.a55f152528000p-6
0x1.059eea5ecf92cp+0 -0x1.63d62cf818000p-6
0x1.04949cdd12c90p+0 -0x1.228fb8caa0000p-6
0x1.038c6c6f0ada9p+0 -0x1.c317b20f90000p-7
0x1.02865137932a9p+0 -0x1.419355daa0000p-7
0x1.0182427ea7348p+0 -0x1.81203c2ec0000p-8
0x1.008040614b195p+0 -0x1.0040979240000p-9
0x1.fe01ff726fa1ap-1 0x1.feff384900000p-9
0x1.fa11cc261ea74p-1 0x1.7dc41353d0000p-7
0x1.f6310b081992ep-1 0x1.3cea3c4c28000p-6
0x1.f25f63ceeadcdp-1 0x1.b9fc114890000p-6
0x1.ee9c8039113e7p-1 0x1.1b0d8ce110000p-5
0x1.eae8078cbb1abp-1 0x1.58a5bd001c000p-5
0x1.e741aa29d0c9bp-1 0x1.95c8340d88000p-5
0x1.e3a91830a99b5p-1 0x1.d276aef578000p-5
0x1.e01e009609a56p-1 0x1.07598e598c000p-4
0x1.dca01e577bb98p-1 0x1.253f5e30d2000p-4
0x1.d92f20b7c9103p-1 0x1.42edd8b380000p-4
0x1.d5cac66fb5ccep-1 0x1.606598757c000p-4
0x1.d272caa5ede9dp-1 0x1.7da76356a0000p-4
0x1.cf26e3e6b2ccdp-1 0x1.9ab434e1c6000p-4
0x1.cbe6da2a77902p-1 0x1.b78c7bb0d6000p-4
0x1.c8b266d37086dp-1 0x1.d431332e72000p-4
0x1.c5894bd5d5804p-1 0x1.f0a3171de6000p-4
0x1.c26b533bb9f8cp-1 0x1.067152b914000p-3
0x1.bf583eeece73fp-1 0x1.147858292b000p-3
0x1.bc4fd75db96c1p-1 0x1.2266ecdca3000p-3
0x1.b951e0c864a28p-1 0x1.303d7a6c55000p-3
0x1.b65e2c5ef3e2cp-1 0x1.3dfc33c331000p-3
0x1.b374867c9888bp-1 0x1.4ba366b7a8000p-3
0x1.b094b211d304ap-1 0x1.5933928d1f000p-3
0x1.adbe885f2ef7ep-1 0x1.66acd2418f000p-3
0x1.aaf1d31603da2p-1 0x1.740f8ec669000p-3
0x1.a82e63fd358a7p-1 0x1.815c0f51af000p-3
0x1.a5740ef09738bp-1 0x1.8e92954f68000p-3
0x1.a2c2a90ab4b27p-1 0x1.9bb3602f84000p-3
0x1.a01a01393f2d1p-1 0x1.a8bed1c2c0000p-3
0x1.9d79f24db3c1bp-1 0x1.b5b515c01d000p-3
0x1.9ae2505c7b190p-1 0x1.c2967ccbcc000p-3
0x1.9852ef297ce2fp-1 0x1.cf635d5486000p-3
0x1.95cbaeea44b75p-1 0x1.dc1bd3446c000p-3
0x1.934c69de74838p-1 0x1.e8c01b8cfe000p-3
0x1.90d4f2f6752e6p-1 0x1.f5509c0179000p-3
0x1.8e6528effd79dp-1 0x1.00e6c121fb800p-2
0x1.8bfce9fcc007cp-1 0x1.071b80e93d000p-2
0x1.899c0dabec30ep-1 0x1.0d46b9e867000p-2
0x1.87427aa2317fbp-1 0x1.13687334bd000p-2
0x1.84f00acb39a08p-1 0x1.1980d67234800p-2
0x1.82a49e8653e55p-1 0x1.1f8ffe0cc8000p-2
0x1.8060195f40260p-1 0x1.2595fd7636800p-2
0x1.7e22563e0a329p-1 0x1.2b9300914a800p-2
0x1.7beb377dcb5adp-1 0x1.3187210436000p-2
0x1.79baa679725c2p-1 0x1.377266dec1800p-2
0x1.77907f2170657p-1 0x1.3d54ffbaf3000p-2
0x1.756cadbd6130cp-1 0x1.432eee32fe000p-2
""")


_LOG_INVC_HI, _LOG_INVC_LO = _split(_LOG_INVC)


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
    zh, zl = _split(z)
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
    hi, t, size = part(x, _plain)
    s, e = _two_sum(hi, t)
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
_EXP_TAB = np.array([int(h, 16) for h in """
0000000000000000 3ff0000000000000
3c9b3b4f1a88bf6e 3feff63da9fb3335
bc7160139cd8dc5d 3fefec9a3e778061
bc905e7a108766d1 3fefe315e86e7f85
3c8cd2523567f613 3fefd9b0d3158574
bc8bce8023f98efa 3fefd06b29ddf6de
3c60f74e61e6c861 3fefc74518759bc8
3c90a3e45b33d399 3fefbe3ecac6f383
3c979aa65d837b6d 3fefb5586cf9890f
3c8eb51a92fdeffc 3fefac922b7247f7
3c3ebe3d702f9cd1 3fefa3ec32d3d1a2
bc6a033489906e0b 3fef9b66affed31b
bc9556522a2fbd0e 3fef9301d0125b51
bc5080ef8c4eea55 3fef8abdc06c31cc
bc91c923b9d5f416 3fef829aaea92de0
3c80d3e3e95c55af 3fef7a98c8a58e51
bc801b15eaa59348 3fef72b83c7d517b
bc8f1ff055de323d 3fef6af9388c8dea
3c8b898c3f1353bf 3fef635beb6fcb75
bc96d99c7611eb26 3fef5be084045cd4
3c9aecf73e3a2f60 3fef54873168b9aa
bc8fe782cb86389d 3fef4d5022fcd91d
3c8a6f4144a6c38d 3fef463b88628cd6
3c807a05b0e4047d 3fef3f49917ddc96
3c968efde3a8a894 3fef387a6e756238
3c875e18f274487d 3fef31ce4fb2a63f
3c80472b981fe7f2 3fef2b4565e27cdd
bc96b87b3f71085e 3fef24dfe1f56381
3c82f7e16d09ab31 3fef1e9df51fdee1
bc3d219b1a6fbffa 3fef187fd0dad990
3c8b3782720c0ab4 3fef1285a6e4030b
3c6e149289cecb8f 3fef0cafa93e2f56
3c834d754db0abb6 3fef06fe0a31b715
3c864201e2ac744c 3fef0170fc4cd831
3c8fdd395dd3f84a 3feefc08b26416ff
bc86a3803b8e5b04 3feef6c55f929ff1
bc924aedcc4b5068 3feef1a7373aa9cb
bc9907f81b512d8e 3feeecae6d05d866
bc71d1e83e9436d2 3feee7db34e59ff7
bc991919b3ce1b15 3feee32dc313a8e5
3c859f48a72a4c6d 3feedea64c123422
bc9312607a28698a 3feeda4504ac801c
bc58a78f4817895b 3feed60a21f72e2a
bc7c2c9b67499a1b 3feed1f5d950a897
3c4363ed60c2ac11 3feece086061892d
3c9666093b0664ef 3feeca41ed1d0057
3c6ecce1daa10379 3feec6a2b5c13cd0
3c93ff8e3f0f1230 3feec32af0d7d3de
3c7690cebb7aafb0 3feebfdad5362a27
3c931dbdeb54e077 3feebcb299fddd0d
bc8f94340071a38e 3feeb9b2769d2ca7
bc87deccdc93a349 3feeb6daa2cf6642
bc78dec6bd0f385f 3feeb42b569d4f82
bc861246ec7b5cf6 3feeb1a4ca5d920f
3c93350518fdd78e 3feeaf4736b527da
3c7b98b72f8a9b05 3feead12d497c7fd
3c9063e1e21c5409 3feeab07dd485429
3c34c7855019c6ea 3feea9268a5946b7
3c9432e62b64c035 3feea76f15ad2148
bc8ce44a6199769f 3feea5e1b976dc09
bc8c33c53bef4da8 3feea47eb03a5585
bc845378892be9ae 3feea34634ccc320
bc93cedd78565858 3feea23882552225
3c5710aa807e1964 3feea155d44ca973
bc93b3efbf5e2228 3feea09e667f3bcd
bc6a12ad8734b982 3feea012750bdabf
bc6367efb86da9ee 3fee9fb23c651a2f
bc80dc3d54e08851 3fee9f7df9519484
bc781f647e5a3ecf 3fee9f75e8ec5f74
bc86ee4ac08b7db0 3fee9f9a48a58174
bc8619321e55e68a 3fee9feb564267c9
3c909ccb5e09d4d3 3feea0694fde5d3f
bc7b32dcb94da51d 3feea11473eb0187
3c94ecfd5467c06b 3feea1ed0130c132
3c65ebe1abd66c55 3feea2f336cf4e62
bc88a1c52fb3cf42 3feea427543e1a12
bc9369b6f13b3734 3feea589994cce13
bc805e843a19ff1e 3feea71a4623c7ad
bc94d450d872576e 3feea8d99b4492ed
3c90ad675b0e8a00 3feeaac7d98a6699
3c8db72fc1f0eab4 3feeace5422aa0db
bc65b6609cc5e7ff 3feeaf3216b5448c
3c7bf68359f35f44 3feeb1ae99157736
bc93091fa71e3d83 3feeb45b0b91ffc6
bc5da9b88b6c1e29 3feeb737b0cdc5e5
bc6c23f97c90b959 3feeba44cbc8520f
bc92434322f4f9aa 3feebd829fde4e50
bc85ca6cd7668e4b 3feec0f170ca07ba
3c71affc2b91ce27 3feec49182a3f090
3c6dd235e10a73bb 3feec86319e32323
bc87c50422622263 3feecc667b5de565
3c8b1c86e3e231d5 3feed09bec4a2d33
bc91bbd1d3bcbb15 3feed503b23e255d
3c90cc319cee31d2 3feed99e1330b358
3c8469846e735ab3 3feede6b5579fdbf
bc82dfcd978e9db4 3feee36bbfd3f37a
3c8c1a7792cb3387 3feee89f995ad3ad
bc907b8f4ad1d9fa 3feeee07298db666
bc55c3d956dcaeba 3feef3a2b84f15fb
bc90a40e3da6f640 3feef9728de5593a
bc68d6f438ad9334 3feeff76f2fb5e47
bc91eee26b588a35 3fef05b030a1064a
3c74ffd70a5fddcd 3fef0c1e904bc1d2
bc91bdfbfa9298ac 3fef12c25bd71e09
3c736eae30af0cb3 3fef199bdd85529c
3c8ee3325c9ffd94 3fef20ab5fffd07a
3c84e08fd10959ac 3fef27f12e57d14b
3c63cdaf384e1a67 3fef2f6d9406e7b5
3c676b2c6c921968 3fef3720dcef9069
bc808a1883ccb5d2 3fef3f0b555dc3fa
bc8fad5d3ffffa6f 3fef472d4a07897c
bc900dae3875a949 3fef4f87080d89f2
3c74a385a63d07a7 3fef5818dcfba487
bc82919e2040220f 3fef60e316c98398
3c8e5a50d5c192ac 3fef69e603db3285
3c843a59ac016b4b 3fef7321f301b460
bc82d52107b43e1f 3fef7c97337b9b5f
bc892ab93b470dc9 3fef864614f5a129
3c74b604603a88d3 3fef902ee78b3ff6
3c83c5ec519d7271 3fef9a51fbc74c83
bc8ff7128fd391f0 3fefa4afa2a490da
bc8dae98e223747d 3fefaf482d8e67f1
3c8ec3bc41aa2008 3fefba1bee615a27
3c842b94c3a9eb32 3fefc52b376bba97
3c8a64a931d185ee 3fefd0765b6e4540
bc8e37bae43be3ed 3fefdbfdad9cbe14
3c77893b4d91cd9d 3fefe7c1819e90d8
3c5305c14160cc89 3feff3c22b8f71f1
""".split()], np.uint64).reshape(-1, 2)
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
_POW_TAB = np.array([float.fromhex(h) for h in """
0x1.6a00000000000p+0 -0x1.62c82f2b9c800p-2 0x1.ab42428375680p-48
0x1.6800000000000p+0 -0x1.5d1bdbf580800p-2 -0x1.ca508d8e0f720p-46
0x1.6600000000000p+0 -0x1.5767717455800p-2 -0x1.362a4d5b6506dp-45
0x1.6400000000000p+0 -0x1.51aad872df800p-2 -0x1.684e49eb067d5p-49
0x1.6200000000000p+0 -0x1.4be5f95777800p-2 -0x1.41b6993293ee0p-47
0x1.6000000000000p+0 -0x1.4618bc21c6000p-2 0x1.3d82f484c84ccp-46
0x1.5e00000000000p+0 -0x1.404308686a800p-2 0x1.c42f3ed820b3ap-50
0x1.5c00000000000p+0 -0x1.3a64c55694800p-2 0x1.0b1c686519460p-45
0x1.5a00000000000p+0 -0x1.347dd9a988000p-2 0x1.5594dd4c58092p-45
0x1.5800000000000p+0 -0x1.2e8e2bae12000p-2 0x1.67b1e99b72bd8p-45
0x1.5600000000000p+0 -0x1.2895a13de8800p-2 0x1.5ca14b6cfb03fp-46
0x1.5600000000000p+0 -0x1.2895a13de8800p-2 0x1.5ca14b6cfb03fp-46
0x1.5400000000000p+0 -0x1.22941fbcf7800p-2 -0x1.65a242853da76p-46
0x1.5200000000000p+0 -0x1.1c898c1699800p-2 -0x1.fafbc68e75404p-46
0x1.5000000000000p+0 -0x1.1675cababa800p-2 0x1.f1fc63382a8f0p-46
0x1.4e00000000000p+0 -0x1.1058bf9ae4800p-2 -0x1.6a8c4fd055a66p-45
0x1.4c00000000000p+0 -0x1.0a324e2739000p-2 -0x1.c6bee7ef4030ep-47
0x1.4a00000000000p+0 -0x1.0402594b4d000p-2 -0x1.036b89ef42d7fp-48
0x1.4a00000000000p+0 -0x1.0402594b4d000p-2 -0x1.036b89ef42d7fp-48
0x1.4800000000000p+0 -0x1.fb9186d5e4000p-3 0x1.d572aab993c87p-47
0x1.4600000000000p+0 -0x1.ef0adcbdc6000p-3 0x1.b26b79c86af24p-45
0x1.4400000000000p+0 -0x1.e27076e2af000p-3 -0x1.72f4f543fff10p-46
0x1.4200000000000p+0 -0x1.d5c216b4fc000p-3 0x1.1ba91bbca681bp-45
0x1.4000000000000p+0 -0x1.c8ff7c79aa000p-3 0x1.7794f689f8434p-45
0x1.4000000000000p+0 -0x1.c8ff7c79aa000p-3 0x1.7794f689f8434p-45
0x1.3e00000000000p+0 -0x1.bc286742d9000p-3 0x1.94eb0318bb78fp-46
0x1.3c00000000000p+0 -0x1.af3c94e80c000p-3 0x1.a4e633fcd9066p-52
0x1.3a00000000000p+0 -0x1.a23bc1fe2b000p-3 -0x1.58c64dc46c1eap-45
0x1.3a00000000000p+0 -0x1.a23bc1fe2b000p-3 -0x1.58c64dc46c1eap-45
0x1.3800000000000p+0 -0x1.9525a9cf45000p-3 -0x1.ad1d904c1d4e3p-45
0x1.3600000000000p+0 -0x1.87fa06520d000p-3 0x1.bbdbf7fdbfa09p-45
0x1.3400000000000p+0 -0x1.7ab890210e000p-3 0x1.bdb9072534a58p-45
0x1.3400000000000p+0 -0x1.7ab890210e000p-3 0x1.bdb9072534a58p-45
0x1.3200000000000p+0 -0x1.6d60fe719d000p-3 -0x1.0e46aa3b2e266p-46
0x1.3000000000000p+0 -0x1.5ff3070a79000p-3 -0x1.e9e439f105039p-46
0x1.3000000000000p+0 -0x1.5ff3070a79000p-3 -0x1.e9e439f105039p-46
0x1.2e00000000000p+0 -0x1.526e5e3a1b000p-3 -0x1.0de8b90075b8fp-45
0x1.2c00000000000p+0 -0x1.44d2b6ccb8000p-3 0x1.70cc16135783cp-46
0x1.2c00000000000p+0 -0x1.44d2b6ccb8000p-3 0x1.70cc16135783cp-46
0x1.2a00000000000p+0 -0x1.371fc201e9000p-3 0x1.178864d27543ap-48
0x1.2800000000000p+0 -0x1.29552f81ff000p-3 -0x1.48d301771c408p-45
0x1.2600000000000p+0 -0x1.1b72ad52f6000p-3 -0x1.e80a41811a396p-45
0x1.2600000000000p+0 -0x1.1b72ad52f6000p-3 -0x1.e80a41811a396p-45
0x1.2400000000000p+0 -0x1.0d77e7cd09000p-3 0x1.a699688e85bf4p-47
0x1.2400000000000p+0 -0x1.0d77e7cd09000p-3 0x1.a699688e85bf4p-47
0x1.2200000000000p+0 -0x1.fec9131dbe000p-4 -0x1.575545ca333f2p-45
0x1.2000000000000p+0 -0x1.e27076e2b0000p-4 0x1.a342c2af0003cp-45
0x1.2000000000000p+0 -0x1.e27076e2b0000p-4 0x1.a342c2af0003cp-45
0x1.1e00000000000p+0 -0x1.c5e548f5bc000p-4 -0x1.d0c57585fbe06p-46
0x1.1c00000000000p+0 -0x1.a926d3a4ae000p-4 0x1.53935e85baac8p-45
0x1.1c00000000000p+0 -0x1.a926d3a4ae000p-4 0x1.53935e85baac8p-45
0x1.1a00000000000p+0 -0x1.8c345d631a000p-4 0x1.37c294d2f5668p-46
0x1.1a00000000000p+0 -0x1.8c345d631a000p-4 0x1.37c294d2f5668p-46
0x1.1800000000000p+0 -0x1.6f0d28ae56000p-4 -0x1.69737c93373dap-45
0x1.1600000000000p+0 -0x1.51b073f062000p-4 0x1.f025b61c65e57p-46
0x1.1600000000000p+0 -0x1.51b073f062000p-4 0x1.f025b61c65e57p-46
0x1.1400000000000p+0 -0x1.341d7961be000p-4 0x1.c5edaccf913dfp-45
0x1.1400000000000p+0 -0x1.341d7961be000p-4 0x1.c5edaccf913dfp-45
0x1.1200000000000p+0 -0x1.16536eea38000p-4 0x1.47c5e768fa309p-46
0x1.1000000000000p+0 -0x1.f0a30c0118000p-5 0x1.d599e83368e91p-45
0x1.1000000000000p+0 -0x1.f0a30c0118000p-5 0x1.d599e83368e91p-45
0x1.0e00000000000p+0 -0x1.b42dd71198000p-5 0x1.c827ae5d6704cp-46
0x1.0e00000000000p+0 -0x1.b42dd71198000p-5 0x1.c827ae5d6704cp-46
0x1.0c00000000000p+0 -0x1.77458f632c000p-5 -0x1.cfc4634f2a1eep-45
0x1.0c00000000000p+0 -0x1.77458f632c000p-5 -0x1.cfc4634f2a1eep-45
0x1.0a00000000000p+0 -0x1.39e87b9fec000p-5 0x1.502b7f526feaap-48
0x1.0a00000000000p+0 -0x1.39e87b9fec000p-5 0x1.502b7f526feaap-48
0x1.0800000000000p+0 -0x1.f829b0e780000p-6 -0x1.980267c7e09e4p-45
0x1.0800000000000p+0 -0x1.f829b0e780000p-6 -0x1.980267c7e09e4p-45
0x1.0600000000000p+0 -0x1.7b91b07d58000p-6 -0x1.88d5493faa639p-45
0x1.0400000000000p+0 -0x1.fc0a8b0fc0000p-7 -0x1.f1e7cf6d3a69cp-50
0x1.0400000000000p+0 -0x1.fc0a8b0fc0000p-7 -0x1.f1e7cf6d3a69cp-50
0x1.0200000000000p+0 -0x1.fe02a6b100000p-8 -0x1.9e23f0dda40e4p-46
0x1.0200000000000p+0 -0x1.fe02a6b100000p-8 -0x1.9e23f0dda40e4p-46
0x1.0000000000000p+0 0x0.0p+0 0x0.0p+0
0x1.0000000000000p+0 0x0.0p+0 0x0.0p+0
0x1.fc00000000000p-1 0x1.0101575890000p-7 -0x1.0c76b999d2be8p-46
0x1.f800000000000p-1 0x1.0205658938000p-6 -0x1.3dc5b06e2f7d2p-45
0x1.f400000000000p-1 0x1.8492528c90000p-6 -0x1.aa0ba325a0c34p-45
0x1.f000000000000p-1 0x1.0415d89e74000p-5 0x1.111c05cf1d753p-47
0x1.ec00000000000p-1 0x1.466aed42e0000p-5 -0x1.c167375bdfd28p-45
0x1.e800000000000p-1 0x1.894aa149fc000p-5 -0x1.97995d05a267dp-46
0x1.e400000000000p-1 0x1.ccb73cdddc000p-5 -0x1.a68f247d82807p-46
0x1.e200000000000p-1 0x1.eea31c006c000p-5 -0x1.e113e4fc93b7bp-47
0x1.de00000000000p-1 0x1.1973bd1466000p-4 -0x1.5325d560d9e9bp-45
0x1.da00000000000p-1 0x1.3bdf5a7d1e000p-4 0x1.cc85ea5db4ed7p-45
0x1.d600000000000p-1 0x1.5e95a4d97a000p-4 -0x1.c69063c5d1d1ep-45
0x1.d400000000000p-1 0x1.700d30aeac000p-4 0x1.c1e8da99ded32p-49
0x1.d000000000000p-1 0x1.9335e5d594000p-4 0x1.3115c3abd47dap-45
0x1.cc00000000000p-1 0x1.b6ac88dad6000p-4 -0x1.390802bf768e5p-46
0x1.ca00000000000p-1 0x1.c885801bc4000p-4 0x1.646d1c65aacd3p-45
0x1.c600000000000p-1 0x1.ec739830a2000p-4 -0x1.dc068afe645e0p-45
0x1.c400000000000p-1 0x1.fe89139dbe000p-4 -0x1.534d64fa10afdp-45
0x1.c000000000000p-1 0x1.1178e8227e000p-3 0x1.1ef78ce2d07f2p-45
0x1.be00000000000p-1 0x1.1aa2b7e23f000p-3 0x1.ca78e44389934p-45
0x1.ba00000000000p-1 0x1.2d1610c868000p-3 0x1.39d6ccb81b4a1p-47
0x1.b800000000000p-1 0x1.365fcb0159000p-3 0x1.62fa8234b7289p-51
0x1.b400000000000p-1 0x1.4913d8333b000p-3 0x1.5837954fdb678p-45
0x1.b200000000000p-1 0x1.527e5e4a1b000p-3 0x1.633e8e5697dc7p-45
0x1.ae00000000000p-1 0x1.6574ebe8c1000p-3 0x1.9cf8b2c3c2e78p-46
0x1.ac00000000000p-1 0x1.6f0128b757000p-3 -0x1.5118de59c21e1p-45
0x1.aa00000000000p-1 0x1.7898d85445000p-3 -0x1.c661070914305p-46
0x1.a600000000000p-1 0x1.8beafeb390000p-3 -0x1.73d54aae92cd1p-47
0x1.a400000000000p-1 0x1.95a5adcf70000p-3 0x1.7f22858a0ff6fp-47
0x1.a000000000000p-1 0x1.a93ed3c8ae000p-3 -0x1.8724350562169p-45
0x1.9e00000000000p-1 0x1.b31d8575bd000p-3 -0x1.c358d4eace1aap-47
0x1.9c00000000000p-1 0x1.bd087383be000p-3 -0x1.d4bc4595412b6p-45
0x1.9a00000000000p-1 0x1.c6ffbc6f01000p-3 -0x1.1ec72c5962bd2p-48
0x1.9600000000000p-1 0x1.db13db0d49000p-3 -0x1.aff2af715b035p-45
0x1.9400000000000p-1 0x1.e530effe71000p-3 0x1.212276041f430p-51
0x1.9200000000000p-1 0x1.ef5ade4dd0000p-3 -0x1.a211565bb8e11p-51
0x1.9000000000000p-1 0x1.f991c6cb3b000p-3 0x1.bcbecca0cdf30p-46
0x1.8c00000000000p-1 0x1.07138604d5800p-2 0x1.89cdb16ed4e91p-48
0x1.8a00000000000p-1 0x1.0c42d67616000p-2 0x1.7188b163ceae9p-45
0x1.8800000000000p-1 0x1.1178e8227e800p-2 -0x1.c210e63a5f01cp-45
0x1.8600000000000p-1 0x1.16b5ccbacf800p-2 0x1.b9acdf7a51681p-45
0x1.8400000000000p-1 0x1.1bf99635a6800p-2 0x1.ca6ed5147bdb7p-45
0x1.8200000000000p-1 0x1.214456d0eb800p-2 0x1.a87deba46baeap-47
0x1.7e00000000000p-1 0x1.2bef07cdc9000p-2 0x1.a9cfa4a5004f4p-45
0x1.7c00000000000p-1 0x1.314f1e1d36000p-2 -0x1.8e27ad3213cb8p-45
0x1.7a00000000000p-1 0x1.36b6776be1000p-2 0x1.16ecdb0f177c8p-46
0x1.7800000000000p-1 0x1.3c25277333000p-2 0x1.83b54b606bd5cp-46
0x1.7600000000000p-1 0x1.419b423d5e800p-2 0x1.8e436ec90e09dp-47
0x1.7400000000000p-1 0x1.4718dc271c800p-2 -0x1.f27ce0967d675p-45
0x1.7200000000000p-1 0x1.4c9e09e173000p-2 -0x1.e20891b0ad8a4p-45
0x1.7000000000000p-1 0x1.522ae0738a000p-2 0x1.ebe708164c759p-45
0x1.6e00000000000p-1 0x1.57bf753c8d000p-2 0x1.fadedee5d40efp-46
0x1.6c00000000000p-1 0x1.5d5bddf596000p-2 -0x1.a0b2a08a465dcp-47
""".split()], _F64).reshape(-1, 3)
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
