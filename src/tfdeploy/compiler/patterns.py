"""What pattern passes ask of a plan: who computes and who reads each value, constants by
value, and rewriting (removing steps, renaming values, replacing a group of steps by one).

Passes match op types and dataflow, never kernel objects, and rewrite only ops that run
tfdeploy's own numpy kernel (``builtin``), so a user's kernel or another implementation is
never bypassed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfdeploy import registry
from tfdeploy.compiler.plan import Plan, Step


def builtin(st: Step) -> bool:
    """``st`` is an op running tfdeploy's own numpy kernel (a pass may rewrite it)."""
    return registry.runs_builtin(st.op)


class Dataflow:
    """Producers and readers of the values of a plan's steps (rebuild after rewriting)."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.producer: dict[int, tuple[Step, int]] = {}
        self.readers: dict[int, list[Step]] = {}
        for st in plan.steps:
            for i, v in st.outs:
                self.producer[v] = (st, i)
            for v in st.ins:
                self.readers.setdefault(v, []).append(st)
        #: values that must keep their identity (fetched, fed)
        self.pinned = set(plan.fetch_values) | set(plan.feed_values)

    def step(self, v: int, op: str | tuple[str, ...] | None = None) -> Step | None:
        """The step computing ``v`` (as its output 0), if it is a built-in ``op``."""
        p = self.producer.get(v)
        if p is None or p[1] != 0:
            return None
        st = p[0]
        if op is not None and st.op not in ((op,) if isinstance(op, str) else op):
            return None
        return st if builtin(st) else None

    def only_reader(self, v: int) -> Step | None:
        """The one step reading ``v``, if ``v`` has exactly one reader and is not pinned."""
        r = self.readers.get(v, ())
        return r[0] if len(r) == 1 and v not in self.pinned else None

    def internal(self, v: int, inside: set) -> bool:
        """``v`` is read only by steps in ``inside`` (ids of steps) and not pinned: a value a
        fused step may swallow."""
        return v not in self.pinned and all(id(s) in inside for s in self.readers.get(v, ()))

    def const(self, v: int) -> np.ndarray | None:
        c = self.plan.constants.get(v)
        return c if isinstance(c, np.ndarray) else None

    def scalar(self, v: int) -> float | None:
        """The value of a constant of one element, as a float."""
        c = self.const(v)
        return float(c.reshape(-1)[0]) if c is not None and c.size == 1 else None

    def shape(self, v: int) -> tuple | None:
        c = self.const(v)
        return tuple(c.shape) if c is not None else self.plan.shapes.get(v)


def plain_cast(st: Step, src: str, dst: str) -> bool:
    """``st`` is a built-in Cast of one value from ``src`` to ``dst`` (dtype names), without
    ``Truncate``."""
    a = st.attrs
    return st.op == "Cast" and len(st.ins) == 1 and len(st.outs) == 1 and \
        st.outs[0][0] == 0 and str(a.get("SrcT")) == src and str(a.get("DstT")) == dst and \
        not a.get("Truncate") and builtin(st)


def other_input(st: Step | None, v: int) -> int | None:
    """The input of binary step ``st`` that is not ``v`` (which it reads once), or None."""
    if st is None or len(st.ins) != 2 or st.ins.count(v) != 1:
        return None
    return st.ins[1] if st.ins[0] == v else st.ins[0]


def rename(plan: Plan, mapping: dict[int, int]) -> None:
    """Every read of a value in ``mapping`` reads its replacement instead (chains followed)."""
    if not mapping:
        return

    def final(v: int) -> int:
        seen = 0
        while v in mapping and seen <= len(mapping):
            v = mapping[v]
            seen += 1
        return v

    for st in plan.steps:
        st.ins = tuple(final(v) for v in st.ins)
    plan.fetch_values = tuple(final(v) for v in plan.fetch_values)


def replace(plan: Plan, members: list[Step], fused: Step) -> None:
    """``members`` (steps of the plan) replaced by ``fused``, placed where the last of them
    was (every input of the group is computed by then)."""
    ids = {id(m) for m in members}
    last = max(k for k, st in enumerate(plan.steps) if id(st) in ids)
    out: list[Step] = []
    for k, st in enumerate(plan.steps):
        if k == last:
            out.append(fused)
        elif id(st) not in ids:
            out.append(st)
    plan.steps = out


def step_index(steps: list[Step]) -> tuple[dict[int, int], dict[int, list[int]]]:
    """(value -> index of the step making it, value -> indices of the steps reading it, in
    order): ``Dataflow`` by position, for passes that rewrite the step list by index."""
    maker: dict[int, int] = {}
    readers: dict[int, list[int]] = {}
    for k, st in enumerate(steps):
        for v in st.ins:
            readers.setdefault(v, []).append(k)
        for _, v in st.outs:
            maker[v] = k
    return maker, readers


def splice(plan: Plan, drop: set[int], at: dict[int, list[Step]]) -> None:
    """The plan's steps with those at the indices in ``drop`` removed and, at each index in
    ``at``, its steps in place of the one there (which ``drop`` should hold too)."""
    if not at and not drop:
        return
    out: list[Step] = []
    for k, st in enumerate(plan.steps):
        if k in at:
            out.extend(at[k])
        elif k not in drop:
            out.append(st)
    plan.steps = out


def fused_step(op: str, members: list[Step], ins: tuple[int, ...], out: int,
               attrs: dict[str, Any]) -> Step:
    """A fused step of ``op`` replacing ``members`` (in plan order), computing ``out``."""
    return Step(op, members[0].name, tuple(ins), ((0, out),), attrs, members=tuple(members))


def const_ints(plan: Plan, v: int, shape) -> list | None:
    """Constant ``v`` as nested ints, if it is an integer array of ``shape``."""
    c = plan.constants.get(v)
    if not isinstance(c, np.ndarray) or c.dtype.kind not in "iu" or c.shape != tuple(shape):
        return None
    return c.tolist()


class SoleReaders:
    """Which step makes a value that has one reader: for passes that rewrite a chain of
    steps by index, each of whose values only the next step reads (``step_index``)."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.maker, self.readers = step_index(plan.steps)
        self.pinned = set(plan.fetch_values) | set(plan.feed_values)

    def only(self, v: int, op, reader: int) -> int | None:
        """The index of the step making ``v`` (its output 0; a built-in op of type ``op``, a
        name or a tuple of names), if step ``reader`` is the only reader of ``v`` and ``v``
        is neither fetched nor fed; else None."""
        k = self.maker.get(v)
        if k is None or v in self.pinned or self.readers.get(v) != [reader]:
            return None
        st = self.plan.steps[k]
        ops = (op,) if isinstance(op, str) else op
        if st.op not in ops or not builtin(st) or st.outs != ((0, v),):
            return None
        return k


def unit_stride_nhwc(attrs: dict) -> bool:
    """A 2-D convolution's attributes say NHWC, unit strides and unit dilations."""
    return attrs.get("data_format", "NHWC") == "NHWC" and \
        list(attrs.get("strides", ())) == [1, 1, 1, 1] and \
        list(attrs.get("dilations", [1, 1, 1, 1])) == [1, 1, 1, 1]


def unit_stride_pads(attrs: dict, ks) -> list | None:
    """The (before, after) pads along each spatial dim of a unit-stride NHWC convolution by a
    kernel of spatial size ``ks`` (SAME, VALID, or EXPLICIT padding of the spatial dims
    only), or None."""
    padding = attrs.get("padding")
    if padding == "EXPLICIT":
        e = [int(p) for p in attrs.get("explicit_paddings", ())]
        if len(e) != 8 or any(e[:2] + e[6:]) or min(e) < 0:
            return None
        return [e[2:4], e[4:6]]
    if padding == "VALID":
        return [[0, 0] for _ in ks]
    if padding == "SAME":  # (unit strides: the output keeps the input's size)
        return [[(k - 1) // 2, k - 1 - (k - 1) // 2] for k in ks]
    return None


def rewrite_each(plan: Plan, op: str, match) -> Plan:
    """The plan with each match rewritten: ``match(flow, k)`` (a ``SoleReaders`` over the plan)
    for every built-in step ``k`` of type ``op`` gives (indices of the steps it replaces, the
    steps replacing them at ``k``) or None; a match overlapping an earlier one is skipped."""
    flow = SoleReaders(plan)
    drop: set[int] = set()
    at: dict[int, list[Step]] = {}
    for k, st in enumerate(plan.steps):
        if st.op != op or not builtin(st):
            continue
        m = match(flow, k)
        if m is None or drop.intersection(m[0]):
            continue
        drop.update(m[0])
        at[k] = m[1]
    splice(plan, drop, at)
    return plan


def static_shape(shape) -> bool:
    """``shape`` is known in full (no unknown dims)."""
    return shape is not None and all(isinstance(d, int) and d >= 0 for d in shape)


def split_bounds(flow: Dataflow, sp: Step) -> list | None:
    """A SplitV's [start, stop) per output along its input's last axis (its shape, sizes and
    axis known), or None."""
    shape, sizes, axis = flow.shape(sp.ins[0]), flow.const(sp.ins[1]), flow.scalar(sp.ins[2])
    if not static_shape(shape) or not shape or sizes is None or axis is None or \
            int(axis) % len(shape) != len(shape) - 1 or sizes.ndim != 1:
        return None
    sizes = [int(n) for n in sizes]
    if sizes.count(-1) == 1:
        sizes[sizes.index(-1)] = shape[-1] - sum(sizes) - 1
    if any(n < 0 for n in sizes) or sum(sizes) != shape[-1]:
        return None
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    return [[a, a + n] for a, n in zip(starts, sizes)]
