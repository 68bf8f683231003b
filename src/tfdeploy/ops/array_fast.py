"""Specialized kernels for nodes whose index arguments are load-time constants.

The generic kernels re-derive an index from their begin/end/shape inputs on every call; when
those inputs are constants (nearly always, in real graphs), the plan asks for a specialized
kernel instead, which derives it once per input shape.
"""

from __future__ import annotations

import numpy as np

from ..registry import specializer
from .array import _strided_index

_MAX_SHAPES = 64  # cached input shapes per node; a loop over growing shapes stays bounded


@specializer("StridedSlice")
def _strided_slice(consts, *, begin_mask=0, end_mask=0, ellipsis_mask=0, new_axis_mask=0,
                   shrink_axis_mask=0):
    x, begin, end, strides = consts
    if begin is None or end is None or strides is None or x is not None:
        return None
    begin, end, strides = (np.array(v) for v in (begin, end, strides))
    masks = (begin_mask, end_mask, ellipsis_mask, new_axis_mask, shrink_axis_mask)
    cache: dict[tuple, tuple] = {}

    def StridedSlice(input):
        idx = cache.get(input.shape)
        if idx is None:
            idx = _strided_index(input.shape, begin, end, strides, *masks)
            if len(cache) < _MAX_SHAPES:
                cache[input.shape] = idx
        out = input[idx]
        return out if out.__class__ is np.ndarray else np.asarray(out)

    return StridedSlice
