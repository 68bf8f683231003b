"""fold: constant folding. A step whose inputs are all constants (and whose op is pure) runs
once at compile time; its outputs become constants. Results larger than ``fold_bytes``
(``td.setup``; no op may even make a larger tensor while folding) stay run-time steps (a
file's memory stays predictable), and so does a step that fails (its error is raised at run
time, naming the node). Loops are never folded, nor control flow whose functions hold one: a
While with constant inputs could run for ever, and a branch not taken must cost nothing.
Folding stops (the rest runs at run time) once one compile has folded for ``fold_seconds``."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tfdeploy import registry
from tfdeploy.compiler.lower import BROADCASTING, output_check, size_guarded
from tfdeploy.compiler.plan import Plan
from tfdeploy.errors import ResourceExhaustedError
from tfdeploy.ir.graph import FuncAttr
from tfdeploy.runtime.limits import LIMITS, folding

#: the default of ``td.setup(fold_bytes=...)`` (``LIMITS.fold_bytes`` is the one in force)
FOLD_LIMIT_BYTES = 64 << 20

#: ops never folded, whatever their inputs
NEVER_FOLDED = frozenset({"While", "StatelessWhile", "For"})


def run(plan: Plan, ctx) -> Plan:
    steps = []
    deadline = getattr(ctx, "fold_deadline", None)
    if deadline is None:
        deadline = time.monotonic() + LIMITS.fold_seconds
    for st in plan.steps:
        d = registry.get_opdef(st.op)
        if d.stateful or not st.ins or st.op in NEVER_FOLDED or \
                not all(v in plan.constants for v in st.ins) or \
                time.monotonic() > deadline or (d.needs_context and _may_loop(st, ctx)):
            steps.append(st)
            continue
        try:
            kernel = ctx.bind(st.op, st.attrs)
        except Exception:  # noqa: BLE001  (lower binds it again, and names the node)
            steps.append(st)
            continue
        values = [plan.constants[v] for v in st.ins]
        with folding():
            try:
                if st.op in BROADCASTING:
                    output_check(st.op, st.attrs)(values)
                    # (and strings refused where TF has no string kernel: numpy's would repeat
                    # b"a" * 2**20 into a megabyte before the size check saw it)
                    kernel = size_guarded(kernel, st.op, st.attrs)
            except ResourceExhaustedError:
                steps.append(st)
                continue
            folded = _try(kernel, values, [i for i, _ in st.outs])
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


def _may_loop(st, ctx) -> bool:
    """Whether a control-flow step's functions (or those they call) hold a loop: folding it
    could run for ever (an If branch never taken at run time, say)."""
    root = getattr(ctx, "root", None)
    if root is None:
        return True
    todo = [v for v in st.attrs.values()]
    seen: set[str] = set()
    while todo:
        v = todo.pop()
        if isinstance(v, (list, tuple)):
            todo.extend(v)
        elif isinstance(v, FuncAttr) and v.name not in seen:
            seen.add(v.name)
            f = root.functions.get(v.name)
            if f is None:
                return True
            for n in f.nodes:
                if n.op in NEVER_FOLDED:
                    return True
                todo.extend(n.attrs.values())
    return False


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
        if not isinstance(v, np.ndarray) or v.nbytes > LIMITS.fold_bytes:
            return None
        out[i] = v
    return out
