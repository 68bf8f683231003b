"""The interactive html view: one self-contained file (inline CSS and JS, no network), around
the SVG of ``graph_render.to_svg``. Drag to pan, wheel to zoom, type to search (Enter: next
match, '/' focuses the box), click a node for its attributes, shapes, inputs and constants.

The page honours ``#search=TEXT`` and ``#node=NAME`` in its URL, and when ready sets
``data-ready``, ``data-nodes`` (nodes drawn with a non-empty box) and ``data-selected`` on
<body>: what the browser test reads.
"""

from __future__ import annotations

import json
from xml.sax.saxutils import escape

CSS = """
html,body{margin:0;height:100%;font-family:Helvetica,Arial,sans-serif;font-size:13px}
body{display:grid;grid-template-rows:auto 1fr;grid-template-columns:1fr 340px}
header{grid-column:1/3;display:flex;gap:10px;align-items:center;padding:6px 10px;
 background:#263238;color:#eceff1}
header input{width:260px;padding:3px 6px;border:0;border-radius:3px}
header button{padding:3px 10px}
header .stats{margin-left:auto;color:#b0bec5}
#canvas{overflow:hidden;background:#fafafa;cursor:grab;position:relative}
#canvas.dragging{cursor:grabbing}
#canvas svg{display:block;width:100%;height:100%}
#details{overflow:auto;border-left:1px solid #ccc;padding:8px 12px;background:#fff}
#details h2{font-size:15px;margin:4px 0;word-break:break-all}
#details h3{font-size:12px;margin:12px 0 4px;color:#555;text-transform:uppercase}
#details table{border-collapse:collapse;width:100%}
#details td{border-top:1px solid #eee;padding:2px 4px;vertical-align:top;word-break:break-all}
#details a{color:#1565c0;cursor:pointer;text-decoration:underline}
.hint{color:#777}
g.node{cursor:pointer}
g.node.match rect{stroke:#f57c00;stroke-width:3}
g.node.selected rect{stroke:#d50000;stroke-width:3.5}
g.node:hover rect{stroke-width:2.5}
"""

JS = r"""
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("tfd-data").textContent);
  const canvas = document.getElementById("canvas");
  const svg = canvas.querySelector("svg");
  const vp = svg.querySelector("#viewport");
  const input = document.getElementById("search");
  const count = document.getElementById("count");
  const details = document.getElementById("details");
  svg.removeAttribute("viewBox");
  svg.removeAttribute("width");
  svg.removeAttribute("height");
  const nodes = Array.from(svg.querySelectorAll("g.node"));
  const byName = new Map();
  const haystack = new Map();
  for (const n of nodes) {
    const info = data.nodes[n.id] || {};
    byName.set(n.dataset.name, n);
    const names = [n.dataset.name, n.dataset.op];
    for (const m of info.members || []) { byName.set(m.name, n); names.push(m.name, m.op); }
    haystack.set(n, names.join("\n").toLowerCase());
  }
  let tx = 0, ty = 0, k = 1, matches = [], current = -1;
  function apply() { vp.setAttribute("transform", `translate(${tx},${ty}) scale(${k})`); }
  function fit() {
    const r = canvas.getBoundingClientRect();
    k = Math.min(r.width / data.width, r.height / data.height, 1.5);
    if (k < 0.4) k = Math.max(0.4, Math.min(r.width / data.width, 1));  // tall: fit width
    tx = Math.max(10, (r.width - data.width * k) / 2);
    ty = 10;
    apply();
  }
  function centerOn(el) {
    const m = el.transform.baseVal.consolidate().matrix;
    const r = canvas.getBoundingClientRect();
    k = Math.max(k, 0.9);
    tx = r.width / 2 - m.e * k;
    ty = r.height / 2 - m.f * k;
    apply();
  }
  function mk(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function shape(s) {
    return s === null || s === undefined ? "?" :
      "(" + s.map((d) => (d === null ? "?" : d)).join(", ") + (s.length === 1 ? "," : "") + ")";
  }
  function row(table, cells) {
    const tr = table.insertRow();
    for (const c of cells) {
      const td = tr.insertCell();
      if (c instanceof Node) td.appendChild(c); else td.textContent = c;
    }
  }
  function link(name) {
    const base = name.split(":")[0];
    const target = byName.get(name) || byName.get(base);
    if (!target) return mk("span", name);
    const a = mk("a", name);
    a.onclick = () => select(target, true);
    return a;
  }
  function clusterLink(name) {
    const c = Array.from(svg.querySelectorAll("g.cluster"))
      .find((g) => g.dataset.function === name);
    if (!c) return mk("span", name);
    const a = mk("a", "function " + name);
    a.onclick = () => {
      const b = c.querySelector("rect").getBBox();
      const r = canvas.getBoundingClientRect();
      k = Math.max(k, 0.9); tx = 20 - b.x * k; ty = 20 - b.y * k; apply();
    };
    return a;
  }
  function section(title, items, render) {
    if (!items || !items.length) return;
    details.appendChild(mk("h3", title));
    const t = mk("table");
    for (const it of items) row(t, render(it));
    details.appendChild(t);
  }
  function show(info) {
    details.replaceChildren();
    details.appendChild(mk("h2", info.name));
    details.appendChild(mk("div", info.op === "group" ? "group of " + info.members.length +
      " nodes (a name scope)" : "op " + info.op));
    section("outputs", info.outputs, (o) => [o[0], shape(o[1])]);
    if (info.outputs === null || info.outputs === undefined)
      details.appendChild(mk("p", "output shapes unknown (not recorded in the file)", "hint"));
    section("inputs", info.inputs, (r) => [link(r)]);
    section("constants", info.constants, (c) => [c.name, c.outputs ? c.outputs.map(
      (o) => o[0] + " " + shape(o[1])).join(", ") : "?", c.value || ""]);
    section("attributes", Object.entries(info.attrs || {}), (kv) => [kv[0], kv[1]]);
    section("members", info.members, (m) => [m.name, m.op, m.outputs ? m.outputs.map(
      (o) => shape(o[1])).join(" ") : "?"]);
    section("calls", info.calls, (f) => [clusterLink(f)]);
  }
  function select(el, center) {
    for (const s of svg.querySelectorAll("g.node.selected")) s.classList.remove("selected");
    el.classList.add("selected");
    document.body.dataset.selected = el.dataset.name;
    show(data.nodes[el.id] || {name: el.dataset.name, op: el.dataset.op});
    if (center) centerOn(el);
  }
  function search(q) {
    q = q.trim().toLowerCase();
    for (const m of matches) m.classList.remove("match");
    matches = q ? nodes.filter((n) => haystack.get(n).includes(q)) : [];
    for (const m of matches) m.classList.add("match");
    current = -1;
    count.textContent = q ? matches.length + (matches.length === 1 ? " match" : " matches") : "";
    document.body.dataset.matches = matches.length;
    next();
  }
  function next() {
    if (!matches.length) return;
    current = (current + 1) % matches.length;
    select(matches[current], true);
  }
  function fromHash() {
    const h = decodeURIComponent(location.hash.slice(1));
    if (h.startsWith("search=")) { input.value = h.slice(7); search(input.value); }
    else if (h.startsWith("node=") && byName.has(h.slice(5))) select(byName.get(h.slice(5)), true);
  }
  input.addEventListener("input", () => search(input.value));
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") next();
    if (e.key === "Escape") { input.value = ""; search(""); input.blur(); }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "/" && document.activeElement !== input) { e.preventDefault(); input.focus(); }
  });
  document.getElementById("fit").onclick = fit;
  for (const n of nodes) n.addEventListener("click", (e) => { e.stopPropagation(); select(n); });
  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    if (e.target.closest("g.node")) return;
    drag = {x: e.clientX - tx, y: e.clientY - ty};
    canvas.classList.add("dragging");
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    tx = e.clientX - drag.x; ty = e.clientY - drag.y; apply();
  });
  canvas.addEventListener("pointerup", () => { drag = null; canvas.classList.remove("dragging"); });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = canvas.getBoundingClientRect();
    const f = Math.exp(-e.deltaY * 0.0015);
    const mx = e.clientX - r.left, my = e.clientY - r.top;
    tx = mx - (mx - tx) * f; ty = my - (my - ty) * f; k *= f; apply();
  }, {passive: false});
  window.addEventListener("hashchange", fromHash);
  fit();
  fromHash();
  document.body.dataset.nodes = nodes.filter((n) => {
    const b = n.getBBox(); return b.width > 0 && b.height > 0; }).length;
  document.body.dataset.ready = "1";
})();
"""


def page(svg: str, data: dict, title: str, stats: str) -> str:
    """The html document: header with the search box, the SVG, the details panel."""
    blob = json.dumps(data, separators=(",", ":"), default=str).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{CSS}</style></head>
<body>
<header><b>tfdeploy</b><span>{escape(title)}</span>
<input id="search" type="search" placeholder="search a node or op ( / )" autocomplete="off">
<span id="count"></span><button id="fit" type="button">fit</button>
<span class="stats">{escape(stats)}</span></header>
<main id="canvas">{svg}</main>
<aside id="details"><p class="hint">Click a node for its attributes, shapes, inputs and
constants. Drag to pan, wheel to zoom, '/' to search (Enter: next match).</p></aside>
<script type="application/json" id="tfd-data">{blob}</script>
<script>{JS}</script>
</body></html>
"""
