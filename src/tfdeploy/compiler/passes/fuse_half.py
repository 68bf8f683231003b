"""fuse_half: float16 chains that feed one another become one ``_HalfStack`` step.

A mixed_float16 model (Keras' ``mixed_float16`` policy) is float16 from a ``Cast`` after its
input to a ``Cast`` before its float32 output. ``fuse_conv`` computes each float16 chain in
float32 and rounds once at its end: one conversion to float32 and one back per layer, which
numpy does a value at a time and which cost as much as the layer's matrix product. Here a run
of such chains, each the only reader of the one before (and optionally the Cast to float16
before the first, the Cast to float32 after the last), becomes one step that stays in float32,
rounding each chain's result to float16 values in float32 arithmetic
(``numerics/half.py``): the same values bit for bit. Only chains of one input (no residual
operand, not ``scaled``), and only float16 (bfloat16 chains are left as they are); a Cast is
taken only where it runs tfdeploy's own kernel, without ``Truncate`` (or is ``half_region``'s
float16 copy of a float32 value, ``_HalfCopy``). A lone chain without a Cast saves nothing and
is left alone.
"""

from __future__ import annotations

from tfdeploy.compiler.patterns import Dataflow, fused_step, plain_cast, replace
from tfdeploy.compiler.plan import Plan, Step


def _half_chain(st: Step) -> bool:
    return st.op == "_FusedChain" and st.attrs.get("dtype") == "float16" and \
        len(st.ins) == 1 and not st.attrs.get("scaled") and len(st.outs) == 1 and \
        st.outs[0][0] == 0


def _next(flow: Dataflow, st: Step) -> Step | None:
    """The only reader of ``st``'s output, if it reads it as its only input."""
    v = st.outs[0][1]
    r = flow.only_reader(v)
    return r if r is not None and r.ins == (v,) else None


def run(plan: Plan, ctx=None) -> Plan:
    """The plan with each run of float16 chains made one step."""
    flow = Dataflow(plan)
    taken: set[int] = set()
    groups = []
    for st in plan.steps:
        if id(st) in taken:
            continue
        cast_in = plain_cast(st, "float32", "float16") or st.op == "_HalfCopy"
        if not cast_in and not _half_chain(st):
            continue
        group = [st]
        nxt = _next(flow, st)
        while nxt is not None and _half_chain(nxt):
            group.append(nxt)
            nxt = _next(flow, nxt)
        cast_out = nxt is not None and plain_cast(nxt, "float16", "float32")
        if cast_out:
            group.append(nxt)
        chains = [g for g in group if g.op == "_FusedChain"]
        if not chains or (len(chains) == 1 and not cast_in and not cast_out):
            continue
        taken.update(id(g) for g in group)
        groups.append((group, chains, cast_in, cast_out))
    for group, chains, cast_in, cast_out in groups:
        members = [m for g in group for m in (g.members or (g,))]
        label = "+".join(m.op for m in members)
        attrs = {"chains": [{a: v for a, v in c.attrs.items() if a != "dtype"}
                            for c in chains],
                 "cast_in": cast_in, "cast_out": cast_out,
                 "_label": f"{label} ({group[0].name} .. {group[-1].name})"}
        replace(plan, group, fused_step("_HalfStack", members, group[0].ins,
                                        group[-1].outs[0][1], attrs))
    return plan
