"""TensorList kernels: the ops on TF2 lists of tensors (values: ``runtime/tensorlist.py``)."""

from __future__ import annotations

import functools

import numpy as np

from tfdeploy.kernels.common import np_dtype, op
from tfdeploy.runtime.limits import check_array, check_elements
from tfdeploy.runtime.tensorlist import TensorList


def _shape_of(element_shape) -> tuple | None:
    """A TF element_shape tensor (-1 scalar: unknown rank; -1 entries: unknown dims)."""
    s = np.asarray(element_shape)
    if s.ndim == 0:
        if int(s) != -1:
            raise ValueError(f"element_shape must be a vector or -1, got {int(s)}")
        return None
    return tuple(None if d < 0 else int(d) for d in s.reshape(-1).tolist())


def merge_shapes(a, b, what="element shape"):
    """The most specific shape compatible with both (None = unknown rank or dim)."""
    if a is None:
        return b
    if b is None:
        return a
    if len(a) != len(b):
        raise ValueError(f"incompatible {what}s {fmt_shape(a)} and {fmt_shape(b)}")
    out = []
    for x, y in zip(a, b):
        if x is not None and y is not None and x != y:
            raise ValueError(f"incompatible {what}s {fmt_shape(a)} and {fmt_shape(b)}")
        out.append(x if x is not None else y)
    return tuple(out)


def fmt_shape(s) -> str:
    return "<unknown>" if s is None else "[" + ",".join("?" if d is None else str(d)
                                                         for d in s) + "]"


def _list(x, op_name: str) -> TensorList:
    if isinstance(x, TensorList):
        return x
    if isinstance(x, np.ndarray) and x.dtype == object and x.size == 1 and \
            isinstance(x.reshape(-1)[0], TensorList):
        return x.reshape(-1)[0]
    raise TypeError(f"{op_name} expects a TensorList, got {type(x).__name__}")


def _check_dtype(lst: TensorList, element_dtype, op_name: str) -> np.dtype:
    dt = np_dtype(element_dtype)
    if lst.dtype != dt:
        raise TypeError(f"{op_name}: the list holds {lst.dtype} elements, the op expects {dt}")
    return dt


def _index(i, n: int, op_name: str) -> int:
    i = int(i)
    if not 0 <= i < n:
        raise IndexError(f"{op_name}: index {i} is out of range for a list of {n} elements")
    return i


def _check_length(n: int, what: str) -> None:
    """A list of ``n`` elements (an index or size from an input) within the tensor limit."""
    check_elements((n,), 8, f"{what}: the list's elements")  # (a reference each)


def zeros_element(shape, dtype, what: str) -> np.ndarray:
    if shape is None or any(d is None for d in shape):
        raise ValueError(f"{what}: the element is unset and the element shape "
                         f"{fmt_shape(shape)} is not fully defined")
    check_array(shape, dtype, f"{what}: the unset element")  # (a hostile element_shape)
    if np.dtype(dtype).kind == "O":
        return np.full(shape, b"", dtype=object)
    return np.zeros(shape, dtype=dtype)


def _known_shape(lst: TensorList, element_shape, items) -> tuple | None:
    """The list's element shape merged with an op's element_shape input and set elements."""
    shape = merge_shapes(lst.shape, _shape_of(element_shape) if element_shape is not None else None)
    if shape is None or any(d is None for d in shape):
        seen = set()  # (each distinct shape merged once: a Keras RNN's list holds one)
        for t in items:
            if t is not None and t.shape not in seen:
                seen.add(t.shape)
                shape = merge_shapes(shape, t.shape)
    return shape


def _fill(items: list, lst: TensorList, element_shape, what: str) -> list:
    """``items`` with unset elements replaced by zeros of the element shape."""
    if any(t is None for t in items):
        z = zeros_element(_known_shape(lst, element_shape, items), lst.dtype, what)
        items = [z if t is None else t for t in items]
    return items


def stack_elements(items: list, shape, dtype, what: str) -> np.ndarray:
    if not items:
        if shape is None or any(d is None for d in shape):
            raise ValueError(f"{what}: cannot stack an empty list whose element shape "
                             f"{fmt_shape(shape)} is not fully defined")
        check_array((0, *shape), dtype, f"{what}: the stacked elements")
        return np.zeros((0, *shape), dtype=dtype)
    first = items[0]
    if first.__class__ is np.ndarray:  # (unset elements share one zero element: n copies)
        check_array((len(items), *first.shape), dtype, f"{what}: the stacked elements")
    if first.__class__ is np.ndarray and first.ndim:
        try:  # (a set of the shapes: 3x faster than comparing each with the first's)
            same = len({t.shape for t in items}) == 1
        except AttributeError:
            same = False
        if same:
            # (one concatenation: np.stack adds an axis to every element first, 1.5x slower)
            return np.concatenate(items).reshape((len(items), *first.shape)).astype(
                dtype, copy=False)
    try:
        return np.stack(items).astype(dtype, copy=False)
    except ValueError:
        shapes = sorted({t.shape for t in items})
        raise ValueError(f"{what}: list elements have different shapes {shapes}") from None


@functools.lru_cache(maxsize=256)
def _fits(shape: tuple, element_shape: tuple) -> bool:
    """Whether a tensor of ``shape`` fits a list's element shape (None = any dim)."""
    return len(shape) == len(element_shape) and all(
        d is None or d == s for s, d in zip(shape, element_shape))


def _check_element(lst: TensorList, t, what: str):
    t = np.asarray(t)
    if t.dtype != lst.dtype:
        raise TypeError(f"{what}: the list holds {lst.dtype} elements, got {t.dtype}")
    if lst.shape is not None:
        merge_shapes(lst.shape, t.shape)
    return t


# ---------------------------------------------------------------------------- creation

@op("EmptyTensorList")
def EmptyTensorList(element_shape, max_num_elements, *, element_dtype):
    """EmptyTensorList: a list of no elements."""
    return TensorList.of([], np_dtype(element_dtype), _shape_of(element_shape),
                         int(max_num_elements))


@op("TensorListReserve")
def TensorListReserve(element_shape, num_elements, *, element_dtype):
    """TensorListReserve: a list of ``num_elements`` unset elements."""
    n = int(num_elements)
    if n < 0:
        raise ValueError(f"TensorListReserve: num_elements must be >= 0, got {n}")
    check_elements((n,), 8, "the list's elements")  # (a reference each)
    return TensorList.of([None] * n, np_dtype(element_dtype), _shape_of(element_shape))


@op("TensorListFromTensor")
def TensorListFromTensor(tensor, element_shape, *, element_dtype=None):
    """TensorListFromTensor: the list of ``tensor``'s slices along axis 0."""
    if tensor.ndim < 1:
        raise ValueError("TensorListFromTensor: the tensor must be at least a vector")
    shape = _shape_of(element_shape)
    merge_shapes(shape, tensor.shape[1:])  # only checked: the list keeps the shape it was given
    # (a reference per row: 2**31 empty rows, [2**31 - 1, 0], were 16 GB of views)
    check_elements(tensor.shape[:1], 8, "the list's elements")
    # iterating a tensor of rank >= 2 gives the views tensor[i] (as fast as it gets: in C)
    if tensor.ndim > 1:
        return TensorList.of(list(tensor), tensor.dtype, shape, whole=tensor)
    return TensorList.of([tensor[i, ...] for i in range(len(tensor))], tensor.dtype, shape)


@op("TensorListSplit")
def TensorListSplit(tensor, element_shape, lengths, *, element_dtype=None):
    """TensorListSplit: the list of ``tensor``'s consecutive row blocks of ``lengths``."""
    if tensor.ndim < 1:
        raise ValueError("TensorListSplit: the tensor must be at least a vector")
    shape = _shape_of(element_shape)
    if shape is not None:
        if not shape:
            raise ValueError("TensorListSplit: element_shape must have rank >= 1")
        merge_shapes(shape[1:], tensor.shape[1:])
    lens = np.asarray(lengths).reshape(-1).astype(np.int64)
    if (lens < 0).any() or lens.sum() != tensor.shape[0]:
        raise ValueError(f"TensorListSplit: lengths {lens.tolist()} do not split a tensor of "
                         f"{tensor.shape[0]} rows")
    ends = np.cumsum(lens).tolist()
    starts = [0] + ends[:-1]
    return TensorList.of([tensor[s:e] for s, e in zip(starts, ends)], tensor.dtype, shape)


@op("TensorListScatter", "TensorListScatterV2")
def TensorListScatter(tensor, indices, element_shape, num_elements=None, *,
                      element_dtype=None):
    """TensorListScatter(V2): a new list with ``tensor[j]`` at ``indices[j]`` (others unset);
    its length is ``num_elements``, or max(indices) + 1 when that is -1 or not given."""
    idx = np.asarray(indices).reshape(-1).tolist()
    if len(idx) != tensor.shape[0]:
        raise ValueError(f"TensorListScatter: {len(idx)} indices for {tensor.shape[0]} rows")
    n = -1 if num_elements is None else int(num_elements)
    if n == -1:
        n = max(idx, default=-1) + 1
    if any(not 0 <= i < n for i in idx):
        raise IndexError(f"TensorListScatter: indices {idx} out of range for {n} elements")
    _check_length(n, "TensorListScatter")
    items = [None] * n
    for j, i in enumerate(idx):
        items[i] = tensor[j, ...]
    shape = _shape_of(element_shape)
    merge_shapes(shape, tensor.shape[1:])
    return TensorList.of(items, tensor.dtype, shape)


# ---------------------------------------------------------------------------- reading

@op("TensorListLength")
def TensorListLength(input_handle):
    """TensorListLength: the number of elements, as int32."""
    return np.array(len(_list(input_handle, "TensorListLength")), dtype=np.int32)


@op("TensorListElementShape")
def TensorListElementShape(input_handle, *, shape_type="int32"):
    """TensorListElementShape: the list's element shape (-1 for unknown dims; -1 scalar for an
    unknown rank)."""
    shape = _list(input_handle, "TensorListElementShape").shape
    dt = np_dtype(shape_type)
    if shape is None:
        return np.array(-1, dtype=dt)
    return np.array([-1 if d is None else d for d in shape], dtype=dt)


@op("TensorListGetItem")
def TensorListGetItem(input_handle, index, element_shape, *, element_dtype):
    """TensorListGetItem: element ``index`` (zeros of the element shape if unset)."""
    lst = input_handle if input_handle.__class__ is TensorList else \
        _list(input_handle, "TensorListGetItem")
    i = int(index)
    if not 0 <= i < lst._n:
        i = _index(i, lst._n, "TensorListGetItem")  # raises
    t = lst._store.items[i] if lst._diff is None else lst.get(i)
    if t is None:
        return zeros_element(_known_shape(lst, element_shape, lst.items()), lst.dtype,
                      "TensorListGetItem")
    return t


@op("TensorListStack")
def TensorListStack(input_handle, element_shape, *, element_dtype, num_elements=-1):
    """TensorListStack: the elements stacked along a new axis 0."""
    lst = _list(input_handle, "TensorListStack")
    dt = _check_dtype(lst, element_dtype, "TensorListStack")
    if num_elements != -1 and len(lst) != num_elements:
        raise ValueError(f"TensorListStack: expected a list of {num_elements} elements, got "
                         f"{len(lst)}")
    items = lst.items()
    shape = _known_shape(lst, element_shape, items)
    return stack_elements(_fill(items, lst, element_shape, "TensorListStack"), shape, dt,
                  "TensorListStack")


@op("TensorListGather")
def TensorListGather(input_handle, indices, element_shape, *, element_dtype):
    """TensorListGather: the elements at ``indices`` stacked along a new axis 0."""
    lst = _list(input_handle, "TensorListGather")
    dt = _check_dtype(lst, element_dtype, "TensorListGather")
    idx = np.asarray(indices)
    n = len(lst)
    picked = [lst.get(_index(i, n, "TensorListGather")) for i in idx.reshape(-1).tolist()]
    shape = _known_shape(lst, element_shape, picked)
    out = stack_elements(_fill(picked, lst, element_shape, "TensorListGather"), shape, dt,
                 "TensorListGather")
    return out.reshape(idx.shape + out.shape[1:])


def _concat(lst: TensorList, dt, element_shape, leading_dims, what: str):
    items = lst.items()
    rest = None
    first = None
    if element_shape is not None:
        es = _shape_of(element_shape)
        if es is not None:
            if not es:
                raise ValueError(f"{what} requires elements of rank >= 1")
            first, rest = es[0], es[1:]
    if lst.shape is not None and lst.shape:
        rest = merge_shapes(rest, lst.shape[1:])
    dims = [t.shape[0] for t in items if t is not None]
    for t in items:
        if t is not None:
            if t.ndim < 1:
                raise ValueError(f"{what} requires elements of rank >= 1")
            rest = merge_shapes(rest, t.shape[1:])
    if first is None and dims and all(d == dims[0] for d in dims):
        first = dims[0]
    lead = np.asarray(leading_dims).reshape(-1).tolist() if leading_dims is not None else []
    lengths = []
    for i, t in enumerate(items):
        d = t.shape[0] if t is not None else first if first is not None and i >= len(lead) \
            else lead[i] if i < len(lead) else None
        if d is None:
            raise ValueError(f"{what}: element {i} is unset and its leading dim unknown")
        lengths.append(d)
    if not items:
        if rest is None or any(d is None for d in rest):
            raise ValueError(f"{what}: cannot concat an empty list whose element shape is not "
                             "fully defined")
        check_array((0, *rest), dt, f"{what}: the concatenation")
        return np.zeros((0, *rest), dt), np.zeros((0,), np.int64)
    unset = [d for t, d in zip(items, lengths) if t is None]
    if unset:  # (zeros of leading dims from an input: the whole checked first, one per dim)
        if rest is None or None in rest:
            zeros_element((unset[0], *(rest or ())), dt, what)  # (raises)
        check_array((sum(lengths), *rest), dt, f"{what}: the concatenation")
        zeros = {d: zeros_element((d, *rest), dt, what) for d in unset}
        items = [zeros[d] if t is None else t for t, d in zip(items, lengths)]
    return np.concatenate(items).astype(dt, copy=False), np.array(lengths, dtype=np.int64)


@op("TensorListConcatV2")
def TensorListConcatV2(input_handle, element_shape, leading_dims, *, element_dtype):
    """TensorListConcatV2: the elements concatenated along axis 0, and their lengths."""
    lst = _list(input_handle, "TensorListConcatV2")
    dt = _check_dtype(lst, element_dtype, "TensorListConcatV2")
    return _concat(lst, dt, element_shape, leading_dims, "TensorListConcatV2")


@op("TensorListConcat")
def TensorListConcat(input_handle, *, element_dtype, element_shape=None):
    """TensorListConcat: the elements concatenated along axis 0, and their lengths."""
    lst = _list(input_handle, "TensorListConcat")
    dt = _check_dtype(lst, element_dtype, "TensorListConcat")
    es = None if element_shape is None else np.array(
        [-1 if d is None else d for d in element_shape], np.int64)
    return _concat(lst, dt, es, None, "TensorListConcat")


# ---------------------------------------------------------------------------- updating

@op("TensorListSetItem")
def TensorListSetItem(input_handle, index, item, *, resize_if_index_out_of_bounds=False):
    """TensorListSetItem: the list with element ``index`` replaced by ``item``.

    The element_dtype attribute is the list's own, which the item is checked against; not
    taking it keeps the bound kernel a plain function (no partial: this op runs every step
    of every Keras RNN)."""
    lst = input_handle if input_handle.__class__ is TensorList else \
        _list(input_handle, "TensorListSetItem")
    i = int(index)
    if i >= lst._n and resize_if_index_out_of_bounds:
        _check_length(i + 1, "TensorListSetItem")
        lst = lst.resize(i + 1)
    if not 0 <= i < lst._n:
        i = _index(i, lst._n, "TensorListSetItem")  # raises
    if item.__class__ is not np.ndarray or item.dtype != lst.dtype or \
            (lst.shape is not None and not _fits(item.shape, lst.shape)):
        item = _check_element(lst, item, "TensorListSetItem")
    return lst.set(i, item)


@op("TensorListPushBack")
def TensorListPushBack(input_handle, tensor, *, element_dtype=None):
    """TensorListPushBack: the list with ``tensor`` appended."""
    lst = _list(input_handle, "TensorListPushBack")
    if lst.max_size != -1 and len(lst) >= lst.max_size:
        raise ValueError(f"TensorListPushBack: the list is full ({lst.max_size} elements)")
    return lst.push(_check_element(lst, tensor, "TensorListPushBack"))


@op("TensorListPopBack")
def TensorListPopBack(input_handle, element_shape, *, element_dtype):
    """TensorListPopBack: the list without its last element, and that element."""
    lst = _list(input_handle, "TensorListPopBack")
    _check_dtype(lst, element_dtype, "TensorListPopBack")
    if not len(lst):
        raise ValueError("TensorListPopBack: the list is empty")
    t = lst.get(len(lst) - 1)
    if t is None:
        t = zeros_element(merge_shapes(lst.shape, _shape_of(element_shape)), lst.dtype,
                          "TensorListPopBack")
    return lst.pop(), t


@op("TensorListResize")
def TensorListResize(input_handle, size):
    """TensorListResize: the list truncated or padded with unset elements to ``size``."""
    n = int(size)
    if n < 0:
        raise ValueError(f"TensorListResize: size must be >= 0, got {n}")
    _check_length(n, "TensorListResize")
    return _list(input_handle, "TensorListResize").resize(n)


@op("TensorListScatterIntoExistingList")
def TensorListScatterIntoExistingList(input_handle, tensor, indices, *, element_dtype=None):
    """TensorListScatterIntoExistingList: the list with ``tensor[j]`` at ``indices[j]``."""
    lst = _list(input_handle, "TensorListScatterIntoExistingList")
    idx = np.asarray(indices).reshape(-1).tolist()
    if len(idx) != tensor.shape[0]:
        raise ValueError(f"TensorListScatterIntoExistingList: {len(idx)} indices for "
                         f"{tensor.shape[0]} rows")
    if tensor.dtype != lst.dtype:
        raise TypeError(f"TensorListScatterIntoExistingList: the list holds {lst.dtype} "
                        f"elements, got {tensor.dtype}")
    hi = max(idx, default=-1)
    if hi >= len(lst):
        _check_length(hi + 1, "TensorListScatterIntoExistingList")
        lst = lst.resize(hi + 1)
    if any(i < 0 for i in idx):
        raise IndexError(f"TensorListScatterIntoExistingList: negative index in {idx}")
    return lst.set_many(idx, [tensor[j, ...] for j in range(len(idx))])
