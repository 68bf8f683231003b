"""Convolutional networks: tfdeploy ``model(x)`` against TensorFlow (and onnxruntime).

Keras 3 models with random weights (``weights=None``, logits out): MobileNetV2 (alpha 1.0),
ResNet50 and EfficientNetB0 at 224x224, and the small CNN of ``tfdeploy example``, each at
batch 1 and 8. TensorFlow runs a ``tf.function`` of the model with ``training=False``, called
on numpy with the result ``.numpy()``'d; onnxruntime (through tf2onnx) is a column only when
both are importable. Outputs are checked to agree before anything is timed. Ratios > 1 in the
``/tfdeploy`` columns mean tfdeploy is faster than that column.

    python benchmarks/bench_models.py [--quick] [--models mobilenetv2,cnn] [--batches 1,8]
    python benchmarks/bench_models.py --profile mobilenetv2 --batches 1   # time per op

Both sides get the same number of threads (``--threads``, default 1: OpenBLAS for numpy, intra-
and inter-op pools for TF). On a busy machine multi-threaded OpenBLAS is dominated by scheduling
stalls: a 50 us matmul can take 15 ms when one of its threads is descheduled, and on the 2-core
machine shared with other jobs where this was written, ResNet50 at batch 1 took 940 ms with two
BLAS threads against 98 ms with one, even in a process without TensorFlow. One thread gives the
figures worth comparing; ``--threads 0`` shows the libraries' defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

from common import fmt, measure, report  # noqa: E402

MODELS = ("mobilenetv2", "resnet50", "efficientnetb0", "cnn")


def build(name: str, size: int):
    """The Keras model ``name`` with random weights, for ``size`` x ``size`` images."""
    import keras

    keras.utils.set_random_seed(0)
    apps = keras.applications
    shape = (size, size, 3)
    if name == "mobilenetv2":
        return apps.MobileNetV2(weights=None, input_shape=shape, alpha=1.0,
                                classifier_activation=None)
    if name == "resnet50":
        return apps.ResNet50(weights=None, input_shape=shape, classifier_activation=None)
    if name == "efficientnetb0":
        return apps.EfficientNetB0(weights=None, input_shape=shape, classifier_activation=None)
    if name == "cnn":  # the model of `tfdeploy example`
        from tfdeploy.cli import example_model

        return example_model(keras)
    raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def onnx_runner(model, batch_shape, threads: int):
    """An onnxruntime session of ``model`` through tf2onnx, or None if either is missing."""
    try:
        import onnxruntime as ort
        import tensorflow as tf
        import tf2onnx
    except ImportError:
        return None
    spec = (tf.TensorSpec((None, *batch_shape[1:]), tf.float32, name="x"),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    except Exception as e:  # noqa: BLE001  (a column, not the benchmark, is lost)
        print(f"  tf2onnx could not convert: {type(e).__name__}: {str(e)[:200]}")
        return None
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = opts.inter_op_num_threads = threads
    sess = ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda v: sess.run(None, {name: v})[0]


def per_op_profile(tdm, x, n: int = 5, clock=time.perf_counter) -> list[tuple[str, float, float]]:
    """(op, seconds per run, calls per run) over every plan of ``tdm`` (loop bodies and
    conditions included), slowest first (``Model.profile``)."""
    return tdm.profile(x, repeat=n, clock=clock).by_op()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--size", type=int, default=224, help="image size of the large models")
    ap.add_argument("--quick", action="store_true", help="96x96 images, batches 1 and 4")
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", metavar="MODEL", help="print tfdeploy's time per op instead")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for numpy's BLAS and for TF (0: each library's default)")
    args = ap.parse_args(argv)
    if args.threads:
        if "numpy" in sys.modules:
            print("note: numpy was imported before --threads could set its BLAS threads",
                  file=sys.stderr)
        for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[v] = str(args.threads)
    if args.quick:
        args.size, args.batches = 96, "1,4"
    import numpy as np
    import tensorflow as tf

    import tfdeploy as td

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    names = [args.profile] if args.profile else args.models.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    rng = np.random.default_rng(0)
    rows = []
    has_onnx = False
    for name in names:
        model = build(name, args.size)
        tdm = td.convert(model)
        infer = tf.function(lambda v, m=model: m(v, training=False))
        onnx = None if args.profile else onnx_runner(model, model.input_shape, args.threads)
        for b in batches:
            x = rng.standard_normal((b, *model.input_shape[1:]), dtype=np.float32)
            want = infer(x).numpy()
            got = tdm(x)
            # random networks can shrink activations a lot: compare relative to the output
            scale = float(np.max(np.abs(want)))
            err = float(np.max(np.abs(got - want)))
            if got.shape != want.shape or not err <= 1e-4 * scale:
                raise SystemExit(f"{name} batch {b}: tfdeploy differs from TF by {err:.3g} "
                                 f"(scale {scale:.3g})")
            label = f"{name[:9]} b{b}"
            if args.profile:
                # CPU time of this thread when BLAS runs in it: robust to a busy machine
                clock = time.thread_time if args.threads == 1 else time.perf_counter
                prof = per_op_profile(tdm, x, clock=clock)
                total = sum(t for _, t, _ in prof)
                print(f"\n{label}: {fmt(total)} in kernels per run (best of 3 per node, "
                      f"{'CPU' if args.threads == 1 else 'wall'} time)")
                for k, t, c in prof:
                    print(f"  {k:<32}{fmt(t)} {100 * t / total:6.1f}%  x{c}")
                continue
            times, used = measure(label, name, b, x, want, err, scale, tdm, infer, onnx,
                                  args.repeat, args.min_time)
            has_onnx = has_onnx or used
            rows.append((label, times))
    report(__doc__, rows, has_onnx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
