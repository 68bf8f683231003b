"""``tfdeploy plan``: how a model becomes a plan, one step a line (docs/architecture.md)."""

from __future__ import annotations

import numpy as np

from tfdeploy.compiler.pipeline import STAGES

from ._common import UsageError, add_command, load_model


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers, "plan", "print a model's compiled plan, one step a line",
        "Print the plan the compiler makes of a model's signature: one step a line\n"
        "(%12 = Conv2D(%3, %c7) strides=... # node), fused steps with the nodes they replace,\n"
        "each value's shape where it is known. --after shows it as it stands after a pass;\n"
        "--batch N specializes it for inputs of that batch size (traced on zeros), as a call\n"
        "with such inputs runs; --source prints the generated Python instead.",
        ["tfdeploy plan model.tfd", "tfdeploy plan model.tfd --batch 8",
         "tfdeploy plan model.tfd --after fold", "tfdeploy plan model.tfd --source"])
    p.add_argument("model", help="a tfdeploy model file")
    p.add_argument("--after", choices=STAGES, help="the plan as it stands after this pass")
    p.add_argument("--batch", type=int, help="the plan specialized for this batch size")
    p.add_argument("--source", action="store_true", help="the generated Python instead")
    p.set_defaults(func=run)


def example_inputs(model, batch: int) -> list:
    """Zeros shaped as the signature says, the first unknown dim of each ``batch``."""
    from tfdeploy.dtypes import to_numpy

    out = []
    for s in model.inputs:
        if s.shape is None:
            raise UsageError(f"input {s.name!r} has an unknown rank: --batch cannot shape it")
        shape = list(s.shape)
        if None in shape:
            shape[shape.index(None)] = batch
        if None in shape:
            raise UsageError(f"input {s.name!r} has shape {s.shape}: more than one unknown "
                             "dim, and --batch fills only the first")
        dt = to_numpy(s.dtype)
        out.append(np.full(shape, b"", object) if dt.kind == "O" else np.zeros(shape, dt))
    return out


def run(args) -> int:
    model = load_model(args.model)
    inputs = example_inputs(model, args.batch) if args.batch is not None else ()
    plan = model.plan(*inputs, after=args.after)
    if args.source:
        if plan.source is None:
            raise UsageError(f"no source after {args.after!r}: the code is generated after "
                             "the last pass")
        print(plan.source, end="")
    else:
        print(plan)
    return 0
