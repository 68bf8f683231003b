"""``tfdeploy graph``: a picture of the model's graph (.svg, .dot or interactive .html)."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np

from ._common import UsageError, add_command, load_model, read_model_file
from ._ir import Graph, parse_ref
from .graph_html import page
from .graph_render import compose, element_id, to_dot, to_svg
from .graph_view import VGraph, build, constant_nodes

FORMATS = (".svg", ".dot", ".html", ".htm")


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers, "graph", "draw the graph: .svg, .dot, or an interactive .html page",
        "Draw the model's graph: nodes with their op type, name and output shape, edges, and\n"
        "function bodies (loops, branches) as clusters beside their callers. Constants are\n"
        "folded into the nodes that use them, and graphs of more than a few hundred nodes are\n"
        "grouped by name scope (a box per Keras layer): both are listed in the details.\n"
        ".svg uses Graphviz's dot when installed (else the built-in layered layout), .dot is\n"
        "for Graphviz, .html is one self-contained page (works offline): drag to pan, wheel to\n"
        "zoom, search, click a node for its attributes and shapes. Needs no TensorFlow.",
        ["tfdeploy graph model.tfd -o model.html",
         "tfdeploy graph model.tfd -o model.svg --engine builtin",
         "tfdeploy graph model.tfd -o model.dot && dot -Tpdf model.dot -o model.pdf",
         "tfdeploy graph model.tfd -o all.html --group none --show-constants"])
    p.add_argument("model", help="a tfdeploy model file")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the picture to write: .svg, .dot or .html")
    p.add_argument("--graph", metavar="KEY", help="which graph of the file (default: the first)")
    p.add_argument("--engine", choices=("auto", "dot", "builtin"), default="auto",
                   help="layout for .svg: Graphviz's dot or the built-in one (default: dot "
                   "when installed)")
    p.add_argument("--group", choices=("auto", "scope", "none"), default="auto",
                   help="group nodes by name scope: auto (large graphs), scope, none")
    p.add_argument("--show-constants", action="store_true",
                   help="draw constant nodes instead of folding them into their consumers")
    p.add_argument("--shapes", choices=("auto", "recorded", "run"), default="auto",
                   help="output shapes: recorded at conversion (TF's static shapes), or "
                   "observed running the file's check input; auto: recorded, else run")
    p.set_defaults(func=run)


def observed_shapes(path: str, key: str, g: Graph) -> tuple[dict, str] | None:
    """(each top-level tensor's [[dtype, shape]], what input gave them): the file's check
    input, or one generated from the signature, run fetching every intermediate; None when the
    model cannot run here."""
    from .run import default_inputs

    try:
        model = load_model(path)
    except Exception:  # noqa: BLE001 - e.g. a custom op not registered: shapes stay unknown
        return None
    refs: dict[str, set[int]] = {n.name: {0} for n in g.nodes if n.op != "NoOp"}
    for n in g.nodes:
        for r in n.inputs:
            name, i = parse_ref(r)
            refs.setdefault(name, set()).add(i)
    fetch = [f"{name}:{i}" for name, idx in refs.items() for i in sorted(idx)]
    try:
        feeds, what = default_inputs(model, key)
        with np.errstate(all="ignore"):  # random inputs may overflow: only shapes matter
            values = model.eval([model.get(r, key=key) for r in fetch],
                                {model.get(n, key=key): v for n, v in feeds.items()})
    except Exception:  # noqa: BLE001 - the picture is still useful without shapes
        return None
    out: dict[str, list] = {}
    for r, v in zip(fetch, values):
        name, i = parse_ref(r)
        lst = out.setdefault(name, [])
        lst.extend([["?", None]] * (i + 1 - len(lst)))
        lst[i] = [str(getattr(v, "dtype", "?")), list(getattr(v, "shape", ()))]
    return out, what


def views(g: Graph, key: str, tensors: dict | None, args) -> tuple[VGraph, dict[str, VGraph]]:
    """The views of the graph and of each function; ``tensors`` as recorded at conversion
    (``{"nodes": ..., "functions": ...}``) or None."""
    fold = not args.show_constants
    tensors = tensors or {}
    funcs = tensors.get("functions", {})
    main = build(g, "g", f"graph {key!r}", tensors.get("nodes"), fold, args.group)
    functions = {name: build(f, f"f{i}", f"function {name}", funcs.get(name), fold, args.group)
                 for i, (name, f) in enumerate(g.functions.items())}
    return main, functions


def _details(main: VGraph, functions: dict[str, VGraph]) -> dict:
    nodes = {}
    for view in [main, *functions.values()]:
        for v in view.nodes:
            nodes[element_id(v)] = {**v.info, "calls": list(dict.fromkeys(v.calls))}
    return nodes


def _dot_svg(dot_text: str) -> str:
    try:
        r = subprocess.run(["dot", "-Tsvg"], input=dot_text, capture_output=True, text=True,
                           timeout=600)
    except FileNotFoundError:
        raise UsageError("Graphviz's dot is not installed (e.g. apt-get install graphviz); "
                         "--engine builtin draws without it") from None
    if r.returncode != 0:
        raise UsageError(f"dot failed: {r.stderr.strip().splitlines()[0] if r.stderr else ''}")
    return r.stdout


def run(args) -> int:
    ext = os.path.splitext(args.output)[1].lower()
    if ext not in FORMATS:
        raise UsageError(f"--output {args.output!r}: expected a .svg, .dot or .html file name")
    graphs, meta = read_model_file(args.model)
    key = args.graph or next(iter(graphs))
    if key not in graphs:
        raise UsageError(f"the model has no graph {key!r} (graphs: {', '.join(graphs)})")
    g = graphs[key]
    recorded = meta.get("tensors", {}).get(key) if isinstance(meta.get("tensors"), dict) \
        else None
    tensors, source = (recorded, "TF's static shapes") if recorded and args.shapes != "run" \
        else (None, "shapes unknown")
    if tensors is None and args.shapes != "recorded":
        observed = observed_shapes(args.model, key, g)
        if observed is not None:
            tensors, source = {"nodes": observed[0]}, f"shapes observed running {observed[1]}"
    main, functions = views(g, key, tensors, args)
    every = [g, *g.functions.values()]
    folded = sum(len(constant_nodes(x)) for x in every) if not args.show_constants else 0
    title = f"{os.path.basename(args.model)}, graph {key!r}"
    stats = (f"{sum(len(x.nodes) for x in every)} nodes ({folded} constants folded), "
             f"{len(g.functions)} functions; {source}")
    engine = "builtin"
    if ext == ".dot":
        text, engine = to_dot(main, functions, title), "dot text"
    elif ext == ".svg" and (args.engine == "dot" or args.engine == "auto" and shutil.which("dot")):
        text, engine = _dot_svg(to_dot(main, functions, title)), "Graphviz dot"
    else:
        scene = compose(main, functions)
        svg = to_svg(scene, title)
        text = svg if ext == ".svg" else page(
            svg, {"nodes": _details(main, functions), "width": scene.width,
                  "height": scene.height}, title, stats)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    boxes = len(main.nodes) + sum(len(v.nodes) for v in functions.values())
    print(f"wrote {args.output}: {boxes} boxes for {stats} (layout: {engine})")
    return 0
