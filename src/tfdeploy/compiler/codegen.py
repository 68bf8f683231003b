"""Code generation: a lowered plan as one straight-line Python function (the hot loop).

``generate`` writes one function per plan whose body is the plan's steps in order, each value a
local variable and each kernel and constant a default argument (so every lookup is a fast local
load). The source is built only from integers and fixed templates, never from names or strings
found in a model file, so a hostile file cannot inject code; it is kept as ``plan.source``. Each
call keeps its values in its own locals: any number of threads may run one plan at once.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.compiler.plan import Plan
from tfdeploy.errors import ExecutionError, TFDeployError


def _failure(plan: Plan, k: int, e: BaseException) -> ExecutionError:
    st = plan.steps[k]
    if isinstance(e, ExecutionError):
        msg = f"while executing node {st.name!r} ({st.label}), {e}"
    else:
        msg = f"while executing node {st.name!r} ({st.label}): {type(e).__name__}: {e}"
    return ExecutionError(msg)


def _own(value: np.ndarray, feeds) -> np.ndarray:
    """``value``, copied if it shares memory with a feed."""
    for f in feeds:
        if isinstance(f, np.ndarray) and np.may_share_memory(value, f):
            return value.copy()
    return value


def _nfeeds(n: int):
    raise TFDeployError(f"plan expects a different number of feeds (got {n})")


def _feed_lines(plan: Plan, params: list, defaults: list) -> list[str]:
    """Unpacking and checking the feeds: the common case (an ndarray of the right dtype and
    shape) inline, without a call."""
    lines = [f"    if len(feeds) != {len(plan.feed_values)}: _nfeeds(len(feeds))"]
    seen = set()
    for j, s in enumerate(plan.feed_values):
        if s in seen:
            continue
        seen.add(s)
        lines.append(f"    s{s} = feeds[{j}]")
        check = plan.feed_checks[j] if j < len(plan.feed_checks) else None
        if check is None:
            continue
        params.append(f"_chk{j}=_chk{j}")
        defaults.append(check)
        if check.dtype is None or check.dtype.kind == "O":
            lines.append(f"    s{s} = _chk{j}(s{s})")
            continue
        params.append(f"_dt{j}=_dt{j}")
        defaults.append(check.dtype)
        cond = f"s{s}.__class__ is not _nd or s{s}.dtype != _dt{j}"
        if check.shape is not None:
            cond += f" or s{s}.ndim != {len(check.shape)}"
            cond += "".join(f" or s{s}.shape[{i}] != {int(d)}"
                            for i, d in enumerate(check.shape) if d is not None)
        lines.append(f"    if {cond}: s{s} = _chk{j}(s{s})")
    return lines


def _step_lines(plan: Plan, params: list, defaults: list, keep=frozenset(),
                indent: int = 8) -> list[str]:
    """One call a step, each value a local; values in ``keep`` are never freed (a loop body
    inlined in a loop keeps its invariants for the next iteration)."""
    body: list[str] = []
    pad = " " * indent
    for k, st in enumerate(plan.steps):
        params.append(f"f{k}=_f{k}")
        defaults.append(st.kernel)
        call = f"f{k}(" + ", ".join(f"s{i}" for i in st.ins) + ")"
        body.append(f"{pad}k = {k}")
        if len(st.outs) == 1 and st.outs[0][0] == 0:
            s = st.outs[0][1]
            body.append(f"{pad}s{s} = {call}")
            body.append(f"{pad}if s{s}.__class__ is tuple: s{s} = s{s}[0]")
        elif st.outs:
            body.append(f"{pad}t = {call}")
            for i, s in st.outs:
                body.append(f"{pad}s{s} = t[{i}]")
        else:
            body.append(f"{pad}{call}")
        free = [s for s in st.free if s not in keep]
        if free:
            body.append(pad + " = ".join(f"s{s}" for s in free) + " = None")
    return body


def _fetch_expr(plan: Plan) -> str:
    """The returned tuple. The caller of a top-level plan owns what it gets back: a fetched
    constant or feed is copied, and so is a fetched view (reshape, transpose, slice...) of a
    feed (TF never returns an input's memory)."""
    fed = set(plan.feed_values)

    def fetched(s: int) -> str:
        if plan.nested:
            return f"s{s}"
        if s in plan.constants or s in fed:
            return f"s{s}.copy()"
        if fed:
            return f"(_own(s{s}, feeds) if getattr(s{s}, 'base', None) is not None else s{s})"
        return f"s{s}"

    return "(" + "".join(fetched(s) + ", " for s in plan.fetch_values) + ")"


def generate(plan: Plan):
    """The function ``run(feeds) -> tuple of fetched arrays`` for a lowered ``plan``; its source
    is kept as ``plan.source``."""
    params = ["feeds"]
    defaults: list = []
    lines = _feed_lines(plan, params, defaults) if plan.feed_values else []
    for s, value in plan.constants.items():
        params.append(f"s{s}=_c{s}")
        defaults.append(value)
    body = _step_lines(plan, params, defaults)
    if body:
        lines.append("    k = -1")
        lines.append("    try:")
        lines.extend(body)
        lines.append("    except Exception as e:")
        lines.append("        raise _failure(_plan, k, e) from e")
    lines.append(f"    return {_fetch_expr(plan)}")
    # defaults are bound through a factory so the names _c*/_f* exist when `def` runs
    params.append("_nd=_nd")
    defaults.append(np.ndarray)
    names = [p.split("=")[1] for p in params[1:]]
    src = ("def _make(" + ", ".join(names) + "):\n"
           "  def run(" + ", ".join(params) + "):\n"
           + "\n".join("  " + ln for ln in lines) + "\n"
           "  return run\n")
    scope = {"_failure": _failure, "_plan": plan, "_nfeeds": _nfeeds, "_own": _own, "np": np}
    exec(compile(src, f"<tfdeploy plan of {len(plan.steps)} steps>", "exec"), scope)
    plan.source = src
    return scope["_make"](*defaults)


def run(plan: Plan, ctx=None) -> Plan:
    """The codegen stage: ``plan.run`` set (and ``plan.source``)."""
    plan.run = generate(plan)
    return plan
