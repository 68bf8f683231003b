"""Arithmetic, comparison, matrix products, reductions, bitwise and spectral kernels."""

from tfdeploy.kernels.math import (  # noqa: F401
    bitwise,
    compare,
    elementwise,
    matmul,
    reduce,
    spectral,
)
