"""The ``tfdeploy`` command line: ``example``, ``convert``, ``info``, ``plan``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

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


def example(args) -> int:
    """Build a small Keras CNN, convert and save it, then evaluate it in a TF-free process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    t0 = time.perf_counter()
    import keras
    import tensorflow as tf

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
        print("tfdeploy example: the TensorFlow-free evaluation failed", file=sys.stderr)
        return 1
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
        print("FAILED: outputs differ", file=sys.stderr)
    return 0 if ok else 1


def convert_cmd(args) -> int:
    import tfdeploy as td

    kw = {}
    if args.inputs:
        kw["inputs"] = args.inputs.split(",")
    if args.outputs:
        kw["outputs"] = args.outputs.split(",")
    if args.signature:
        kw["signature"] = args.signature
    source = args.source
    if source.endswith((".keras", ".h5")):
        import keras

        source = keras.models.load_model(source)
    m = td.convert(source, **kw)
    m.save(args.output)
    print(f"wrote {args.output}: inputs {m.inputs}, outputs {m.outputs}")
    return 0


def info(args) -> int:
    import tfdeploy as td

    m = td.Model(args.file)
    out = {}
    for k, g in m.graphs.items():
        ops: dict[str, int] = {}
        for n in g.nodes:
            ops[n.op] = ops.get(n.op, 0) + 1
        out[k] = {"inputs": [repr(s) for s in g.inputs], "outputs": [repr(s) for s in g.outputs],
                  "nodes": len(g.nodes), "functions": len(g.functions),
                  "ops": dict(sorted(ops.items()))}
    print(json.dumps(out, indent=2))
    return 0


def _example_inputs(model, batch: int) -> list:
    """Zeros shaped as the signature says, the first unknown dim of each ``batch``."""
    import numpy as np

    from .dtypes import to_numpy
    from .errors import TFDeployError

    out = []
    for s in model.inputs:
        if s.shape is None:
            raise TFDeployError(f"input {s.name!r} has an unknown rank: cannot make an input")
        shape = list(s.shape)
        if None in shape:
            shape[shape.index(None)] = batch
        if None in shape:
            raise TFDeployError(f"input {s.name!r} has shape {s.shape}: more than one unknown "
                                "dim, --batch fills only the first")
        dt = to_numpy(s.dtype)
        out.append(np.full(shape, b"", object) if dt.kind == "O" else np.zeros(shape, dt))
    return out


def plan_cmd(args) -> int:
    """Print the compiled plan of a model's signature (after a pass, or final), or its
    generated Python."""
    import tfdeploy as td

    model = td.Model(args.file)
    inputs = _example_inputs(model, args.batch) if args.batch is not None else ()
    plan = model.plan(*inputs, after=args.after)
    if args.source:
        if plan.source is None:
            print(f"tfdeploy plan: no source after {args.after!r}: code is generated after the "
                  "last pass", file=sys.stderr)
            return 2
        print(plan.source, end="")
    else:
        print(plan)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="tfdeploy", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("example", help="convert a built-in Keras model and evaluate it without TF")
    e.add_argument("--batch", type=int, default=32)
    e.add_argument("--output", help="also keep the model file here")
    e.set_defaults(fn=example)
    c = sub.add_parser("convert", help="convert a SavedModel dir, .keras/.h5 file or frozen .pb")
    c.add_argument("source")
    c.add_argument("output")
    c.add_argument("--inputs", help="comma-separated input tensor names (frozen .pb)")
    c.add_argument("--outputs", help="comma-separated output tensor names (frozen .pb)")
    c.add_argument("--signature", help="SavedModel signature (default serving_default)")
    c.set_defaults(fn=convert_cmd)
    i = sub.add_parser("info", help="describe a tfdeploy model file")
    i.add_argument("file")
    i.set_defaults(fn=info)
    from .compiler.pipeline import STAGES

    pl = sub.add_parser("plan", help="print a model's compiled plan, one step a line",
                        description="Print how a model becomes a plan: one step a line "
                        "(%%12 = Conv2D(%%3, %%c7) strides=... # node), fused steps with the "
                        "nodes they replace. Example: tfdeploy plan model.tfd --after fold")
    pl.add_argument("file")
    pl.add_argument("--after", choices=STAGES, help="the plan as it stands after this pass")
    pl.add_argument("--batch", type=int, help="the plan specialized for this batch size "
                    "(traced on zeros)")
    pl.add_argument("--source", action="store_true", help="the generated Python instead")
    pl.set_defaults(fn=plan_cmd)
    from .serve.cli import add_parser as add_serve_parser  # no server packages imported here

    add_serve_parser(sub)
    args = p.parse_args(argv)
    from tfdeploy.errors import TFDeployError

    try:
        return args.fn(args)
    except TFDeployError as e:  # the user's mistake or a bad file: the message, no traceback
        print(f"tfdeploy {args.cmd}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
