"""Run every op case of ``tests/cases/`` on perturbed inputs, TF as the oracle (a tool, not a test).

    python tests/sweep.py MODE [--jobs 2] [--out DIR] [--match TEXT] [--resume]

MODE chooses the perturbation of each case's inputs:

- ``nonfinite``: NaN, inf and -inf in the first input (a float), then one inf alone
- ``huge``: the first input scaled by 1e20 (1e160 in float64, 1e3 in float16), then a third of it
- ``empty``: converted with unknown dims, run on an empty first input (batch 0)
- ``batch``: converted with unknown dims, run at the case's batch, twice it, 1, and again
- ``layout``: every input Fortran-ordered, then a negative-stride view (and never written)
- ``dtypes``: the float inputs cast to each other float type (float16, bfloat16, float32,
  float64), then the integer inputs to int64, int8 and uint8 where their values fit: where
  TF runs the op on those types, tfdeploy must convert and run it alike
- ``extremes``: each integer or float input in turn holding its dtype's extremes (int: min,
  max, -1, 0; float: max, -max, the smallest subnormal, -0.0). Here an input TF rejects
  must be rejected too, with a tfdeploy error (``TFDeployError``): a case where TF raises and
  tfdeploy returns, or raises another exception (a numpy traceback), is written down

Each case is converted and run by tfdeploy and by TF; what differs (or raises in tfdeploy
only) is written to ``DIR/MODE-<job>.txt``, one line per case and variant. A case TF itself
fails on is skipped. TF hangs or aborts on a few perturbed cases (a data-dependent While on an
empty batch, Conv2DBackpropInput on an empty batch; RandomPoisson with an infinite or huge
rate, whose cases only tfdeploy runs in those modes, ``_TF_HANGS``): each job records the
case it starts in ``DIR/MODE-<job>.progress`` and is restarted past it when it crashes or
makes no progress for three minutes, so a sweep always finishes (``--resume`` goes on with
one that was stopped).
Many differences are TF's own (its oneDNN convolution returns the input for an empty batch,
its FFT reads uninitialised memory there, Eigen's vectorised reductions skip or keep a NaN by
position, its kernels flush subnormal values to zero): read each before fixing anything.
The sweeps of 2026-12-05 found the bugs fixed in eb284f1..83d0bcf; those of 2026-12-07
(nonfinite, huge, dtypes, extremes again on the kernels of then) the ones in 906a6e0..ccee1bf
(CumulativeLogsumexp's NaN and inf, NMS's overlaps, NaN corners and negative scores, Polygamma's
sign and Betainc at huge orders, Poisson rates beyond the output type, integer SegmentMean,
BesselK of subnormals).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("nonfinite", "huge", "empty", "batch", "layout", "extremes", "dtypes")
_SCALE = {"float16": 1e3, "bfloat16": 1e20, "float32": 1e20, "float64": 1e160}
#: TF's kernels of these loop forever on an infinite, NaN or huge rate: in the modes that
#: perturb values only tfdeploy runs their cases, and must return or raise a tfdeploy error
#: within ``_ALONE_SECONDS`` (waiting out each hang cost the nonfinite sweep three minutes a
#: case, 56 cases)
_TF_HANGS = {"RandomPoisson", "RandomPoissonV2", "StatelessRandomPoisson"}
_ALONE_SECONDS = 10.0


def _float(x) -> bool:
    return np.asarray(x).dtype.name in _SCALE


def _nonfinite(x, variant):
    x = np.array(x, copy=True)
    flat = x.reshape(-1)
    if variant == 0:
        flat[0], flat[flat.size // 2], flat[-1] = np.nan, np.inf, -np.inf
    else:
        flat[flat.size // 3] = np.inf
    return x


def _huge(x, variant):
    y = np.asarray(x).astype(np.float64)
    scale = _SCALE[np.asarray(x).dtype.name]
    if variant == 0:
        y = y * scale
    else:
        y.reshape(-1)[::3] *= scale
    return y.astype(np.asarray(x).dtype)


def _layout(x, variant):
    x = np.asarray(x)
    if x.ndim == 0 or x.size == 0 or x.dtype == object:
        return x
    if variant == 0:
        return np.asfortranarray(x)
    r = np.ascontiguousarray(x[(slice(None, None, -1),) * x.ndim])
    return r[(slice(None, None, -1),) * x.ndim]


def _extremes(x):
    """``x`` with its dtype's extremes at its first, middle, last and a third positions."""
    x = np.array(x, copy=True)
    dt = x.dtype
    if dt.kind == "i":
        values = [np.iinfo(dt).min, np.iinfo(dt).max, -1, 0]
    elif dt.kind == "u":
        values = [np.iinfo(dt).max, 0, np.iinfo(dt).max - 1, 1]
    elif dt.name == "bfloat16":
        values = [3.38e38, -3.38e38, 9.2e-41, -0.0]
    else:
        f = np.finfo(dt)
        values = [f.max, -f.max, f.smallest_subnormal, -0.0]
    flat = x.reshape(-1)
    for pos, v in zip((0, flat.size // 2, flat.size - 1, flat.size // 3), values):
        flat[pos] = v
    return x


def _extreme_input(x) -> bool:
    x = np.asarray(x)
    return x.size > 0 and (x.dtype.kind in "iu" or _float(x))


_FLOATS = ("float16", "bfloat16", "float32", "float64")
_INTS = ("int64", "int8", "uint8")


def _dtype_variants(inputs: list) -> list[tuple[str, list]]:
    """The inputs with every float input (of one type) cast to each other float type, then
    every integer input (of one type) to each of ``_INTS`` that holds its values."""
    import ml_dtypes

    out = []
    arrays = [np.asarray(x) for x in inputs]
    for kinds, targets in (("f", _FLOATS), ("iu", _INTS)):
        for src in sorted({a.dtype.name for a in arrays
                           if (a.dtype.kind in kinds and a.dtype.name != "bool") or
                           (kinds == "f" and a.dtype.name == "bfloat16")}):
            for dst in targets:
                if dst == src:
                    continue
                t = ml_dtypes.bfloat16 if dst == "bfloat16" else np.dtype(dst)
                if kinds == "iu" and any(a.dtype.name == src and a.size and (
                        a.min() < np.iinfo(t).min or a.max() > np.iinfo(t).max) for a in arrays):
                    continue
                out.append((f"{src}->{dst}", [a.astype(t) if a.dtype.name == src else x
                                              for a, x in zip(arrays, inputs)]))
    return out


def variants(mode: str, inputs: list) -> tuple[bool, list[tuple[str, list]]]:
    """(convert with unknown dims?, [(label, inputs)]) for one case; [] to skip it."""
    if not inputs:
        return False, []
    first = inputs[0]
    if mode in ("nonfinite", "huge"):
        if not _float(first) or np.size(first) < (4 if mode == "nonfinite" else 2):
            return False, []
        f = _nonfinite if mode == "nonfinite" else _huge
        return False, [(f"v{v}", [f(first, v)] + inputs[1:]) for v in (0, 1)]
    if mode == "dtypes":
        return False, _dtype_variants(inputs)
    if mode == "extremes":
        return False, [(f"in{i}", inputs[:i] + [_extremes(x)] + inputs[i + 1:])
                       for i, x in enumerate(inputs[:4]) if _extreme_input(x)]
    if mode == "layout":
        return False, [(how, [_layout(x, v) for x in inputs])
                       for v, how in enumerate(("fortran", "reversed"))]
    x0 = np.asarray(first)
    if x0.ndim < 1 or x0.shape[0] == 0:
        return True, []
    if mode == "empty":
        return True, [("empty", [x0[:0]] + inputs[1:])]
    twice = np.concatenate([x0, x0[::-1]])
    return True, [("orig", inputs), ("twice", [twice] + inputs[1:]),
                  ("one", [x0[:1]] + inputs[1:]), ("orig-again", inputs)]


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "fc":
        return np.array_equal(a, b, equal_nan=True)
    if a.dtype.kind == "V" or a.dtype.name == "bfloat16":
        return np.array_equal(a.astype(np.float32), b.astype(np.float32), equal_nan=True)
    return np.array_equal(a, b)


def job(mode: str, index: int, jobs: int, out_dir: str, match: str) -> None:
    """Sweep the cases ``index::jobs`` (resuming past those already started)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, HERE)
    warnings.filterwarnings("ignore")
    import tensorflow as tf

    import tfdeploy as td
    from cases import collect
    from harness import compare, run_tf, tf_function
    from tfdeploy.errors import TFDeployError

    tf.get_logger().setLevel("ERROR")
    progress = os.path.join(out_dir, f"{mode}-{index}.progress")
    started = set(open(progress).read().split()) if os.path.exists(progress) else set()
    cases = [c for i, c in enumerate(collect()) if i % jobs == index and c.xfail is None
             and c.oracle is None and not c.onednn and c.rejects is None
             and match in c.id and c.id not in started]
    log = open(os.path.join(out_dir, f"{mode}-{index}.txt"), "a")
    with open(progress, "a") as prog:
        for case in cases:
            prog.write(case.id + "\n")
            prog.flush()
            stateful = "random" in case.id.lower() or "bbox" in case.id
            try:
                inputs = case.make_inputs()
                dynamic, runs = variants(mode, inputs)
                if not runs:
                    continue
                f = tf_function(case.fn, inputs if dynamic else runs[0][1], dynamic=dynamic)
                model = td.convert(f, check_data=False) if dynamic else None
            except Exception:  # noqa: BLE001 (TF refuses the case: nothing to compare)
                continue
            if mode in ("nonfinite", "huge", "extremes") and _TF_HANGS & set(case.ops):
                _alone(case, runs, tf_function, td, TFDeployError, log)
                continue
            for label, ins in runs:
                try:
                    g = f if dynamic else tf_function(case.fn, ins)
                    g.get_concrete_function()  # (TF traces it: a failure is TF's refusal)
                except Exception:  # noqa: BLE001
                    continue
                try:
                    want, tf_error = run_tf(g, ins), None
                except Exception as e:  # noqa: BLE001 (TF rejects the input)
                    want, tf_error = None, e
                    if mode != "extremes" or stateful:
                        continue
                try:
                    m = model or td.convert(g, check_data=False)
                except Exception as e:  # noqa: BLE001 (where TF runs it, tfdeploy must convert it)
                    if tf_error is None:
                        _write(log, case.id, label, f"convert {type(e).__name__}", str(e))
                    continue
                if tf_error is not None:
                    _rejects_too(m, ins, tf_error, TFDeployError, log, case.id, label)
                    continue
                try:
                    with np.errstate(all="ignore"):
                        got = m(*ins)
                    got = list(got) if isinstance(got, tuple) else [got]
                    for i, (a, w) in enumerate(zip(got, want)):
                        if stateful:
                            assert a.shape == w.shape and a.dtype == w.dtype, f"output {i}"
                        else:
                            tol = 3e-2 if mode == "dtypes" and ("float16" in label or
                                                               "bfloat16" in label) else 1e-5
                            compare(a, w, rtol=max(case.rtol, tol), atol=max(case.atol, tol),
                                    what=f"output {i}")
                    if mode == "layout":
                        assert all(_same(x, y) for x, y in zip(inputs, ins)), "input written"
                except Exception as e:  # noqa: BLE001
                    _write(log, case.id, label, type(e).__name__, str(e))
    log.write("DONE\n")


def _write(log, case_id: str, label: str, kind: str, text: str) -> None:
    """One line of the log: the case, the variant, what happened, and its text on one line."""
    log.write(f"{case_id}\t{label}\t{kind}\t{' | '.join(text.split(chr(10)))[:600]}\n")
    log.flush()


def _alone(case, runs, tf_function, td, clean, log) -> None:
    """Run ``case``'s variants in tfdeploy only (``_TF_HANGS``): write down a variant that
    raises anything but a tfdeploy error, or takes over ``_ALONE_SECONDS``."""
    for label, ins in runs:
        try:
            m = td.convert(tf_function(case.fn, ins), check_data=False)
        except Exception:  # noqa: BLE001 (TF refuses to trace it)
            continue
        t = time.perf_counter()
        got = _outcome(m, ins, clean)
        took = time.perf_counter() - t
        if isinstance(got, Exception):
            _write(log, case.id, label, f"unclean {type(got).__name__}",
                   f"{str(got)[:300]} (TF hangs on this input)")
        if took > _ALONE_SECONDS:
            _write(log, case.id, label, "slow", f"{took:.1f} s (TF hangs on this input)")


def _rejects_too(m, ins, tf_error, clean, log, case_id: str, label: str) -> None:
    """Write down where TF rejected ``ins`` and ``m`` did not, or not with a tfdeploy error."""
    what = f"TF: {type(tf_error).__name__}: {str(tf_error).splitlines()[0][:200]}"
    got = _outcome(m, ins, clean)
    if isinstance(got, Exception):
        _write(log, case_id, label, f"unclean {type(got).__name__}", f"{str(got)[:300]} ({what})")
    elif got == "returned":
        _write(log, case_id, label, "returned", f"tfdeploy returned where {what}")


def _outcome(m, ins, clean):
    """Run ``m`` on ``ins``: "returned", "clean" (it raised a ``clean`` error) or the other
    exception it raised."""
    try:
        with np.errstate(all="ignore"):
            m(*ins)
    except clean:
        return "clean"
    except Exception as e:  # noqa: BLE001
        return e
    return "returned"


def _supervise(procs: dict, cmds: dict, out: str, mode: str, stall: float = 180.0) -> None:
    """Wait for every job, each watched on its own: one that crashed (TF aborts on a few
    cases) or made no progress for ``stall`` seconds (TF hangs on others; a case takes
    seconds) is started again, past the case it was on."""
    seen: dict[int, tuple[int, float]] = {}
    restarts = dict.fromkeys(procs, 0)
    while procs:
        time.sleep(1.0)
        now = time.monotonic()
        for i in list(procs):
            proc = procs[i]
            done = os.path.join(out, f"{mode}-{i}.txt")
            progress = os.path.join(out, f"{mode}-{i}.progress")
            size = os.path.getsize(progress) if os.path.exists(progress) else 0
            if seen.get(i, (None,))[0] != size:
                seen[i] = (size, now)
            if proc.poll() is not None and os.path.exists(done) and \
                    open(done).read().endswith("DONE\n"):
                del procs[i]
                continue
            if proc.poll() is None and now - seen[i][1] < stall:
                continue
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            restarts[i] += 1
            if restarts[i] > 200:
                del procs[i]
                continue
            procs[i] = subprocess.Popen(cmds[i])
            seen[i] = (size, now)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=MODES)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="sweep-results")
    p.add_argument("--match", default="", help="only the cases whose id holds this")
    p.add_argument("--resume", action="store_true",
                   help="go on with an earlier sweep of MODE in --out, past its started cases")
    p.add_argument("--job", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    if a.job is not None:
        job(a.mode, a.job, a.jobs, a.out, a.match)
        return
    for i in range(a.jobs):  # (a fresh sweep: the files of an earlier one go)
        for ext in ("txt", "progress"):
            path = os.path.join(a.out, f"{a.mode}-{i}.{ext}")
            if os.path.exists(path) and not a.resume:
                os.remove(path)
    cmds = {i: [sys.executable, __file__, a.mode, "--jobs", str(a.jobs), "--out", a.out,
                "--match", a.match, "--job", str(i)] for i in range(a.jobs)}
    procs = {i: subprocess.Popen(cmd) for i, cmd in cmds.items()}
    _supervise(procs, cmds, a.out, a.mode)
    for i in range(a.jobs):
        lines = [ln for ln in open(os.path.join(a.out, f"{a.mode}-{i}.txt"))
                 if ln != "DONE\n"]
        sys.stdout.writelines(lines)


if __name__ == "__main__":
    main()
