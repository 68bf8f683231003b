"""liveness: each value is freed right after its last reader, so a plan holds only what later
steps need (fetched, fed and constant values stay)."""

from __future__ import annotations

from tfdeploy.compiler.plan import Plan


def run(plan: Plan, ctx=None) -> Plan:
    keep = set(plan.fetch_values) | set(plan.constants)
    last: dict[int, int] = {}
    for k, st in enumerate(plan.steps):
        for v in st.ins:
            last[v] = k
    frees: dict[int, list[int]] = {}
    for v, k in last.items():
        if v not in keep:
            frees.setdefault(k, []).append(v)
    for k, st in enumerate(plan.steps):
        st.free = tuple(sorted(set(frees.get(k, ()))))
    return plan
