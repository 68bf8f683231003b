"""Specialized kernels for nodes whose index arguments are load-time constants.

The generic kernels re-derive an index from their begin/end/shape inputs on every call; when
those inputs are constants (nearly always, in real graphs), the plan asks for a specialized
kernel instead, which derives it once per input shape.
"""

from __future__ import annotations

import numpy as np

from ..registry import specializer
from ._util import normalize_axis
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


@specializer("Split")
def _split(consts, *, num_split):
    axis, value = consts
    if axis is None or value is not None:
        return None
    axis = int(np.asarray(axis))
    cache: dict[tuple, tuple] = {}

    def Split(value):
        idx = cache.get(value.shape)
        if idx is None:
            (a,) = normalize_axis(axis, value.ndim)
            n = value.shape[a]
            if n % num_split:
                raise ValueError(f"Split: dim {a} of size {n} is not divisible into "
                                 f"{num_split} pieces")
            k = n // num_split
            pre = (slice(None),) * a
            idx = tuple(pre + (slice(i * k, (i + 1) * k),) for i in range(num_split))
            if len(cache) < _MAX_SHAPES:
                cache[value.shape] = idx
        return tuple([value[i] for i in idx])

    return Split
