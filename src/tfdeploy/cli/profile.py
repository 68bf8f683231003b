"""``tfdeploy profile``: where a model's time goes, per op type and per node."""

from __future__ import annotations

import sys

from ._common import UsageError, add_command, load_model
from .plan import example_inputs
from .run import read_inputs


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers, "profile", "time a model per op type and show its slowest nodes",
        "Run the plan a call with the given inputs runs (specialized for their shapes, fused),\n"
        "every kernel timed, loop bodies included, and print the time per op type (a fused\n"
        "step under the ops it replaces, e.g. Conv2D+BiasAdd+Relu6) and the slowest nodes.\n"
        "Inputs: --batch N (zeros, the first unknown dim of each input N) or --input files\n"
        "as for 'tfdeploy run'.",
        ["tfdeploy profile model.tfd --batch 1", "tfdeploy profile model.tfd -i x.npy -n 50",
         "taskset -c 0 tfdeploy profile model.tfd --batch 8 --threads 1"])
    p.add_argument("model", help="a tfdeploy model file")
    p.add_argument("--batch", type=int, help="zeros of this batch size as the input")
    p.add_argument("-i", "--input", action="append", default=[], metavar="[NAME=]FILE",
                   help="an input (.npy, .npz, .json), as for 'tfdeploy run'")
    p.add_argument("-n", "--repeat", type=int, default=20, help="runs timed (default 20)")
    p.add_argument("--top", type=int, default=15, help="slowest nodes shown (default 15)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="tfdeploy's threads (td.setup(threads=N); default: the CPUs the "
                        "process may use), BLAS at one as always unless its environment "
                        "variables say otherwise")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError("--threads must be at least 1")
        from tfdeploy.runtime import threads

        threads.configure(threads=args.threads)
    model = load_model(args.model)
    if args.input:
        named = read_inputs(args.input, model.inputs)
        inputs = [named[s.name] for s in model.inputs]
    else:
        inputs = example_inputs(model, args.batch if args.batch is not None else 1)
    print(model.profile(*inputs, repeat=max(1, args.repeat)).report(args.top))
    from tfdeploy.runtime.threads import kernel_note

    if (note := kernel_note()) is not None:  # (stderr, as bench's)
        print(note, file=sys.stderr)
    return 0
