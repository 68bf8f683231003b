"""fold: constant folding. A step whose inputs are all constants (and whose op is pure) runs
once at compile time; its outputs become constants. Results larger than ``FOLD_LIMIT_BYTES``
stay run-time steps (a file's memory stays predictable), and so does a step that fails (its
error is raised at run time, naming the node). Loops are never folded: a While with constant
inputs could run for ever, and a branch not taken must cost nothing."""

from __future__ import annotations

from typing import Any

import numpy as np

from tfdeploy import registry
from tfdeploy.compiler.plan import Plan

#: folded values larger than this are not made: folding a step, or a weight with BatchNorm
FOLD_LIMIT_BYTES = 64 << 20

#: ops never folded, whatever their inputs
NEVER_FOLDED = frozenset({"While", "StatelessWhile", "For"})


def run(plan: Plan, ctx) -> Plan:
    steps = []
    for st in plan.steps:
        d = registry.get_opdef(st.op)
        if d.stateful or not st.ins or st.op in NEVER_FOLDED or \
                not all(v in plan.constants for v in st.ins):
            steps.append(st)
            continue
        kernel = ctx.bind(st.op, st.attrs)
        folded = _try(kernel, [plan.constants[v] for v in st.ins], [i for i, _ in st.outs])
        if folded is None:
            steps.append(st)
            continue
        for i, v in st.outs:
            value = folded[i]
            # read-only: a kernel writing into its input fails loudly instead of corrupting
            # every later evaluation
            value.setflags(write=False)
            plan.constants[v] = value
    plan.steps = steps
    return plan


def _try(kernel, values, outs_used) -> dict[int, Any] | None:
    try:
        res = kernel(*values)
    except Exception:  # noqa: BLE001  (left to run time, where the error names the node)
        return None
    if not isinstance(res, tuple):
        res = (res,)
    out = {}
    for i in outs_used:
        if i >= len(res):
            return None
        v = res[i]
        if isinstance(v, np.generic):
            v = np.asarray(v)
        if not isinstance(v, np.ndarray) or v.nbytes > FOLD_LIMIT_BYTES:
            return None
        out[i] = v
    return out
