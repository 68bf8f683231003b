"""``tfdeploy bench``: latency percentiles and throughput per batch size, optionally beside
TensorFlow and onnxruntime running the same graph."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from .. import checkdata
from ..errors import TFDeployError
from ._common import (
    UsageError,
    add_command,
    comma_list,
    fmt_shape,
    fmt_time,
    load_model,
    positive_ints,
    progress,
    table,
)

PEERS = ("tf", "onnxruntime")
#: environment variables by which OpenMP and BLAS runtimes loaded later (a peer's) take their
#: thread count
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers, "bench", "time the model: latency p50/p90/p99 and throughput per batch",
        "Time the model on generated inputs at each batch size: latency percentiles (p50, p90,\n"
        "p99 of single calls) and throughput (samples per second). --compare also times\n"
        "TensorFlow and/or onnxruntime (through tf2onnx) on the same graph, rebuilt from the\n"
        "file; a peer that is not installed or cannot convert the graph is reported as such.",
        ["tfdeploy bench model.tfd", "tfdeploy bench model.tfd --batch 1,8,32 --threads 1",
         "tfdeploy bench model.tfd --compare tf,onnxruntime --time 2"])
    p.add_argument("model", help="a tfdeploy model file")
    p.add_argument("--batch", type=positive_ints, default=[1, 8, 32], metavar="N,N,...",
                   help="batch sizes (default 1,8,32)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="limit tfdeploy's threads, BLAS's and the peers' to N (default: "
                        "each library's own)")
    p.add_argument("--compare", type=comma_list, default=[], metavar="PEERS",
                   help="also time these: tf, onnxruntime (comma-separated)")
    p.add_argument("--time", type=float, default=1.0, metavar="SECONDS",
                   help="time spent measuring each batch size and engine (default 1)")
    p.add_argument("--warmup", type=int, default=3, metavar="N",
                   help="untimed calls first (default 3)")
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------- threads

def limit_threads(n: int) -> str:
    """Limit this process's BLAS and OpenMP threads to ``n``, and tfdeploy's own; returns how.
    The libraries loaded already are limited through threadpoolctl where installed, else
    through the BLAS library's own setter (``td.setup(blas_threads=n)``'s); libraries a peer
    loads later read the environment variables set here. (Without threadpoolctl this once
    re-executed the process with the variables set: a caller's process replaced.)"""
    os.environ.update({v: str(n) for v in THREAD_VARS})
    from tfdeploy.runtime import threads

    threads.configure(threads=n)  # (BLAS: the variables above say the user chose)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        found = threads.set_blas_threads(n)
        return "the BLAS library's setter" if found else "no BLAS library found to limit"
    threadpool_limits(limits=n)
    return "threadpoolctl"


# ---------------------------------------------------------------------------- engines

def batch_inputs(model, batch: int) -> list[np.ndarray]:
    """Generated inputs with batch dimension ``batch`` (other unknown dims as in the file's
    check input, else small). Scalar inputs (a step count, a temperature) are not batched."""
    key = next(iter(model.graphs))
    stored = checkdata.entries(model.metadata).get(key, {})
    shapes = {e["name"]: e["shape"] for e in stored.get("inputs", [])
              if isinstance(e, dict) and "name" in e}
    out = []
    for i, s in enumerate(model.inputs):
        if s.shape == []:
            out.append(checkdata.generate(s.dtype, (), checkdata.recipe_for(s.dtype, seed=i)))
            continue
        if s.shape is None:
            raise UsageError(f"input {s.name!r} has an unknown rank: bench cannot tell its "
                             "batch dimension")
        if s.shape[0] is not None and s.shape[0] != batch:
            raise UsageError(f"input {s.name!r} has a fixed batch size of {s.shape[0]}: "
                             f"--batch {batch} cannot run (use --batch {s.shape[0]})")
        known = shapes.get(s.name)
        shape = [batch] + [d if d is not None else (known[j + 1] if known and len(known) ==
                                                    len(s.shape) else checkdata.UNKNOWN_DIM)
                           for j, d in enumerate(s.shape[1:])]
        out.append(checkdata.generate(s.dtype, shape, checkdata.recipe_for(s.dtype, seed=i)))
    return out


def peer_engine(name: str, model, threads: int | None):
    """(callable, description) of a peer, or (None, why it is unavailable)."""
    try:
        from ..convert import peers

        maker = {"tf": peers.tensorflow_runner, "onnxruntime": peers.onnxruntime_runner}[name]
        return maker(model.default_graph, threads)
    except ImportError as e:
        return None, f"not installed ({e.name or e}): pip install " + \
            ("tensorflow" if name == "tf" else "onnxruntime tf2onnx")
    except Exception as e:  # noqa: BLE001 - a failed peer is a line in the report
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        what = first if isinstance(e, TFDeployError) else f"{type(e).__name__}: {first}"
        return None, f"could not run this graph: {what}"


# ---------------------------------------------------------------------------- measuring

def measure(fn, xs, seconds: float, warmup: int, max_runs: int = 100_000) -> np.ndarray:
    """Latencies (s) of calls of ``fn(xs)`` over about ``seconds`` (at least 5 calls)."""
    for _ in range(warmup):
        fn(xs)
    times = []
    clock = time.perf_counter
    end = clock() + seconds
    while len(times) < 5 or (clock() < end and len(times) < max_runs):
        t0 = clock()
        fn(xs)
        times.append(clock() - t0)
    return np.array(times)


def _max_diff(got, want) -> float:
    """The largest |difference| over numeric outputs (equal infinities and NaNs agree)."""
    d = 0.0
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        if g.dtype.kind in "biufc" and w.dtype.kind in "biufc" and g.shape == w.shape:
            g, w = g.astype(np.complex128), w.astype(np.complex128)
            same = (g == w) | (np.isnan(g) & np.isnan(w))
            diff = np.where(same, 0.0, np.abs(g - w))
            if diff.size:  # a NaN where the other has a number counts as infinitely far
                d = max(d, float(np.max(np.where(np.isnan(diff), np.inf, diff))))
    return d


def run(args) -> int:
    unknown = [p for p in args.compare if p not in PEERS]
    if unknown:
        raise UsageError(f"--compare: unknown peer(s) {', '.join(unknown)} (choose from "
                         f"{', '.join(PEERS)})")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be at least 1")
    how = limit_threads(args.threads) if args.threads else None
    model = load_model(args.model)
    inputs = {b: batch_inputs(model, b) for b in args.batch}
    ours = model.default_graph
    print(f"{args.model}: " + ", ".join(f"{s.name} {s.dtype} {fmt_shape(s.shape)}"
                                        for s in ours.inputs)
          + (f"; {args.threads} thread(s) ({how})" if how else "; default threads"))
    from tfdeploy.runtime.threads import kernel_note

    if (note := kernel_note()) is not None:  # (stderr: the table stays parseable)
        print(note, file=sys.stderr)
    engines = {"tfdeploy": (lambda xs: model(*xs), "")}
    notes = []
    for peer in args.compare:
        fn, what = peer_engine(peer, model, args.threads)
        notes.append(f"{peer}: {what}")
        if fn is not None:
            engines[peer] = (fn, what)
    rows = [("batch", "engine", "p50", "p90", "p99", "samples/s", "calls")]
    diffs: dict[str, float] = {}
    bar = progress(len(args.batch) * len(engines), "bench")
    with np.errstate(all="ignore"):  # generated inputs may overflow: only the time matters
        rows += _measure_all(args, engines, inputs, bar, notes, diffs)
    bar.close()
    print(table(rows, right=(0, 2, 3, 4, 5, 6)))
    for note in notes:
        peer = note.split(":")[0]
        extra = f"; max |difference| to tfdeploy {diffs[peer]:.3g}" if peer in diffs else ""
        print(note + extra)
    return 0


def _measure_all(args, engines, inputs, bar, notes, diffs) -> list:
    """A row per batch size and engine; peers' largest differences to tfdeploy go in
    ``diffs``, their failures in ``notes``."""
    rows = []
    for b in args.batch:
        xs = inputs[b]
        want = None
        for name, (fn, _) in engines.items():
            bar.set_description(f"batch {b} {name}")
            try:
                out = fn(xs)
            except Exception as e:  # noqa: BLE001 - a peer failing at run time is reported
                if name == "tfdeploy":
                    raise
                notes.append(f"{name}: failed at batch {b}: {type(e).__name__}: "
                             f"{str(e).strip()[:200]}")
                bar.update(1)
                continue
            out = list(out) if isinstance(out, (list, tuple)) else [out]
            if want is None:
                want = out
            else:
                diffs[name] = max(diffs.get(name, 0.0), _max_diff(out, want))
            t = measure(fn, xs, args.time, args.warmup)
            p50, p90, p99 = np.percentile(t, [50, 90, 99])
            rows.append((str(b), name, fmt_time(p50), fmt_time(p90), fmt_time(p99),
                         f"{b / t.mean():,.0f}", str(len(t))))
            bar.update(1)
    return rows
