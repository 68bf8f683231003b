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
taken only where it runs tfdeploy's own kernel, without ``Truncate``. A lone chain without a
Cast saves nothing and is left alone.
"""

from __future__ import annotations

from tfdeploy import registry
from tfdeploy.compiler.plan import Plan, Step


def _half_chain(st: Step) -> bool:
    return st.op == "_FusedChain" and st.attrs.get("dtype") == "float16" and \
        len(st.ins) == 1 and not st.attrs.get("scaled") and len(st.outs) == 1 and \
        st.outs[0][0] == 0


def _cast(st: Step, src: str, dst: str) -> bool:
    a = st.attrs
    return st.op == "Cast" and len(st.ins) == 1 and len(st.outs) == 1 and \
        st.outs[0][0] == 0 and a.get("SrcT") == src and a.get("DstT") == dst and \
        not a.get("Truncate") and registry.runs_builtin("Cast")


def run(plan: Plan, ctx=None) -> Plan:
    """The plan with each run of float16 chains made one step."""
    steps = plan.steps
    pinned = set(plan.fetch_values) | set(plan.feed_values)
    readers: dict[int, list[int]] = {}
    for k, st in enumerate(steps):
        for v in set(st.ins):
            readers.setdefault(v, []).append(k)

    def next_of(k: int) -> int | None:
        """The only reader of step ``k``'s output, if it reads it as its only input."""
        v = steps[k].outs[0][1]
        r = readers.get(v, ())
        if v in pinned or len(r) != 1 or steps[r[0]].ins != (v,):
            return None
        return r[0]

    taken: set[int] = set()
    replace: dict[int, Step] = {}
    for k, st in enumerate(steps):
        if k in taken:
            continue
        cast_in = _cast(st, "float32", "float16")
        if not cast_in and not _half_chain(st):
            continue
        run_ = [k]
        j = next_of(k)
        while j is not None and _half_chain(steps[j]):
            run_.append(j)
            j = next_of(j)
        cast_out = j is not None and _cast(steps[j], "float16", "float32")
        if cast_out:
            run_.append(j)
        chains = [steps[i] for i in run_ if steps[i].op == "_FusedChain"]
        if not chains or (len(chains) == 1 and not cast_in and not cast_out):
            continue
        members = tuple(m for i in run_ for m in (steps[i].members or (steps[i],)))
        first, last = steps[run_[0]], steps[run_[-1]]
        label = "+".join(m.op for m in members)
        attrs = {"chains": [{a: v for a, v in c.attrs.items() if a != "dtype"}
                            for c in chains],
                 "cast_in": cast_in, "cast_out": cast_out,
                 "_label": f"{label} ({first.name} .. {last.name})"}
        replace[k] = Step("_HalfStack", first.name, first.ins, last.outs, attrs,
                          members=members)
        taken.update(run_)
    if replace:
        plan.steps = [replace.get(k, st) for k, st in enumerate(steps)
                      if k in replace or k not in taken]
    return plan
