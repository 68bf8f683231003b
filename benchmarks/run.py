"""tfdeploy's benchmark suite: tfdeploy against TensorFlow, onnxruntime and LiteRT, in one run.

    python benchmarks/run.py                      # everything (what the README shows)
    python benchmarks/run.py --quick              # a small subset with short times
    python benchmarks/run.py --models llama,rnn --modes one --profile
    python benchmarks/run.py --tables RESULT.json # print the tables of an earlier run
    python benchmarks/run.py --readme RESULT.json # rewrite README's generated section

Each model is converted once for every peer (tfdeploy, onnxruntime via tf2onnx, LiteRT via the
TFLite converter), then timed in a fresh process per thread mode: ``one`` (pinned to one core,
every thread pool at 1) and ``default`` (each library's own choice, each runtime in a process
of its own). Inside a process every runtime's output is checked against TensorFlow's, then the
runtimes that agree are timed interleaved. A peer that fails to convert, load, run or agree is
shown as failing, with the reason. Then cold start, peak memory and tfdeploy's threads under
load, each in fresh processes (``--extras``). Writes the JSON of every measurement (with the
machine and library versions) and a PNG chart, and prints markdown tables. See
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import report  # noqa: E402
from common import MODES, SRC, log, machine_info, mode_command, write_json  # noqa: E402
from models import CASES, GROUPS  # noqa: E402

EXTRAS = ("cold", "memory", "threads")
KERAS_PEERS = ("tfdeploy", "TF", "onnxruntime", "LiteRT")
DENSE_PEERS = ("tfdeploy", "numpy", "TF", "TF1 session")
RUNTIMES = (*KERAS_PEERS, "numpy", "TF1 session")
QUICK_BATCHES = {"mobilenetv2": (1,), "block": (1,), "rnn": (1,), "dense": (1, 100)}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help=f"comma-separated, from: {', '.join(CASES)}; or groups "
                    f"of them: {', '.join(GROUPS)} (the apps group runs only when asked for)")
    ap.add_argument("--batches", help="only these batch sizes (of each model's own)")
    ap.add_argument("--modes", default=",".join(MODES), help="one and/or default")
    ap.add_argument("--runtimes", default=",".join(RUNTIMES),
                    help="the runtimes to time (without TF, none of the timing processes "
                    "imports TensorFlow: outputs are checked against TF's saved at conversion)")
    ap.add_argument("--quick", action="store_true",
                    help="a small subset, short times (for development)")
    ap.add_argument("--min-time", type=float, help="seconds each runtime is timed per case "
                    "(default 1, --quick 0.2)")
    ap.add_argument("--profile", action="store_true",
                    help="print tfdeploy's profile report of each case")
    ap.add_argument("--extras", help=f"comma-separated from {', '.join(EXTRAS)}, or none "
                    "(default all; --quick: none)")
    ap.add_argument("--extras-model", default="mobilenetv2",
                    help="the model of the cold start and memory measurements")
    ap.add_argument("--threads-models", default="mobilenetv2,block,rnn",
                    help="the models (batch 1) of the threads-under-load measurement: many "
                    "small steps are where threads can lose")
    ap.add_argument("--memory-batches", default="1,8")
    ap.add_argument("--cold-repeats", type=int, help="fresh processes per cold start (5)")
    ap.add_argument("--thread-rounds", type=int, help="process pairs per thread load (3)")
    ap.add_argument("--pin-cpu", type=int, default=0, help="the core of mode 'one'")
    ap.add_argument("--timeout", type=float, default=1800,
                    help="seconds before a timing process is killed (its model then fails)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "latest.json"),
                    help="the JSON result (the chart goes beside it, .png)")
    ap.add_argument("--workdir", help="where converted models go (default: a temporary "
                    "directory, removed at the end)")
    ap.add_argument("--reuse", action="store_true", help="with --workdir: skip the models "
                    "converted there by an earlier run (development only: stale if the "
                    "builders or converters changed)")
    ap.add_argument("--tables", metavar="JSON", help="print the tables of a result and exit")
    ap.add_argument("--readme", metavar="JSON", nargs="?", const="",
                    help="rewrite README.md's generated section from a result (default: "
                    "--out) and exit")
    args = ap.parse_args(argv)
    unknown = set(args.runtimes.split(",")) - set(RUNTIMES)
    if unknown:
        ap.error(f"unknown runtimes {sorted(unknown)}; choose from {', '.join(RUNTIMES)}")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in args.modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
    if args.models:
        names = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in names if m not in CASES and m not in GROUPS]
        if unknown:
            ap.error(f"unknown models {unknown}; choose from {', '.join(CASES)} or a group: "
                     f"{', '.join(GROUPS)}")
        args.models = list(dict.fromkeys(
            n for m in names for n in ([m] if m in CASES else
                                       [c.name for c in CASES.values() if c.group == m])))
    else:
        args.models = [c.name for c in CASES.values()
                       if not c.extra and (c.quick or not args.quick)]
    args.threads_models = [m.strip() for m in args.threads_models.split(",") if m.strip()]
    unknown = [m for m in args.threads_models + [args.extras_model] if m not in CASES]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {', '.join(CASES)}")
    if args.reuse and not args.workdir:
        ap.error("--reuse needs --workdir")
    if args.extras is None:
        args.extras = "none" if args.quick else ",".join(EXTRAS)
    args.extras = [e for e in args.extras.split(",") if e and e != "none"]
    if set(args.extras) - set(EXTRAS):
        ap.error(f"unknown extras {sorted(set(args.extras) - set(EXTRAS))}")
    args.min_time = args.min_time or (0.2 if args.quick else 1.0)
    args.cold_repeats = args.cold_repeats or (2 if args.quick else 5)
    args.thread_rounds = args.thread_rounds or (1 if args.quick else 3)
    return args


def batches_of(name: str, args) -> list[int]:
    own = QUICK_BATCHES.get(name, CASES[name].batches) if args.quick else CASES[name].batches
    if args.batches:
        wanted = {int(b) for b in args.batches.split(",")}
        return [b for b in CASES[name].batches if b in wanted]
    return list(own)


def _env() -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    # this checkout's tfdeploy in every child, whatever is installed
    env["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _crash(r: subprocess.CompletedProcess, log_path: str) -> str:
    """Why a child failed: the last line of its stderr."""
    lines = [ln for ln in (r.stderr or "").splitlines() if ln.strip()]
    with open(log_path, "a") as f:
        f.write(r.stderr or "")
    return f"process exit {r.returncode}: {lines[-1][:200] if lines else 'no message'}"


def convert(name: str, workdir: str, reuse: bool = False) -> dict:
    """Convert ``name`` for every peer in a child process; its status per peer."""
    d = os.path.join(workdir, name)
    status_path = os.path.join(d, "status.json")
    if reuse and os.path.exists(status_path):
        with open(status_path) as f:
            log(f"reusing {d}")
            return json.load(f)
    os.makedirs(d, exist_ok=True)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, os.path.join(HERE, "worker.py"), "convert", "--case",
                        name, "--dir", d], capture_output=True, text=True, env=_env())
    with open(os.path.join(workdir, f"convert-{name}.log"), "w") as f:
        f.write(r.stdout + r.stderr)
    if r.returncode or not os.path.exists(status_path):
        why = _crash(r, os.path.join(workdir, f"convert-{name}.log"))
        status = {p: {"ok": False, "error": f"conversion: {why}"}
                  for p in ("tfdeploy", "onnxruntime", "LiteRT")}
        write_json(status_path, status)
    with open(status_path) as f:
        status = json.load(f)
    log(f"converted {name} in {time.perf_counter() - t0:.0f} s: " + ", ".join(
        p + ("" if s["ok"] else f" FAILS ({s['error']})") for p, s in status.items()))
    return status


def time_case(name: str, mode: str, batches: list[int], workdir: str, args) -> list[dict]:
    """Time ``name`` in thread ``mode``: with one thread, every runtime in one child process,
    interleaved; with default threads, each runtime in a child process of its own (a peer's
    pool threads spin on after its calls and would take the cores of the runtime timed next:
    that measured tfdeploy 15% slower on MobileNetV2 than alone)."""
    wanted = args.runtimes.split(",")
    if mode != "default":
        return _time_process(name, mode, batches, workdir, args, wanted, "")
    peers = DENSE_PEERS if CASES[name].group == "dense" else KERAS_PEERS
    records = []
    for peer in (p for p in peers if p in wanted):
        records += _time_process(name, mode, batches, workdir, args, [peer],
                                 "-" + peer.replace(" ", "_"))
    return records


def _time_process(name: str, mode: str, batches: list[int], workdir: str, args, runtimes,
                  tag: str) -> list[dict]:
    """The records of ``runtimes`` on ``name``, timed in one child process (all failing if the
    child dies: a crash in one runtime takes the others of that process with it)."""
    out = os.path.join(workdir, f"time-{name}-{mode}{tag}.json")
    argv = [sys.executable, os.path.join(HERE, "worker.py"), "time", "--case", name, "--dir",
            os.path.join(workdir, name), "--mode", mode, "--out", out, "--min-time",
            str(args.min_time), "--batches", ",".join(map(str, batches)), "--runtimes",
            ",".join(runtimes)]
    if args.profile:
        argv.append("--profile")
    cmd, env = mode_command(mode, argv, args.pin_cpu)
    env["PYTHONPATH"] = _env()["PYTHONPATH"]
    try:
        r = subprocess.run(cmd, stdout=None, stderr=subprocess.PIPE, text=True, env=env,
                           timeout=args.timeout)
    except subprocess.TimeoutExpired:
        why = f"process killed after --timeout {args.timeout:.0f} s"
    else:
        if r.returncode == 0 and os.path.exists(out):
            with open(out) as f:
                return json.load(f)
        why = _crash(r, os.path.join(workdir, f"time-{name}-{mode}{tag}.log"))
    log(f"  [{mode}] {name}: the timing process failed: {why}")
    peers = DENSE_PEERS if CASES[name].group == "dense" else KERAS_PEERS
    return [{"case": name, "batch": b, "mode": mode, "runtime": p, "status": "fails",
             "error": f"timing {why}"} for b in batches for p in peers if p in runtimes]


def run_extras(args, workdir: str, status: dict) -> dict:
    """Cold start, peak memory and threads under load, each in fresh processes."""
    import extras

    os.environ.update({k: v for k, v in _env().items() if k == "PYTHONPATH"})
    case = CASES[args.extras_model]
    d = os.path.join(workdir, case.name)
    out = {}
    if "cold" in args.extras:
        out["cold_start"] = extras.cold_start(case, d, status, args.cold_repeats)
    if "memory" in args.extras:
        batches = [int(b) for b in args.memory_batches.split(",")]
        out["memory"] = extras.memory(case, batches, d, status)
    if "threads" in args.extras:
        out["threads"] = []
        for name in args.threads_models:
            out["threads"] += extras.threads_under_load(
                CASES[name], 1, os.path.join(workdir, name), min(args.min_time, 1.0),
                args.thread_rounds)
    return out


def run(args) -> dict:
    workdir = args.workdir or tempfile.mkdtemp(prefix="tfdeploy_bench_")
    os.makedirs(workdir, exist_ok=True)
    t_start = time.perf_counter()
    result = {"machine": machine_info(), "config": {
        "models": args.models, "modes": args.modes, "min_time": args.min_time,
        "quick": args.quick, "extras": args.extras, "extras_model": args.extras_model,
        "threads_models": args.threads_models,
        "pin_cpu": args.pin_cpu, "runtimes": args.runtimes.split(","), "argv": sys.argv[1:]},
        "titles": {n: c.title for n, c in CASES.items()}, "conversions": {}, "records": []}
    from tfdeploy.runtime.threads import kernel_note

    if (note := kernel_note()) is not None:  # (the machine line records it too)
        log(note)
    log(f"converting into {workdir}")
    names = list(dict.fromkeys(args.models + ([args.extras_model] if args.extras else []) +
                               (args.threads_models if "threads" in args.extras else [])))
    for name in names:
        result["conversions"][name] = convert(name, workdir, args.reuse)
    for mode in args.modes:
        for name in args.models:
            batches = batches_of(name, args)
            if batches:
                result["records"] += time_case(name, mode, batches, workdir, args)
            elif mode == args.modes[0]:
                log(f"  {name}: none of its batch sizes {CASES[name].batches} is in --batches")
    if args.extras:
        log("extras")
        result["extras"] = run_extras(args, workdir,
                                      result["conversions"][args.extras_model])
    result["seconds"] = time.perf_counter() - t_start
    if hasattr(os, "getloadavg"):  # with the start's: how busy the machine was throughout
        result["machine"]["load_average_end"] = list(os.getloadavg())
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)

    if args.readme is not None:
        path = args.readme or args.out
        with open(path) as f:
            report.rewrite_readme(os.path.join(ROOT, "README.md"), json.load(f))
        log(f"README.md: the generated section now shows {path}")
        return 0
    if args.tables:
        with open(args.tables) as f:
            log(report.tables(json.load(f)))
        return 0
    result = run(args)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_json(args.out, result)
    log("\n" + report.tables(result) + "\n")
    png = os.path.splitext(args.out)[0] + ".png"
    why_not = report.chart(result, png)
    log(f"results: {args.out}" + (f", chart: {png}" if why_not is None else f" ({why_not})")
        + f"; the run took {result['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
