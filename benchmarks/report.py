"""What the suite prints and writes from its JSON result: markdown tables, a PNG chart, and
the README's generated section.

Ratios are tfdeploy's median time over the peer's, measured in the same run (with one thread in
the same process, interleaved): below 1 tfdeploy is faster, above 1 the peer is.
"""

from __future__ import annotations

import re

from common import MODE_TEXT

PEER_ORDER = ("tfdeploy", "TF", "onnxruntime", "LiteRT", "numpy", "TF1 session")
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
MIB = 2.0 ** 20


def _ms(seconds: float) -> str:
    v = seconds * 1e3
    return f"{v:.3g}" if v < 1000 else f"{v:.0f}"


def _ratio(r: float) -> str:
    if r >= 100:
        return f"{r:.0f}"
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


class Notes:
    """Numbered footnotes, one per distinct reason."""

    def __init__(self):
        self.reasons: list[str] = []

    def mark(self, text: str, reason: str | None) -> str:
        reason = reason or "no reason given"
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"{text} [{self.reasons.index(reason) + 1}]"

    def render(self) -> str:
        return "\n".join(f"[{i}] {r}" for i, r in enumerate(self.reasons, 1))


def _cell(rec: dict | None, notes: Notes, p90: bool) -> str:
    if rec is None:
        return "-"
    if rec["status"] == "ok":
        return f"{_ms(rec['median_s'])} ({_ms(rec['p90_s'])})" if p90 else _ms(rec["median_s"])
    return notes.mark("fails" if rec["status"] == "fails" else "wrong", rec.get("error"))


def _row_key(rec: dict) -> tuple:
    return rec["case"], rec["batch"]


def time_table(records: list[dict], titles: dict[str, str], *, p90: bool = True,
               batch: str = "batch") -> str:
    """One mode's records as a markdown table: median (p90) ms per runtime, then tfdeploy/peer."""
    rows: dict[tuple, dict[str, dict]] = {}
    for r in records:
        rows.setdefault(_row_key(r), {})[r["runtime"]] = r
    peers = [p for p in PEER_ORDER if any(p in row for row in rows.values())]
    peers += sorted({p for row in rows.values() for p in row} - set(peers))
    others = [p for p in peers if p != "tfdeploy"]
    notes = Notes()
    unit = "median (p90) ms" if p90 else "median ms"
    head = ["model", batch, *(f"{p}" for p in peers), *(f"tfdeploy/{p}" for p in others)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (case, batch), row in rows.items():
        cells = [titles.get(case, case), str(batch)]
        cells += [_cell(row.get(p), notes, p90) for p in peers]
        td = row.get("tfdeploy", {})
        for p in others:
            peer = row.get(p, {})
            if "median_s" in td and "median_s" in peer:
                cells.append(_ratio(td["median_s"] / peer["median_s"]))
            else:
                cells.append("-")
        lines.append("| " + " | ".join(cells) + " |")
    out = f"Times: {unit}; ratios: tfdeploy's median over the peer's (< 1: tfdeploy faster).\n\n"
    out += "\n".join(lines)
    return out + ("\n\n" + notes.render() if notes.reasons else "")


#: (mixed_float16 case, its float32 twin, batch, title) for the mixed_float16 line
MIXED_TWINS = (("mlp_f16", "mlp_f32", 32, "the Dense stack"),
               ("mobilenetv2_f16", "mobilenetv2", 1, "MobileNetV2 at batch 1"),
               ("block_f16", "block", 1, "the transformer block at batch 1"),
               ("block_f16", "block", 8, "at batch 8"))


def mixed_line(records: list[dict]) -> str | None:
    """tfdeploy's (and the peers') mixed_float16 time over the float32 twin's, per model."""
    med = {(r["case"], r.get("batch"), r["runtime"]): r.get("median_s") for r in records}
    models = []
    for f16_case, f32_case, batch, title in MIXED_TWINS:
        parts = []
        for peer in PEER_ORDER:
            f16, f32 = med.get((f16_case, batch, peer)), med.get((f32_case, batch, peer))
            if f16 and f32:
                parts.append(f"{peer} {_ratio(f16 / f32)}")
        if parts:
            models.append(f"{title}: " + ", ".join(parts))
    if not models:
        return None
    return ("mixed_float16 / float32 time (tfdeploy's goal: <= 1.3): " + "; ".join(models))


def extras_tables(extras: dict, titles: dict[str, str]) -> str:
    out = []
    notes = Notes()
    if extras.get("cold_start"):
        rows = ["| scenario | in process, ms | whole process, ms |", "|---|---|---|"]
        for r in extras["cold_start"]:
            if r["status"] == "ok":
                rows.append(f"| {r['scenario']} | {_ms(r['median_s'])} | "
                            f"{_ms(r['process_wall_s'])} |")
            else:
                rows.append(f"| {r['scenario']} | {notes.mark('fails', r.get('error'))} | - |")
        case = titles.get(extras["cold_start"][0]["case"], extras["cold_start"][0]["case"])
        out.append(f"**Cold start** ({case}, batch 1: import, load, first call; median of "
                   f"fresh processes)\n\n" + "\n".join(rows))
    if extras.get("memory"):
        rows = ["| model | batch | runtime | RSS after load, MiB | first call +MiB | "
                "steady +MiB | peak, MiB |", "|---|---|---|---|---|---|---|"]
        for r in extras["memory"]:
            if r["status"] == "ok":
                peak = max(r["peak_first_call"], r["peak_steady"])
                rows.append(f"| {titles.get(r['case'], r['case'])} | {r['batch']} | "
                            f"{r['runtime']} | {r['rss_after_load'] / MIB:.0f} | "
                            f"{r['first_call_delta'] / MIB:.0f} | {r['steady_delta'] / MIB:.0f}"
                            f" | {peak / MIB:.0f} |")
            else:
                rows.append(f"| {titles.get(r['case'], r['case'])} | {r['batch']} | "
                            f"{r['runtime']} | {notes.mark('fails', r.get('error'))} | | | |")
        out.append("**Peak memory** (RSS high-water mark in a fresh process, minus the RSS "
                   "before the call)\n\n" + "\n".join(rows))
    if extras.get("threads"):
        rows = ["| model | batch | load | default threads, ms | one thread, ms | default/one |",
                "|---|---|---|---|---|---|"]
        for r in extras["threads"]:
            head = f"| {titles.get(r['case'], r['case'])} | {r['batch']} | {r['load']} |"
            if r["status"] == "ok":
                rows.append(f"{head} {_ms(r['default_s'])} | {_ms(r['one_s'])} | "
                            f"{r['ratio']:.2f} |")
            else:
                rows.append(f"{head} {notes.mark('fails', r.get('error'))} | | |")
        out.append("**tfdeploy's threads under load** (none: alone; busy: beside one CPU-bound "
                   "process; tf: TensorFlow imported in the same process; > 1: default "
                   "threads are slower)\n\n" + "\n".join(rows))
    text = "\n\n".join(out)
    return text + ("\n\n" + notes.render() if notes.reasons else "")


def machine_line(m: dict) -> str:
    v = m.get("versions", {})
    avx = "AVX-512" if m.get("avx512") else ("AVX2" if m.get("avx2") else "no AVX2")
    blas = ", ".join(f"{b['internal_api']} {b['version']}" + (
        f" {b['architecture']} kernels" if b.get("architecture") else "")
        for b in m.get("blas") or [])
    forced = (m.get("kernels") or {}).get("env") or {}
    if forced:
        blas += ("; " if blas else "") + ", ".join(f"{v}={x}" for v, x in forced.items()) + \
            " set"
    load = m.get("load_average")
    return (f"{m.get('cpu')} ({avx}), {m.get('usable_cores')} of {m.get('cores')} cores usable"
            + (f", load average {load[0]:.1f} at the start" if load else "")
            + f"; {m.get('date', '')[:10]}; tfdeploy {m.get('tfdeploy')} ({m.get('commit')}"
            + (", modified" if m.get("dirty") else "") + f"), numpy {v.get('numpy')}"
            + (f" ({blas})" if blas else "") + f", TensorFlow {v.get('tensorflow')}, "
            f"Keras {v.get('keras')}, onnxruntime {v.get('onnxruntime')} (tf2onnx "
            f"{v.get('tf2onnx')}), LiteRT {v.get('ai-edge-litert')}")


def tables(result: dict, *, p90: bool = True) -> str:
    """Every table of ``result``, in markdown."""
    titles = result.get("titles", {})
    out = [f"Machine: {machine_line(result['machine'])}"]
    for mode in result["config"]["modes"]:
        recs = [r for r in result["records"] if r["mode"] == mode]
        if not recs:
            continue
        main = [r for r in recs if r["case"] != "dense"]
        dense = [r for r in recs if r["case"] == "dense"]
        title, detail = MODE_TEXT.get(mode, (mode, ""))
        out.append(f"### {title} (`--modes {mode}`)\n\n{detail[0].upper() + detail[1:]}.")
        if main:
            out.append(time_table(main, titles, p90=p90))
        line = mixed_line(recs)
        if line:
            out.append(line)
        if dense:
            out.append("The original benchmark, softmax(x @ W + b), x:[N,784], W:[784,100] "
                       "(tfdeploy: the classic `y.eval({x: batch})`; numpy: the same "
                       "arithmetic by hand; TF: a tf.function):\n\n"
                       + time_table(dense, {"dense": "dense"}, p90=p90, batch="N"))
    if result.get("extras"):
        out.append("### Beyond speed\n\n" + extras_tables(result["extras"], titles))
    return "\n\n".join(out)


def readme_section(result: dict) -> str:
    """The README's generated Performance text."""
    return ("Generated by `python benchmarks/run.py --readme RESULT.json` from a run of "
            "`python benchmarks/run.py` (see [docs/benchmarks.md](docs/benchmarks.md)): "
            "outputs checked against TensorFlow's first; with one thread every runtime "
            "in the same process, interleaved, with default threads each in its own. "
            "Times are medians in ms; a ratio is tfdeploy's time over the peer's, so below 1 "
            "tfdeploy is faster.\n\n" + tables(result, p90=False))


def rewrite_readme(readme_path: str, result: dict) -> None:
    """Replace the text between the bench markers of ``readme_path``; fail if they are missing."""
    with open(readme_path, encoding="utf-8") as f:
        text = f.read()
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if text.count(README_START) != 1 or text.count(README_END) != 1 or not pattern.search(text):
        raise SystemExit(f"{readme_path} needs exactly one '{README_START}' followed by one "
                         f"'{README_END}' line: the section between them is generated")
    new = f"{README_START}\n{readme_section(result)}\n{README_END}"
    with open(readme_path, "w", encoding="utf-8") as f:
        f.write(pattern.sub(lambda _: new, text))


def chart(result: dict, path: str) -> str | None:
    """A PNG of the tfdeploy/peer ratios per mode; returns why not if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart"
    modes = [m for m in result["config"]["modes"]
             if any(r["mode"] == m for r in result["records"])]
    if not modes:
        return "no timings to chart"
    titles = result.get("titles", {})
    colors = dict(zip(PEER_ORDER[1:], ("tab:blue", "tab:orange", "tab:green", "tab:red",
                                       "tab:purple")))
    rows = list(dict.fromkeys((r["case"], r["batch"]) for r in result["records"]))
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 1.5 + 0.45 * len(rows)),
                             squeeze=False, sharey=True, sharex=True)
    legend = {}
    for ax, mode in zip(axes[0], modes):
        med = {(r["case"], r["batch"], r["runtime"]): r.get("median_s")
               for r in result["records"] if r["mode"] == mode}
        for j, (c, b) in enumerate(rows):
            t = med.get((c, b, "tfdeploy"))
            bars = [(p, t / med[(c, b, p)]) for p in PEER_ORDER[1:]
                    if t and med.get((c, b, p))]
            h = 0.8 / max(len(bars), 1)
            for k, (peer, ratio) in enumerate(bars):
                legend[peer] = ax.barh(j + (k - (len(bars) - 1) / 2) * h, ratio, height=h,
                                       color=colors[peer])
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([f"{titles.get(c, c)} b{b}" for c, b in rows])
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.set_title(f"mode {mode}: tfdeploy's time / peer's (< 1: tfdeploy faster)",
                     fontsize="medium")
    if legend:
        fig.legend(list(legend.values()), [f"tfdeploy / {p}" for p in legend], loc="lower center",
                   ncol=len(legend), fontsize="small")
    fig.tight_layout(rect=(0, 0.45 / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None
