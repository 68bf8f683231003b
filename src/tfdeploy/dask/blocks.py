"""What one block of rows needs: inputs checked against the signature, output dtypes and
shapes known before any worker runs, and the evaluation itself, on the worker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import tfdeploy as td

from .. import dtypes
from .models import ModelRef, cached_model, count_block


@dataclass(frozen=True)
class Output:
    """An output as every block produces it."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # per row: the output's dims after the batch axis


def spec_dtype(spec) -> np.dtype | None:
    """The numpy dtype a signature entry names, if it names one numpy has."""
    try:
        return dtypes.to_numpy(spec.dtype) if spec.dtype else None
    except td.TFDeployError:
        return None


def check_feed(spec, dtype: np.dtype, shape: tuple) -> None:
    """Fail early, naming the input, where the model would refuse every block."""
    want = spec_dtype(spec)
    if want is not None and dtype != want:
        ok = (want.kind == "O" and dtype.kind in "SUO") or (
            want.kind != "O" and (np.can_cast(dtype, want, "same_kind")
                                  or (dtype.kind == "b" and want.kind in "biuf")))
        if not ok:
            raise td.FeedError(f"input {spec.name!r} expects {spec.dtype}, got {dtype} "
                               "that cannot be cast to it without losing its kind")
    if len(shape) == 0:
        raise td.FeedError(f"input {spec.name!r}: a scalar has no batch axis to split")
    if spec.shape is None:
        return
    fmt = "(" + ", ".join("None" if d is None else str(d) for d in spec.shape) + ")"
    if len(shape) != len(spec.shape):
        raise td.FeedError(f"input {spec.name!r} expects rank {len(spec.shape)} (shape {fmt}), "
                           f"got shape {shape}")
    if spec.shape and spec.shape[0] is not None:
        raise td.FeedError(
            f"input {spec.name!r} has a fixed batch size ({fmt}): blocks of rows need a model "
            "whose batch dimension is unknown (None); convert it with input_signature="
            "[tf.TensorSpec([None, ...])]")
    for got, w in zip(shape[1:], spec.shape[1:]):
        if w is not None and got != w:
            raise td.FeedError(f"input {spec.name!r} expects shape {fmt}, got {shape}")


def outputs_of(model: td.Model, feeds: list[tuple[tuple, np.dtype]]) -> list[Output]:
    """Each output's dtype and per-row shape, for inputs of the given per-row shapes and
    dtypes: from the model evaluated here on zero rows (or one row) of zeros, which also gives
    the true dtypes of hand-built graphs; from the signature where that fails."""
    specs = model.outputs
    error: Exception | None = None
    for rows in (0, 1):
        sample = [np.zeros((rows, *shape), dtype=dt) if dt.kind != "O"
                  else np.full((rows, *shape), b"", dtype=object) for shape, dt in feeds]
        try:
            out = model(*sample)
        except td.FeedError:
            raise  # the inputs themselves are wrong: say so now, not on the workers
        except Exception as e:  # some graphs refuse empty batches: try one row
            error = e
            continue
        outs = [out] if len(specs) == 1 else list(out)
        result = []
        for s, o in zip(specs, outs):
            o = np.asarray(o)
            if o.ndim == 0 or o.shape[0] != rows:
                raise td.TFDeployError(
                    f"output {s.name!r} has shape {o.shape} for {rows} input row(s): "
                    "predicting by blocks needs one output row per input row")
            result.append(Output(s.name, o.dtype, o.shape[1:]))
        return result
    result = []
    for s in specs:
        dt = spec_dtype(s)
        if dt is None or s.shape is None or not s.shape or None in s.shape[1:]:
            raise td.TFDeployError(
                f"cannot tell the shape of output {s.name!r}: the signature says {s} and the "
                f"model failed on a zero-row and a one-row sample of zeros: {error}")
        result.append(Output(s.name, dt, tuple(s.shape[1:])))
    return result


def evaluate(ref: ModelRef, data: bytes | None, outs: tuple[Output, ...],
             feeds: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Run the model on one block of rows, on a worker; check what the graph promised."""
    rows = len(feeds[0])
    if rows == 0:  # some graphs refuse empty batches, and there is nothing to compute
        return tuple(np.empty((0, *o.shape), o.dtype) for o in outs)
    result = cached_model(ref, data)(*feeds)
    result = (result,) if len(outs) == 1 else tuple(result)
    checked = []
    for o, r in zip(outs, result):
        r = np.asarray(r)
        if r.shape != (rows, *o.shape) or r.dtype != o.dtype:
            raise td.TFDeployError(
                f"output {o.name!r} is {r.dtype} of shape {r.shape} for a block of {rows} "
                f"rows; {o.dtype} of shape {(rows, *o.shape)} was expected (from the model "
                "evaluated on a sample, or its signature): outputs whose shape depends on the "
                "values or on the batch cannot be predicted by blocks")
        checked.append(r)
    count_block()
    return tuple(checked)


def by_input(specs: list, given: Mapping, missing_msg: str) -> list:
    """The values of ``given`` (keyed by input name, ``:0`` optional) in signature order."""
    names = [s.name for s in specs]
    by: dict[str, Any] = {}
    for k, v in given.items():
        s = next((s for s in specs if k in (s.name, s.name.split(":")[0])), None)
        if s is None:
            raise td.FeedError(f"the model has no input named {k!r} (inputs: {names})")
        by[s.name] = v
    missing = [n for n in names if n not in by]
    if missing:
        raise td.FeedError(f"{missing_msg} {missing}; the model takes {names}")
    return [by[n] for n in names]
