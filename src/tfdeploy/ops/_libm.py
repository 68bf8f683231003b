"""Bit-exact numpy emulations of the glibc functions TensorFlow's random kernels call.

TensorFlow's random kernels call the C library: the Box-Muller transform
(``random_distributions.h``) calls ``logf`` and ``sincosf`` for float32 normals and ``log`` for
float64 ones; other samplers call ``log`` and ``exp``. On Linux that is glibc, whose
implementations (since glibc 2.28) are Arm's Optimized Routines: table-driven, evaluated in
double precision with fused multiply-adds, accurate to about 0.8 ULP but *not* correctly
rounded. To be bit-exact with TF, this module evaluates the same algorithms, with the same
tables, in the same order, with every fused multiply-add emulated exactly (``fma`` below).

The operation order is that of glibc's x86-64 FMA variants (``__logf_fma``, ``__sincosf_fma``,
``__log_fma``, ``__exp_fma``), which glibc selects on every x86-64 CPU with FMA (all since
2013). Each function handles the domain documented on it.

The tables and polynomial coefficients are from Arm Optimized Routines
(https://github.com/ARM-software/optimized-routines, ``math/logf_data.c``, ``math/log_data.c``,
``math/sincosf_data.c``, ``math/exp_data.c``): Copyright (c) 2017-2018, Arm Limited.
SPDX-License-Identifier: MIT. The numpy code is ours.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fma", "logf", "sincosf", "log", "exp"]

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


def _add_round_odd(a, b):
    """a + b rounded to odd: truncated, with the last bit set when inexact."""
    s, e = _two_sum(a, b)
    fix = (e != 0) & ((s.view(np.uint64) & np.uint64(1)) == 0)
    if fix.any():
        s = np.where(fix, np.nextafter(s, np.where(e > 0, np.inf, -np.inf)), s)
    return s


def fma(a, b, c):
    """RN(a * b + c) with a single rounding, as the FMA instruction computes it.

    a*b = p + pe exactly; p + c = s + se exactly; then RN(s + RO(pe + se)) is the correctly
    rounded sum of the three (Boldo & Melquiond, "Emulation of FMA and correctly rounded sums:
    proved algorithms using rounding to odd", IEEE TC 2008).
    """
    a, b, c = np.asarray(a, _F64), np.asarray(b, _F64), np.asarray(c, _F64)
    p, pe = _two_prod(a, b)
    s, se = _two_sum(p, c)
    return s + _add_round_odd(pe, se)


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


def _logf_double(x: np.ndarray, f) -> np.ndarray:
    """glibc logf before its final rounding to float32, with ``f`` as the fused multiply-add."""
    ix = x.view(np.uint32).astype(np.int64)
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
    """glibc ``logf`` for positive normal float32 ``x`` (TF's uniforms lie in [1e-7, 1))."""
    x = np.asarray(x, np.float32)
    y = _logf_double(x, _plain)
    redo = _near_float32_midpoint(y)
    if redo.any():
        y[redo] = _logf_double(x[redo], fma)
    return y.astype(np.float32)


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
    """glibc ``sincosf`` for float32 ``0 <= y < 120`` (TF's angles lie in [0, 2*pi))."""
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
    """glibc ``log`` for positive normal float64 ``x`` (TF's uniforms lie in [1e-7, 1))."""
    x = np.asarray(x, _F64)
    near = (x.view(np.uint64) - _LOG_NEAR1_LO) < _LOG_NEAR1_SPAN
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
    shape = x.shape
    x = x.reshape(-1)
    abstop = ((x.view(np.uint64) >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    out = np.empty_like(x)
    tiny = abstop < 0x3C9  # |x| < 2^-54
    huge = abstop >= 0x409  # |x| >= 1024, inf, nan
    main = ~(tiny | huge)
    out[tiny] = 1.0 + x[tiny]
    if huge.any():
        h = x[huge]
        out[huge] = np.where(np.isnan(h), h, np.where(h > 0, np.inf, 0.0))
    if main.any():
        with np.errstate(all="ignore"):  # scales beyond the range are fixed by _exp_special
            out[main] = _exp_main(x[main], abstop[main])
    return out.reshape(shape)


def _exp_main(xm: np.ndarray, abstop: np.ndarray) -> np.ndarray:
    kds = fma(xm, _EXP_INVLN2N, _EXP_SHIFT)
    ki = kds.view(np.uint64)
    kd = kds - _EXP_SHIFT
    r = fma(kd, _EXP_NEGLN2LON, fma(kd, _EXP_NEGLN2HIN, xm))
    c2, c3, c4, c5 = _EXP_C
    idx = (ki & np.uint64(127)).astype(np.intp)
    sbits = _EXP_SBITS[idx] + (ki << np.uint64(45))
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
    """glibc exp's specialcase: results near overflow, or subnormal."""
    up = (ki & np.uint64(0x80000000)) == 0
    out = np.empty_like(tmp)
    if up.any():
        scale = (sbits[up] - np.uint64(1009 << 52)).view(_F64)
        with np.errstate(over="ignore"):
            out[up] = fma(scale, tmp[up], scale) * 2.0 ** 1009
    dn = ~up
    if dn.any():
        scale = (sbits[dn] + np.uint64(1022 << 52)).view(_F64)
        t = tmp[dn]
        st = scale * t
        y = scale + st
        small = y < 1.0
        if small.any():  # round to the subnormal precision before scaling (no double rounding)
            ys, ss, sts = y[small], scale[small], st[small]
            lo = (ss - ys) + sts
            hi = 1.0 + ys
            lo = ((1.0 - hi) + ys) + lo
            y[small] = (hi + lo) - 1.0 + 0.0
        with np.errstate(under="ignore"):
            out[dn] = 2.0 ** -1022 * y
    return out
