"""Drawing graph views: Graphviz dot text, and SVG from the built-in layered layout (the html
view embeds the same SVG). Function bodies are clusters placed in columns right of their
callers, with a dashed arrow from each caller."""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from .graph_layout import Layout, layout
from .graph_view import VGraph, VNode

TITLE_H = 24.0
PAD = 14.0
COLUMN_GAP = 70.0
CLUSTER_GAP = 30.0

_FAMILIES = (  # (fill, op type prefixes)
    ("#cfe2ff", ("Conv", "MatMul", "BatchMatMul", "Einsum", "DepthwiseConv", "_Fused")),
    ("#ffd9d9", ("Relu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Elu", "Selu", "Gelu",
                 "Erf", "LeakyRelu", "Softplus", "Softsign", "Swish")),
    ("#e6dcff", ("MaxPool", "AvgPool", "FusedBatchNorm", "Mean", "Rsqrt", "LRN", "Max", "Sum")),
    ("#fff1b3", ("While", "StatelessWhile", "If", "StatelessIf", "Case", "StatelessCase",
                 "PartitionedCall", "StatefulPartitionedCall", "TensorList", "TensorArray")),
    ("#dff1f1", ("Reshape", "Transpose", "Concat", "Pack", "Unpack", "StridedSlice", "Slice",
                 "Gather", "Shape", "Squeeze", "ExpandDims", "Tile", "Pad", "Split", "Identity",
                 "Fill", "Range", "Cast", "Select", "Where", "Reverse", "ScatterNd")),
)
_KIND_STYLE = {"input": ("#d4f0d4", "#2e7d32"), "output": ("#ffe2b8", "#e65100")}


def fill_of(v: VNode) -> tuple[str, str]:
    """(fill, stroke) colors of a node: by kind, else by the family of its (first) op type;
    groups get a darker outline."""
    if v.kind in _KIND_STYLE:
        return _KIND_STYLE[v.kind]
    op = v.label.split("+")[0] if v.kind == "group" else v.title
    stroke = "#37474f" if v.kind == "group" else "#6b7a8f"
    for fill, prefixes in _FAMILIES:
        if op.startswith(prefixes):
            return fill, stroke
    return "#f6f6f6", stroke


@dataclass
class Placed:
    view: VGraph
    layout: Layout
    x: float
    y: float
    #: the function this cluster draws, or "" for the top-level graph
    function: str = ""

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x, y, width, height) of the cluster frame (the top-level graph has none)."""
        if not self.function:
            return self.x, self.y, self.layout.width, self.layout.height
        return (self.x - PAD, self.y - TITLE_H, self.layout.width + 2 * PAD,
                self.layout.height + TITLE_H + PAD)

    def at(self, i: int) -> tuple[float, float]:
        x, y = self.layout.xy[i]
        return self.x + x, self.y + y


@dataclass
class Scene:
    parts: list[Placed]
    #: (caller part, caller node index, callee part)
    calls: list[tuple[int, int, int]]
    width: float
    height: float


def _layout(view: VGraph) -> Layout:
    return layout([v.size for v in view.nodes], view.edges,
                  top={i for i, v in enumerate(view.nodes) if v.kind == "input"})


def compose(main: VGraph, functions: dict[str, VGraph]) -> Scene:
    """Lay out the top-level graph and every function, functions in columns by call depth,
    each near its first caller."""
    parts = [Placed(main, _layout(main), PAD, PAD)]
    by_name: dict[str, int] = {}
    calls: list[tuple[int, int, int]] = []
    todo = [0]
    columns: dict[int, float] = {}  # depth -> bottom of the last cluster placed there
    depth = {0: 0}
    while todo:
        p = todo.pop(0)
        placed = parts[p]
        for i, v in enumerate(placed.view.nodes):
            for fname in v.calls:
                if fname not in functions:
                    continue
                if fname not in by_name:
                    fv = functions[fname]
                    d = depth[p] + 1
                    x = max(q.box[0] + q.box[2] for q in parts if depth[parts.index(q)] < d)
                    x += COLUMN_GAP + PAD
                    y = max(placed.at(i)[1], columns.get(d, 0.0) + CLUSTER_GAP) + TITLE_H
                    parts.append(Placed(fv, _layout(fv), x, y, function=fname))
                    by_name[fname] = len(parts) - 1
                    depth[len(parts) - 1] = d
                    bx, by, bw, bh = parts[-1].box
                    columns[d] = by + bh
                    todo.append(len(parts) - 1)
                calls.append((p, i, by_name[fname]))
    for fname, fv in functions.items():  # functions no drawn node calls (kept for reference)
        if fname not in by_name:
            x = max(q.box[0] + q.box[2] for q in parts) + COLUMN_GAP + PAD
            parts.append(Placed(fv, _layout(fv), x, PAD + TITLE_H, function=fname))
            by_name[fname] = len(parts) - 1
    width = max(q.box[0] + q.box[2] for q in parts) + PAD
    height = max(q.box[1] + q.box[3] for q in parts) + PAD
    return Scene(parts, calls, width, height)


# ---------------------------------------------------------------------------- SVG

def _path(points: list[tuple[float, float]]) -> str:
    if not points:
        return ""
    d = [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        dy = (y1 - y0) / 2
        d.append(f"C{x0:.1f},{y0 + dy:.1f} {x1:.1f},{y1 - dy:.1f} {x1:.1f},{y1:.1f}")
    return " ".join(d)


def element_id(v: VNode) -> str:
    return "n-" + v.id.replace(":", "-")


def _node_svg(v: VNode, x: float, y: float) -> str:
    w, h = v.size
    fill, stroke = fill_of(v)
    lines = [t for t in (v.title, v.label, v.shape) if t]
    ty = -h / 2 + 6 + 11
    texts = []
    for k, t in enumerate(lines):
        cls = ' class="op"' if k == 0 else ' class="shape"' if t == v.shape else ""
        texts.append(f'<text x="0" y="{ty + k * 14:.1f}"{cls}>{escape(t)}</text>')
    tip = escape(f"{v.name} ({v.info.get('op', v.title)})")
    return (f'<g class="node kind-{v.kind}" id="{element_id(v)}" '
            f'data-name="{escape(v.name, {chr(34): "&quot;"})}" data-op="{escape(v.title)}" '
            f'transform="translate({x:.1f},{y:.1f})"><title>{tip}</title>'
            f'<rect x="{-w / 2:.1f}" y="{-h / 2:.1f}" width="{w:.1f}" height="{h:.1f}" '
            f'rx="6" fill="{fill}" stroke="{stroke}"/>{"".join(texts)}</g>')


STYLE = """
.node text{font-family:Helvetica,Arial,sans-serif;font-size:11px;text-anchor:middle;fill:#222}
.node text.op{font-weight:bold}.node text.shape{fill:#555;font-family:Menlo,Consolas,monospace}
.edge{fill:none;stroke:#8a8f98;stroke-width:1.2}
.call{fill:none;stroke:#b08900;stroke-width:1.3;stroke-dasharray:5 4}
.cluster rect{fill:#fffdf3;stroke:#b08900;stroke-dasharray:6 3}
.cluster text{font-family:Helvetica,Arial,sans-serif;font-size:12px;fill:#7a5c00}
"""


def to_svg(scene: Scene, title: str) -> str:
    """The scene as a standalone SVG document."""
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{scene.width:.0f}" '
           f'height="{scene.height:.0f}" viewBox="0 0 {scene.width:.0f} {scene.height:.0f}">',
           f"<title>{escape(title)}</title><style>{STYLE}</style>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#8a8f98"/></marker>'
           '<marker id="call-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#b08900"/>'
           '</marker></defs>', '<g id="viewport">']
    for p in scene.parts:
        if p.function:
            x, y, w, h = p.box
            out.append(f'<g class="cluster" data-function="{escape(p.function)}">'
                       f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="8"/>'
                       f'<text x="{x + 8:.1f}" y="{y + 16:.1f}">function {escape(p.function)}'
                       f'</text></g>')
    out.append('<g class="edges">')
    for p in scene.parts:
        for route in p.layout.routes:
            pts = [(p.x + x, p.y + y) for x, y in route]
            if pts:
                out.append(f'<path class="edge" d="{_path(pts)}" marker-end="url(#arrow)"/>')
    for cp, ci, fp in scene.calls:
        v = scene.parts[cp].view.nodes[ci]
        x0, y0 = scene.parts[cp].at(ci)
        x0 += v.size[0] / 2
        bx, by, _, _ = scene.parts[fp].box
        mid = (x0 + bx) / 2
        out.append(f'<path class="call" d="M{x0:.1f},{y0:.1f} C{mid:.1f},{y0:.1f} {mid:.1f},'
                   f'{by + 12:.1f} {bx:.1f},{by + 12:.1f}" marker-end="url(#call-arrow)"/>')
    out.append('</g><g class="nodes">')
    for p in scene.parts:
        for i, v in enumerate(p.view.nodes):
            out.append(_node_svg(v, *p.at(i)))
    out.append("</g></g></svg>")
    return "\n".join(out)


# ---------------------------------------------------------------------------- dot

def _q(text: str) -> str:
    """Text inside a dot double-quoted string."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _dot_label(v: VNode) -> str:
    parts = [f"<b>{escape(v.title)}</b>"] + [escape(t) for t in (v.label, v.shape) if t]
    return "<" + "<br/>".join(parts) + ">"


def _dot_nodes(view: VGraph, indent: str) -> list[str]:
    out = []
    for v in view.nodes:
        fill, stroke = fill_of(v)
        out.append(f'{indent}"{v.id}" [label={_dot_label(v)}, fillcolor="{fill}", '
                   f'color="{stroke}", tooltip="{_q(v.name)}"];')
    for a, b in view.edges:
        out.append(f'{indent}"{view.nodes[a].id}" -> "{view.nodes[b].id}";')
    return out


def to_dot(main: VGraph, functions: dict[str, VGraph], title: str) -> str:
    """Graphviz dot text: the graph, each function a cluster, dashed edges for calls."""
    out = ["digraph tfdeploy {",
           f'  graph [rankdir=TB, compound=true, fontname="Helvetica", label="{_q(title)}", '
           'labelloc=t, nodesep=0.25, ranksep=0.35];',
           '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, '
           'margin="0.12,0.04"];', '  edge [color="#8a8f98", arrowsize=0.6];']
    out += _dot_nodes(main, "  ")
    for k, (name, f) in enumerate(functions.items()):
        out.append(f'  subgraph "cluster_{k}" {{')
        out.append(f'    label="function {_q(name)}"; style="rounded,dashed"; '
                   'color="#b08900"; fontcolor="#7a5c00";')
        out += _dot_nodes(f, "    ")
        out.append("  }")
    first = {name: f.nodes[0].id for name, f in functions.items() if f.nodes}
    index = {name: k for k, name in enumerate(functions)}
    for view in [main, *functions.values()]:
        for v in view.nodes:
            for fname in dict.fromkeys(v.calls):
                if fname in first:
                    out.append(f'  "{v.id}" -> "{first[fname]}" [style=dashed, '
                               f'color="#b08900", lhead="cluster_{index[fname]}", '
                               'constraint=false];')
    out.append("}")
    return "\n".join(out)
