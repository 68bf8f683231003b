"""Recurrent networks: tfdeploy ``model(x)`` against TensorFlow (and onnxruntime), in one run.

Keras models with random weights: an LSTM(64) over 50 steps of 16 features, a GRU text
classifier (Embedding(20000, 64) -> GRU(64) -> Dense(2) logits over 100 tokens), and a stacked
one (Embedding(1000, 32) -> LSTM(64, return_sequences) -> GRU(32) -> Dense(10) over 20
tokens), each at batch 1, 8 and 64, built with Keras 3 and with tf_keras (``--flavours``).
TensorFlow runs a ``tf.function`` of the model with ``training=False``, called on numpy with
the result ``.numpy()``'d; onnxruntime (through tf2onnx; it cannot convert Keras 3 RNNs) is a
column only when both are importable. Outputs are checked to agree before anything is timed.
Each contender is timed ``--repeat`` times, interleaved; the tables show the best and the
median sample. Ratios > 1 in the ``/tfdeploy`` columns mean tfdeploy is faster.

    python benchmarks/bench_rnn.py [--models lstm,gru,stacked] [--batches 1,8,64]
    python benchmarks/bench_rnn.py --profile lstm --batches 64   # time per op, loop bodies too
    python benchmarks/bench_rnn.py --clock cpu    # CPU time: steadier on a shared machine

Both sides get the same number of threads (``--threads``, default 1; see bench_models.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

from common import fmt, table  # noqa: E402

MODELS = ("lstm", "gru", "stacked")
STEPS = {"lstm": 50, "gru": 100, "stacked": 20}
VOCAB = 20000


def build(k, name: str):
    """The model ``name`` built with the Keras module ``k`` (keras or tf_keras)."""
    k.utils.set_random_seed(0)
    L = k.layers
    if name == "lstm":
        return k.Sequential([k.Input((STEPS[name], 16)), L.LSTM(64)])
    if name == "gru":
        return k.Sequential([k.Input((STEPS[name],), dtype="int32"), L.Embedding(VOCAB, 64),
                             L.GRU(64), L.Dense(2)])
    if name == "stacked":
        return k.Sequential([k.Input((STEPS[name],), dtype="int32"), L.Embedding(1000, 32),
                             L.LSTM(64, return_sequences=True), L.GRU(32), L.Dense(10)])
    raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def make_input(name: str, batch: int, rng):
    import numpy as np

    if name == "stacked":
        return rng.integers(1, 1000, size=(batch, STEPS[name])).astype(np.int32)
    if name == "gru":
        return rng.integers(1, VOCAB, size=(batch, STEPS[name])).astype(np.int32)
    return rng.standard_normal((batch, STEPS[name], 16), dtype=np.float32)


def onnx_runner(model, x, threads: int):
    """An onnxruntime session of ``model`` through tf2onnx, or None if either is missing or the
    model does not convert."""
    try:
        import onnxruntime as ort
        import tensorflow as tf
        import tf2onnx
    except ImportError:
        return None
    dt = tf.int32 if x.dtype.kind == "i" else tf.float32
    spec = (tf.TensorSpec((None, *x.shape[1:]), dt, name="x"),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    except Exception as e:  # noqa: BLE001  (a column, not the benchmark, is lost)
        print(f"  tf2onnx could not convert: {type(e).__name__}: {e}")
        return None
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = opts.inter_op_num_threads = threads
    sess = ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda v: sess.run(None, {name: v})[0]


def sample(fn, seconds: float, clock) -> float:
    """Seconds per call of ``fn`` on ``clock``, over a loop of about ``seconds``."""
    fn()
    n = 1
    while True:
        t0 = clock()
        for _ in range(n):
            fn()
        dt = clock() - t0
        if dt >= seconds or n >= 1 << 20:
            return dt / n
        n *= 2


def race(contenders: dict, repeat: int, min_time: float, clock) -> dict[str, list[float]]:
    """Seconds per call of each contender (None = skipped), ``repeat`` samples each, timed
    interleaved: on a shared, noisy machine a slow spell then hits them all alike."""
    times: dict[str, list[float]] = {}
    for _ in range(repeat):
        for col, fn in contenders.items():
            if fn is not None:
                times.setdefault(col, []).append(sample(fn, min_time / repeat, clock))
    return times


def measure(label, b, x, want, scale, tdm, infer, onnx, repeat, min_time, clock):
    """Check onnxruntime's output too, then race the contenders and print the row: the
    samples of each."""
    import numpy as np

    if onnx is not None:
        err_o = float(np.max(np.abs(onnx(x) - want)))
        if not err_o <= 1e-4 * scale:
            raise SystemExit(f"{label}: onnxruntime differs by {err_o:.3g}")
    times = race({"tfdeploy": lambda: tdm(x), "TF": lambda: infer(x).numpy(),
                  "onnxrt": (lambda: onnx(x)) if onnx is not None else None}, repeat, min_time,
                 clock)
    print(f"  {label}: " + ", ".join(f"{c} {fmt(min(t)).strip()} (median "
                                     f"{fmt(sorted(t)[len(t) // 2]).strip()})"
                                     for c, t in times.items()), flush=True)
    return times


def report(rows: list) -> None:
    """The tables of best and median times, and the ratios to tfdeploy's."""
    if not rows:
        return
    cols = [c for c in ("tfdeploy", "TF", "onnxrt") if any(c in t for _, t in rows)]
    print(__doc__.strip().splitlines()[0])
    for name, stat in (("best", min), ("median", lambda t: sorted(t)[len(t) // 2])):
        print(f"\n{name} of each contender's samples:")
        print(table([(label, {c: stat(t) for c, t in times.items()}) for label, times in rows],
                     cols, "tfdeploy"))
    print("\n(column/tfdeploy: > 1 means tfdeploy is faster; no onnxrt figure where tf2onnx "
          "could not convert the model)")


def profiled(tdm, x, n: int = 5, clock=time.perf_counter) -> list[tuple[str, float, float]]:
    """(op, seconds per run, calls per run) over every plan of ``tdm`` (loop bodies and
    conditions included), slowest first (``Model.profile``)."""
    return tdm.profile(x, repeat=n, clock=clock).by_op()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--flavours", default="keras3,tf_keras", help="keras3 and/or tf_keras")
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--profile", metavar="MODEL", help="print tfdeploy's time per op instead")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time, or the process's CPU time (all its threads, TF's pools "
                         "included): steadier on a shared machine, where waiting for a core "
                         "is not the contender's time")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for numpy's BLAS and for TF (0: each library's default)")
    args = ap.parse_args(argv)
    if args.threads:
        if "numpy" in sys.modules:
            raise SystemExit("--threads must be set before numpy is imported")
        for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[v] = str(args.threads)
    import numpy as np
    import tensorflow as tf

    import tfdeploy as td

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    names = [args.profile] if args.profile else args.models.split(",")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    batches = [int(b) for b in args.batches.split(",")]
    rng = np.random.default_rng(0)
    rows = []
    for flavour in args.flavours.split(","):
        if flavour == "keras3":
            import keras as k
        elif flavour == "tf_keras":
            try:
                import tf_keras as k
            except ImportError:
                print("tf_keras is not installed: skipped")
                continue
        else:
            raise SystemExit(f"unknown flavour {flavour!r}")
        for name in names:
            model = build(k, name)
            tdm = td.convert(model)
            infer = tf.function(lambda v, m=model: m(v, training=False))
            for b in batches:
                x = make_input(name, b, rng)
                want = infer(x).numpy()
                got = tdm(x)
                scale = float(np.max(np.abs(want)))
                err = float(np.max(np.abs(got - want)))
                if got.shape != want.shape or not err <= 1e-4 * scale:
                    raise SystemExit(f"{name} batch {b}: tfdeploy differs from TF by {err:.3g} "
                                     f"(scale {scale:.3g})")
                label = f"{name}{'' if flavour == 'keras3' else '/tfk'} b{b}"
                if args.profile:
                    prof = profiled(tdm, x, clock=time.thread_time if args.threads == 1
                                    else time.perf_counter)
                    total = sum(t for _, t, _ in prof)
                    print(f"\n{label}: {fmt(total)} in kernels per run (best of 5 per op, "
                          f"{'CPU' if args.threads == 1 else 'wall'} time)")
                    for op_type, t, c in prof:
                        print(f"  {op_type:<28}{fmt(t)} {100 * t / total:6.1f}%  x{c:<5}"
                              f"{fmt(t / c)}/call")
                    continue
                onnx = onnx_runner(model, x, args.threads)
                print(f"  {label}: max |tfdeploy - TF| / max |TF| = {err / scale:.2g}")
                rows.append((label, measure(label, b, x, want, scale, tdm, infer, onnx,
                                            args.repeat, args.min_time, clock)))
    report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
