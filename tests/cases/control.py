"""Functional control flow: While, If, Case, For, and the loops tf.map_fn/scan/foldl build."""

from __future__ import annotations

import numpy as np

from . import Case, adder, rand
from . import raw as _raw
from . import tf as _tf

CASES: list[Case] = []
add = adder(CASES, "control")


def _concrete(fn, *specs):
    tf = _tf()
    return tf.function(fn, autograph=False).get_concrete_function(
        *[tf.TensorSpec(s, d) for s, d in specs])


# --- While --------------------------------------------------------------------------------------

def _count(x):
    tf = _tf()
    i, acc = tf.while_loop(lambda i, a: i < tf.shape(x)[0],
                           lambda i, a: (i + 1, a + x[i] * tf.cast(i, x.dtype)),
                           [tf.constant(0), tf.zeros(tf.shape(x)[1:], x.dtype)])
    return acc, i


for dt in ("float32", "float64", "int32", "int64", "float16"):
    add(f"while_{dt}", ["StatelessWhile"], _count, lambda r, dt=dt: [rand(r, (5, 3), dt)],
        dynamic=True, rtol=1e-3 if dt == "float16" else 1e-6)
add("while_zero_iterations", ["StatelessWhile"], _count, [np.zeros((0, 2), np.float32)],
    dynamic=True)


def _data_dependent(x, limit):
    # trip count depends on the data: double until the sum exceeds limit
    tf = _tf()
    n, y = tf.while_loop(lambda n, y: tf.reduce_sum(y) < limit,
                         lambda n, y: (n + 1, y * 2.0), [0, x])
    return n, y


add("while_data_dependent", ["StatelessWhile"], _data_dependent,
    [np.array([0.5, 1.0, 0.25], np.float32), np.float32(100.0)], dynamic=True)


def _max_iterations(x):
    tf = _tf()
    return tf.while_loop(lambda i, y: True, lambda i, y: (i + 1, y + 1.0), [0, x],
                         maximum_iterations=tf.shape(x)[0] + 2)


add("while_maximum_iterations", ["StatelessWhile"], _max_iterations,
    lambda r: [rand(r, (3,))], dynamic=True)


def _nested(x):
    tf = _tf()
    n = tf.shape(x)[0]

    def outer(i, acc):
        _, a = tf.while_loop(lambda j, a: j <= i, lambda j, a: (j + 1, a + x[j] * x[i]),
                             [0, acc])
        return i + 1, a

    return tf.while_loop(lambda i, a: i < n, outer, [0, tf.zeros_like(x[0])])[1]


add("while_nested", ["StatelessWhile"], _nested, lambda r: [rand(r, (4, 2))], dynamic=True,
    rtol=1e-5)


def _loop_invariant_work(x, w):
    # w @ w.T is loop-invariant: the kernel hoists it out of the loop
    tf = _tf()

    def body(i, h):
        m = tf.matmul(w, w, transpose_b=True)
        return i + 1, tf.tanh(tf.matmul(h, m) + x[i])

    return tf.while_loop(lambda i, h: i < tf.shape(x)[0], body, [0, tf.zeros_like(x[0])])[1]


add("while_invariant_hoisting", ["StatelessWhile"], _loop_invariant_work,
    lambda r: [rand(r, (5, 2, 3), low=-1, high=1), rand(r, (3, 3), low=-0.5, high=0.5)],
    dynamic=True, rtol=1e-5)


def _invariant_output(x, w):
    # a loop variable recomputed from invariants only: its value is the hoisted result
    tf = _tf()
    return tf.while_loop(lambda i, a, b: i < 3,
                         lambda i, a, b: (i + 1, tf.matmul(w, w) * 0.5, b + tf.reduce_sum(a)),
                         [0, tf.zeros_like(w), x])


add("while_invariant_output", ["StatelessWhile"], _invariant_output,
    lambda r: [rand(r, (2,)), rand(r, (2, 2))], dynamic=True, rtol=1e-5)


def _while_stateful(x):
    # a raw While node (TF only emits it for bodies with stateful ops)
    tf = _tf()
    cond = _concrete(lambda i, x: i < 3, ([], tf.int32), ([None], tf.float32))
    body = _concrete(lambda i, x: (i + 1, x * 2.0 + 1.0), ([], tf.int32), ([None], tf.float32))
    return _raw().While(input=[tf.constant(0), x], cond=cond, body=body)[1]


add("while_raw", ["While"], _while_stateful, lambda r: [rand(r, (4,))], dynamic=True)


def _while_swap(a, b):
    # loop variables exchanged each iteration: not invariant although read unchanged
    tf = _tf()
    return tf.while_loop(lambda i, a, b: i < 3, lambda i, a, b: (i + 1, b, a + 1.0),
                         [0, a, b])


add("while_swap", ["StatelessWhile"], _while_swap, lambda r: [rand(r, (2,)), rand(r, (2,))])


def _while_strings(s):
    tf = _tf()
    return tf.while_loop(lambda i, s: i < 2, lambda i, s: (i + 1, tf.identity(s)), [0, s])[1]


add("while_string", ["StatelessWhile"], _while_strings,
    [np.array([b"ab", b"c"], dtype=object)])


def _greedy_decode(start, table):
    # decode tokens by argmax until the end token (0) or 10 steps
    tf = _tf()
    ta = tf.TensorArray(tf.int32, size=0, dynamic_size=True)

    def body(t, tok, ta):
        nxt = tf.argmax(table[tok], output_type=tf.int32)
        return t + 1, nxt, ta.write(t, nxt)

    t, _, ta = tf.while_loop(lambda t, tok, ta: tf.logical_and(t < 10, tf.not_equal(tok, 0)),
                             body, [0, start, ta])
    return ta.stack(), t


add("while_greedy_decode", ["StatelessWhile", "TensorListSetItem", "TensorListStack"],
    _greedy_decode,
    [np.int32(3), np.array([[5, 0, 0, 0, 0], [0, 0, 9, 0, 0], [0, 0, 0, 0, 7], [0, 0, 0, 0, 8],
                            [0, 0, 6, 0, 0]], np.float32)], dynamic=True)


def _counters(n, x):
    # two counters (one stepped by -2), the condition on one and an invariant: a counted loop,
    # its condition decided for chunks of iterations at once
    tf = _tf()
    return tf.while_loop(lambda i, j, y: i < n,
                         lambda i, j, y: (i + 3, j - 2, y * 0.999 + tf.cast(j, tf.float32)),
                         [tf.constant(0), tf.constant(5), x])


for _n in (1, 16, 17, 100, 3001):  # iteration counts around the chunk boundaries (16, 32...)
    add(f"while_counted_{_n}", ["StatelessWhile"], _counters,
        lambda r, n=_n: [np.int32(3 * n - 1), rand(r, (3,))], rtol=1e-5)


def _count_down(n, x):
    tf = _tf()
    return tf.while_loop(lambda i, y: tf.logical_and(i > 0, i <= n + 100),
                         lambda i, y: (i - 1, y + tf.cast(i, tf.float32)), [n, x],
                         maximum_iterations=40)


add("while_counted_down_int64", ["StatelessWhile"], _count_down,
    lambda r: [np.int64(70), rand(r, (2,))], dynamic=True, rtol=1e-5)
add("while_counted_none", ["StatelessWhile"], _count_down,
    lambda r: [np.int64(0), rand(r, (2,))], dynamic=True)


def _counter_and_data(n, x):
    # the condition reads a loop-variant value too: run one iteration at a time
    tf = _tf()
    return tf.while_loop(lambda i, y: tf.logical_and(i < n, tf.reduce_sum(y) < 50.0),
                         lambda i, y: (i + 1, y * 1.5), [0, x])


add("while_counter_and_data", ["StatelessWhile"], _counter_and_data,
    [np.int32(20), np.array([0.5, 1.0], np.float32)], dynamic=True, rtol=1e-5)


# --- map_fn / scan / foldl ----------------------------------------------------------------------

add("map_fn", ["StatelessWhile", "TensorListFromTensor", "TensorListGetItem"],
    lambda x: _tf().map_fn(lambda r: _tf().reduce_sum(r * r), x),
    lambda r: [rand(r, (5, 3))], dynamic=True, rtol=1e-5)
add("map_fn_multi", ["StatelessWhile"],
    lambda x, y: _tf().map_fn(lambda a: (a[0] * 2, a[1] + 1), (x, y)),
    lambda r: [rand(r, (4, 2)), rand(r, (4,), "int32")], dynamic=True)
add("scan", ["StatelessWhile"], lambda x: _tf().scan(lambda a, r: a * 0.5 + r, x),
    lambda r: [rand(r, (6, 2))], dynamic=True, rtol=1e-5)
add("foldl", ["StatelessWhile"], lambda x: _tf().foldl(lambda a, r: a * r, x),
    lambda r: [rand(r, (4, 3), low=0.5, high=1.5)], dynamic=True, rtol=1e-5)
add("foldr", ["StatelessWhile"], lambda x: _tf().foldr(lambda a, r: a - r, x),
    lambda r: [rand(r, (4, 3))], dynamic=True, rtol=1e-5)


# --- If -----------------------------------------------------------------------------------------

def _cond(x):
    tf = _tf()
    return tf.cond(tf.reduce_sum(x) > 0, lambda: x * 2.0, lambda: x - 1.0)


add("cond_true", ["StatelessIf"], _cond, [np.array([1.0, 2.0], np.float32)], dynamic=True)
add("cond_false", ["StatelessIf"], _cond, [np.array([-1.0, 0.5], np.float32)], dynamic=True)



add("cond_multi_output_int", ["StatelessIf"],
    lambda p, x, y: _tf().cond(p, lambda: (x + 1, y * 2), lambda: (x * 3, y - 1)),
    lambda r: [np.array(False), rand(r, (3,), "int64"), rand(r, (2, 2), "float64")],
    dynamic=True)


def _cond_in_loop(x):
    tf = _tf()

    def body(i, y):
        return i + 1, tf.cond(y[0] > 3.0, lambda: y * 0.5, lambda: y + 2.0)

    return tf.while_loop(lambda i, y: i < 5, body, [0, x])


add("cond_in_loop", ["StatelessWhile", "StatelessIf"], _cond_in_loop,
    [np.array([1.0, 2.0, 3.0], np.float32)], dynamic=True)


def _loop_in_cond(x):
    tf = _tf()

    def then():
        return tf.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * 2.0), [0, x])[1]

    return tf.cond(x[0] > 0, then, lambda: x - 1.0)


add("loop_in_cond", ["StatelessWhile", "StatelessIf"], _loop_in_cond,
    [np.array([1.5, -2.0], np.float32)], dynamic=True)


def _if_raw(p, x):
    tf = _tf()
    then = _concrete(lambda x: x * 2.0, ([None], tf.float32))
    other = _concrete(lambda x: x - 2.0, ([None], tf.float32))
    return _raw().If(cond=p, input=[x], Tout=[tf.float32], then_branch=then,
                     else_branch=other)[0]


add("if_raw_true", ["If"], _if_raw, lambda r: [np.array(True), rand(r, (3,))], dynamic=True)
add("if_raw_false", ["If"], _if_raw, lambda r: [np.array(False), rand(r, (3,))], dynamic=True)


def _tf_case(x):
    tf = _tf()
    s = tf.reduce_sum(x)
    return tf.case([(s < 0, lambda: x * -1.0), (s < 5, lambda: x * 10.0)],
                   default=lambda: x + 100.0)


for k, v in enumerate(([-1.0, -2.0], [1.0, 2.0], [5.0, 6.0])):
    add(f"tf_case_{k}", ["StatelessIf"], _tf_case, [np.array(v, np.float32)], dynamic=True)


# --- Case ---------------------------------------------------------------------------------------

def _switch_case(i, x):
    tf = _tf()
    return tf.switch_case(i, [lambda: x + 1.0, lambda: x * 2.0, lambda: x - 3.0])


# TF's freezing lowers Case to _SwitchN/Merge; the converter raises it back to a Case
for k in (0, 1, 2, 7, -1):
    add(f"switch_case_{k}", ["Case"], _switch_case,
        lambda r, k=k: [np.int32(k), rand(r, (3,))])


def _case_raw(i, x, op="Case"):
    tf = _tf()
    spec = ([None], tf.float32)
    branches = [_concrete(lambda x: x + 1.0, spec), _concrete(lambda x: x * 2.0, spec)]
    return getattr(_raw(), op)(branch_index=i, input=[x], Tout=[tf.float32],
                               branches=branches)[0]


for k in (0, 1, 5, -3):
    add(f"case_raw_{k}", ["Case"], _case_raw, lambda r, k=k: [np.int32(k), rand(r, (3,))],
        dynamic=True)
    add(f"stateless_case_raw_{k}", ["StatelessCase"],
        lambda i, x: _case_raw(i, x, "StatelessCase"),
        lambda r, k=k: [np.int32(k), rand(r, (3,))], dynamic=True)


# --- For ----------------------------------------------------------------------------------------

def _for(x, n):
    tf = _tf()
    body = _concrete(lambda i, x: x * tf.cast(i, tf.float32) + 1.0, ([], tf.int32),
                     ([None], tf.float32))
    return _raw().For(start=1, limit=n, delta=2, input=[x], body=body)[0]


add("for", ["For"], _for, lambda r: [rand(r, (3,)), np.int32(8)], dynamic=True)
add("for_empty", ["For"], _for, lambda r: [rand(r, (3,)), np.int32(1)])
