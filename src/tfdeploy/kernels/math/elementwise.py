"""Elementwise arithmetic: binary operators, powers, exponentials, trigonometry, rounding.

Comparisons and logical ops live in ``math_compare``, special functions (Lgamma, Erf...) in
``math_special``, matrix products in ``math_matmul``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfdeploy.kernels.common import Tiled, as_array, low_precision, op, specializer
from tfdeploy.numerics import clip, quiet
from tfdeploy.registry import IMPL_SCIPY


def _f32(fn, x: np.ndarray) -> np.ndarray:
    """``fn(x)``, computed in float32 for float16/bfloat16 and cast back."""
    if low_precision(x.dtype):
        return as_array(fn(x.astype(np.float32))).astype(x.dtype)
    return as_array(fn(x))


def _f32_2(fn, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``fn(x, y)``, computed in float32 for float16/bfloat16 and cast back."""
    if low_precision(x.dtype):
        return as_array(fn(x.astype(np.float32), y.astype(np.float32))).astype(x.dtype)
    return as_array(fn(x, y))


def _check_int_divisor(y: np.ndarray) -> None:
    if y.dtype.kind in "iu" and not np.all(y):
        raise ValueError("Integer division by zero")


def _trunc_div_int(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """C-style integer division (rounds toward zero), as TF's integer Div/TruncateDiv."""
    q = np.floor_divide(x, y)
    if x.dtype.kind == "i":
        # floor and trunc differ where the remainder is non-zero and the signs differ
        fix = (np.remainder(x, y) != 0) & ((x < 0) != (y < 0))
        q = q + fix.astype(q.dtype)
    return as_array(q)


# --- addition, subtraction, multiplication -------------------------------------------------

@op("AddV2")
def AddV2(x, y):
    """AddV2: x + y, broadcasting."""
    r = np.add(x, y)
    return r if r.__class__ is np.ndarray else np.asarray(r)


@op("Add")
def Add(x, y):
    """Add: x + y, broadcasting; strings are concatenated."""
    if x.dtype == object or y.dtype == object:
        r = np.add(x.astype(object), y.astype(object))
        return r if type(r) is np.ndarray else np.array(r, dtype=object)
    return as_array(np.add(x, y))


@op("Sub")
def Sub(x, y):
    """Sub: x - y, broadcasting."""
    r = np.subtract(x, y)
    return r if r.__class__ is np.ndarray else np.asarray(r)


@op("Mul")
def Mul(x, y):
    """Mul: x * y, broadcasting."""
    r = np.multiply(x, y)
    return r if r.__class__ is np.ndarray else np.asarray(r)


@op("MulNoNan")
def MulNoNan(x, y):
    """MulNoNan: x * y, but 0 where y == 0 even if x is inf or nan."""
    with quiet():
        return as_array(np.where(y == 0, np.zeros((), x.dtype), np.multiply(x, y)))


@op("Neg")
def Neg(x):
    """Neg: -x."""
    return as_array(np.negative(x))


@op("AddN")
def AddN(*inputs):
    """AddN: the elementwise sum of all inputs (same shape and dtype)."""
    out = np.array(inputs[0], copy=True)
    for t in inputs[1:]:
        np.add(out, t, out=out)
    return out


@op("SquaredDifference")
def SquaredDifference(x, y):
    """SquaredDifference: (x - y) * conj(x - y)."""
    d = as_array(np.subtract(x, y))
    if d.dtype.kind == "c":
        return as_array(d * np.conj(d))
    return np.multiply(d, d, out=d) if d.ndim else as_array(d * d)


# --- division ------------------------------------------------------------------------------

@op("RealDiv")
def RealDiv(x, y):
    """RealDiv: x / y (floats and complex; integers divide truncating, as TF's Div)."""
    if x.dtype.kind in "iu":
        _check_int_divisor(y)
        return _trunc_div_int(x, y)
    with quiet():
        return as_array(np.divide(x, y))


# A constant of a few values along the last axis (an image's channel mean and scale:
# ``(x - mean) / std`` on RGB input) broadcasts slowly: numpy's inner loop then runs over 3
# values. Against the constant repeated along a whole row of pixels it runs over hundreds
# (7x faster on a 224x224x3 image). On small inputs (a transformer's rotary tables, a gate's
# scale) any constant that broadcasts into the input is kept repeated to its shape (``Tiled``:
# numpy's same-shape fast path, 0.4 against 1.1 us at 16 x 64). Same operations in the same
# order: the same results.
_NARROW_CHANNELS = 32
_NARROW_MIN_SIZE = 1 << 12


def _narrow_constant(kernel: Callable, ufunc, errstate: dict) -> Callable:
    def spec(consts, **attrs):
        x, y = consts
        if (x is None) == (y is None):
            return None
        c = y if x is None else x
        if c.dtype.kind != "f" or low_precision(c.dtype) or c.ndim == 0:
            return None
        first, n, dt, rank = x is not None, c.shape[-1], c.dtype, max(2, c.ndim)
        narrow = 2 <= n <= _NARROW_CHANNELS and c.size == n
        flat, tiles, small = c.reshape(-1), {}, Tiled(c)
        limit = small.LIMIT

        def NarrowConstant(a):
            if a.__class__ is not np.ndarray or a.dtype is not dt and a.dtype != dt:
                return kernel(c, a) if first else kernel(a, c)
            if a.size <= limit:
                t = small.like(a)
                if errstate:
                    with quiet():
                        return ufunc(t, a) if first else ufunc(a, t)
                return ufunc(t, a) if first else ufunc(a, t)
            if not narrow or a.ndim < rank or a.shape[-1] != n or a.size < _NARROW_MIN_SIZE or \
                    not a.flags.c_contiguous:
                return kernel(c, a) if first else kernel(a, c)
            width = a.shape[-2] * n
            t = tiles.get(width)
            if t is None:
                t = np.tile(flat, a.shape[-2])
                if len(tiles) < 8:
                    tiles[width] = t
            out = np.empty(a.shape, dt)
            a2, o2 = a.reshape(-1, width), out.reshape(-1, width)
            with quiet():
                if first:
                    ufunc(t, a2, out=o2)
                else:
                    ufunc(a2, t, out=o2)
            return out
        if not narrow:
            NarrowConstant.__name__ = NarrowConstant.__qualname__ = "SmallConstant"
        return NarrowConstant
    return spec


for _name, _kernel, _ufunc, _err in (
        ("AddV2", AddV2, np.add, {}), ("Sub", Sub, np.subtract, {}),
        ("Mul", Mul, np.multiply, {}),
        ("RealDiv", RealDiv, np.divide, {"divide": "ignore", "invalid": "ignore"})):
    specializer(_name)(_narrow_constant(_kernel, _ufunc, _err))


@op("Div")
def Div(x, y):
    """Div: x / y; integers divide rounding toward zero and raise on division by zero."""
    return RealDiv(x, y)


@op("TruncateDiv")
def TruncateDiv(x, y):
    """TruncateDiv: x / y rounded toward zero."""
    if x.dtype.kind in "iu":
        return RealDiv(x, y)
    with quiet():
        return as_array(np.trunc(np.divide(x, y)))


@op("FloorDiv")
def FloorDiv(x, y):
    """FloorDiv: floor(x / y); integer division by zero raises."""
    if x.dtype.kind in "iu":
        _check_int_divisor(y)
        return as_array(np.floor_divide(x, y))
    with quiet():
        # the quotient is rounded to the input's precision before flooring, as TF
        return as_array(np.floor(np.divide(x, y)))


@op("DivNoNan")
def DivNoNan(x, y):
    """DivNoNan: x / y, but 0 where y == 0."""
    with quiet():
        return as_array(np.where(y == 0, np.zeros((), x.dtype), np.divide(x, y)))


def _trunc_mod(x, y):
    if x.dtype.kind in "iu":
        _check_int_divisor(y)
    with quiet():
        return _f32_2(np.fmod, x, y)


@op("Mod")
def Mod(x, y):
    """Mod: the remainder of truncating division (C fmod; the result has x's sign)."""
    return _trunc_mod(x, y)


@op("TruncateMod")
def TruncateMod(x, y):
    """TruncateMod: the remainder of truncating division (C fmod; the result has x's sign)."""
    return _trunc_mod(x, y)


@op("FloorMod")
def FloorMod(x, y):
    """FloorMod: the remainder of flooring division (the result has y's sign)."""
    if x.dtype.kind in "iu":
        _check_int_divisor(y)
        return as_array(np.remainder(x, y))

    def floor_mod(a, b):
        # TF: fmod, then shift by y where the signs differ (not numpy's divmod-based remainder)
        r = as_array(np.fmod(a, b))
        fix = (r != 0) & ((r < 0) != (b < 0))
        return np.where(fix, r + b, r)

    with quiet():
        return _f32_2(floor_mod, x, y)


@op("Reciprocal", "Inv")
def Reciprocal(x):
    """Reciprocal: 1 / x (integers: truncating, as TF)."""
    if x.dtype.kind in "iu":
        with quiet():
            return _trunc_div_int(np.ones((), x.dtype), x)
    with quiet():
        return as_array(np.reciprocal(x))


@op("Xdivy")
def Xdivy(x, y):
    """Xdivy: x / y, but 0 where x == 0."""
    with quiet():
        return as_array(np.where(x == 0, np.zeros((), x.dtype), np.divide(x, y)))


# --- minimum, maximum, clipping ------------------------------------------------------------

@op("Maximum")
def Maximum(x, y):
    """Maximum: the elementwise maximum, NaN if either is NaN."""
    return as_array(np.maximum(x, y))


@op("Minimum")
def Minimum(x, y):
    """Minimum: the elementwise minimum, NaN if either is NaN."""
    return as_array(np.minimum(x, y))


@op("ClipByValue")
def ClipByValue(t, clip_value_min, clip_value_max):
    """ClipByValue: max(min(t, clip_value_max), clip_value_min) (so min wins over max).

    The bounds broadcast; TF requires scalars or the input's shape. Complex values are clipped
    part by part (real and imaginary), as TF.
    """
    if t.dtype.kind == "c":
        re = np.maximum(np.minimum(t.real, np.real(clip_value_max)), np.real(clip_value_min))
        im = np.maximum(np.minimum(t.imag, np.imag(clip_value_max)), np.imag(clip_value_min))
        return as_array(re + 1j * im).astype(t.dtype)
    return as_array(np.maximum(np.minimum(t, clip_value_max), clip_value_min))


# --- powers, exponentials and logarithms ---------------------------------------------------

@op("Pow")
def Pow(x, y):
    """Pow: x ** y; integer x to a negative integer power raises (as TF)."""
    if x.dtype.kind in "iu":
        if y.dtype.kind == "i" and np.any(y < 0):
            raise ValueError("Integers to negative integer powers are not allowed")
        return as_array(np.power(x, y))
    with quiet():
        return _f32_2(np.power, x, y)


# x ** c for a constant c numpy evaluates slowly (np.power is a general pow per element, ~100x a
# multiply): the exact equivalents, as one or two ufunc calls (pow(x, 3) rounds once where
# x * x * x rounds twice: within an ulp)
_POWERS = {1.0: lambda x: x.copy(), 2.0: lambda x: np.multiply(x, x),
           3.0: lambda x: np.multiply(np.multiply(x, x), x),
           -1.0: lambda x: np.divide(np.ones((), x.dtype), x)}


@specializer("Pow")
def _pow_constant(consts, **attrs):
    x, y = consts
    if y is None or x is not None or y.size != 1 or y.dtype.kind not in "f" or \
            low_precision(y.dtype):
        return None
    fn = _POWERS.get(float(y.reshape(-1)[0]))
    if fn is None:
        return None
    dt, ndim = y.dtype, y.ndim

    def PowConstant(x):
        if x.dtype != dt or x.ndim < ndim:  # (a result of another dtype or rank: TF's way)
            return Pow(x, y)
        with quiet():
            return as_array(fn(x))
    return PowConstant


@op("Square")
def Square(x):
    """Square: x * x."""
    return as_array(np.multiply(x, x))


@op("Sqrt")
def Sqrt(x):
    """Sqrt: the square root (NaN for negative reals)."""
    with quiet():
        return as_array(np.sqrt(x))


@op("Rsqrt")
def Rsqrt(x):
    """Rsqrt: 1 / sqrt(x)."""
    with quiet():
        if low_precision(x.dtype):
            return as_array(1.0 / np.sqrt(x.astype(np.float32))).astype(x.dtype)
        r = as_array(np.sqrt(x))
        if r.ndim:
            return np.divide(1, r, out=r)
        return as_array(np.divide(1, r))


@op("Exp")
def Exp(x):
    """Exp: e ** x."""
    with quiet():
        return _f32(np.exp, x)


@op("Expm1")
def Expm1(x):
    """Expm1: e ** x - 1, accurate near 0."""
    with quiet():
        if x.dtype.kind == "c":
            return _cexpm1(x)
        return _f32(np.expm1, x)


def _cexpm1(z: np.ndarray) -> np.ndarray:
    """expm1 of complex z, accurate near 0: re = expm1(a) cos(b) - 2 sin(b/2)^2."""
    a, b = z.real, z.imag
    re = np.expm1(a) * np.cos(b) - 2 * np.sin(b / 2) ** 2
    return as_array(re + 1j * (np.exp(a) * np.sin(b))).astype(z.dtype)


def _clog1p(z: np.ndarray) -> np.ndarray:
    """log1p of complex z, accurate near 0: re = log1p(a (2 + a) + b^2) / 2 there."""
    a, b = z.real, z.imag
    near0 = (np.abs(a) < 0.5) & (np.abs(b) < 0.5)
    re = np.where(near0, 0.5 * np.log1p(a * (2 + a) + b * b), np.log(np.hypot(1 + a, b)))
    return as_array(re + 1j * np.arctan2(b, 1 + a)).astype(z.dtype)


@op("Log")
def Log(x):
    """Log: the natural logarithm (-inf at 0, NaN for negative reals)."""
    with quiet():
        return _f32(np.log, x)


@op("Log1p")
def Log1p(x):
    """Log1p: log(1 + x), accurate near 0."""
    with quiet():
        if x.dtype.kind == "c":
            return _clog1p(x)
        return _f32(np.log1p, x)


def _xlog(x, logy):
    with quiet():
        return as_array(np.where(x == 0, np.zeros((), x.dtype), np.multiply(x, logy)))


@op("Xlogy")
def Xlogy(x, y):
    """Xlogy: x * log(y), but 0 where x == 0."""
    with quiet():
        if low_precision(x.dtype):
            return _xlog(x.astype(np.float32), np.log(y.astype(np.float32))).astype(x.dtype)
        return _xlog(x, np.log(y))


@op("Xlog1py")
def Xlog1py(x, y):
    """Xlog1py: x * log1p(y), but 0 where x == 0."""
    with quiet():
        if low_precision(x.dtype):
            return _xlog(x.astype(np.float32), np.log1p(y.astype(np.float32))).astype(x.dtype)
        if x.dtype.kind == "c":
            return _xlog(x, _clog1p(y))
        return _xlog(x, np.log1p(y))


# --- trigonometric and hyperbolic ----------------------------------------------------------

def _unary(ufunc, name: str, doc: str, silent: bool = False):
    """A kernel applying ``ufunc``. ``silent``: the ufunc raises no floating-point warnings on
    real inputs, so those skip ``quiet()``, which costs about as much as the ufunc on small
    arrays (recurrent networks call Tanh on a few hundred elements per step)."""
    def kernel(x):
        if silent and x.dtype.kind == "f" and x.itemsize > 2 and x.ndim:
            return ufunc(x)
        with quiet():
            return _f32(ufunc, x)

    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = doc
    return op(name)(kernel)


Sin = _unary(np.sin, "Sin", "Sin: the sine.")
Cos = _unary(np.cos, "Cos", "Cos: the cosine.")
Tan = _unary(np.tan, "Tan", "Tan: the tangent.")
Asin = _unary(np.arcsin, "Asin", "Asin: the inverse sine (NaN outside [-1, 1]).")
Acos = _unary(np.arccos, "Acos", "Acos: the inverse cosine (NaN outside [-1, 1]).")
Atan = _unary(np.arctan, "Atan", "Atan: the inverse tangent.", silent=True)
Sinh = _unary(np.sinh, "Sinh", "Sinh: the hyperbolic sine.")
Cosh = _unary(np.cosh, "Cosh", "Cosh: the hyperbolic cosine.")
Tanh = _unary(np.tanh, "Tanh", "Tanh: the hyperbolic tangent.", silent=True)
Asinh = _unary(np.arcsinh, "Asinh", "Asinh: the inverse hyperbolic sine.", silent=True)
Acosh = _unary(np.arccosh, "Acosh", "Acosh: the inverse hyperbolic cosine (NaN below 1).")
Atanh = _unary(np.arctanh, "Atanh", "Atanh: the inverse hyperbolic tangent.")


@op("Atan2")
def Atan2(y, x):
    """Atan2: the angle of the point (x, y), in [-pi, pi]."""
    return _f32_2(np.arctan2, y, x)


#: per dtype (cap, 1, -inf): sigmoid(x) rounds to 1 above ~16.6 (float32) and ~36.7 (float64),
#: and exp(40) overflows neither. The cap is a clip from -inf: numpy's minimum with a scalar
#: does not vectorise (0.37 against 0.11 ns a float32 value here)
_SIGMOID = {np.dtype(t): (np.array(40, t), np.array(1, t), np.array(-np.inf, t))
            for t in (np.float32, np.float64)}


def _sigmoid_tail(e: np.ndarray, one: np.ndarray) -> np.ndarray:
    # e / (1 + e) with e = exp(min(x, cap)): no overflow, and exact in both tails (e is tiny
    # below, and the quotient rounds to 1 above the cap). Four ufunc calls on one buffer and 0-d
    # constants, without np.errstate: the cost on the small arrays of recurrent networks is the
    # calls, not the arithmetic.
    np.exp(e, out=e)
    return np.divide(e, np.add(e, one), out=e)


def sigmoid_(t: np.ndarray) -> np.ndarray:
    """Sigmoid of a float32/float64 array, in place (the fused epilogue's form)."""
    cap, one, low = _SIGMOID[t.dtype]
    return _sigmoid_tail(clip(t, low, cap, out=t), one)


@op("Sigmoid")
def Sigmoid(x):
    """Sigmoid: 1 / (1 + exp(-x)), computed without overflow."""
    consts = _SIGMOID.get(x.dtype)
    if consts is not None and x.ndim:
        return _sigmoid_tail(clip(x, consts[2], consts[0]), consts[1])
    if x.dtype.kind == "c":
        with quiet():
            # exp of the side with a non-positive real part, which cannot overflow
            e = np.exp(np.where(x.real < 0, x, -x))
            return as_array(np.where(x.real < 0, e, 1) / (1 + e))
    xf = x.astype(np.float32) if low_precision(x.dtype) else x
    e = as_array(np.minimum(xf, np.array(40, xf.dtype)))
    e = as_array(np.exp(e))
    return as_array(e / (e + 1)).astype(x.dtype, copy=False)


@op("Sigmoid", impl=IMPL_SCIPY)
def Sigmoid_scipy(x):
    """Sigmoid via scipy.special.expit."""
    from scipy.special import expit

    if low_precision(x.dtype):
        return as_array(expit(x.astype(np.float32))).astype(x.dtype)
    if x.dtype.kind == "c":
        return Sigmoid(x)
    return as_array(expit(x))


# --- rounding, sign, classification --------------------------------------------------------

@op("Abs")
def Abs(x):
    """Abs: |x| (integers wrap at the minimum, as TF)."""
    return as_array(np.abs(x))


@op("Sign")
def Sign(x):
    """Sign: -1, 0 or 1 (NaN stays NaN; complex: x / |x|)."""
    return as_array(np.sign(x))


@op("Floor")
def Floor(x):
    """Floor: round toward -inf."""
    return as_array(np.floor(x))


@op("Ceil")
def Ceil(x):
    """Ceil: round toward +inf."""
    return as_array(np.ceil(x))


@op("Round")
def Round(x):
    """Round: round half to even.

    Deviation: integers are returned unchanged; TF's CPU kernel returns zeros for them.
    """
    if x.dtype.kind in "iu":
        return np.array(x, copy=True)
    return as_array(np.round(x))


@op("Rint")
def Rint(x):
    """Rint: round half to even."""
    return as_array(np.rint(x))


@op("IsNan")
def IsNan(x):
    """IsNan: whether x is NaN."""
    return as_array(np.isnan(x))


@op("IsInf")
def IsInf(x):
    """IsInf: whether x is +inf or -inf."""
    return as_array(np.isinf(x))


@op("IsFinite")
def IsFinite(x):
    """IsFinite: whether x is neither inf nor NaN."""
    return as_array(np.isfinite(x))
