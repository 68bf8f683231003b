"""Counted loops' bodies as generated code: the steps of a While body inline in a Python loop.

A counted loop (``runtime.control.Loop``: its condition decided a chunk of iterations at a
time) would otherwise call the body's plan once per iteration: pack the state into a tuple,
check and unpack it into the plan's locals, return a new tuple. ``generate`` writes one
function running a whole chunk of iterations instead: the loop state stays in local variables
from one iteration to the next, each counter's value is read from the chunk's vector, the
invariants are bound once per chunk and never freed. Each step is the same call as in the
body's own generated function (``codegen``), so kernels, errors and profiles are the same; and
like it, the source is built from integers and fixed templates only.
"""

from __future__ import annotations

from tfdeploy.compiler import codegen
from tfdeploy.compiler.plan import Plan


def _names(values) -> str:
    return "".join(f"s{v}, " for v in values)


def generate(plan: Plan, k: int, nq: int):
    """``run(box, vecs, n, tail) -> moving values``: ``n`` iterations of the lowered body
    ``plan``, whose feeds are ``k`` moving values, ``nq`` counters, then invariants. The moving
    values are popped from ``box`` (so the caller keeps no reference to their first version:
    a list the loop updates would keep every element it overwrote), counter ``i``'s values are
    ``vecs[i]``, the invariants ``tail``. None if the plan does not fit (a value fed twice)."""
    feeds = plan.feed_values
    if len(set(feeds)) != len(feeds) or len(plan.fetch_values) != k:
        return None
    moving, counters, invariants = feeds[:k], feeds[k:k + nq], feeds[k + nq:]
    params, defaults = ["box", "vecs", "n", "tail"], []
    for s, value in plan.constants.items():
        params.append(f"s{s}=_c{s}")
        defaults.append(value)
    read = {v for st in plan.steps for v in st.ins} | set(plan.fetch_values)
    used = [(i, s) for i, s in enumerate(counters) if s in read]
    lines = [f"    ({_names(moving)}) = box.pop()"]
    if invariants:
        lines.append(f"    ({_names(invariants)}) = tail")
    lines += [f"    v{i} = vecs[{i}]" for i, _ in used]
    lines += ["    k = -1", "    try:", "        for j in range(n):"]
    lines += [f"            s{s} = v{i}[j, ...]" for i, s in used]
    lines += codegen._step_lines(plan, params, defaults, keep=frozenset(invariants), indent=12)
    lines.append(f"            ({_names(moving)}) = ({_names(plan.fetch_values)})")
    lines += ["    except Exception as e:", "        if k < 0:", "            raise",
              "        raise _failure(_plan, k, e) from e", f"    return ({_names(moving)})"]
    names = [p.split("=")[1] for p in params[4:]]
    src = ("def _make(" + ", ".join(names) + "):\n"
           "  def run(" + ", ".join(params) + "):\n"
           + "\n".join("  " + ln for ln in lines) + "\n"
           "  return run\n")
    scope = {"_failure": codegen._failure, "_one_output": codegen._one_output, "_plan": plan}
    exec(compile(src, f"<tfdeploy loop body of {len(plan.steps)} steps>", "exec"), scope)
    run = scope["_make"](*defaults)
    run.source = src
    return run
