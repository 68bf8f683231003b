"""The suite's measurements beyond steady-state speed, each in fresh processes.

- **cold start**: wall time from the first import to the first result, measured inside a fresh
  process (``perf_counter`` before ``import numpy``), so interpreter start-up is left out (the
  whole process's wall time is recorded too). Files come from the page cache: a first round is
  run and discarded; tfdeploy's modules are byte-compiled first, as an installed package's
  are.
- **peak memory**: in a fresh process, after the model is loaded and the input made, the RSS
  high-water mark is reset (``/proc/self/clear_refs`` = 5, Linux >= 4.0) and read back
  (``VmHWM``) after the first call, then reset again and read after ``calls`` more calls
  (steady state). Reported: RSS after load, and each peak minus the RSS just before it.
  tfdeploy's weights are memory-mapped: the pages a call touches count as they are read.
- **threads under load**: tfdeploy's time per call with its default threads and with one
  (``OPENBLAS_NUM_THREADS=1``, no pinning), alone, beside a CPU-bound process, and with
  TensorFlow imported (and its thread pools started) in the same process.

    python benchmarks/extras.py memory-child --case C --batch B --dir DIR --runtime R
    python benchmarks/extras.py threads-child --case C --batch B --dir DIR --load none|busy|tf
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import THREAD_VARS, log, short_error  # noqa: E402

COLD = {
    "import tfdeploy": "import tfdeploy\n",
    "tfdeploy": """
import numpy as np
import tfdeploy as td
m = td.load({tfd!r})
m(np.zeros({shape!r}, {dtype!r}))
""",
    "onnxruntime": """
import numpy as np
import onnxruntime as ort
s = ort.InferenceSession({onnx!r}, providers=["CPUExecutionProvider"])
s.run(None, {{s.get_inputs()[0].name: np.zeros({shape!r}, {dtype!r})}})
""",
    "LiteRT": """
import numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path={tflite!r})
i = it.get_input_details()[0]["index"]
it.resize_tensor_input(i, {shape!r}, strict=False)
it.allocate_tensors()
it.set_tensor(i, np.zeros({shape!r}, {dtype!r}))
it.invoke()
it.get_tensor(it.get_output_details()[0]["index"])
""",
    "import tensorflow": "import tensorflow\n",
}
FILE_OF = {"tfdeploy": "model.tfd", "onnxruntime": "model.onnx", "LiteRT": "model.tflite"}


def _env(one_thread: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if one_thread:
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = "1"
    return env


def _child_json(argv: list[str], env: dict) -> dict:
    """Run a child that prints one JSON line last; its error as {'error': ...} if it fails."""
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    lines = r.stdout.strip().splitlines()
    if r.returncode or not lines:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {r.returncode}: {tail[:200]}"}
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------- cold start
def _compile_bytecode() -> None:
    """tfdeploy's modules byte-compiled, as ``pip install`` leaves them (the peers' are): a
    checkout run with PYTHONDONTWRITEBYTECODE=1 would otherwise compile ~60 modules, ~100 ms,
    in every cold start."""
    import compileall

    import tfdeploy

    compileall.compile_dir(os.path.dirname(tfdeploy.__file__), quiet=1)


def cold_start(case, directory: str, status: dict, repeats: int) -> list[dict]:
    """Median cold start of each scenario over ``repeats`` fresh processes (rounds interleave
    the scenarios; a first round warms the page cache and is discarded)."""
    x = case.input(1)
    _compile_bytecode()
    paths = {k: os.path.join(directory, f) for k, f in
             (("tfd", "model.tfd"), ("onnx", "model.onnx"), ("tflite", "model.tflite"))}
    scenarios = {}
    for name, body in COLD.items():
        peer = name if name in FILE_OF else None
        if peer and not status.get(peer, {}).get("ok"):
            scenarios[name] = status.get(peer, {}).get("error", "not converted")
            continue
        code = ("import json, time\nt0 = time.perf_counter()\n"
                + body.format(shape=x.shape, dtype=str(x.dtype), **paths)
                + "print(json.dumps({'seconds': time.perf_counter() - t0}))\n")
        scenarios[name] = [sys.executable, "-c", code]
    times: dict[str, list] = {n: [] for n, s in scenarios.items() if isinstance(s, list)}
    walls: dict[str, list] = {n: [] for n in times}
    errors: dict[str, str] = {}
    for rnd in range(repeats + 1):
        for name in times:
            t0 = time.perf_counter()
            out = _child_json(scenarios[name], _env())
            wall = time.perf_counter() - t0
            if "error" in out:
                errors[name] = out["error"]
            elif rnd:
                times[name].append(out["seconds"])
                walls[name].append(wall)
    rows = []
    for name, s in scenarios.items():
        row = {"scenario": name, "case": case.name, "batch": 1}
        if isinstance(s, str) or name in errors:
            row.update(status="fails", error=s if isinstance(s, str) else errors[name])
        else:
            row.update(status="ok", median_s=statistics.median(times[name]),
                       process_wall_s=statistics.median(walls[name]), runs=len(times[name]))
        rows.append(row)
        log(f"  cold start {name}: " + (f"{row['median_s'] * 1e3:.0f} ms" if "median_s" in row
                                        else f"fails ({row['error']})"))
    return rows


# ---------------------------------------------------------------------------------- memory
def _rss() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def memory_child(case_name: str, batch: int, directory: str, runtime: str, calls: int) -> dict:
    """In this fresh process: load ``runtime``'s copy of the model, then peak RSS of the first
    call and of ``calls`` more, each minus the RSS just before."""
    from models import CASES
    from runtimes import OPENERS, open_tf

    case = CASES[case_name]
    if runtime == "TF":
        fn, _ = open_tf(case.build(), "default")
    else:
        fn, _ = OPENERS[runtime](directory, "default")
    x = case.input(batch)
    loaded = _rss()["VmRSS"]
    _reset_peak()
    fn(x)
    first = _rss()["VmHWM"]
    before = _rss()["VmRSS"]
    _reset_peak()
    for _ in range(calls):
        fn(x)
    steady = _rss()["VmHWM"]
    return {"rss_after_load": loaded, "peak_first_call": first,
            "first_call_delta": first - loaded, "peak_steady": steady,
            "steady_delta": steady - before}


def memory(case, batches, directory: str, status: dict, calls: int = 3) -> list[dict]:
    rows = []
    for batch in batches:
        for runtime in ("tfdeploy", "TF", "onnxruntime", "LiteRT"):
            row = {"case": case.name, "batch": batch, "runtime": runtime}
            if runtime != "TF" and not status.get(runtime, {}).get("ok"):
                row.update(status="fails", error=status.get(runtime, {}).get("error"))
            else:
                out = _child_json([sys.executable, __file__, "memory-child", "--case",
                                   case.name, "--batch", str(batch), "--dir", directory,
                                   "--runtime", runtime, "--calls", str(calls)], _env())
                row.update({"status": "fails"} if "error" in out else {"status": "ok"}, **out)
            rows.append(row)
            mb = 1 / 2**20
            log(f"  memory {case.name} b{batch} {runtime}: " + (
                f"after load {row['rss_after_load'] * mb:.0f} MiB, first call "
                f"+{row['first_call_delta'] * mb:.0f} MiB, steady "
                f"+{row['steady_delta'] * mb:.0f} MiB" if row["status"] == "ok"
                else f"fails ({row['error']})"))
    return rows


# ---------------------------------------------------------------------------------- threads
def threads_child(case_name: str, batch: int, directory: str, load: str,
                  min_time: float) -> dict:
    """tfdeploy's median time per call in this process (threads as the environment says)."""
    if load == "tf":  # TF imported and its pools started, as in a process that converted
        import tensorflow as tf

        tf.reduce_sum(tf.matmul(tf.ones((64, 64)), tf.ones((64, 64)))).numpy()
    from common import race, stats
    from models import CASES
    from runtimes import open_tfdeploy

    x = CASES[case_name].input(batch)
    fn, _ = open_tfdeploy(directory, "default")
    return stats(race({"tfdeploy": lambda: fn(x)}, min_time)["tfdeploy"])


def threads_under_load(case, batch: int, directory: str, min_time: float,
                       rounds: int) -> list[dict]:
    """Default threads against one thread for tfdeploy, under each load; rounds alternate the
    two so both see the same machine."""
    rows = []
    for load in ("none", "busy", "tf"):
        busy = None
        if load == "busy":  # one CPU-bound process beside tfdeploy
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            got: dict[str, list] = {"default": [], "one": []}
            err = None
            for _ in range(rounds):
                for threads in got:
                    out = _child_json([sys.executable, __file__, "threads-child", "--case",
                                       case.name, "--batch", str(batch), "--dir", directory,
                                       "--load", load, "--min-time", str(min_time)],
                                      _env(one_thread=threads == "one"))
                    if "error" in out:
                        err = out["error"]
                    else:
                        got[threads].append(out["median_s"])
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        row = {"case": case.name, "batch": batch, "load": load}
        if err or not all(got.values()):
            row.update(status="fails", error=err)
        else:
            d, o = statistics.median(got["default"]), statistics.median(got["one"])
            row.update(status="ok", default_s=d, one_s=o, ratio=d / o)
        rows.append(row)
        log(f"  threads {case.name} b{batch} load={load}: " + (
            f"default {row['default_s'] * 1e3:.3g} ms, one {row['one_s'] * 1e3:.3g} ms, "
            f"default/one {row['ratio']:.2f}" if row["status"] == "ok"
            else f"fails ({row['error']})"))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("command", choices=("memory-child", "threads-child"))
    ap.add_argument("--case", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--runtime", default="tfdeploy")
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--load", default="none", choices=("none", "busy", "tf"))
    ap.add_argument("--min-time", type=float, default=1.0)
    args = ap.parse_args(argv)
    try:
        if args.command == "memory-child":
            out = memory_child(args.case, args.batch, args.dir, args.runtime, args.calls)
        else:
            out = threads_child(args.case, args.batch, args.dir, args.load, args.min_time)
    except Exception as e:  # noqa: BLE001  (reported by the parent as this row failing)
        print(short_error(e), file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
