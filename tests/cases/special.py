"""Special functions: incomplete gamma/beta, zeta, polygamma, erf inverses, Bessel, integrals."""

from __future__ import annotations

import numpy as np

from . import Case
from . import raw as _raw

CASES: list[Case] = []

# TF evaluates float32 in float32 (Cephes single-precision approximations); we round float64
TOL = {"float16": (2e-3, 1e-3), "float32": (2e-5, 1e-6), "float64": (1e-11, 1e-13)}
EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan]


def _case(id, ops, fn, inputs, dtype, scale=1.0, **kw):
    rtol, atol = TOL[dtype]
    CASES.append(Case(id=f"special_{id}", ops=ops, fn=fn, inputs=inputs, rtol=rtol * scale,
                      atol=atol * scale, **kw))


def _values(dtype, *parts):
    """Concatenated sample values (callables of rng or lists), cast to dtype."""
    def make(rng):
        vals = [np.asarray(p(rng) if callable(p) else p, np.float64).reshape(-1) for p in parts]
        return [np.concatenate(vals).astype(dtype)]
    return make


def _uniform(lo, hi, n=200):
    return lambda rng: rng.uniform(lo, hi, n)


def _logu(lo, hi, n=200, sign=1.0):
    return lambda rng: sign * np.exp(rng.uniform(lo, hi, n))


# -- unary functions -----------------------------------------------------------------------------

FRESNEL_FAR = [36975.0, -4e4, 1e10, 1e30, -1e30, 3e38]

UNARY = {
    # op: (dtypes, value parts, tolerance scale)
    "Erfinv": (("float32", "float64"),
               [_uniform(-1, 1), [1, -1, 1.5, -2, 0.5, -0.5, 1e-30, 0.999999, -0.9999999]], 1),
    "Ndtri": (("float32", "float64"),
              [_uniform(0, 1), _logu(-80, 0, 50), [0, 1, -0.5, 1.5, 0.5, 1e-30, 0.999999]], 1),
    "BesselI0e": (("float16", "float32", "float64"), [_uniform(-40, 40), _logu(-10, 6.5, 50)], 1),
    "BesselI1e": (("float16", "float32", "float64"), [_uniform(-40, 40), _logu(-10, 6.5, 50)], 1),
    "BesselI0": (("float16", "float32", "float64"), [_uniform(-20, 20), _logu(-10, 6.6, 50)], 1),
    "BesselI1": (("float16", "float32", "float64"), [_uniform(-20, 20), _logu(-10, 6.6, 50)], 1),
    "BesselK0e": (("float16", "float32", "float64"), [_uniform(0, 40), _logu(-10, 6.5, 50),
                                                      [-1, 2, 30]], 1),
    "BesselK1e": (("float16", "float32", "float64"), [_uniform(0, 40), _logu(-10, 6.5, 50),
                                                      [-1, 2, 30]], 1),
    "BesselK0": (("float16", "float32", "float64"), [_uniform(0, 40), _logu(-10, 6.5, 50),
                                                     [-1, 2, 30]], 1),
    "BesselK1": (("float16", "float32", "float64"), [_uniform(0, 40), _logu(-10, 6.5, 50),
                                                     [-1, 2, 30]], 1),
    "BesselJ0": (("float16", "float32", "float64"), [_uniform(-40, 40), _logu(-10, 8, 50)], 5),
    "BesselJ1": (("float16", "float32", "float64"), [_uniform(-40, 40), _logu(-10, 8, 50)], 5),
    "BesselY0": (("float16", "float32", "float64"), [_uniform(0, 40), _logu(-10, 8, 50), [-1]],
                 5),
    "BesselY1": (("float16", "float32", "float64"), [_uniform(0, 40), _logu(-10, 8, 50), [-1]],
                 5),
    "Expint": (("float32", "float64"), [_uniform(-30, 60), _logu(-20, 6.6, 50, -1),
                                        _logu(-20, 6.6, 50)], 1),
    "Dawsn": (("float32", "float64"), [_uniform(-20, 20), _logu(-20, 10, 50)], 1),
    "Spence": (("float32", "float64"), [_uniform(0, 10), _logu(-20, 20, 50), [-1, 0.5, 1, 2]],
               1),
    # (past 36974 TF gives the limit 0.5 exactly)
    "FresnelSin": (("float32", "float64"), [_uniform(-8, 8), _logu(-20, 3, 50), FRESNEL_FAR],
                   1),
    "FresnelCos": (("float32", "float64"), [_uniform(-8, 8), _logu(-20, 3, 50), FRESNEL_FAR],
                   1),
}

for name, (dtypes, parts, scale) in UNARY.items():
    for dt in dtypes:
        _case(f"{name.lower()}_{dt}", (name,), lambda x, n=name: getattr(_raw(), n)(x=x),
              _values(dt, *parts), dt, scale, dynamic=dt == "float32")
        _case(f"{name.lower()}_{dt}_edges", (name,), lambda x, n=name: getattr(_raw(), n)(x=x),
              _values(dt, EDGES), dt, scale)


def _shaped(x):
    return _raw().BesselI0e(x=x)


_case("besseli0e_shaped", ("BesselI0e",), _shaped,
      lambda rng: [rng.uniform(-5, 5, (2, 3, 4)).astype(np.float32)], "float32", dynamic=True)
_case("besseli0e_empty", ("BesselI0e",), _shaped, [np.zeros((0, 3), np.float32)], "float32")


# -- binary and ternary functions ----------------------------------------------------------------

def _pairs(dtype, *parts):
    """Pairs of values: each part is (a-values, x-values), callables of rng or lists."""
    def make(rng):
        a, x = [], []
        for pa, px in parts:
            va = np.asarray(pa(rng) if callable(pa) else pa, np.float64).reshape(-1)
            vx = np.asarray(px(rng) if callable(px) else px, np.float64).reshape(-1)
            va, vx = np.broadcast_arrays(va, vx)
            a.append(va)
            x.append(vx)
        return [np.concatenate(a).astype(dtype), np.concatenate(x).astype(dtype)]
    return make


GAMMA_EDGES = ([0, -1, 1, 1, 2, 1, np.nan, 1, 3, 0.5], [1, 1, 0, -1, np.inf, np.nan, 1, 1e-30,
                                                       1e3, 1e-3])
# TF's P(a, 0) is 0 for every a; an infinite shape gives P = 0, and Q = 1 below x = inf
GAMMA_INF_EDGES = ([np.inf] * 6 + [0, -1, np.nan, -np.inf, np.inf],
                   [0, 0.5, 1, 5, 1e30, np.inf, 0, 0, 0, 0, 0])
for name in ("Igamma", "Igammac"):
    for dt in ("float32", "float64"):
        _case(f"{name.lower()}_{dt}", (name,),
              lambda a, x, n=name: getattr(_raw(), n)(a=a, x=x),
              _pairs(dt, (_logu(-3, 4), _logu(-4, 5)), (_uniform(0.5, 20), _uniform(0, 25)),
                     GAMMA_EDGES, GAMMA_INF_EDGES), dt, 10 if dt == "float32" else 1,
              dynamic=dt == "float32")

for dt in ("float32", "float64"):
    _case(f"zeta_{dt}", ("Zeta",), lambda x, q: _raw().Zeta(x=x, q=q),
          _pairs(dt, (_uniform(1.05, 12), _uniform(0.1, 10)),
                 # large x: the first term is the sum (0, 1 or inf for a huge x)
                 (_logu(3, 45, 40), _uniform(0.2, 5, 40)),
                 ([1e20, 1e20, 1e20, 60, 200, 45], [0.5, 1, 2, 0.3, 1.5, 3]),
                 ([2, 3, 4, 2, 1, 0.5, 2.5, 3, 2, np.inf], [-1.5, -2.5, -0.5, -3, 2, 2, -1.5, 0,
                                                           1e9, 2])),
          dt, 10 if dt == "float32" else 1, dynamic=dt == "float32")
    _case(f"polygamma_{dt}", ("Polygamma",), lambda a, x: _raw().Polygamma(a=a, x=x),
          _pairs(dt, (lambda rng: rng.integers(0, 5, 200), _uniform(0.1, 10)),
                 (lambda rng: rng.integers(1, 4, 100), _uniform(-5, -0.1, 100)),
                 ([0, 1, 2, 1.5, -1, 3, 0, 1], [2, -2, 0, 2, 2, 1e-3, -1.5, 1e5])),
          dt, 10 if dt == "float32" else 1)
    # huge orders: TF's sign is pow(-1, n + 1) with n + 1 rounded to the input's type, which
    # is n itself (even: +) from 2**24 in float32, 2**53 in float64
    _case(f"polygamma_huge_order_{dt}", ("Polygamma",), lambda a, x: _raw().Polygamma(a=a, x=x),
          lambda rng, dt=dt: [np.array([3e10, 5, 1e20, 2**25, 7, 1e17, 2**53 + 2], dt),
                              np.array([0.5, 0.5, 0.3, 0.9, 2, 0.25, 0.5], dt)],
          dt, 10 if dt == "float32" else 1)


def _triples(dtype):
    def make(rng):
        a = np.exp(rng.uniform(-2, 3, 300))
        b = np.exp(rng.uniform(-2, 3, 300))
        x = rng.uniform(0, 1, 300)
        edges = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 0.5], [1, -1, 0.5], [2, 3, -0.1],
                          [2, 3, 1.1], [np.nan, 1, 0.5], [0.5, 0.5, 0.5], [50, 60, 0.45],
                          [1e-3, 1e-3, 0.5]])
        a, b, x = (np.concatenate([v, edges[:, i]]).astype(dtype) for i, v in enumerate((a, b, x)))
        return [a, b, x]
    return make


for dt in ("float32", "float64"):
    _case(f"betainc_{dt}", ("Betainc",), lambda a, b, x: _raw().Betainc(a=a, b=b, x=x),
          _triples(dt), dt, 10 if dt == "float32" else 100, dynamic=dt == "float32")


# a or b so large that x**a (1-x)**b underflows: 0 (1 above the mean), as TF's float64
# kernel gives it (tfdeploy's continued fraction made NaN of inf / inf there)
_case("betainc_huge_float64", ("Betainc",), lambda a, b, x: _raw().Betainc(a=a, b=b, x=x),
      lambda rng: [np.array([1e20, 1e30, 2, 1e20, 1e20, 1e25, 1e300, 1e20]),
                   np.array([2, 3, 1e20, 1e20, 1e20, 1, 0.5, 3e20]),
                   np.array([0.5, 0.9, 0.5, 0.3, 0.7, 0.999, 0.5, 0.5])],
      "float64", 100)


def _betainc_scalar_a(b, x):
    return _raw().Betainc(a=np.float64(2.5), b=b, x=x)


_case("betainc_broadcast_scalar", ("Betainc",), _betainc_scalar_a,
      lambda rng: [np.exp(rng.uniform(-1, 2, 20)), rng.uniform(0, 1, 20)], "float64", 100)
