"""One benchmark process: convert a model for every peer, or time one model in one thread mode.

    python benchmarks/worker.py convert --case NAME --dir DIR
    python benchmarks/worker.py time --case NAME --mode one|default --dir DIR --out FILE.json

``run.py`` starts these (the timing ones with the mode's environment and core pinning); they
are not meant to be called by hand. ``time`` checks every runtime's output against TF's before
timing it, and times the runtimes that agree interleaved (``common.race``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402  (after the thread variables the parent set)
from common import log, race, set_tf_threads, short_error, stats, write_json  # noqa: E402
from models import CASES, Case  # noqa: E402


def convert(case: Case, directory: str) -> dict:
    """Convert ``case`` for every file-based peer into ``directory``, with TensorFlow's output
    at each batch size (``reference-B.npy``: what every runtime is checked against, TF's
    rebuilt model too, which proves the builder deterministic); returns the status."""
    if case.group == "dense":
        from models import dense_session

        import tfdeploy as td

        sess, x, y = dense_session()
        m = td.Model()
        m.add(y, sess)
        m.save(os.path.join(directory, "model.tfd"))
        status = {"tfdeploy": {"ok": True}}
        reference = lambda v: sess.run(y, {x: v})  # noqa: E731
    else:
        from runtimes import convert_all, tf_function

        model = case.build()
        status = convert_all(model, directory)
        f = tf_function(model)
        reference = lambda v: f(v).numpy()  # noqa: E731
    for batch in case.batches:
        np.save(os.path.join(directory, f"reference-{batch}.npy"), reference(case.input(batch)))
    write_json(os.path.join(directory, "status.json"), status)
    for peer, s in status.items():
        log(f"  {case.name}: {peer} " + (f"converted in {s.get('seconds', 0):.1f} s" if s["ok"]
                                         else f"FAILS: {s['error']}"))
    return status


def check(case: Case, batch: int, want: np.ndarray, got, peer: str) -> dict:
    """How far ``got`` is from TF's ``want``: {status, max_err, scale[, error]}; 'wrong' beyond
    ``case.tol`` of the output's magnitude (random networks shrink or grow activations, so an
    absolute tolerance would mean nothing)."""
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    got = np.asarray(got)
    if got.shape != want.shape:
        return {"status": "wrong", "error": f"shape {got.shape}, TF's is {want.shape}",
                "scale": scale}
    err = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
    rec = {"status": "ok", "max_err": err, "scale": scale}
    if not err <= case.tol * max(scale, 1e-6):
        rec.update(status="wrong", error=f"max |{peer} - TF| = {err:.3g}, "
                                         f"{err / max(scale, 1e-30):.2g} of the output's scale")
    return rec


def open_runners(case: Case, directory: str, mode: str, peers) -> tuple[dict, dict, dict]:
    """(runners, handles, failures): peer -> fn(x), peer -> the loaded object (tfdeploy's model
    for --profile), peer -> reason it cannot run. TensorFlow is imported only if it is one of
    ``peers``."""
    from runtimes import OPENERS

    with open(os.path.join(directory, "status.json")) as f:
        status = json.load(f)
    runners, handles, failures = {}, {}, {}
    if "TF" in peers:
        from runtimes import open_tf

        set_tf_threads(mode)
        runners["TF"], handles["TF"] = open_tf(case.build(), mode)
    for peer, opener in OPENERS.items():
        if peer not in peers:
            continue
        if not status.get(peer, {}).get("ok"):
            failures[peer] = status.get(peer, {}).get("error", "not converted")
            continue
        try:
            runners[peer], handles[peer] = opener(directory, mode)
        except Exception as e:  # noqa: BLE001
            failures[peer] = f"load: {short_error(e)}"
    return runners, handles, failures


def open_dense(directory: str, mode: str, peers) -> tuple[dict, dict]:
    """The original benchmark's contenders: tfdeploy's classic API, numpy by hand, a
    tf.function and a TF1 session."""
    from models import dense_numpy, dense_weights

    import tfdeploy as td

    W, b = dense_weights()
    tdm = td.Model(os.path.join(directory, "model.tfd"))
    tx, ty = tdm.get("input", "output")
    runners = {"tfdeploy": lambda v: ty.eval({tx: v}), "numpy": lambda v: dense_numpy(v, W, b)}
    if {"TF", "TF1 session"} & set(peers):
        import tensorflow as tf
        from models import dense_session

        set_tf_threads(mode)
        sess, x_ph, y = dense_session(1 if mode == "one" else None)
        Wt, bt = tf.Variable(W), tf.Variable(b)
        f = tf.function(lambda v: tf.nn.softmax(tf.matmul(v, Wt) + bt),
                        input_signature=[tf.TensorSpec([None, W.shape[0]], tf.float32)])
        runners["TF"] = lambda v: f(v).numpy()
        runners["TF1 session"] = lambda v: sess.run(y, {x_ph: v})
    return {p: r for p, r in runners.items() if p in peers}, {"tfdeploy": tdm}


def time_case(case: Case, directory: str, mode: str, batches, min_time: float,
              profile: bool, peers) -> list[dict]:
    """Check and time each of ``peers`` on ``case`` at each batch; one record per (batch,
    peer)."""
    if case.group == "dense":
        (runners, handles), failures = open_dense(directory, mode, peers), {}
    else:
        runners, handles, failures = open_runners(case, directory, mode, peers)
    records = []
    for batch in batches:
        x = case.input(batch)
        want = np.load(os.path.join(directory, f"reference-{batch}.npy")).astype(np.float64)
        base = {"case": case.name, "batch": batch, "mode": mode}
        recs = {p: {"status": "fails", "error": why} for p, why in failures.items()}
        ok = {}
        for peer, fn in runners.items():
            try:
                recs[peer] = check(case, batch, want, fn(x), peer)
            except Exception as e:  # noqa: BLE001
                recs[peer] = {"status": "fails", "error": f"run: {short_error(e)}"}
            if recs[peer]["status"] == "ok":
                ok[peer] = (lambda fn=fn: fn(x))
        for peer, samples in race(ok, min_time).items():
            recs[peer].update(stats(samples))
        for peer, rec in recs.items():
            records.append({**base, "runtime": peer, **rec})
        log(f"  [{mode}] {case.name} b{batch}: " + ", ".join(
            f"{p} {r['median_s'] * 1e3:.3g} ms" if "median_s" in r else f"{p} {r['status']}"
            for p, r in recs.items()))
        if profile and "tfdeploy" in ok:
            # one thread: CPU time of this thread (BLAS runs in it), robust to a busy machine
            clock = time.thread_time if mode == "one" else time.perf_counter
            log(f"\n  tfdeploy profile of {case.name} b{batch} ({mode}, "
                f"{'CPU' if mode == 'one' else 'wall'} time):")
            log(handles["tfdeploy"].profile(x, repeat=20, clock=clock).report())
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("command", choices=("convert", "time"))
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    ap.add_argument("--dir", required=True, help="the case's directory of converted files")
    ap.add_argument("--mode", default="default")
    ap.add_argument("--out", help="JSON file of the timing records")
    ap.add_argument("--batches", help="comma-separated (default: the case's)")
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--runtimes", default="tfdeploy,TF,onnxruntime,LiteRT,numpy,TF1 session")
    args = ap.parse_args(argv)
    case = CASES[args.case]
    if args.command == "convert":
        convert(case, args.dir)
        return 0
    batches = [int(b) for b in args.batches.split(",")] if args.batches else case.batches
    records = time_case(case, args.dir, args.mode, batches, args.min_time, args.profile,
                        args.runtimes.split(","))
    write_json(args.out, records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
