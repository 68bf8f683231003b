"""Lowering: the only place kernels are bound to steps.

Each step gets the callable that runs it: the op's chosen implementation with its attributes
bound once (``registry.bind``), or, when some of its inputs are constants, the kernel's
specializer's faster callable taking only the other inputs. Control-flow ops get the compiler's
context, through which they compile their bodies. A fused step gets its members, compiled as
a plan of their own, as its fallback.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from tfdeploy import registry
from tfdeploy.compiler import codegen
from tfdeploy.compiler.passes import liveness
from tfdeploy.compiler.plan import Plan, Step
from tfdeploy.errors import GraphError, TFDeployError
from tfdeploy.runtime import limits
from tfdeploy.runtime.constants import ONE_RUN


def run(plan: Plan, ctx, profile: bool = True) -> Plan:
    for st in plan.steps:
        try:
            lower_step(plan, st, ctx)
        except TFDeployError:
            raise
        except Exception as e:  # noqa: BLE001  (a bad attribute or constant: name the node)
            raise GraphError(f"cannot compile node {st.name!r} ({st.label}): "
                             f"{type(e).__name__}: {e}") from e
        if st.op in BROADCASTING and not plan.nested and \
                not all(v in plan.shapes for _, v in st.outs) and \
                (st.op not in MATMULS or len(st.ins) == 2):  # (not x @ constant: specialized)
            st.kernel = size_guarded(st.kernel, st.op, st.attrs)
        if profile and ctx.profile is not None:
            # a control-flow step's time is its bodies', which are timed themselves
            d = registry.get_opdef(st.op)
            control = d.needs_context and not st.members and not d.internal
            st.kernel = ctx.profile.wrap(st.name, st.label, st.kernel, control)
        if profile and ctx.record is not None:
            st.kernel = _recording(st.kernel, st.outs, ctx.record)
    if profile and ctx.record is not None:  # (folded values are part of a trace too)
        ctx.record.update({v: (c.shape, c.dtype) for v, c in plan.constants.items()
                           if isinstance(c, np.ndarray)})
    # constants no step reads any more (folded intermediates, weights a fusion or a specializer
    # took in) are dropped: the plan holds only what it runs
    read = {v for st in plan.steps for v in st.ins} | set(plan.fetch_values)
    for v in [v for v in plan.constants if v not in read]:
        del plan.constants[v]
    return plan


def lower_step(plan: Plan, st: Step, ctx) -> None:
    d = registry.get_opdef(st.op)
    consts = plan.constants
    if d.specializers and any(v in consts for v in st.ins) and \
            not all(v in consts for v in st.ins):
        # tried before binding: binding a control-flow op compiles its bodies, and its
        # specializer (given the context) compiles them itself, with the constants inlined
        attrs = {**st.attrs, "_ctx": ctx} if d.needs_context else st.attrs
        fast = _specialize(d, attrs, [consts.get(v) for v in st.ins], ctx)
        if fast is not None:
            st.kernel = fast
            st.ins = tuple(v for v in st.ins if v not in consts)
            return
    attrs = st.attrs
    if st.members:
        attrs = {**attrs, "_fallback": fallback(plan, st, ctx)}
    st.kernel = registry.bind(d, attrs, ctx)


def _specialize(d, attrs: dict, consts: list, ctx) -> Callable | None:
    """``registry.specialize``, with ``ONE_RUN`` set when the plan is a trace (it runs once:
    specializers skip what pays only over many calls, ``runtime/constants.py``)."""
    token = ONE_RUN.set(getattr(ctx, "record", None) is not None)
    try:
        return registry.specialize(d, attrs, consts)
    finally:
        ONE_RUN.reset(token)


def bind(op: str, attrs: dict, ctx) -> Callable:
    """The kernel of ``op`` with ``attrs`` bound once."""
    return registry.bind(registry.get_opdef(op), attrs, ctx)


def bind_constants(op: str, attrs: dict, consts: list, ctx) -> Callable:
    """The kernel of ``op`` taking only the inputs whose entry in ``consts`` is None, the
    others bound to those constants: specialized on them where the kernel can be."""
    d = registry.get_opdef(op)
    if d.specializers and any(c is not None for c in consts):
        a = {**attrs, "_ctx": ctx} if d.needs_context else attrs
        fast = _specialize(d, a, consts, ctx)
        if fast is not None:
            return fast
    kernel = registry.bind(d, attrs, ctx)
    if all(c is None for c in consts):
        return kernel
    template = list(consts)
    fed = [i for i, c in enumerate(consts) if c is None]

    def partial(*args):
        full = template.copy()
        for i, a in zip(fed, args):
            full[i] = a
        return kernel(*full)
    return partial


def fallback(plan: Plan, st: Step, ctx):
    """A fused step's members as a callable of the fused step's inputs: their own kernels,
    one after the other, through generated code like any plan's. Compiled at its first call:
    most fallbacks never run, and compiling each up front was a sixth of a CNN's first call."""
    made = {v for m in st.members for _, v in m.outs}
    needed = {v for m in st.members for v in m.ins}
    members = [Step(m.op, m.name, m.ins, m.outs, m.attrs) for m in st.members]
    sub = Plan(plan.graph, plan.root, [], [], tuple(st.ins), tuple(v for _, v in st.outs),
               {v: plan.constants[v] for v in needed - made if v in plan.constants},
               members, plan.n_values, nested=True)
    sub.feed_checks = [None] * len(st.ins)
    several = len(st.outs) > 1  # (a fused step of several outputs returns them in order)
    compiled: list = []
    lock = threading.Lock()

    def Fallback(*ins):
        if not compiled:
            with lock:
                if not compiled:
                    liveness.run(sub)
                    run(sub, ctx, profile=False)
                    compiled.append(codegen.generate(sub))
        out = compiled[0](ins)
        return out if several else out[0]
    return Fallback


#: ops whose output (a broadcast of their inputs) may be far larger than any input
BROADCASTING = frozenset("""Add AddV2 Sub Mul RealDiv Div DivNoNan FloorDiv FloorMod TruncateDiv
TruncateMod Mod Maximum Minimum Pow SquaredDifference Less LessEqual Greater GreaterEqual Equal
NotEqual LogicalAnd LogicalOr Select SelectV2 Atan2 BitwiseAnd BitwiseOr BitwiseXor LeftShift
RightShift MulNoNan Xdivy Xlogy Xlog1py ApproximateEqual Complex Igamma Igammac Zeta Polygamma
Betainc ClipByValue MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3""".split())

#: of those, the matrix products (their output is [batch..., rows, cols]: [m, 1] @ [1, n] is
#: as large as a broadcast, [m, 0] @ [0, n] larger), with their transposing attributes
MATMULS = {"MatMul": ("transpose_a", "transpose_b"), "BatchMatMul": ("adj_x", "adj_y"),
           "BatchMatMulV2": ("adj_x", "adj_y"), "BatchMatMulV3": ("adj_x", "adj_y")}


#: of those, the ones TF also runs on strings (the others' numpy kernels would apply Python's
#: operators to bytes: ``b"a" * 10**9`` is a gigabyte)
STRING_OK = frozenset({"Add", "Equal", "NotEqual", "Select", "SelectV2"})


def output_check(op: str, attrs: dict | None = None) -> Callable:
    """The check, before it runs, of the size of ``op``'s output for its input arrays: a
    broadcast, or a matrix product's [batch..., rows, cols]."""
    if op in MATMULS:
        ta, tb = (bool((attrs or {}).get(a, False)) for a in MATMULS[op])

        def check_matmul(args):
            arrays = [a for a in args if hasattr(a, "shape")]
            if len(arrays) == 2:
                limits.check_matmul(*arrays, ta, tb)
        return check_matmul
    return lambda args: limits.check_broadcast(*[a for a in args if hasattr(a, "shape")])


def size_guarded(kernel, op: str, attrs: dict | None = None):
    """``kernel``, refusing (before computing) a broadcast over the tensor limit: a
    [n, 1] + [1, n] of two small inputs may ask for more memory than the machine has; and
    string operands where TF has no string kernel. Only steps whose output shape is not known
    from a trace pay it (``lower.run``): a specialized plan runs after a checked trace, on
    feeds cast to the same dtypes. The cheap test is the product of the operands' sizes, an
    empty one counting as ``limits.EMPTY_SIZE`` (no Python operation more when none is)."""
    strings_ok = op in STRING_OK
    check, empty = output_check(op, attrs), limits.EMPTY_SIZE

    def guarded(*args):
        n = 1
        for a in args:
            n *= getattr(a, "size", 1) or empty
            if not strings_ok and getattr(getattr(a, "dtype", None), "kind", "") == "O":
                raise TypeError(f"{op} has no kernel for string tensors")
        if n > 1 << 20:
            check(args)
        return kernel(*args)
    guarded.__name__ = getattr(kernel, "__name__", "kernel")
    return guarded


def _recording(kernel, outs, record: dict):
    """``kernel``, recording the (shape, dtype) of each output it computes into ``record``."""
    def traced(*args):
        r = kernel(*args)
        res = r if type(r) is tuple else (r,)
        for i, v in outs:
            a = res[i] if i < len(res) else None
            if isinstance(a, (np.ndarray, np.generic)):  # (not a TensorList, a table...)
                record[v] = (a.shape, a.dtype)
        return r
    return traced
