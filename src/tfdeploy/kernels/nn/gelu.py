"""GELU's erfc form on float32, ``0.5 y erfc(-y / sqrt 2)``, within one ulp of the exact value.

``gelu_erfc_(y)`` is ``y Phi(y)``, Phi the normal distribution function
``0.5 erfc(-y / sqrt 2)``, computed in float32 from a table of quadratics
(``numerics/quadratic.py``): Phi on [-15, 6) in intervals of 1/1024 (relative error below
1.1e-8 down to -13, 2e-8 at -15), rounded once, then ``y P`` (a second rounding) times 2**-8.

The table holds Phi times 2**8 so that P stays a normal float32 number down to -15 (Phi(-13)
is 6e-39, below float32's smallest normal): results that are subnormal (y below -13.1) round
once, from an accurate product, by the scaling. The product overflows only for y from 2**120
(P is 2**8 there, where GELU is y itself): an array holding such a value, an infinity or a NaN
(one reduction sees them) takes the smaller of the result and ``|y|``, which is y there and
leaves every other value as it is. From 6 up P is exactly 2**8 (y Phi(-y) < 1e-9 y: under half
an ulp), and below -15 it is 0 (GELU rounds to -0 there: -9e-47 at -14.5): every value takes the
same numpy passes, inf, -inf (NaN, as the unfused ops' -inf * 0) and NaN included, so a value's
result depends on it alone.

Two roundings instead of one: about a fifth of normally distributed values (3% of all float32
inputs) come out one ulp from the correctly rounded value (TF's own GELU is up to 3 ulps away
for |y| < 1 and hundreds in the left tail), none further: checked on all 2**32 float32 inputs
against scipy's float64 ``ndtr`` (``tests/test_fusion_transformer.py`` pins samples and the
edges).

Cost, one thread, against the float64 table of cubics it replaces (``numerics/cubic.py``, one
rounding, 16 passes over float64 buffers; ``erf_gamma.Erfc`` still reads it), old and new
alternately in one process: 2048 values (a transformer block's feed-forward layer at batch 1)
13.9 -> 11.6 us, 16 K 66 -> 47, 66 K 253 -> 177: float32 passes, and four coefficients
gathered in one 16-byte row instead of 32.
"""

from __future__ import annotations

import math

import numpy as np

from tfdeploy.numerics import quiet
from tfdeploy.numerics.quadratic import QuadraticTable, apply, each

_SCALE_EXP = 8
_UNSCALE = np.array(2.0 ** -_SCALE_EXP, np.float32)
#: from here up y P may overflow (P = 2**8 there)
_OVERFLOW = np.float32(2.0 ** (128 - _SCALE_EXP - 1))
_MAGNITUDE = np.uint32(0x7FFFFFFF)
#: 2**8 Phi: 0 below -15, 1 from 6 up (its 64 K values, ~16 ms by a Python function of each
#: point, ~5 by ``math.erfc`` mapped over them: the same bits)
PHI_SCALED = QuadraticTable(lambda p: 0.5 * each(math.erfc, -p / math.sqrt(2)), -15, 6, 1024,
                            0.0, 1.0, 2.0 ** _SCALE_EXP)


def _finish(p: np.ndarray, y: np.ndarray, out: np.ndarray, s: np.ndarray) -> None:
    p *= y
    np.multiply(p, _UNSCALE, out=out)


def _finish_unbounded(p: np.ndarray, y: np.ndarray, out: np.ndarray, s: np.ndarray) -> None:
    """``_finish`` where y P may have overflowed (there GELU is y): the smaller of the result
    and |y| (-0 stays -0)."""
    p *= y
    p *= _UNSCALE
    np.bitwise_and(y.view(np.uint32), _MAGNITUDE, out=s.view(np.uint32))
    np.minimum(s, p, out=out)


def gelu_erfc_(y: np.ndarray) -> np.ndarray:
    """GELU's erfc form of a C-contiguous float32 array, in place (see the module docstring).
    +inf gives inf, -inf NaN (-inf * erfc(inf) = -inf * 0), as the unfused ops do."""
    if not y.size:
        return y
    # (-inf gives NaN through -inf * 0, huge negative values overflow s = 1024 y before the
    # clip: values the reduction does not see, so every call silences the exceptions)
    with quiet():
        if np.maximum.reduce(y, axis=None) < _OVERFLOW:  # (False with a NaN)
            return apply(y, y, PHI_SCALED, _finish)
        return apply(y, y, PHI_SCALED, _finish_unbounded)
