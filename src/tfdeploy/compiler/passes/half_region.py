"""half_region: a float16 region (convolutions, a transformer's layers) computed in float32 on
arrays holding float16 values, so that ``fuse_conv`` chains it.

A mixed_float16 convolutional network (Keras' ``mixed_float16`` policy) alternates float16
convolutions with float32 BatchNormalization: ``Conv2D (float16) -> Cast (to float32) -> Mul
-> AddV2 -> Cast (to float16) -> Relu6 (float16) -> ...``. The Casts break every chain, and
numpy computes float16 arithmetic (and converts float16) a value at a time: such a
MobileNetV2 took 6-27x its float32 twin's time. Here, before ``fuse_conv``, those steps
compute in float32 on float32 arrays that hold float16 values, rounding to float16 where TF's
float16 op rounds its result (``_RoundHalf``, ``numerics/half.py``: the same values as
``astype(np.float16)``):

- a ``Cast`` from float32 to float16 becomes ``_RoundHalf`` (its value stays float32);
- a ``Cast`` from float16 to float32 of such a value is dropped (its readers read the value);
- ``Conv2D``, ``DepthwiseConv2dNative``, ``BiasAdd``, ``AddV2``/``Add``, ``Sub``, ``Mul`` and
  ``RealDiv`` of such values and float16 constants (made float32, exactly) compute in float32
  and round their result. For the arithmetic ops this is exactly the float16 op: float32
  keeps more than 2 * 11 + 2 bits, so rounding twice (to float32, then to float16) gives the
  correctly rounded float16 result (Figueroa). A convolution read only by a ``BiasAdd``, or
  a convolution or ``BiasAdd`` read only by a Cast to float32 (a BatchNormalization), is not
  rounded: its chain rounds once, at its end, as ``fuse_conv``'s float16 chains do (a
  float16 rounding from TF's values, which round after each op), and the BatchNormalization
  folds into the weights (where the float32 values never return to float16, a float32
  output of the model, they are not rounded at all: closer to the exact values than TF's);
- ``Sigmoid`` and ``Tanh`` compute in float32 and round once (TF's float16 kernels may
  round along the way: the results differ by a float16 rounding); in a swish,
  ``x * sigmoid(x)`` or ``x * sigmoid(b * x)``, only the product rounds (not even the Cast
  making x, a BatchNormalization's), so that ``fuse_conv`` takes the swish into the chain;
- a transformer's float16 layers (Keras 3 Dense layers on 3-D inputs, attention, GELU,
  RMSNorm...): batched matrix products (``BatchMatMulV2``, ``Einsum``; read only by a BiasAdd
  they round with it, as convolutions do), ``Erf``, ``Erfc``, ``Pow``, ``Square``, ``Sqrt``,
  ``Rsqrt``, ``Exp``, ``Log``, ``Reciprocal``, and the reductions ``Mean`` and ``Sum`` (summed in
  float32) compute in float32 and round once, as TF's float16 kernels do when they compute in
  float (where numpy's float16 kernels, ``Rsqrt`` = 1 / sqrt say, round twice);
- ``Relu``, ``Relu6``, ``Identity``, ``Neg``, ``Abs``, ``Maximum`` and ``Minimum`` need no
  rounding (their results are among their inputs' values, 0 and 6, or negate them), nor do
  MaxPool, Pad, Split, ConcatV2, Reshape, StridedSlice, GatherV2, SelectV2 and the like (they
  move or select values);
- a Cast to float16 read by a Cast back to float32 (a float32 layer after a float16 one) is a
  rounding of the value, the second Cast dropped;
- ``_Rotary``, ``_Attention`` and ``_Gelu``, fused before this pass from float16 ops (a
  float16 GELU's constants are rounded to float16: ``fuse_gelu`` takes those), compute in
  float32 (their float16 tables and masks made float32, a GELU with its exact constants) and
  round once (TF rounds after each of their ops: a float16 rounding of difference).

Against their float32 twins, one thread: a mixed transformer block at batch 8 took 3.7x before
the transformer ops joined the region, 1.9x after; GPT-2- and Llama-style models 22x and 10x,
3.2x and 3.1x after (the roundings, eight numpy passes each, are most of what remains).

2-D matrix products (``MatMul``) are left out: ``fuse_conv``'s float16 chains and
``fuse_half``'s float32 stacks take a mixed Dense stack, and a float16 one reading a value of
the region gets a float16 copy, as every step outside the region does (``fuse_half`` takes the
copy's Cast as its stack's rounding of its input). ``fuse_conv`` then makes ``Conv2D + Mul +
AddV2 + _RoundHalf + Relu6`` one float32 chain, its BatchNorm in its weights, and a float16
Dense layer ``BatchMatMulV2 + BiasAdd + _RoundHalf``. (A float16 ``_Attention``, fused before
this pass from hand-written attention, computes in float32 and rounds its result:
``kernels/nn/transformer.py``.)
"""

from __future__ import annotations

import numpy as np

from tfdeploy.compiler.patterns import Dataflow, builtin, fused_step, plain_cast, replace
from tfdeploy.compiler.plan import Plan, Step
from tfdeploy.runtime.constants import derived

_F16, _F32 = np.dtype(np.float16), np.dtype(np.float32)
#: batched matrix products (a transformer's Dense layers and attention) join the region; 2-D
#: MatMul stays with fuse_half (a mixed Dense stack: one float32 stack)
_BATCHED = ("BatchMatMulV2", "BatchMatMulV3", "BatchMatMul", "Einsum")
_ROUNDED = frozenset(("Conv2D", "DepthwiseConv2dNative", "BiasAdd", "AddV2", "Add", "Sub",
                      "Mul", "RealDiv", "Sigmoid", "Tanh", "Erf", "Erfc", "Pow", "Square",
                      "Sqrt", "Rsqrt", "Exp", "Log", "Reciprocal", *_BATCHED))
_EXACT = frozenset(("Relu", "Relu6", "Identity", "Neg", "Abs", "Maximum", "Minimum"))
_PRODUCTS = ("Conv2D", "DepthwiseConv2dNative", *_BATCHED)
#: ops that only move, select or pad their float16 inputs (exact in float32): the positions of
#: their float16 inputs (None: all but the last); the others are integers (sizes, axes) or,
#: for SelectV2, the condition
_STRUCTURAL = {"MaxPool": (0,), "Pad": (0,), "PadV2": (0, 2), "MirrorPad": (0,),
               "SplitV": (0,), "Split": (1,), "ConcatV2": None, "Reshape": (0,),
               "Squeeze": (0,), "ExpandDims": (0,), "Transpose": (0,), "StridedSlice": (0,),
               "Slice": (0,), "GatherV2": (0,), "Tile": (0,), "BroadcastTo": (0,),
               "SelectV2": (1, 2)}
#: reductions of float16 values (the positions of those; the others are axes), summed in
#: float32 and rounded once
_REDUCTIONS = {"Mean": (0,), "Sum": (0,)}
#: steps fused before this pass from float16 ops that compute in float32 on float32 arrays
#: (their float16 constants made float32, exactly), then round once: the positions of their
#: float16 inputs (an attention's other input is a mask: float16 or boolean; a packed one's
#: q, k and v are its input 0)
_FUSED = {"_Rotary": (0,), "_Attention": (0, 1, 2), "_Gelu": (0,), "_Gated": (0,)}


def _member(st: Step, half: set[int]) -> bool:
    """``st`` is a float16 op of the region: all its float16 inputs are values of it (or
    float16 constants)."""
    if not st.ins or not builtin(st):
        return False
    if st.op in _STRUCTURAL or st.op in _REDUCTIONS:
        data = _data(st)
        return bool(st.outs) and all((v in half) == (k in data) for k, v in enumerate(st.ins))
    if st.op in _FUSED:
        pos = (0,) if st.attrs.get("packed") else _FUSED[st.op]  # (q, k, v in one)
        return len(st.outs) == 1 and st.outs[0][0] == 0 and len(st.ins) >= len(pos) and \
            all(st.ins[k] in half for k in pos)
    return (st.op in _ROUNDED or st.op in _EXACT) and len(st.outs) == 1 and \
        st.outs[0][0] == 0 and all(v in half for v in st.ins)


def _data(st: Step) -> set[int]:
    """The positions of a structural step's (or a reduction's) float16 inputs."""
    pos = _STRUCTURAL[st.op] if st.op in _STRUCTURAL else _REDUCTIONS[st.op]
    return set(range(len(st.ins) - 1)) if pos is None else set(pos)


def run(plan: Plan, ctx=None) -> Plan:
    """The plan with its float16 region in float32 (unchanged when it has none)."""
    half = {v for v, c in plan.constants.items()
            if isinstance(c, np.ndarray) and c.dtype == _F16}
    casts_in: list[Step] = []
    region: list[Step] = []
    for st in plan.steps:
        if plain_cast(st, "float32", "float16"):
            half.add(st.outs[0][1])
            casts_in.append(st)
        elif _member(st, half):
            half.update(v for _, v in st.outs)
            region.append(st)
    if not region:
        return plan
    rw = _Rewrite(plan, region, casts_in)
    if not any(st.op in _ROUNDED for st in region) and not rw.casts_in:
        return plan
    out: list[Step] = []
    for st in plan.steps:
        if id(st) in rw.casts_in and rw.swish_input(st.outs[0][1]):
            rw.rename[st.outs[0][1]] = st.ins[0]  # (the swish's product rounds)
        elif id(st) in rw.casts_in:
            out.append(Step("_RoundHalf", st.name, st.ins, st.outs, {}))
        elif id(st) in rw.inside:
            rw.member(st, out)
        else:
            rw.outside(st, out)
    for k, v in enumerate(plan.fetch_values):
        if v in rw.values:  # (a fetched region value: its float16 array)
            plan.fetch_values = plan.fetch_values[:k] + (rw.to_half(out, v, "fetch"),) + \
                plan.fetch_values[k + 1:]
    plan.steps = out
    _rounded_tables(plan)
    return plan


def _rounded_tables(plan: Plan) -> None:
    """A ``_RoundHalf`` of a lookup in a constant float32 table (``_WrappedGather``: a
    mixed_float16 Embedding, its float32 variable gathered, then cast) alone reading it: one
    lookup in the table rounded once here (the rounding of a gathered value is the gathered
    rounded value); its fallback, the unfused steps, rounds after them."""
    flow = Dataflow(plan)
    for st in list(plan.steps):
        if st.op != "_RoundHalf" or len(st.ins) != 1:
            continue
        g = flow.step(st.ins[0], "_WrappedGather")
        table = g.attrs.get("params") if g is not None else None
        if g is None or flow.only_reader(st.ins[0]) is not st or \
                not isinstance(table, np.ndarray) or table.dtype != _F32 or not builtin(g):
            continue
        rounded = derived(table, "round_half", lambda t=table: _rounded(t))
        replace(plan, [g, st], fused_step("_WrappedGather", [*g.members, st], g.ins,
                                          st.outs[0][1], {**g.attrs, "params": rounded}))


def _rounded(table: np.ndarray) -> np.ndarray:
    """``table`` rounded to float16 values, float32, read-only (shared by a model's plans)."""
    from tfdeploy.numerics.half import round_to_float16

    r = round_to_float16(np.ascontiguousarray(table))
    r.setflags(write=False)
    return r


class _Rewrite:
    """The rewriting of one plan's region: its steps, the values it computes, and the
    values made for it (float32 constants, float16 copies for other readers)."""

    def __init__(self, plan: Plan, region: list[Step], casts_in: list[Step]):
        self.plan = plan
        self.inside = {id(st) for st in region}
        flow = Dataflow(plan)
        self.readers, self.pinned = flow.readers, flow.pinned
        self.producer = {v: st for v, (st, _) in flow.producer.items()}
        # casts to float16 read by no step of the region stay as they are, but for those
        # cast back to float32 (a float32 layer after a float16 one: the pair is a rounding)
        kept = [st for st in casts_in
                if any(id(r) in self.inside or plain_cast(r, "float16", "float32")
                       for r in self.readers.get(st.outs[0][1], ()))]
        self.casts_in = {id(st) for st in kept}
        self.values = {v for st in region for _, v in st.outs} | \
            {st.outs[0][1] for st in kept}
        self.f32_const: dict[int, int] = {}
        self.rename: dict[int, int] = {}     # a dropped Cast's output -> the value it cast
        self.boundary: dict[int, int] = {}   # a region value -> its float16 copy

    def as_f32(self, v: int) -> int:
        """``v``, or for a float16 constant a float32 constant of its values."""
        consts = self.plan.constants
        c = consts.get(v)
        if not isinstance(c, np.ndarray) or c.dtype != _F16:
            return v
        if v not in self.f32_const:
            w = self.plan.new_value()
            consts[w] = np.asarray(c, _F32)  # (float16 to float32: exact)
            self.f32_const[v] = w
        return self.f32_const[v]

    def member(self, st: Step, out: list[Step]) -> None:
        """A step of the region, in float32 (and its rounding after it)."""
        st.ins = tuple(self.as_f32(self.rename.get(v, v)) for v in st.ins)
        if st.op in _FUSED:  # (its tables and scales: float16 to float32, exact)
            st.attrs = {k: a.astype(_F32) if isinstance(a, np.ndarray) and a.dtype == _F16
                        else a for k, a in st.attrs.items()}
        if st.op in _STRUCTURAL or st.op in _EXACT or self._rounded_later(st):
            out.append(st)
            return
        v, t = st.outs[0][1], self.plan.new_value()
        if v in self.plan.shapes:
            self.plan.shapes[t] = self.plan.shapes[v]
        st.outs = ((0, t),)
        out.append(st)
        out.append(Step("_RoundHalf", st.name, (t,), ((0, v),), {}))

    def _rounded_later(self, st: Step) -> bool:
        """A convolution read only by a BiasAdd of the region, a convolution or BiasAdd read
        only by a Cast to float32, or the inner steps of a swish (``x * sigmoid(x)``, or of
        ``b * x``): its chain rounds once, at its end."""
        v = st.outs[0][1]
        rs = self.readers.get(v, ())
        if v in self.pinned or len(rs) != 1:
            return False
        if st.op == "Sigmoid":
            return self._swish_sigmoid(st)
        if st.op == "Mul" and rs[0].op == "Sigmoid" and id(rs[0]) in self.inside and \
                self._scalar_input(st) is not None:
            return self._swish_sigmoid(rs[0])
        if plain_cast(rs[0], "float16", "float32") and rs[0].outs[0][1] not in self.pinned:
            return st.op in _PRODUCTS or st.op in ("BiasAdd", "BiasAddV1")
        return st.op in _PRODUCTS and rs[0].op in ("BiasAdd", "BiasAddV1") and \
            id(rs[0]) in self.inside

    def swish_input(self, v: int) -> bool:
        """``v`` is read only by a swish of the region, ``v * sigmoid(v)`` or
        ``v * sigmoid(b * v)``: a Cast making it need not round (the product does)."""
        rs = self.readers.get(v, ())
        if v in self.pinned or len(rs) != 2 or not all(id(r) in self.inside for r in rs):
            return False
        for first, last in (rs, rs[::-1]):
            sig = first
            if first.op == "Mul" and self._scalar_input(first) == v:
                after = self.readers.get(first.outs[0][1], ())
                sig = after[0] if len(after) == 1 else first
            if sig.op == "Sigmoid" and self._swish_sigmoid(sig) and \
                    self.readers[sig.outs[0][1]][0] is last and v in last.ins:
                return True
        return False

    def _scalar_input(self, st: Step) -> int | None:
        """The other input of a binary step one of whose inputs is a constant of one value."""
        for k, v in enumerate(st.ins):
            c = self.plan.constants.get(v)
            if isinstance(c, np.ndarray) and c.size == 1 and len(st.ins) == 2:
                return st.ins[1 - k]
        return None

    def _swish_sigmoid(self, sig: Step) -> bool:
        """``sig`` (a Sigmoid of the region, of x or of a Mul of x by a constant) is read only
        by a Mul of the region of x and itself."""
        v, src = sig.outs[0][1], sig.ins[0]
        rs = self.readers.get(v, ())
        if v in self.pinned or len(rs) != 1 or rs[0].op != "Mul" or \
                id(rs[0]) not in self.inside:
            return False
        x = src
        pm = self.producer.get(src)
        if pm is not None and pm.op == "Mul" and id(pm) in self.inside and \
                len(self.readers.get(src, ())) == 1 and src not in self.pinned:
            scaled = self._scalar_input(pm)
            x = src if scaled is None else scaled
        ren = self.rename
        return sorted(ren.get(w, w) for w in rs[0].ins) == sorted((ren.get(x, x), v))

    def outside(self, st: Step, out: list[Step]) -> None:
        """A step outside the region: it reads a float16 copy of a region value, except a
        Cast of one to float32 (dropped: its readers read the value)."""
        if plain_cast(st, "float16", "float32") and st.ins[0] in self.values and \
                st.outs[0][1] not in self.pinned:
            self.rename[st.outs[0][1]] = st.ins[0]
            return
        mapping = {v: self.to_half(out, v, st.name) for v in st.ins if v in self.values}
        mapping.update((v, self.rename[v]) for v in st.ins if v in self.rename)
        _remap(st, mapping)
        out.append(st)

    def to_half(self, out: list[Step], v: int, name: str) -> int:
        """A float16 copy of region value ``v`` (one per value), made just before the step
        that reads it: ``_HalfCopy``, numpy's conversion by bits (the value holds float16
        values)."""
        if v not in self.boundary:
            h = self.plan.new_value()
            if v in self.plan.shapes:
                self.plan.shapes[h] = self.plan.shapes[v]
            out.append(Step("_HalfCopy", name, (v,), ((0, h),), {}))
            self.boundary[v] = h
        return self.boundary[v]


def _remap(st: Step, mapping: dict[int, int]) -> None:
    """``st`` (and the unfused steps of a fused one, its fallback) reads ``mapping[v]`` for
    each ``v`` in it."""
    if not mapping:
        return
    st.ins = tuple(mapping.get(v, v) for v in st.ins)
    for m in st.members:
        _remap(m, mapping)
