"""ops/_libm_sincos.py: numpy emulations of glibc's double sin, cos and sincos, bit for bit.

TensorFlow's float64 normals (Box-Muller) call glibc's ``sincos``, which is not correctly
rounded. Here: the regenerated tables, the exact arithmetic helpers, the proof obligations of
the fast path, recorded glibc results that a correctly rounded function or an evaluation without
fused multiply-adds would not give (they run anywhere), special values, and, on x86-64 glibc with
FMA, the live C library over ~100k inputs.
"""

from __future__ import annotations

import ctypes
from fractions import Fraction

import numpy as np
import pytest

from tfdeploy.numerics import libm_sincos as sc

# (x, glibc 2.36 sin(x), cos(x)): in each, glibc differs from the correctly rounded value, and the
# same algorithm evaluated without fused multiply-adds differs from glibc (the branred inputs:
# only the latter), one group per evaluation path
RECORDED = [
    ("0x1.d1059a8069dc4p-4", "0x1.d00608b216144p-4", "0x1.fcb432d016870p-1"),  # |x| < 0.126
    ("-0x1.4b2cb3616fa12p-4", "-0x1.4ad05be64b178p-4", "0x1.fe53cf1c9c646p-1"),
    ("0x1.8b2268231fc2cp-1", "0x1.6510138e8403fp-1", "0x1.6ef273b2c0700p-1"),  # |x| < 0.855
    ("0x1.1df40224b3e1ep-1", "0x1.0f513bb7f57aep-1", "0x1.b2339349a22b0p-1"),
    ("-0x1.4eb0eaededd9cp-1", "-0x1.375bd95051fbep-1", "0x1.96729a6662a78p-1"),
    ("0x1.9faf93a636b64p-1", "0x1.7380152873202p-1", "0x1.6052b16942163p-1"),
    ("0x1.69b2607025340p+0", "0x1.f9a10b92a6e8cp-1", "0x1.4212f481bbc40p-3"),  # |x| < 2.426
    ("-0x1.410b138d11f62p+0", "-0x1.e688b58031d48p-1", "0x1.3eed605564584p-2"),
    ("-0x1.cb4c0a0c2ff72p+0", "-0x1.f348caf019770p-1", "-0x1.c597b597e5a6cp-3"),
    ("0x1.43ed48adeefecp+2", "-0x1.e123bf27970c2p-1", "0x1.5e22976e1797cp-2"),  # 2*pi*u
    ("0x1.735436d3091afp+2", "-0x1.d9ecac0088ff0p-2", "0x1.c5dd49378e40ap-1"),
    ("0x1.a94d2a8f8cd27p+1", "-0x1.70d163be4c98ap-3", "-0x1.f7a110cdf9575p-1"),
    ("-0x1.4eb01b4d27c16p+26", "-0x1.33f0cbdfe0538p-1", "-0x1.990b227017a6ap-1"),  # < 1e8
    ("0x1.a7a723613a51ep+25", "-0x1.fc288555d3c26p-1", "-0x1.f4d34ed5313dbp-4"),
    ("0x1.3de417b3ff043p+25", "-0x1.86f3440204470p-3", "-0x1.f695ae1c01fd2p-1"),
    ("-0x1.b0466ed7d4180p+504", "0x1.cea082380ba02p-1", "-0x1.b6ba067fc9632p-2"),  # branred
    ("0x1.ca9bebc182926p+167", "0x1.2c53e395d0116p-1", "0x1.9eaa4e78f3121p-1"),
]
# glibc's sincos takes this sine from a renormalised pi/2 - |x| (its sin does not)
SINCOS_NOT_SIN = ("0x1.ad1fb54442d18p+0", "0x1.fd27acee550dbp-1", "0x1.fd27acee550dcp-1",
                  "-0x1.af33152f68f8bp-4")


def _hex(values) -> np.ndarray:
    return np.array([float.fromhex(v) for v in values])


def _bits_equal(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a.view(np.uint64) == b.view(np.uint64)) | (np.isnan(a) & np.isnan(b))


def test_recorded():
    x, want_sin, want_cos = (_hex(col) for col in zip(*RECORDED))
    np.testing.assert_array_equal(sc.sin(x), want_sin)
    np.testing.assert_array_equal(sc.cos(x), want_cos)
    s, c = sc.sincos(x)
    np.testing.assert_array_equal(s, want_sin)
    np.testing.assert_array_equal(c, want_cos)
    # the fused evaluation is what gets them right
    orig = sc._certify
    try:
        sc._certify = lambda kernel, a, da: (np.add(*kernel(a, da, sc._plain)[:2]), np.arange(0))
        assert not (np.array_equal(sc.sin(x), want_sin) and np.array_equal(sc.cos(x), want_cos))
    finally:
        sc._certify = orig


def test_sincos_differs_from_sin():
    x, want_sincos_sin, want_sin, want_cos = _hex(SINCOS_NOT_SIN)
    s, c = sc.sincos(np.array([x, -x]))
    np.testing.assert_array_equal(s, [want_sincos_sin, -want_sincos_sin])
    np.testing.assert_array_equal(c, [want_cos, want_cos])
    np.testing.assert_array_equal(sc.sin(np.array([x, -x])), [want_sin, -want_sin])
    np.testing.assert_array_equal(sc.cos(np.array([x, -x])), [want_cos, want_cos])


def test_special_values():
    tiny = np.array([0.0, -0.0, 5e-324, -5e-324, 2.0 ** -1022, 2.0 ** -27, -(2.0 ** -26) * 0.99])
    for s in (sc.sin(tiny), sc.sincos(tiny)[0]):
        assert _bits_equal(s, tiny).all()  # sin x = x, signed zeros included
    assert (sc.cos(tiny[:-1]) == 1.0).all() and (sc.sincos(tiny[:-1])[1] == 1.0).all()
    assert sc.cos(tiny[-1:])[0] == 1 - 2.0 ** -53
    bad = np.array([np.inf, -np.inf, np.nan])
    for r in (sc.sin(bad), sc.cos(bad), *sc.sincos(bad)):
        assert np.isnan(r).all()
    # odd and even; shapes, dtypes, 0-d and empty inputs
    x = np.array([[0.3, 1.2], [4.0, 1e300]])
    np.testing.assert_array_equal(sc.sin(-x), -sc.sin(x))
    np.testing.assert_array_equal(sc.cos(-x), sc.cos(x))
    assert sc.sin(x).shape == (2, 2) and sc.cos(x[:, ::-1]).shape == (2, 2)
    np.testing.assert_array_equal(sc.cos(x[:, ::-1]), sc.cos(x)[:, ::-1])
    assert sc.sin(1.0).shape == () and sc.sin(np.zeros((0, 3))).shape == (0, 3)
    assert sc.cos(np.arange(3)).dtype == np.float64
    # glibc 2.36 at the boundaries between its paths and far out
    edges = _hex(["0x1.020c49ba5e354p-3", "0x1.b5fffffffffffp-1", "0x1.b600000000000p-1",
                  "0x1.368fcffffffffp+1", "0x1.368fd00000000p+1", "0x1.921fafffffffep+26",
                  "0x1.921fb00000000p+26", "0x1.fffffffffffffp+1023"])
    np.testing.assert_array_equal(sc.sin(edges), _hex([
        "0x1.015da194e500ep-3", "0x1.827f6d2325577p-1", "0x1.827f6d2325578p-1",
        "0x1.4fcda0ad3a77dp-1", "0x1.4fcda0ad3a77ap-1", "-0x1.98c2e99a19752p-1",
        "-0x1.98c2ea3441c6bp-1", "0x1.452fc98b34e97p-8"]))
    np.testing.assert_array_equal(sc.cos(edges), _hex([
        "0x1.fbf0ed1ec08edp-1", "0x1.4fcd8091b8f24p-1", "0x1.4fcd8091b8f24p-1",
        "-0x1.827f513dbe3a0p-1", "-0x1.827f513dbe3a2p-1", "-0x1.3450a391fcd53p-1",
        "-0x1.3450a2c59b604p-1", "-0x1.fffe62ecfab75p-1"]))


def test_tables():
    # sin and cos of k/128 as glibc's table holds them: high parts correctly rounded, some low
    # parts a few units off (these three pin the corrections down)
    t = sc._TABLE
    assert t.shape == (110, 4) and t[0].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert t[23, 1] == float.fromhex("-0x1.32c5c8b81c940p-66")
    assert t[75, 3] == float.fromhex("-0x1.b83d607cd5070p-63")
    assert t[40, 1] == float.fromhex("0x1.03d5504878398p-63")
    for k in (1, 17, 64, 109):  # hi + lo within 2^-100 of math's sin and cos
        s, c = Fraction(t[k, 0]) + Fraction(t[k, 1]), Fraction(t[k, 2]) + Fraction(t[k, 3])
        assert abs(float(s - Fraction(np.sin(k / 128)))) < 2e-16
        assert abs(float(s * s + c * c - 1)) < 2.0 ** -100
    # 2/pi in base 2^24 (glibc's toverp)
    assert sc._TOVERP[:5].tolist() == [10680707.0, 7228996.0, 1387004.0, 2578385.0, 16069853.0]
    assert sc._TOVERP[-3:].tolist() == [14528324.0, 13719321.0, 343717.0]


def test_minus_product():
    """RN(c - (q + qe)) in the reduction: the usual cases and exact rounding midpoints."""
    rng = np.random.default_rng(1)
    n = 4000
    c = rng.uniform(0.5, 1, n) * 2.0 ** rng.integers(-60, 1, n)
    ulp = np.spacing(c)
    # q: a random small product, or one putting c - q exactly on a midpoint (then qe decides)
    q = np.where(np.arange(n) % 2 == 0, rng.uniform(-1, 1, n) * 2.0 ** -56,
                 (2 * rng.integers(-3, 4, n) + 1) * ulp / 2)
    qe = np.spacing(q) * rng.choice([-0.5, -0.25, 0.0, 0.25, 0.5], n)
    got = sc._minus_product(c, q, qe)
    want = [float(Fraction(a) - Fraction(b) - Fraction(d)) for a, b, d in zip(c, q, qe)]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kernel, lo, hi", [(sc._taylor_sin, -0.126, 0.126),
                                            (sc._table_sin, 0.126, 0.855),
                                            (sc._table_cos, -0.855, 0.855)])
def test_fast_path_bound(kernel, lo, hi):
    """Each kernel's bound covers the unfused evaluation's distance from the fused one."""
    rng = np.random.default_rng(2)
    a = rng.uniform(lo, hi, 50000)
    da = np.where(np.arange(a.size) % 2 == 0, 0.0, rng.uniform(-0.5, 0.5, a.size) * np.spacing(a))
    head, tail, bound = kernel(a, da, sc._plain)
    head_f, tail_f, _ = kernel(a, da, sc._fma)
    np.testing.assert_array_equal(head, head_f)
    assert (np.abs(tail - tail_f) <= bound).all()
    s, redo = sc._certify(kernel, a, da)
    keep = np.ones(a.size, bool)
    keep[redo] = False
    np.testing.assert_array_equal(s[keep], (head_f + tail_f)[keep])
    assert redo.size < 0.15 * a.size


def test_tables_are_glibcs_bytes(glibc):
    """The regenerated tables occur, byte for byte, in the process's libm."""
    paths = {line.split()[-1] for line in open("/proc/self/maps")
             if "/libm.so" in line or "/libm-" in line}
    if not paths:
        pytest.skip("libm is not mapped from a file")
    data = open(sorted(paths)[0], "rb").read()
    assert data.find(sc._TABLE.tobytes()) >= 0
    assert data.find(sc._TOVERP.tobytes()) >= 0


def _inputs(rng) -> np.ndarray:
    # TF's double uniforms: 52 random mantissa bits, u in [0, 1), v1 = (2 * M_PI) * u
    u = (rng.integers(0, 1 << 52, 60000, dtype=np.uint64) | np.uint64(0x3FF << 52)).view(
        np.float64) - 1.0
    k = np.arange(110)
    groups = [
        (2 * np.pi) * u,
        rng.uniform(-2.5, 2.5, 10000),
        np.ldexp(rng.uniform(1, 2, 16000), rng.integers(-1074, 1024, 16000))
        * rng.choice([-1.0, 1.0], 16000),
        rng.uniform(-1.1e8, 1.1e8, 4000),
        (k + 0.5) / 128, sc._HP0 - (k + 0.5) / 128, sc._HP0 + (k + 0.5) / 128,  # table ties
        np.round(rng.integers(1, 1 << 26, 2000) * 1.0) * (np.pi / 2),  # near n * pi/2
        np.array([2.0 ** -26, 2.0 ** -27, 0.126, 0.85546875, sc._MID, sc._REDUCE, np.pi / 4]),
    ]
    x = np.concatenate(groups)
    x = np.concatenate([x] + [np.nextafter(x[-2000:], d) for d in (np.inf, -np.inf)])
    return np.concatenate([x, -x[-4000:]])


def test_against_the_c_library(glibc):
    m = glibc
    x = _inputs(np.random.default_rng(3))
    assert x.size > 95000
    s, c = ctypes.c_double(), ctypes.c_double()
    want = np.empty((x.size, 4))
    for i, v in enumerate(x.tolist()):
        m.sincos(v, ctypes.byref(s), ctypes.byref(c))
        want[i] = m.sin(v), m.cos(v), s.value, c.value
    for name, got, ref in (("sin", sc.sin(x), want[:, 0]), ("cos", sc.cos(x), want[:, 1]),
                           ("sincos", np.concatenate(sc.sincos(x)), want[:, 2:].T.ravel())):
        bad = ~_bits_equal(got, ref)
        assert not bad.any(), (name, [v.hex() for v in np.tile(x, 2)[bad][:5]])


def test_recorded_values_are_the_c_librarys(glibc):
    """The recorded values above are what this machine's libm gives."""
    m = glibc
    for x, sin, cos in RECORDED:
        v = float.fromhex(x)
        assert (m.sin(v), m.cos(v)) == (float.fromhex(sin), float.fromhex(cos)), x
    x, sincos_sin, sin, cos = _hex(SINCOS_NOT_SIN)
    s, c = ctypes.c_double(), ctypes.c_double()
    m.sincos(x, ctypes.byref(s), ctypes.byref(c))
    assert (s.value, c.value, m.sin(x), m.cos(x)) == (sincos_sin, cos, sin, cos)
