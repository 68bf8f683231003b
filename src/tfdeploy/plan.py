"""Compile a graph once into an execution plan.

Compilation resolves which nodes a set of fetches needs (given a set of feeds), orders them
topologically (iteratively: graphs may be deep), binds each kernel with its attributes, folds
constant subgraphs, gives every live tensor a slot, and frees each slot after its last use. The
result is a :class:`Plan` whose ``run`` is generated straight-line Python (see ``runtime.py``):
no graph walking, no dict lookups, no state shared between calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import registry
from .errors import FeedError, GraphError, UnsupportedOpError
from .graph import FuncAttr, Graph, Node, parse_ref

#: ops whose outputs are their inputs: the plan aliases slots instead of calling anything
ALIAS_OPS = frozenset({"Identity", "IdentityN", "StopGradient", "Snapshot", "PreventGradient"})
#: ops the plan itself understands
SOURCE_OPS = frozenset({"Const", "Placeholder", "PlaceholderWithDefault"})
#: folded results larger than this stay runtime instructions (keeps files' memory predictable)
FOLD_LIMIT_BYTES = 64 << 20

Ref = tuple[str, int]


@dataclass
class Step:
    """One kernel call: ``outs`` receive the results of ``kernel(*ins)``."""

    node: Node
    kernel: Any
    ins: tuple[int, ...]
    #: (output index, slot) pairs that are used later
    outs: tuple[tuple[int, int], ...]
    #: slots whose last use is this step
    free: tuple[int, ...] = ()


@dataclass
class Plan:
    graph: Graph
    fetches: list[Ref]
    feeds: list[Ref]
    feed_slots: tuple[int, ...]
    fetch_slots: tuple[int, ...]
    constants: dict[int, Any]
    steps: list[Step]
    n_slots: int
    #: per feed: a callable validating/casting it (with .dtype and .shape), or None
    feed_checks: list = field(default_factory=list)
    run: Any = field(default=None, repr=False)

    def __call__(self, *feeds):
        return self.run(feeds)


class Context:
    """What control-flow kernels get at bind time: the functions and a way to compile them."""

    def __init__(self, root: Graph):
        self.root = root

    def function(self, f: FuncAttr | str) -> Graph:
        name = f.name if isinstance(f, FuncAttr) else f
        try:
            return self.root.functions[name]
        except KeyError:
            raise GraphError(f"graph has no function named {name!r}") from None

    def compile_function(self, f: FuncAttr | str) -> Plan:
        """A plan taking the function's inputs in order and returning its outputs."""
        g = self.function(f)
        return compile_plan(g, [s.ref for s in g.outputs], [s.ref for s in g.inputs],
                            root=self.root, nested=True)


def _needed_nodes(by: dict[str, Node], roots: list[str], fed: set[Ref]) -> list[str]:
    """Nodes needed to compute ``roots``, in topological order (iterative post-order DFS)."""
    done: set[str] = set()
    visiting: set[str] = set()
    order: list[str] = []
    deps_of: dict[str, list[str]] = {}

    def deps(name: str) -> list[str]:
        d = deps_of.get(name)
        if d is None:
            node = by[name]
            d = []
            for r in node.inputs:
                ref = parse_ref(r)
                if ref not in fed:
                    if ref[0] not in by:
                        raise GraphError(f"node {name!r} ({node.op}) reads {r!r}, but the graph "
                                         f"has no node named {ref[0]!r}")
                    d.append(ref[0])
            deps_of[name] = d
        return d

    for root in roots:
        if root in done:
            continue
        stack = [(root, 0)]
        visiting.add(root)
        while stack:
            name, i = stack[-1]
            d = deps(name)
            if i < len(d):
                stack[-1] = (name, i + 1)
                dep = d[i]
                if dep in done:
                    continue
                if dep in visiting:
                    raise GraphError(f"the graph has a cycle through node {dep!r}; cyclic "
                                     "(TF1 control flow) graphs must be converted first")
                visiting.add(dep)
                stack.append((dep, 0))
            else:
                stack.pop()
                visiting.discard(name)
                done.add(name)
                order.append(name)
    return order


def compile_plan(graph: Graph, fetches: list[str], feeds: list[str] = (), *,
                 root: Graph | None = None, fold: bool = True, optimize: bool = True,
                 feed_checks: list | None = None, nested: bool = False) -> Plan:
    """Compile ``graph`` to compute ``fetches`` from ``feeds`` (tensor refs). A ``nested`` plan
    (a function body run by a control-flow kernel) returns its values as they are; a top-level
    one never returns memory of its feeds or constants."""
    from .runtime import generate

    root = root if root is not None else graph
    by = graph.by_name()
    fetch_refs = [parse_ref(r) for r in fetches]
    feed_refs = [parse_ref(r) for r in feeds]
    fed = set(feed_refs)
    for n, _ in fetch_refs + feed_refs:
        if n not in by:
            raise GraphError(f"graph has no tensor named {n!r}")
    order = _needed_nodes(by, [n for n, i in fetch_refs if (n, i) not in fed], fed)

    missing: dict[str, list[str]] = {}
    for name in order:
        op = by[name].op
        if op not in SOURCE_OPS and op not in ALIAS_OPS and not registry.is_registered(op):
            missing.setdefault(op, []).append(name)
    if missing:
        raise UnsupportedOpError(unsupported_message(missing))

    # which outputs of each node are read (by a later node or as a fetch)
    used: dict[str, set[int]] = {}
    for name in order:
        for r in by[name].inputs:
            n, i = parse_ref(r)
            used.setdefault(n, set()).add(i)
    for n, i in fetch_refs:
        used.setdefault(n, set()).add(i)

    slot_of: dict[Ref, int] = {}
    n_slots = 0

    def new_slot() -> int:
        nonlocal n_slots
        n_slots += 1
        return n_slots - 1

    feed_slots = []
    for ref in feed_refs:
        if ref not in slot_of:
            slot_of[ref] = new_slot()
        feed_slots.append(slot_of[ref])
    constants: dict[int, Any] = {}
    steps: list[Step] = []
    ctx = Context(root)

    for name in order:
        node = by[name]
        op = node.op
        outs_used = sorted(used.get(name, ()))
        ins = [slot_of[parse_ref(r)] for r in node.inputs]
        if op == "Const":
            value = node.attrs.get("value")
            if not isinstance(value, np.ndarray):
                raise GraphError(f"Const node {name!r} has no array value")
            slot_of[(name, 0)] = s = new_slot()
            constants[s] = value
            continue
        if op == "Placeholder":
            raise FeedError(f"input {name!r} must be fed (dtype "
                            f"{node.attrs.get('dtype', '?')}, shape {node.attrs.get('shape')})")
        if op in ALIAS_OPS or op == "PlaceholderWithDefault":
            for i in outs_used:
                if i >= len(ins):
                    raise GraphError(f"node {name!r} ({op}) has {len(ins)} inputs but output "
                                     f"{i} is read")
                slot_of[(name, i)] = ins[i]
            continue
        d = registry.get_opdef(op)
        if d.specializers and any(s in constants for s in ins) and \
                not all(s in constants for s in ins):
            # tried before binding: binding a control-flow op compiles its bodies, and its
            # specializer (given the context) compiles them itself, with the constants inlined
            attrs = {**node.attrs, "_ctx": ctx} if d.needs_context else node.attrs
            fast = registry.specialize(d, attrs, [constants.get(s) for s in ins])
            if fast is not None:
                kernel = fast
                ins = [s for s in ins if s not in constants]
                outs = []
                for i in outs_used:
                    slot_of[(name, i)] = s = new_slot()
                    outs.append((i, s))
                steps.append(Step(node, kernel, tuple(ins), tuple(outs)))
                continue
        kernel = registry.bind(d, node.attrs, ctx)
        if fold and not d.stateful and all(s in constants for s in ins) and ins:
            folded = _try_fold(kernel, [constants[s] for s in ins], outs_used)
            if folded is not None:
                for i, value in folded.items():
                    # read-only: a kernel writing into its input fails loudly instead of
                    # corrupting every later evaluation
                    value.setflags(write=False)
                    slot_of[(name, i)] = s = new_slot()
                    constants[s] = value
                continue
        outs = []
        for i in outs_used:
            slot_of[(name, i)] = s = new_slot()
            outs.append((i, s))
        steps.append(Step(node, kernel, tuple(ins), tuple(outs)))

    fetch_slots = []
    for ref in fetch_refs:
        if ref not in slot_of:
            raise GraphError(f"tensor {ref[0]}:{ref[1]} is not produced by the graph")
        fetch_slots.append(slot_of[ref])

    if optimize:
        from .optimize import fuse

        steps = fuse(steps, constants, set(fetch_slots) | set(feed_slots))

    # free each slot right after its last reader (fetched, fed and constant slots stay)
    keep = set(fetch_slots) | set(constants)
    last: dict[int, int] = {}
    for k, st in enumerate(steps):
        for s in st.ins:
            last[s] = k
    frees: dict[int, list[int]] = {}
    for s, k in last.items():
        if s not in keep:
            frees.setdefault(k, []).append(s)
    for k, st in enumerate(steps):
        st.free = tuple(sorted(set(frees.get(k, ()))))

    plan = Plan(graph, fetch_refs, feed_refs, tuple(feed_slots), tuple(fetch_slots), constants,
                steps, n_slots, list(feed_checks or [None] * len(feed_refs)))
    plan.run = generate(plan, own_outputs=not nested)
    return plan


def _try_fold(kernel, values, outs_used) -> dict[int, Any] | None:
    try:
        res = kernel(*values)
    except Exception:  # leave it to run time, where the error names the node
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


def unsupported_message(missing: dict[str, list[str]]) -> str:
    lines = [f"{len(missing)} op type(s) have no tfdeploy kernel:"]
    for op in sorted(missing):
        nodes = missing[op]
        shown = ", ".join(repr(n) for n in nodes[:5])
        more = f" and {len(nodes) - 5} more" if len(nodes) > 5 else ""
        lines.append(f"  {op}: used by {shown}{more}")
    lines.append("Add a kernel for each before converting or loading, e.g.\n"
                 "    @td.Operation.factory\n"
                 f"    def {sorted(missing)[0]}(x, ...):\n"
                 "        return np....(x),\n"
                 "(see the README, 'Custom ops'), or file an issue.")
    return "\n".join(lines)
