"""CNNs against every peer on one thread: tfdeploy, TensorFlow, onnxruntime and LiteRT.

MobileNetV2, ResNet50 and EfficientNetB0 (``bench_models.build``: Keras 3, random weights,
224x224) at batch 1 and 8, with random BatchNormalization statistics as a trained model has
(Keras' initial ones fold into a zero bias, which the fused kernels skip). Each model is
converted once per runtime (tfdeploy, tf2onnx + onnxruntime, the TFLite converter + LiteRT);
outputs are checked against TF before timing. The runtimes are called in turn, round after
round, so a slow spell of this shared machine hits all alike. Two clocks: CPU time (the
calling thread's; TF's process time, as its kernels run on its own pool), robust to other jobs
taking the core, and wall time; both as medians. Everything runs on one thread: OpenBLAS, TF's
intra/inter-op pools, onnxruntime's, LiteRT's.

    taskset -c 0 python benchmarks/bench_cnn.py [--models mobilenetv2,resnet50,efficientnetb0]
        [--batches 1,8] [--rounds 11]

A column is missing when its runtime is not installed or cannot convert the model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

from bench_models import build, onnx_runner  # noqa: E402

RUNTIMES = ("tfdeploy", "TF", "onnxrt", "LiteRT")


def litert_runner(model, shape):
    """A LiteRT interpreter of ``model`` for inputs of ``shape`` (one thread), or None."""
    try:
        import tensorflow as tf
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    try:
        flat = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    except Exception as e:  # noqa: BLE001  (a column, not the benchmark, is lost)
        print(f"  TFLite could not convert: {type(e).__name__}: {str(e)[:200]}")
        return None
    with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as f:
        f.write(flat)
    it = Interpreter(f.name, num_threads=1)
    os.unlink(f.name)
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    it.resize_tensor_input(inp, shape)
    it.allocate_tensors()

    def run(x):
        it.set_tensor(inp, x)
        it.invoke()
        return it.get_tensor(out)
    return run


def randomize_batch_norms(model) -> None:
    """Random BatchNormalization parameters and statistics (deterministic)."""
    import numpy as np

    rng = np.random.default_rng(0)
    for layer in model.layers:
        if "BatchNormalization" in type(layer).__name__:
            layer.set_weights([w + rng.uniform(0.1, 0.5, np.shape(w)).astype(np.float32)
                               for w in layer.get_weights()])


def race(runners: dict, x, rounds: int) -> dict[str, tuple[float, float]]:
    """(median CPU seconds, median wall seconds) per runtime, called in turn each round."""
    import numpy as np

    cpu: dict = {k: [] for k in runners}
    wall: dict = {k: [] for k in runners}
    for _ in range(rounds):
        for k, fn in runners.items():
            clock = time.process_time if k == "TF" else time.thread_time
            c0, w0 = clock(), time.perf_counter()
            fn(x)
            wall[k].append(time.perf_counter() - w0)
            cpu[k].append(clock() - c0)
    return {k: (float(np.median(cpu[k])), float(np.median(wall[k]))) for k in runners}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mobilenetv2,resnet50,efficientnetb0")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--rounds", type=int, default=11, help="rounds at batch 1 (a third at 8)")
    args = ap.parse_args(argv)
    import numpy as np
    import tensorflow as tf

    import tfdeploy as td

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    print(f"{'model':<16}{'batch':>5}  " + "".join(f"{k + ' ms':>13}" for k in RUNTIMES) +
          "   tfdeploy / others (CPU time; wall time)")
    for name in args.models.split(","):
        model = build(name, 224)
        randomize_batch_norms(model)
        tdm = td.convert(model)
        infer = tf.function(lambda v, m=model: m(v, training=False))
        onnx = onnx_runner(model, model.input_shape, 1)
        for b in (int(v) for v in args.batches.split(",")):
            x = np.random.default_rng(0).standard_normal((b, 224, 224, 3), dtype=np.float32)
            runners = {"tfdeploy": tdm, "TF": lambda v: infer(v).numpy(), "onnxrt": onnx,
                       "LiteRT": litert_runner(model, x.shape)}
            runners = {k: f for k, f in runners.items() if f is not None}
            want = runners["TF"](x)
            scale = float(np.max(np.abs(want)))
            for k, f in runners.items():
                err = float(np.max(np.abs(np.asarray(f(x)) - want)))
                if not err <= 1e-4 * scale:
                    raise SystemExit(f"{name} batch {b}: {k} differs from TF by {err:.3g}")
            times = race(runners, x, args.rounds if b == 1 else max(3, args.rounds // 3))
            cells = "".join(f"{times[k][0] * 1e3:>7.1f}/{times[k][1] * 1e3:<5.0f}"
                            if k in times else f"{'n/a':>13}" for k in RUNTIMES)
            ratios = ", ".join(f"/{k} {times['tfdeploy'][0] / times[k][0]:.2f}x; "
                               f"{times['tfdeploy'][1] / times[k][1]:.2f}x"
                               for k in RUNTIMES[1:] if k in times)
            print(f"{name:<16}{b:>5}  {cells}   {ratios}", flush=True)
    print("\n(cells: median CPU ms / median wall ms; ratios > 1: tfdeploy is slower)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
