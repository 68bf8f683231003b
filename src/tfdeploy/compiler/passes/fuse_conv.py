"""fuse_conv: conv/matmul chains fused into one ``_FusedChain`` step.

A chain starts at a Conv2D, Conv3D, DepthwiseConv2dNative, MatMul or BatchMatMulV2 whose filter
(right-hand side) is a float32/float64 constant, or at a transposed convolution
(Conv2DBackpropInput, Conv3DBackpropInputV2) whose filter and input_sizes are constants (in a
plan specialized to its input's shape, Keras' Conv2DTranspose's are), and takes in the steps
after it for as long as the value passed on has exactly one reader and is neither fetched nor
fed:

- affine ops along the output channels, with constant operands: BiasAdd, AddV2/Add/Sub/Mul/
  RealDiv by a constant broadcasting along the channels only (Keras 3 BatchNormalization after
  constant folding), FusedBatchNorm/V2/V3 in inference mode (tf_keras);
- a residual addition (AddV2/Add; Sub with the chain on the left) of another tensor;
- activations: Relu, Relu6, LeakyRelu, Elu, Sigmoid, Tanh, GELU (``_Gelu``, from
  ``fuse_gelu``), swish, x * sigmoid(beta * x) (a value with two readers: Sigmoid, or Mul
  by a constant then Sigmoid, and the final Mul), and hard swish, x * (relu6(x + a) / c) or
  x * (relu6(x + a) * c) with scalar constants (MobileNetV3's); ``_RoundHalf`` (float16
  rounding in a float32 chain, from ``half_region``);
- Softmax, over the channels when they are last (float32/float64 chains: a float16 chain,
  rounded once at its end, would give softmax unrounded logits).

The leading affine ops fold into the weight (W * scale per output channel, in float64, rounded
once) and one bias; the rest run in place on the core's fresh output (``kernels/nn/fused.py``).

A unit-stride 1x1 NHWC Conv2D (float32/float64) also takes the steps *before* it, as its
``prologue``, when they are affine ops by constants along its input channels ending in an
activation, each value with that one reader: the pre-activation BatchNorm and ReLU of DenseNet's
layers (after each concatenation) and of pre-activation ResNets. The kernel applies them, in
order and in place, to each block of input rows it copies for its matrix product, while the
block is in cache: three full-size passes and arrays fewer (``kernels/nn/runner.py``). An NHWC
DepthwiseConv2dNative takes a lone ReLU or ReLU6 before it (NASNet's and Xception's separable
convolutions), which its kernel applies as it copies its input padded (``depthwise_2d``'s
``clip``): no pass of its own.
Steps are matched by op type, and only where the op runs tfdeploy's own numpy kernel
(``registry.runs_builtin``): a user's kernel or another implementation (scipy) is never
bypassed, the chain simply stops before it. The fused step keeps the steps it replaces
(``Step.members``), compiled as its fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tfdeploy import registry
from tfdeploy.compiler.passes.fold import FOLD_LIMIT_BYTES
from tfdeploy.compiler.patterns import other_input
from tfdeploy.compiler.plan import Plan, Step
from tfdeploy.dtypes import low_precision
from tfdeploy.runtime.constants import derived

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_F32 = np.dtype(np.float32)


def _float(dt: np.dtype) -> bool:
    """A dtype chains are made of: float32/float64, or float16/bfloat16 (computed in
    float32, as numpy has no fast kernels for them, and rounded once at the end)."""
    return dt in _FLOATS or low_precision(dt)


def _compute(dt: np.dtype) -> np.dtype:
    return _F32 if low_precision(dt) else dt
_ACTIVATIONS = {"Relu": "relu", "Relu6": "relu6", "LeakyRelu": "leaky_relu", "Elu": "elu",
                "Sigmoid": "sigmoid", "Tanh": "tanh", "_Gelu": "gelu",
                "_RoundHalf": "round_half"}
_BATCH_NORMS = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
_TRANSPOSED = ("Conv2DBackpropInput", "Conv3DBackpropInputV2")
_CORES = ("Conv2D", "Conv3D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2", *_TRANSPOSED)
_AFFINE = ("Mul", "AddV2", "Add", "Sub", "RealDiv")


@dataclass
class _Core:
    """The head of a chain: its kind, weight and the layout of its output."""

    kind: str  # conv, depthwise, matmul, transposed
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


def _plain(st: Step, n_in: int | None = None) -> bool:
    """``st`` runs tfdeploy's numpy kernel, has one output (output 0) and ``n_in`` inputs."""
    return len(st.outs) == 1 and st.outs[0][0] == 0 and \
        (n_in is None or len(st.ins) == n_in) and registry.runs_builtin(st.op)


def _core(st: Step, constants) -> _Core | None:
    """Step ``st`` as the head of a chain, or None."""
    if st.op in _TRANSPOSED:
        return _transposed(st, constants)
    if st.op not in _CORES or not _plain(st, 2):
        return None
    x, w = st.ins
    if w not in constants or x in constants:
        return None
    W = constants[w]
    if not isinstance(W, np.ndarray) or not _float(W.dtype) or W.size == 0:
        return None
    a = st.attrs
    if st.op in ("Conv2D", "Conv3D"):
        rank = 4 if st.op == "Conv2D" else 5
        fmt = a.get("data_format", "NHWC" if rank == 4 else "NDHWC")
        if W.ndim != rank or not isinstance(fmt, str):
            return None
        return _Core("conv", W, rank - 1, rank, -(rank - 1) if fmt.startswith("NC") else -1,
                     W.shape[-1])
    if st.op == "DepthwiseConv2dNative":
        fmt = a.get("data_format", "NHWC")
        if W.ndim != 4 or not isinstance(fmt, str):
            return None
        return _Core("depthwise", W, 3, 4, -3 if fmt.startswith("NC") else -1,
                     W.shape[2] * W.shape[3])
    tb = a.get("transpose_b", False) if st.op == "MatMul" else a.get("adj_y", False)
    if W.ndim != 2:
        return None
    return _Core("matmul", W, 0 if tb else 1, 2 if st.op == "MatMul" else None, -1,
                 W.shape[0] if tb else W.shape[1])


def _transposed(st: Step, constants) -> _Core | None:
    """A transposed convolution (Conv2DBackpropInput, Conv3DBackpropInputV2) whose
    ``input_sizes`` and filter are constants (a plan specialized to its input's shape: a Keras
    Conv2DTranspose computes the sizes from its input's batch) as the head of a chain: its
    filter [*K, C, O] makes C output channels."""
    if not _plain(st, 3):
        return None
    sizes, w, dy = st.ins
    if sizes not in constants or w not in constants or dy in constants:
        return None
    W, S = constants[w], constants[sizes]
    rank = 4 if st.op == "Conv2DBackpropInput" else 5
    fmt = st.attrs.get("data_format", "NHWC" if rank == 4 else "NDHWC")
    if not isinstance(W, np.ndarray) or not _float(W.dtype) or W.size == 0 or \
            W.ndim != rank or not isinstance(fmt, str) or \
            not isinstance(S, np.ndarray) or S.dtype.kind not in "iu" or S.ndim != 1:
        return None
    return _Core("transposed", W, rank - 2, rank, -(rank - 1) if fmt.startswith("NC") else -1,
                 W.shape[-2])


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



def _batch_norm(st: Step, cur: int, core: _Core, constants) -> tuple | None:
    a = st.attrs
    fmt = a.get("data_format", "NHWC")
    if len(st.ins) != 5 or st.ins[0] != cur or a.get("is_training", True) or \
            core.kind == "matmul" or not isinstance(fmt, str) or \
            (core.axis == -1) == fmt.startswith("NC") or \
            not all(s in constants for s in st.ins[1:]):
        return None
    scale, offset, mean, var = (constants[s] for s in st.ins[1:])
    u = scale.dtype
    if not _float(u) or any(v.dtype != u or v.shape != (core.channels,)
                               for v in (scale, offset, mean, var)):
        return None
    f64 = np.float64
    inv = scale.astype(f64) / np.sqrt(var.astype(f64) + f64(a.get("epsilon", 0.0001)))
    shift = offset.astype(f64) - mean.astype(f64) * inv
    bs, dt = core.bshape, core.dtype
    return ("affine", [("mul", inv), ("add", shift)],
            [("mul", inv.astype(dt).reshape(bs)), ("add", shift.astype(dt).reshape(bs))])


def _bias_add(st: Step, cur: int, core: _Core, constants) -> tuple | None:
    fmt = st.attrs.get("data_format", "NHWC") if st.op == "BiasAdd" else "NHWC"
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
    if not isinstance(b, np.ndarray) or b.dtype != core.dtype or b.shape != (core.channels,):
        return None
    return "affine", [("add", b.astype(np.float64))], [("add", b.reshape(core.bshape))]


def _affine(st: Step, cur: int, core: _Core, constants) -> tuple | None:
    other = other_input(st, cur)
    if other is None:
        return None
    if st.op in ("Sub", "RealDiv") and st.ins[0] != cur:
        return None  # (c - x, c / x: not an affine map of this form; left alone)
    v = constants.get(other)
    vec = _per_channel(v, core) if v is not None else None
    if vec is None:
        if v is not None and v.ndim > (core.rank or 2):
            return None  # (a constant widening the result: left alone)
        if st.op in ("AddV2", "Add"):
            return "residual", "add_input", other
        if st.op == "Sub":
            return "residual", "sub_input", other
        return None
    v = _as_channels(v, core)
    if st.op == "Mul":
        return "affine", [("mul", vec)], [("mul", v)]
    if st.op == "RealDiv":
        if not np.all(vec):
            return None
        return "affine", [("mul", 1.0 / vec)], [("div", v)]
    if st.op == "Sub":
        return "affine", [("add", -vec)], [("sub", v)]
    return "affine", [("add", vec)], [("add", v)]


def _link(st: Step, cur: int, core: _Core, constants) -> tuple | None:
    """The chain op step ``st`` applies to ``cur`` (its only chained input), or None.

    ``("affine", fold, inplace)``: ``fold`` lists ("mul"|"add", float64 channel vector) to
    fold, ``inplace`` the epilogue ops computing the same in place; ``("residual", kind,
    value)``; ``("act", kind, arg)``.
    """
    if not _plain(st):
        return None
    act = _ACTIVATIONS.get(st.op)
    if act is not None:
        if st.ins != (cur,):
            return None
        arg = st.attrs.get("alpha", 0.2) if act == "leaky_relu" else \
            st.attrs.get("approximate", "erfc") if act == "gelu" else None
        return "act", act, arg
    if st.op == "Softmax":  # over the last axis: the channels, when they are last
        if st.ins != (cur,) or core.axis != -1 or core.dtype not in _FLOATS:
            return None
        return "act", "softmax", None
    if st.op in _BATCH_NORMS:
        return _batch_norm(st, cur, core, constants)
    if st.op in ("BiasAdd", "BiasAddV1"):
        return _bias_add(st, cur, core, constants)
    if st.op in _AFFINE:
        return _affine(st, cur, core, constants)
    return None


class _Readers:
    """Who reads what, over a step list (and which step makes each value)."""

    def __init__(self, steps: list[Step], constants, pinned):
        self.steps = steps
        self.constants = constants
        self.pinned = pinned
        self.readers: dict[int, list[int]] = {}
        self.maker: dict[int, int] = {}
        for k, st in enumerate(steps):
            for s in st.ins:
                self.readers.setdefault(s, []).append(k)
            for _, v in st.outs:
                self.maker[v] = k
        self.claimed: set[int] = set()

    def single(self, value: int, k: int) -> int | None:
        """The step reading output ``value`` of step ``k``, if it is the only reader and the
        value is the step's only output, not pinned, and the reader not taken by a chain."""
        if value in self.pinned or len(self.steps[k].outs) != 1:
            return None
        r = self.readers.get(value, ())
        if len(r) != 1 or r[0] in self.claimed:
            return None
        return r[0]

    def out(self, k: int) -> int:
        return self.steps[k].outs[0][1]

    def is_op(self, k: int, op: str) -> bool:
        return self.steps[k].op == op and _plain(self.steps[k])

    def swish(self, value: int, k: int, core: _Core) -> tuple[list[int], Any] | None:
        """(steps, beta) when output ``value`` of step ``k`` feeds only x * sigmoid(beta * x)
        (beta None: x * sigmoid(x))."""
        r = self.readers.get(value, ())
        if value in self.pinned or len(self.steps[k].outs) != 1 or len(r) != 2 or \
                r[0] == r[1] or any(j in self.claimed for j in r):
            return None
        for a, b in ((r[0], r[1]), (r[1], r[0])):
            if not self.is_op(b, "Mul"):
                continue
            beta, members, sig, src = None, [a], a, value
            if self.is_op(a, "Mul"):
                other = other_input(self.steps[a], value)
                v = self.constants.get(other) if other is not None else None
                if v is None or _per_channel(v, core) is None:
                    continue
                beta, src = _as_channels(v, core), self.out(a)
                sig = self.single(src, a)
                if sig is None:
                    continue
                members.append(sig)
            if not self.is_op(sig, "Sigmoid") or self.steps[sig].ins != (src,) or \
                    self.single(self.out(sig), sig) != b or \
                    sorted(self.steps[b].ins) != sorted((value, self.out(sig))):
                continue
            return members + [b], beta
        return None


    def hard_swish(self, value: int, k: int) -> tuple[list[int], Any] | None:
        """(steps, (a, "div" or "mul", c)) when output ``value`` of step ``k`` feeds only
        x * (relu6(x + a) / c) or x * (relu6(x + a) * c), a and c scalar constants (Keras'
        hard_swish: a = 3, c = 6 or 1/6)."""
        r = self.readers.get(value, ())
        if value in self.pinned or len(self.steps[k].outs) != 1 or len(r) != 2 or \
                r[0] == r[1] or any(j in self.claimed for j in r):
            return None
        for a, b in ((r[0], r[1]), (r[1], r[0])):
            if not self.is_op(b, "Mul") or not (self.is_op(a, "AddV2") or self.is_op(a, "Add")):
                continue
            shift = self._scalar(other_input(self.steps[a], value))
            r6 = self.single(self.out(a), a)
            if shift is None or r6 is None or not self.is_op(r6, "Relu6") or \
                    self.steps[r6].ins != (self.out(a),):
                continue
            d = self.single(self.out(r6), r6)
            if d is None or not (self.is_op(d, "RealDiv") or self.is_op(d, "Mul")) or \
                    (self.steps[d].op == "RealDiv" and self.steps[d].ins[0] != self.out(r6)):
                continue
            scale = self._scalar(other_input(self.steps[d], self.out(r6)))
            if scale is None or self.single(self.out(d), d) != b or \
                    sorted(self.steps[b].ins) != sorted((value, self.out(d))):
                continue
            op = "div" if self.steps[d].op == "RealDiv" else "mul"
            return [a, r6, d, b], (shift, op, scale)
        return None

    def _scalar(self, v: int | None) -> np.ndarray | None:
        """The 0-d value of a float constant of one element, or None."""
        c = self.constants.get(v) if v is not None else None
        if not isinstance(c, np.ndarray) or c.size != 1 or c.dtype not in _FLOATS:
            return None
        return c.reshape(())


def run(plan: Plan, ctx=None) -> Plan:
    """The plan with fusable chains rewritten."""
    steps, constants = plan.steps, plan.constants
    g = _Readers(steps, constants, set(plan.fetch_values) | set(plan.feed_values))
    replace: dict[int, Step | None] = {}  # step index -> fused step (or None: removed)
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
    if replace:
        plan.steps = [replace[k] if k in replace else st for k, st in enumerate(steps)
                      if replace.get(k, st) is not None]
    return plan


def _follow(g: _Readers, k: int, core: _Core) -> tuple[list[int], list[tuple], int]:
    """(member step indices, chain ops, final value) of the chain headed by step ``k``."""
    members, ops = [k], []
    cur_k, cur = k, g.out(k)
    while True:
        j = g.single(cur, cur_k)
        link = _link(g.steps[j], cur, core, g.constants) if j is not None else None
        if link is not None:
            ops.append(link)
            members.append(j)
            cur_k, cur = j, g.out(j)
            continue
        sw = g.swish(cur, cur_k, core) if j is None else None
        if sw is not None:
            ms, beta = sw
            ops.append(("act", "swish", beta))
        else:
            hs = g.hard_swish(cur, cur_k) if j is None else None
            if hs is None:
                return members, ops, cur
            ms, arg = hs
            ops.append(("act", "hard_swish", arg))
        members.extend(ms)
        cur_k, cur = ms[-1], g.out(ms[-1])


#: the activations a prologue may end in (elementwise, computed in place on a block)
_PROLOGUE_ACTS = {"Relu": "relu", "Relu6": "relu6", "LeakyRelu": "leaky_relu", "Elu": "elu",
                  "Sigmoid": "sigmoid", "Tanh": "tanh"}


def pointwise_conv(attrs: dict, weight) -> bool:
    """A Conv2D of these attributes and this weight is a unit-stride 1x1 NHWC convolution: a
    product over each pixel's channels, which the conv kernel runs by blocks of pixels (so it
    takes a prologue here, and a squeeze-excite scale in ``scale_into_conv``)."""
    return getattr(weight, "ndim", 0) == 4 and weight.shape[:2] == (1, 1) and \
        attrs.get("data_format", "NHWC") == "NHWC" and \
        list(attrs.get("strides", ())) == [1, 1, 1, 1] and \
        list(attrs.get("dilations", [1, 1, 1, 1])) == [1, 1, 1, 1] and \
        attrs.get("padding") in ("SAME", "VALID")


def _pointwise(st: Step, core: _Core) -> bool:
    """``st`` is a unit-stride 1x1 NHWC Conv2D of float32/float64 (``pointwise_conv``)."""
    return st.op == "Conv2D" and core.dtype in _FLOATS and pointwise_conv(st.attrs, core.weight)


def _prologue(g: _Readers, k: int, core: _Core) -> tuple[list[int], list, int] | None:
    """(member steps in plan order, prologue ops, the value they start from) of the steps
    before the pointwise conv ``k`` that it can apply to its input blocks: affine ops by
    constants along the input channels (inference BatchNorms among them, as x * scale +
    shift), then an activation, each value read only by the next step (and neither fed nor
    fetched); before a depthwise conv ``k``, a lone ReLU or ReLU6 (NASNet's and Xception's
    separable convolutions), which it applies as it copies its input padded; or None."""
    st = g.steps[k]
    depthwise = st.op == "DepthwiseConv2dNative" and core.dtype in _FLOATS and \
        st.attrs.get("data_format", "NHWC") == "NHWC"
    if not _pointwise(st, core) and not depthwise:
        return None
    c_in = core.weight.shape[2]
    inputs = _Core("conv", core.weight, 2, 4, -1, c_in)  # (the input's channels)
    v, reader = g.steps[k].ins[0], k
    j = g.maker.get(v)
    if j is None or j in g.claimed or g.single(v, j) != reader:
        return None
    st = g.steps[j]
    act = _PROLOGUE_ACTS.get(st.op)
    if act is None or not _plain(st, 1):
        return None
    arg = st.attrs.get("alpha", 0.2) if act == "leaky_relu" else None
    members, ops = [j], [(act, arg)]
    v, reader = st.ins[0], j
    if depthwise:  # (a lone ReLU/ReLU6, clipped as the kernel copies its input padded)
        return (members, ops, v) if act in ("relu", "relu6") and v not in g.constants \
            else None
    while True:
        j = g.maker.get(v)
        if j is None or j in g.claimed or g.single(v, j) != reader:
            break
        st = g.steps[j]
        chained = [u for u in st.ins if u not in g.constants]  # (the others constants)
        if len(chained) != 1 or not _plain(st):
            break
        if st.op in _BATCH_NORMS:
            link = _batch_norm(st, chained[0], inputs, g.constants)
        elif st.op in _AFFINE and len(st.ins) == 2:
            link = _affine(st, chained[0], inputs, g.constants)
        else:
            break
        if link is None or link[0] != "affine":
            break
        members.insert(0, j)
        ops[:0] = link[2]
        v, reader = chained[0], j
    if v in g.constants:
        return None
    return members, ops, v


def _chain(g: _Readers, k: int, core: _Core):
    """(member step indices, position, fused step) of the chain headed by step ``k``, or
    None."""
    members, ops, cur = _follow(g, k, core)
    pro = _prologue(g, k, core)
    if not ops and pro is None:
        return None
    built = _build(core, ops)
    if built is None:
        return None
    weight, epilogue = built
    steps = g.steps
    first = steps[k]
    # external inputs: the core's input (or its prologue's), then each residual operand; the
    # fused step runs where the last of them is read (all are computed by then, and its
    # result is read only later)
    x = first.ins[2] if core.kind == "transposed" else first.ins[0]
    ext, pos, n_res = [x if pro is None else pro[2]], k, 0
    # the residual steps, matched to the residual ops in order by their operand (not by
    # position: swish with beta spans several members for one op)
    residuals = [op[2] for op in ops if op[0] == "residual"]
    for j in members[1:]:
        if n_res < len(residuals) and residuals[n_res] in steps[j].ins:
            ext.append(residuals[n_res])
            n_res += 1
            pos = max(pos, j)
    core_attrs = {a: v for a, v in first.attrs.items() if not a.startswith("_")}
    if core.kind == "transposed":
        core_attrs["input_sizes"] = [int(v) for v in g.constants[first.ins[0]]]
    if pro is not None:
        members = pro[0] + members
    label = "+".join(steps[j].op for j in members)
    attrs = {"core": first.op, "core_attrs": core_attrs, "weight": weight,
             "epilogue": epilogue, "channels": core.channels if core.axis == -1 else 0,
             "_label": f"{label} ({steps[members[0]].name} .. {steps[members[-1]].name})"}
    if pro is not None:
        attrs["prologue"] = pro[1]
    if weight.dtype != core.dtype:  # computed in float32, rounded to the chain's dtype
        attrs["dtype"] = str(core.dtype)
    fused = Step("_FusedChain", first.name, tuple(ext), ((0, cur),), attrs,
                 members=tuple(steps[j] for j in members))
    return members, pos, fused


def _fold_scale(core: _Core, ops: list[tuple]):
    """(scale, shift, number of leading affine ops): the per-channel float64 map those ops
    apply (scale None: 1; shift None: 0)."""
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
    return scale, shift, n


#: ``_scaled_weight`` scales a weight by chunks of about this many values (its float64
#: products stay in cache)
_SCALE_CHUNK = 1 << 15


def _scaled_weight(core: _Core, scale: np.ndarray) -> np.ndarray | None:
    """The weight with ``scale`` folded in along its output channels, or None (non-finite, or
    too large to copy): each value's float64 product rounded once, subnormal results flushed
    to 0. By chunks of rows: a 3 x 3 x 512 x 512 weight took 13.8 ms as whole-weight passes
    (a float64 copy of it, then masks over it), 3.5 ms so; ResNet50's 49 folds in its first
    call 0.13 -> 0.085 s (the rest mostly page faults of the new arrays)."""
    weight, dt = core.weight, core.dtype
    if not np.all(np.isfinite(scale)) or weight.nbytes > FOLD_LIMIT_BYTES:
        return None
    if core.kind == "depthwise":
        scale = scale.reshape(weight.shape[2], weight.shape[3])
    elif core.w_axis % weight.ndim != weight.ndim - 1:
        scale = scale[:, None]
    dt = _compute(dt)
    # the scale over the weight's last axes, flat: each row of the weight viewed as
    # [rows, tail] takes it whole
    tail = weight.shape[weight.ndim - scale.ndim:]
    row_scale = np.broadcast_to(scale, tail).reshape(-1)
    rows = weight.reshape(-1, row_scale.size)
    out = np.empty(weight.shape, dt)
    flat = out.reshape(rows.shape)
    step = max(1, _SCALE_CHUNK // max(row_scale.size, 1))
    tiny = np.finfo(dt).tiny
    wide = np.empty((min(step, rows.shape[0]), row_scale.size))  # (float64)
    mag = np.empty(wide.shape, dt)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(0, rows.shape[0], step):
            o = flat[i:i + step]
            p, a = wide[:o.shape[0]], mag[:o.shape[0]]
            np.copyto(p, rows[i:i + step])  # (one dtype a call: a mixed-type product is slower)
            p *= row_scale
            np.copyto(o, p, casting="same_kind")
            # subnormal weights make BLAS crawl; flushing them moves each weight by < 1.2e-38
            np.abs(o, out=a)
            if not np.minimum.reduce(a, None) >= tiny:
                o[a < tiny] = 0
    # an inf or NaN weight, or a product past float32's range (min and max propagate NaN)
    if not (np.isfinite(np.minimum.reduce(out, None)) and
            np.isfinite(np.maximum.reduce(out, None))):
        return None
    out.setflags(write=False)
    return out


def _widened(w: np.ndarray, dt: np.dtype) -> np.ndarray:
    w = w.astype(dt)
    w.setflags(write=False)
    return w


def _build(core: _Core, ops: list[tuple]):
    """(weight, epilogue) for ``core`` followed by ``ops``, or None if the leading affine ops
    cannot be folded; the epilogue as (kind, argument) pairs (``kernels/nn/fused.py``)."""
    dt = _compute(core.dtype)
    scale, shift, n = _fold_scale(core, ops)
    weight = core.weight
    # kept with the model's weight (``runtime.constants.derived``): the plan of every shape
    # shares one folded copy (each held its own: ResNet50's 94 MB per batch size)
    if scale is not None:
        weight = derived(weight, ("scaled", core.kind, core.w_axis, scale.tobytes()),
                         lambda: _scaled_weight(core, scale))
        if weight is None:
            return None
    elif weight.dtype != dt:  # float16/bfloat16: the weight in float32 once, not per call
        weight = derived(weight, ("widened", dt.str), lambda: _widened(core.weight, dt))
    epilogue, n_residual = [], 0
    if shift is not None:
        if not np.all(np.isfinite(shift)):
            return None
        if np.any(shift):
            b = shift.astype(dt).reshape(core.bshape)
            b.setflags(write=False)
            epilogue.append(("add", b))
    for op in ops[n:]:
        if op[0] == "affine":
            epilogue.extend(op[2])
        elif op[0] == "residual":
            epilogue.append((op[1], n_residual))
            n_residual += 1
        else:
            epilogue.append((op[1], op[2]))
    return weight, epilogue
