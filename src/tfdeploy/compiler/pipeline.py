"""The compiler: a graph, fetches and feeds in; a plan whose ``run`` is generated code out.

    select -> specialize -> fold -> fuse_rnn -> project_inputs -> transposed_as_conv
           -> pad_into_conv -> atrous -> upsample_into_conv -> simplify
           -> fuse_projections -> fuse_norm -> fuse_gelu -> fuse_gated -> fuse_rotary
           -> fuse_attention -> half_region -> sink_moves -> fuse_conv
           -> scale_into_conv -> fuse_half -> merge_unrolled -> pool_into_chain -> licm
           -> liveness -> lower -> codegen

Each pass is one module of ``compiler/passes`` with one job, ``run(plan, ctx) -> plan``;
``PASSES`` lists them in order. ``lower`` (``compiler/lower.py``) is the only place kernels are
bound; ``codegen`` writes the plan as one Python function. ``compile_plan(..., after=name)``
stops after the named pass and returns the plan unlowered, as ``tfdeploy plan --after`` shows
it; ``verify=True`` checks the plan after every pass (``ir/verify.py``), as the tests do.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tfdeploy import dtypes
from tfdeploy.compiler import codegen, loops, lower
from tfdeploy.compiler.passes import (
    atrous,
    fold,
    fuse_attention,
    fuse_conv,
    fuse_gated,
    fuse_gelu,
    fuse_half,
    fuse_norm,
    fuse_projections,
    fuse_rnn,
    fuse_rotary,
    half_region,
    licm,
    liveness,
    merge_unrolled,
    pad_into_conv,
    pool_into_chain,
    project_inputs,
    scale_into_conv,
    select,
    simplify,
    sink_moves,
    specialize,
    transposed_as_conv,
    upsample_into_conv,
)
from tfdeploy.compiler.plan import Plan
from tfdeploy.compiler.profile import Profile
from tfdeploy.errors import GraphError, TFDeployError
from tfdeploy.ir.graph import FuncAttr, Graph
from tfdeploy.ir.verify import verify_plan
from tfdeploy.runtime import control
from tfdeploy.runtime.limits import LIMITS

#: the passes after ``select``, in order: (name, run, runs only when optimizing)
PASSES: list[tuple[str, Callable, bool]] = [
    ("specialize", specialize.run, False),
    ("fold", fold.run, False),
    ("fuse_rnn", fuse_rnn.run, True),
    ("project_inputs", project_inputs.run, True),
    ("transposed_as_conv", transposed_as_conv.run, True),
    ("pad_into_conv", pad_into_conv.run, True),
    ("atrous", atrous.run, True),
    ("upsample_into_conv", upsample_into_conv.run, True),
    ("simplify", simplify.run, True),
    ("fuse_projections", fuse_projections.run, True),
    ("fuse_norm", fuse_norm.run, True),
    ("fuse_gelu", fuse_gelu.run, True),
    ("fuse_gated", fuse_gated.run, True),
    ("fuse_rotary", fuse_rotary.run, True),
    ("fuse_attention", fuse_attention.run, True),
    ("half_region", half_region.run, True),
    ("sink_moves", sink_moves.run, True),
    ("fuse_conv", fuse_conv.run, True),
    ("scale_into_conv", scale_into_conv.run, True),
    ("fuse_half", fuse_half.run, True),
    ("merge_unrolled", merge_unrolled.run, True),
    ("pool_into_chain", pool_into_chain.run, True),
    ("licm", licm.run, True),
    ("liveness", liveness.run, False),
]
#: every stage name ``after=`` accepts
STAGES = ("select", *(name for name, _, _ in PASSES), "lower")


class Context:
    """What passes and control-flow kernels get: the functions of the graph being compiled,
    and a way to compile them (each function body compiled once per compile)."""

    def __init__(self, root: Graph, fold: bool = True, optimize: bool = True,
                 verify: bool = False, passes=None, profile: Profile | None = None,
                 trace: dict | None = None, feed_shapes=None, record: dict | None = None,
                 on_miss=None):
        self.root = root
        #: a specialized plan's fallback for feeds that do not fit its shapes (codegen)
        self.on_miss = on_miss
        #: shapes for ``specialize``: value -> (shape, dtype) from a traced run, and the feeds'
        self.trace = trace
        self.feed_shapes = feed_shapes
        #: where lowered kernels record their outputs' (shape, dtype), to make a trace
        self.record = record
        self.fold = fold
        self.optimize = optimize
        self.verify = verify
        #: the names of the optional passes to run (None: all)
        self.passes = None if passes is None else frozenset(passes)
        self.profile = profile
        self._functions: dict[str, Plan] = {}
        #: when constant folding stops, for this compile and the bodies it compiles
        self.fold_deadline = time.monotonic() + LIMITS.fold_seconds

    # -- functions ------------------------------------------------------------------------
    def function(self, f: FuncAttr | str) -> Graph:
        name = f.name if isinstance(f, FuncAttr) else f
        if not isinstance(name, str):
            raise GraphError(f"a function attribute names no function ({f!r})")
        try:
            return self.root.functions[name]
        except KeyError:
            raise GraphError(f"graph has no function named {name!r}") from None

    def compile_graph(self, g: Graph, fetches: list[str], feeds: list[str],
                      invariants=()) -> Plan:
        """A nested plan of ``g`` (a function body, possibly rewritten): never specialized
        or traced (its values take other shapes each iteration); ``invariants``: the positions
        of the feeds a loop body gets unchanged every iteration."""
        nested = Context(self.root, fold=self.fold, optimize=self.optimize, verify=self.verify,
                         passes=self.passes, profile=self.profile)
        nested._functions = self._functions
        nested.fold_deadline = self.fold_deadline
        return compile_plan(g, fetches, feeds, root=self.root, nested=True, ctx=nested,
                            invariants=invariants)

    def compile_function(self, f: FuncAttr | str) -> Plan:
        """A plan taking the function's inputs in order and returning its outputs."""
        g = self.function(f)
        name = f.name if isinstance(f, FuncAttr) else f
        plan = self._functions.get(name)
        if plan is None:
            plan = self.compile_graph(g, [s.ref for s in g.outputs], [s.ref for s in g.inputs])
            self._functions[name] = plan
        return plan

    # -- kernels ----------------------------------------------------------------------------
    def bind(self, op: str, attrs: dict) -> Callable:
        """The kernel of ``op`` with ``attrs`` bound (through ``lower``)."""
        return lower.bind(op, attrs, self)

    def kernel(self, op: str, attrs: dict, consts: list) -> Callable:
        """The kernel of ``op`` taking only the inputs whose entry in ``consts`` is None, the
        others bound to those constants (specialized where the kernel has a specializer)."""
        return lower.bind_constants(op, attrs, consts, self)

    # -- control flow (the executors of ``runtime/control.py``) -----------------------------
    def loop(self, cond: FuncAttr, body: FuncAttr, consts: list | None = None):
        return loops.build(self, cond, body, consts)

    def branch(self, then_branch: FuncAttr, else_branch: FuncAttr, tout=None):
        return control.branch(self._typed(then_branch, tout), self._typed(else_branch, tout))

    def switch(self, branches: list, tout=None):
        if not branches:
            raise GraphError("Case needs at least one branch")
        return control.switch([self._typed(b, tout) for b in branches])

    def call(self, f: FuncAttr, tout=None):
        return control.call(self._typed(f, tout))

    def _typed(self, f: FuncAttr, tout):
        """The run of ``f``'s plan, its results checked against ``tout``, the dtypes the
        calling node declares (its ``Tout``), where it declares them."""
        run = self.compile_function(f).run
        expected = _declared(tout)
        return run if expected is None else control.typed(run, expected, f.name)

    def for_loop(self, body: FuncAttr):
        return control.for_loop(self.compile_function(body).run)


def _declared(tout) -> tuple | None:
    """The numpy dtypes of a node's ``Tout`` (a list of TF dtype names), None for an output
    whose values are not arrays (variant, resource) or whose dtype numpy lacks here
    (bfloat16 without ml_dtypes); None for no list or nothing to check."""
    if not isinstance(tout, list):
        return None
    out = []
    for name in tout:
        try:
            out.append(dtypes.to_numpy(name) if isinstance(name, str) else None)
        except TFDeployError:
            out.append(None)
    return tuple(out) if any(d is not None for d in out) else None


def compile_plan(graph: Graph, fetches: list[str], feeds: list[str] = (), *,
                 root: Graph | None = None, fold: bool = True, optimize: bool = True,
                 feed_checks: list | None = None, nested: bool = False,
                 after: str | None = None, verify: bool = False, passes=None,
                 profile: Profile | None = None, trace: dict | None = None, feed_shapes=None,
                 record: dict | None = None, on_miss=None, ctx: Context | None = None,
                 invariants=()) -> Plan:
    """Compile ``graph`` to compute ``fetches`` from ``feeds`` (tensor refs). A ``nested`` plan
    (a function body run by a control-flow kernel) returns its values as they are; a top-level
    one never returns memory of its feeds or constants. ``after``: stop after that stage;
    ``passes``: the names of the passes of ``PASSES`` to run (default all); ``profile``: time
    every kernel into it; ``record``: a dict in which the plan's steps record the (shape, dtype)
    of each value they compute (a trace); ``trace`` and ``feed_shapes``: specialize the plan
    for feeds of these shapes, with a trace of a run on such feeds; ``on_miss``: what a
    specialized plan calls with feeds that do not fit it exactly (else it casts them);
    ``invariants``: a loop body's feeds (positions) that keep their value from one iteration
    to the next."""
    if after is not None and after not in STAGES:
        raise TFDeployError(f"unknown compiler pass {after!r}; the passes are {list(STAGES)}")
    root = root if root is not None else graph
    if ctx is None:
        ctx = Context(root, fold=fold, optimize=optimize, verify=verify, passes=passes,
                      profile=profile, trace=trace, feed_shapes=feed_shapes, record=record,
                      on_miss=on_miss)
    plan = select.run(graph, list(fetches), list(feeds), root=root, feed_checks=feed_checks,
                      nested=nested)
    plan.passes.append("select")
    plan.invariant_feeds = frozenset(plan.feed_values[i] for i in invariants)
    if ctx.verify:
        verify_plan(plan)
    for name, run, optimizing in PASSES:
        if after == plan.passes[-1]:
            return plan
        if (name == "fold" and not ctx.fold) or (optimizing and not ctx.optimize) or \
                (ctx.passes is not None and name not in ctx.passes):
            continue
        plan = run(plan, ctx)
        plan.passes.append(name)
        if ctx.verify:
            verify_plan(plan)
    if after == plan.passes[-1]:
        return plan
    plan = lower.run(plan, ctx)
    if plan.prologue is not None:  # (a loop body's steps run once per loop: passes/licm.py)
        plan.prologue = codegen.run(lower.run(plan.prologue, ctx), ctx)
    plan.passes.append("lower")
    if ctx.verify:
        verify_plan(plan)
    if after == "lower":
        return plan
    if ctx.on_miss is not None and ctx.feed_shapes is not None:
        plan.on_miss = ctx.on_miss
    return codegen.run(plan, ctx)


def op_types_of(plan: Plan) -> set[str]:
    """The op types a plan's steps run (fused steps count their members')."""
    out = set()
    for st in plan.steps:
        out.add(st.op)
        out.update(m.op for m in st.members)
    return out


__all__ = ["Context", "PASSES", "STAGES", "compile_plan", "op_types_of"]
