"""``tfdeploy convert``: a SavedModel, .keras/.h5 file or frozen .pb to a tfdeploy file."""

from __future__ import annotations

import os
import time

from .. import checkdata
from ._common import (
    UsageError,
    add_command,
    comma_list,
    fmt_bytes,
    fmt_shape,
    progress,
)
from .check import report


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers, "convert", "convert a SavedModel, .keras/.h5 file or frozen .pb",
        "Convert a TensorFlow model to one data-only tfdeploy file. By default the file also\n"
        "stores check data: a small generated input and TensorFlow's outputs on it (a few KB),\n"
        "which 'tfdeploy check' and td.load(path, verify=True) compare against. Needs\n"
        "TensorFlow (and Keras for .keras/.h5 files).",
        ["tfdeploy convert saved_model_dir model.tfd",
         "tfdeploy convert model.keras --verify          # writes model.tfd, compares with TF",
         "tfdeploy convert frozen.pb model.tfd --inputs x --outputs softmax",
         "tfdeploy convert graph.pb model.tfd --inputs x --outputs y --checkpoint ckpt/model"])
    p.add_argument("source", help="SavedModel directory, .keras or .h5 file, or GraphDef .pb")
    p.add_argument("output", nargs="?", help="the tfdeploy file to write (default: beside the "
                   "source, named like it, with .tfd)")
    p.add_argument("--inputs", type=comma_list, metavar="NAMES",
                   help="comma-separated input tensor names (.pb)")
    p.add_argument("--outputs", type=comma_list, metavar="NAMES",
                   help="comma-separated output tensor names (.pb)")
    p.add_argument("--signature", help="SavedModel signature (default serving_default)")
    p.add_argument("--checkpoint", metavar="PREFIX",
                   help="variables of an unfrozen .pb, from this TF checkpoint")
    p.add_argument("--no-check-data", dest="check_data", action="store_false",
                   help="store no check input and TensorFlow outputs in the file")
    p.add_argument("--verify", action="store_true",
                   help="run TensorFlow and tfdeploy on the check input and print the "
                   "difference (exit status 2 beyond tolerance)")
    p.set_defaults(func=run)


def run(args) -> int:
    source = args.source.rstrip("/") or args.source
    output = args.output or os.path.splitext(source)[0] + ".tfd"
    if not os.path.exists(source):
        raise UsageError(f"no such file or directory: {source!r}")
    if os.path.abspath(output) == os.path.abspath(source):
        raise UsageError(f"the output {output!r} would overwrite the source")
    from tfdeploy import convert
    from tfdeploy.convert.peers import require_tensorflow

    require_tensorflow()  # quietly, before the converter imports it
    kw = {k: v for k, v in (("inputs", args.inputs), ("outputs", args.outputs),
                            ("signature", args.signature), ("checkpoint", args.checkpoint))
          if v}
    # the converter's stages (converting, recording shapes, checking), then saving
    bar = progress(3 + (args.check_data or args.verify), "converting")

    def stage(name: str) -> None:
        bar.set_description(name)
        bar.update(1)

    t0 = time.perf_counter()
    try:
        model = convert(source, check_data=args.check_data or args.verify, progress=stage, **kw)
        checks = checkdata.verify(model) if args.verify else None
        if not args.check_data:
            model.metadata.pop("check", None)
        stage("saving")
        model.save(output)
    finally:
        bar.close()
    _summary(model, args.source, output, time.perf_counter() - t0)
    if checks is not None:
        print(report(checks, model))
        checkdata.raise_on_failure(checks, output)
    return 0


def _summary(model, source: str, output: str, seconds: float) -> None:
    g = model.default_graph
    print(f"converted {source} -> {output} ({fmt_bytes(os.path.getsize(output))}) in "
          f"{seconds:.1f} s: {len(g.nodes)} nodes"
          + (f", {len(g.functions)} functions" if g.functions else ""))
    for title, specs in (("inputs", g.inputs), ("outputs", g.outputs)):
        shown = ", ".join(f"{s.name} {s.dtype} {fmt_shape(s.shape)}" for s in specs)
        print(f"  {title}: {shown or 'none'}")
    entry = model.metadata.get("check", {}).get(next(iter(model.graphs)))
    if entry is None:
        print("  check data: none (--no-check-data)")
    elif "skipped" in entry:
        print(f"  check data: none, TensorFlow could not run the model: {entry['skipped']}")
    else:
        print(f"  check data: stored ({entry['reference']}'s outputs on a generated input)")
