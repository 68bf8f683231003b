"""Consistency checks of a graph and of a plan, run after every compiler pass in the tests
(``compile_plan(..., verify=True)``): a pass that breaks an invariant fails there, not later
as a wrong answer."""

from __future__ import annotations

from tfdeploy import dtypes, registry
from tfdeploy.errors import GraphError
from tfdeploy.ir.graph import ALIAS_OPS, SOURCE_OPS, FuncAttr, Graph, parse_ref
from tfdeploy.ir.traverse import input_deps, topological


def _func_names(v) -> list[str]:
    if isinstance(v, FuncAttr):
        return [v.name]
    if isinstance(v, (list, tuple)):
        return [n for x in v for n in _func_names(x)]
    return []


def verify_graph(g: Graph, root: Graph | None = None) -> None:
    """Unique node names, references to existing nodes and functions, no cycle; functions
    checked too."""
    root = root if root is not None else g
    by = g.by_name()  # raises on duplicate names
    for n in g.nodes:
        for r in n.inputs:
            if parse_ref(r)[0] not in by:
                raise GraphError(f"node {n.name!r} ({n.op}) reads {r!r}: no such node")
        for k, v in n.attrs.items():
            for f in _func_names(v):
                if f not in root.functions:
                    raise GraphError(f"node {n.name!r} ({n.op}) attribute {k!r} names "
                                     f"function {f!r}, which the graph does not hold")
    for s in g.inputs + g.outputs:
        if parse_ref(s.ref)[0] not in by:
            raise GraphError(f"signature entry {s.name!r} refers to {s.ref!r}: no such node")
    topological([n.name for n in g.nodes], input_deps(by))
    if g is root:
        for f in g.functions.values():
            verify_graph(f, root)


def verify_plan(plan) -> None:
    """Every value defined once before it is read, freed only after its last read and never
    if fetched, every op known, every step of a lowered plan bound to a kernel."""
    where = f"plan (after {plan.passes[-1]})" if plan.passes else "plan"
    defined = set(plan.feed_values) | set(plan.constants)
    freed: set[int] = set()
    lowered = "lower" in plan.passes
    for k, st in enumerate(plan.steps):
        d = registry.get_opdef(st.op)
        if d is None and st.op not in SOURCE_OPS | ALIAS_OPS:
            raise GraphError(f"{where}: step {k} ({st.name!r}) runs unknown op {st.op!r}")
        for v in st.ins:
            if v not in defined:
                raise GraphError(f"{where}: step {k} ({st.name!r}, {st.op}) reads %{v} "
                                 "before it is defined")
            if v in freed:
                raise GraphError(f"{where}: step {k} ({st.name!r}, {st.op}) reads %{v} "
                                 "after it was freed")
        for _, v in st.outs:
            if v in defined:
                raise GraphError(f"{where}: step {k} ({st.name!r}) defines %{v} again")
            defined.add(v)
        for v in st.free:
            if v in plan.fetch_values or v in plan.constants:
                raise GraphError(f"{where}: step {k} frees %{v}, which is fetched or constant")
            freed.add(v)
        if lowered and st.kernel is None:
            raise GraphError(f"{where}: step {k} ({st.name!r}, {st.op}) has no kernel")
    for v in plan.fetch_values:
        if v not in defined:
            raise GraphError(f"{where}: fetched value %{v} is never defined")


#: function attributes each control-flow op needs, and whether the attribute is a list
FUNC_ATTRS = {
    "While": (("cond", "body"), False), "StatelessWhile": (("cond", "body"), False),
    "If": (("then_branch", "else_branch"), False),
    "StatelessIf": (("then_branch", "else_branch"), False),
    "Case": (("branches",), True), "StatelessCase": (("branches",), True),
    "PartitionedCall": (("f",), False), "StatefulPartitionedCall": (("f",), False),
    "For": (("body",), False),
}
#: attributes naming dtypes: a dtype name, or a list of them
DTYPE_ATTRS = frozenset({"dtype", "T", "DstT", "SrcT", "out_type", "Tout", "Tin", "Tidx",
                         "Tindices", "Tparams", "Tshape", "Tcond", "index_type",
                         "output_type", "out_idx", "Taxis", "Tpaddings", "Tmultiples"})
MAX_RANK = 32


def _where(n) -> str:
    return f"node {n.name!r} ({n.op})"


def check_attrs(n) -> None:
    """The attributes the compiler and executors rely on have the right types: dtype names,
    a Placeholder's shape, control-flow ops' function attributes."""
    for k in DTYPE_ATTRS.intersection(n.attrs):
        v = n.attrs[k]
        if not (isinstance(v, str) or (isinstance(v, list) and
                                       all(isinstance(x, str) for x in v))):
            raise GraphError(f"{_where(n)}: attribute {k!r} must be a dtype name or a list of "
                             f"them, got {type(v).__name__}")
    if n.op in ("Placeholder", "PlaceholderWithDefault") and \
            not isinstance(n.attrs.get("dtype", ""), str):
        raise GraphError(f"{_where(n)}: attribute 'dtype' must be a dtype name")
    if "shape" in n.attrs and n.op in ("Placeholder", "PlaceholderWithDefault"):
        s = n.attrs["shape"]
        if s is not None and not (isinstance(s, list) and len(s) <= MAX_RANK and all(
                d is None or (type(d) is int and -1 <= d < 1 << 62) for d in s)):
            raise GraphError(f"{_where(n)}: attribute 'shape' must be null or a list of at "
                             f"most {MAX_RANK} dimensions (int or null), got {s!r:.80}")
    if n.op in ("ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic") and \
            n.attrs.get("align_corners") is True and n.attrs.get("half_pixel_centers") is True:
        raise GraphError(f"{_where(n)}: if half_pixel_centers is True, align_corners must be "
                         "False (TF refuses both)")
    names, is_list = FUNC_ATTRS.get(n.op, ((), False))
    for k in names:
        v = n.attrs.get(k)
        ok = (isinstance(v, list) and v and all(isinstance(f, FuncAttr) for f in v)) \
            if is_list else isinstance(v, FuncAttr)
        if not ok:
            raise GraphError(f"{_where(n)} needs the function attribute {k!r}"
                             + (" (a non-empty list of functions)" if is_list else ""))


def _calls(g: Graph) -> list[str]:
    out: list[str] = []
    for n in g.nodes:
        for v in n.attrs.values():
            out.extend(_func_names(v))
    return out


def check_calls(g: Graph, max_depth: int) -> None:
    """No function calls itself (directly or through others; TF refuses recursion too), and
    calls nest at most ``max_depth`` deep. Iterative: a hostile file may nest deeply."""
    funcs = g.functions
    calls = {name: sorted(set(_calls(f))) for name, f in funcs.items()}
    depth: dict[str, int] = {}  # calls nested below a function, once done
    for start in funcs:
        if start in depth:
            continue
        path, on_path = [start], {start}
        stack = [iter(calls[start])]
        while stack:
            for callee in stack[-1]:
                if callee not in funcs or callee in depth:
                    continue
                if callee in on_path:
                    cycle = path[path.index(callee):] + [callee]
                    raise GraphError("functions may not call themselves: "
                                     + " -> ".join(repr(c) for c in cycle))
                path.append(callee)
                on_path.add(callee)
                stack.append(iter(calls[callee]))
                break
            else:
                stack.pop()
                done = path.pop()
                on_path.discard(done)
                depth[done] = 1 + max((depth[c] for c in calls[done] if c in depth),
                                      default=0)
                if depth[done] > max_depth:
                    raise GraphError(f"function {done!r} nests function calls {depth[done]} "
                                     f"deep, over the limit ({max_depth}; "
                                     "td.setup(max_function_depth=...))")


#: the callers of functions: their function attributes, and how many of their data inputs
#: the functions do not take (If's cond, Case's index, For's start, limit and delta)
CALLERS = {"If": (("then_branch", "else_branch"), 1), "StatelessIf": (("then_branch",
            "else_branch"), 1), "Case": (("branches",), 1), "StatelessCase": (("branches",), 1),
            "PartitionedCall": (("f",), 0), "StatefulPartitionedCall": (("f",), 0),
            "While": (("body",), 0), "StatelessWhile": (("body",), 0), "For": (("body",), 3)}
#: loops: the body takes and returns the loop's values (For's body takes the index first)
_LOOPS = ("While", "StatelessWhile", "For")


def _dtypes_differ(a, b) -> bool:
    return isinstance(a, str) and isinstance(b, str) and dtypes.is_known(a) and \
        dtypes.is_known(b) and dtypes.to_numpy(a) != dtypes.to_numpy(b)


def _check_side(where: str, fname: str, side: str, specs, count: int, declared=None) -> None:
    """A function's inputs or outputs (``specs``) against what its caller passes or expects:
    ``count`` values; inputs of the dtypes ``declared`` (a list, or None where not declared).
    (An output's dtype in a signature is not authoritative: a graph built by hand may leave it
    at its default; the value's dtype is what its node computes.)"""
    if len(specs) != count:
        verbs = ("takes", "passes") if side == "inputs" else ("returns", "expects")
        raise GraphError(f"{where}: function {fname!r} {verbs[0]} {len(specs)} values, the "
                         f"node {verbs[1]} {count}")
    if isinstance(declared, list) and len(declared) == count:
        for i, (spec, dt) in enumerate(zip(specs, declared)):
            if _dtypes_differ(spec.dtype, dt):
                raise GraphError(f"{where}: function {fname!r}'s {side[:-1]} {i} is "
                                 f"{spec.dtype}, the node declares {dt}")


def check_signatures(g: Graph) -> None:
    """Every function a control-flow node or call runs takes the values the node passes (their
    count, and their dtypes where both are declared) and returns as many as the node declares,
    as TF checks when it loads a graph: a count that differs failed at the first call with an
    IndexError, or ran a loop body on values of other dtypes."""
    for graph in [g, *g.functions.values()]:
        for n in graph.nodes:
            spec = CALLERS.get(n.op)
            if spec is None:
                continue
            names, skip = spec
            where = _where(n)
            args = sum(1 for r in n.inputs if not r.startswith("^")) - skip
            if args < 0:
                raise GraphError(f"{where}: expected at least {skip} inputs, got {args + skip}")
            if n.op in _LOOPS:
                tin, outs = n.attrs.get("T"), args
            else:
                tin, tout = n.attrs.get("Tin"), n.attrs.get("Tout")
                outs = len(tout) if isinstance(tout, list) else None
            index = [None] if n.op == "For" else []  # (For's body: the index first)
            for k in names:
                v = n.attrs.get(k)
                for fa in (v if isinstance(v, list) else [v]):
                    f = g.functions.get(getattr(fa, "name", None))
                    if f is None:
                        continue  # (verify_graph / check_attrs name it)
                    _check_side(where, fa.name, "inputs", f.inputs, args + len(index),
                                index + tin if isinstance(tin, list) else None)
                    if outs is not None:
                        _check_side(where, fa.name, "outputs", f.outputs, outs)
            if n.op in ("While", "StatelessWhile"):
                cond = g.functions.get(getattr(n.attrs.get("cond"), "name", None))
                if cond is not None:
                    name = n.attrs["cond"].name
                    _check_side(where, name, "inputs", cond.inputs, args, tin)
                    _check_side(where, name, "outputs", cond.outputs, 1)
