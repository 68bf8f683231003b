"""merge_unrolled: a layer unrolled over time steps (Keras 3's TimeDistributed) as one step
over the time steps joined into the batch.

Keras 3 runs ``TimeDistributed(layer)`` on an input of static length T as: a Transpose to
[T, B, ...], for each t a ``StridedSlice`` of step t and the layer's steps on it, a ``Pack`` of
the T results, and a Transpose back. Each step's convolution then works on B images, and the
Pack copies every result once more (a TimeDistributed CNN at batch 8: the Packs and the pools
on strided slices were a third of its time).

Here, in a specialized plan (shapes known), when the inputs of a ``Pack`` along axis 0 are
T chains of the same steps (op, attributes and constant inputs equal) each starting at
``StridedSlice(X, t)`` (the whole of step t along axis 0, in order) and each value on the way
read by the next step alone, the chains become one chain over ``X`` reshaped to [T * B, ...],
its result reshaped to [T, B, ...]. When ``X`` is a Transpose of [B, T, ...] swapping the two
axes and the Pack's only reader is the Transpose back, the chain runs on the untransposed
input reshaped to [B * T, ...] and both Transposes go: the same values, in the other order of
the joined batch. Only steps that treat each example alone take part (``_PER_EXAMPLE``:
fused conv/matmul chains without residual inputs, pools that do not pool the batch,
elementwise steps, binary steps with constants of lower rank), and only where each runs
tfdeploy's own numpy kernel.
"""

from __future__ import annotations

import math

import numpy as np

from tfdeploy.compiler.patterns import builtin, splice, step_index
from tfdeploy.compiler.plan import Plan, Step

_UNARY = ("Relu", "Relu6", "LeakyRelu", "Elu", "Selu", "Sigmoid", "Tanh", "Softplus",
          "_Gelu", "_RoundHalf", "Neg", "Abs", "Square", "Identity")
_BINARY = ("BiasAdd", "AddV2", "Add", "Sub", "Mul", "RealDiv", "Maximum", "Minimum")
_POOLS = ("MaxPool", "AvgPool")
_CORES = ("Conv2D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2", "Conv3D")


def _same_value(a, b) -> bool:
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and \
            a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _per_example(st: Step, plan: Plan, chained: int) -> bool:
    """Step ``st`` computes each example of its input ``chained`` (axis 0) alone."""
    if not builtin(st) or len(st.outs) != 1 or st.outs[0][0] != 0:
        return False
    consts = [v for v in st.ins if v != chained]
    if st.ins.count(chained) != 1 or any(v not in plan.constants for v in consts):
        return False
    if st.op in _UNARY:
        return len(st.ins) == 1
    if st.op in _BINARY:
        rank = len(plan.shapes.get(chained) or ())
        return len(st.ins) == 2 and all(
            np.ndim(plan.constants[v]) < rank for v in consts)
    if st.op in _POOLS:
        a = st.attrs
        return len(st.ins) == 1 and list(a.get("ksize", ()))[:1] == [1] and \
            list(a.get("strides", ()))[:1] == [1]
    if st.op == "_FusedChain":
        return len(st.ins) == 1 and st.attrs.get("core") in _CORES and \
            not st.attrs.get("scaled")
    if st.op == "Reshape":  # (to [B, ...]: TimeDistributed(Flatten()))
        shape, xs = plan.constants.get(st.ins[1]), plan.shapes.get(chained)
        return len(st.ins) == 2 and st.ins[0] == chained and isinstance(shape, np.ndarray) and \
            shape.ndim == 1 and shape.size >= 1 and shape.dtype.kind in "iu" and \
            xs is not None and len(xs) >= 1 and int(shape[0]) == xs[0] and \
            all(int(d) >= 0 for d in shape[1:])
    return False


def _slice_of(st: Step, plan: Plan) -> int | None:
    """The index t when ``st`` is ``StridedSlice(X, [t], [t + 1], [1])`` shrinking axis 0
    (the whole of step t); else None."""
    a = st.attrs
    if st.op != "StridedSlice" or not builtin(st) or len(st.ins) != 4 or \
            a.get("shrink_axis_mask") != 1 or any(a.get(m, 0) for m in (
                "begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask")):
        return None
    parts = [plan.constants.get(v) for v in st.ins[1:]]
    if any(not isinstance(p, np.ndarray) or p.shape != (1,) or p.dtype.kind not in "iu"
           for p in parts):
        return None
    (b,), (e,), (s,) = (p.tolist() for p in parts)
    return b if e == b + 1 and s == 1 and b >= 0 else None


def _chain(plan: Plan, y: int, reader: int, maker, readers, pinned):
    """(the StridedSlice step, the chain's steps from the slice on, X) ending at value ``y``
    read by step ``reader``; or None."""
    steps, chain = plan.steps, []
    for _ in range(16):
        j = maker.get(y)
        if j is None or y in pinned or readers.get(y) != [reader]:
            return None
        st = steps[j]
        if _slice_of(st, plan) is not None:
            return j, chain[::-1], st.ins[0]
        ins = [v for v in st.ins if v not in plan.constants]
        if len(ins) != 1 or not _per_example(st, plan, ins[0]):
            return None
        chain.append(j)
        y, reader = ins[0], j
    return None


def _same_chains(plan: Plan, chains) -> bool:
    steps = plan.steps
    first = chains[0]
    for other in chains[1:]:
        if len(other) != len(first):
            return False
        for a, b in zip(first, other):
            sa, sb = steps[a], steps[b]
            if sa.op != sb.op or len(sa.ins) != len(sb.ins) or \
                    not _same_value({k: v for k, v in sa.attrs.items() if k != "_label"},
                                    {k: v for k, v in sb.attrs.items() if k != "_label"}):
                return False
            for u, v in zip(sa.ins, sb.ins):
                if (u in plan.constants) != (v in plan.constants) or \
                        u in plan.constants and not _same_value(plan.constants[u],
                                                                plan.constants[v]):
                    return False
    return True


def _match(plan: Plan, k: int, maker, readers, pinned):
    """The rewrite of Pack step ``k``: (steps to drop, new steps), or None."""
    steps = plan.steps
    pack = steps[k]
    n = len(pack.ins)
    if pack.attrs.get("axis", 0) != 0 or n < 2 or len(set(pack.ins)) != n or \
            len(pack.outs) != 1 or not builtin(pack):
        return None
    found = [_chain(plan, y, k, maker, readers, pinned) for y in pack.ins]
    if any(f is None for f in found) or len({f[2] for f in found}) != 1 or \
            [_slice_of(steps[f[0]], plan) for f in found] != list(range(n)) or \
            not found[0][1] or not _same_chains(plan, [f[1] for f in found]):
        return None
    x, out = found[0][2], pack.outs[0][1]
    xs, ys = plan.shapes.get(x), plan.shapes.get(out)
    if xs is None or ys is None or xs[0] != n or len(xs) < 2 or \
            not all(isinstance(d, int) for d in (*xs, *ys)):
        return None
    drop = [k] + [f[0] for f in found] + [j for f in found for j in f[1]]
    # the Transposes around it, when they only swap the time and batch axes
    src, final = x, out
    tx = maker.get(x)
    swap = [1, 0, *range(2, len(xs))]
    back = readers.get(out, [])
    if tx is not None and _swap(plan, steps[tx], swap) and len(back) == 1 and \
            _swap(plan, steps[back[0]], [1, 0, *range(2, len(ys))]) and out not in pinned:
        src, final = steps[tx].ins[0], steps[back[0]].outs[0][1]
        drop.append(back[0])
        if all(j in drop for j in readers.get(x, ())):
            drop.append(tx)  # (read by the slices alone)
        ys = plan.shapes.get(final)
        if ys is None:
            return None
    return drop, _rewritten(plan, found[0][1], src, final, ys)


def _swap(plan: Plan, st: Step, swap: list) -> bool:
    """``st`` is a built-in Transpose by ``swap`` (the first two axes exchanged)."""
    if st.op != "Transpose" or not builtin(st) or len(st.ins) != 2 or len(st.outs) != 1:
        return False
    perm = plan.constants.get(st.ins[1])
    return isinstance(perm, np.ndarray) and perm.reshape(-1).tolist() == swap


def _rewritten(plan: Plan, chain: list[int], src: int, final: int, ys) -> list[Step]:
    """One copy of ``chain`` over ``src`` joined into one batch (its first two axes), the
    result reshaped to ``ys`` (the Pack's shape) into value ``final``."""
    steps = plan.steps
    xs = plan.shapes[src]
    joined = xs[0] * xs[1]
    new = []

    def reshape(v: int, shape, out: int) -> None:
        c = plan.new_value()
        plan.constants[c] = np.array(shape, np.int32)
        new.append(Step("Reshape", steps[chain[0]].name, (v, c), ((0, out),),
                        {"Tshape": "int32"}))
        plan.shapes[out] = tuple(shape)

    cur = plan.new_value()
    reshape(src, (joined, *xs[2:]), cur)
    for j in chain:
        st = steps[j]
        v = plan.new_value()
        old = plan.shapes.get(st.outs[0][1])
        if old is not None:
            plan.shapes[v] = (joined, *old[1:])
        ins = tuple(cur if u not in plan.constants else u for u in st.ins)
        if st.op == "Reshape":  # (its batch dim is the joined batch now)
            c = plan.new_value()
            plan.constants[c] = np.array([joined, *plan.constants[st.ins[1]][1:]],
                                         plan.constants[st.ins[1]].dtype)
            ins = (cur, c)
        new.append(Step(st.op, st.name, ins, ((0, v),), st.attrs, st.members))
        cur = v
    reshape(cur, ys, final)
    if math.prod(ys) != math.prod(plan.shapes.get(cur) or ys):
        return []
    return new


def run(plan: Plan, ctx=None) -> Plan:
    """The plan with each unrolled layer as one chain over the joined batch."""
    if not plan.shapes:
        return plan
    steps = plan.steps
    maker, readers = step_index(steps)
    pinned = set(plan.fetch_values) | set(plan.feed_values)
    drop: set[int] = set()
    at: dict[int, list[Step]] = {}
    for k, st in enumerate(steps):
        if st.op != "Pack":
            continue
        m = _match(plan, k, maker, readers, pinned)
        if m is None or not m[1] or drop.intersection(m[0]):
            continue
        drop.update(m[0])
        at[max(m[0])] = m[1]
    splice(plan, drop, at)
    return plan
