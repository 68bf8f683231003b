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
from tfdeploy.errors import ExecutionError, ResourceExhaustedError, TFDeployError
from tfdeploy.numerics import IGNORE_ERRORS, quiet_reset, quiet_set


def _failure(plan: Plan, k: int, e: BaseException) -> ExecutionError:
    st = plan.steps[k]
    if isinstance(e, ExecutionError):
        msg = f"while executing node {st.name!r} ({st.label}), {e}"
    else:
        msg = f"while executing node {st.name!r} ({st.label}): {type(e).__name__}: {e}"
    # (out of memory, or over td.setup(max_tensor_bytes=...): TF's ResourceExhaustedError)
    exhausted = isinstance(e, (MemoryError, ResourceExhaustedError))
    return (ResourceExhaustedError if exhausted else ExecutionError)(msg)


def _own(value, feeds):
    """``value``, copied if it is model memory (read-only: a constant, a view of one, a
    broadcast) or shares memory with a feed."""
    if value.__class__ is not np.ndarray:
        return value
    if not value.flags.writeable:
        return value.copy()
    for f in feeds:
        if isinstance(f, np.ndarray) and np.may_share_memory(value, f):
            return value.copy()
    return value


def _copy(value):
    """A fetched constant's, feed's or repeated value's own copy (a value that is no array, a
    lookup table's handle say, as it is: ``_own`` passes those on too)."""
    return value.copy() if isinstance(value, np.ndarray) else value


def _distinct(out: tuple) -> tuple:
    """``out`` with no array sharing memory with an earlier one (two fetches of one value, or
    one a view of the other): the caller may write into each without changing another."""
    seen: set = set()
    views: list = []
    res = list(out)
    for j, v in enumerate(out):
        if v.__class__ is not np.ndarray:
            continue
        if id(v) in seen or any(np.may_share_memory(v, w) for w in views) or (
                v.base is not None and any(np.may_share_memory(v, w) for w in res[:j]
                                           if w.__class__ is np.ndarray)):
            v = res[j] = v.copy()
        seen.add(id(v))
        if v.base is not None:
            views.append(v)
    return tuple(res)


def _one_output():
    raise TypeError("the op has one output, but another of its outputs is read")


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
        exact = plan.on_miss is not None and s in plan.shapes
        if check.dtype is None or check.dtype.kind == "O":
            params.append(f"_chk{j}=_chk{j}")
            defaults.append(check)
            lines.append(f"    s{s} = _chk{j}(s{s})")
            if exact:
                lines.append(f"    if s{s}.shape != {tuple(int(d) for d in plan.shapes[s])!r}:"
                             " return _miss(feeds)")
            continue
        params.append(f"_dt{j}=_dt{j}")
        defaults.append(check.dtype)
        shape = plan.shapes[s] if exact else check.shape
        # (numpy's own dtype objects first, by identity; a known shape as one tuple)
        cond = f"s{s}.__class__ is not _nd or s{s}.dtype is not _dt{j} and s{s}.dtype != _dt{j}"
        if shape is not None and all(d is not None for d in shape):
            cond += f" or s{s}.shape != {tuple(int(d) for d in shape)!r}"
        elif shape is not None:
            cond += f" or s{s}.ndim != {len(shape)}"
            cond += "".join(f" or s{s}.shape[{i}] != {int(d)}"
                            for i, d in enumerate(shape) if d is not None)
        if exact:  # whatever does not fit goes back to the dispatcher
            lines.append(f"    if {cond}: return _miss(feeds)")
        else:
            params.append(f"_chk{j}=_chk{j}")
            defaults.append(check)
            lines.append(f"    if {cond}: s{s} = _chk{j}(s{s})")
    if any("_miss(" in ln for ln in lines):
        params.append("_miss=_miss")
        defaults.append(plan.on_miss)
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
            # (a file may read output 5 of a one-output op: never index into its array)
            body.append(f"{pad}if t.__class__ is not tuple and t.__class__ is not list: "
                        "_one_output()")
            for i, s in st.outs:
                body.append(f"{pad}s{s} = t[{i}]")
        else:
            body.append(f"{pad}{call}")
        free = [s for s in st.free if s not in keep]
        if free:
            body.append(pad + " = ".join(f"s{s}" for s in free) + " = None")
    return body


def _fetch_expr(plan: Plan) -> str:
    """The returned tuple. The caller of a top-level plan owns what it gets back (TF never
    returns its own memory): a fetched constant or feed is copied, and so is a fetched value
    that is read-only (model memory: a view of a constant, a branch's constant, a broadcast)
    or a view of a feed; the same value fetched twice is two arrays. The common case, a
    fresh writeable array, costs two attribute reads."""
    fed = set(plan.feed_values)
    seen: set = set()

    def fetched(s: int) -> str:
        if plan.nested:
            return f"s{s}"
        if s in plan.constants or s in fed or s in seen:
            return f"_copy(s{s})"
        seen.add(s)
        return (f"(s{s} if s{s}.__class__ is _nd and s{s}.base is None and "
                f"s{s}.flags.writeable else _own(s{s}, feeds))")

    expr = "(" + "".join(fetched(s) + ", " for s in plan.fetch_values) + ")"
    return f"_distinct({expr})" if len(plan.fetch_values) > 1 and not plan.nested else expr


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
        if not plan.nested:  # (numpy's warnings off for the call: TF's silent inf and NaN)
            lines.append("    _q = _quiet_set(_ignore)")
        lines.append("    try:")
        lines.extend(body)
        lines.append("    except Exception as e:")
        lines.append("        raise _failure(_plan, k, e) from e")
        if not plan.nested:
            lines.append("    finally:")
            lines.append("        _quiet_reset(_q)")
    lines.append(f"    return {_fetch_expr(plan)}")
    # defaults are bound through a factory so the names _c*/_f* exist when `def` runs
    params.append("_nd=_nd")
    defaults.append(np.ndarray)
    names = [p.split("=")[1] for p in params[1:]]
    src = ("def _make(" + ", ".join(names) + "):\n"
           "  def run(" + ", ".join(params) + "):\n"
           + "\n".join("  " + ln for ln in lines) + "\n"
           "  return run\n")
    scope = {"_failure": _failure, "_plan": plan, "_nfeeds": _nfeeds, "_own": _own,
             "_copy": _copy, "_distinct": _distinct, "_one_output": _one_output, "np": np,
             "_quiet_set": quiet_set, "_quiet_reset": quiet_reset, "_ignore": IGNORE_ERRORS}
    exec(compile(src, f"<tfdeploy plan of {len(plan.steps)} steps>", "exec"), scope)
    plan.source = src
    return scope["_make"](*defaults)


def run(plan: Plan, ctx=None) -> Plan:
    """The codegen stage: ``plan.run`` set (and ``plan.source``)."""
    plan.run = generate(plan)
    return plan
