"""Lowering: the only place kernels are bound to steps.

Each step gets the callable that runs it: the op's chosen implementation with its attributes
bound once (``registry.bind``), or, when some of its inputs are constants, the kernel's
specializer's faster callable taking only the other inputs. Control-flow ops get the compiler's
context, through which they compile their bodies. A fused step gets its members, compiled as
a plan of their own, as its fallback.
"""

from __future__ import annotations

from collections.abc import Callable

from tfdeploy import registry
from tfdeploy.compiler import codegen
from tfdeploy.compiler.passes import liveness
from tfdeploy.compiler.plan import Plan, Step


def run(plan: Plan, ctx, profile: bool = True) -> Plan:
    for st in plan.steps:
        lower_step(plan, st, ctx)
        if profile and ctx.profile is not None:
            # a control-flow step's time is its bodies', which are timed themselves
            d = registry.get_opdef(st.op)
            control = d.needs_context and not st.members and not d.internal
            st.kernel = ctx.profile.wrap(st.name, st.label, st.kernel, control)
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
        fast = registry.specialize(d, attrs, [consts.get(v) for v in st.ins])
        if fast is not None:
            st.kernel = fast
            st.ins = tuple(v for v in st.ins if v not in consts)
            return
    attrs = st.attrs
    if st.members:
        attrs = {**attrs, "_fallback": fallback(plan, st, ctx)}
    st.kernel = registry.bind(d, attrs, ctx)


def bind(op: str, attrs: dict, ctx) -> Callable:
    """The kernel of ``op`` with ``attrs`` bound once."""
    return registry.bind(registry.get_opdef(op), attrs, ctx)


def bind_constants(op: str, attrs: dict, consts: list, ctx) -> Callable:
    """The kernel of ``op`` taking only the inputs whose entry in ``consts`` is None, the
    others bound to those constants: specialized on them where the kernel can be."""
    d = registry.get_opdef(op)
    if d.specializers and any(c is not None for c in consts):
        a = {**attrs, "_ctx": ctx} if d.needs_context else attrs
        fast = registry.specialize(d, a, consts)
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
    one after the other, through generated code like any plan's."""
    made = {v for m in st.members for _, v in m.outs}
    needed = {v for m in st.members for v in m.ins}
    members = [Step(m.op, m.name, m.ins, m.outs, m.attrs) for m in st.members]
    sub = Plan(plan.graph, plan.root, [], [], tuple(st.ins), tuple(v for _, v in st.outs),
               {v: plan.constants[v] for v in needed - made if v in plan.constants},
               members, plan.n_values, nested=True)
    sub.feed_checks = [None] * len(st.ins)
    liveness.run(sub)
    run(sub, ctx, profile=False)
    run_fn = codegen.generate(sub)
    if len(st.outs) > 1:  # (a fused step of several outputs returns them in order)
        return lambda *ins: run_fn(ins)
    return lambda *ins: run_fn(ins)[0]
