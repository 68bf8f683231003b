"""Check data: a small deterministic input, TensorFlow's outputs on it and a tolerance, stored in
the model file so that anyone can re-verify the model without TensorFlow (``tfdeploy check``,
``td.load(path, verify=True)``).

It lives in ``Model.metadata["check"][graph_key]`` as plain values and arrays (the file stores
the arrays in its array table, beside the weights)::

    {"reference": "TensorFlow 2.21.0",
     "inputs": [{"name", "dtype", "shape", "values": array}         # small inputs: the values
                | {"name", "dtype", "shape", "generate": recipe}],  # large ones: how to remake
     "outputs": [{"name", "dtype", "shape", "atol", "rtol",
                  "values": array                                   # small outputs: all values
                  | "indices": int64 array, "values": array,        # large: a strided sample
                    "stats": {"min", "max", "mean", "abs_mean"}}]}  # and statistics of all
    or {"skipped": "why the converter could not make it"}

Inputs come from numpy's legacy ``RandomState(seed)``, whose streams numpy keeps identical across
versions and platforms, so a large input is stored as its recipe (seed, kind, range), not its
values. An output passes where ``|got - want| <= atol + rtol * |want|`` (NaNs must match).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import dtypes
from .errors import FileFormatError, VerificationError

#: inputs up to this size are stored as values, larger ones as their recipe
INLINE_INPUT_BYTES = 1024
#: outputs up to this many values are stored whole, larger ones as a sample plus statistics
INLINE_OUTPUT_VALUES = 64
SAMPLE_VALUES = 64
#: sizes chosen for unknown dimensions: the first (batch) one, and every other
UNKNOWN_BATCH = 2
UNKNOWN_DIM = 16
WORDS = (b"the", b"quick", b"brown", b"fox", b"jumps", b"over", b"a", b"lazy", b"dog", b"")


def input_shape(shape: Sequence[int | None] | None) -> tuple[int, ...]:
    """A concrete shape for a signature shape: unknown dims become small sizes."""
    if shape is None:  # unknown rank: a short vector is what most such functions accept
        return (UNKNOWN_BATCH,)
    return tuple((UNKNOWN_BATCH if i == 0 else UNKNOWN_DIM) if d is None else int(d)
                 for i, d in enumerate(shape))


def recipe_for(dtype: str, seed: int, cautious: bool = False) -> dict:
    """How to generate an input of ``dtype``: values a model of that dtype usually accepts
    (floats in [-1, 1), small non-negative ints as indices, any byte for uint8 images).
    ``cautious``: values nearly every model accepts (ints 0 and 1, floats in [0, 1)), for a
    model that refuses the first ones (a vocabulary of 5 tokens, a log of its input...)."""
    dt = dtypes.to_numpy(dtype)
    if dt.kind == "O":
        return {"seed": seed, "kind": "words"}
    if dt.kind == "b" or dt.kind in "iu" and cautious:
        return {"seed": seed, "kind": "randint", "low": 0, "high": 2}
    if dt.kind in "iu":
        return {"seed": seed, "kind": "randint", "low": 0, "high": 256 if dt.itemsize == 1 and
                dt.kind == "u" else 10}
    return {"seed": seed, "kind": "uniform", "low": 0.0 if cautious else -1.0, "high": 1.0}


def generate(dtype: str, shape: Sequence[int], recipe: dict) -> np.ndarray:
    """The input a recipe describes (see :func:`recipe_for`); the same on every platform."""
    try:
        seed, kind = int(recipe["seed"]), recipe["kind"]
        shape = tuple(int(d) for d in shape)
        rs = np.random.RandomState(seed)
        dt = dtypes.to_numpy(dtype)
        if kind == "words":
            return np.array(WORDS, dtype=object)[rs.randint(0, len(WORDS), size=shape)]
        if kind == "randint":
            return rs.randint(int(recipe["low"]), int(recipe["high"]), size=shape,
                              dtype=np.int64).astype(dt)
        if kind == "uniform":
            lo, hi = float(recipe["low"]), float(recipe["high"])
            if dt.kind == "c":
                re = rs.uniform(lo, hi, size=shape)
                return (re + 1j * rs.uniform(lo, hi, size=shape)).astype(dt)
            return rs.uniform(lo, hi, size=shape).astype(dt)
    except (KeyError, TypeError, ValueError) as e:
        raise FileFormatError(f"invalid check-input recipe {recipe!r}: {e}") from None
    raise FileFormatError(f"unknown check-input recipe kind {kind!r}")


def make_inputs(specs, cautious: bool = False) -> tuple[list[np.ndarray], list[dict]]:
    """(arrays, recipes) for a signature's inputs (``TensorSpec``s), input ``i`` seeded ``i``."""
    arrays, recipes = [], []
    for i, s in enumerate(specs):
        if not dtypes.is_known(s.dtype):
            raise ValueError(f"cannot make a check input for {s.name!r} of dtype {s.dtype}")
        recipe = recipe_for(s.dtype, seed=i, cautious=cautious)
        arrays.append(generate(s.dtype, input_shape(s.shape), recipe))
        recipes.append(recipe)
    return arrays, recipes


def tolerance(a: np.ndarray) -> tuple[float, float]:
    """(atol, rtol) for comparing with reference output ``a``: exact for ints, bools and
    strings; for floats, relative to the precision and to the output's largest magnitude."""
    dt = a.dtype
    if dt in dtypes.LOW_PRECISION_FLOATS:
        eps = 2e-2
    elif dt.kind in "fc":
        eps = {2: 2e-2, 4: 1e-4, 8: 1e-7, 16: 1e-7}[dt.itemsize // (2 if dt.kind == "c" else 1)]
    else:
        return 0.0, 0.0
    mag = np.abs(_as_float(a))
    mag = mag[np.isfinite(mag)]
    scale = float(mag.max()) if mag.size else 0.0
    return eps * max(1.0, scale), eps


def _as_float(a: np.ndarray) -> np.ndarray:
    if a.dtype in dtypes.LOW_PRECISION_FLOATS or a.dtype.kind in "biu":
        return a.astype(np.float64)
    return a


def _stats(a: np.ndarray) -> dict | None:
    if a.dtype.kind == "O" or a.dtype.kind == "c":
        return None
    f = _as_float(a).astype(np.float64, copy=False).reshape(-1)
    return {"min": float(f.min()), "max": float(f.max()), "mean": float(f.mean()),
            "abs_mean": float(np.abs(f).mean())}


def record_output(name: str, a: np.ndarray) -> dict:
    """One output's check entry (whole when small, else a fixed strided sample + statistics)."""
    a = np.asarray(a)
    atol, rtol = tolerance(a)
    entry: dict[str, Any] = {"name": name, "dtype": dtypes.from_numpy(a.dtype),
                             "shape": list(a.shape), "atol": atol, "rtol": rtol}
    flat = a.reshape(-1)
    if flat.size <= INLINE_OUTPUT_VALUES:
        entry["values"] = a.copy()  # (np.ascontiguousarray makes 0-d arrays 1-d)
        return entry
    idx = np.unique(np.linspace(0, flat.size - 1, SAMPLE_VALUES).round().astype(np.int64))
    entry["indices"] = idx
    entry["values"] = flat[idx].copy()
    stats = _stats(a)
    if stats is not None:
        entry["stats"] = stats
    return entry


def record(inputs: Sequence, arrays: Sequence[np.ndarray], recipes: Sequence[dict | None],
           outputs: Sequence, results: Sequence[np.ndarray], reference: str) -> dict:
    """The check entry of one graph: its signature ``inputs``/``outputs`` (``TensorSpec``s),
    the input arrays (and their recipes, or None where the values must be stored), and the
    reference's results."""
    if len(results) != len(outputs):
        raise ValueError(f"the reference returned {len(results)} outputs for a signature of "
                         f"{len(outputs)}")
    ins = []
    for s, a, rec in zip(inputs, arrays, recipes):
        e: dict[str, Any] = {"name": s.name, "dtype": dtypes.from_numpy(a.dtype),
                             "shape": list(a.shape)}
        if rec is None or (a.dtype.kind != "O" and a.nbytes <= INLINE_INPUT_BYTES):
            e["values"] = a.copy()
        else:
            e["generate"] = dict(rec)
        ins.append(e)
    outs = [record_output(s.name, np.asarray(r)) for s, r in zip(outputs, results)]
    return {"reference": reference, "inputs": ins, "outputs": outs}


def make(graph, run: Callable[[list[np.ndarray]], Sequence[np.ndarray]], reference: str) -> dict:
    """Check data for ``graph``'s signature: generated inputs, and ``run(inputs)``'s outputs
    (the reference, i.e. TensorFlow, in signature order). When the reference refuses the
    inputs, cautious ones are tried; if those fail too, the first error is raised."""
    try:
        arrays, recipes = make_inputs(graph.inputs)
        results = [np.asarray(r) for r in run(arrays)]
    except Exception as first:  # noqa: BLE001 - whatever the reference raises
        try:
            arrays, recipes = make_inputs(graph.inputs, cautious=True)
            results = [np.asarray(r) for r in run(arrays)]
        except Exception:  # noqa: BLE001
            raise first from None
    return record(graph.inputs, arrays, recipes, graph.outputs, results, reference)


def stored_inputs(entry: dict) -> dict[str, np.ndarray]:
    """The check input of an entry, by input name (regenerated where stored as a recipe)."""
    out = {}
    for e in _entries(entry, "inputs"):
        if "values" in e:
            a = np.asarray(e["values"])
        elif "generate" in e:
            a = generate(e["dtype"], e["shape"], e["generate"])
        else:
            raise FileFormatError(f"check input {e.get('name')!r} has neither values nor a recipe")
        out[e["name"]] = a
    return out


def _entries(entry: dict, what: str) -> list[dict]:
    v = entry.get(what)
    if not isinstance(v, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str)
                                          for e in v):
        raise FileFormatError(f"the file's check data has invalid {what}")
    return v


# ---------------------------------------------------------------------------- verification

@dataclass
class OutputCheck:
    """How one output compares with the stored reference."""

    name: str
    ok: bool
    max_abs: float = 0.0
    #: largest |got - want| / |want| over the values where |want| > atol (0 if none)
    max_rel: float = 0.0
    atol: float = 0.0
    rtol: float = 0.0
    #: what was compared: "all 10 values", "64 sampled of 6272 values + statistics"
    compared: str = ""
    problem: str = ""


@dataclass
class GraphCheck:
    key: str
    outputs: list[OutputCheck] = field(default_factory=list)
    reference: str = ""
    #: why this graph could not be checked (no check data, the converter skipped it...)
    missing: str = ""

    @property
    def ok(self) -> bool:
        return not self.missing and all(o.ok for o in self.outputs)


def entries(metadata: dict) -> dict[str, dict]:
    """The check entries of a model's metadata, by graph key."""
    c = metadata.get("check") if isinstance(metadata, dict) else None
    return c if isinstance(c, dict) else {}


def verify(model, keys: Sequence[str] | None = None) -> list[GraphCheck]:
    """Run each graph on its stored check input and compare with the stored reference."""
    stored = entries(model.metadata)
    out = []
    for key in keys if keys is not None else list(model.graphs):
        entry = stored.get(key)
        if not isinstance(entry, dict):
            out.append(GraphCheck(key, missing="the file has no check data for this graph "
                                  "(converted with check_data=False / --no-check-data, or by "
                                  "an older tfdeploy)"))
            continue
        if "skipped" in entry:
            out.append(GraphCheck(key, missing=f"the converter stored no check data: "
                                  f"{entry['skipped']}"))
            continue
        feeds = stored_inputs(entry)
        g = model.graphs[key]
        fetches = [model.get(s.name, key=key) for s in g.outputs]
        results = model.eval(fetches, {model.get(n, key=key): v for n, v in feeds.items()})
        wants = _entries(entry, "outputs")
        if len(wants) != len(results):
            raise FileFormatError(f"graph {key!r}: the check data has {len(wants)} outputs, the "
                                  f"signature {len(results)}")
        out.append(GraphCheck(key, [compare(w, r) for w, r in zip(wants, results)],
                              reference=str(entry.get("reference", ""))))
    return out


def raise_on_failure(checks: Sequence[GraphCheck], label: str) -> None:
    """Raise :class:`VerificationError` naming every failed or unverifiable graph/output."""
    failed = [f"output {o.name!r}: {o.problem}" for c in checks for o in c.outputs if not o.ok]
    missing = [f"graph {c.key!r}: {c.missing}" for c in checks if c.missing]
    if failed:
        raise VerificationError(f"{label} failed its check: " + "; ".join(failed + missing))
    if missing:
        raise VerificationError(f"{label} cannot be verified: " + "; ".join(missing))


def compare(want: dict, got: np.ndarray) -> OutputCheck:
    """Compare one output with its check entry."""
    name = want["name"]
    res = OutputCheck(name, ok=False, atol=float(want.get("atol", 0.0)),
                      rtol=float(want.get("rtol", 0.0)))
    got = np.asarray(got)
    shape = tuple(want.get("shape", ()))
    if got.shape != shape:
        res.problem = f"shape {got.shape}, TensorFlow's was {shape}"
        return res
    if dtypes.from_numpy(got.dtype) != want.get("dtype"):
        res.problem = f"dtype {dtypes.from_numpy(got.dtype)}, TensorFlow's was {want.get('dtype')}"
        return res
    values = np.asarray(want["values"])
    if "indices" in want:
        idx = np.asarray(want["indices"], dtype=np.int64)
        if idx.shape != values.shape or (idx.size and (idx.min() < 0 or idx.max() >= got.size)):
            raise FileFormatError(f"check output {name!r}: invalid sample indices")
        got_v, want_v = got.reshape(-1)[idx], values
        res.compared = f"{idx.size} sampled of {got.size} values"
    else:
        got_v, want_v = got, values.reshape(got.shape)
        res.compared = f"all {got.size} values"
    _diff(res, got_v, want_v)
    if res.ok and "stats" in want:
        res.compared += " + statistics"
        _compare_stats(res, got, want["stats"])
    return res


def _diff(res: OutputCheck, got: np.ndarray, want: np.ndarray) -> None:
    if got.dtype.kind == "O" or want.dtype.kind == "O":
        bad = np.array([g != w for g, w in zip(got.reshape(-1).tolist(),
                                               want.reshape(-1).tolist())], dtype=bool)
        res.max_abs = float(bad.any())
        res.ok = not bad.any()
        if not res.ok:
            i = int(np.argmax(bad))
            res.problem = (f"string {i} is {got.reshape(-1)[i]!r}, TensorFlow's was "
                           f"{want.reshape(-1)[i]!r}")
        return
    g = _as_float(got).astype(np.complex128 if got.dtype.kind == "c" else np.float64)
    w = _as_float(want).astype(g.dtype)
    same = (g == w) | (np.isnan(g) & np.isnan(w))
    d = np.where(same, 0.0, np.abs(g - w))
    d = np.where(np.isnan(d), np.inf, d)  # a NaN where TF has a number (or inf - inf)
    aw = np.abs(w)
    res.max_abs = float(d.max()) if d.size else 0.0
    big = aw > res.atol
    res.max_rel = float((d[big] / aw[big]).max()) if big.any() else 0.0
    over = d > res.atol + res.rtol * np.where(np.isfinite(aw), aw, 0.0)
    res.ok = not over.any()
    if not res.ok:
        i = int(np.argmax(over.reshape(-1)))
        res.problem = (f"|difference| up to {res.max_abs:.3g} (tolerance {res.atol:.3g} + "
                       f"{res.rtol:.3g}*|value|); at flat index {i} got "
                       f"{g.reshape(-1)[i]:.6g}, TensorFlow {w.reshape(-1)[i]:.6g}")


def _compare_stats(res: OutputCheck, got: np.ndarray, want: dict) -> None:
    stats = _stats(got)
    if stats is None:
        return
    for k in ("min", "max", "mean", "abs_mean"):
        if k not in want:
            continue
        w, g = float(want[k]), stats[k]
        if np.isnan(w) and np.isnan(g) or w == g:
            continue
        d = abs(g - w)
        res.max_abs = max(res.max_abs, d)
        if not d <= res.atol + res.rtol * abs(w):
            res.ok = False
            res.problem = (f"the {k.replace('_', ' ')} of all {got.size} values is {g:.6g}, "
                           f"TensorFlow's was {w:.6g} (the sampled values agree)")
            return
