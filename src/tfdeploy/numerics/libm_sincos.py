"""Bit-exact numpy emulations of glibc's double ``sin``, ``cos`` and ``sincos``.

TensorFlow's float64 Box-Muller transform (``random_distributions.h``, ``BoxMullerDouble``) calls
the C library's ``sincos`` on Linux (``sin`` and ``cos`` elsewhere). glibc's are IBM's Accurate
Mathematical Library: table-driven, about 0.55 ULP, *not* correctly rounded; since glibc 2.28
x86-64 selects variants compiled with fused multiply-adds (``__sin_fma``, ``__cos_fma``,
``__sincos_fma``) on every CPU with FMA. numpy's ``np.sin``/``np.cos`` call glibc on numpy >= 1.25
but not on numpy 1.24 with AVX-512 (its own versions differ in the last bit for 60% of values),
so this module evaluates glibc's algorithm itself: the same table, the same operation order, with
every fused multiply-add where the x86-64 binary fuses (decoded from glibc 2.36's libm.so.6),
emulated exactly (``libm.fma``). ``sincos`` equals ``sin``/``cos`` except
for rare arguments in 0.855 <= |x| < 2.43, where its sine reduces the argument differently.

Algorithm (for |x| < 2^1024): reduce x to n*pi/2 + (a + da), |a| <= pi/4 (exact, with n*pi/2
split in four parts, for |x| < 105414350; with 2/pi's binary digits beyond); then
sin(a + da) is a + a^3*P(a^2) for |a| < 0.126, else by the addition theorem from sin and cos of
k/128 (the table, as double-double values) and short polynomials in a - k/128; cos likewise.

Speed: the polynomial part is evaluated first without fused multiply-adds; where the unfused
result is provably the same as the fused one (its pre-rounding value lies further from a rounding
boundary than a bound on the difference, see ``_certify``) it is kept, the rest (about 5% of
TF's angles) is evaluated again, fused, in one batch at the end. The range reduction is always
exact. Work proceeds in blocks of 8192 values: past malloc's mmap threshold (128 KiB) every
numpy temporary would cost fresh page faults. About 8x np.sin's time.

Domain: every float64, including subnormals, signed zeros, infinities and nan (computed as
``x - x`` where glibc computes ``x / x``: the same nan bits on x86-64). No errno, no exceptions.

Provenance and licence: the algorithm is IBM's (glibc ``sysdeps/ieee754/dbl-64/s_sin.c``,
``s_sincos.c``, ``branred.c``; LGPL-2.1-or-later); no glibc code is copied here, the numpy code is
ours, written from the decoded arithmetic. The table of sin and cos of k/128 and the base-2^24
digits of 2/pi are computed below from series. The polynomial coefficients and the range
reduction constants are glibc's numbers (``usncs.h``, ``s_sin.c``, ``branred.h``, IBM Accurate
Mathematical Library, Copyright (C) 2001-2022 Free Software Foundation, Inc.), taken as numbers
because bit-exact interoperation needs exactly these values.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.numerics.fma import fma as _fma
from tfdeploy.numerics.fma import fma_parts, split, two_sum

__all__ = ["sin", "cos", "sincos"]

_F64 = np.float64


def _h(text: str) -> float:
    return float.fromhex(text)


# -- constants: glibc's numbers (see the module docstring) -------------------------------------

# sin a = a + a^3 (S1 + a^2 (S2 + a^2 (S3 + a^2 (S4 + a^2 S5)))) for |a| < 0.126
_S1, _S2, _S3, _S4, _S5 = (_h(t) for t in ("-0x1.5555555555555p-3", "0x1.1111111110ecep-7",
                                           "-0x1.a01a019db08b8p-13", "0x1.71de27b9a7ed9p-19",
                                           "-0x1.addffc2fcdf59p-26"))
# sin and cos of |x| <= 1/256: x + x^3 (SN3 + x^2 SN5) and 1 - x^2 (1/2 + x^2 (CS4 + x^2 CS6))
_SN3, _SN5 = _h("-0x1.5555555555515p-3"), _h("0x1.11110e829872fp-7")
_CS4, _CS6 = _h("-0x1.5555555555535p-5"), _h("0x1.6c16bedd9e239p-10")
_TINY_A = _h("0x1.020c49ba5e354p-3")  # 0.126: below it, the polynomial without the table
_BIG = _h("0x1.8p45")  # |x| + _BIG rounds |x| to the nearest multiple of 1/128
_BIG_BITS = np.int64(0x42C8000000000000)
# pi/2 = HP0 + HP1; = MP1 + MP2 + PP3 + PP4 with MP1, MP2, PP3 short (26, 27, 26 bits), so that
# n * MPi is exact for |n| <= 2^26, which is what bounds the simple reduction's range
_HP0, _HP1 = _h("0x1.921fb54442d18p+0"), _h("0x1.1a62633145c07p-54")
_MP1, _MP2 = _h("0x1.921fb58000000p+0"), _h("-0x1.dde973c000000p-27")
_PP3, _PP4 = _h("-0x1.cb3b398000000p-55"), _h("-0x1.d747f23e32ed7p-83")
_HPINV = _h("0x1.45f306dc9c883p-1")  # 2/pi
_HPINV_HI, _HPINV_LO = (float(v) for v in split(np.float64(_HPINV)))
_PP4_HI, _PP4_LO = (float(v) for v in split(np.float64(_PP4)))
# large arguments (glibc's __branred, compiled without FMA): its own second part of pi/2 - MP1
_BR_MP2 = _h("-0x1.dde9740000000p-27")
_BR_SPLIT = 134217729.0  # 2^27 + 1
_BR_BIG = _h("0x1.8p52")  # x + _BR_BIG rounds x to an integer
_BR_BIG1 = _h("0x1.8p54")  # ... to a multiple of 4


def _high_word(hw: int) -> float:
    return float(np.array(hw << 32, np.int64).view(_F64))


# the boundaries between glibc's evaluation paths (it compares the high word of |x| with these)
_TINY_SIN = _high_word(0x3E500000)  # |x| < 2^-26: sin x = x
_TINY_COS = _high_word(0x3E400000)  # |x| < 2^-27: cos x = 1 (sincos: both)
_DIRECT = _high_word(0x3FEB6000)  # |x| < 0.85546875: no reduction
_MID = _high_word(0x400368FD)  # |x| < 2.426265: from pi/2 - |x|
_REDUCE = _high_word(0x419921FB)  # |x| < 105414350: n * pi/2 in four parts


# -- tables, computed from first principles -----------------------------------------------------

def _fixed_sin_cos(k: int, bits: int) -> tuple[int, int]:
    """sin and cos of k/128 as integers scaled by 2^bits (Taylor series, truncating terms)."""
    x = k << (bits - 7)
    sin = cos = 0
    term, n = 1 << bits, 0  # x^n / n!
    while term:
        if n & 1:
            sin += -term if n & 2 else term
        else:
            cos += -term if n & 2 else term
        n += 1
        term = term * x // n >> bits
    return sin, cos


def _double_double(v: int, bits: int) -> tuple[float, float]:
    """v / 2^bits as hi + lo, both correctly rounded."""
    hi = v / (1 << bits)  # int / int rounds correctly
    num, den = hi.as_integer_ratio()
    return hi, (v - num * ((1 << bits) // den)) / (1 << bits)


# glibc's table (IBM's ``sincos.tbl``) has every high part correctly rounded, but 18 of its 220
# low parts were computed to only about 110 bits: they differ from the correctly rounded value
# by these many units in their last place (index into the flat table of sn, ssn, cs, ccs rows)
_TABLE_LOW_PART_OFFSETS = {9: -1, 41: -1, 93: -39, 107: 1, 109: -1, 133: -1, 137: -1, 145: 1,
                           161: -2, 179: -1, 283: 1, 301: -1, 303: 2, 319: 1, 341: -1, 361: -2,
                           377: 1, 429: 1}


def _sincos_table() -> np.ndarray:
    """glibc's ``__sincostab``: rows (sin hi, sin lo, cos hi, cos lo) of k/128, k = 0..109."""
    bits = 240
    flat = []
    for k in range(110):
        s, c = _fixed_sin_cos(k, bits)
        flat += [*_double_double(s, bits), *_double_double(c, bits)]
    for i, units in _TABLE_LOW_PART_OFFSETS.items():
        flat[i] += units * float(np.spacing(abs(flat[i])))
    return np.array(flat, _F64).reshape(110, 4)


def _two_over_pi_digits(count: int = 75) -> np.ndarray:
    """2/pi's first ``count`` base-2^24 digits (glibc's ``toverp``), from Machin's formula."""
    bits = 24 * count + 64

    def atan_inv(m: int) -> int:  # atan(1/m) * 2^bits
        total = term = (1 << bits) // m
        n, sign = 1, -1
        while term:
            term //= m * m
            total += sign * (term // (2 * n + 1))
            n, sign = n + 1, -sign
        return total

    pi = 16 * atan_inv(5) - 4 * atan_inv(239)
    frac = (2 << (2 * bits)) // pi
    return np.array([(frac >> (bits - 24 * (i + 1))) & 0xFFFFFF for i in range(count)], _F64)


_TABLE = _sincos_table()
_SN, _SSN, _CS, _CCS = (np.ascontiguousarray(_TABLE[:, j]) for j in range(4))
_TOVERP = _two_over_pi_digits()


# -- the unfused first try ---------------------------------------------------------------------

def _plain(a, b, c):
    """a*b + c with two roundings: the fast first try."""
    return a * b + c


# -- the polynomial kernels ---------------------------------------------------------------------
# Each returns (head, tail, bound): glibc's value is RN(head + tail) when ``f`` is the exact fused
# multiply-add, and ``bound`` bounds how far ``tail`` moves when ``f`` does not fuse (``_plain``).
# An unfused a*b + c differs from the fused one by at most half an ulp of a*b, and a rounding fed
# a value moved by d moves by at most d + one ulp of its result; ulp(v) <= 2^-52 |v|. With
# |x| <= 2^-8 (1 + 2^-40), |c| <= 2^-17, |sn| < 0.76, |cs| <= 1 and table low parts below 2^-53,
# summing these over each kernel's operations gives half of the ``bound`` returned.

def _taylor_sin(a, da, f):
    """sin(a + da) for |a| < 0.126 (glibc's TAYLOR_SIN)."""
    xx = a * a
    p = f(f(f(f(xx, _S5, _S4), xx, _S3), xx, _S2), xx, _S1)
    t1 = f(p, a, -0.5 * da)
    t = f(xx, t1, da)
    # p moves by <= 2^-54.9, t1 by <= 2^-53.6 |a|, t by <= 2^-52 |t| + 2^-53.3 xx |a|
    return a, t, 2.0 ** -51 * np.abs(t) + 2.0 ** -52 * (xx * np.abs(a))


def _table_index(ax):
    """Nearest multiple of 1/128 to ``ax`` >= 0 (ties to even) as (k, ax - k/128 exactly)."""
    u = ax + _BIG
    return u.view(np.int64) - _BIG_BITS, ax - (u - _BIG)


def _table_sin(a, da, f):
    """|sin(a + da)| for 0.126 <= |a| <= 0.855 (glibc's do_sin); the caller copies a's sign."""
    dx = np.where(a > 0, da, -da)
    k, x = _table_index(np.abs(a))
    xx = x * x
    q = f(x * xx, f(xx, _SN5, _SN3), dx)
    s = x + q
    c = f(x, dx, xx * f(f(xx, _CS6, _CS4), xx, 0.5))
    sn = _SN[k]
    big = f(s, _CS[k], f(-c, sn, f(s, _CCS[k], _SSN[k])))
    # s moves by <= ulp(s) + 2^-77, c by <= 2^-67.9, the inner sum by <= 2^-67.2, so big by
    # <= 2^-52 (1.5 |s| + |big|) + 2^-67
    return sn, big, 2.0 ** -51 * (1.5 * np.abs(s) + np.abs(big)) + 2.0 ** -66


def _table_cos(a, da, f):
    """cos(a + da) for |a| <= 0.855 (glibc's do_cos)."""
    k, x = _table_index(np.abs(a))
    x = x + np.where(a < 0, -da, da)
    xx = x * x
    s = f(x * xx, f(xx, _SN5, _SN3), x)
    c = xx * f(f(xx, _CS6, _CS4), xx, 0.5)
    cs = _CS[k]
    big = f(-s, _SN[k], f(-c, cs, f(-s, _SSN[k], _CCS[k])))
    # as in _table_sin with |sn| < 0.76: big moves by <= 2^-52 (1.14 |s| + |big|) + 2^-67
    return cs, big, 2.0 ** -51 * (1.5 * np.abs(s) + np.abs(big)) + 2.0 ** -66


def _certify(kernel, a, da) -> tuple[np.ndarray, np.ndarray]:
    """RN(head + tail) of ``kernel`` evaluated unfused, and where that is not provably glibc's.

    The fused tail lies within ``bound`` of the unfused one, so both sums round alike unless the
    unfused sum lies within ``bound`` of a rounding midpoint (of the nearer one: below a power of
    2 the spacing halves). The positions returned need the fused evaluation (``_exact``).
    """
    head, tail, bound = kernel(a, da, _plain)
    s, e = two_sum(head, tail)
    pow2 = (s.view(np.int64) & ((1 << 52) - 1)) == 0
    unsafe = ~(np.abs(e) + bound < np.spacing(np.abs(s)) * np.where(pow2, 0.25, 0.5))
    return s, np.flatnonzero(unsafe)


# -- range reduction ----------------------------------------------------------------------------

def _reduce(x):
    """x = n*pi/2 + (a + da) for 2.426 <= |x| < 105414350 (glibc's reduce_sincos, FMA variant)."""
    # n = RN(x * 2/pi), as the binary's fma(x, 2/pi, 0x1.8p52) rounds it: rounding the rounded
    # product p gives the same integer unless p is a half-integer, where p's error decides
    p = x * _HPINV
    xn = np.rint(p)
    tie = np.abs(p - xn) == 0.5
    if tie.any():
        xt, pt = x[tie], p[tie]
        xh, xl = split(xt)
        pe = ((xh * _HPINV_HI - pt) + xh * _HPINV_LO + xl * _HPINV_HI) + xl * _HPINV_LO
        xn[tie] = np.where(pe > 0, np.ceil(pt), np.where(pe < 0, np.floor(pt), xn[tie]))
    # |xn| <= 2^26, so xn * MP1, xn * MP2, xn * PP3 are exact, fused or not
    y = (x - xn * _MP1) - xn * _MP2
    t1 = xn * _PP3
    t2 = y - t1
    db = (y - t2) - t1
    # xn * PP4 = q + qe exactly (xn has at most 26 bits, PP4's halves 26 and 27)
    q = xn * _PP4
    qe = (xn * _PP4_HI - q) + xn * _PP4_LO
    b = _minus_product(t2, q, qe)
    return xn.astype(np.int64) & 3, b, db + _minus_product(t2 - b, q, qe)


def _minus_product(c, q, qe):
    """RN(c - (q + qe)), where q = RN(product) and qe its exact error: fma(-xn, PP4, c).

    With c - q = r + e exactly (two-sum): r - qe if e = 0 (one rounding); else r, unless
    r + e lies within |qe| of a rounding midpoint (rare), where the exact sum decides.
    """
    r, e = two_sum(c, -q)
    pow2 = (r.view(np.int64) & ((1 << 52) - 1)) == 0
    keep = np.abs(e) + np.abs(qe) < np.spacing(np.abs(r)) * np.where(pow2, 0.25, 0.5)
    exact = e == 0
    out = np.where(exact, r - qe, r)
    redo = ~(exact | keep)
    if redo.any():
        out[redo] = fma_parts(-q[redo], -qe[redo], c[redo])
    return out


def _branred_part(x1):
    """One of __branred's two halves: x1 * 2/pi as (integer part mod 4, hi, lo)."""
    e = (x1.view(np.int64) >> 52) & 0x7FF
    k = np.maximum((e - 450) // 24, 0)  # (C's truncating division: the same after the clamp)
    scale = ((1023 + 576 - 24 * k) << 52).view(_F64)  # 2^(576 - 24k)
    r = [(x1 * _TOVERP[k + i]) * (scale * 2.0 ** (-24 * i)) for i in range(6)]
    total = np.zeros_like(x1)
    for i in range(3):
        s = (r[i] + _BR_BIG) - _BR_BIG
        total = total + s
        r[i] = r[i] - s
    t = np.zeros_like(x1)
    for i in range(5, -1, -1):
        t = t + r[i]
    bb = r[0] - t
    for i in range(1, 6):
        bb = bb + r[i]
    s = (t + _BR_BIG) - _BR_BIG
    total = total + s
    t = t - s
    b = t + bb
    bb = (t - b) + bb
    total = total - ((total + _BR_BIG1) - _BR_BIG1)
    return total, b, bb


def _branred(x):
    """x = n*pi/2 + (a + da) for |x| >= 105414350 (glibc's __branred, plain double arithmetic)."""
    x = x * 2.0 ** -600
    t = x * _BR_SPLIT
    x1 = t - (t - x)
    x2 = x - x1
    sum1, b1, bb1 = _branred_part(x1)
    sum2, b2, bb2 = _branred_part(x2)
    total = sum1 + sum2
    b = b1 + b2
    bb = np.where(np.abs(b1) > np.abs(b2), (b1 - b) + b2, (b2 - b) + b1)
    up, down = b > 0.5, b < -0.5
    b = np.where(up, b - 1.0, np.where(down, b + 1.0, b))
    total = np.where(up, total + 1.0, np.where(down, total - 1.0, total))
    s = b + ((bb + bb1) + bb2)
    t = ((b - s) + bb) + (bb1 + bb2)
    bs = s * _BR_SPLIT
    t1 = bs - (bs - s)
    t2 = s - t1
    b = s * _HP0
    bb = (((t1 * _MP1 - b) + t1 * _BR_MP2) + t2 * _MP1) + ((t2 * _BR_MP2 + s * _HP1) + t * _HP0)
    s = b + bb
    return total.astype(np.int64) & 3, s, (b - s) + bb


# -- sin, cos, sincos ---------------------------------------------------------------------------

_BLOCK = 8192  # elements per block: temporaries stay in cache and below malloc's mmap threshold
_BOUNDS = {mode: np.array([_TINY_SIN if mode == "sin" else _TINY_COS, _DIRECT, _MID, _REDUCE,
                           np.inf]) for mode in ("sin", "cos", "sincos")}
_KERNELS = (_table_cos, _taylor_sin, _table_sin)


def _paths(a, da, m, pending: list) -> tuple[np.ndarray, np.ndarray | None]:
    """(-1)^(m>>1 & 1) * (do_cos(a, da) if m is odd else do_sin(a, da)), as glibc's do_sincos.

    Returns the values grouped by kernel and the grouping permutation (None: the identity).
    Values the unfused evaluation cannot vouch for are left for ``_exact``: appended to
    ``pending`` as (kernel number, a, da, negate, positions in the grouped order).
    """
    kind = np.where((m & 1) == 1, 0, np.where(np.abs(a) < _TINY_A, 1, 2)).astype(np.int8)
    counts = np.bincount(kind, minlength=3)
    order = None if counts.max() == kind.size else np.argsort(kind, kind="stable")
    if order is not None:
        a, da, m = a[order], da[order], m[order]
    neg = (m & 2) == 2
    out = np.empty_like(a)
    lo = 0
    for j, (kernel, count) in enumerate(zip(_KERNELS, counts)):
        if count:
            hi = lo + count
            out[lo:hi], redo = _certify(kernel, a[lo:hi], da[lo:hi])
            if kernel is _table_sin:
                out[lo:hi] = np.copysign(out[lo:hi], a[lo:hi])
            if redo.size:
                redo += lo
                pending.append((j, a[redo], da[redo], neg[redo], redo))
            lo = hi
    return np.where(neg, -out, out), order


def _exact(pending: list, outs: list) -> None:
    """The fused evaluation of the ``pending`` values (target, kernel, a, da, negate, positions),
    batched per kernel and written into ``outs``."""
    for j, kernel in enumerate(_KERNELS):
        items = [item for item in pending if item[1] == j]
        if not items:
            continue
        target = np.concatenate([np.full(item[2].size, item[0]) for item in items])
        a, da, neg, pos = (np.concatenate([item[i] for item in items]) for i in range(2, 6))
        for lo in range(0, a.size, _BLOCK):
            sl = slice(lo, lo + _BLOCK)
            head, tail, _ = kernel(a[sl], da[sl], _fma)
            v = head + tail
            if kernel is _table_sin:
                v = np.copysign(v, a[sl])
            v = np.where(neg[sl], -v, v)
            for t, out in enumerate(outs):
                mine = target[sl] == t
                out[pos[sl][mine]] = v[mine]


def _block(xb, mode: str, outs: list, start: int, pending: list) -> None:
    """glibc's results for the block ``xb`` (at ``start``), written into ``outs``; values still
    to be evaluated fused are appended to ``pending`` (see ``_exact``)."""
    cat = np.searchsorted(_BOUNDS[mode], np.abs(xb), side="right").astype(np.int8)  # nan last
    counts = np.bincount(cat, minlength=6)
    order = None if counts.max() == xb.size else np.argsort(cat, kind="stable")
    xs = xb if order is None else xb[order]
    edges = np.concatenate([[0], np.cumsum(counts)])
    targets = {"sin": [0], "cos": [1], "sincos": [0, 1]}[mode]
    w0, w1 = edges[1], edges[5]  # the elements worked: direct, mid, reduce, branred

    def place(sl, values, out):  # out[positions of xs[sl]] = values
        out[sl if order is None else order[sl]] = values

    for out, shift in zip(outs, targets):
        place(slice(0, w0), 1.0 if shift else xs[:w0], out)
        with np.errstate(invalid="ignore"):
            place(slice(w1, None), xs[w1:] - xs[w1:], out)  # inf, nan: nan (glibc: x / x)
    if w1 == w0:
        return
    a = np.empty(w1 - w0)
    da = np.zeros(w1 - w0)
    m = np.zeros(w1 - w0, np.int64)
    a[:edges[2] - w0] = xs[w0:edges[2]]
    m0, m1 = edges[2] - w0, edges[3] - w0
    if m1 > m0:
        xm = xs[edges[2]:edges[3]]
        y = _HP0 - np.abs(xm)
        if mode == "sin":
            a[m0:m1], da[m0:m1] = y, _HP1
        else:
            a[m0:m1] = am = y + _HP1
            da[m0:m1] = (y - am) + _HP1
        m[m0:m1] = np.where(xm < 0, 3, 1)  # sin = copysign(do_cos, x); cos = do_sin
    for j, reducer in ((3, _reduce), (4, _branred)):
        if counts[j]:
            lo, hi = edges[j] - w0, edges[j + 1] - w0
            m[lo:hi], a[lo:hi], da[lo:hi] = reducer(xs[edges[j]:edges[j + 1]])
    for t, (out, shift) in enumerate(zip(outs, targets)):
        mt = m + shift
        if shift:
            mt[m0:m1] = 0  # the mid path's cos is +do_sin(a, da) for either sign of x
        redo = []
        values, korder = _paths(a, da, mt, redo)
        work = np.arange(w0, w1) if korder is None else korder + w0
        place(slice(w0, w1) if korder is None else work, values, out)
        for j, ar, dar, negr, pos in redo:
            pos = work[pos]
            pending.append((t, j, ar, dar, negr, start + (pos if order is None else order[pos])))


def _evaluate(x, mode: str) -> list[np.ndarray]:
    x = np.asarray(x, _F64)
    flat = np.ascontiguousarray(x).reshape(-1)
    outs = [np.empty_like(flat) for _ in range(2 if mode == "sincos" else 1)]
    pending: list = []
    for i in range(0, flat.size, _BLOCK):
        _block(flat[i:i + _BLOCK], mode, [o[i:i + _BLOCK] for o in outs], i, pending)
    if pending:
        _exact(pending, outs)
    return [o.reshape(x.shape) for o in outs]


def sin(x: np.ndarray) -> np.ndarray:
    """glibc ``sin`` (x86-64 FMA variant) for float64 ``x`` of any shape, every value."""
    return _evaluate(x, "sin")[0]


def cos(x: np.ndarray) -> np.ndarray:
    """glibc ``cos`` (x86-64 FMA variant) for float64 ``x`` of any shape, every value."""
    return _evaluate(x, "cos")[0]


def sincos(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """glibc ``sincos`` (x86-64 FMA variant), which TF's float64 Box-Muller calls on Linux.

    Equal to ``(sin(x), cos(x))`` except for rare x in 0.855 <= |x| < 2.43 (such as
    0x1.ad1fb54442d18p+0), where glibc's sincos takes the sine from a renormalised pi/2 - |x|.
    """
    s, c = _evaluate(x, "sincos")
    return s, c
