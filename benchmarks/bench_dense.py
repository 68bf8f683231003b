"""The original tfdeploy benchmark: softmax(x @ W + b), x:[N,784], W:[784,100], float32.

tfdeploy's classic API (the model converted from a TF1 session, ``y.eval({x: batch})``) against
the same arithmetic written in numpy, a tf.function and the TF1 session, each library with its
default threads. Now part of the suite; this runs only that part of it:

    python benchmarks/bench_dense.py [--sizes 1,100,10000] [--modes default,one]

the same as ``python benchmarks/run.py --models dense --modes default --extras none``.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,100,10000", help="N, from 1, 100 and 10000")
    ap.add_argument("--modes", default="default")
    ap.add_argument("--min-time", default="1.0")
    args = ap.parse_args(argv)
    return run.main(["--models", "dense", "--batches", args.sizes, "--modes", args.modes,
                     "--extras", "none", "--min-time", args.min_time, "--out",
                     os.path.join(run.HERE, "results", "dense.json")])


if __name__ == "__main__":
    sys.exit(main())
