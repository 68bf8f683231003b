"""``tfdeploy run``: evaluate a model on inputs from .npy/.npz/.json files."""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .. import checkdata, dtypes
from ._common import UsageError, add_command, fmt_shape, fmt_time, fmt_value, load_model

SHOWN_VALUES = 6


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers, "run", "evaluate the model on inputs from .npy, .npz or .json files",
        "Evaluate the model's signature and print, per output: name, dtype, shape, min, max,\n"
        "mean and the first values. Inputs: a .npy file (one input; 'NAME=x.npy' for one of\n"
        "several), a .npz file (arrays named as the inputs, or arr_0, arr_1... in signature\n"
        "order), or a .json file (a dict by input name, or a list: the one input's value, or\n"
        "one value per input). Without --input, runs the check input stored in the file.",
        ["tfdeploy run model.tfd --input x.npy",
         "tfdeploy run model.tfd --input inputs.npz --output outputs.npz",
         "tfdeploy run model.tfd --input ids=ids.npy --input mask=mask.npy",
         "tfdeploy run model.tfd --input x.json   # {\"x\": [[1, 2]]} or [[1, 2]]",
         "tfdeploy run model.tfd          # the check input stored in the file"])
    p.add_argument("model", help="a tfdeploy model file")
    p.add_argument("-i", "--input", action="append", default=[], metavar="[NAME=]FILE",
                   help=".npy, .npz or .json file (repeatable)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="save the outputs: .npz (by output name), .npy (one output) or .json")
    p.add_argument("--graph", metavar="KEY", help="the graph to run (default: the first)")
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------- inputs

def _load_file(path: str):
    """The content of one input file: an array, a dict of arrays, or JSON data."""
    if not os.path.isfile(path):
        raise UsageError(f"input file {path!r} does not exist")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            return np.load(path, allow_pickle=False)
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if ext == ".json":
            with open(path, encoding="utf-8") as f:
                return json.load(f)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise UsageError(f"{path!r} holds Python objects, which loading would unpickle "
                             "(never done): save strings as a numpy str or bytes array") from None
        raise UsageError(f"cannot read {path!r}: {e}") from None
    raise UsageError(f"input file {path!r}: expected a .npy, .npz or .json file")


def _match(name: str, specs) -> str | None:
    for s in specs:
        if name == s.name or f"{name}:0" == s.name or name == s.name.split(":")[0]:
            return s.name
    return None


def read_inputs(items: list[str], specs) -> dict:
    """Input values by signature name, from ``--input`` arguments."""
    names = [s.name for s in specs]
    values: dict = {}

    def put(name, value, origin):
        key = _match(name, specs)
        if key is None:
            raise UsageError(f"{origin}: the model has no input named {name!r} "
                             f"(inputs: {', '.join(names)})")
        if key in values:
            raise UsageError(f"input {key!r} is given twice")
        values[key] = value

    positional = iter(names)
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or os.path.exists(item):
            name, path = None, item
        data = _load_file(path)
        if isinstance(data, dict):  # .npz arrays, or a JSON object: by name or arr_i
            if name is not None:
                raise UsageError(f"{item!r}: NAME= takes a file holding one input (.npy/.json "
                                 "list), not several")
            for k, v in data.items():
                if k.startswith("arr_") and k[4:].isdigit() and _match(k, specs) is None:
                    i = int(k[4:])
                    if i >= len(names):
                        raise UsageError(f"{path}: {k} but the model takes {len(names)} inputs")
                    k = names[i]
                put(k, v, path)
        elif isinstance(data, list) and name is None and len(names) > 1:
            if len(data) != len(names):
                raise UsageError(f"{path}: a list of {len(data)} values for {len(names)} inputs "
                                 f"({', '.join(names)})")
            for k, v in zip(names, data):
                put(k, v, path)
        else:
            if name is None:
                name = next((n for n in positional if n not in values), None)
                if name is None:
                    raise UsageError(f"{path}: every input already has a value "
                                     f"(inputs: {', '.join(names)})")
            put(name, data, path)
    missing = [n for n in names if n not in values]
    if missing:
        raise UsageError(f"missing value for input(s) {', '.join(missing)} (inputs: "
                         f"{', '.join(f'{s.name} {s.dtype} {fmt_shape(s.shape)}' for s in specs)})")
    return {s.name: _as_array(values[s.name], s) for s in specs}


def _as_array(value, spec) -> np.ndarray:
    """JSON values take the input's dtype; arrays keep theirs (the model checks the cast)."""
    if isinstance(value, np.ndarray):
        return value
    try:
        if spec.dtype == "string":
            return np.asarray(value, dtype=object)
        return np.asarray(value, dtype=dtypes.to_numpy(spec.dtype)
                          if dtypes.is_known(spec.dtype) else None)
    except (ValueError, TypeError) as e:
        raise UsageError(f"input {spec.name!r}: cannot make a {spec.dtype} array of the JSON "
                         f"value ({e})") from None


def default_inputs(model, key: str) -> tuple[dict, str]:
    """The check input stored in the file (or one generated from the signature), and what
    it is."""
    entry = checkdata.entries(model.metadata).get(key)
    if isinstance(entry, dict) and "inputs" in entry:
        return checkdata.stored_inputs(entry), "the check input stored in the file"
    arrays, _ = checkdata.make_inputs(model.graphs[key].inputs)
    return dict(zip([s.name for s in model.graphs[key].inputs], arrays)), \
        "an input generated from the signature (the file has no check data)"


# ---------------------------------------------------------------------------- outputs

def summary(name: str, a: np.ndarray) -> list[str]:
    a = np.asarray(a)
    head = f"{name}: {dtypes.from_numpy(a.dtype)} {fmt_shape(a.shape)}"
    flat = a.reshape(-1)
    if a.dtype.kind in "biuf" and flat.size:
        f = flat.astype(np.float64)
        head += f"  min {f.min():.6g}  max {f.max():.6g}  mean {f.mean():.6g}"
    shown = ", ".join(fmt_value(v) for v in flat[:SHOWN_VALUES].tolist())
    more = f", ... ({flat.size} values)" if flat.size > SHOWN_VALUES else ""
    return [head, f"  [{shown}{more}]"]


def save_outputs(path: str, outputs: dict) -> None:
    ext = os.path.splitext(path)[1].lower()
    # object arrays (strings) cannot be saved without pickle: fixed-width bytes instead
    arrays = {k: v.astype(bytes) if v.dtype.kind == "O" else v for k, v in outputs.items()}
    if ext == ".npz":
        np.savez(path, **arrays)
    elif ext == ".npy":
        if len(arrays) != 1:
            raise UsageError(f"{path}: a .npy file holds one array, the model has "
                             f"{len(arrays)} outputs (use .npz)")
        np.save(path, next(iter(arrays.values())))
    elif ext == ".json":
        def plain(v):
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else v

        data = {k: np.vectorize(plain, otypes=[object])(v).tolist() if v.dtype.kind == "O"
                else v.tolist() for k, v in outputs.items()}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)
    else:
        raise UsageError(f"--output {path!r}: expected a .npz, .npy or .json file name")


def run(args) -> int:
    model = load_model(args.model)
    key = args.graph or next(iter(model.graphs))
    if key not in model.graphs:
        raise UsageError(f"the model has no graph {key!r} (graphs: {', '.join(model.graphs)})")
    g = model.graphs[key]
    if args.input:
        feeds = read_inputs(args.input, g.inputs)
    else:
        feeds, what = default_inputs(model, key)
        print(f"(no --input: running {what})")
    fetches = [model.get(s.name, key=key) for s in g.outputs]
    feed = {model.get(n, key=key): v for n, v in feeds.items()}
    t0 = time.perf_counter()
    results = model.eval(fetches, feed)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.eval(fetches, feed)
    again = time.perf_counter() - t0
    shown = ", ".join(f"{n} {dtypes.from_numpy(v.dtype)} {fmt_shape(v.shape)}"
                      for n, v in feeds.items())
    print(f"ran {args.model} on {shown}: {fmt_time(first)} with compiling, then "
          f"{fmt_time(again)}")
    outputs = {s.name: np.asarray(r) for s, r in zip(g.outputs, results)}
    for name, a in outputs.items():
        print("\n".join(summary(name, a)))
    if args.output:
        save_outputs(args.output, outputs)
        print(f"wrote {len(outputs)} output(s) to {args.output}")
    return 0
