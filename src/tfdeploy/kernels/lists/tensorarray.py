"""TensorArrayV3 kernels (TF1 tensor arrays: dynamic_rnn, map_fn, scan in legacy graphs).

TF keeps a tensor array as mutable state behind a resource handle and threads a dummy float
"flow" tensor through every op to order reads after writes. Here the flow *is* the array: a
:class:`~tfdeploy.runtime.tensorlist.TensorList` value, so writes return a new flow (O(1), see
lists.py) and reads look at the flow they are given. The handle only carries the array's fixed
properties. Every TF1 graph threads the flow this way (the TensorArray Python class does), so
the results are TF's, with value semantics besides.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.kernels.common import np_dtype, op
from tfdeploy.kernels.lists.tensorlist import (
    TensorList,
    fmt_shape,
    merge_shapes,
    stack_elements,
    zeros_element,
)
from tfdeploy.runtime.limits import check_elements


class TensorArrayHandle:
    """What a TensorArrayV3 handle stands for: the array's fixed properties."""

    __slots__ = ("dtype", "shape", "dynamic_size", "identical")

    def __init__(self, dtype, shape, dynamic_size: bool, identical: bool):
        self.dtype = dtype
        self.shape = shape
        self.dynamic_size = dynamic_size
        self.identical = identical

    def __repr__(self) -> str:
        return (f"<TensorArray handle of {self.dtype} elements, element shape "
                f"{fmt_shape(self.shape)}>")


def _ta(handle, flow, what: str) -> tuple[TensorArrayHandle, TensorList]:
    if not isinstance(handle, TensorArrayHandle):
        raise TypeError(f"{what} expects a TensorArray handle, got {type(handle).__name__}")
    if not isinstance(flow, TensorList):
        raise TypeError(f"{what} expects the flow of a TensorArray, got {type(flow).__name__} "
                        "(the graph does not thread the TensorArray's flow through)")
    return handle, flow


def _element(h: TensorArrayHandle, flow: TensorList, i: int, what: str) -> np.ndarray:
    if not 0 <= i < len(flow):
        raise IndexError(f"{what}: index {i} is out of range for a TensorArray of size "
                         f"{len(flow)}")
    t = flow.get(i)
    if t is None:
        shape = flow.shape
        if shape is None or any(d is None for d in shape):
            raise ValueError(f"{what}: element {i} has not been written and the element "
                             f"shape {fmt_shape(shape)} is not fully defined")
        return zeros_element(shape, h.dtype, what)
    return t


def _grow(h: TensorArrayHandle, flow: TensorList, n: int, what: str) -> TensorList:
    if n <= len(flow):
        return flow
    if not h.dynamic_size:
        raise IndexError(f"{what}: index {n - 1} is out of range for a TensorArray of size "
                         f"{len(flow)} (dynamic_size is False)")
    return flow.resize(n)


def _written(h: TensorArrayHandle, flow: TensorList, value, what: str) -> np.ndarray:
    value = np.asarray(value)
    if value.dtype != h.dtype:
        raise TypeError(f"{what}: the TensorArray holds {h.dtype}, got {value.dtype}")
    if h.identical and flow.shape is not None:
        merge_shapes(flow.shape, value.shape)
    return value


def _learn_shape(flow: TensorList, shape) -> TensorList:
    # identical_element_shapes arrays learn their element shape from the first write
    if flow.shape is None or any(d is None for d in flow.shape):
        flow.shape = merge_shapes(flow.shape, shape) if flow.shape is not None else tuple(shape)
    return flow


@op("TensorArrayV3")
def TensorArrayV3(size, *, dtype, element_shape=None, dynamic_size=False,
                  identical_element_shapes=False):
    """TensorArrayV3: a handle and the flow of a new array of ``size`` unset elements."""
    n = int(size)
    if n < 0:
        raise ValueError(f"TensorArrayV3: size must be >= 0, got {n}")
    check_elements((n,), 8, "the array's elements")  # (a reference each)
    dt = np_dtype(dtype)
    shape = None if element_shape is None else tuple(element_shape)
    h = TensorArrayHandle(dt, shape, bool(dynamic_size), bool(identical_element_shapes))
    return h, TensorList.of([None] * n, dt, shape)


@op("TensorArrayReadV3")
def TensorArrayReadV3(handle, index, flow_in, *, dtype=None):
    """TensorArrayReadV3: element ``index``."""
    h, flow = _ta(handle, flow_in, "TensorArrayReadV3")
    return _element(h, flow, int(index), "TensorArrayReadV3")


@op("TensorArrayWriteV3")
def TensorArrayWriteV3(handle, index, value, flow_in):
    """TensorArrayWriteV3: the flow of the array with element ``index`` set to ``value``."""
    h, flow = _ta(handle, flow_in, "TensorArrayWriteV3")
    i = int(index)
    if i < 0:
        raise IndexError(f"TensorArrayWriteV3: negative index {i}")
    value = _written(h, flow, value, "TensorArrayWriteV3")
    out = _grow(h, flow, i + 1, "TensorArrayWriteV3").set(i, value)
    if h.identical:
        _learn_shape(out, value.shape)
    return out


@op("TensorArrayGatherV3")
def TensorArrayGatherV3(handle, indices, flow_in, *, dtype=None, element_shape=None):
    """TensorArrayGatherV3: the elements at ``indices`` stacked along a new axis 0."""
    h, flow = _ta(handle, flow_in, "TensorArrayGatherV3")
    idx = np.asarray(indices).reshape(-1).tolist()
    items = [flow.get(i) if 0 <= i < len(flow) else _element(h, flow, i, "TensorArrayGatherV3")
             for i in idx]
    shape = flow.shape
    if element_shape is not None:
        shape = merge_shapes(shape, tuple(element_shape))
    for t in items:
        if t is not None:
            shape = merge_shapes(shape, t.shape)
    if any(t is None for t in items):
        z = zeros_element(shape, h.dtype, "TensorArrayGatherV3")
        items = [z if t is None else t for t in items]
    return stack_elements(items, shape, h.dtype, "TensorArrayGatherV3")


@op("TensorArrayScatterV3")
def TensorArrayScatterV3(handle, indices, value, flow_in):
    """TensorArrayScatterV3: the flow of the array with ``value[j]`` at ``indices[j]``."""
    h, flow = _ta(handle, flow_in, "TensorArrayScatterV3")
    idx = np.asarray(indices).reshape(-1).tolist()
    value = np.asarray(value)
    if value.ndim < 1 or len(idx) != value.shape[0]:
        raise ValueError(f"TensorArrayScatterV3: {len(idx)} indices for a value of shape "
                         f"{value.shape}")
    if value.dtype != h.dtype:
        raise TypeError(f"TensorArrayScatterV3: the TensorArray holds {h.dtype}, got "
                        f"{value.dtype}")
    if any(i < 0 for i in idx):
        raise IndexError(f"TensorArrayScatterV3: negative index in {idx}")
    flow = _grow(h, flow, max(idx, default=-1) + 1, "TensorArrayScatterV3")
    out = flow.set_many(idx, [value[j, ...] for j in range(len(idx))])
    if h.identical or out.shape is None:
        _learn_shape(out, value.shape[1:])
    return out


@op("TensorArrayConcatV3")
def TensorArrayConcatV3(handle, flow_in, *, dtype=None, element_shape_except0=None):
    """TensorArrayConcatV3: the elements concatenated along axis 0, and their lengths (int64)."""
    h, flow = _ta(handle, flow_in, "TensorArrayConcatV3")
    items = flow.items()
    if any(t is None for t in items):
        raise ValueError("TensorArrayConcatV3: the array has unwritten elements")
    if not items:
        rest = element_shape_except0
        if rest is None or any(d is None for d in rest):
            raise ValueError("TensorArrayConcatV3: cannot concat an empty array whose element "
                             "shape is not fully defined")
        return np.zeros((0, *rest), h.dtype), np.zeros((0,), np.int64)
    for t in items:
        if t.ndim < 1:
            raise ValueError("TensorArrayConcatV3 requires elements of rank >= 1")
    return (np.concatenate(items).astype(h.dtype, copy=False),
            np.array([t.shape[0] for t in items], dtype=np.int64))


@op("TensorArraySplitV3")
def TensorArraySplitV3(handle, value, lengths, flow_in):
    """TensorArraySplitV3: the flow of the array holding ``value``'s row blocks of
    ``lengths``."""
    h, flow = _ta(handle, flow_in, "TensorArraySplitV3")
    value = np.asarray(value)
    lens = np.asarray(lengths).reshape(-1).astype(np.int64)
    if value.ndim < 1 or (lens < 0).any() or lens.sum() != value.shape[0]:
        raise ValueError(f"TensorArraySplitV3: lengths {lens.tolist()} do not split a value "
                         f"of shape {value.shape}")
    if value.dtype != h.dtype:
        raise TypeError(f"TensorArraySplitV3: the TensorArray holds {h.dtype}, got "
                        f"{value.dtype}")
    ends = np.cumsum(lens).tolist()
    starts = [0] + ends[:-1]
    flow = _grow(h, flow, len(ends), "TensorArraySplitV3")
    return flow.set_many(range(len(ends)), [value[s:e] for s, e in zip(starts, ends)])


@op("TensorArraySizeV3")
def TensorArraySizeV3(handle, flow_in):
    """TensorArraySizeV3: the number of elements, as int32."""
    _, flow = _ta(handle, flow_in, "TensorArraySizeV3")
    return np.array(len(flow), dtype=np.int32)


@op("TensorArrayCloseV3")
def TensorArrayCloseV3(handle):
    """TensorArrayCloseV3: nothing (the array is freed when no value refers to it)."""
    return ()
