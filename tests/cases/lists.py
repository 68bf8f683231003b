"""TensorList and TensorArrayV3 ops, driven through raw ops on fed data."""

from __future__ import annotations

import numpy as np

from . import Case, adder, i32, rand
from . import raw as _raw
from . import tf as _tf

CASES: list[Case] = []
add = adder(CASES, "lists")


DTYPES = ["float32", "float64", "float16", "int32", "int64", "uint8", "bool", "complex64"]

# --- TensorList: creation and reading ----------------------------------------------------------


def _from_stack(x):
    r = _raw()
    lst = r.TensorListFromTensor(tensor=x, element_shape=_tf().shape(x)[1:])
    return r.TensorListStack(input_handle=lst, element_shape=-1, element_dtype=x.dtype)


for dt in DTYPES:
    add(f"from_tensor_stack_{dt}", ["TensorListFromTensor", "TensorListStack"], _from_stack,
        lambda r, dt=dt: [rand(r, (4, 2, 3), dt)], dynamic=True)
add("from_tensor_stack_string", ["TensorListFromTensor", "TensorListStack"], _from_stack,
    [np.array([[b"a", b"b"], [b"", b"cd"]], dtype=object)])
add("from_tensor_stack_vector", ["TensorListFromTensor", "TensorListStack"], _from_stack,
    lambda r: [rand(r, (5,))], dynamic=True)
add("from_tensor_stack_empty", ["TensorListFromTensor", "TensorListStack"], _from_stack,
    [np.zeros((0, 3), np.float32)])


def _get_items(x, i):
    r = _raw()
    lst = r.TensorListFromTensor(tensor=x, element_shape=[-1])
    es = i32(-1)
    return (r.TensorListGetItem(input_handle=lst, index=i, element_shape=es,
                                element_dtype=x.dtype),
            r.TensorListGetItem(input_handle=lst, index=0, element_shape=es,
                                element_dtype=x.dtype),
            r.TensorListLength(input_handle=lst))


add("get_item", ["TensorListGetItem", "TensorListLength"], _get_items,
    lambda r: [rand(r, (4, 3)), np.int32(2)], dynamic=True)
add("get_item_int64", ["TensorListGetItem"], _get_items,
    lambda r: [rand(r, (3, 2), "int64"), np.int32(1)])


def _element_shape(x, shape_type):
    r = _raw()
    lst = r.TensorListFromTensor(tensor=x, element_shape=i32(-1, 3))
    unknown = r.TensorListReserve(element_shape=-1, num_elements=2, element_dtype=x.dtype)
    return (r.TensorListElementShape(input_handle=lst, shape_type=shape_type),
            r.TensorListElementShape(input_handle=unknown, shape_type=shape_type))


add("element_shape_int32", ["TensorListElementShape"],
    lambda x: _element_shape(x, _tf().int32), lambda r: [rand(r, (2, 4, 3))])
add("element_shape_int64", ["TensorListElementShape"],
    lambda x: _element_shape(x, _tf().int64), lambda r: [rand(r, (2, 4, 3))])


def _reserve_set(x, i):
    tf, r = _tf(), _raw()
    lst = r.TensorListReserve(element_shape=tf.shape(x), num_elements=4,
                              element_dtype=x.dtype)
    lst = r.TensorListSetItem(input_handle=lst, index=i, item=x)
    lst2 = r.TensorListSetItem(input_handle=lst, index=0, item=x * 2)
    # lst is read after lst2 was derived from it: value semantics
    return (r.TensorListStack(input_handle=lst2, element_shape=tf.shape(x),
                              element_dtype=x.dtype),
            r.TensorListStack(input_handle=lst, element_shape=tf.shape(x),
                              element_dtype=x.dtype),
            r.TensorListGetItem(input_handle=lst, index=3, element_shape=tf.shape(x),
                                element_dtype=x.dtype))


for dt in ("float32", "int32", "float64"):
    add(f"reserve_set_item_{dt}", ["TensorListReserve", "TensorListSetItem", "TensorListStack"],
        _reserve_set, lambda r, dt=dt: [rand(r, (2, 3), dt), np.int32(2)], dynamic=True)


def _set_resize(x):
    r = _raw()
    lst = r.TensorListReserve(element_shape=i32(3), num_elements=2, element_dtype=x.dtype)
    lst = r.TensorListSetItem(input_handle=lst, index=4, item=x,
                              resize_if_index_out_of_bounds=True)
    return r.TensorListStack(input_handle=lst, element_shape=i32(3), element_dtype=x.dtype)


add("set_item_resize", ["TensorListSetItem"], _set_resize, lambda r: [rand(r, (3,))])


def _push_pop(x, y):
    r = _raw()
    lst = r.EmptyTensorList(element_shape=-1, max_num_elements=-1, element_dtype=x.dtype)
    a = r.TensorListPushBack(input_handle=lst, tensor=x)
    b = r.TensorListPushBack(input_handle=a, tensor=y)
    c, last = r.TensorListPopBack(input_handle=b, element_shape=-1, element_dtype=x.dtype)
    d = r.TensorListPushBack(input_handle=c, tensor=x * 3)  # overwrites b's popped slot
    e = r.TensorListPushBack(input_handle=a, tensor=y * 5)  # a is not the newest version
    st = [r.TensorListStack(input_handle=v, element_shape=-1, element_dtype=x.dtype)
          for v in (b, d, e)]
    return (last, *st, r.TensorListLength(input_handle=c))


add("push_pop", ["EmptyTensorList", "TensorListPushBack", "TensorListPopBack"], _push_pop,
    lambda r: [rand(r, (3,)), rand(r, (3,))], dynamic=True)
add("push_pop_int32", ["EmptyTensorList", "TensorListPushBack", "TensorListPopBack"],
    _push_pop, lambda r: [rand(r, (2, 2), "int32"), rand(r, (2, 2), "int32")])


def _resize(x, n):
    r = _raw()
    lst = r.TensorListFromTensor(tensor=x, element_shape=i32(-1))
    small = r.TensorListResize(input_handle=lst, size=n)
    big = r.TensorListResize(input_handle=small, size=5)
    return (r.TensorListStack(input_handle=big, element_shape=i32(2), element_dtype=x.dtype),
            r.TensorListLength(input_handle=small),
            r.TensorListStack(input_handle=lst, element_shape=i32(2), element_dtype=x.dtype))


add("resize", ["TensorListResize"], _resize, lambda r: [rand(r, (4, 2)), np.int32(2)])


def _gather(x, idx):
    r = _raw()
    lst = r.TensorListFromTensor(tensor=x, element_shape=i32(-1, -1))
    return r.TensorListGather(input_handle=lst, indices=idx,
                              element_shape=_tf().shape(x)[1:], element_dtype=x.dtype)


add("gather", ["TensorListGather"], _gather, lambda r: [rand(r, (5, 2, 3)), i32(4, 0, 4, 2)],
    dynamic=True)
add("gather_empty", ["TensorListGather"], _gather,
    lambda r: [rand(r, (3, 2, 2)), np.zeros((0,), np.int32)])


def _gather_unset(x, idx):
    r = _raw()
    lst = r.TensorListReserve(element_shape=i32(2), num_elements=4, element_dtype=x.dtype)
    lst = r.TensorListSetItem(input_handle=lst, index=1, item=x)
    return r.TensorListGather(input_handle=lst, indices=idx, element_shape=i32(2),
                              element_dtype=x.dtype)


add("gather_unset", ["TensorListGather"], _gather_unset,
    lambda r: [rand(r, (2,)), i32(0, 1, 3)])


def _scatter_existing(x, v, idx):
    r = _raw()
    lst = r.TensorListFromTensor(tensor=x, element_shape=i32(-1))
    out = r.TensorListScatterIntoExistingList(input_handle=lst, tensor=v, indices=idx)
    return (r.TensorListGather(input_handle=out, indices=idx, element_shape=i32(-1),
                               element_dtype=x.dtype),
            r.TensorListGetItem(input_handle=out, index=0, element_shape=i32(-1),
                                element_dtype=x.dtype),
            r.TensorListLength(input_handle=out),
            r.TensorListStack(input_handle=lst, element_shape=i32(-1), element_dtype=x.dtype))


add("scatter_into_existing", ["TensorListScatterIntoExistingList"], _scatter_existing,
    lambda r: [rand(r, (4, 3)), rand(r, (2, 3)), i32(3, 1)], dynamic=True)
add("scatter_into_existing_grow", ["TensorListScatterIntoExistingList"], _scatter_existing,
    lambda r: [rand(r, (2, 3)), rand(r, (2, 3)), i32(0, 4)])


def _scatter_v2(v, idx):
    r = _raw()
    a = r.TensorListScatterV2(tensor=v, indices=idx, element_shape=i32(-1), num_elements=5)
    b = r.TensorListScatterV2(tensor=v, indices=idx, element_shape=i32(-1), num_elements=-1)
    return (r.TensorListStack(input_handle=a, element_shape=i32(3), element_dtype=v.dtype),
            r.TensorListLength(input_handle=b))


def _scatter_v1(v, idx):
    r = _raw()
    a = r.TensorListScatter(tensor=v, indices=idx, element_shape=i32(-1))
    return (r.TensorListGather(input_handle=a, indices=idx, element_shape=i32(-1),
                               element_dtype=v.dtype),
            r.TensorListLength(input_handle=a))


add("scatter_v1", ["TensorListScatter"], _scatter_v1, lambda r: [rand(r, (2, 3)), i32(3, 1)],
    dynamic=True)
add("scatter_v2", ["TensorListScatterV2"], _scatter_v2,
    lambda r: [rand(r, (2, 3)), i32(3, 1)])


def _concat_split(x, lengths):
    r = _raw()
    lst = r.TensorListSplit(tensor=x, element_shape=i32(-1, 2), lengths=lengths)
    t, lens = r.TensorListConcatV2(input_handle=lst, element_shape=i32(-1, 2),
                                   leading_dims=np.zeros((0,), np.int64), element_dtype=x.dtype)
    first = r.TensorListGetItem(input_handle=lst, index=1, element_shape=i32(-1, 2),
                                element_dtype=x.dtype)
    return t * 2, lens, first


add("split_concat", ["TensorListSplit", "TensorListConcatV2"], _concat_split,
    lambda r: [rand(r, (6, 2)), np.array([1, 3, 0, 2], np.int64)], dynamic=True)


def _concat_unset(x):
    r = _raw()
    lst = r.TensorListReserve(element_shape=i32(-1, 2), num_elements=3, element_dtype=x.dtype)
    lst = r.TensorListSetItem(input_handle=lst, index=1, item=x)
    t, lens = r.TensorListConcatV2(input_handle=lst, element_shape=i32(-1, 2),
                                   leading_dims=np.array([2, 0, 1], np.int64),
                                   element_dtype=x.dtype)
    return t, lens


add("concat_unset_leading_dims", ["TensorListConcatV2"], _concat_unset,
    lambda r: [rand(r, (3, 2))])


def _concat_v1(x):
    r = _raw()
    lst = r.TensorListFromTensor(tensor=x, element_shape=i32(-1, 2))
    return r.TensorListConcat(input_handle=lst, element_dtype=x.dtype,
                              element_shape=[None, 2])


add("concat_v1", ["TensorListConcat"], _concat_v1, lambda r: [rand(r, (3, 2, 2))])


# --- TensorList in loops (the Keras RNN pattern) -----------------------------------------------

def _ta_loop(x):
    tf = _tf()
    ta_in = tf.TensorArray(x.dtype, size=tf.shape(x)[0]).unstack(x)
    ta_out = tf.TensorArray(x.dtype, size=tf.shape(x)[0])

    def body(t, h, out):
        h = tf.tanh(h * 0.5 + ta_in.read(t))
        return t + 1, h, out.write(t, h)

    _, h, out = tf.while_loop(lambda t, h, out: t < tf.shape(x)[0], body,
                              [0, tf.zeros_like(x[0]), ta_out])
    return out.stack(), h


add("loop_read_write", ["TensorListFromTensor", "TensorListGetItem", "TensorListSetItem",
                        "TensorListStack", "StatelessWhile"],
    _ta_loop, lambda r: [rand(r, (6, 2, 3))], dynamic=True, rtol=1e-5)


def _ta_dynamic(x):
    tf = _tf()
    ta = tf.TensorArray(x.dtype, size=0, dynamic_size=True, element_shape=[None])

    def body(i, ta):
        return i + 1, ta.write(i, x[: i + 1] * 2)

    _, ta = tf.while_loop(lambda i, ta: i < tf.shape(x)[0], body, [0, ta])
    return ta.concat(), ta.size()


add("loop_dynamic_concat", ["TensorListConcatV2", "TensorListLength"], _ta_dynamic,
    lambda r: [rand(r, (4,))], dynamic=True)


# --- TensorArrayV3 (TF1 tensor arrays) ----------------------------------------------------------

def _tensor_array(x):
    r = _raw()
    h, f = r.TensorArrayV3(size=4, dtype=x.dtype, element_shape=[2], clear_after_read=False)
    f = r.TensorArrayScatterV3(handle=h, indices=[0, 2, 1], value=x, flow_in=f)
    f = r.TensorArrayWriteV3(handle=h, index=3, value=x[0] * 5, flow_in=f)
    return (r.TensorArrayGatherV3(handle=h, indices=[2, 1, 3], flow_in=f, dtype=x.dtype),
            r.TensorArrayReadV3(handle=h, index=0, flow_in=f, dtype=x.dtype),
            r.TensorArraySizeV3(handle=h, flow_in=f),
            r.TensorArrayConcatV3(handle=h, flow_in=f, dtype=x.dtype)[0])


for dt in ("float32", "int32", "float64"):
    add(f"tensor_array_v3_{dt}", ["TensorArrayV3", "TensorArrayScatterV3", "TensorArrayWriteV3",
                                  "TensorArrayGatherV3", "TensorArrayReadV3",
                                  "TensorArraySizeV3", "TensorArrayConcatV3"],
        _tensor_array, lambda r, dt=dt: [rand(r, (3, 2), dt)], dynamic=True)


def _tensor_array_split(x, lengths):
    r = _raw()
    h, f = r.TensorArrayV3(size=0, dtype=x.dtype, dynamic_size=True, clear_after_read=False)
    f = r.TensorArraySplitV3(handle=h, value=x, lengths=lengths, flow_in=f)
    v, lens = r.TensorArrayConcatV3(handle=h, flow_in=f, dtype=x.dtype)
    return v, lens, r.TensorArrayReadV3(handle=h, index=2, flow_in=f, dtype=x.dtype), \
        r.TensorArraySizeV3(handle=h, flow_in=f)


add("tensor_array_v3_split", ["TensorArraySplitV3", "TensorArrayConcatV3"], _tensor_array_split,
    lambda r: [rand(r, (5, 2)), np.array([2, 0, 3], np.int64)], dynamic=True)
