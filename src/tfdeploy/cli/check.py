"""``tfdeploy check``: re-run the check input stored in the file, compare with TensorFlow's."""

from __future__ import annotations

from .. import checkdata
from ._common import add_command, fmt_shape, load_model, table


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers, "check", "compare the model with TensorFlow's outputs stored in the file",
        "Run each graph of the model on the check input its file stores (a small generated\n"
        "input, or the recipe to regenerate it) and compare with the outputs TensorFlow gave at\n"
        "conversion. Prints the largest absolute and relative difference per output; exit\n"
        "status 0 when every output is within its tolerance, 2 when not, or when the file has\n"
        "no check data. Needs no TensorFlow.",
        ["tfdeploy check model.tfd", "tfdeploy check model.tfd --plugin my_ops   # custom ops"])
    p.add_argument("model", help="a tfdeploy model file")
    p.set_defaults(func=run)


def report(checks: list[checkdata.GraphCheck], model) -> str:
    """The checks as text: per graph, a table of outputs."""
    out = []
    stored = checkdata.entries(model.metadata)
    for c in checks:
        if c.missing:
            out.append(f"graph {c.key!r}: not checked: {c.missing}")
            continue
        ins = checkdata.stored_inputs(stored[c.key])
        shown = ", ".join(f"{n} {a.dtype} {fmt_shape(a.shape)}" for n, a in ins.items())
        out.append(f"graph {c.key!r} on its check input ({shown}) against {c.reference}:")
        rows = [("output", "max abs diff", "max rel diff", "tolerance", "compared", "")]
        for o in c.outputs:
            tol = "exact" if o.atol == 0 and o.rtol == 0 else f"{o.atol:.2g} + {o.rtol:.2g}*|x|"
            rows.append((o.name, f"{o.max_abs:.3g}", f"{o.max_rel:.3g}", tol, o.compared,
                         "ok" if o.ok else "FAILED"))
        out.append("\n".join("  " + line for line in table(rows, right=(1, 2)).splitlines()))
        out.extend(f"  {o.name}: {o.problem}" for o in c.outputs if not o.ok)
    return "\n".join(out)


def run(args) -> int:
    model = load_model(args.model)
    checks = checkdata.verify(model)
    print(report(checks, model))
    checkdata.raise_on_failure(checks, args.model)  # one line and exit status 2 (main)
    refs = ", ".join(dict.fromkeys(c.reference for c in checks))
    print(f"OK: {args.model} computes what {refs} computed, within tolerance")
    return 0
