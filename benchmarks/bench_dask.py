"""Batch inference on Dask: tfdeploy.dask.predict on a LocalCluster of 1 and 2 worker processes.

An MLP 784-1024-1024-10 (ReLU, softmax, float32; 3.7 MFLOP per row, 7.4 MB of weights;
built without TensorFlow) over N rows in chunks of c rows; and a trivial model (x * 2) over
many 10-row chunks, whose time per task is Dask's overhead per task, beside plain dask's
``x * 2`` over the same chunks (no tfdeploy). The rows are generated and persisted on the
workers first, each worker loads (memory-maps) the model file in a warm-up run, and the
outputs are persisted, not gathered: what is timed is the inference. "in-process" is
``model(chunk)`` in a loop in this process. Every side runs one thread (one per worker, one
BLAS thread), so 2 workers can at best be 2x one.

    python benchmarks/bench_dask.py [--rows 40000] [--chunks 5000,500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

# one BLAS thread here, as in Dask's workers (distributed sets the same for them)
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from common import fmt, table  # noqa: E402


def mlp(seed: int = 0):
    """softmax(relu(relu(x W1 + b1) W2 + b2) W3 + b3), 784-1024-1024-10."""
    import numpy as np

    from graphs import Node, const, model_of, placeholder

    rng = np.random.default_rng(seed)
    nodes, prev = [placeholder("x", "float32", [None, 784])], "x"
    sizes = [784, 1024, 1024, 10]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        nodes += [const(f"w{i}", w), const(f"b{i}", rng.standard_normal(b).astype(np.float32)),
                  Node(f"mm{i}", "MatMul", [prev, f"w{i}"], {"T": "float32"}),
                  Node(f"ba{i}", "BiasAdd", [f"mm{i}", f"b{i}"], {"T": "float32"})]
        prev = f"ba{i}"
        if b != sizes[-1]:
            nodes.append(Node(f"relu{i}", "Relu", [prev], {"T": "float32"}))
            prev = f"relu{i}"
    nodes.append(Node("probs", "Softmax", [prev], {"T": "float32"}))
    return model_of(nodes, ["x"], ["probs"])


def tiny():
    """x * 2: a model that costs nothing, so a task's time is Dask's."""
    import numpy as np

    from graphs import Node, const, model_of, placeholder

    return model_of([placeholder("x", "float32", [None, 4]), const("two", np.float32(2)),
                     Node("y", "Mul", ["x", "two"], {"T": "float32"})], ["x"], ["y"])


def cases(args, tmp: str):
    """(label, model path (None: plain dask x * 2), rows, chunk rows, features)."""
    paths = {}
    for name, build in (("mlp", mlp), ("tiny", tiny)):
        paths[name] = os.path.join(tmp, f"{name}.tfd")
        build().save(paths[name])
    out = [(f"mlp c={c}", paths["mlp"], args.rows, c, 784)
           for c in (int(s) for s in args.chunks.split(","))]
    out.append(("tiny c=10", paths["tiny"], args.tiny_tasks * 10, 10, 4))
    out.append(("x*2 c=10", None, args.tiny_tasks * 10, 10, 4))  # dask alone, no tfdeploy
    return out


def on_cluster(workers: int, todo, repeat: int) -> dict[str, float]:
    """Best seconds per job of each case on a LocalCluster of ``workers`` processes."""
    import logging

    import dask.array as da
    import distributed
    import numpy as np
    from dask.core import flatten

    import tfdeploy.dask as tdd

    times = {}
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR) as cl, \
            distributed.Client(cl) as client:
        for label, path, n, c, k in todo:
            rng = da.random.default_rng(0)
            x = client.persist(rng.random((n, k), chunks=(c, k), dtype=np.float32))
            distributed.wait(x)
            y = tdd.predict(path, x) if path else x * np.float32(2)
            loads = sum(v["loads"] for v in client.run(tdd.cache_info).values())
            best = float("inf")
            for i in range(repeat + 1):  # the first run is a warm-up: workers load the model
                t0 = time.perf_counter()
                done = client.persist(y)
                distributed.wait(done)
                if i:
                    best = min(best, time.perf_counter() - t0)
                del done
                _forget(client, next(flatten(y.__dask_keys__())))  # else the next run finds it
            times[label] = best
            loads = sum(v["loads"] for v in client.run(tdd.cache_info).values()) - loads
            print(f"  {workers} worker(s), {label}: {fmt(best).strip()} for {n} rows in "
                  f"{len(y.chunks[0])} tasks ({n / best:,.0f} rows/s; model loads: {loads})",
                  flush=True)
    return times


def _forget(client, key) -> None:
    """Wait until the scheduler has released ``key``."""
    while client.run_on_scheduler(lambda dask_scheduler, k=key: k in dask_scheduler.tasks):
        time.sleep(0.01)


def in_process(todo, repeat: int) -> dict[str, float]:
    import numpy as np

    import tfdeploy as td

    times = {}
    for label, path, n, c, k in todo:
        model = td.load(path) if path else (lambda v: v * np.float32(2))
        x = np.random.default_rng(0).random((n, k), dtype=np.float32)
        chunks = [x[i:i + c] for i in range(0, n, c)]
        model(chunks[0])
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for chunk in chunks:
                model(chunk)
            best = min(best, time.perf_counter() - t0)
        times[label] = best
        print(f"  in-process, {label}: {fmt(best).strip()} ({n / best:,.0f} rows/s)",
              flush=True)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=40000, help="rows of the MLP cases")
    ap.add_argument("--chunks", default="5000,500", help="chunk sizes (rows) of the MLP cases")
    ap.add_argument("--tiny-tasks", type=int, default=2000, help="tasks of the overhead case")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        todo = cases(args, tmp)
        per = {"in-process": in_process(todo, args.repeat)}
        for w in (1, 2):
            per[f"{w} worker" + "s" * (w > 1)] = on_cluster(w, todo, args.repeat)
    cols = ["in-process", "1 worker", "2 workers"]
    rows = [(label, {c: per[c][label] for c in cols}) for label, *_ in todo]
    print(__doc__.strip().splitlines()[0])
    print(table(rows, cols, "2 workers"))
    print("\nrows/s: " + "; ".join(
        f"{label}: " + ", ".join(f"{c} {n / per[c][label]:,.0f}" for c in cols)
        for label, _, n, *_ in todo))
    for label, _, n, c, _ in todo[-2:]:
        print(f"time per task, {label} ({n // c} tasks): " + ", ".join(
            f"{col} {fmt(per[col][label] / (n // c)).strip()}" for col in cols[1:]))
    print("\n(column/2 workers: > 1 means 2 workers are faster; 1 worker/2 workers is the "
          "speed-up from the second worker process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
