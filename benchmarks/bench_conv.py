"""Convolution layers of MobileNetV2, ResNet50 and EfficientNetB0, one kernel at a time.

Each layer is a small graph as Keras 3 converts it: the convolution (a ZeroPadding2D ``Pad``
before it where the model has one), BatchNormalization as a ``Mul`` and an ``AddV2`` by
constants, the activation (Relu, Relu6 or swish) and, in residual blocks, the addition of the
block's input. Columns: ``unfused`` runs every node with its own kernel (the plan without the
optimizing passes, ``optimize=False``); ``fused`` is the optimized plan as models get it. Times
are CPU time of this thread (robust to a busy machine), the best of ``--repeat`` rounds; a
round runs every layer of one column, then of the other, so each call finds the caches as a
model's layer does (its weights and input evicted by the other layers), never warmed by the
same layer just before.

    python benchmarks/bench_conv.py [--models mobilenetv2,resnet50,efficientnetb0]
        [--batch 1] [--repeat 30] [--dtype float32] [--layers SUBSTRING]

One thread: OPENBLAS_NUM_THREADS is set to 1 unless given.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from tfdeploy.compiler.pipeline import compile_plan  # noqa: E402
from tfdeploy.ir.graph import Graph, Node, TensorSpec  # noqa: E402

# (name, kind, input [H, W, C], kernel, out channels, stride, padding, activation, residual)
# padding: "SAME"/"VALID", or (lo, hi) of a ZeroPadding2D before a VALID conv
LAYERS = {
    "mobilenetv2": [
        ("stem 3x3/2", "conv", (224, 224, 3), 3, 32, 2, "SAME", "relu6", False),
        ("dw 112x32", "dw", (112, 112, 32), 3, 32, 1, "SAME", "relu6", False),
        ("pw 112 32>16", "conv", (112, 112, 32), 1, 16, 1, "SAME", None, False),
        ("pw 112 16>96", "conv", (112, 112, 16), 1, 96, 1, "SAME", "relu6", False),
        ("dw 112x96/2", "dw", (112, 112, 96), 3, 96, 2, (0, 1), "relu6", False),
        ("pw 56 96>24", "conv", (56, 56, 96), 1, 24, 1, "SAME", None, False),
        ("pw 56 24>144", "conv", (56, 56, 24), 1, 144, 1, "SAME", "relu6", False),
        ("dw 56x144", "dw", (56, 56, 144), 3, 144, 1, "SAME", "relu6", False),
        ("pw 56 144>24+", "conv", (56, 56, 144), 1, 24, 1, "SAME", None, True),
        ("dw 56x144/2", "dw", (56, 56, 144), 3, 144, 2, (0, 1), "relu6", False),
        ("dw 28x192", "dw", (28, 28, 192), 3, 192, 1, "SAME", "relu6", False),
        ("dw 14x384", "dw", (14, 14, 384), 3, 384, 1, "SAME", "relu6", False),
        ("pw 14 384>64+", "conv", (14, 14, 384), 1, 64, 1, "SAME", None, True),
        ("dw 7x960", "dw", (7, 7, 960), 3, 960, 1, "SAME", "relu6", False),
        ("pw 7 320>1280", "conv", (7, 7, 320), 1, 1280, 1, "SAME", "relu6", False),
    ],
    "resnet50": [
        ("stem 7x7/2", "conv", (224, 224, 3), 7, 64, 2, (3, 3), "relu", False),
        ("pw 56 64>64", "conv", (56, 56, 64), 1, 64, 1, "SAME", "relu", False),
        ("3x3 56x64", "conv", (56, 56, 64), 3, 64, 1, "SAME", "relu", False),
        ("pw 56 64>256+", "conv", (56, 56, 64), 1, 256, 1, "SAME", "relu", True),
        ("pw/2 56 256>128", "conv", (56, 56, 256), 1, 128, 2, "VALID", "relu", False),
        ("3x3 28x128", "conv", (28, 28, 128), 3, 128, 1, "SAME", "relu", False),
        ("3x3 14x256", "conv", (14, 14, 256), 3, 256, 1, "SAME", "relu", False),
        ("pw 14 256>1024+", "conv", (14, 14, 256), 1, 1024, 1, "SAME", "relu", True),
        ("3x3 7x512", "conv", (7, 7, 512), 3, 512, 1, "SAME", "relu", False),
        ("pw 7 512>2048+", "conv", (7, 7, 512), 1, 2048, 1, "SAME", "relu", True),
    ],
    "efficientnetb0": [
        ("stem 3x3/2", "conv", (224, 224, 3), 3, 32, 2, "SAME", "swish", False),
        ("dw 112x32", "dw", (112, 112, 32), 3, 32, 1, "SAME", "swish", False),
        ("pw 112 16>96", "conv", (112, 112, 16), 1, 96, 1, "SAME", "swish", False),
        ("dw 112x96/2", "dw", (112, 112, 96), 3, 96, 2, (0, 1), "swish", False),
        ("dw5 56x144/2", "dw", (56, 56, 144), 5, 144, 2, (1, 2), "swish", False),
        ("dw5 28x240", "dw", (28, 28, 240), 5, 240, 1, "SAME", "swish", False),
        ("pw 28 240>40+", "conv", (28, 28, 240), 1, 40, 1, "SAME", None, True),
        ("dw5 14x672", "dw", (14, 14, 672), 5, 672, 1, "SAME", "swish", False),
        ("pw 7 320>1280", "conv", (7, 7, 320), 1, 1280, 1, "SAME", "swish", False),
    ],
}


def _const(name: str, value: np.ndarray) -> Node:
    return Node(name, "Const", [], {"dtype": value.dtype.name, "value": value})


def layer_graph(spec, batch: int, dtype: str, rng) -> tuple[Graph, np.ndarray, np.ndarray]:
    """(graph, input, residual or None) of one layer as Keras 3 converts it."""
    _, kind, (h, w, c), k, co, s, padding, act, residual = spec
    dt = np.dtype(dtype)
    t = {"T": dtype}
    nodes = [Node("x", "Placeholder", [], {"dtype": dtype})]
    src = "x"
    if isinstance(padding, tuple):
        lo, hi = padding
        nodes += [_const("paddings", np.array([[0, 0], [lo, hi], [lo, hi], [0, 0]], np.int32)),
                  Node("pad", "Pad", ["x", "paddings"], {**t, "Tpaddings": "int32"})]
        src, padding = "pad", "VALID"
    shape = (k, k, c, 1) if kind == "dw" else (k, k, c, co)
    wt = (rng.standard_normal(shape) / np.sqrt(k * k * (1 if kind == "dw" else c))).astype(dt)
    op = "DepthwiseConv2dNative" if kind == "dw" else "Conv2D"
    nodes += [_const("w", wt), _const("scale", rng.uniform(0.5, 1.5, co).astype(dt)),
              _const("shift", rng.uniform(-0.5, 0.5, co).astype(dt)),
              Node("conv", op, [src, "w"], {**t, "strides": [1, s, s, 1], "padding": padding,
                                             "data_format": "NHWC", "dilations": [1, 1, 1, 1]}),
              Node("mul", "Mul", ["conv", "scale"], t), Node("bn", "AddV2", ["mul", "shift"], t)]
    last = "bn"
    inputs = [TensorSpec("x", "x:0", dtype)]
    if residual:
        nodes += [Node("r", "Placeholder", [], {"dtype": dtype}),
                  Node("res", "AddV2", ["bn", "r"], t)]
        inputs.append(TensorSpec("r", "r:0", dtype))
        last = "res"
    if act in ("relu", "relu6"):
        nodes.append(Node("act", "Relu" if act == "relu" else "Relu6", [last], t))
        last = "act"
    elif act == "swish":
        nodes += [Node("sig", "Sigmoid", [last], t), Node("act", "Mul", [last, "sig"], t)]
        last = "act"
    g = Graph(nodes, inputs, [TensorSpec("y", f"{last}:0", dtype)])
    x = rng.standard_normal((batch, h, w, c)).astype(dt)
    oh, ow = -(-h // s), -(-w // s)
    r = rng.standard_normal((batch, oh, ow, co)).astype(dt) if residual else None
    return g, x, r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(LAYERS))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--layers", default="", help="only layers whose name contains this")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    cases = []
    for model in args.models.split(","):
        for spec in LAYERS[model]:
            if args.layers not in spec[0]:
                continue
            g, x, r = layer_graph(spec, args.batch, args.dtype, rng)
            feeds = [s.ref for s in g.inputs]
            fetch = [g.outputs[0].ref]
            plans = {"unfused": compile_plan(g, fetch, feeds, optimize=False),
                     "fused": compile_plan(g, fetch, feeds)}
            vals = [x] if r is None else [x, r]
            want = plans["unfused"](*vals)[0]
            got = plans["fused"](*vals)[0]
            scale = float(np.max(np.abs(want))) or 1.0
            err = float(np.max(np.abs(got - want))) / scale
            if not err < (1e-5 if args.dtype == "float32" else 1e-12):
                raise SystemExit(f"{model} {spec[0]}: fused differs by {err:.3g}")
            cases.append((model, spec[0], plans, vals))
    best: dict = {}
    clock = time.thread_time
    for _ in range(args.repeat):
        for col in ("unfused", "fused"):  # (a column's calls in turn: none warms another's)
            for model, name, plans, vals in cases:
                t0 = clock()
                plans[col](*vals)
                dt = clock() - t0
                key = (model, name, col)
                best[key] = min(best.get(key, dt), dt)
    print(f"batch {args.batch}, {args.dtype}, best of {args.repeat} (ms, CPU time, one thread)")
    print(f"{'model':<15}{'layer':<18}{'unfused':>9}{'fused':>9}{'unf/fused':>11}")
    totals: dict = {}
    for model, name, _, _ in cases:
        u, f = best[(model, name, "unfused")], best[(model, name, "fused")]
        tot = totals.setdefault(model, [0.0, 0.0])
        tot[0] += u
        tot[1] += f
        print(f"{model:<15}{name:<18}{u * 1e3:9.3f}{f * 1e3:9.3f}{u / f:10.2f}x")
    for model, (u, f) in totals.items():
        print(f"{model:<15}{'(sum)':<18}{u * 1e3:9.3f}{f * 1e3:9.3f}{u / f:10.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
