"""Bit-exact numpy emulations of the glibc functions TensorFlow's random kernels call.

TensorFlow's Box-Muller transform (``random_distributions.h``) calls the C library: ``logf`` and
``sincosf`` for float32 normals, ``log`` for float64 ones. On Linux that is glibc, whose
implementations (since glibc 2.28) are Arm's Optimized Routines: table-driven, evaluated in double
precision with fused multiply-adds, accurate to about 0.8 ULP but *not* correctly rounded. To be
bit-exact with TF, this module evaluates the same algorithms, with the same tables, in the same
order, with every fused multiply-add emulated exactly (``fma`` below).

The operation order is that of glibc's x86-64 FMA variants (``__logf_fma``, ``__sincosf_fma``,
``__log_fma``), which glibc selects on every x86-64 CPU with FMA (all since 2013). Each function
handles only the domain the random kernels give it (documented per function).

The tables and polynomial coefficients are from Arm Optimized Routines
(https://github.com/ARM-software/optimized-routines, ``math/logf_data.c``, ``math/log_data.c``,
``math/sincosf_data.c``): Copyright (c) 2017-2018, Arm Limited. SPDX-License-Identifier: MIT.
The numpy code is ours.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fma", "logf", "sincosf", "log"]

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
