"""Peephole optimisation of a compiled plan's steps: conv/matmul chains fused into one kernel.

A chain starts at a Conv2D, Conv3D, DepthwiseConv2dNative, MatMul or BatchMatMulV2 whose filter
(right-hand side) is a load-time float32/float64 constant, and takes in the steps after it for
as long as the value passed on has exactly one reader and is neither fetched nor fed:

- affine ops along the output channels, with constant operands: BiasAdd, AddV2/Add/Sub/Mul/
  RealDiv by a constant broadcasting along the channels only (Keras 3 BatchNormalization after
  constant folding), FusedBatchNorm/V2/V3 in inference mode (tf_keras);
- a residual addition (AddV2/Add; Sub with the chain on the left) of another tensor;
- activations: Relu, Relu6, LeakyRelu, Elu, Sigmoid, Tanh, and swish, x * sigmoid(beta * x)
  (a value with two readers: Sigmoid, or Mul by a constant then Sigmoid, and the final Mul).

The leading affine ops fold into the weight (W * scale per output channel, in float64, rounded
once) and one bias; the rest run in place on the core kernel's fresh output (``ops/fused.py``).
Every step of a chain must run the built-in kernel (not a user's replacement or another
implementation), so the fused kernel computes what the steps did, up to float rounding.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from .graph import Node
from .ops import conv, fused, math, math_matmul, matmul_fast, nn
from .plan import Step

#: folded weights larger than this are not made (the fold keeps a second copy of the weight)
FOLD_LIMIT_BYTES = 64 << 20

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_ACTIVATIONS = {nn.Relu: "relu", nn.Relu6: "relu6", nn.LeakyRelu: "leaky_relu", nn.Elu: "elu",
                math.Sigmoid: "sigmoid", math.Sigmoid_scipy: "sigmoid", math.Tanh: "tanh"}
_BATCH_NORMS = (nn.FusedBatchNorm, nn.FusedBatchNormV2, nn.FusedBatchNormV3)


@dataclass
class _Core:
    """The head of a chain: its kernel, weight and the layout of its output."""

    kind: str  # conv, depthwise, matmul
    #: ``kernel(x, weight)`` computes the node with another weight of the same shape
    kernel: Any
    weight: np.ndarray
    #: the weight's axis of output channels (conv, matmul)
    w_axis: int
    #: the output's rank, None when only known to be >= 2 (BatchMatMulV2)
    rank: int | None
    #: the output's channel axis, counted from the end (-1: channels last)
    axis: int
    channels: int

    @property
    def dtype(self) -> np.dtype:
        return self.weight.dtype

    @property
    def bshape(self) -> tuple[int, ...]:
        """The shape of a per-channel vector broadcasting along the output's channel axis."""
        return (self.channels,) + (1,) * (-self.axis - 1)


def _unbind(kernel) -> tuple[Any, dict]:
    """(function, bound keyword attributes) of a kernel bound by ``registry.bind``."""
    if isinstance(kernel, functools.partial) and not kernel.args:
        return kernel.func, kernel.keywords
    return kernel, {}


def _core(st, constants) -> _Core | None:
    """Step ``st`` as the head of a chain: a built-in convolution or matrix product kernel with
    a float32/float64 constant weight; else None."""
    fn, _ = _unbind(st.kernel)
    node = st.node
    a = node.attrs
    if len(st.outs) != 1 or st.outs[0][0] != 0 or len(node.inputs) != 2:
        return None
    if len(st.ins) == 1:  # a kernel specialized on its constant weight
        w = _specialized_weight(st)
        if w is None or w.dtype not in _FLOATS or w.size == 0:
            return None
        return _Core("matmul", fused.matmul_kernel(bool(a.get("transpose_a", False))), w, 1, 2,
                     -1, w.shape[1])
    if len(st.ins) != 2:
        return None
    x, w = st.ins
    if w not in constants or x in constants:
        return None
    W = constants[w]
    if not isinstance(W, np.ndarray) or W.dtype not in _FLOATS or W.size == 0:
        return None
    k = st.kernel
    if fn is conv.Conv2D or fn is conv.Conv3D:
        rank = 4 if fn is conv.Conv2D else 5
        fmt = a.get("data_format", "NHWC" if rank == 4 else "NDHWC")
        if W.ndim != rank or not isinstance(fmt, str):
            return None
        return _Core("conv", k, W, rank - 1, rank, -(rank - 1) if fmt.startswith("NC") else -1,
                     W.shape[-1])
    if fn is conv.DepthwiseConv2dNative:
        fmt = a.get("data_format", "NHWC")
        if W.ndim != 4 or not isinstance(fmt, str):
            return None
        return _Core("depthwise", k, W, 3, 4, -3 if fmt.startswith("NC") else -1,
                     W.shape[2] * W.shape[3])
    if fn is math_matmul.MatMul or fn is math_matmul.BatchMatMulV2:
        tb = a.get("transpose_b", False) if fn is math_matmul.MatMul else a.get("adj_y", False)
        if W.ndim != 2:
            return None
        return _Core("matmul", k, W, 0 if tb else 1, 2 if fn is math_matmul.MatMul else None,
                     -1, W.shape[0] if tb else W.shape[1])
    return None


def _specialized_weight(st) -> np.ndarray | None:
    """The [K, N] weight of a MatMul step whose kernel ``ops/matmul_fast`` specialized on its
    constant ``b`` (exposed as the kernel's ``weight``, transposed when transpose_b), or None."""
    if st.node.op != "MatMul" or getattr(st.kernel, "__module__", None) != matmul_fast.__name__:
        return None
    w = getattr(st.kernel, "weight", None)
    return w if isinstance(w, np.ndarray) and w.ndim == 2 else None


def _per_channel(v, core: _Core) -> np.ndarray | None:
    """``v`` as a float64 vector over the output channels, if it is a constant of the chain's
    dtype broadcasting along the channel axis only (so the value keeps its shape); else None."""
    if not isinstance(v, np.ndarray) or v.dtype != core.dtype:
        return None
    if v.ndim > (core.rank if core.rank is not None else 2):
        return None
    for i, d in enumerate(v.shape):
        if d != 1 and not (i - v.ndim == core.axis and d == core.channels):
            return None
    if v.size == 1:
        return np.full(core.channels, v.reshape(()), np.float64)
    return v.reshape(-1).astype(np.float64)


def _as_channels(v: np.ndarray, core: _Core) -> np.ndarray:
    """A per-channel constant (see :func:`_per_channel`) with the same values, shaped to
    broadcast along the channels of an output of any rank, or of a block of its rows."""
    return v.reshape(()) if v.size == 1 else v.reshape(core.bshape)


def _other(st, cur: int) -> int | None:
    """The input of binary step ``st`` that is not ``cur`` (which it reads once), or None."""
    if len(st.ins) != 2 or st.ins.count(cur) != 1:
        return None
    return st.ins[1] if st.ins[0] == cur else st.ins[0]


def _link(st, cur: int, core: _Core, constants) -> tuple | None:
    """The chain op step ``st`` applies to ``cur`` (its only chained input), or None.

    ``("affine", fold, inplace)``: ``fold`` lists ("mul"|"add", float64 channel vector) to
    fold, ``inplace`` the epilogue ops computing the same in place; ``("residual", kind, slot)``;
    ``("act", kind, arg)``.
    """
    fn, _ = _unbind(st.kernel)
    node = st.node
    if len(st.ins) != len(node.inputs) or not st.outs or st.outs[0][0] != 0 or \
            len(st.outs) != 1:
        return None
    a = node.attrs
    act = _ACTIVATIONS.get(fn)
    if act is not None:
        if st.ins != (cur,):
            return None
        return "act", act, a.get("alpha", 0.2) if act == "leaky_relu" else None
    if fn in _BATCH_NORMS:
        fmt = a.get("data_format", "NHWC")
        if len(st.ins) != 5 or st.ins[0] != cur or a.get("is_training", True) or \
                core.kind == "matmul" or not isinstance(fmt, str) or \
                (core.axis == -1) == fmt.startswith("NC") or \
                not all(s in constants for s in st.ins[1:]):
            return None
        scale, offset, mean, var = (constants[s] for s in st.ins[1:])
        u = scale.dtype
        if u not in _FLOATS or any(v.dtype != u or v.shape != (core.channels,)
                                   for v in (scale, offset, mean, var)):
            return None
        f64 = np.float64
        inv = scale.astype(f64) / np.sqrt(var.astype(f64) + f64(a.get("epsilon", 0.0001)))
        shift = offset.astype(f64) - mean.astype(f64) * inv
        bs, dt = core.bshape, core.dtype
        return ("affine", [("mul", inv), ("add", shift)],
                [("mul", inv.astype(dt).reshape(bs)), ("add", shift.astype(dt).reshape(bs))])
    if fn is nn.BiasAdd or fn is nn.BiasAddV1:
        fmt = a.get("data_format", "NHWC") if fn is nn.BiasAdd else "NHWC"
        if not isinstance(fmt, str) or not fmt.startswith("NC"):
            along = core.axis == -1
        elif core.rank == 2:  # (the channel axis of a matrix is its last either way)
            along = True
        else:
            along = core.rank is not None and core.axis == -(core.rank - 1)
        if not along or len(st.ins) != 2 or st.ins[0] != cur or st.ins[1] == cur or \
                st.ins[1] not in constants:
            return None
        b = constants[st.ins[1]]
        if not isinstance(b, np.ndarray) or b.dtype != core.dtype or \
                b.shape != (core.channels,):
            return None
        return "affine", [("add", b.astype(np.float64))], [("add", b.reshape(core.bshape))]
    if fn in (math.Mul, math.AddV2, math.Add, math.Sub, math.RealDiv):
        other = _other(st, cur)
        if other is None:
            return None
        if fn is math.Sub or fn is math.RealDiv:
            if st.ins[0] != cur:
                return None  # (c - x, c / x: not an affine map of this form; left alone)
        v = constants.get(other)
        vec = _per_channel(v, core) if v is not None else None
        if vec is None:
            if v is not None and v.ndim > (core.rank or 2):
                return None  # (a constant widening the result: left alone)
            if fn in (math.AddV2, math.Add):
                return "residual", "add_input", other
            if fn is math.Sub:
                return "residual", "sub_input", other
            return None
        v = _as_channels(v, core)
        if fn is math.Mul:
            return "affine", [("mul", vec)], [("mul", v)]
        if fn is math.RealDiv:
            if not np.all(vec):
                return None
            return "affine", [("mul", 1.0 / vec)], [("div", v)]
        if fn is math.Sub:
            return "affine", [("add", -vec)], [("sub", v)]
        return "affine", [("add", vec)], [("add", v)]
    return None


class _Graph:
    """Who reads what, over a step list."""

    def __init__(self, steps, constants, pinned):
        self.steps = steps
        self.constants = constants
        self.pinned = pinned
        self.readers: dict[int, list[int]] = {}
        for k, st in enumerate(steps):
            for s in st.ins:
                self.readers.setdefault(s, []).append(k)
        self.claimed: set[int] = set()

    def single(self, slot: int, k: int) -> int | None:
        """The step reading output ``slot`` of step ``k``, if it is the only reader and the slot
        is the step's only output, not pinned, and the reader is not taken by another chain."""
        st = self.steps[k]
        if slot in self.pinned or len(st.outs) != 1:
            return None
        r = self.readers.get(slot, ())
        if len(r) != 1 or r[0] in self.claimed:
            return None
        return r[0]

    def out(self, k: int) -> int:
        return self.steps[k].outs[0][1]

    def is_fn(self, k: int, fns) -> bool:
        st = self.steps[k]
        return _unbind(st.kernel)[0] in fns and len(st.outs) == 1 and st.outs[0][0] == 0 and \
            len(st.ins) == len(st.node.inputs)

    def swish(self, slot: int, k: int, core: _Core) -> tuple[list[int], Any] | None:
        """(steps, beta) when output ``slot`` of step ``k`` feeds only x * sigmoid(beta * x)
        (beta None: x * sigmoid(x))."""
        r = self.readers.get(slot, ())
        if slot in self.pinned or len(self.steps[k].outs) != 1 or len(r) != 2 or \
                r[0] == r[1] or any(j in self.claimed for j in r):
            return None
        for a, b in ((r[0], r[1]), (r[1], r[0])):
            if not self.is_fn(b, (math.Mul,)):
                continue
            beta, members, sig, src = None, [a], a, slot
            if self.is_fn(a, (math.Mul,)):
                other = _other(self.steps[a], slot)
                v = self.constants.get(other) if other is not None else None
                if v is None or _per_channel(v, core) is None:
                    continue
                beta, src = _as_channels(v, core), self.out(a)
                sig = self.single(src, a)
                if sig is None:
                    continue
                members.append(sig)
            if not self.is_fn(sig, (math.Sigmoid, math.Sigmoid_scipy)) or \
                    self.steps[sig].ins != (src,) or self.single(self.out(sig), sig) != b or \
                    sorted(self.steps[b].ins) != sorted((slot, self.out(sig))):
                continue
            return members + [b], beta
        return None


def fuse(steps: list, constants: dict[int, Any], pinned: set[int]) -> list:
    """Steps with fusable chains rewritten; ``constants`` maps slot -> load-time value (those
    only the fused steps read are dropped), ``pinned`` are slots that must keep their values
    (fetched or fed)."""
    g = _Graph(steps, constants, pinned)
    replace: dict[int, Any] = {}  # step index -> fused step (or None: removed)
    for k, st in enumerate(steps):
        if k in g.claimed:
            continue
        core = _core(st, constants)
        if core is None:
            continue
        chain = _chain(g, k, core)
        if chain is None:
            continue
        members, pos, step = chain
        g.claimed.update(members)
        for j in members:
            replace[j] = None
        replace[pos] = step
    if not replace:
        return steps
    out = []
    for k, st in enumerate(steps):
        if k not in replace:
            out.append(st)
        elif replace[k] is not None:
            out.append(replace[k])
    read = {s for st in out for s in st.ins}
    for k in replace:
        for s in steps[k].ins:
            if s in constants and s not in read and s not in pinned:
                del constants[s]
    return out


def _chain(g: _Graph, k: int, core: _Core):
    """(member step indices, fused step) of the chain headed by step ``k``, or None."""
    steps = g.steps
    members = [k]
    ops: list[tuple] = []
    cur_k, cur = k, g.out(k)
    while True:
        j = g.single(cur, cur_k)
        link = _link(steps[j], cur, core, g.constants) if j is not None else None
        if link is not None:
            ops.append(link)
            members.append(j)
            cur_k, cur = j, g.out(j)
            continue
        sw = g.swish(cur, cur_k, core) if j is None else None
        if sw is not None:
            ms, beta = sw
            ops.append(("act", "swish", beta))
            members.extend(ms)
            cur_k, cur = ms[-1], g.out(ms[-1])
            continue
        break
    if not ops:
        return None
    built = _build(core, ops)
    if built is None:
        return None
    weight, epilogue = built
    first = steps[k]
    # external inputs: the core's input, then each residual operand; the fused step runs where
    # the last of them is read (all are computed by then, and its result is read only later)
    ext, pos, where = [first.ins[0]], k, {}
    # the residual steps, matched to the residual ops in order by their operand (not by
    # position: swish with beta spans several members for one op)
    residuals = [op[2] for op in ops if op[0] == "residual"]
    for j in members[1:]:
        if len(where) < len(residuals) and residuals[len(where)] in steps[j].ins:
            where[j] = len(ext)
            ext.append(residuals[len(where) - 1])
            pos = max(pos, j)
    made = set()
    program = []
    for j in members:
        st = steps[j]
        ins = []
        for i, s in enumerate(st.ins):
            if j == k and i == 0:
                ins.append(("ext", 0))
            elif s in made:
                ins.append(("slot", s))
            elif j in where:
                ins.append(("ext", where[j]))
            else:
                ins.append(("const", g.constants[s]))
        made.add(st.outs[0][1])
        program.append((st.kernel, ins, st.outs[0][1]))
    names = [steps[j].node.name for j in members]
    label = "+".join(steps[j].node.op for j in members)
    kernel = fused.FusedChain(core.kernel, weight, epilogue, fused.Unfused(program, cur),
                              f"{label} ({names[0]} .. {names[-1]})",
                              core.channels if core.axis == -1 else 0)
    node = Node(first.node.name, label, [first.node.inputs[0]],
                dict(first.node.attrs, _fused=names))
    return members, pos, Step(node, kernel, tuple(ext), ((0, cur),))


def _build(core: _Core, ops: list[tuple]):
    """(weight, epilogue ops) for ``core`` followed by ``ops``, or None if the leading affine
    ops cannot be folded (a non-finite scale or weight, or a weight too large to copy)."""
    dt = core.dtype
    scale = shift = None
    n = 0
    for op in ops:
        if op[0] != "affine":
            break
        n += 1
        for kind, vec in op[1]:
            if kind == "mul":
                scale = vec if scale is None else scale * vec
                shift = None if shift is None else shift * vec
            else:
                shift = vec if shift is None else shift + vec
    weight = core.weight
    if scale is not None:
        if not np.all(np.isfinite(scale)) or weight.nbytes > FOLD_LIMIT_BYTES or \
                not np.all(np.isfinite(weight)):
            return None
        if core.kind == "depthwise":
            scale = scale.reshape(weight.shape[2], weight.shape[3])
        elif core.w_axis % weight.ndim != weight.ndim - 1:
            scale = scale[:, None]
        w = np.multiply(weight, scale, dtype=np.float64)
        with np.errstate(over="ignore"):
            weight = w.astype(dt)
        # subnormal weights make BLAS crawl; flushing them moves each weight by < 1.2e-38
        weight[np.abs(weight) < np.finfo(dt).tiny] = 0
        if not np.all(np.isfinite(weight)):
            return None
        weight.setflags(write=False)
    epilogue, n_residual = [], 0
    if shift is not None:
        if not np.all(np.isfinite(shift)):
            return None
        if np.any(shift):
            b = shift.astype(dt).reshape(core.bshape)
            b.setflags(write=False)
            epilogue.append(fused.epilogue_op("add", dt, b))
    for op in ops[n:]:
        if op[0] == "affine":
            epilogue.extend(fused.epilogue_op(kind, dt, v) for kind, v in op[2])
        elif op[0] == "residual":
            epilogue.append(fused.epilogue_op(op[1], dt, n_residual))
            n_residual += 1
        else:
            epilogue.append(fused.epilogue_op(op[1], dt, op[2]))
    return weight, epilogue
