"""Timing helpers shared by the benchmarks: best-of-repeats, ratios measured in one run."""

from __future__ import annotations

import time


def timeit(fn, min_time: float = 0.2, repeat: int = 5) -> float:
    """Seconds per call: the best of ``repeat`` runs of a loop lasting about ``min_time``."""
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time / repeat or n >= 1 << 20:
            break
        n *= 2
    best = dt / n
    for _ in range(repeat - 1):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f} us"
    return f"{seconds * 1e3:8.2f} ms"


def table(rows: list[tuple[str, dict[str, float]]], columns: list[str], ref: str) -> str:
    """A text table of times, then each column's time as a ratio to ``ref``'s (> 1: ``ref`` is
    faster than that column)."""
    ratios = [c for c in columns if c != ref]
    tw = max(12, *(len(c) + 2 for c in columns))
    rw = max(10, *(len(c) + len(ref) + 3 for c in ratios)) if ratios else 10
    head = f"{'case':<12}" + "".join(f"{c:>{tw}}" for c in columns)
    head += "".join(f"{c + '/' + ref:>{rw}}" for c in ratios)
    lines = [head, "-" * len(head)]
    for name, times in rows:
        line = f"{name:<12}" + "".join(
            f"{fmt(times[c]) if c in times else 'n/a':>{tw}}" for c in columns)
        line += "".join(f"{times[c] / times[ref]:>{rw - 1}.2f}x" if c in times else
                        f"{'n/a':>{rw}}" for c in ratios)
        lines.append(line)
    return "\n".join(lines)


def race(contenders: dict, repeat: int, min_time: float) -> dict[str, float]:
    """Best time per call of each contender (None = skipped), timed interleaved: on a shared,
    noisy machine a slow spell then hits them all alike."""
    times: dict[str, float] = {}
    for _ in range(repeat):
        for col, fn in contenders.items():
            if fn is None:
                continue
            t = timeit(fn, min_time / repeat, repeat=2)
            times[col] = min(times.get(col, t), t)
    return times


def report(doc: str, rows: list, has_onnx: bool) -> None:
    """Print the table of ``rows`` (tfdeploy, TF and, when installed, onnxruntime)."""
    if not rows:
        return
    cols = ["tfdeploy", "TF"] + (["onnxrt"] if has_onnx else [])
    print(doc.strip().splitlines()[0])
    print(table(rows, cols, "tfdeploy"))
    print("\n(column/tfdeploy: > 1 means tfdeploy is faster"
          + ("" if has_onnx else "; no onnxruntime column: onnxruntime/tf2onnx are not installed "
                                 "or tf2onnx could not convert these models") + ")")


def measure(label: str, name: str, b: int, x, want, err: float, scale: float, tdm, infer,
            onnx, repeat: int, min_time: float) -> tuple[dict[str, float], bool]:
    """Check onnxruntime's output too, then race the contenders and print the row; returns
    (times, whether onnxruntime took part)."""
    import numpy as np

    if onnx is not None:
        err_o = float(np.max(np.abs(onnx(x) - want)))
        if not err_o <= 1e-4 * scale:
            raise SystemExit(f"{name} batch {b}: onnxruntime differs by {err_o:.3g}")
    times = race({"tfdeploy": lambda: tdm(x), "TF": lambda: infer(x).numpy(),
                  "onnxrt": (lambda: onnx(x)) if onnx is not None else None}, repeat, min_time)
    print(f"  {label}: max |tfdeploy - TF| / max |TF| = {err / scale:.2g}, "
          + ", ".join(f"{c} {fmt(t).strip()}" for c, t in times.items()), flush=True)
    return times, onnx is not None
