"""Bessel functions: modified (I0, I1, K0, K1 and their exponentially scaled forms) and of the
first and second kind (J0, J1, Y0, Y1).

The numpy kernels compute in float64 (power series, asymptotic Hankel expansions, trapezoidal
quadrature of the integral representations) and round to the input dtype. Each op also has a
scipy.special implementation.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.kernels.common import op
from tfdeploy.kernels.special.functions import BLOCK, EPS, EULER, blocked, scipy_kernel, unary
from tfdeploy.registry import IMPL_SCIPY


def _hankel_coeffs(nu: int, count: int) -> np.ndarray:
    """a_k(nu) = prod_{j<=k} (4 nu^2 - (2j - 1)^2) / (k! 8^k) of the asymptotic expansions."""
    a = np.ones(count)
    for k in range(1, count):
        a[k] = a[k - 1] * (4 * nu * nu - (2 * k - 1) ** 2) / (k * 8)
    return a


_HANKEL = {0: _hankel_coeffs(0, 40), 1: _hankel_coeffs(1, 40)}


def _i_scaled(x, nu: int):
    """exp(-x) I_nu(x) for x >= 0: power series up to 30, asymptotic expansion above."""
    small = x <= 30
    xs = np.where(small, x, 0.0)
    q = xs * xs / 4
    term = np.ones_like(xs) if nu == 0 else xs / 2
    s = term.copy()
    for k in range(1, 120):
        term = term * q / (k * (k + nu))
        s += term
        if np.all(term <= EPS * s):
            break
    series = s * np.exp(-xs)
    xl = np.where(small, 31.0, x)
    a = _HANKEL[nu]
    acc = np.zeros_like(xl)
    p = np.ones_like(xl)
    for k in range(32):
        acc += (-1) ** k * a[k] * p
        p = p / xl
    asym = acc / np.sqrt(2 * np.pi * xl)
    return np.where(small, series, asym)


def _k_scaled(x, nu: int):
    """exp(x) K_nu(x) for x > 0: series up to 2, trapezoidal rule on the integral
    int_0^inf exp(-x (cosh t - 1)) cosh(nu t) dt up to 30, asymptotic expansion above."""
    small = x <= 2
    xs = np.where(small, x, 1.0)
    q = xs * xs / 4
    # log(x / 2), where x / 2 underflows (below twice the smallest subnormal) log(x) - log 2:
    # -inf there made K1's -inf * I1 (0) NaN, and K0 inf (it is ~744)
    half = xs / 2
    lg = np.where(half > 0, np.log(np.where(half > 0, half, 1.0)), np.log(xs) - np.log(2.0))
    # sums of psi(k+1) (and psi(k+2)) weighted like I0 (I1)
    psi1 = -EULER
    term = np.ones_like(xs)
    if nu == 0:
        s = psi1 * term
        for k in range(1, 40):
            term = term * q / (k * k)
            psi1 += 1.0 / k
            s += psi1 * term
        ks = -lg * _i_scaled(xs, 0) * np.exp(xs) + s
    else:
        psi2 = 1 - EULER
        s = (psi1 + psi2) * term
        for k in range(1, 40):
            term = term * q / (k * (k + 1))
            psi1 += 1.0 / k
            psi2 += 1.0 / (k + 1)
            s += (psi1 + psi2) * term
        ks = 1 / xs + lg * _i_scaled(xs, 1) * np.exp(xs) - xs / 4 * s
    series = ks * np.exp(xs)

    mid = ~small & (x <= 30)
    xm = np.where(mid, x, 2.0)
    h = 0.05
    t = np.arange(0, 4.0, h)
    w = np.full(t.shape, h)
    w[0] = h / 2
    quad = blocked(lambda v: (np.exp(-v[:, None] * (np.cosh(t) - 1)) * np.cosh(nu * t)
                               * w).sum(axis=1), xm)

    xl = np.where(x > 30, x, 31.0)
    a = _HANKEL[nu]
    acc = np.zeros_like(xl)
    p = np.ones_like(xl)
    for k in range(32):
        acc += a[k] * p
        p = p / xl
    asym = acc * np.sqrt(np.pi / (2 * xl))
    return np.where(small, series, np.where(mid, quad, asym))


def _bessel_i(x, nu: int, scaled: bool, limit: float = np.inf):
    ax = np.abs(x)
    r = _i_scaled(ax, nu)
    if not scaled:  # TF multiplies exp(|x|) by the scaled value: inf once exp overflows
        r = np.where(ax > limit, np.inf, r * np.exp(ax))
        r = np.where(np.isinf(ax), np.nan, r)
    return np.where(x < 0, -r, r) if nu == 1 else r


def _exp_limit(x) -> float:
    """Where exp overflows in x's dtype (float16 is computed in float32 by TF)."""
    dt = np.asarray(x).dtype
    return float(np.log(np.finfo(np.float64 if dt == np.float64 else np.float32).max))


def _bessel_k(x, nu: int, scaled: bool):
    pos = x > 0
    xp = np.where(pos, x, 1.0)
    r = _k_scaled(xp, nu)
    if not scaled:
        r = r * np.exp(-xp)
    r = np.where(pos, r, np.inf)  # TF: inf for every x <= 0
    return np.where(np.isposinf(x), 0.0, r)


@op("BesselI0e")
def BesselI0e(x):
    """BesselI0e: exp(-|x|) I0(x)."""
    return unary(lambda v: _bessel_i(v, 0, True), x)


@op("BesselI1e")
def BesselI1e(x):
    """BesselI1e: exp(-|x|) I1(x)."""
    return unary(lambda v: _bessel_i(v, 1, True), x)


@op("BesselI0")
def BesselI0(x):
    """BesselI0: the modified Bessel function I0(x)."""
    return unary(lambda v: _bessel_i(v, 0, False, _exp_limit(x)), x)


@op("BesselI1")
def BesselI1(x):
    """BesselI1: the modified Bessel function I1(x)."""
    return unary(lambda v: _bessel_i(v, 1, False, _exp_limit(x)), x)


@op("BesselK0e")
def BesselK0e(x):
    """BesselK0e: exp(x) K0(x) (inf for x <= 0, as TF)."""
    return unary(lambda v: _bessel_k(v, 0, True), x)


@op("BesselK1e")
def BesselK1e(x):
    """BesselK1e: exp(x) K1(x)."""
    return unary(lambda v: _bessel_k(v, 1, True), x)


@op("BesselK0")
def BesselK0(x):
    """BesselK0: the modified Bessel function of the second kind K0(x)."""
    return unary(lambda v: _bessel_k(v, 0, False), x)


@op("BesselK1")
def BesselK1(x):
    """BesselK1: the modified Bessel function of the second kind K1(x)."""
    return unary(lambda v: _bessel_k(v, 1, False), x)


# -- Bessel functions of the first and second kind -----------------------------------------------

_J_NODES = 128
_J_THETA_SIN = np.sin(2 * np.pi * np.arange(_J_NODES) / _J_NODES)


def _j_orders(x):
    """J_0..J_63 of each x (|x| <= 25) from the DFT of exp(i x sin(theta)) (Jacobi-Anger)."""
    def block(v):
        return np.fft.fft(np.exp(1j * v[:, None] * _J_THETA_SIN), axis=1).real / _J_NODES
    out = np.empty((x.size, _J_NODES))
    for s in range(0, x.size, BLOCK):
        out[s:s + BLOCK] = block(x[s:s + BLOCK])
    return out[:, :64]


def _hankel_pq(x, nu: int):
    a = _HANKEL[nu]
    p = np.zeros_like(x)
    q = np.zeros_like(x)
    pw = np.ones_like(x)
    for k in range(26):
        if k % 2 == 0:
            p += (-1) ** (k // 2) * a[k] * pw
        else:
            q += (-1) ** (k // 2) * a[k] * pw
        pw = pw / x
    chi = x - (nu / 2 + 0.25) * np.pi
    return np.sqrt(2 / (np.pi * x)), p, q, chi


def _bessel_jy(x, nu: int, second: bool, y1_zero: float = np.nan):
    ax = np.abs(x)
    near = ax <= 25
    xn = np.where(near, ax, 1.0)
    j = _j_orders(xn)
    if not second:
        near_val = j[:, nu]
    else:
        lg = np.log(xn / 2) + EULER
        k = np.arange(1, 31)
        sgn = (-1.0) ** k
        if nu == 0:
            near_val = 2 / np.pi * lg * j[:, 0] - 4 / np.pi * (j[:, 2 * k] * sgn / k).sum(axis=1)
        else:
            near_val = (2 / np.pi * (lg * j[:, 1] - j[:, 0] / xn)
                        + 2 / np.pi * ((j[:, 2 * k - 1] - j[:, 2 * k + 1]) * sgn / k).sum(axis=1))
    xf = np.where(near, 26.0, ax)
    amp, p, q, chi = _hankel_pq(xf, nu)
    far = amp * ((p * np.sin(chi) + q * np.cos(chi)) if second else
                 (p * np.cos(chi) - q * np.sin(chi)))
    r = np.where(near, near_val, far)
    if second:  # TF: -inf for x < 0 and Y0(0); Y1(0) is -inf in float64, NaN otherwise
        r = np.where(x > 0, r, -np.inf)
        if nu == 1:
            r = np.where(x == 0, y1_zero, r)
    elif nu == 1:
        r = np.where(x < 0, -r, r)
    return np.where(np.isinf(x) & ~(second & (x < 0)), np.nan, r)


@op("BesselJ0")
def BesselJ0(x):
    """BesselJ0: the Bessel function of the first kind J0(x)."""
    return unary(lambda v: _bessel_jy(v, 0, False), x)


@op("BesselJ1")
def BesselJ1(x):
    """BesselJ1: the Bessel function of the first kind J1(x)."""
    return unary(lambda v: _bessel_jy(v, 1, False), x)


@op("BesselY0")
def BesselY0(x):
    """BesselY0: the Bessel function of the second kind Y0(x) (-inf for x <= 0, as TF)."""
    return unary(lambda v: _bessel_jy(v, 0, True), x)


@op("BesselY1")
def BesselY1(x):
    """BesselY1: the Bessel function of the second kind Y1(x)."""
    y1_zero = -np.inf if np.asarray(x).dtype == np.float64 else np.nan
    return unary(lambda v: _bessel_jy(v, 1, True, y1_zero), x)


for _op_type, _name, _kernel in [
        ("BesselI0e", "i0e", BesselI0e), ("BesselI1e", "i1e", BesselI1e),
        ("BesselI0", "i0", BesselI0), ("BesselI1", "i1", BesselI1),
        ("BesselK0e", "k0e", BesselK0e), ("BesselK1e", "k1e", BesselK1e),
        ("BesselK0", "k0", BesselK0), ("BesselK1", "k1", BesselK1), ("BesselJ0", "j0", BesselJ0),
        ("BesselJ1", "j1", BesselJ1), ("BesselY0", "y0", BesselY0), ("BesselY1", "y1", BesselY1)]:
    op(_op_type, impl=IMPL_SCIPY)(scipy_kernel(_op_type, _name, _kernel))
