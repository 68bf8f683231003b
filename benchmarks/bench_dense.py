"""The original tfdeploy benchmark: softmax(x @ W + b), x:[N,784], W:[784,100], float32.

tfdeploy against TensorFlow (a tf.function and a TF1 session) and hand-written numpy, in one
run. Ratios > 1 in the `/tfdeploy` columns mean tfdeploy is faster than that column.

    python benchmarks/bench_dense.py [--sizes 1,100,10000]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from common import table, timeit  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1,100,10000")
    ap.add_argument("--min-time", type=float, default=0.3)
    args = ap.parse_args(argv)
    import tensorflow as tf

    import tfdeploy as td

    rng = np.random.default_rng(0)
    W0 = (rng.standard_normal((784, 100)) * 0.05).astype(np.float32)
    b0 = rng.standard_normal(100).astype(np.float32)

    # TF1 session, converted the classic way
    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        sess = v1.Session(graph=g)
        x = v1.placeholder(tf.float32, shape=[None, 784], name="input")
        W = v1.Variable(W0)
        b = v1.Variable(b0)
        y = tf.nn.softmax(tf.matmul(x, W) + b, name="output")
        sess.run(v1.global_variables_initializer())
        model = td.Model()
        model.add(y, sess)
    path = "/tmp/tfdeploy_bench_dense.tfd"
    model.save(path)
    model = td.Model(path)
    tx, ty = model.get("input", "output")

    Wt, bt = tf.Variable(W0), tf.Variable(b0)
    f = tf.function(lambda v: tf.nn.softmax(tf.matmul(v, Wt) + bt),
                    input_signature=[tf.TensorSpec([None, 784], tf.float32)])

    def numpy_model(v):
        z = v @ W0 + b0
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        batch = rng.random((n, 784), dtype=np.float32)
        ref = numpy_model(batch)
        for name, out in (("tfdeploy", ty.eval({tx: batch})),
                          ("tf.function", f(batch).numpy()),
                          ("session", sess.run(y, {x: batch}))):
            err = float(np.max(np.abs(out - ref)))
            assert err < 1e-5, f"{name} differs from numpy by {err}"
        times = {
            "tfdeploy": timeit(lambda: ty.eval({tx: batch}), args.min_time),
            "model()": timeit(lambda: model(batch), args.min_time),
            "numpy": timeit(lambda: numpy_model(batch), args.min_time),
            "tf.function": timeit(lambda: f(batch).numpy(), args.min_time),
            "session": timeit(lambda: sess.run(y, {x: batch}), args.min_time),
        }
        rows.append((f"N={n}", times))
    print(__doc__.strip().splitlines()[0])
    print(table(rows, ["tfdeploy", "model()", "numpy", "tf.function", "session"], "tfdeploy"))
    print("\n(column/tfdeploy: > 1 means tfdeploy is faster; numpy/tfdeploy near 1 means "
          "tfdeploy adds little over hand-written numpy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
