"""Elementwise math (math.py, math_special.py) and matrix products (math_matmul.py)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from . import Case, adder

CASES: list[Case] = []
add = adder(CASES, "math")
raw = tf.raw_ops

FLOATS = ("float16", "bfloat16", "float32", "float64")
COMPLEX = ("complex64", "complex128")
INTS = ("int8", "int16", "int32", "int64", "uint8")
ALL_INTS = INTS + ("uint16", "uint32", "uint64")

#: rtol/atol per dtype for results of a few flops
TOL = {"float16": (2e-3, 1e-3), "bfloat16": (1.6e-2, 1e-2), "float32": (2e-6, 1e-6),
       "float64": (1e-12, 1e-12), "complex64": (2e-6, 1e-6), "complex128": (1e-12, 1e-12)}


def _dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def values(rng, shape, dtype, low=-3.0, high=3.0) -> np.ndarray:
    """Random values of ``dtype`` in [low, high] (ints: integers; complex: both parts)."""
    dt = _dtype(dtype)
    if dt.kind in "iu":
        lo = max(int(np.ceil(low)), np.iinfo(dt).min)
        hi = min(int(np.floor(high)), np.iinfo(dt).max)
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)
    if dt.kind == "b":
        return rng.random(size=shape) < 0.5
    v = rng.uniform(low, high, size=shape)
    if dt.kind == "c":
        v = v + 1j * rng.uniform(low, high, size=shape)
    return v.astype(dt)


def gen(*specs):
    """Inputs from specs: (shape, dtype[, low, high]) tuples, or fixed arrays."""
    def make(rng):
        return [values(rng, *s) if isinstance(s, tuple) else np.asarray(s) for s in specs]
    return make


def fixed(values_, dtype):
    """One fixed input array of ``dtype`` (values outside the dtype's range dropped)."""
    dt = _dtype(dtype)
    v = np.asarray(values_, np.float64)
    if dt.kind == "f" or dtype == "bfloat16":
        import ml_dtypes

        v = v[np.isnan(v) | np.isinf(v) | (np.abs(v) <= float(ml_dtypes.finfo(dt).max))]
    return v.astype(dt)


def tol(dtype, scale=1.0):
    r, a = TOL.get(dtype, (0, 0))
    return {"rtol": r * scale, "atol": a * scale}


def _raw(name, **kw):
    """A function of tensors calling ``tf.raw_ops.<name>`` with positional inputs."""
    import inspect

    f = getattr(raw, name)
    params = [p for p in inspect.signature(f).parameters if p != "name"]

    def call(*xs):
        return f(**dict(zip(params, xs)), **kw)
    return call


# --- binary arithmetic: every dtype, broadcasting, scalars, empty tensors --------------------

_BINARY = {
    "Add": FLOATS + COMPLEX + INTS,
    "AddV2": FLOATS + COMPLEX + ALL_INTS,
    "Sub": FLOATS + COMPLEX + ALL_INTS,
    "Mul": FLOATS + COMPLEX + ALL_INTS,
    "RealDiv": FLOATS + COMPLEX,
    "Maximum": FLOATS + ALL_INTS,
}

for _op, _dts in _BINARY.items():
    for _dt in _dts:
        _lo = 0 if _dt.startswith("u") else -9
        _ins = gen(((3, 4), _dt, _lo, 9), ((4,), _dt, 1, 9))
        add(f"{_op}_{_dt}", [_op], _raw(_op), _ins, dynamic=_dt == "float32", **tol(_dt))
    add(f"{_op}_scalar", [_op], _raw(_op), gen(((), "float32"), ((2, 3), "float32", 1, 3)),
        **tol("float32"))
    add(f"{_op}_scalars", [_op], _raw(_op), gen(((), "float64"), ((), "float64", 1, 3)),
        **tol("float64"))
    add(f"{_op}_empty", [_op], _raw(_op), gen(((0, 3), "float32"), ((1, 3), "float32", 1, 3)))
    add(f"{_op}_bcast", [_op], _raw(_op), gen(((2, 1, 3), "float32"), ((4, 1), "float32", 1, 3)),
        dynamic=True, **tol("float32"))

add("Add_string", ["Add"], _raw("Add"),
    [np.array([b"ab", b"c", b""], object), np.array([b"x"], object)])
_SPECIAL = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan]
add("Maximum_nan", ["Maximum"], _raw("Maximum"),
    [np.array(_SPECIAL * 7), np.repeat(_SPECIAL, 7)])
add("RealDiv_special", ["RealDiv"], _raw("RealDiv"),
    [np.array(_SPECIAL * 7), np.repeat(_SPECIAL, 7)])
add("Mul_special", ["Mul"], _raw("Mul"), [np.array(_SPECIAL * 7), np.repeat(_SPECIAL, 7)])

# --- unary arithmetic ---------------------------------------------------------------------

_UNARY = {  # op: (dtypes, low, high, tolerance scale)
    "Neg": (FLOATS + COMPLEX + ("int8", "int16", "int32", "int64"), -9, 9, 1),
    "Exp": (FLOATS + COMPLEX, -5, 5, 2),
    "Sqrt": (FLOATS + COMPLEX, 0, 9, 1),
    "Rsqrt": (FLOATS + COMPLEX, 0.1, 9, 1),
    "Tanh": (FLOATS + COMPLEX, -4, 4, 2),
    "Sigmoid": (FLOATS + COMPLEX, -8, 8, 2),
}

for _op, (_dts, _lo, _hi, _s) in _UNARY.items():
    for _dt in _dts:
        add(f"{_op}_{_dt}", [_op], _raw(_op), gen(((3, 5), _dt, _lo, _hi)),
            dynamic=_dt == "float32", **tol(_dt, _s))
    add(f"{_op}_scalar", [_op], _raw(_op), gen(((), "float32", _lo, _hi)), **tol("float32", _s))
    add(f"{_op}_empty", [_op], _raw(_op), gen(((2, 0), "float32", _lo, _hi)))

for _dt in ("float32", "float64"):
    _ext = [0.0, -0.0, 1e-30, -1e-30, 20, -20, 50, -50, 100, -100, 800, -800, 1e30, -1e30,
            np.inf, -np.inf, np.nan]
    for _op in ("Exp", "Tanh", "Sigmoid", "Sqrt", "Rsqrt", "Neg"):
        add(f"{_op}_{_dt}_extremes", [_op], _raw(_op), [fixed(_ext, _dt)],
            rtol=TOL[_dt][0] * 2, atol=1e-30)

# --- special functions --------------------------------------------------------------------

_EDGES = [0.0, -0.0, -1.0, -2.0, -3.0, -2.5, -0.5, 0.5, 1.0, 2.0, 3.0, 1.4616321449683622,
          1e-30, -1e-30, 1e-8, -1e-8, 1e10, 1e30, 1e300, -1e10, 171.5, 1000.5, -1000.5, 26.5,
          -26.5, 6.0, -6.0, np.inf, -np.inf, np.nan]

_SPECIAL_FNS = {  # op: dtypes TF has on CPU
    "Lgamma": ("float16", "float32", "float64"),
    "Digamma": ("float16", "float32", "float64"),
    "Erf": FLOATS,
    "Erfc": FLOATS,
}
for _op, _dts in _SPECIAL_FNS.items():
    for _dt in _dts:
        _t = tol(_dt, 2)
        if _op == "Digamma" and _dt == "float32":
            _t = {"rtol": 1e-5, "atol": 1e-6}  # TF's float32 kernel loses digits near roots
        if _op == "Lgamma" and _dt == "float64":
            _t = {"rtol": 1e-12, "atol": 1e-15}  # near lgamma's negative zeros
        add(f"{_op}_{_dt}", [_op], _raw(_op), gen(((4, 50), _dt, -10, 10)),
            dynamic=_dt == "float32", **_t)
        add(f"{_op}_{_dt}_small", [_op], _raw(_op), gen(((60,), _dt, -2, 2)), **_t)
        _e = [v for v in _EDGES if not (_op == "Erf" and _dt == "float64" and abs(v) > 1e100)]
        add(f"{_op}_{_dt}_edges", [_op], _raw(_op), [fixed(_e, _dt)], **_t)
    add(f"{_op}_float64_large", [_op], _raw(_op),
        lambda rng: [np.exp(rng.uniform(-40, 40, 64)) * rng.choice([-1, 1], 64)],
        rtol=1e-12, atol=1e-300)
for _op in _SPECIAL_FNS:  # more elements than one block of the float64 core
    for _dt in ("float32", "float64"):
        add(f"{_op}_{_dt}_blocks", [_op], _raw(_op), gen(((200, 201), _dt, -30, 30)),
            rtol=1e-5 if _dt == "float32" else 1e-12, atol=1e-6 if _dt == "float32" else 1e-13)
add("Erf_float64_inf", ["Erf"], _raw("Erf"), [np.array([np.inf, -np.inf, 1e300])],
    xfail="TF's float64 Erf returns NaN at +-inf and |x| > ~1e154; tfdeploy returns +-1")
# (above 26.55 erfc is subnormal, which TF flushes to zero)
add("Erfc_float64_tail", ["Erfc"], _raw("Erfc"),
    lambda rng: [np.concatenate([rng.uniform(4, 26.5, 64), rng.uniform(-6, -1, 16)])],
    rtol=1e-13, atol=1e-320)

# --- matrix products ----------------------------------------------------------------------

_MM_TYPES = FLOATS + COMPLEX + ("int32", "int64")
for _dt in _MM_TYPES:
    for _ta in (False, True):
        for _tb in (False, True):
            _a = (4, 3) if _ta else (3, 4)
            _b = (5, 4) if _tb else (4, 5)
            if _dt != "float32" and (_ta or _tb) and _ta != _tb:
                continue
            add(f"MatMul_{_dt}_{'T' if _ta else 'N'}{'T' if _tb else 'N'}", ["MatMul"],
                _raw("MatMul", transpose_a=_ta, transpose_b=_tb),
                gen((_a, _dt, -3, 3), (_b, _dt, -3, 3)), dynamic=_dt == "float32",
                **tol(_dt, 4))
add("MatMul_empty", ["MatMul"], _raw("MatMul"), gen(((3, 0), "float32"), ((0, 2), "float32")))
add("MatMul_dense_layer", ["MatMul", "BiasAdd", "Softmax"],
    lambda x, w, b: tf.nn.softmax(tf.nn.bias_add(tf.matmul(x, w), b)),
    gen(((8, 32), "float32"), ((32, 10), "float32", -1, 1), ((10,), "float32")),
    dynamic=True, rtol=1e-5, atol=1e-6)

for _op in ("BatchMatMul", "BatchMatMulV2"):
    for _dt in _MM_TYPES + (("int16",) if _op == "BatchMatMulV2" else ()):
        add(f"{_op}_{_dt}", [_op], _raw(_op), gen(((2, 3, 4), _dt), ((2, 4, 5), _dt)),
            dynamic=_dt == "float32", **tol(_dt, 4))
    for _ax in (False, True):
        for _ay in (False, True):
            for _dt in ("float32", "complex64"):
                _x = (2, 4, 3) if _ax else (2, 3, 4)
                _y = (2, 5, 4) if _ay else (2, 4, 5)
                add(f"{_op}_{_dt}_adj{int(_ax)}{int(_ay)}", [_op],
                    _raw(_op, adj_x=_ax, adj_y=_ay), gen((_x, _dt), (_y, _dt)), **tol(_dt, 4))
    add(f"{_op}_rank2", [_op], _raw(_op), gen(((3, 4), "float32"), ((4, 2), "float32")),
        **tol("float32", 4))
    add(f"{_op}_rank4", [_op], _raw(_op),
        gen(((2, 3, 4, 5), "float64"), ((2, 3, 5, 2), "float64")), **tol("float64", 4))
    add(f"{_op}_empty_batch", [_op], _raw(_op),
        gen(((0, 3, 4), "float32"), ((0, 4, 2), "float32")))
# a sequence (or a batch of them) by a matrix: one product of all its rows
for _dt, _xs in (("float32", (2, 3, 4)), ("float64", (2, 2, 3, 4)), ("int32", (3, 2, 4)),
                 ("complex64", (2, 3, 4)), ("bfloat16", (2, 3, 4)), ("float16", (1, 5, 4))):
    for _ay in (False, True):
        add(f"BatchMatMulV2_seq_{_dt}_{len(_xs)}d_adj{int(_ay)}", ["BatchMatMulV2"],
            _raw("BatchMatMulV2", adj_y=_ay), gen((_xs, _dt), ((5, 4) if _ay else (4, 5), _dt)),
            dynamic=_dt == "float32", **tol(_dt, 4))
add("BatchMatMulV2_seq_adj_x", ["BatchMatMulV2"], _raw("BatchMatMulV2", adj_x=True),
    gen(((2, 4, 3), "float32"), ((4, 5), "float32")), **tol("float32", 4))
for _shapes in (((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (2, 2, 4, 5)), ((1, 3, 4), (6, 4, 1))):
    add(f"BatchMatMulV2_bcast_{len(_shapes[0])}{len(_shapes[1])}_{_shapes[1][0]}",
        ["BatchMatMulV2"], _raw("BatchMatMulV2"),
        gen((_shapes[0], "float32"), (_shapes[1], "float32")), dynamic=True,
        **tol("float32", 4))
for _ta, _tb, _to in (("int8", "int8", "int32"), ("uint8", "int8", "int32"),
                      ("int8", "uint8", "int32"), ("float32", "float32", "float32"),
                      ("bfloat16", "bfloat16", "bfloat16"), ("int8", "bfloat16", "bfloat16"),
                      ("bfloat16", "uint8", "bfloat16"), ("int64", "int64", "int64")):
    add(f"BatchMatMulV3_{_ta}_{_tb}_{_to}", ["BatchMatMulV3"],
        _raw("BatchMatMulV3", Tout=tf.as_dtype(_to)),
        gen(((2, 3, 4), _ta), ((1, 4, 5), _tb)), **tol(_to, 4))
add("BatchMatMulV3_adj", ["BatchMatMulV3"],
    _raw("BatchMatMulV3", Tout=tf.complex64, adj_x=True, adj_y=True),
    gen(((2, 4, 3), "complex64"), ((2, 5, 4), "complex64")), **tol("complex64", 4))

# --- priority 2: the remaining elementwise ops ---------------------------------------------

SIGNED = ("int8", "int16", "int32", "int64")
UNSIGNED = ("uint8", "uint16", "uint32", "uint64")
FC = FLOATS + COMPLEX


def nonzero(shape, dtype, high=9):
    """An input generator of values in [1, high] with random signs (signed types), never 0."""
    def make(rng):
        v = values(rng, shape, "float64", 1, high)
        if _dtype(dtype).kind in "iu":
            v = np.round(v)
        if not dtype.startswith("u"):
            v = v * rng.choice([-1, 1], size=shape)
        return v.astype(_dtype(dtype))
    return make


def gen2(*makers):
    """Inputs from generators of a numpy Generator, specs or fixed arrays (as ``gen``)."""
    def make(rng):
        out = []
        for m in makers:
            out.append(m(rng) if callable(m) else (values(rng, *m) if isinstance(m, tuple)
                                                    else np.asarray(m)))
        return out
    return make


_UNARY2 = {  # op: (dtypes, low, high, tolerance scale)
    "Abs": (FLOATS + SIGNED, -9, 9, 1),
    "Acos": (FC, -0.95, 0.95, 2),
    "Asin": (FC, -0.95, 0.95, 2),
    "Atanh": (FC, -0.95, 0.95, 2),
    "Acosh": (FC, 1.05, 9, 2),
    "Asinh": (FC, -9, 9, 2),
    "Atan": (FC, -9, 9, 2),
    "Ceil": (FLOATS, -9, 9, 1),
    "Floor": (FLOATS, -9, 9, 1),
    "Rint": (("float32", "float64"), -9, 9, 1),
    "Round": (FLOATS, -9, 9, 1),
    "Cos": (FC, -6, 6, 2),
    "Sin": (FC, -6, 6, 2),
    "Tan": (FC, -1.4, 1.4, 4),
    "Cosh": (FC, -5, 5, 2),
    "Sinh": (FC, -5, 5, 2),
    "Expm1": (FC, -5, 5, 2),
    "Log": (FC, 0.05, 9, 2),
    "Log1p": (FC, -0.9, 9, 2),
    "Reciprocal": (FC, 0.2, 9, 1),
    "Inv": (FC, 0.2, 9, 1),
    "Sign": (FC + SIGNED, -9, 9, 1),
    "Square": (FC + SIGNED + UNSIGNED, -9, 9, 1),
    "IsFinite": (FLOATS, -9, 9, 1),
    "IsInf": (FLOATS, -9, 9, 1),
    "IsNan": (FLOATS, -9, 9, 1),
}

for _op, (_dts, _lo, _hi, _s) in _UNARY2.items():
    for _dt in _dts:
        _l = 0 if _dt.startswith("u") else _lo
        add(f"{_op}_{_dt}", [_op], _raw(_op), gen(((3, 5), _dt, _l, _hi)),
            dynamic=_dt == "float32", **tol(_dt, _s))
    add(f"{_op}_scalar", [_op], _raw(_op), gen(((), "float32", _lo, _hi)), **tol("float32", _s))
    add(f"{_op}_empty", [_op], _raw(_op), gen(((0, 2), "float32", _lo, _hi)))
    if _op not in ("Rint",):
        for _dt in ("float32", "float64"):
            _ext = [0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5, 1.5, 2.5, -2.5, 1.0, -1.0, 20, -20, 1e30,
                    -1e30, np.inf, -np.inf, np.nan]
            add(f"{_op}_{_dt}_extremes", [_op], _raw(_op), [fixed(_ext, _dt)],
                rtol=TOL[_dt][0] * 4, atol=1e-30)
add("Round_half_even", ["Round"], _raw("Round"),
    [np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 1e8 + 0.5, 3.5], np.float32)])
add("Rint_half_even", ["Rint"], _raw("Rint"),
    [np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 3.5, np.inf, np.nan], np.float32)])
for _dt in ("int32", "int64"):
    add(f"Round_{_dt}", ["Round"], _raw("Round"), gen(((3, 5), _dt, -9, 9)),
        xfail="TF's CPU Round kernel returns 0 for integers; tfdeploy returns the input")
add("Abs_int_min", ["Abs"], _raw("Abs"), [np.array([-128, 127, 0], np.int8)])
add("Sign_complex_zero", ["Sign"], _raw("Sign"), [np.array([0j, 3 + 4j, -2j], np.complex128)])

_BINARY2 = {  # op: (dtypes, x range, y range or "nz" for non-zero divisors, tolerance scale)
    "Div": (FC + SIGNED + UNSIGNED, (-9, 9), "nz", 1),
    "DivNoNan": (FC, (-9, 9), (-3, 3), 1),
    "FloorDiv": (FLOATS + SIGNED + UNSIGNED, (-20, 20), "nz", 1),
    "FloorMod": (FLOATS + SIGNED + UNSIGNED, (-20, 20), "nz", 4),
    "Mod": (("float32", "float64", "int32", "int64"), (-20, 20), "nz", 4),
    "TruncateDiv": (FLOATS + SIGNED + UNSIGNED, (-20, 20), "nz", 1),
    "TruncateMod": (("float32", "float64", "int32", "int64"), (-20, 20), "nz", 4),
    "Minimum": (FLOATS + SIGNED + UNSIGNED, (-9, 9), (-9, 9), 1),
    "Pow": (FC, (0.2, 3), (-2, 2), 4),
    "SquaredDifference": (FC + ("int32", "int64"), (-9, 9), (-9, 9), 2),
    "Atan2": (FLOATS, (-3, 3), (-3, 3), 2),
    "Xlogy": (FC, (-3, 3), (0.1, 5), 2),
    "Xdivy": (FC, (-3, 3), "nz", 2),
    "Xlog1py": (FC, (-3, 3), (-0.5, 5), 2),
    "MulNoNan": (FC, (-3, 3), (-3, 3), 1),
}

for _op, (_dts, _xr, _yr, _s) in _BINARY2.items():
    for _dt in _dts:
        _xl = 0 if _dt.startswith("u") else _xr[0]
        _x = ((3, 4), _dt, _xl, _xr[1])
        _y = nonzero((4,), _dt) if _yr == "nz" else ((4,), _dt, _yr[0], _yr[1])
        add(f"{_op}_{_dt}", [_op], _raw(_op), gen2(_x, _y), dynamic=_dt == "float32",
            **tol(_dt, _s))
    add(f"{_op}_scalar", [_op], _raw(_op),
        gen2(((), "float32", 1, 3), ((2, 3), "float32", 1, 3)), **tol("float32", _s))
    add(f"{_op}_empty", [_op], _raw(_op), gen(((0, 3), "float32", 1, 3), ((3,), "float32", 1, 3)))
    add(f"{_op}_special", [_op], _raw(_op),
        [np.array(_SPECIAL * 7), np.repeat(_SPECIAL, 7)], rtol=1e-12, atol=1e-300)

add("Pow_int", ["Pow"], _raw("Pow"),
    [np.array([2, 3, -2, 0, 0, -1, 5, 7], np.int64), np.array([10, 41, 3, 0, 5, 7, 0, 22])])
for _dt in ("int8", "int16", "int32"):
    add(f"Pow_{_dt}", ["Pow"], _raw("Pow"), gen(((3, 4), _dt, -4, 4), ((4,), _dt, 0, 3)))
add("Pow_complex_int_exponent", ["Pow"], _raw("Pow"),
    gen(((5,), "complex128", -2, 2), ((5,), "complex128", 0, 3)), rtol=1e-12, atol=1e-12)
add("Pow_negative_base", ["Pow"], _raw("Pow"),
    [np.array([-2.0, -2.0, -0.0, 0.0, -8.0]), np.array([3.0, 0.5, -1.0, -1.0, 1 / 3])])
# a constant exponent (x**2, x**3 in GELU's tanh form, 1/x...): computed by multiplies
for _e in (1.0, 2.0, 3.0, -1.0, 2.5):
    for _dt in ("float32", "float64"):
        add(f"Pow_constant_{_e}_{_dt}", ["Pow"],
            lambda x, _e=_e: tf.pow(x, tf.constant(_e, x.dtype)),
            [fixed([-3.5, -1.0, -0.0, 0.0, 1e-3, 0.5, 2.0, 7.25, 1e20, -1e20, np.inf, -np.inf,
                    np.nan], _dt)], **tol(_dt, 2))
# a constant of a few channels (an image's mean and scale), either side: the tiled fast path
def _channel_constant(fn, c, first):
    def f(x):
        k = tf.constant(c.reshape(1, 1, 3) if first else c)
        return fn(k, x) if first else fn(x, k)
    return f


for _name, _fn in (("AddV2", tf.math.add), ("Sub", tf.math.subtract),
                   ("Mul", tf.math.multiply), ("RealDiv", tf.math.truediv)):
    for _dt in ("float32", "float64"):
        _c = np.array([0.485, -0.456, 0.406], _dt)
        add(f"{_name}_channel_constant_{_dt}", [_name], _channel_constant(_fn, _c, False),
            gen(((2, 30, 40, 3), _dt, -3, 3)), **tol(_dt, 1))
        add(f"{_name}_channel_constant_first_{_dt}", [_name], _channel_constant(_fn, _c, True),
            gen(((30, 50, 3), _dt, 0.5, 3)), **tol(_dt, 1))
add("FloorMod_signs", ["FloorMod"], _raw("FloorMod"),
    [np.array([-7.0, 7, -7, 7, 5, -0.0, 1e-20, -1e-20]),
     np.array([2.0, -2, -2, 2, np.inf, 3, 1, 1])])
add("FloorMod_int_signs", ["FloorMod"], _raw("FloorMod"),
    [np.array([-7, 7, -7, 7, 0], np.int32), np.array([2, -2, -2, 2, -3], np.int32)])
add("FloorDiv_int_signs", ["FloorDiv"], _raw("FloorDiv"),
    [np.array([-7, 7, -7, 7, 0, -2**31], np.int32), np.array([2, -2, -2, 2, -3, -1], np.int32)])
add("Div_int_truncates", ["Div"], _raw("Div"),
    [np.array([-7, 7, -7, 7, 0], np.int64), np.array([2, -2, -2, 2, -3], np.int64)])
add("TruncateMod_int_signs", ["TruncateMod"], _raw("TruncateMod"),
    [np.array([-7, 7, -7, 7], np.int32), np.array([2, -2, -2, 2], np.int32)])
add("Xlogy_zeros", ["Xlogy"], _raw("Xlogy"),
    [np.array([0.0, 0, 0, 1, 2]), np.array([0.0, np.nan, np.inf, 0, -1])])
add("Xlog1py_zeros", ["Xlog1py"], _raw("Xlog1py"),
    [np.array([0.0, 0, 1, 2, 1e-3]), np.array([-1.0, np.nan, -1, -2, 1e-10])], rtol=1e-12)

# --- comparisons and logic ------------------------------------------------------------------

_CMP = {
    "Equal": FC + SIGNED + UNSIGNED + ("bool",),
    "NotEqual": FC + SIGNED + UNSIGNED + ("bool",),
    "Less": FLOATS + SIGNED + UNSIGNED,
    "LessEqual": FLOATS + SIGNED + UNSIGNED,
    "Greater": FLOATS + SIGNED + UNSIGNED,
    "GreaterEqual": FLOATS + SIGNED + UNSIGNED,
}
for _op, _dts in _CMP.items():
    for _dt in _dts:
        # few distinct values, so that equal pairs occur
        add(f"{_op}_{_dt}", [_op], _raw(_op), gen(((3, 4), _dt, 0, 3), ((4,), _dt, 0, 3)),
            dynamic=_dt == "float32")
    add(f"{_op}_special", [_op], _raw(_op), [np.array(_SPECIAL * 7), np.repeat(_SPECIAL, 7)])
    add(f"{_op}_scalar", [_op], _raw(_op), gen(((), "int32", 0, 2), ((3,), "int32", 0, 2)))
for _op in ("Equal", "NotEqual"):
    add(f"{_op}_string", [_op], _raw(_op),
        [np.array([b"a", b"b", b""], object), np.array([b"a", b"c", b""], object)])
    add(f"{_op}_incompatible", [_op], _raw(_op, incompatible_shape_error=False),
        gen(((3,), "float32"), ((2,), "float32")))
    add(f"{_op}_compatible_flag_off", [_op], _raw(_op, incompatible_shape_error=False),
        gen(((2, 3), "int32", 0, 2), ((3,), "int32", 0, 2)))
for _op in ("LogicalAnd", "LogicalOr"):
    add(f"{_op}", [_op], _raw(_op), gen(((3, 4), "bool"), ((4,), "bool")), dynamic=True)
    add(f"{_op}_scalar", [_op], _raw(_op), gen(((), "bool"), ((2,), "bool")))
add("LogicalNot", ["LogicalNot"], _raw("LogicalNot"), gen(((3, 4), "bool")), dynamic=True)
for _dt in ("float32", "float64"):
    add(f"ApproximateEqual_{_dt}", ["ApproximateEqual"], _raw("ApproximateEqual", tolerance=0.5),
        gen(((3, 4), _dt), ((3, 4), _dt)))

# --- ClipByValue, AddN ----------------------------------------------------------------------

for _dt in FC + SIGNED + ("uint8", "uint16"):
    add(f"ClipByValue_{_dt}", ["ClipByValue"], _raw("ClipByValue"),
        gen(((3, 4), _dt, 0, 9), ((), _dt, 2, 3), ((), _dt, 5, 6)), dynamic=_dt == "float32",
        **tol(_dt))
add("ClipByValue_tensor_bounds", ["ClipByValue"], _raw("ClipByValue"),
    gen(((3, 4), "float32", 0, 9), ((3, 4), "float32", 2, 3), ((3, 4), "float32", 5, 6)))
add("ClipByValue_min_above_max", ["ClipByValue"], _raw("ClipByValue"),
    [np.array([1.0, 5.0, np.nan]), np.array(4.0), np.array(3.0)])
for _dt in FC + SIGNED + UNSIGNED:
    add(f"AddN_{_dt}", ["AddN"], lambda *xs: raw.AddN(inputs=list(xs)),
        gen(((3, 4), _dt, 0, 9), ((3, 4), _dt, 0, 9), ((3, 4), _dt, 0, 9)),
        dynamic=_dt == "float32", **tol(_dt, 2))
add("AddN_one", ["AddN"], lambda x: raw.AddN(inputs=[x]), gen(((3,), "float32")))
add("AddN_scalars", ["AddN"], lambda x, y: raw.AddN(inputs=[x, y, x]),
    gen(((), "float64"), ((), "float64")), **tol("float64"))

# --- Einsum ---------------------------------------------------------------------------------

_EINSUM = {
    "matmul": ("ij,jk->ik", [(3, 4), (4, 5)]),
    "batch": ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    "attention": ("bqhd,bkhd->bhqk", [(2, 3, 2, 4), (2, 5, 2, 4)]),
    "ellipsis": ("...ij,jk->...ik", [(2, 3, 4), (4, 5)]),
    "ellipsis_bcast": ("...ij,...jk->...ik", [(5, 1, 2, 3), (4, 3, 4)]),
    "outer": ("i,j->ij", [(3,), (4,)]),
    "dot": ("i,i->", [(4,), (4,)]),
    "sum": ("ij->j", [(3, 4)]),
    "transpose": ("ijk->kji", [(2, 3, 4)]),
    "trace": ("ii->", [(3, 3)]),
    "diag": ("ii->i", [(3, 3)]),
    "broadcast_dims": ("bij,jk->bik", [(1, 3, 4), (4, 5)]),
    "contract_two": ("abc,cbd->ad", [(2, 3, 4), (4, 3, 5)]),
}


def _einsum(eq):
    def call(*xs):
        return raw.Einsum(inputs=list(xs), equation=eq)
    return call


for _name, (_eq, _shapes) in _EINSUM.items():
    add(f"Einsum_{_name}", ["Einsum"], _einsum(_eq),
        gen(*[(s, "float32") for s in _shapes]), dynamic=_name in ("batch", "ellipsis"),
        **tol("float32", 8))
for _dt in FC + ("int32", "int64"):
    add(f"Einsum_{_dt}", ["Einsum"],
        lambda x, y: raw.Einsum(inputs=[x, y], equation="bij,bjk->bik"),
        gen(((2, 3, 4), _dt), ((2, 4, 5), _dt)), **tol(_dt, 8))
