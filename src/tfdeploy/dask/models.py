"""Model shipping: the reference tasks carry, and the per-process cache that resolves it."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import dask

import tfdeploy as td
from tfdeploy import fileformat

try:  # optional: the local schedulers need no distributed
    from distributed import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - depends on the environment
    _WorkerPlugin = object  # type: ignore[assignment,misc]

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


def ship_model(model: Any, ship: Ship) -> tuple[ModelRef, td.Model, Any]:
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
        local = cached_model(ref, None)  # this process's cache: threaded schedulers reuse it
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
        local = local or cached_model(ref, data)
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


def cached_model(ref: ModelRef, data: bytes | None) -> td.Model:
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
    if _file_matches(ref):  # (memory-mapped when large, as td.load does; else read)
        how = "mmap" if ref.size >= fileformat.MMAP_MIN_BYTES else "file"
        return td.load(ref.path), f"{how}:{ref.path}"
    if data is not None:
        return td.load(data), "bytes"
    import socket

    raise td.TFDeployError(
        f"the model file {ref.path!r} is missing or different on this worker "
        f"({socket.gethostname()}, pid {os.getpid()}): put the same file at the same path on "
        "every worker, or call predict with ship='bytes' (or 'auto') to send it")


def count_block() -> None:
    """One more block evaluated in this process (for :func:`cache_info`)."""
    with _lock:
        _stats["blocks"] += 1


def cache_info() -> dict[str, Any]:
    """This process's model cache: how many loads and blocks it served, and where each cached
    model came from: its file on this worker, memory-mapped (``mmap:<path>``, from
    ``fileformat.MMAP_MIN_BYTES``) or read (``file:<path>``), or the shipped ``bytes``. Ask
    workers with
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


class Setup(_WorkerPlugin):
    """A distributed worker plugin calling ``td.setup(**options)`` on every worker, including
    those that join or restart later:
    ``client.register_plugin(tfdeploy.dask.Setup(deterministic=True))`` makes every worker
    take the same default forms where tfdeploy would measure which is faster (so that the
    same rows give the same bits on any worker of one kind of machine); ``threads=``,
    ``recycle_mb=`` and the resource limits likewise. Applies from the workers' next plan
    compilations (``td.setup``)."""

    def __init__(self, **options: Any):
        self.options = options
        self.name = "tfdeploy-setup-" + ",".join(f"{k}={options[k]!r}" for k in sorted(options))

    def setup(self, worker: Any = None) -> None:
        import tfdeploy as _td

        _td.setup(**self.options)

