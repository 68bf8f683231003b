"""Spectral and complex ops: FFT families and complex parts."""

from __future__ import annotations

import numpy as np

from . import Case, rand
from . import raw as _raw

CASES: list[Case] = []

COMPLEX = {"complex64": "float32", "complex128": "float64"}
TOL = {"complex64": 2e-5, "complex128": 1e-12, "float32": 2e-5, "float64": 1e-12}


def _sid(shape):
    return "x".join(map(str, shape)) or "scalar"


def _case(id, ops, fn, inputs, tol=1e-6, **kw):
    CASES.append(Case(id=f"spectral_{id}", ops=ops, fn=fn, inputs=inputs, rtol=tol, atol=tol,
                      **kw))


def _rand(shape, dtype, low=-1, high=1):
    return lambda rng: [rand(rng, shape, dtype, low, high)]


# -- complex FFTs --------------------------------------------------------------------------------

FFT_SHAPES = {1: [(8,), (3, 5), (2, 3, 7), (1,), (2, 0)],
              2: [(4, 6), (2, 3, 5), (1, 1), (3, 0, 2)],
              3: [(2, 3, 4), (2, 2, 3, 5), (0, 2, 2)]}
NAMES = {1: ("FFT", "IFFT"), 2: ("FFT2D", "IFFT2D"), 3: ("FFT3D", "IFFT3D")}

for rank, shapes in FFT_SHAPES.items():
    for name in NAMES[rank]:
        for dt in COMPLEX:
            for i, shape in enumerate(shapes):
                _case(f"{name.lower()}_{dt}_{_sid(shape)}", (name,),
                      lambda x, n=name: getattr(_raw(), n)(input=x), _rand(shape, dt),
                      tol=TOL[dt] * 10, dynamic=i == 1)


# -- real FFTs -----------------------------------------------------------------------------------

# TF's forward real FFTs only crop (a longer fft_length is an error; 0 aborts the process)
RFFT_SPECS = {
    1: [((8,), (8,)), ((3, 7), (7,)), ((3, 7), (5,)), ((2, 6), (4,)), ((4,), (1,))],
    2: [((4, 6), (4, 6)), ((2, 5, 7), (5, 7)), ((2, 5, 7), (3, 4))],
    3: [((2, 3, 4), (2, 3, 4)), ((2, 3, 4, 5), (2, 2, 4)), ((2, 2, 3), (1, 1, 1))],
}
# the inverse ones crop their input to fft_length (the last axis to fft_length // 2 + 1)
IRFFT_SPECS = {
    1: [((5,), (8,)), ((3, 4), (7,)), ((3, 7), (5,)), ((2, 9), (10,)), ((4,), (1,))],
    2: [((4, 4), (4, 6)), ((2, 5, 4), (5, 7)), ((2, 5, 7), (3, 4)), ((7, 6), (6, 9))],
    3: [((2, 3, 3), (2, 3, 4)), ((2, 3, 4, 5), (3, 2, 6)), ((2, 2, 3), (1, 1, 1))],
}
RNAMES = {1: ("RFFT", "IRFFT"), 2: ("RFFT2D", "IRFFT2D"), 3: ("RFFT3D", "IRFFT3D")}


def _rfft_fn(name, tcomplex):
    def fn(x, n):
        return getattr(_raw(), name)(input=x, fft_length=n, Tcomplex=tcomplex)
    return fn


def _irfft_fn(name, treal):
    def fn(x, n):
        return getattr(_raw(), name)(input=x, fft_length=n, Treal=treal)
    return fn


for rank, specs in RFFT_SPECS.items():
    rname, iname = RNAMES[rank]
    for cdt, rdt in COMPLEX.items():
        for i, (shape, n) in enumerate(specs):
            _case(f"{rname.lower()}_{rdt}_{_sid(shape)}_{_sid(n)}", (rname,),
                  _rfft_fn(rname, cdt),
                  lambda rng, s=shape, d=rdt, n=n: [rand(rng, s, d, -1, 1),
                                                    np.array(n, np.int32)],
                  tol=TOL[rdt] * 10, dynamic=i == 1)
        # the inverse of any complex input (not Hermitian: DC/Nyquist imaginary parts dropped)
        for i, (shape, n) in enumerate(IRFFT_SPECS[rank]):
            _case(f"{iname.lower()}_{cdt}_{_sid(shape)}_{_sid(n)}", (iname,),
                  _irfft_fn(iname, rdt),
                  lambda rng, s=shape, d=cdt, n=n: [rand(rng, s, d, -1, 1),
                                                    np.array(n, np.int32)],
                  tol=TOL[cdt] * 10, dynamic=i == 1)


# -- complex parts -------------------------------------------------------------------------------

for cdt, rdt in COMPLEX.items():
    for i, (sa, sb) in enumerate([((3, 4), (3, 4)), ((2, 1, 4), (3, 1)), ((), (5,)),
                                  ((0, 2), (1, 2))]):
        _case(f"complex_{cdt}_{_sid(sa)}_{_sid(sb)}", ("Complex",),
              lambda a, b, t=cdt: _raw().Complex(real=a, imag=b, Tout=t),
              lambda rng, sa=sa, sb=sb, d=rdt: [rand(rng, sa, d), rand(rng, sb, d)], tol=0,
              dynamic=i == 1)
    for shape in [(3, 4), (), (0,)]:
        for name in ("Real", "Imag", "Angle", "ComplexAbs"):
            _case(f"{name.lower()}_{cdt}_{_sid(shape)}", (name,),
                  lambda x, n=name, t=rdt: getattr(_raw(), n)(
                      **{"x" if n == "ComplexAbs" else "input": x}, Tout=t),
                  _rand(shape, cdt, -3, 3), tol=TOL[rdt], dynamic=shape == (3, 4))
        _case(f"conj_{cdt}_{_sid(shape)}", ("Conj",), lambda x: _raw().Conj(input=x),
              _rand(shape, cdt), tol=0, dynamic=shape == (3, 4))

_SPECIAL = np.array([0, 1, -1, 1j, -1j, -0.0 - 0j, complex(-1, -0.0), np.inf, complex(3, np.inf),
                     complex(np.nan, 1), 1e30 + 1e30j, 1e-30 + 1e-30j], np.complex128)
for cdt, rdt in COMPLEX.items():
    for name in ("Angle", "ComplexAbs"):
        _case(f"{name.lower()}_{cdt}_special", (name,),
              lambda x, n=name, t=rdt: getattr(_raw(), n)(
                  **{"x" if n == "ComplexAbs" else "input": x}, Tout=t),
              [_SPECIAL.astype(cdt)], tol=TOL[rdt])
