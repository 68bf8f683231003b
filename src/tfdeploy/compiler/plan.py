"""The plan: what the compiler's passes read and rewrite, and what the generated code runs.

A plan is a list of steps in execution order over numbered *values*. A value is a feed, a
constant (``Plan.constants``) or an output of one step. A step names its op type and attributes
as the graph does (``Conv2D`` with ``strides``...), or, after fusion, a fused op of its own with
the steps it replaces kept beside it; kernels are bound to steps only by ``lower`` (the last
pass), so every pass before it sees op types and patterns, never kernel objects.

``print(plan)`` shows one step a line::

    %3 = Conv2D(%0, %c1) strides=[1,2,2,1] padding='SAME'        # model/conv/Conv2D
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfdeploy.ir.graph import Graph, format_attrs, format_shape, format_value

Ref = tuple[str, int]


@dataclass(eq=False)
class Step:
    """One kernel call: ``outs`` receive the results of the op applied to ``ins``."""

    #: the op type: TF's raw op, or a fused op the compiler made (registered as internal)
    op: str
    #: the node computing it (a fused step: the first node it replaces), for errors and dumps
    name: str
    #: the values read, in the op's input order
    ins: tuple[int, ...]
    #: (output index, value) pairs of the outputs read later or fetched
    outs: tuple[tuple[int, int], ...]
    #: the op's attributes as the kernel receives them (plain values, arrays, FuncAttr)
    attrs: dict[str, Any] = field(default_factory=dict)
    #: a fused step: the steps it replaces, in order (the fallback for inputs it does not take)
    members: tuple[Step, ...] = ()
    #: values whose last reader is this step (set by the liveness pass)
    free: tuple[int, ...] = ()
    #: the callable run for this step (set by ``lower`` only)
    kernel: Any = None

    @property
    def label(self) -> str:
        """The op type, or for a fused step the op types it replaces (``Conv2D+BiasAdd+Relu``)."""
        return "+".join(m.op for m in self.members) if self.members else self.op


@dataclass(eq=False)
class Plan:
    """Steps over numbered values, compiled from ``graph`` for one set of fetches and feeds."""

    graph: Graph
    #: the top-level graph (holds the functions that control-flow steps call)
    root: Graph
    fetches: list[Ref]
    feeds: list[Ref]
    feed_values: tuple[int, ...]
    fetch_values: tuple[int, ...]
    constants: dict[int, Any]
    steps: list[Step]
    n_values: int
    #: the graph tensor each value stands for (value id -> "node:i"), for dumps and errors
    refs: dict[int, str] = field(default_factory=dict)
    #: per feed: a callable validating/casting it (with .dtype and .shape), or None
    feed_checks: list = field(default_factory=list)
    #: a nested plan (a function body) returns its values as they are; a top-level one never
    #: returns memory of its feeds or constants
    nested: bool = False
    #: the shapes of the values whose shape follows from the feeds' (``specialize`` sets it)
    shapes: dict[int, tuple] = field(default_factory=dict)
    #: the passes run so far, in order
    passes: list[str] = field(default_factory=list)
    #: a specialized plan's handler of feeds that do not fit its feed shapes exactly (the
    #: shape dispatcher): the generated code calls it instead of casting
    on_miss: Any = field(default=None, repr=False)
    #: a loop body: the feeds that keep their value from one iteration to the next
    invariant_feeds: frozenset = frozenset()
    #: a loop body: the steps that run once per loop, before the first iteration (a plan fed
    #: some invariant feeds, whose fetches are the last feeds of this plan; ``passes/licm.py``)
    prologue: Plan | None = None
    #: the generated Python source of ``run`` (set by codegen)
    source: str | None = field(default=None, repr=False)
    run: Any = field(default=None, repr=False)

    def __call__(self, *feeds):
        return self.run(feeds)

    def new_value(self) -> int:
        self.n_values += 1
        return self.n_values - 1

    def __str__(self) -> str:
        return dump(self)


def _value(plan: Plan, v: int) -> str:
    return f"%c{v}" if v in plan.constants else f"%{v}"


def _step_line(plan: Plan, st: Step) -> str:
    outs = dict(st.outs)
    n = max(outs, default=-1) + 1
    lhs = ", ".join(_value(plan, outs[i]) if i in outs else "_" for i in range(n)) or "_"
    ins = ", ".join(_value(plan, v) for v in st.ins)
    attrs = format_attrs({k: v for k, v in st.attrs.items() if not k.startswith("_")})
    known = [plan.shapes.get(v) for _, v in st.outs]
    if known and all(s is not None for s in known):
        lhs += " : " + ", ".join(format_shape(s) for s in known)
    line = f"  {lhs} = {st.op}({ins})" + (f" {attrs}" if attrs else "")
    note = st.name
    if st.members:
        note = f"{st.members[0].name} .. {st.members[-1].name} ({len(st.members)} nodes: " + \
            "+".join(m.op for m in st.members) + ")"
    if st.kernel is not None:
        fn = getattr(st.kernel, "__name__", type(st.kernel).__name__)
        if fn not in (st.op, "run", "kernel"):
            note += f" [{fn}]"
    if st.free:
        note += "; free " + " ".join(f"%{v}" for v in st.free)
    return f"{line:<72} # {note}"


def _nested(kernel) -> tuple:
    """(label, plan) of the plans a step's kernel runs inside it (a While loop's condition,
    hoisted work and body), through the wrappers around it (a loop with constant variables,
    profiling)."""
    for _ in range(4):
        plans = getattr(kernel, "plans", None)
        if plans is not None:
            return plans
        kernel = getattr(kernel, "loop", None) or getattr(kernel, "__wrapped__", None)
        if kernel is None:
            break
    return ()


def dump(plan: Plan) -> str:
    """The plan as text: feeds, constants, one step a line (a loop's plans indented under
    it), fetches."""
    head = f"plan of {len(plan.steps)} steps"
    if plan.passes:
        head += f" (after {plan.passes[-1]})"
    lines = [head]
    for ref, v in zip(plan.feeds, plan.feed_values):
        check = plan.feed_checks[plan.feed_values.index(v)] if plan.feed_checks else None
        spec = ""
        if check is not None and getattr(check, "dtype", None) is not None:
            spec = f" {check.dtype}{format_shape(plan.shapes.get(v, check.shape))}"
        lines.append(f"  %{v} = feed {ref[0]}:{ref[1]}{spec}")
    for v, c in plan.constants.items():
        shown = format_value(c) if isinstance(c, np.ndarray) else type(c).__name__
        ref = plan.refs.get(v)
        lines.append(f"  %c{v} = const {shown}" + (f"  # {ref}" if ref else ""))
    if plan.prologue is not None:
        lines.append("  once per loop:")
        lines += ["  " + _step_line(plan.prologue, st) for st in plan.prologue.steps]
        lines.append("  every iteration:")
    for st in plan.steps:
        lines.append(_step_line(plan, st))
        for label, sub in _nested(st.kernel):
            lines.append(f"      {label}: " + dump(sub).replace("\n", "\n      "))
    fetched = ", ".join(f"{_value(plan, v)} ({r[0]}:{r[1]})"
                        for r, v in zip(plan.fetches, plan.fetch_values))
    lines.append(f"  return {fetched}")
    return "\n".join(lines)
