"""Bitwise ops on every integer dtype, with broadcasting and out-of-range shift counts."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from . import Case, adder

CASES: list[Case] = []
add = adder(CASES, "bitwise")
raw = tf.raw_ops

INTS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def full_range(shape, dtype):
    """Integers over the dtype's whole range, with its extremes included."""
    def gen(rng):
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
        if x.size >= 3:
            x.reshape(-1)[:3] = [info.min, info.max, 0]
        return x
    return gen


def shifts(shape, dtype):
    """Shift counts from below 0 to beyond the bit width."""
    def gen(rng):
        bits = np.dtype(dtype).itemsize * 8
        lo = -3 if np.dtype(dtype).kind == "i" else 0
        return rng.integers(lo, bits + 4, size=shape, endpoint=True).astype(dtype)
    return gen


def inputs(*gens):
    def make(rng):
        return [g(rng) if callable(g) else np.asarray(g) for g in gens]
    return make


for _t in INTS:
    for _op in ("BitwiseAnd", "BitwiseOr", "BitwiseXor"):
        add(f"{_op}_{_t}", [_op], lambda x, y, _op=_op: getattr(raw, _op)(x=x, y=y),
            inputs(full_range((4, 5), _t), full_range((4, 5), _t)), dynamic=_t == "int32")
    add(f"Invert_{_t}", ["Invert"], lambda x: raw.Invert(x=x), inputs(full_range((3, 4), _t)),
        dynamic=_t == "uint8")
    add(f"PopulationCount_{_t}", ["PopulationCount"], lambda x: raw.PopulationCount(x=x),
        inputs(full_range((3, 5), _t)), dynamic=_t == "int64")
    for _op in ("LeftShift", "RightShift"):
        add(f"{_op}_{_t}", [_op], lambda x, y, _op=_op: getattr(raw, _op)(x=x, y=y),
            inputs(full_range((6, 7), _t), shifts((6, 7), _t)), dynamic=_t == "int16")

add("BitwiseAnd_broadcast", ["BitwiseAnd"], lambda x, y: tf.bitwise.bitwise_and(x, y),
    inputs(full_range((3, 1, 4), "int32"), full_range((5, 1), "int32")))
add("BitwiseOr_scalar", ["BitwiseOr"], lambda x, y: tf.bitwise.bitwise_or(x, y),
    inputs(full_range((), "uint16"), full_range((), "uint16")))
add("BitwiseXor_empty", ["BitwiseXor"], lambda x, y: tf.bitwise.bitwise_xor(x, y),
    inputs(np.zeros((0, 3), np.int8), full_range((3,), "int8")))
add("LeftShift_broadcast", ["LeftShift"], lambda x, y: tf.bitwise.left_shift(x, y),
    inputs(full_range((2, 5), "int64"), shifts((5,), "int64")))
add("RightShift_scalar_count", ["RightShift"], lambda x, y: tf.bitwise.right_shift(x, y),
    inputs(full_range((8,), "int32"), np.int32(3)))
add("PopulationCount_scalar", ["PopulationCount"], lambda x: raw.PopulationCount(x=x),
    inputs(np.int64(-1)))
add("Invert_empty", ["Invert"], lambda x: tf.bitwise.invert(x), inputs(np.zeros(0, np.uint32)))
