"""Load test of ``tfdeploy serve`` on loopback: many concurrent clients, with and without
dynamic batching. Every answer is checked against ``model(x)`` evaluated in this process.

    PYTHONPATH=src python benchmarks/bench_serve.py [--clients 64] [--seconds 20]

Starts a real server process per mode (``--enable_batching`` off, then on), runs ``--clients``
asyncio/httpx clients in one process for ``--seconds`` each (bounded in time and count), and
prints throughput, p50/p99 latency, errors and answers that differ from ``model(x)``. The
model is a 784-4096-4096-10 ReLU MLP (80 MB of weights), where one row costs more than the
HTTP and JSON work around it, so merging rows into matrix products pays; ``--model mlp1024``
and ``--model softmax`` (the original tfdeploy benchmark, ``softmax(x @ W + b)`` 784x100) are
small enough that the per-request Python work dominates. One row per request unless
``--rows``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

import serve_util as su  # noqa: E402

BATCHING = """max_batch_size { value: %d }
batch_timeout_micros { value: %d }
num_batch_threads { value: %d }
max_enqueued_batches { value: 1000 }
"""


class _Connection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: on a 2-core machine a
    full-featured client would take the CPU the server is being measured with."""

    def __init__(self, port: int, path: str):
        self.port, self.head = port, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" \
            "Content-Type: application/json\r\nContent-Length: "

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def post(self, body: bytes) -> tuple[int, bytes]:
        self.writer.write(f"{self.head}{len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        return status, await self.reader.readexactly(length)

    def close(self):
        self.writer.close()


async def _client(conn, pool, want, deadline, stats, seed):
    rng = np.random.default_rng(seed)
    while time.monotonic() < deadline:
        i = int(rng.integers(len(pool)))
        t0 = time.perf_counter()
        try:
            status, body = await conn.post(pool[i])
        except (OSError, asyncio.IncompleteReadError) as e:
            stats["errors"].append(repr(e))
            return
        stats["latency"].append(time.perf_counter() - t0)
        stats["in_time"] += time.monotonic() <= deadline
        if status != 200:
            stats["errors"].append(f"{status} {body[:200]!r}")
            continue
        got = np.array(json.loads(body)["predictions"], np.float32)
        if not np.array_equal(got, want[i]):
            stats["mismatches"] += 1
            stats["max_diff"] = max(stats["max_diff"], float(np.max(np.abs(got - want[i]))))


async def _load(port: int, pool, want, clients: int, seconds: float) -> dict:
    stats = {"latency": [], "errors": [], "mismatches": 0, "max_diff": 0.0, "in_time": 0}
    conns = [await _Connection(port, "/v1/models/bench:predict").open()
             for _ in range(clients)]
    try:
        await asyncio.gather(*(c.post(pool[0]) for c in conns))  # warm up
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(_client(c, pool, want, deadline, stats, i)
                               for i, c in enumerate(conns)))
    finally:
        for c in conns:
            c.close()
    return stats


def _metric_sum(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{"))


def run_mode(batching: bool, args, base: Path, pool, want) -> dict:
    flags = ["--model_name", "bench", "--model_base_path", str(base / "bench"),
             "--access_log=false", "--log_level", "warning",
             "--tensorflow_intra_op_parallelism", str(args.intra_op_threads)]
    if batching:
        (base / "batching.config").write_text(BATCHING % (
            args.max_batch_size, args.batch_timeout_micros, args.batch_threads))
        flags += ["--enable_batching", "--batching_parameters_file",
                  str(base / "batching.config")]
    server = su.ServerProcess(flags, base / f"server-{int(batching)}.log")
    try:
        server.wait_ready(["bench"])
        stats = asyncio.run(_load(server.port, pool, want, args.clients, args.seconds))
        metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    lat = np.array(stats["latency"]) * 1e3
    batches = _metric_sum(metrics, "tfdeploy_batch_requests_count")
    merged = _metric_sum(metrics, "tfdeploy_batch_requests_sum")
    return {"mode": "batching" if batching else "no batching",
            "requests": len(lat), "throughput": stats["in_time"] / args.seconds,
            "p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "p99": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
            "errors": len(stats["errors"]), "first_error": (stats["errors"] or [""])[0],
            "mismatches": stats["mismatches"], "max_diff": stats["max_diff"],
            "requests_per_batch": merged / batches if batches else 1.0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rows", type=int, default=1, help="rows per request")
    p.add_argument("--max_batch_size", type=int, default=64)
    p.add_argument("--batch_timeout_micros", type=int, default=1000)
    p.add_argument("--batch_threads", type=int, default=2)
    p.add_argument("--modes", default="off,on", help="batching modes to run, in order")
    p.add_argument("--intra_op_threads", type=int, default=1,
                   help="the server's --tensorflow_intra_op_parallelism (0: every CPU)")
    p.add_argument("--model", choices=["mlp", "mlp1024", "softmax"], default="mlp",
                   help="mlp: 784-4096-4096-10 ReLU MLP (default); mlp1024: 784-1024-1024-10; "
                   "softmax: the original tfdeploy benchmark, softmax(x @ W + b) 784x100")
    args = p.parse_args()
    model = su.softmax(784, 100) if args.model == "softmax" else \
        su.mlp((784, 4096, 4096, 10) if args.model == "mlp" else (784, 1024, 1024, 10))
    rng = np.random.default_rng(0)
    xs = [rng.random((args.rows, 784), dtype=np.float32) for _ in range(256)]
    pool = [json.dumps({"instances": x.tolist()}).encode() for x in xs]
    want = [model(x) for x in xs]
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        su.save_version(base / "bench", 1, model)
        rows = [run_mode(mode == "on", args, base, pool, want)
                for mode in args.modes.split(",")]
    print(f"{args.clients} clients, {args.seconds:g} s per mode, {args.rows} row(s) per "
          f"request, model {args.model}, {os.cpu_count()} CPUs")
    print(f"{'mode':<13}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'differ':>8}{'max|diff|':>11}{'req/batch':>10}")
    for r in rows:
        print(f"{r['mode']:<13}{r['requests']:>9}{r['throughput']:>9.0f}{r['p50']:>9.2f}"
              f"{r['p99']:>9.2f}{r['errors']:>8}{r['mismatches']:>8}{r['max_diff']:>11.2g}"
              f"{r['requests_per_batch']:>10.1f}")
        if r["first_error"]:
            print(f"  first error: {r['first_error']}")
    if len(rows) == 2 and rows[0]["throughput"]:
        print(f"batching throughput gain: {rows[1]['throughput'] / rows[0]['throughput']:.2f}x")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
