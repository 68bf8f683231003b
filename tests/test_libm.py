"""ops/_libm.py: numpy emulations of glibc's logf, sincosf and log, bit for bit.

TensorFlow's random normals call these C functions, which are not correctly rounded; the random
op cases (tests/cases/random.py) compare whole tensors with TF at zero tolerance. Here: the exact
fused multiply-add, recorded glibc results that a correctly rounded function would not give
(they run anywhere), and, on x86-64 glibc with FMA, the live C library itself.
"""

from __future__ import annotations

import ctypes
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np

from tfdeploy.numerics import fma as _fma
from tfdeploy.numerics import libm as _libm

# (input, glibc 2.36 output) where the correctly rounded result differs, or (for log) where an
# unfused evaluation of glibc's algorithm differs: these pin the emulation down on any machine
LOGF = [
    ("0x1.182e540000000p-1", "-0x1.34addc0000000p-1"),
    ("0x1.e3cef40000000p-1", "-0x1.cff58c0000000p-5"),
    ("0x1.47911c0000000p-1", "-0x1.c95a0a0000000p-2"),
    ("0x1.76bff00000000p-2", "-0x1.0155aa0000000p+0"),
    ("0x1.c159b80000000p-1", "-0x1.0b4eda0000000p-3"),
    ("0x1.f615440000000p-1", "-0x1.4074940000000p-6"),
    ("0x1.b511900000000p-1", "-0x1.44106c0000000p-3"),
    ("0x1.f51ea40000000p-1", "-0x1.5fec2e0000000p-6"),
    ("0x1.f46e700000000p-1", "-0x1.7671100000000p-6"),
    ("0x1.f7797c0000000p-1", "-0x1.131c820000000p-6"),
    ("0x1.d36b940000000p-1", "-0x1.7521000000000p-4"),
    ("0x1.93c1900000000p-2", "-0x1.dc7f920000000p-1"),
]
SINCOSF = [
    ("0x1.fafc3a0000000p-3", "0x1.f5d2ae0000000p-3", "0x1.f064500000000p-1"),
    ("0x1.0586ba0000000p+2", "-0x1.9ee6ac0000000p-1", "-0x1.2c00780000000p-1"),
    ("0x1.3c7c0e0000000p+2", "-0x1.f233c80000000p-1", "0x1.d83eee0000000p-3"),
    ("0x1.17f5d80000000p-1", "0x1.0a37740000000p-1", "0x1.b558ec0000000p-1"),
    ("0x1.0d3c3c0000000p+2", "-0x1.bff1960000000p-1", "-0x1.eff1fe0000000p-2"),
    ("0x1.855fde0000000p+2", "-0x1.95497e0000000p-3", "0x1.f5dfd80000000p-1"),
    ("0x1.af46120000000p+1", "-0x1.ce606e0000000p-3", "-0x1.f2c7ce0000000p-1"),
    ("0x1.7cde2a0000000p+2", "-0x1.4de0de0000000p-2", "0x1.e4051c0000000p-1"),
    ("0x1.16b0760000000p+2", "-0x1.df90000000000p-1", "-0x1.66af780000000p-2"),
    ("0x1.be0ad40000000p+1", "-0x1.587e820000000p-2", "-0x1.e228140000000p-1"),
    ("0x1.c0056a0000000p+0", "0x1.f7cb140000000p-1", "-0x1.6d36e40000000p-3"),
    ("0x1.6a19100000000p+0", "0x1.f9c1300000000p-1", "0x1.3ee7980000000p-3"),
]
LOG = [
    ("0x1.e4c941e7d7ac5p-1", "-0x1.bf6b9824097bdp-5"),
    ("0x1.e2a7e4a93ce62p-1", "-0x1.e37f8fa0c9045p-5"),
    ("0x1.0c969bf93c488p+0", "0x1.893c36786a69fp-5"),
    ("0x1.e3672a1200885p-1", "-0x1.d6d3ac3ec3dc8p-5"),
    ("0x1.e2f29bb729c05p-1", "-0x1.de8bd2e6b0a5fp-5"),
    ("0x1.0e412f34f0d2ap+0", "0x1.bbe6a6b265f5ap-5"),
    ("0x1.09febca81e701p+0", "0x1.39c19588174b2p-5"),
    ("0x1.108016abacc91p+0", "0x1.ffb13aa1ecd10p-5"),
    ("0x1.d7c315363aca3p-1", "-0x1.4f41dafd056e4p-4"),
    ("0x1.099e17b14c8e0p-4", "-0x1.5e2bb3b41699cp+1"),
    ("0x1.2b272d8ba74ecp-1", "-0x1.13221339fe397p-1"),
    ("0x1.def9c595ce069p-1", "-0x1.11199da929dbap-4"),
    ("0x1.bc8c3476a9a4fp-1", "-0x1.2150c2a32a034p-3"),
    ("0x1.65b5298eaf9a3p-1", "-0x1.6f37145f29af4p-2"),
    ("0x1.1f8c869b132f7p-1", "-0x1.276393dd07d3fp-1"),
    ("0x1.6a24f73acfd05p-1", "-0x1.6297a51fcf433p-2"),
]

EXP = [
    ("0x1.d28908f751840p-2", "0x1.93be2f6b24893p+0"),
    ("0x1.82d1c681f5c80p+3", "0x1.5b28b088e3c05p+17"),
    ("0x1.00ea77ca68c84p+4", "0x1.1f28a85d3c582p+23"),
    ("0x1.3db80dc902914p+4", "0x1.91366b9ce683fp+28"),
    ("0x1.babd4523f5188p+3", "0x1.f2311dfd96db0p+19"),
    ("0x1.3583597082ac2p+3", "0x1.effc72cea7aa9p+13"),
    ("0x1.4bcfe1acd625cp+3", "0x1.f1d27ed8a0b90p+14"),
    ("-0x1.274565b17bdacp+4", "0x1.4c30c55cc0dd1p-27"),
    ("-0x1.6b21ff06e9255p+9", "0x0.0000004a8e007p-1022"),
    ("-0x1.6691750de74b5p+9", "0x0.000a7d59764acp-1022"),
    ("-0x1.66982de9230dap+9", "0x0.0009f3f6b7207p-1022"),
    ("-0x1.64d536f6c167ap+9", "0x0.0151520d29295p-1022"),
]

POW = [
    ("0x1.d220e3bfac3f8p-1", "0x1.0f57fde0ff3c6p+1", "0x1.a39e5f4ec3de6p-1"),
    ("0x1.a28afda2c02b6p-2", "0x1.2838b9dcf10cdp+2", "0x1.049b35ea11e82p-6"),
    ("0x1.df65367da6230p-4", "0x1.f3a25305e23bep+1", "0x1.e42449bf9ec43p-13"),
    ("0x1.358b7ebde124fp-1", "0x1.725c562d366d0p+2", "0x1.bd55ebe2409e8p-5"),
    ("0x1.1232517f28064p-2", "0x1.b865d421c4850p+1", "0x1.600ca930687d7p-7"),
    ("0x1.7589b917e6babp-1", "0x1.ce9aa0aad8f50p+2", "0x1.a357216a2d52cp-4"),
    ("0x1.734bfb776cb78p-3", "0x1.c61cc34422852p+2", "0x1.6f05635c3707ap-18"),
    ("0x1.4b95d44f7a67fp-1", "0x1.e5efae0e2a7c0p+2", "0x1.2e92817f05c04p-5"),
]

EXPF = [
    ("-0x1.e867aa0000000p+3", "0x1.f92d3e0000000p-23"),
    ("-0x1.5ac5fa0000000p+3", "0x1.49eccc0000000p-16"),
    ("-0x1.5d82c00000000p+3", "0x1.2ee01e0000000p-16"),
    ("0x1.0ccd180000000p+4", "0x1.2dc91e0000000p+24"),
    ("0x1.0cb3900000000p+4", "0x1.2be90e0000000p+24"),
    ("-0x1.973a9a0000000p+3", "0x1.8f0b200000000p-19"),
    ("-0x1.2354680000000p+4", "0x1.a8fb200000000p-27"),
    ("-0x1.0889a60000000p+4", "0x1.1b782c0000000p-24"),
    ("0x1.a2db0c0000000p+3", "0x1.d85f4c0000000p+18"),
    ("-0x1.951d4a0000000p+2", "0x1.d330b60000000p-10"),
]


def _f32(h: str) -> np.float32:
    return np.float32(float.fromhex(h))


def _exact(f, *xs) -> Decimal:
    """``f`` of float arguments in 90-digit decimal arithmetic (``decimal`` rounds exp, ln
    and ** correctly): a reference independent of every C library and CPU."""
    with localcontext() as ctx:
        ctx.prec = 90
        return f(*[Decimal(float(x)) for x in xs])


def _rounded(f, *xs) -> float:
    """The correctly rounded float64 value of ``f`` at ``xs``."""
    return float(_exact(f, *xs))


def _rounded32(f, *xs) -> np.float32:
    """The correctly rounded float32 value of ``f`` at ``xs`` (nearest of three neighbours)."""
    d = _exact(f, *xs)
    a = np.float32(float(d))
    near = (a, np.nextafter(a, np.float32(np.inf)), np.nextafter(a, np.float32(-np.inf)))
    return min(near, key=lambda v: abs(Decimal(float(v)) - d))


def _ln(d):
    return d.ln()


def _exp(d):
    return d.exp()


def test_recorded_logf():
    x = np.array([_f32(a) for a, _ in LOGF])
    want = np.array([_f32(b) for _, b in LOGF])
    assert len(x) >= 10
    # each is glibc's, not the correctly rounded value
    assert all(_rounded32(_ln, v) != w for v, w in zip(x, want))
    np.testing.assert_array_equal(_libm.logf(x), want)


def test_recorded_expf():
    x = np.array([_f32(a) for a, _ in EXPF])
    want = np.array([_f32(b) for _, b in EXPF])
    assert all(_rounded32(_exp, v) != w for v, w in zip(x, want))
    np.testing.assert_array_equal(_libm.expf(x), want)
    special = np.float32([0.0, np.inf, -np.inf, np.nan, 88.8, -104.0, -103.5, -87.0])
    got = _libm.expf(special)
    np.testing.assert_array_equal(got[:6], [1.0, np.inf, 0.0, np.nan, np.inf, 0.0])
    assert got[6] == np.float32(2.0 ** -149) and 0 < got[7] < 2e-38  # glibc's underflow steps


def test_recorded_sincosf():
    y = np.array([_f32(a) for a, _, _ in SINCOSF])
    sin, cos = _libm.sincosf(y)
    np.testing.assert_array_equal(sin, [_f32(s) for _, s, _ in SINCOSF])
    np.testing.assert_array_equal(cos, [_f32(c) for _, _, c in SINCOSF])


def test_recorded_log():
    x = np.array([float.fromhex(a) for a, _ in LOG])
    want = np.array([float.fromhex(b) for _, b in LOG])
    np.testing.assert_array_equal(_libm.log(x), want)
    # the fallback to the fused evaluation is what gets the first half right
    hi, t, _ = _libm._log_near1(x[:4], _fma.plain)
    assert not np.array_equal(hi + t, want[:4])


def test_recorded_exp():
    x = np.array([float.fromhex(a) for a, _ in EXP])
    want = np.array([float.fromhex(b) for _, b in EXP])
    assert (want[-4:] < 2.3e-308).all()  # subnormal results: glibc's special rounding path
    np.testing.assert_array_equal(_libm.exp(x), want)
    # glibc rounds these correctly (numpy's own AVX-512 exp, on some CPUs, does not)
    assert [_rounded(_exp, v) for v in x] == want.tolist()
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-300, 709.8, -746.0, 2000.0])
    with np.errstate(all="ignore"):
        got = _libm.exp(special)
    np.testing.assert_array_equal(got, [1, 1, np.inf, 0, np.nan, 1, np.inf, 0, np.inf])


def test_recorded_pow():
    x, y, want = (np.array([float.fromhex(t[j]) for t in POW]) for j in range(3))
    np.testing.assert_array_equal(_libm.pow(x, y), want)
    # glibc rounds these correctly (numpy's own AVX-512 pow, on some CPUs, does not)
    assert [_rounded(lambda a, b: a ** b, u, v) for u, v in zip(x, y)] == want.tolist()
    # IEEE special cases, signs of zero included
    a = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, -2.0, 0.5, 5e-324])
    xs, ys = np.meshgrid(a, np.array([0.0, -0.0, 1.0, -1.0, 3.0, -3.0, 0.5, np.inf, -np.inf,
                                      np.nan, 2.0 ** 70, 2.0 ** -70]))
    with np.errstate(all="ignore"):
        want = np.power(xs, ys)
    got = _libm.pow(xs, ys)
    same = (got.view(np.uint64) == want.view(np.uint64)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), list(zip(xs[~same], ys[~same], got[~same], want[~same]))


def test_fma_is_one_rounding():
    rng = np.random.default_rng(0)
    a = rng.normal(size=3000) * 2.0 ** rng.integers(-30, 30, 3000)
    b = rng.normal(size=3000)
    # c cancels a*b to varying depths, where a second rounding shows most
    c = np.concatenate([rng.normal(size=1000),
                        -(a[1000:] * b[1000:]) * (1 + rng.normal(size=2000) * 2.0 ** -40)])
    want = np.array([float(Fraction(x) * Fraction(y) + Fraction(z)) for x, y, z in zip(a, b, c)])
    got = _libm.fma(a, b, c)
    np.testing.assert_array_equal(got, want)
    assert (a * b + c != want).any()  # the test can tell one rounding from two
    # (1 + 2^-52)^2 - 1 = 2^-51 + 2^-104 is exact; and a product just below a rounding midpoint
    # that the addend lifts just above it: one rounding goes up, two would go down
    e = 2.0 ** -52
    assert _libm.fma(np.array(1 + e), np.array(1 + e), np.array(-1.0)) == 2.0 ** -51 + 2.0 ** -104
    assert _libm.fma(np.array(1 + e), np.array(1 - e / 2), np.array(2.0 ** -104)) == 1 + e
    assert (1 + e) * (1 - e / 2) + 2.0 ** -104 == 1.0
    assert _libm.fma(np.array(-1 - e), np.array(1 - e / 2), np.array(-(2.0 ** -104))) == -1 - e


# (x, glibc 2.36 log1p(x)) where numpy's log1p differed (first group), or where evaluating
# fdlibm's algorithm without glibc's fused multiply-adds differs (second group)
LOG1P = [
    ("-0x1.c7c21547f63b0p-2", "-0x1.2d87888cc41fap-1"),
    ("-0x1.399eca7fb7038p-1", "-0x1.e572d22f71d12p-1"),
    ("-0x1.244af7ce3b760p-5", "-0x1.29a285179bd9cp-5"),
    ("-0x1.b87036925e2e0p-3", "-0x1.efe9ce5e38312p-3"),
    ("0x1.2baf5c5b5a8d4p+19", "0x1.aa79ac0d446a2p+3"),
    ("0x1.54f527bab3114p+18", "0x1.986c676bf2c0ap+3"),
    ("-0x1.2c88fc8ff583ap-1", "-0x1.c4be7678ff4c0p-1"),
    ("-0x1.3eaca27d52688p-2", "-0x1.7dc27b4778deap-2"),
    ("-0x1.bbf863c617020p-3", "-0x1.f46af9b803b90p-3"),
    ("-0x1.72897860aaaa0p-3", "-0x1.98be033248139p-3"),
    ("0x1.a518183a6e58ep-2", "0x1.60b99436e84b5p-2"),
    ("0x1.c167396c33f89p+0", "0x1.037ac63c4fa45p+0"),
    ("0x1.07c3599688a63p+1", "0x1.1e5e5723b4772p+0"),
]


def test_recorded_log1p():
    x = np.array([float.fromhex(a) for a, _ in LOG1P])
    want = np.array([float.fromhex(b) for _, b in LOG1P])
    np.testing.assert_array_equal(_libm.log1p(x), want)
    # most are glibc's, not the correctly rounded value
    assert sum(_rounded(lambda d: (1 + d).ln(), v) != w for v, w in zip(x, want)) >= 8


def test_log1p_special_values():
    x = np.array([0.0, -0.0, -1.0, -2.0, np.inf, -np.inf, np.nan, 1e-300, -2.0 ** -30, 2.0 ** 60])
    with np.errstate(all="ignore"):
        want = np.log1p(x)
    got = _libm.log1p(x)
    np.testing.assert_array_equal(got, want)
    assert np.signbit(got[1]) and not np.signbit(got[0])


def _tf_uniforms(n: int, rng) -> np.ndarray:
    """float32 values as TF's random kernels make them: 23 random bits in [0, 1)."""
    bits = np.uint32(127 << 23) | rng.integers(0, 1 << 23, n).astype(np.uint32)
    return bits.view(np.float32) - np.float32(1.0)


def test_against_the_c_library(glibc):
    m = glibc
    rng = np.random.default_rng(1)
    u = np.maximum(_tf_uniforms(40000, rng), np.float32(1e-7))
    want = np.array([m.logf(float(v)) for v in u], np.float32)
    np.testing.assert_array_equal(_libm.logf(u), want)

    y = (2.0 * np.pi * _tf_uniforms(40000, rng).astype(np.float64)).astype(np.float32)
    y = np.concatenate([y, np.float32([0.0, 2.0 ** -13, 0.785398, 0.7853982, 2.3561945,
                                       3.9269907, 4.712389, 5.497787, 6.2831850, -0.0, -1e-30,
                                       119.99, -119.99]),
                        rng.uniform(-119.9, 119.9, 10000).astype(np.float32)])
    s, c = ctypes.c_float(), ctypes.c_float()
    want = []
    for v in y:
        m.sincosf(float(v), ctypes.byref(s), ctypes.byref(c))
        want.append((s.value, c.value))
    want = np.array(want, np.float32)
    sin, cos = _libm.sincosf(y)
    np.testing.assert_array_equal(sin, want[:, 0])
    np.testing.assert_array_equal(cos, want[:, 1])

    x = np.concatenate([rng.random(40000), 1 + (rng.random(40000) - 0.5) * 0.13,
                        [1e-7, 0.9375, 1.0 - 2.0 ** -53, 0.5, 1 + 0x109 / 4096 - 2.0 ** -52,
                         1 + 0x109 / 4096]])
    want = np.array([m.log(float(v)) for v in x])
    np.testing.assert_array_equal(_libm.log(x), want)

    # every kind of input: huge, tiny, subnormal, zero, negative, inf, nan
    x = np.concatenate([np.exp(rng.uniform(-700, 700, 20000)), rng.random(5000) * 1e-310,
                        [0.0, -0.0, -1.0, np.inf, -np.inf, np.nan, 5e-324, 1e308]])
    with np.errstate(all="ignore"):
        want = np.array([m.log(float(v)) for v in x])
    np.testing.assert_array_equal(_libm.log(x), want)
    xf = np.concatenate([np.exp(rng.uniform(-87, 88, 20000)), rng.random(5000) * 1e-39,
                         [0.0, -0.0, -1.0, np.inf, -np.inf, np.nan, 1e-45]]).astype(np.float32)
    want = np.array([m.logf(float(v)) for v in xf], np.float32)
    np.testing.assert_array_equal(_libm.logf(xf), want)

    x = np.concatenate([rng.random(30000) * 40 - 20, rng.random(20000) * 1500 - 750,
                        rng.random(5000) * 30 - 745, rng.random(2000) * 1e-12,
                        [0.0, 2.0 ** -54, 2.0 ** -55, 511.9, 512.0, 709.78, 709.79, 1023.9]])
    want = np.array([m.exp(float(v)) for v in x])
    np.testing.assert_array_equal(_libm.exp(x), want)

    x = np.concatenate([rng.random(20000), rng.random(10000) * 100, -rng.random(5000) * 4])
    y = np.concatenate([rng.random(20000) * 20, rng.normal(size=10000) * 30,
                        np.round(rng.normal(size=5000) * 5)])
    want = np.array([m.pow(float(a), float(b)) for a, b in zip(x, y)])
    np.testing.assert_array_equal(_libm.pow(x, y), want)

    x = (rng.random(40000) * 220 - 115).astype(np.float32)
    want = np.array([m.expf(float(v)) for v in x], np.float32)
    np.testing.assert_array_equal(_libm.expf(x), want)

    x = (rng.random(40000) * 220 - 115).astype(np.float32)
    want = np.array([m.expf(float(v)) for v in x], np.float32)
    np.testing.assert_array_equal(_libm.expf(x), want)


def test_log1p_against_the_c_library(glibc):
    m = glibc
    rng = np.random.default_rng(3)
    u = np.floor(rng.random(30000) * 2.0 ** 52) / 2.0 ** 52  # TF's double uniforms
    x = np.concatenate([-u, rng.uniform(-0.3, 0.42, 10000), rng.uniform(0.4, 5, 5000),
                        np.exp(rng.uniform(-60, 60, 5000)), 2.0 ** -20 * rng.uniform(-1, 1, 2000),
                        [2.0 ** 53, 1e300, 2.0 ** -29, -(2.0 ** -29), 2.0 ** -54]])
    want = np.array([m.log1p(float(v)) for v in x])
    np.testing.assert_array_equal(_libm.log1p(x), want)
