"""specialize: a plan for one set of input shapes, with its shape arithmetic made constants.

Given the shapes of the feeds, a value's shape is *static* when it follows from those shapes
alone, and a value is *shape-derived* when its contents do (constants, ``Shape(x)`` of a
static-shaped ``x``, and pure ops of shape-derived values). ``Shape``/``Size``/``Rank``/
``ShapeN`` of static-shaped values become constants, which ``fold`` then carries through the
shape arithmetic Keras and TF graphs are full of (``StridedSlice``, ``Pack``, ``Prod``,
``ConcatV2``... feeding ``Reshape``s), and every static value's shape is recorded in
``plan.shapes`` for the passes after it.

The shapes come from a *trace*: one evaluation of the generic plan on real inputs of those
shapes, recording every value's shape (``ctx.trace``). Only the static values' shapes are
used, so the plan stays right for every input of those shapes: an op's output shape is static
when its inputs' shapes are, and when the inputs whose *values* decide its output shape
(``SHAPE_INPUTS``: a Reshape's shape, a reduction's axes...) are shape-derived. Ops not listed
are taken to depend on every input's values (their outputs are static only when all inputs are
shape-derived): Where, Unique, NonMaxSuppression and the like are never static.
"""

from __future__ import annotations

import numpy as np

from tfdeploy import registry
from tfdeploy.compiler.plan import Plan, Step

#: ops whose outputs are the shape (or size, rank) of their inputs
SHAPE_OPS = frozenset({"Shape", "ShapeN", "Size", "Rank"})

_ELEMENTWISE = """Abs Acos Acosh Add AddN AddV2 Angle ApproximateEqual Asin Asinh Atan Atan2 Atanh
BiasAdd BiasAddV1 Cast Ceil ClipByValue Complex ComplexAbs Conj Cos Cosh Digamma DivNoNan Elu
Equal Erf Erfc Erfinv Exp Expm1 Floor FloorDiv FloorMod Gelu Greater GreaterEqual Identity Imag
Inv Invert IsFinite IsInf IsNan LeakyRelu Less LessEqual Lgamma Log Log1p LogicalAnd LogicalNot
LogicalOr Maximum Minimum Mod Mul MulNoNan Neg NotEqual OnesLike Pow Real RealDiv Reciprocal
Relu Relu6 Rint Round Rsqrt Select SelectV2 Selu Sigmoid Sign Sin Sinh Softplus Softsign Sqrt
Square SquaredDifference Sub Tan Tanh TruncateDiv TruncateMod Xdivy Xlog1py Xlogy ZerosLike
BitwiseAnd BitwiseOr BitwiseXor LeftShift RightShift Softmax LogSoftmax Cumsum Cumprod
MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 Einsum Conv2D Conv3D DepthwiseConv2dNative
MaxPool AvgPool MaxPool3D AvgPool3D FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3 LRN
Pack Unpack Squeeze Gather CheckNumerics StopGradient Snapshot FFT IFFT FFT2D IFFT2D FFT3D
IFFT3D Imag ComplexAbs"""

#: op type -> the inputs whose values (not only shapes) decide the output shapes; ops listed
#: with no inputs have output shapes that follow from their inputs' shapes alone
SHAPE_INPUTS: dict[str, frozenset[int]] = {op: frozenset() for op in _ELEMENTWISE.split()}
SHAPE_INPUTS.update({op: frozenset(ins) for op, ins in {
    "Reshape": (1,), "Transpose": (1,), "ExpandDims": (1,), "ConcatV2": (-1,), "Concat": (0,),
    "Split": (0,), "SplitV": (1, 2), "StridedSlice": (1, 2, 3), "Slice": (1, 2), "Tile": (1,),
    "Fill": (0,), "Pad": (1,), "PadV2": (1,), "MirrorPad": (1,), "GatherV2": (2,),
    "Sum": (1,), "Mean": (1,), "Max": (1,), "Min": (1,), "Prod": (1,), "All": (1,),
    "Any": (1,), "ArgMax": (1,), "ArgMin": (1,), "Range": (0, 1, 2), "OneHot": (1,),
    "BroadcastTo": (1,), "TopKV2": (1,), "ResizeBilinear": (1,), "ResizeNearestNeighbor": (1,),
    "ResizeBicubic": (1,), "ResizeArea": (1,), "MatrixBandPart": (), "EuclideanNorm": (1,),
    "ScatterNd": (2,), "TensorScatterUpdate": (), "GatherNd": (), "SpaceToBatchND": (1, 2),
    "BatchToSpaceND": (1, 2), "DepthToSpace": (), "SpaceToDepth": (), "ReverseV2": (),
    "LinSpace": (2,), "Cumsum_": (),
    # transposed convolutions: the input_sizes vector (a Keras Conv2DTranspose computes it
    # from its input's batch: Shape, StridedSlice, Pack)
    "Conv2DBackpropInput": (0,), "Conv3DBackpropInputV2": (0,),
    "DepthwiseConv2dNativeBackpropInput": (0,)}.items()})


def _shape_inputs(op: str, n_inputs: int) -> frozenset[int]:
    ins = SHAPE_INPUTS.get(op)
    if ins is None:
        return frozenset(range(n_inputs))
    return frozenset(i % n_inputs for i in ins) if n_inputs else frozenset()


def _constant(v, dtype: str) -> np.ndarray:
    from tfdeploy.dtypes import to_numpy

    a = np.array(v, dtype=to_numpy(dtype))
    a.setflags(write=False)
    return a


def _shape_step(st: Step, shapes: list) -> dict[int, np.ndarray] | None:
    """The outputs of a Shape/ShapeN/Size/Rank step given its inputs' shapes, or None."""
    out_type = st.attrs.get("out_type", "int32")
    if st.op == "Shape":
        return {0: _constant(shapes[0], out_type)}
    if st.op == "ShapeN":
        return {i: _constant(s, out_type) for i, s in enumerate(shapes)}
    if st.op == "Size":
        return {0: _constant(int(np.prod(shapes[0], dtype=np.int64)), out_type)}
    if st.op == "Rank":
        return {0: _constant(len(shapes[0]), "int32")}
    return None


def run(plan: Plan, ctx) -> Plan:
    """Specialize ``plan`` for ``ctx.feed_shapes`` with the shapes of ``ctx.trace`` (see the
    module docstring); without them, the plan is left as it is."""
    trace, feed_shapes = getattr(ctx, "trace", None), getattr(ctx, "feed_shapes", None)
    if trace is None or feed_shapes is None:
        return plan
    static = set(plan.constants)  # values whose shape follows from the feed shapes
    derived = set(plan.constants)  # values whose contents do
    shapes: dict[int, tuple] = {v: tuple(c.shape) for v, c in plan.constants.items()
                                if isinstance(c, np.ndarray)}
    for v, s in zip(plan.feed_values, feed_shapes):
        static.add(v)
        shapes[v] = tuple(s)
    steps = []
    for st in plan.steps:
        if st.op in SHAPE_OPS and all(v in static and v in shapes for v in st.ins):
            outs = _shape_step(st, [shapes[v] for v in st.ins])
            if outs is not None:
                for i, v in st.outs:
                    outs[i].setflags(write=False)  # (a constant: see select.read_only)
                    plan.constants[v] = outs[i]
                    shapes[v] = outs[i].shape
                    static.add(v)
                    derived.add(v)
                continue
        steps.append(st)
        d = registry.get_opdef(st.op)
        pure = d is not None and not d.stateful and not d.needs_context
        ins_static = all(v in static for v in st.ins)
        if pure and ins_static and all(v in derived for v in st.ins):
            derived.update(v for _, v in st.outs)
        if pure and ins_static and all(st.ins[i] in derived
                                       for i in _shape_inputs(st.op, len(st.ins))):
            for _, v in st.outs:
                if v in trace:
                    static.add(v)
                    shapes[v] = trace[v][0]
    plan.steps = steps
    plan.shapes = {v: s for v, s in shapes.items() if v in static}
    return plan
