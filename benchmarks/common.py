"""Shared by the benchmark processes: interleaved timing, statistics, thread modes, machine info.

Timing: every call is timed on its own (``perf_counter`` costs ~0.1 us, under 2% of the fastest
case), the contenders take turns in rounds of ``slice_time`` each, starting with a different
one every round, so a slow spell of a shared machine hits them all alike. Median and p90 are
over single calls.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

# this checkout's tfdeploy, not an installed one: the benchmarks measure the tree they are in
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if os.path.isdir(os.path.join(SRC, "tfdeploy")) and SRC not in sys.path:
    sys.path.insert(0, SRC)

MODES = ("one", "default")
MODE_TEXT = {  # mode -> (title, what it sets)
    "one": ("One thread", "pinned to one core (`taskset -c 0`); OpenBLAS, TensorFlow's intra- "
            "and inter-op pools, onnxruntime's intra- and inter-op threads and LiteRT's "
            "`num_threads` all at 1"),
    "default": ("Default threads", "nothing set: each library's own default (OpenBLAS and "
                "TensorFlow a thread per core, onnxruntime a thread per physical core, "
                "LiteRT's Python interpreter 1), each runtime timed in a process of its own"),
}
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


# ---------------------------------------------------------------------------------- timing
def race(contenders: dict, min_time: float, *, slice_time: float = 0.02, min_calls: int = 5,
         max_time: float | None = None, warmup: float = 0.05) -> dict[str, list[float]]:
    """Seconds of each call of each contender (name -> fn()), timed in interleaved rounds until
    every contender has run ``min_time`` seconds and ``min_calls`` calls (or ``max_time``,
    default 5 x ``min_time``, has passed for it). Each is first warmed up for ``warmup`` s and
    at least 2 calls."""
    clock = time.perf_counter
    for fn in contenders.values():
        t_end, n = clock() + warmup, 0
        while n < 2 or clock() < t_end:
            fn()
            n += 1
    max_time = 5 * min_time if max_time is None else max_time
    names = list(contenders)
    samples: dict[str, list[float]] = {n: [] for n in names}
    spent = dict.fromkeys(names, 0.0)
    start = 0
    while True:
        todo = [n for n in names if (spent[n] < min_time or len(samples[n]) < min_calls)
                and spent[n] < max_time]
        if not todo:
            return samples
        start = (start + 1) % len(todo)
        for name in todo[start:] + todo[:start]:
            fn, out = contenders[name], samples[name]
            t_start = clock()
            while True:
                t0 = clock()
                fn()
                t1 = clock()
                out.append(t1 - t0)
                if t1 - t_start >= slice_time:
                    break
            spent[name] += t1 - t_start


def stats(samples: list[float]) -> dict:
    """Median, p90, min and count of per-call seconds."""
    import numpy as np

    a = np.asarray(samples, dtype=np.float64)
    return {"median_s": float(np.median(a)), "p90_s": float(np.percentile(a, 90)),
            "min_s": float(a.min()), "calls": int(a.size)}


def fmt(seconds: float | None) -> str:
    """A duration with 3 significant figures in a readable unit."""
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale or unit == "us":
            v = seconds / scale
            return f"{v:.3g} {unit}" if v < 1000 else f"{v:.0f} {unit}"
    return f"{seconds:.3g} s"


def short_error(e: BaseException, limit: int = 240) -> str:
    """One line saying why: converters' messages run to pages; keep the first line that names
    the problem (MLIR's '<unknown>:0: error: loc(...): why', else the first non-empty line)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    picked = [ln for ln in lines if re.search(r"(^|:\s)error:", ln)]
    line = picked[0] if picked else (lines[0] if lines else "")
    if picked:
        line = re.split(r"(?:^|:\s)error:\s*", line, maxsplit=1)[-1]
        line = re.sub(r"^loc\(.*\)\):\s*", "", line)    # the MLIR location: noise here
    msg = f"{type(e).__name__}: {line}" if line else type(e).__name__
    return msg if len(msg) <= limit else msg[:limit - 3] + "..."


def join_errors(errors: list[tuple[str, str]]) -> str:
    """'how: why; how: why', or 'why (how and how)' when every way failed alike."""
    whys = {why for _, why in errors}
    if len(whys) == 1:
        return f"{whys.pop()} ({' and '.join(how for how, _ in errors)})"
    return "; ".join(f"{how}: {why}" for how, why in errors)


# ---------------------------------------------------------------------------------- threads
def mode_command(mode: str, argv: list[str], pin_cpu: int = 0) -> tuple[list[str], dict]:
    """The command line and environment of a subprocess in thread ``mode``: pinned to one core
    with every pool at 1 thread, or each library's default (thread variables removed)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if mode == "default":
        return list(argv), env
    if mode != "one":
        raise ValueError(f"unknown thread mode {mode!r}; choose from {', '.join(MODES)}")
    env.update(dict.fromkeys(THREAD_VARS, "1"))
    return ["taskset", "-c", str(pin_cpu), *argv], env


def set_tf_threads(mode: str) -> None:
    """TensorFlow's pools at 1 thread in mode 'one' (before TF runs anything)."""
    if mode == "one":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)


# ---------------------------------------------------------------------------------- machine
def _cpu() -> tuple[str, list[str]]:
    model, flags = None, []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model is None:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = value.split()
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def _version(module: str, dist: str | None = None) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist or module)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        return subprocess.run(["git", "-C", here, *args], capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict:
    """What the figures were measured on: CPU, cores, load, library versions, date, commit."""
    model, flags = _cpu()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    import tfdeploy

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": model, "cores": os.cpu_count(), "usable_cores": usable,
        "avx512": sorted(f for f in flags if f.startswith("avx512")),
        "avx2": "avx2" in flags, "fma": "fma" in flags,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(), "python": platform.python_version(),
        "tfdeploy": tfdeploy.__version__, "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "versions": {m: _version(m, d) for m, d in (
            ("numpy", None), ("tensorflow", None), ("keras", None), ("onnxruntime", None),
            ("tf2onnx", None), ("ai-edge-litert", None), ("scipy", None))},
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads",
                                                "architecture", "threading_layer")}
                        for p in threadpool_info()]
    except ImportError:
        info["blas"] = None
    from tfdeploy.runtime.threads import blas_kernels

    info["kernels"] = blas_kernels()
    return info


def write_json(path: str, data) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def log(*args) -> None:
    print(*args, flush=True, file=sys.stdout)
