"""``tfdeploy info``: what a model file holds, readable (or ``--json`` for machines)."""

from __future__ import annotations

import json
import textwrap
from collections import Counter

import numpy as np

from .. import checkdata, registry
from ._common import add_command, called_functions, fmt_bytes, fmt_shape, read_model_file, table
from ._ir import ALIAS_OPS, SOURCE_OPS, Graph

#: ops that run functions, and what to call them in the summary
CONTROL_FLOW = {"While": "loop", "StatelessWhile": "loop", "If": "branch", "StatelessIf": "branch",
                "Case": "branch", "StatelessCase": "branch", "PartitionedCall": "call",
                "StatefulPartitionedCall": "call"}


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers, "info", "summarize a model file: signature, ops, parameters, functions",
        "Describe a model file without running it: format version, graphs, signature (names,\n"
        "dtypes, shapes), op histogram, parameter count and bytes, the functions (loop and\n"
        "branch bodies) it holds, the custom ops it needs and whether this process has them,\n"
        "and its check data. Needs no TensorFlow, and no custom op to be registered.",
        ["tfdeploy info model.tfd", "tfdeploy info model.tfd --json | jq .graphs.default.ops"])
    p.add_argument("model", help="a tfdeploy model file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def op_status(op: str) -> str:
    """``builtin``, ``custom`` (registered by user code) or ``missing`` (not registered)."""
    if op in SOURCE_OPS or op in ALIAS_OPS:
        return "builtin"
    d = registry.get_opdef(op)
    if d is None:
        return "missing"
    modules = {getattr(f, "__module__", "") or "" for f in d.impls.values()}
    return "builtin" if all(m.split(".")[0] == "tfdeploy" for m in modules) else "custom"


def _parameters(graphs: list[Graph]) -> dict:
    seen: dict[int, np.ndarray] = {}
    for g in graphs:
        for n in g.nodes:
            v = n.attrs.get("value") if n.op == "Const" else None
            if isinstance(v, np.ndarray):
                seen[id(v)] = v
    arrays = list(seen.values())
    nbytes = sum(sum(len(x) for x in a.reshape(-1).tolist()) if a.dtype.kind == "O" else a.nbytes
                 for a in arrays)
    return {"count": int(sum(a.size for a in arrays)), "bytes": int(nbytes),
            "constants": len(arrays)}


def _spec(s) -> dict:
    return {"name": s.name, "dtype": s.dtype, "shape": s.shape}


def describe_graph(g: Graph) -> dict:
    """A graph's summary as plain data (what ``--json`` prints)."""
    everything = [g, *g.functions.values()]
    ops = Counter(n.op for x in everything for n in x.nodes)
    callers: dict[str, list] = {}
    for x in everything:
        for n in x.nodes:
            for f in called_functions(n):
                callers.setdefault(f, []).append([n.name, n.op])
    custom: dict[str, list[str]] = {}
    for x in everything:
        for n in x.nodes:
            if op_status(n.op) != "builtin":
                custom.setdefault(n.op, []).append(n.name)
    return {
        "inputs": [_spec(s) for s in g.inputs], "outputs": [_spec(s) for s in g.outputs],
        "nodes": len(g.nodes), "function_nodes": sum(len(f.nodes) for f in g.functions.values()),
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "parameters": _parameters(everything),
        "functions": {k: {"nodes": len(f.nodes), "called_by": callers.get(k, [])}
                      for k, f in g.functions.items()},
        "control_flow": dict(Counter(CONTROL_FLOW[op] for op in ops.elements()
                                     if op in CONTROL_FLOW)),
        "custom_ops": [{"op": op, "registered": op_status(op) == "custom", "nodes": names}
                       for op, names in sorted(custom.items())],
    }


def _describe_check(entry) -> dict:
    if not isinstance(entry, dict):
        return {"present": False}
    if "skipped" in entry:
        return {"present": False, "skipped": str(entry["skipped"])}
    ins = [{"name": e.get("name"), "dtype": e.get("dtype"), "shape": e.get("shape"),
            "stored": "values" if "values" in e else "recipe"} for e in entry.get("inputs", [])]
    outs = [{"name": e.get("name"), "stored": "sample" if "indices" in e else "values",
             "atol": e.get("atol"), "rtol": e.get("rtol")} for e in entry.get("outputs", [])]
    return {"present": True, "reference": entry.get("reference"), "inputs": ins, "outputs": outs}


def describe(path: str) -> dict:
    """Everything ``info`` reports about a model file, as plain data."""
    from .. import fileformat

    head = fileformat.describe(path)
    graphs, meta = read_model_file(path)
    checks = checkdata.entries(meta)
    tensors = meta.get("tensors") if isinstance(meta.get("tensors"), dict) else {}
    return {
        "file": path, **head,
        "graphs": {k: {**describe_graph(g), "shapes_recorded": k in tensors,
                       "check": _describe_check(checks.get(k))} for k, g in graphs.items()},
    }


def _signature_rows(title: str, specs: list[dict]) -> list[str]:
    rows = [(s["name"], s["dtype"], fmt_shape(s["shape"])) for s in specs]
    if not rows:
        return [f"  {title}: none"]
    lines = table([("", "", "")] + rows).splitlines()[1:]
    return [f"  {title}:"] + [f"    {line}" for line in lines]


def _text(d: dict) -> str:
    out = [f"{d['file']}: tfdeploy model file, format version {d['format_version']}, "
           f"{fmt_bytes(d['file_bytes'])} (written by {d['writer'] or 'an unknown writer'})"]
    for key, g in d["graphs"].items():
        fn = f" + {g['function_nodes']} in {len(g['functions'])} functions" if g["functions"] \
            else ""
        out.append(f"graph {key!r}: {g['nodes']} nodes{fn}")
        out += _signature_rows("inputs", g["inputs"]) + _signature_rows("outputs", g["outputs"])
        p = g["parameters"]
        out.append(f"  parameters: {p['count']:,} values in {p['constants']} constants, "
                   f"{fmt_bytes(p['bytes'])}")
        ops = list(g["ops"].items())
        shown = ", ".join(f"{op} {n}" for op, n in ops[:40]) + (", ..." if len(ops) > 40 else "")
        out += textwrap.wrap(f"ops ({len(ops)} types): {shown}", 98, initial_indent="  ",
                             subsequent_indent="    ")
        out += _function_lines(g)
        out.append(_custom_line(g["custom_ops"]))
        out.append(_check_line(g["check"], d["file"]))
    return "\n".join(out)


def _function_lines(g: dict) -> list[str]:
    if not g["functions"]:
        return ["  functions: none (no loops or branches)"]
    flow = ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in g["control_flow"].items())
    lines = [f"  functions ({flow or 'called'}):"]
    for name, f in g["functions"].items():
        by = ", ".join(f"{op} {node!r}" for node, op in f["called_by"][:3])
        lines.append(f"    {name}: {f['nodes']} nodes" + (f", called by {by}" if by else ""))
    return lines


def _custom_line(custom: list[dict]) -> str:
    if not custom:
        return "  custom ops: none (every op is built into tfdeploy)"
    parts = [f"{c['op']} ({len(c['nodes'])} nodes, "
             f"{'registered' if c['registered'] else 'NOT registered in this process'})"
             for c in custom]
    hint = "" if all(c["registered"] for c in custom) else \
        " -- load their kernels with --plugin MODULE to run the model"
    return "  custom ops: " + ", ".join(parts) + hint


def _check_line(c: dict, path: str) -> str:
    if not c["present"]:
        why = f"the converter skipped it ({c['skipped']})" if "skipped" in c else \
            "converted with --no-check-data or by an older tfdeploy"
        return f"  check data: none ({why})"
    ins = ", ".join(f"{i['name']} {fmt_shape(i['shape'])}" for i in c["inputs"])
    return (f"  check data: {c['reference']}'s outputs on a generated input ({ins}); "
            f"'tfdeploy check {path}' compares")


def run(args) -> int:
    d = describe(args.model)
    print(json.dumps(d, indent=2) if args.json else _text(d))
    return 0
