"""``tfdeploy example``: build a small Keras CNN, convert it, evaluate it without TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from ._common import add_command

_CHILD = r"""
import sys, time
from tfdeploy._blocktf import block
block()
import numpy as np
t0 = time.perf_counter()
import tfdeploy as td
model = td.Model(sys.argv[1])
t_load = time.perf_counter() - t0
x = np.load(sys.argv[2], allow_pickle=False)
want = np.load(sys.argv[3], allow_pickle=False)
got = model(x)
n = 20
t0 = time.perf_counter()
for _ in range(n):
    got = model(x)
t_eval = (time.perf_counter() - t0) / n
assert "tensorflow" not in sys.modules
print(f"{float(np.max(np.abs(got - want))):.3g} {t_load:.6f} {t_eval:.6f}")
"""


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers, "example", "convert a built-in Keras model and evaluate it without TF",
        "Build a small Keras CNN (28x28 grey images, 10 logits), convert and save it, then load\n"
        "and evaluate it in a fresh process in which TensorFlow cannot be imported. Prints the\n"
        "largest difference to TensorFlow's output and the time each took. Needs TensorFlow.",
        ["tfdeploy example", "tfdeploy example --batch 1 --output cnn.tfd   # keep the file"])
    p.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--output", metavar="PATH", help="also keep the model file here")
    p.set_defaults(func=run)


def example_model(keras):
    """The built-in example: a small Keras CNN on 28x28 grey images (also benchmarked)."""
    return keras.Sequential([
        keras.Input((28, 28, 1), name="image"),
        keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(64, activation="gelu"),
        keras.layers.Dense(10, name="logits"),
    ])


def run(args) -> int:
    """Build a small Keras CNN, convert and save it, then evaluate it in a TF-free process."""
    import numpy as np

    t0 = time.perf_counter()
    from ..convert.peers import require_tensorflow

    tf = require_tensorflow()
    import keras

    import tfdeploy as td

    t_import = time.perf_counter() - t0
    keras.utils.set_random_seed(0)
    model = example_model(keras)
    x = np.random.default_rng(0).random((args.batch, 28, 28, 1), dtype=np.float32)
    model(x)  # build
    t0 = time.perf_counter()
    tdm = td.convert(model)
    t_convert = time.perf_counter() - t0
    want = np.asarray(model(x, training=False))
    infer = tf.function(lambda v: model(v, training=False))
    infer(x)
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
        np.asarray(infer(x))
    t_tf = (time.perf_counter() - t0) / n
    with tempfile.TemporaryDirectory() as d:
        path = args.output or os.path.join(d, "model.tfd")
        tdm.save(path)
        np.save(os.path.join(d, "x.npy"), x)
        np.save(os.path.join(d, "want.npy"), want)
        r = subprocess.run([sys.executable, "-c", _CHILD, path, os.path.join(d, "x.npy"),
                            os.path.join(d, "want.npy")], capture_output=True, text=True)
        size = os.path.getsize(path)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        print("tfdeploy example: error: the TensorFlow-free evaluation failed", file=sys.stderr)
        return 2
    diff, t_load, t_eval = (float(v) for v in r.stdout.split())
    print(f"Keras CNN ({len(tdm.default_graph.nodes)} ops) converted in {t_convert:.2f} s, "
          f"saved to one {size / 1024:.0f} KiB file")
    print("evaluated in a fresh process where TensorFlow cannot be imported:")
    print(f"  max |tfdeploy - TensorFlow| = {diff:.3g}  (batch {args.batch})")
    print(f"  import tfdeploy + load: {t_load * 1e3:.1f} ms   (import TensorFlow + Keras: "
          f"{t_import * 1e3:.0f} ms)")
    print(f"  one evaluation: tfdeploy {t_eval * 1e3:.2f} ms, TensorFlow {t_tf * 1e3:.2f} ms "
          f"(ratio TF/tfdeploy {t_tf / t_eval:.2f})")
    ok = diff <= 1e-4 * max(1.0, float(np.max(np.abs(want))))
    if not ok:
        print("tfdeploy example: error: outputs differ", file=sys.stderr)
    return 0 if ok else 2
