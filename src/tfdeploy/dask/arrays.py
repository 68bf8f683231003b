"""predict: a model over the row blocks of dask arrays."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

import tfdeploy as td

from .blocks import Output, by_input, check_feed, evaluate, outputs_of
from .models import ModelRef, Ship, ship_model


def predict(model: str | os.PathLike | bytes | td.Model, x: Any, *, as_dict: bool = False,
            rechunk: bool = True, ship: Ship = "auto") -> Any:
    """The model's outputs for the rows of ``x``, as lazy dask arrays chunked like ``x``.

    ``model``: a file path (workers memory-map it when they see it), model bytes or a
    ``td.Model`` (sent once, as bytes). ``x``: a dask array with the batch on axis 0, or one
    per input (a list in signature order, or a dict by input name). Axes after the first are
    gathered into one chunk (``rechunk=False``: raise instead), and several inputs take the
    first one's row chunks. Returns an array for one output, else a tuple (a dict by output
    name with ``as_dict=True``). ``ship``: ``"path"`` sends only the path, ``"bytes"`` the
    file's bytes too, ``"auto"`` the bytes unless every worker of the active distributed client
    sees the file (or no client is active).
    """
    ref, local, data = ship_model(model, ship)
    specs = local.inputs
    arrays = _align(specs, _arrays_of(specs, x), rechunk)
    outs = tuple(outputs_of(local, [(a.shape[1:], a.dtype) for a in arrays]))
    token = tokenize(ref, data is None, outs, *arrays)
    args: list[Any] = [ref, None, data, None, outs, None]
    for j, a in enumerate(arrays):
        args += [a, ("b", *(f"in{j}.{i}" for i in range(1, a.ndim)))]
    if len(outs) == 1:  # one task per block, nothing to pick (each task costs the scheduler)
        o = outs[0]
        axes = {f"out.{i}": d for i, d in enumerate(o.shape)}
        results = [da.blockwise(_predict_block, ("b", *axes), 0, None, *args, new_axes=axes,
                                name=f"tfdeploy-predict-{token}", concatenate=False,
                                meta=np.empty((0,) * (1 + len(o.shape)), dtype=o.dtype),
                                align_arrays=False)]
    else:
        # One task per row block evaluates the model once for every output; the outputs
        # are picked from its result, so asking for two outputs does not run it twice.
        blocks = da.blockwise(_predict_block, ("b",), None, None, *args, concatenate=False,
                              name=f"tfdeploy-predict-{token}", align_arrays=False,
                              meta=np.empty((0,), dtype=object))
        results = []
        for i, o in enumerate(outs):
            results.append(blocks.map_blocks(
                _pick, i, name=f"tfdeploy-output-{i}-{token}",
                chunks=(blocks.chunks[0], *((d,) for d in o.shape)),
                new_axis=list(range(1, 1 + len(o.shape))) or None,
                meta=np.empty((0,) * (1 + len(o.shape)), dtype=o.dtype)))
    if as_dict:
        return {o.name: r for o, r in zip(outs, results)}
    return results[0] if len(results) == 1 else tuple(results)


def _predict_block(pick: int | None, ref: ModelRef, data: bytes | None,
                   outs: tuple[Output, ...], *blocks: Any) -> Any:
    """The outputs for one block of rows: all (a tuple), or output ``pick``."""
    # blockwise hands each input's single chunk along every other axis as a nested list of
    # one block (concatenate=True would copy it into a fresh array to "concatenate" it)
    feeds = []
    for b in blocks:
        while isinstance(b, list):
            (b,) = b
        feeds.append(b)
    result = evaluate(ref, data, outs, feeds)
    return result if pick is None else result[pick]


def _pick(result: tuple, i: int) -> np.ndarray:
    return result[i]


def _arrays_of(specs: list, x: Any) -> list:
    """The dask arrays of ``x`` in signature order."""
    if isinstance(x, Mapping):
        arrays = by_input(specs, x, "missing input(s)")
    elif isinstance(x, (list, tuple)):
        arrays = list(x)
        if len(arrays) > len(specs):
            raise td.FeedError(f"the model takes {len(specs)} input(s) "
                               f"({[s.name for s in specs]}), got {len(arrays)}")
    else:
        arrays = [x]
    if not arrays:
        raise td.FeedError(f"no input arrays given; the model takes {[s.name for s in specs]}")
    for s, a in zip(specs, arrays):
        if not isinstance(a, da.Array):
            raise TypeError(f"input {s.name!r} must be a dask array chunked along its first "
                            f"axis (e.g. dask.array.from_array(x, chunks=(10000, -1))), got "
                            f"{type(a).__name__}")
    return arrays


def _align(specs: list, arrays: list, rechunk: bool) -> list:
    """Validate against the signature, then give every input whole rows and the same row
    chunks as the first input."""
    out = []
    for s, a in zip(specs, arrays):
        if any(np.isnan(d) for d in a.shape[1:]):
            raise ValueError(f"input {s.name!r} has unknown sizes after the batch axis "
                             f"({a.shape}): call compute_chunk_sizes() on it first")
        check_feed(s, a.dtype, a.shape)
        split = {i: -1 for i in range(1, a.ndim) if a.numblocks[i] > 1}
        if split:
            if not rechunk:
                raise ValueError(
                    f"input {s.name!r} is split along axes {sorted(split)} (chunks "
                    f"{a.chunks}); the model needs whole rows: rechunk({split}) it or pass "
                    "rechunk=True")
            a = a.rechunk(split)
        out.append(a)
    first = out[0] if out else None
    for j, (s, a) in enumerate(zip(specs, out)):
        if j == 0 or a.chunks[0] == first.chunks[0]:
            continue
        if np.isnan(a.shape[0]) or np.isnan(first.shape[0]) or a.shape[0] != first.shape[0]:
            raise td.FeedError(
                f"input {s.name!r} has {a.shape[0]} rows in chunks {a.chunks[0]}, input "
                f"{specs[0].name!r} {first.shape[0]} in {first.chunks[0]}: the inputs need the "
                "same rows (unknown chunk sizes: call compute_chunk_sizes() first)")
        if not rechunk:
            raise ValueError(f"input {s.name!r} is chunked {a.chunks[0]} along its rows, "
                             f"input {specs[0].name!r} {first.chunks[0]}: rechunk them alike "
                             "or pass rechunk=True")
        out[j] = a.rechunk({0: first.chunks[0]})
    return out
