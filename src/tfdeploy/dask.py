"""Batch inference on Dask: a tfdeploy model mapped over the row blocks of dask arrays and the
partitions of dask DataFrames, on any Dask scheduler (threads, processes, ``distributed``).

Workers need numpy, dask and tfdeploy, never TensorFlow. The model travels as a small picklable
:class:`ModelRef` (its file's path and content hash) in every task, plus, where the workers
cannot read the file, the file's bytes as **one** key of the graph that every task depends on:
each worker fetches it once, not once per chunk, and Dask can recompute it if a worker dies.
Each worker process loads a model once and keeps it in a small LRU cache keyed by the content
hash, memory-mapping the file when it can reach it.

    import tfdeploy.dask as tdd
    y = tdd.predict("model.tfd", x)                    # x: a dask array chunked by rows
    out = tdd.predict_partitions("model.tfd", ddf, columns=["a", "b", "c"])
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

try:
    import dask
    import dask.array as da
    from dask.base import tokenize
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"tfdeploy.dask needs Dask ({e}): install the extra with "
        "pip install 'tfdeploy[dask]' (dask[array,dataframe] and distributed)") from e

import tfdeploy as td

from . import dtypes

try:  # optional: the local schedulers need no distributed
    from distributed import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - depends on the environment
    _WorkerPlugin = object  # type: ignore[assignment,misc]

__all__ = ["ModelRef", "RegisterOps", "predict", "predict_partitions", "cache_info",
           "clear_cache", "CACHE_SIZE"]

Ship = Literal["auto", "path", "bytes"]

#: models each worker process keeps loaded (least recently used first out)
CACHE_SIZE = 4


# ---------------------------------------------------------------------------- model shipping

@dataclass(frozen=True)
class ModelRef:
    """What a task carries to find its model: the identity of a model file, never the model.

    ``digest`` (SHA-256 of the file's bytes) keys the worker caches; ``path`` and
    ``mtime_ns`` let a worker that sees the same file memory-map it instead of receiving it.
    """

    digest: str
    size: int
    path: str | None = None
    mtime_ns: int | None = None


# Client side: content hashes of files by (path, size, mtime), so repeated predict calls on a
# large model do not re-read it. Worker side: the same, for files checked against a ModelRef.
_file_digests: dict[tuple[str, int, int], str] = {}


def _file_digest(path: str, st: os.stat_result) -> str:
    key = (path, st.st_size, st.st_mtime_ns)
    digest = _file_digests.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        if len(_file_digests) > 64:
            _file_digests.clear()
        digest = _file_digests[key] = h.hexdigest()
    return digest


def _file_matches(ref: ModelRef) -> bool:
    """Whether this process sees ``ref``'s file at ``ref.path``, unchanged."""
    if ref.path is None:
        return False
    try:
        st = os.stat(ref.path)
    except OSError:
        return False
    if st.st_size != ref.size:
        return False
    if st.st_mtime_ns == ref.mtime_ns:
        return True  # the same file, on a shared file system: no need to read it
    return _file_digest(ref.path, st) == ref.digest  # a copy (node-local disk, container)


def _ship(model: Any, ship: Ship) -> tuple[ModelRef, td.Model, Any]:
    """The reference every task carries, the model loaded here (for the signature), and the
    graph key holding the file's bytes (a Delayed), or None where workers read the file."""
    if ship not in ("auto", "path", "bytes"):
        raise ValueError(f"ship must be 'auto', 'path' or 'bytes', got {ship!r}")
    if isinstance(model, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(model))
        try:
            st = os.stat(path)
        except OSError as e:
            raise td.TFDeployError(f"cannot read the model file {path!r}: {e}") from None
        ref = ModelRef(_file_digest(path, st), st.st_size, path, st.st_mtime_ns)
        local = _model(ref, None)  # this process's cache: threaded schedulers reuse it
        if ship == "path" or (ship == "auto" and _workers_see(ref)):
            return ref, local, None
        with open(path, "rb") as f:
            data = f.read()
    elif isinstance(model, (td.Model, bytes, bytearray, memoryview)):
        if ship == "path":
            raise ValueError("ship='path' needs a model given as a file path")
        if isinstance(model, td.Model):
            buf = io.BytesIO()
            model.save(buf)
            data, local = buf.getvalue(), model
        else:
            data = bytes(model)
            local = None
        ref = ModelRef(hashlib.sha256(data).hexdigest(), len(data))
        local = local or _model(ref, data)
    else:
        raise TypeError(f"model must be a path, model bytes or a tfdeploy.Model, got "
                        f"{type(model).__name__}")
    # One key for the whole graph: tasks reference it, so each worker fetches it once; being
    # part of the graph (not scattered), it is recomputed if the worker holding it dies.
    return ref, local, dask.delayed(data, name=f"tfdeploy-model-{ref.digest[:32]}")


def _workers_see(ref: ModelRef) -> bool:
    """Whether every worker of the active distributed client sees the file (no client: the
    local schedulers share this machine's file system)."""
    try:
        from distributed import default_client
    except ImportError:
        return True
    try:
        client = default_client()
    except ValueError:
        return True
    if getattr(client, "asynchronous", False):
        return False  # cannot ask without blocking the caller's event loop: send the bytes
    try:
        seen = client.run(_file_matches, ref)
    except Exception as e:
        raise td.TFDeployError(f"could not ask the workers whether they see {ref.path!r} "
                               f"(is tfdeploy installed on them?): {e}") from e
    # no workers yet (a cluster scaling up): whoever joins may not share the file system
    return bool(seen) and all(seen.values())


# ---------------------------------------------------------------------------- worker cache

_cache: OrderedDict[str, tuple[td.Model, str]] = OrderedDict()
_lock = threading.Lock()
_stats = {"loads": 0, "blocks": 0}


def _model(ref: ModelRef, data: bytes | None) -> td.Model:
    """The model of ``ref`` in this process: loaded on first use, then kept."""
    with _lock:  # one load per process even when threads race for it
        entry = _cache.get(ref.digest)
        if entry is None:
            entry = _cache[ref.digest] = _load(ref, data)
            _stats["loads"] += 1
            while len(_cache) > max(1, CACHE_SIZE):
                _cache.popitem(last=False)
        else:
            _cache.move_to_end(ref.digest)
    return entry[0]


def _load(ref: ModelRef, data: bytes | None) -> tuple[td.Model, str]:
    if _file_matches(ref):
        return td.load(ref.path), f"mmap:{ref.path}"
    if data is not None:
        return td.load(data), "bytes"
    import socket

    raise td.TFDeployError(
        f"the model file {ref.path!r} is missing or different on this worker "
        f"({socket.gethostname()}, pid {os.getpid()}): put the same file at the same path on "
        "every worker, or call predict with ship='bytes' (or 'auto') to send it")


def cache_info() -> dict[str, Any]:
    """This process's model cache: how many loads and blocks it served, and where each cached
    model came from (``mmap:<path>`` or ``bytes``). Ask workers with
    ``client.run(tfdeploy.dask.cache_info)``."""
    with _lock:
        return {"loads": _stats["loads"], "blocks": _stats["blocks"],
                "models": {d: src for d, (_, src) in _cache.items()}}


def clear_cache() -> None:
    """Forget the models this process loaded (the counters of :func:`cache_info` stay)."""
    with _lock:
        _cache.clear()


class RegisterOps(_WorkerPlugin):
    """A distributed worker plugin importing the modules that register a model's custom ops,
    on every worker, including those that join or restart later (a file stores op types, not
    code): ``client.register_plugin(tfdeploy.dask.RegisterOps("myproject.ops"))``."""

    def __init__(self, *modules: str):
        self.modules = modules
        self.name = "tfdeploy-ops-" + "-".join(modules)

    def setup(self, worker: Any = None) -> None:
        import importlib

        for m in self.modules:
            importlib.import_module(m)


# ---------------------------------------------------------------------------- signatures

@dataclass(frozen=True)
class _Out:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # per row: the output's dims after the batch axis


def _spec_dtype(spec) -> np.dtype | None:
    try:
        return dtypes.to_numpy(spec.dtype) if spec.dtype else None
    except td.TFDeployError:
        return None


def _check_feed(spec, dtype: np.dtype, shape: tuple) -> None:
    """Fail early, naming the input, where the model would refuse every block."""
    want = _spec_dtype(spec)
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


def _outputs_of(model: td.Model, feeds: list[tuple[tuple, np.dtype]]) -> list[_Out]:
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
            result.append(_Out(s.name, o.dtype, o.shape[1:]))
        return result
    result = []
    for s in specs:
        dt = _spec_dtype(s)
        if dt is None or s.shape is None or not s.shape or None in s.shape[1:]:
            raise td.TFDeployError(
                f"cannot tell the shape of output {s.name!r}: the signature says {s} and the "
                f"model failed on a zero-row and a one-row sample of zeros: {error}")
        result.append(_Out(s.name, dt, tuple(s.shape[1:])))
    return result


def _evaluate(ref: ModelRef, data: bytes | None, outs: tuple[_Out, ...],
              feeds: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Run the model on one block of rows, on a worker; check what the graph promised."""
    rows = len(feeds[0])
    if rows == 0:  # some graphs refuse empty batches, and there is nothing to compute
        return tuple(np.empty((0, *o.shape), o.dtype) for o in outs)
    result = _model(ref, data)(*feeds)
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
    with _lock:
        _stats["blocks"] += 1
    return tuple(checked)


# ---------------------------------------------------------------------------- dask arrays

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
    ref, local, data = _ship(model, ship)
    specs = local.inputs
    arrays = _align(specs, _arrays_of(specs, x), rechunk)
    outs = tuple(_outputs_of(local, [(a.shape[1:], a.dtype) for a in arrays]))
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
                   outs: tuple[_Out, ...], *blocks: Any) -> Any:
    """The outputs for one block of rows: all (a tuple), or output ``pick``."""
    # blockwise hands each input's single chunk along every other axis as a nested list of
    # one block (concatenate=True would copy it into a fresh array to "concatenate" it)
    feeds = []
    for b in blocks:
        while isinstance(b, list):
            (b,) = b
        feeds.append(b)
    result = _evaluate(ref, data, outs, feeds)
    return result if pick is None else result[pick]


def _pick(result: tuple, i: int) -> np.ndarray:
    return result[i]


def _arrays_of(specs: list, x: Any) -> list:
    """The dask arrays of ``x`` in signature order."""
    if isinstance(x, Mapping):
        arrays = _by_input(specs, x, "missing input(s)")
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


def _by_input(specs: list, given: Mapping, missing_msg: str) -> list:
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


def _align(specs: list, arrays: list, rechunk: bool) -> list:
    """Validate against the signature, then give every input whole rows and the same row
    chunks as the first input."""
    out = []
    for s, a in zip(specs, arrays):
        if any(np.isnan(d) for d in a.shape[1:]):
            raise ValueError(f"input {s.name!r} has unknown sizes after the batch axis "
                             f"({a.shape}): call compute_chunk_sizes() on it first")
        _check_feed(s, a.dtype, a.shape)
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


# ---------------------------------------------------------------------------- dask dataframes

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
    ref, local, data = _ship(model, ship)
    feeds = _frame_feeds(local.inputs, ddf._meta, columns)
    outs = tuple(_outputs_of(local, [(f.shape, f.dtype) for f in feeds]))
    names = _output_names(outs, output_columns)
    meta = pd.DataFrame({n: np.empty(0, dtype=o.dtype) for o, ns in zip(outs, names)
                         for n in ns}, index=ddf._meta.index)
    used = list(dict.fromkeys(c for f in feeds for c in f.columns))
    return ddf[used].map_partitions(_predict_frame, ref, data, outs, tuple(feeds), names,
                                    meta=meta, token="tfdeploy-predict")


def _predict_frame(part: Any, ref: ModelRef, data: bytes | None, outs: tuple[_Out, ...],
                   feeds: tuple[_FrameFeed, ...], names: tuple[tuple[str, ...], ...]) -> Any:
    import pandas as pd

    n = len(part)
    arrays = [part[list(f.columns)].to_numpy(dtype=f.dtype).reshape((n, *f.shape))
              for f in feeds]
    results = [r.reshape(n, -1) for r in _evaluate(ref, data, outs, arrays)]
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
        per_input = _by_input(specs, columns, "no columns for input(s)")
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
    want = _spec_dtype(spec)
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
    _check_feed(spec, dtype, (0, *shape))
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


def _output_names(outs: tuple[_Out, ...], given: Sequence[str] | None
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
