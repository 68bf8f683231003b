"""Reductions, arg-reductions and cumulative ops (reduce.py)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from . import Case, adder
from .math import COMPLEX, FLOATS, gen, tol

CASES: list[Case] = []
add = adder(CASES, "reduce")
raw = tf.raw_ops


def _reduce(op, axis, keep_dims=False, tidx=np.int32):
    f = getattr(raw, op)

    def call(x):
        return f(input=x, axis=tf.constant(axis, tidx), keep_dims=keep_dims)
    return call


def _reduce_dyn_axis(op, keep_dims=False):
    f = getattr(raw, op)

    def call(x, axis):
        return f(input=x, axis=axis, keep_dims=keep_dims)
    return call


_AXES = {"ax1": 1, "axneg": -1, "ax02": [0, 2], "axneg13": [-1, 0], "all": [0, 1, 2],
         "none": np.zeros((0,), np.int32), "vec1": [1]}
_SIGNED = ("int8", "int16", "int32", "int64")
_UNSIGNED = ("uint8", "uint16", "uint32", "uint64")
_REDUCTIONS = {  # op: dtypes
    "Sum": FLOATS + COMPLEX + _SIGNED + _UNSIGNED,
    "Mean": FLOATS + COMPLEX + _SIGNED + _UNSIGNED,
    "Max": FLOATS + _SIGNED + _UNSIGNED,
    "Min": FLOATS + _SIGNED + _UNSIGNED,
    "Prod": FLOATS + COMPLEX + _SIGNED + _UNSIGNED,
    "EuclideanNorm": FLOATS + COMPLEX + _SIGNED + _UNSIGNED,
}

for _op, _dts in _REDUCTIONS.items():
    for _name, _axis in _AXES.items():
        for _kd in (False, True):
            add(f"{_op}_{_name}_{'keep' if _kd else 'drop'}", [_op], _reduce(_op, _axis, _kd),
                gen(((2, 3, 4), "float32")), dynamic=_name in ("ax02", "none"),
                **tol("float32", 4))
    for _dt in _dts:
        _lo, _hi = (0 if _dt.startswith("u") else -50), 50
        if _op == "Prod":
            _lo, _hi = (0.5 if _dt.startswith("u") else -2), 2
        add(f"{_op}_{_dt}", [_op], _reduce(_op, [0, 2]), gen(((3, 4, 5), _dt, _lo, _hi)),
            **tol(_dt, 8))
    add(f"{_op}_tidx64", [_op], _reduce(_op, [-2], tidx=np.int64), gen(((3, 4), "float32")),
        **tol("float32", 4))
    add(f"{_op}_axis_input", [_op], _reduce_dyn_axis(_op, True),
        gen(((3, 4, 2), "float32"), np.array([2, 0], np.int32)), dynamic=True,
        **tol("float32", 4))
    add(f"{_op}_scalar", [_op], _reduce(_op, np.zeros((0,), np.int32)), gen(((), "float32")))
    add(f"{_op}_empty", [_op], _reduce(_op, 0), gen(((0, 3), "float32")))
    add(f"{_op}_empty_int", [_op], _reduce(_op, [1]), gen(((3, 0), "int32")))
    add(f"{_op}_empty_keep", [_op], _reduce(_op, [0, 1], True), gen(((2, 0, 3), "float64")))
    add(f"{_op}_large", [_op], _reduce(_op, 1), gen(((3, 1000), "float32", -1, 1)),
        rtol=1e-5, atol=1e-5)
    add(f"{_op}_nan", [_op], _reduce(_op, 1),
        [np.array([[1.0, np.nan, 3.0], [np.nan, 1.0, 2.0], [np.inf, -np.inf, 0.0],
                   [-np.inf, 1.0, -np.inf], [np.nan, np.inf, np.nan]], np.float32)])

add("Mean_int_truncation", ["Mean"], _reduce("Mean", 1),
    [np.array([[1, 2, 2], [-1, -2, -2], [-7, 0, 0], [5, -1, -1]], np.int32)])
add("Mean_uint8_values", ["Mean"], _reduce("Mean", 0), [np.array([[250, 3], [251, 4]], np.uint8)])
# the mean of nothing: NaN for floats (Mean_empty), 0 for complex numbers in TF
for _dt in ("complex64", "complex128"):
    add(f"Mean_empty_{_dt}", ["Mean"], _reduce("Mean", 0), [np.zeros((0, 4), _dt)])
    add(f"Mean_empty_keep_{_dt}", ["Mean"], _reduce("Mean", [0, 1], True),
        [np.zeros((2, 0, 3), _dt)])
add("Sum_int8_wraps", ["Sum"], _reduce("Sum", 0), [np.array([100, 100, 100], np.int8)])
add("Sum_float16_many", ["Sum"], _reduce("Sum", 0), gen(((2000,), "float16", 0, 1)),
    rtol=2e-3, atol=1e-2)
add("Mean_bfloat16_many", ["Mean"], _reduce("Mean", 1), gen(((2, 1000), "bfloat16", 0, 1)),
    rtol=1e-2, atol=1e-2)
# a global average pool (H, W of NHWC: summed as a matmul by ones), with an inf and a NaN
_pool = gen(((2, 30, 20, 8), "float32", -1, 1))
add("Mean_global_pool", ["Mean"], _reduce("Mean", [1, 2], True), _pool, rtol=1e-5, atol=1e-6)
add("Mean_global_pool_float64", ["Mean"], _reduce("Mean", [2, 1]),
    gen(((3, 9, 7, 5), "float64", -1, 1)), rtol=1e-12, atol=1e-12)
add("Mean_global_pool_nonfinite", ["Mean"], _reduce("Mean", [1, 2]),
    [np.where(np.arange(2 * 4 * 4 * 3).reshape(2, 4, 4, 3) % 17 == 5, np.inf,
              np.where(np.arange(96).reshape(2, 4, 4, 3) == 40, np.nan, 1.5)).astype(np.float32)])
add("Max_keras_rnn_prologue", ["Max"], lambda x: tf.reduce_max(x), gen(((5,), "int32", 0, 9)))
add("Prod_int_wraps", ["Prod"], _reduce("Prod", 0), [np.array([100, 100, 100], np.int32)])
add("EuclideanNorm_int_truncates", ["EuclideanNorm"], _reduce("EuclideanNorm", 0),
    [np.array([[3, 4, 1], [4, 3, 1]], np.int32)])

# --- All, Any -----------------------------------------------------------------------------
for _op in ("All", "Any"):
    for _name, _axis in _AXES.items():
        add(f"{_op}_{_name}", [_op], _reduce(_op, _axis, _name == "ax02"),
            gen(((2, 3, 4), "bool")), dynamic=_name == "ax02")
    add(f"{_op}_empty", [_op], _reduce(_op, 0), [np.zeros((0, 2), bool)])
    add(f"{_op}_uniform", [_op], _reduce(_op, 1), [np.array([[True] * 3, [False] * 3])])

# --- ArgMax, ArgMin -----------------------------------------------------------------------


def _arg(op, dim, output_type=None):
    f = getattr(raw, op)
    kw = {"output_type": output_type} if output_type is not None else {}

    def call(x):
        return f(input=x, dimension=dim, **kw)
    return call


for _op in ("ArgMax", "ArgMin"):
    for _dt in FLOATS + _SIGNED + _UNSIGNED + ("bool",):
        _lo = 0 if _dt.startswith("u") else -50
        add(f"{_op}_{_dt}", [_op], _arg(_op, 1), gen(((3, 6), _dt, _lo, 50)),
            dynamic=_dt == "float32")
    for _dim in (0, 2, -1):
        add(f"{_op}_dim{_dim}", [_op], _arg(_op, _dim), gen(((3, 4, 5), "float32")))
    add(f"{_op}_int32_out", [_op], _arg(_op, 0, tf.int32), gen(((4, 3), "float32")))
    add(f"{_op}_dim_int64", [_op], _arg(_op, tf.constant(1, tf.int64)), gen(((4, 3), "float32")))
    add(f"{_op}_rank1", [_op], _arg(_op, 0), gen(((7,), "float64")))
    add(f"{_op}_ties", [_op], _arg(_op, 1), [np.array([[3, 1, 3], [1, 1, 1], [0, 2, 2]], np.int32)])
    _n, _i = np.nan, np.inf
    _rows = [[_n, 1, 3, _n], [_n, _n, _n, _n], [2, _n, 2, -_i], [5, _n, -_i, -_i], [_n, -_i, 7, 7],
             [-_i, -_i, -_i, -_i], [_i, _n, _i, 0]]
    add(f"{_op}_nan", [_op], _arg(_op, 1), [np.array(_rows, np.float32)])
    add(f"{_op}_nan_axis0", [_op], _arg(_op, 0), [np.array(_rows, np.float64).T.copy()])
    # rows of 20 (the kernel checks only its picks for NaN along axes of 16 and more)
    _long = np.random.default_rng(7).uniform(-5, 5, (6, 20)).astype(np.float32)
    _long[0, 3] = _long[1, 0] = _long[1, 19] = _long[3, 7] = _n
    _long[2] = _n
    _long[4, :10] = -_i
    _long[4, 10] = _n
    add(f"{_op}_nan_long", [_op], _arg(_op, 1), [_long])
    add(f"{_op}_nan_long_axis0", [_op], _arg(_op, 0), [_long.T.copy()])

# --- Cumsum, Cumprod, CumulativeLogsumexp ---------------------------------------------------


def _cum(op, axis, exclusive=False, reverse=False):
    f = getattr(raw, op)

    def call(x):
        return f(x=x, axis=axis, exclusive=exclusive, reverse=reverse)
    return call


_CUM = {  # op: dtypes
    "Cumsum": FLOATS + COMPLEX + _SIGNED + _UNSIGNED,
    "Cumprod": FLOATS + COMPLEX + _SIGNED + _UNSIGNED,
    "CumulativeLogsumexp": FLOATS,
}
for _op, _dts in _CUM.items():
    _lo, _hi = (0.5, 1.5) if _op == "Cumprod" else (-3, 3)
    for _ex in (False, True):
        for _rev in (False, True):
            for _ax in (0, 1, -1):
                add(f"{_op}_ax{_ax}_{'excl' if _ex else 'incl'}_{'rev' if _rev else 'fwd'}",
                    [_op], _cum(_op, _ax, _ex, _rev), gen(((3, 4, 2), "float32", _lo, _hi)),
                    dynamic=_ax == 1 and _ex, **tol("float32", 8))
    for _dt in _dts:
        _l, _h = (_lo, _hi) if _op != "Cumprod" or _dt[0] in "fcb" else (1, 2)
        if _dt.startswith("u"):
            _l = max(_l, 0)
        add(f"{_op}_{_dt}", [_op], _cum(_op, 1), gen(((3, 5), _dt, _l, _h)), **tol(_dt, 8))
    add(f"{_op}_axis_int64", [_op], _cum(_op, tf.constant(0, tf.int64), True),
        gen(((4, 3), "float32", _lo, _hi)), **tol("float32", 8))
    add(f"{_op}_empty", [_op], _cum(_op, 0, True), gen(((0, 3), "float32")))
    add(f"{_op}_length1_exclusive", [_op], _cum(_op, 1, True, True),
        gen(((3, 1), "float32", _lo, _hi)))
add("CumulativeLogsumexp_large", ["CumulativeLogsumexp"], _cum("CumulativeLogsumexp", 0),
    gen(((50,), "float64", -800, 800)), rtol=1e-12, atol=1e-12)
add("CumulativeLogsumexp_neg_inf", ["CumulativeLogsumexp"], _cum("CumulativeLogsumexp", 0),
    [np.array([-np.inf, -np.inf, 1.0, -np.inf, 2.0])])
# TF's scan reducer: a NaN after -inf leaves -inf, after a finite running value adds log(2),
# two +inf make NaN (numpy's logaddexp propagates the NaN and keeps inf)
_nan, _inf = np.nan, np.inf
for _ex, _rev in ((False, False), (True, False), (False, True)):
    add(f"CumulativeLogsumexp_nan_inf_{'excl' if _ex else 'incl'}_{'rev' if _rev else 'fwd'}",
        ["CumulativeLogsumexp"], _cum("CumulativeLogsumexp", 1, _ex, _rev),
        [np.array([[_nan, 0.0, 1.0, _nan, 2.0, -_inf],
                   [0.5, _inf, 1.0, _inf, 0.0, 1.0],
                   [-_inf, _nan, -_inf, 3.0, _nan, _nan],
                   [1.0, _inf, _nan, 0.0, 2.0, 1.0]], np.float32)])
add("CumulativeLogsumexp_nan_columns", ["CumulativeLogsumexp"], _cum("CumulativeLogsumexp", 0),
    [np.where(np.arange(48).reshape(3, 16) % 16 < 8, np.float64(1.0),
              np.array([[0.0], [_nan], [2.0]]))])
add("Cumsum_int8_wraps", ["Cumsum"], _cum("Cumsum", 0), [np.array([100, 100, 100], np.int8)])
