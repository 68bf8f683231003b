"""Raise TF1 control flow (Switch/Merge/Enter/Exit/LoopCond/NextIteration) to While and If.

TF1 graphs (frozen ``.pb`` files, ``tf.compat.v1`` graphs built with control flow v2
disabled) express loops as cycles through ``NextIteration -> Merge`` inside execution *frames*
opened by ``Enter`` and closed by ``Exit``, and conditionals as ``Switch`` nodes whose untaken
output is "dead" until a ``Merge``. The plan runs acyclic, functional graphs, so this pass
rewrites each loop into a ``While`` node and each conditional into an ``If`` node, moving their
insides into functions (the same form TF2 uses), outermost first, then recursing into the new
functions. Nested loops, conditionals inside loops and loops inside conditionals, several loop
variables and outputs, and TensorArrays carried through loops all map directly.

Loops: a frame's non-constant ``Enter`` -> ``Merge`` -> ``Switch(LoopCond)`` chains are its loop
variables; its constant ``Enter`` nodes are loop invariants. The cond function computes the
``LoopCond`` input from the loop variables, the body computes each ``NextIteration`` input, and
each ``Exit`` becomes an output of the ``While``.

Conditionals: every tensor gets a *branch state*, the path of (predicate, branch) pairs of the
``Switch`` outputs it depends on; a ``Merge`` closes the innermost one. The nodes whose state
starts with ``(p, b)`` form branch ``b`` of the conditional on ``p``.

TF1 anchors constants created inside a branch or loop body with *control* inputs (from the
branch's pivot); those edges are what place a constant such as ``tf.cond(p, lambda: 1.,
lambda: 2.)``'s in its branch. Pass them as ``control_inputs`` (see :func:`control_inputs_of`);
without them the pass still works for every structure whose branches read a switched value.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tfdeploy.errors import ConversionError
from tfdeploy.ir.graph import (
    FuncAttr,
    Graph,
    Node,
    TensorSpec,
    canonical_ref,
    parse_ref,
)
from tfdeploy.ir.traverse import reachable, topological

#: _SwitchN is the N-way switch TF's lowering of Case leaves in graphs (output i live when the
#: index is i; an index out of range takes the last output)
SWITCH = frozenset({"Switch", "RefSwitch", "_SwitchN"})
MERGE = frozenset({"Merge", "RefMerge"})
ENTER = frozenset({"Enter", "RefEnter"})
EXIT = frozenset({"Exit", "RefExit"})
NEXT = frozenset({"NextIteration", "RefNextIteration"})
LOOP_COND = frozenset({"LoopCond"})
V1_OPS = SWITCH | MERGE | ENTER | EXIT | NEXT | LOOP_COND

State = tuple  # tuple of (predicate ref, branch) pairs, outermost first


def has_control_flow_v1(graph: Graph) -> bool:
    """Whether ``graph`` (or one of its functions) holds TF1 control-flow nodes."""
    return any(n.op in V1_OPS for g in [graph, *graph.functions.values()] for n in g.nodes)


def control_inputs_of(graph_def) -> dict[str, dict[str, list[str]]]:
    """The control inputs (``^name``) of a GraphDef's nodes: ``{"": {node: [names]}}`` for the
    graph itself, and ``{function name: {node: [names]}}`` for each library function."""

    def of(node_defs) -> dict[str, list[str]]:
        out = {}
        for nd in node_defs:
            c = [i[1:] for i in nd.input if i.startswith("^")]
            if c:
                out[nd.name] = c
        return out

    maps = {"": of(graph_def.node)}
    for f in graph_def.library.function:
        maps[f.signature.name] = of(f.node_def)
    return maps


def raise_control_flow_v1(graph: Graph,
                          control_inputs: dict[str, dict[str, list[str]]] | None = None
                          ) -> Graph:
    """``graph`` with every TF1 loop a While node and every TF1 conditional an If (or Case).

    ``control_inputs`` is :func:`control_inputs_of` of the GraphDef the graph came from. The
    functions of ``graph`` are raised too, and new functions are added to the result's
    ``functions``. Node names are kept: each ``Exit`` and each ``Merge`` becomes an identity of
    the new node's output, so references into the graph (outputs, feeds) stay valid. Call this
    before pruning and before inlining function calls: it needs the nodes that only control
    edges reach, under their original names.
    """
    if not has_control_flow_v1(graph):
        return graph
    maps = control_inputs or {}
    functions = dict(graph.functions)
    taken = {n.name for g in [graph, *functions.values()] for n in g.nodes}
    r = _Raiser(dict(maps.get("", {})), functions, taken)
    nodes = r.raise_level(list(graph.nodes))
    for name, f in list(functions.items()):
        if any(n.op in V1_OPS for n in f.nodes):
            r.ctrl = dict(maps.get(name, {}))
            body = r.raise_level(list(f.nodes))
            body = _prune(body, [s.ref for s in f.outputs], None,
                          [parse_ref(s.ref)[0] for s in f.inputs])
            functions[name] = Graph(body, f.inputs, f.outputs)
    return Graph(nodes, list(graph.inputs), list(graph.outputs), functions)


def _dtype(node: Node, index: int = 0) -> str:
    a = node.attrs
    for k in ("T", "dtype", "DstT", "out_type", "element_dtype"):
        v = a.get(k)
        if isinstance(v, str):
            return v
        if isinstance(v, list) and index < len(v) and isinstance(v[index], str):
            return v[index]
    return "unknown"


class _Raiser:
    def __init__(self, ctrl: dict[str, list[str]], functions: dict[str, Graph], taken: set):
        self.ctrl = ctrl
        self.functions = functions
        self.taken = taken

    def unique(self, name: str) -> str:
        new, k = name, 1
        while new in self.taken:
            new = f"{name}_{k}"
            k += 1
        self.taken.add(new)
        return new

    def unique_function(self, name: str) -> str:
        name = name.replace("/", "_").replace(":", "_")
        new, k = name, 1
        while new in self.functions:
            new = f"{name}_{k}"
            k += 1
        return new

    # ------------------------------------------------------------------ one level
    def raise_level(self, nodes: list[Node]) -> list[Node]:
        """Raise the outermost loops, then the outermost conditionals, of one graph level."""
        if any(n.op in ENTER for n in nodes):
            nodes = self.raise_loops(nodes)
        if any(n.op in SWITCH or n.op in MERGE for n in nodes):
            nodes = self.raise_conds(nodes)
        left = sorted({n.op for n in nodes if n.op in V1_OPS})
        if left:
            bad = [n.name for n in nodes if n.op in V1_OPS][:5]
            raise ConversionError(f"could not raise TF1 control flow: {left} nodes remain "
                                  f"({bad}); the loop or conditional has a structure tfdeploy "
                                  "does not recognise")
        return nodes

    def make_function(self, hint: str, nodes: list[Node], args: list[tuple[str, str]],
                      outputs: list[str]) -> str:
        """A new function of ``nodes`` taking Placeholders ``args`` (name, dtype), returning
        ``outputs`` (refs); its own control flow is raised in turn."""
        body = [Node(a, "Placeholder", [], {"dtype": dt, "shape": None}) for a, dt in args]
        body += _prune(nodes, outputs, self.ctrl, {a for a, _ in args})
        body = self.raise_level(body)
        body = _prune(body, outputs, None, {a for a, _ in args})
        by = {n.name: n for n in body}
        for a, _ in args:
            if a not in by:
                body.insert(0, Node(a, "Placeholder", [], {"dtype": dict(args)[a],
                                                           "shape": None}))
        g = Graph(body, [TensorSpec(a, f"{a}:0", dt, None) for a, dt in args],
                  [TensorSpec(f"output_{i}", canonical_ref(r), "unknown", None)
                   for i, r in enumerate(outputs)])
        name = self.unique_function(hint)
        self.functions[name] = g
        return name

    # ------------------------------------------------------------------ loops
    def raise_loops(self, nodes: list[Node]) -> list[Node]:
        by = {n.name: n for n in nodes}
        frame = _frames(nodes, by, self.ctrl)
        tops: list[str] = []
        for n in nodes:
            f = frame.get(n.name, ())
            if f and f[0] not in tops:
                tops.append(f[0])
        for top in tops:
            by = {n.name: n for n in nodes}
            nodes = self.raise_loop(nodes, by, frame, top)
        return nodes

    def raise_loop(self, nodes: list[Node], by: dict, frame: dict, top: str) -> list[Node]:
        members = [n for n in nodes if frame.get(n.name, ())[:1] == (top,)]
        member_names = {n.name for n in members}
        lc, enters, loop_vars, invariants = _loop_structure(members, by, frame, top)
        prefix = lc.name.rsplit("/", 1)[0] if "/" in lc.name else lc.name
        sub: dict[str, str] = {}
        args: list[tuple[str, str]] = []
        for k, (e, m, sw, _, _) in enumerate(loop_vars):
            a = self.unique(f"{prefix}/loop_var_{k}")
            args.append((a, _dtype(e)))
            sub[f"{m.name}:0"] = sub[f"{sw.name}:1"] = f"{a}:0"
        for k, e in enumerate(invariants):
            a = self.unique(f"{prefix}/invariant_{k}")
            args.append((a, _dtype(e)))
            sub[f"{e.name}:0"] = f"{a}:0"
        structural = {lc.name, *(e.name for e in enters)}
        for _e, m, sw, nx, exits in loop_vars:
            structural |= {m.name, sw.name, nx.name, *(x.name for x in exits)}
        body_nodes = _copy([n for n in members if n.name not in structural], sub)
        outer_inputs = [v[0].inputs[0] for v in loop_vars] + [e.inputs[0] for e in invariants]
        outputs = [_sub(lc.inputs[0], sub)] + [_sub(v[3].inputs[0], sub) for v in loop_vars]
        (body_nodes,), (outputs,), captured = self.close([body_nodes], [outputs], args, by)
        for k, ref in enumerate(captured):
            a = self.unique(f"{prefix}/captured_{k}")
            args.append((a, _dtype(by[parse_ref(ref)[0]], parse_ref(ref)[1])))
            outer_inputs.append(ref)
        _subst_all(body_nodes, {r: f"{a}:0" for r, (a, _) in
                                zip(captured, args[len(args) - len(captured):])})
        outputs = [_sub(r, {c: f"{a}:0" for c, (a, _) in
                            zip(captured, args[len(args) - len(captured):])}) for r in outputs]
        cond_name = self.make_function(f"{prefix}_cond", body_nodes, args, outputs[:1])
        body_name = self.make_function(
            f"{prefix}_body", body_nodes, args,
            outputs[1:] + [f"{a}:0" for a, _ in args[len(loop_vars):]])
        wname = self.unique(f"{prefix}/While")
        dtypes = [dt for _, dt in args]
        parallel = enters[0].attrs.get("parallel_iterations", 10)
        w = Node(wname, "While", list(outer_inputs),
                 {"T": dtypes, "cond": FuncAttr(cond_name), "body": FuncAttr(body_name),
                  "parallel_iterations": parallel, "output_shapes": []})
        self.ctrl[wname] = [c for e in enters for c in self.ctrl.get(e.name, [])]
        replaced = {}
        for k, v in enumerate(loop_vars):
            for x in v[4]:
                replaced[x.name] = Node(x.name, "Identity", [f"{wname}:{k}"], {"T": dtypes[k]})
        out = _splice(nodes, member_names, replaced, w)
        _check_no_refs(out, member_names - set(replaced), f"TF1 loop {top!r}")
        return out

    def close(self, groups: list[list[Node]], outputs: list[list[str]], args, by: dict):
        """Make each group of function nodes self-contained: constants read from outside are
        copied in; other outside values are returned once each, to become inputs."""
        captured: list[str] = []
        out_groups = []
        for nodes, outs in zip(groups, outputs):
            defined = {n.name for n in nodes} | {a for a, _ in args}
            extra: list[Node] = []
            for r in [r for n in nodes for r in n.inputs] + list(outs):
                c = canonical_ref(r)
                src = parse_ref(c)[0]
                if src in defined:
                    continue
                node = by.get(src)
                if node is not None and node.op == "Const":
                    defined.add(src)
                    extra.append(Node(node.name, "Const", [], dict(node.attrs)))
                elif c not in captured:
                    if node is None:
                        raise ConversionError(f"a TF1 loop or branch reads {c!r}, which does "
                                              "not exist")
                    captured.append(c)
            out_groups.append(extra + nodes)
        return out_groups, outputs, captured

    # ------------------------------------------------------------------ conditionals
    def raise_conds(self, nodes: list[Node]) -> list[Node]:
        """Raise every outermost conditional of the level (their insides are disjoint)."""
        by = {n.name: n for n in nodes}
        st = _branch_states(_topo(nodes, by, self.ctrl), by, self.ctrl)
        groups: dict[str, tuple[list, list, dict]] = {}  # pred -> (merges, switches, members)

        def group(p):
            return groups.setdefault(p, ([], [], {}))

        for n in nodes:
            state = st.node.get(n.name, ())
            if n.op in MERGE and st.merged[n.name][0] == ():
                group(st.merged[n.name][1])[0].append(n)
            elif n.op in SWITCH and state == ():
                group(st.pred(n))[1].append(n)
            elif state:
                group(state[0][0])[2].setdefault(state[0][1], []).append(n)
        if not groups:
            return nodes
        index_used = {parse_ref(r)[0] for n in nodes for r in n.inputs if parse_ref(r)[1] == 1}
        emit: dict[str, list[Node]] = {}  # node name -> the nodes replacing it
        removed: set[str] = set()
        for p, (merges, switches, members) in groups.items():
            for n in switches + [n for b in members.values() for n in b]:
                removed.add(n.name)
            if merges:
                emit.update(self.raise_cond(merges, switches, members, by, st, p, index_used))
        out = []
        for n in nodes:
            if n.name in emit:
                out.extend(emit[n.name])
            elif n.name not in removed:
                out.append(n)
        _check_no_refs(out, removed, "TF1 conditional")
        return out

    def raise_cond(self, merges: list[Node], switches: list[Node], members: dict, by: dict,
                   st: _States, p: str, index_used: set) -> dict[str, list[Node]]:
        """An If (or Case) for the outermost conditional on predicate ``p``; returns the nodes
        replacing each of its Merge nodes."""
        if not switches:
            raise ConversionError(f"TF1 conditional on {p!r}: no Switch found")
        n_way = {_n_outputs(s) for s in switches}
        if len(n_way) != 1:
            raise ConversionError(f"TF1 conditional on {p!r}: switches with different numbers "
                                  f"of branches {sorted(n_way)}")
        nb = n_way.pop()
        is_case = switches[0].op == "_SwitchN"
        members = {b: members.get(b, []) for b in range(nb)}
        member_names = {n.name for b in range(nb) for n in members[b]}
        prefix = merges[0].name.rsplit("/", 1)[0] if "/" in merges[0].name else merges[0].name
        # inputs: the switched values (one per value, shared by all branches), then captures
        args: list[tuple[str, str]] = []
        outer_inputs: list[str] = []
        sub: dict[int, dict[str, str]] = {b: {} for b in range(nb)}
        arg_of: dict[str, str] = {}
        for s in switches:
            d = canonical_ref(s.inputs[0])
            if d not in arg_of:
                arg_of[d] = a = self.unique(f"{prefix}/input_{len(args)}")
                args.append((a, _dtype(s)))
                outer_inputs.append(d)
            for b in range(nb):
                sub[b][f"{s.name}:{b}"] = f"{arg_of[d]}:0"
        # which input of each Merge comes from which branch
        index_used = {m.name for m in merges if m.name in index_used}
        outs: dict[int, list[str]] = {b: [] for b in range(nb)}
        consts: dict[int, list[Node]] = {b: [] for b in range(nb)}
        for m in merges:
            side = self.merge_sides(m, st, p, nb)
            for b in range(nb):
                outs[b].append(_sub(side[b], sub[b]))
            if m.name in index_used:
                for b in range(nb):
                    consts[b].append(Node(
                        self.unique(f"{m.name}/value_index_{b}"), "Const", [],
                        {"dtype": "int32", "value": np.array(m.inputs.index(side[b]),
                                                             dtype=np.int32)}))
        for b in range(nb):
            outs[b] += [f"{c.name}:0" for c in consts[b]]
        groups = [consts[b] + _copy(members[b], sub[b]) for b in range(nb)]
        for b in range(nb):
            mine = {n.name for n in members[b]}
            for r in [r for n in groups[b] for r in n.inputs] + outs[b]:
                if parse_ref(r)[0] in member_names - mine:
                    raise ConversionError(f"TF1 conditional on {p!r}: branch {b} reads {r!r} "
                                          "from another branch")
        groups, outs_list, captured = self.close(groups, [outs[b] for b in range(nb)], args,
                                                 by)
        csub = {}
        for k, c in enumerate(captured):
            a = self.unique(f"{prefix}/captured_{k}")
            args.append((a, _dtype(by[parse_ref(c)[0]], parse_ref(c)[1])))
            outer_inputs.append(c)
            csub[c] = f"{a}:0"
        for g in groups:
            _subst_all(g, csub)
        names = []
        for b in range(nb):
            hint = f"{prefix}_branch{b}" if is_case else f"{prefix}_{('else', 'then')[b]}"
            names.append(self.make_function(hint, groups[b], args,
                                            [_sub(r, csub) for r in outs_list[b]]))
        out_types = [_dtype(m) for m in merges] + ["int32"] * len(consts[0])
        common = {"Tin": [dt for _, dt in args], "Tout": out_types, "output_shapes": []}
        if is_case:
            attrs = {**common, "branches": [FuncAttr(n) for n in names]}
        else:
            attrs = {**common, "Tcond": "bool", "then_branch": FuncAttr(names[1]),
                     "else_branch": FuncAttr(names[0])}
        op = "Case" if is_case else "If"
        node = Node(self.unique(f"{prefix}/{op}"), op, [p] + outer_inputs, attrs)
        emit = {m.name: [r] for m, r in zip(merges, _merge_replacements(merges, node,
                                                                        out_types, index_used))}
        emit[merges[0].name].insert(0, node)
        return emit

    @staticmethod
    def merge_sides(m: Node, st: _States, p: str, nb: int) -> list[str]:
        """The input of Merge ``m`` taken in each branch of the conditional on ``p``."""
        if len(m.inputs) != nb:
            raise ConversionError(f"TF1 conditional: Merge {m.name!r} has {len(m.inputs)} "
                                  f"inputs for {nb} branches")
        side: list = [None] * nb
        free = []
        for r in m.inputs:
            s = st.out(r)
            if s and s[0][0] == p and side[s[0][1]] is None:
                side[s[0][1]] = r
            else:
                free.append(r)
        missing = [b for b in range(nb) if side[b] is None]
        if len(missing) != len(free) or len(missing) > 1:
            raise ConversionError(f"TF1 conditional: cannot tell which branch each input of "
                                  f"Merge {m.name!r} comes from (convert with the GraphDef's "
                                  "control inputs)")
        for b, r in zip(missing, free):
            side[b] = r
        return [canonical_ref(r) for r in side]


# ---------------------------------------------------------------------------- analysis

def _copy(nodes: list[Node], sub: dict[str, str]) -> list[Node]:
    return [Node(n.name, n.op, [_sub(r, sub) for r in n.inputs], dict(n.attrs)) for n in nodes]


def _loop_structure(members: list[Node], by: dict, frame: dict, top: str):
    """(LoopCond, Enter nodes, loop variables as (enter, merge, switch, NextIteration, exits),
    invariant Enter nodes) of the TF1 loop frame ``top``."""
    inner = [n for n in members if frame[n.name] == (top,)]
    enters = [n for n in inner if n.op in ENTER]
    lcs = [n for n in inner if n.op in LOOP_COND]
    if len(lcs) != 1:
        raise ConversionError(f"TF1 loop frame {top!r} has {len(lcs)} LoopCond nodes; "
                              "expected one")
    lc = lcs[0]
    consumers: dict[str, list[tuple[Node, int]]] = {}
    for n in members:
        for j, r in enumerate(n.inputs):
            consumers.setdefault(canonical_ref(r), []).append((n, j))
    lc_ref = f"{lc.name}:0"
    loop_vars = []  # (enter, merge, switch, NextIteration, exits)
    invariants = []
    for e in enters:
        merges = [c for c, _ in consumers.get(f"{e.name}:0", []) if c.op in MERGE]
        if e.attrs.get("is_constant") or not merges:
            invariants.append(e)
            continue
        m = merges[0]
        nxt = [by[parse_ref(r)[0]] for r in m.inputs
               if parse_ref(r)[0] in by and by[parse_ref(r)[0]].op in NEXT]
        if len(m.inputs) != 2 or len(nxt) != 1:
            raise ConversionError(f"TF1 loop {top!r}: Merge {m.name!r} should join Enter "
                                  f"{e.name!r} and one NextIteration")
        sws = [c for c, j in consumers.get(f"{m.name}:0", []) if c.op in SWITCH and j == 0
               and canonical_ref(c.inputs[1]) == lc_ref]
        if len(sws) != 1:
            raise ConversionError(f"TF1 loop {top!r}: loop variable {m.name!r} has "
                                  f"{len(sws)} Switch nodes on the LoopCond; expected one")
        sw = sws[0]
        exits = [c for c, _ in consumers.get(f"{sw.name}:0", []) if c.op in EXIT]
        loop_vars.append((e, m, sw, nxt[0], exits))
    if not loop_vars:
        raise ConversionError(f"TF1 loop frame {top!r} has no loop variables")
    return lc, enters, loop_vars, invariants


def _merge_replacements(merges: list[Node], node: Node, out_types: list[str],
                        index_used: set) -> list[Node]:
    """The nodes standing for each Merge of a raised conditional: an Identity of the If's
    output, or an IdentityN also giving the taken branch's index where it is read."""
    out = []
    k_idx = len(merges)
    for k, m in enumerate(merges):
        ins, types = [f"{node.name}:{k}"], [out_types[k]]
        if m.name in index_used:
            ins.append(f"{node.name}:{k_idx}")
            types.append("int32")
            k_idx += 1
        if len(ins) == 1:
            out.append(Node(m.name, "Identity", ins, {"T": types[0]}))
        else:
            out.append(Node(m.name, "IdentityN", ins, {"T": types}))
    return out


def _splice(nodes: list[Node], member_names: set, replaced: dict, node: Node) -> list[Node]:
    """``nodes`` with the members of a raised loop or conditional dropped, ``node`` placed
    where the first of them that stays (``replaced``, an Exit or Merge) was."""
    out = []
    placed = False
    for n in nodes:
        if n.name in member_names:
            if n.name in replaced:
                if not placed:
                    out.append(node)
                    placed = True
                out.append(replaced[n.name])
            continue
        out.append(n)
    if not placed:
        out.append(node)
    return out


def _sub(ref: str, sub: dict[str, str]) -> str:
    c = canonical_ref(ref)
    return sub.get(c, c)


def _subst_all(nodes: list[Node], sub: dict[str, str]) -> None:
    for n in nodes:
        n.inputs = [_sub(r, sub) for r in n.inputs]


def _check_no_refs(nodes: list[Node], removed: set, what: str) -> None:
    for n in nodes:
        for r in n.inputs:
            if parse_ref(r)[0] in removed:
                raise ConversionError(f"{what}: node {n.name!r} ({n.op}) reads {r!r} from "
                                      "inside the loop or branch without an Exit or Merge")


def _prune(nodes: list[Node], outputs: list[str], ctrl: dict | None,
           keep: Iterable[str] = ()) -> list[Node]:
    """The nodes ``outputs`` need (following control inputs of input-less nodes too), walking
    no further than the names in ``keep``, which are kept."""
    by = {n.name: n for n in nodes}
    keep = set(keep)
    need = reachable([parse_ref(r)[0] for r in outputs],
                     lambda name: [] if name in keep else _deps(by, ctrl, name, False)) | keep
    return [n for n in nodes if n.name in need]


def _deps(by: dict, ctrl: dict | None, name: str, only_known: bool) -> list[str]:
    """A node's data inputs, or, for an input-less node, its control inputs."""
    n = by.get(name)
    if n is None:
        return []
    d = [parse_ref(r)[0] for r in n.inputs]
    if ctrl is not None and not n.inputs:
        d = [c for c in ctrl.get(name, ()) if c in by]
    return [x for x in d if x in by] if only_known else d


def _frames(nodes: list[Node], by: dict, ctrl: dict) -> dict[str, tuple]:
    """The frame (tuple of frame names, outermost first) each node executes in."""
    frame: dict[str, tuple] = {}
    consumers: dict[str, list[str]] = {}
    for n in nodes:
        srcs = [parse_ref(r)[0] for r in n.inputs] or list(ctrl.get(n.name, ()))
        for s in srcs:
            consumers.setdefault(s, []).append(n.name)

    def out_frame(name: str):
        f = frame.get(name)
        if f is None:
            return None
        return f[:-1] if by[name].op in EXIT else f

    def compute(n: Node):
        srcs = [parse_ref(r)[0] for r in n.inputs]
        if not srcs:
            srcs = [c for c in ctrl.get(n.name, ()) if c in by]
        cands = [out_frame(s) for s in srcs if s in by]
        cands = [c for c in cands if c is not None]
        if n.op in ENTER:
            if not cands:
                return None
            name = n.attrs.get("frame_name")
            return cands[0] + (name if isinstance(name, str) else str(name),)
        if not cands:
            return () if not srcs or all(s not in by for s in srcs) else None
        return max(cands, key=len)

    work = list(n.name for n in nodes)
    pending = set(work)
    steps = 0
    limit = 64 * (len(nodes) + 1)
    while work:
        steps += 1
        if steps > limit:
            raise ConversionError("could not assign TF1 loop frames (inconsistent graph)")
        name = work.pop()
        pending.discard(name)
        f = compute(by[name])
        if f is None:
            continue
        old = frame.get(name)
        if old is None or (len(f) > len(old)):
            frame[name] = f
            for c in consumers.get(name, ()):
                if c not in pending:
                    pending.add(c)
                    work.append(c)
    for n in nodes:
        frame.setdefault(n.name, ())
    return frame


def _topo(nodes: list[Node], by: dict, ctrl: dict) -> list[Node]:
    """Nodes in topological order over data inputs (and control inputs of input-less nodes)."""
    def cycle(d: str) -> ConversionError:
        return ConversionError(f"TF1 conditional: the graph has a cycle through {d!r} outside "
                               "any loop frame")

    order = topological([n.name for n in nodes], lambda name: _deps(by, ctrl, name, True),
                        on_cycle=cycle)
    return [by[name] for name in order]


class _States:
    """Branch states of every node and Switch output, and what each Merge closes."""

    def __init__(self, by: dict):
        self.by = by
        self.node: dict[str, State] = {}
        self.merged: dict[str, tuple[State, str]] = {}

    def out(self, ref: str) -> State:
        name, i = parse_ref(ref)
        n = self.by.get(name)
        base = self.node.get(name, ())
        if n is not None and n.op in SWITCH:
            return base + ((self.pred(n), i),)
        return base

    def pred(self, switch: Node) -> str:
        """The predicate of a Switch, looking through identities (TF1 switches the branch
        values on ``pred_id = Identity(pred)`` but the pivots on ``pred`` itself)."""
        return _through_identities(self.by, switch.inputs[1])


def _n_outputs(switch: Node) -> int:
    if switch.op == "_SwitchN":
        return int(switch.attrs.get("num_outs", 0))
    return 2


def _through_identities(by: dict, ref: str) -> str:
    name, i = parse_ref(ref)
    for _ in range(len(by) + 1):
        n = by.get(name)
        if n is None or n.op not in ("Identity", "Snapshot") or not n.inputs:
            break
        name, i = parse_ref(n.inputs[0])
    return f"{name}:{i}"


def _longest(states: list[State], where: str) -> State:
    best: State = ()
    for s in states:
        if len(s) > len(best):
            best = s
    for s in states:
        if best[:len(s)] != s:
            raise ConversionError(f"TF1 conditional: node {where!r} mixes values of "
                                  f"different branches ({s} and {best})")
    return best


def _branch_states(order: list[Node], by: dict, ctrl: dict) -> _States:
    st = _States(by)
    for n in order:
        if n.inputs:
            ins = [st.out(r) for r in n.inputs]
        else:
            ins = [st.out(c) if by[c].op not in SWITCH else st.node.get(c, ())
                   for c in ctrl.get(n.name, ()) if c in by]
        if n.op in MERGE:
            longest = max(ins, key=len, default=())
            if not longest:
                raise ConversionError(f"TF1 conditional: no Switch output reaches Merge "
                                      f"{n.name!r}, so its branches are unknown (its inputs "
                                      "are constants placed by control inputs: pass "
                                      "control_inputs_of(graph_def))")
            outer, (p, _) = longest[:-1], longest[-1]
            for s in ins:
                if s and (s[:-1] != outer or s[-1][0] != p) and s != outer[:len(s)]:
                    raise ConversionError(f"TF1 conditional: Merge {n.name!r} joins values "
                                          f"of unrelated branches")
            st.node[n.name] = outer
            st.merged[n.name] = (outer, p)
        elif n.op in SWITCH:
            st.node[n.name] = _longest(ins, n.name)
        else:
            st.node[n.name] = _longest(ins, n.name)
    return st
