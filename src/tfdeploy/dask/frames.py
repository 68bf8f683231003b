"""predict_partitions: a model over the partitions of a dask DataFrame."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import tfdeploy as td

from .blocks import Output, by_input, check_feed, evaluate, outputs_of, spec_dtype
from .models import ModelRef, Ship, ship_model


@dataclass(frozen=True)
class _FrameFeed:
    columns: tuple[str, ...]
    dtype: np.dtype  # the columns are stacked as this dtype (numpy's promotion of theirs)
    shape: tuple[int, ...]  # per row, as the model takes it


def predict_partitions(model: str | os.PathLike | bytes | td.Model, ddf: Any,
                       columns: Any = None, output_columns: Sequence[str] | None = None, *,
                       ship: Ship = "auto") -> Any:
    """The model's outputs for the rows of a dask DataFrame, as a dask DataFrame with the same
    index and divisions and one column per output value.

    ``columns``: the feature columns, in the order the model takes them: a list (one input;
    default: every column), or for several inputs a dict by input name or a list of lists.
    An input of shape ``[None]`` takes one column, ``[None, k]`` k columns, ``[None, h, w]``
    h*w columns (reshaped row by row). Outputs are flattened per row: ``[N]`` gives the column
    ``<output>``, ``[N, k]`` gives ``<output>_0`` ... ``<output>_<k-1>``, unless
    ``output_columns`` names them all. ``model`` and ``ship`` as in :func:`predict`.
    """
    try:
        import dask.dataframe as dd
        import pandas as pd
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"predict_partitions needs dask.dataframe ({e}): pip install "
                          "'tfdeploy[dask]'") from e
    if not isinstance(ddf, dd.DataFrame):
        raise TypeError(f"ddf must be a dask DataFrame, got {type(ddf).__name__} (a pandas "
                        "one: dask.dataframe.from_pandas(df, npartitions=...))")
    ref, local, data = ship_model(model, ship)
    feeds = _frame_feeds(local.inputs, ddf._meta, columns)
    outs = tuple(outputs_of(local, [(f.shape, f.dtype) for f in feeds]))
    names = _output_names(outs, output_columns)
    meta = pd.DataFrame({n: np.empty(0, dtype=o.dtype) for o, ns in zip(outs, names)
                         for n in ns}, index=ddf._meta.index)
    used = list(dict.fromkeys(c for f in feeds for c in f.columns))
    return ddf[used].map_partitions(_predict_frame, ref, data, outs, tuple(feeds), names,
                                    meta=meta, token="tfdeploy-predict")


def _predict_frame(part: Any, ref: ModelRef, data: bytes | None, outs: tuple[Output, ...],
                   feeds: tuple[_FrameFeed, ...], names: tuple[tuple[str, ...], ...]) -> Any:
    import pandas as pd

    n = len(part)
    arrays = [part[list(f.columns)].to_numpy(dtype=f.dtype).reshape((n, *f.shape))
              for f in feeds]
    results = [r.reshape(n, -1) for r in evaluate(ref, data, outs, arrays)]
    frames = [pd.DataFrame(r, index=part.index, columns=list(ns))
              for r, ns in zip(results, names)]
    return frames[0] if len(frames) == 1 else pd.concat(frames, axis=1)


def _frame_feeds(specs: list, meta: Any, columns: Any) -> list[_FrameFeed]:
    """Which columns feed which input, validated against the frame and the signature."""
    names = [s.name for s in specs]
    if columns is None:
        if len(specs) != 1:
            raise td.FeedError(f"the model takes {len(specs)} inputs {names}: pass columns="
                               "{input name: [column, ...]} for each")
        per_input = [list(meta.columns)]
    elif isinstance(columns, Mapping):
        per_input = by_input(specs, columns, "no columns for input(s)")
    elif isinstance(columns, str) or all(isinstance(c, str) for c in columns):
        per_input = [columns]
    else:
        per_input = list(columns)
    if len(per_input) != len(specs):
        raise td.FeedError(f"the model takes {len(specs)} input(s) {names}, columns name "
                           f"{len(per_input)}")
    return [_frame_feed(s, meta, cols) for s, cols in zip(specs, per_input)]


def _frame_feed(spec: Any, meta: Any, cols: Any) -> _FrameFeed:
    import pandas as pd

    single = isinstance(cols, str)
    cols = (cols,) if single else tuple(cols)
    missing = [c for c in cols if c not in meta.columns]
    if missing or not cols:
        raise td.FeedError(f"input {spec.name!r}: no column(s) {missing or '(none given)'} in "
                           f"the frame (columns: {list(meta.columns)})")
    want = spec_dtype(spec)
    text = want is not None and want.kind == "O"
    for c in cols:
        dt = meta[c].dtype
        ok = (pd.api.types.is_string_dtype(dt) if text else
              isinstance(dt, np.dtype) and dt.kind in "biufc")
        if not ok:
            raise td.FeedError(
                f"column {c!r} is {dt}, input {spec.name!r} takes "
                f"{'strings' if text else 'numbers (bool, int, float, complex)'}: convert it "
                f"first, e.g. ddf[{c!r}].astype({'str' if text else 'float32'!r})")
    dtype = np.dtype(object) if text else np.result_type(*(meta[c].dtype for c in cols))
    shape = _row_shape(spec, len(cols), single)
    check_feed(spec, dtype, (0, *shape))
    return _FrameFeed(cols, dtype, shape)


def _row_shape(spec: Any, n: int, single: bool) -> tuple[int, ...]:
    """How ``n`` columns make one row of the input."""
    if spec.shape is None:
        return () if single else (n,)
    trailing = spec.shape[1:]
    if not trailing:
        if n != 1:
            raise td.FeedError(f"input {spec.name!r} takes one value per row (shape "
                               f"{tuple(spec.shape)}), got {n} columns")
        return ()
    if len(trailing) == 1 and trailing[0] is None:
        return (n,)
    if None in trailing or int(np.prod(trailing)) != n:
        raise td.FeedError(f"input {spec.name!r} takes rows of shape {tuple(trailing)}, got "
                           f"{n} column(s)")
    return tuple(trailing)


def _output_names(outs: tuple[Output, ...], given: Sequence[str] | None
                  ) -> tuple[tuple[str, ...], ...]:
    sizes = [int(np.prod(o.shape)) for o in outs]
    if given is None:
        given = [n for o, k in zip(outs, sizes)
                 for n in ([o.name] if not o.shape else [f"{o.name}_{i}" for i in range(k)])]
    given = [given] if isinstance(given, str) else list(given)
    if len(given) != sum(sizes):
        counts = ", ".join(f"{o.name}: {k}" for o, k in zip(outs, sizes))
        raise ValueError(f"output_columns has {len(given)} name(s), the outputs give "
                         f"{sum(sizes)} column(s) ({counts})")
    dup = sorted({n for n in given if given.count(n) > 1})
    if dup:
        raise ValueError(f"output column names {dup} are used twice: pass output_columns")
    names, start = [], 0
    for k in sizes:
        names.append(tuple(given[start:start + k]))
        start += k
    return tuple(names)
