"""MatMul with constant weights (every Dense layer): the checks on the weights done once."""

from __future__ import annotations

import numpy as np

from ..registry import specializer
from ._util import low_precision


@specializer("MatMul")
def _matmul_const_b(consts, *, transpose_a=False, transpose_b=False):
    a, b = consts
    if b is None or a is not None or b.ndim != 2 or low_precision(b.dtype):
        return None
    w = b.T if transpose_b else b
    k = w.shape[0]
    matmul = np.matmul

    def MatMul(a):
        if transpose_a:
            a = a.T
        if a.ndim != 2 or a.shape[1] != k:
            raise ValueError(f"MatMul: cannot multiply shape {a.shape} by weights of shape "
                             f"{w.shape}")
        return matmul(a, w)

    MatMul.weight = w  # [K, N], for plan-time fusion (optimize.py)
    return MatMul
