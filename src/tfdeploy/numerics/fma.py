"""Exact double arithmetic in numpy: error-free sums and products, and the fused multiply-add
(one rounding) that glibc's x86-64 FMA builds use, emulated exactly (``numerics.libm``)."""

from __future__ import annotations

import numpy as np

__all__ = ["two_sum", "split", "two_prod", "round_odd_sum", "fma_parts", "fma", "hex_pairs",
           "plain"]

_F64 = np.float64
_SPLIT = 134217729.0  # 2**27 + 1, Veltkamp's splitter for doubles


def two_sum(a, b):
    """s + e == a + b exactly, s = RN(a + b) (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def split(a):
    t = a * _SPLIT
    hi = t - (t - a)
    return hi, a - hi


def two_prod(a, b):
    """p + e == a * b exactly, p = RN(a * b) (Dekker; no overflow or underflow in our uses)."""
    p = a * b
    ah, al = split(a)
    bh, bl = split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def round_odd_sum(a, b):
    """a + b rounded to odd (truncated, the last bit set when inexact), on the bit pattern."""
    s, e = two_sum(a, b)
    bits = s.view(np.int64)
    fix = (e != 0) & ((bits & 1) == 0)
    # one unit toward e: up in magnitude when s and e have the same sign, else down
    step = np.where((bits ^ e.view(np.int64)) < 0, -1, 1)
    return (bits + fix * step).view(_F64)


def fma_parts(p, pe, c):
    """RN(p + pe + c) where p + pe is a product, exactly: p + c = s + se exactly, then
    RN(s + RO(pe + se)) is the correctly rounded sum of the three (Boldo & Melquiond,
    "Emulation of FMA and correctly rounded sums: proved algorithms using rounding to odd",
    IEEE TC 2008)."""
    s, se = two_sum(p, c)
    return s + round_odd_sum(pe, se)


def fma(a, b, c):
    """RN(a * b + c) with a single rounding, as the FMA instruction computes it."""
    a, b, c = np.asarray(a, _F64), np.asarray(b, _F64), np.asarray(c, _F64)
    p, pe = two_prod(a, b)
    return fma_parts(p, pe, c)


def hex_pairs(text: str) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([float.fromhex(t) for t in text.split()], _F64).reshape(-1, 2)
    return np.ascontiguousarray(v[:, 0]), np.ascontiguousarray(v[:, 1])


def plain(a, b, c):
    """a * b + c with two roundings: the fast first try before an exact fallback."""
    return a * b + c
