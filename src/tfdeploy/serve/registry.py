"""Model versions on disk: which to serve, loading them safely, switching atomically.

Layout, as TF Serving's: ``base_path/<version>/<one model file>``; a version folder is a
folder named by an integer. The version policy (latest N, all, specific) picks the versions to
serve among those that load.

Safety against files changed under a running server:

* A served version is never the user's file memory-mapped in place: each load copies the file
  into a server-owned, read-only snapshot named by its SHA-256 (``snapshot_dir``), which the
  model then memory-maps. Worker processes that load the same content share one snapshot (and
  so one copy in the page cache). A file copied over a served one therefore cannot change
  answers or fault pages under a running evaluation.
* Files are watched by (device, inode, size, mtime, ctime). A new or changed file is loaded
  once it has stayed unchanged for one poll interval (a copy in progress is not picked up
  half-written), and only if it did not change while it was snapshotted. The same content
  under a new stat is not reloaded.
* A version is switched to only after it loaded (file validated, every op registered,
  signatures resolved). A file that fails keeps the previous load of that version (or the
  previous versions) serving; it is retried when it changes again.
* In-flight requests hold their own reference to the servable they started with.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from dataclasses import dataclass

import tfdeploy as td

from .config import ModelConfig, VersionPolicy
from .metrics import Metrics
from .servable import Servable
from .status import invalid_argument, not_found

log = logging.getLogger("tfdeploy.serve")

__all__ = ["Registry", "VersionStatus", "snapshot_file"]


@dataclass
class VersionStatus:
    """A ``model_version_status`` entry."""

    version: int
    state: str = "LOADING"  # START, LOADING, AVAILABLE, UNLOADING, END
    error_code: str = "OK"
    error_message: str = ""

    def json(self) -> dict:
        return {"version": str(self.version), "state": self.state,
                "status": {"error_code": self.error_code, "error_message": self.error_message}}


class _Changing(Exception):
    """The source file changed while it was being copied."""


def _stat_key(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def snapshot_file(src: str, snapshot_dir: str) -> tuple[str, str, str]:
    """Copy ``src`` into ``snapshot_dir``; returns (private copy, shared snapshot, sha256).

    The shared snapshot ``<sha256>.tfd`` is a hard link to the first complete copy of that
    content (read-only); later copies of the same content use it. Raises ``_Changing`` when
    the file changed during the copy."""
    st0 = os.stat(src)
    fd, tmp = tempfile.mkstemp(dir=snapshot_dir, prefix=".load-", suffix=".tfd")
    try:
        h = hashlib.sha256()
        with open(src, "rb") as f, os.fdopen(fd, "wb") as out:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
        if _stat_key(os.stat(src)) != _stat_key(st0):
            raise _Changing(src)
        os.chmod(tmp, 0o444)
        digest = h.hexdigest()
        final = os.path.join(snapshot_dir, digest + ".tfd")
        try:
            os.link(tmp, final)
        except FileExistsError:
            pass
        except OSError:  # no hard links on this file system: serve the private copy
            final = tmp
        return tmp, final, digest
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def _load_snapshot(tmp: str, final: str):
    try:
        return td.load(final), final
    except td.FileFormatError:
        if os.path.exists(final):
            raise
        return td.load(tmp), tmp  # another process removed the shared one meanwhile


def _model_file(folder: str) -> str:
    """The one model file of a version folder ('' while it holds none)."""
    names = sorted(n for n in os.listdir(folder) if not n.startswith(".") and ".tmp" not in n
                   and os.path.isfile(os.path.join(folder, n)))
    if len(names) > 1:
        tfd = [n for n in names if n.endswith(".tfd")]
        if len(tfd) != 1:
            raise ValueError(f"version folder {folder!r} holds several files {names}; it must "
                             "hold exactly one tfdeploy model file")
        names = tfd
    return os.path.join(folder, names[0]) if names else ""


class ModelEntry:
    """One configured model: its versions' status and the servables being served."""

    def __init__(self, config: ModelConfig):
        self.config = config
        self.serving: dict[int, Servable] = {}  # replaced whole, never mutated: lock-free reads
        self.status: dict[int, VersionStatus] = {}
        self.loaded_key: dict[int, tuple] = {}
        self.failed_key: dict[int, tuple] = {}
        self.seen_key: dict[int, tuple] = {}
        self.last_error: dict[int, str] = {}
        self.scan_error = ""
        self.polls = 0


class Registry:
    """Every served model; ``poll()`` (blocking, one caller at a time) syncs with the disk."""

    def __init__(self, models: list[ModelConfig], snapshot_dir: str,
                 metrics: Metrics | None = None):
        self.snapshot_dir = snapshot_dir
        self.metrics = metrics or Metrics()
        self.entries: dict[str, ModelEntry] = {m.name: ModelEntry(m) for m in models}
        self._lock = threading.Lock()  # one poll at a time

    # ------------------------------------------------------------------ lookups
    def resolve(self, name: str, version: int | None = None,
                label: str | None = None) -> Servable:
        """The servable a request names, or TF Serving's NOT_FOUND / INVALID_ARGUMENT."""
        entry = self.entries.get(name)
        if label is not None:
            v = entry.config.labels.get(label) if entry else None
            if v is None:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            version = v
        serving = entry.serving if entry else {}
        if version is None:
            if not serving:
                raise not_found(f"Servable not found for request: Latest({name})")
            return serving[max(serving)]
        s = serving.get(version)
        if s is None:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return s

    def version_status(self, name: str, version: int | None = None,
                       label: str | None = None) -> list[VersionStatus]:
        entry = self.entries.get(name)
        if label is not None:
            version = entry.config.labels.get(label) if entry else None
            if version is None:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
        if entry is None or not entry.status:
            raise not_found(f"Could not find any versions of model {name}")
        if version is not None:
            st = entry.status.get(version)
            if st is None:
                raise not_found(f"Could not find version {version} of model {name}")
            return [st]
        return [entry.status[v] for v in sorted(entry.status, reverse=True)]

    def servables(self) -> list[Servable]:
        return [s for e in self.entries.values() for s in e.serving.values()]

    # ------------------------------------------------------------------ changes
    def add_model(self, name: str, model, version: int = 1) -> None:
        """Serve an in-memory model (embedding): one fixed version, never polled."""
        entry = ModelEntry(ModelConfig(name, "", policy=VersionPolicy("all")))
        entry.serving = {version: Servable(name, version, model, "<memory>", "")}
        entry.status[version] = VersionStatus(version, "AVAILABLE")
        self.entries[name] = entry
        self.metrics.versions.set(name, str(version), value=1)

    def set_models(self, models: list[ModelConfig]) -> None:
        """Apply a new model config: new models are added, removed ones unloaded, changed
        policies and labels take effect at the next poll."""
        with self._lock:
            entries = {}
            for m in models:
                e = self.entries.get(m.name)
                if e is not None and e.config.base_path and e.config.base_path == m.base_path:
                    e.config = m
                else:
                    e = ModelEntry(m)
                entries[m.name] = e
            for name, e in self.entries.items():
                if entries.get(name) is not e:
                    self._publish(e, {})
            self.entries = entries

    def poll(self) -> None:
        """Load new and changed versions, then switch to them. A model's first poll loads what
        it finds; later polls load a new or changed file once it stayed unchanged over one
        poll interval."""
        with self._lock:
            for entry in list(self.entries.values()):
                if entry.config.base_path:
                    try:
                        self._poll_entry(entry)
                    except Exception:  # one broken model must not stop the others' polling
                        log.exception("polling model %r failed", entry.config.name)

    def close(self) -> None:
        with self._lock:
            for e in self.entries.values():
                self._publish(e, {})

    # ------------------------------------------------------------------ internals
    def _scan(self, entry: ModelEntry) -> dict[int, str] | None:
        """Version -> model file; None when the base path cannot be read (then nothing
        changes: a passing file system error must not unload what is served)."""
        base = entry.config.base_path
        found: dict[int, str] = {}
        if os.path.isfile(base):  # one file served as version 1 (`tfdeploy serve model.tfd`)
            return {1: base}
        try:
            names = os.listdir(base)
        except OSError as e:
            msg = f"cannot list the base path of model {entry.config.name!r}: {e}"
            if msg != entry.scan_error:
                log.warning(msg)
            entry.scan_error = msg
            return None
        entry.scan_error = ""
        for n in names:
            folder = os.path.join(base, n)
            if not n.isdigit() or not os.path.isdir(folder) or int(n) in found:
                continue
            try:
                path = _model_file(folder)
            except (OSError, ValueError) as e:
                self._fail(entry, int(n), None, str(e))
                continue
            if path:
                found[int(n)] = path
        return found

    def _poll_entry(self, entry: ModelEntry) -> None:
        initial = entry.polls == 0
        entry.polls += 1
        found = self._scan(entry)
        if found is None:
            return
        keys = {}
        for v, path in found.items():
            try:
                keys[v] = _stat_key(os.stat(path))
            except OSError:  # removed between the listing and now
                continue
        policy = entry.config.policy
        order = sorted(keys, reverse=True)
        if policy.kind == "specific":
            order = [v for v in order if v in policy.versions]
        want = policy.num_versions if policy.kind == "latest" else len(order)
        new: dict[int, Servable] = {}
        for v in order:
            if len(new) >= want:
                break
            s = self._version(entry, v, found[v], keys[v], initial)
            if s is not None:
                new[v] = s
        if new != entry.serving:
            self._publish(entry, new)

    def _version(self, entry: ModelEntry, v: int, path: str, key: tuple,
                 initial: bool) -> Servable | None:
        """The servable to serve for version ``v`` now: the current one, a fresh load of a
        changed file, or None."""
        cur = entry.serving.get(v)
        if cur is not None and entry.loaded_key.get(v) == key:
            return cur
        if entry.failed_key.get(v) == key:
            return cur
        if not initial and entry.seen_key.get(v) != key:
            entry.seen_key[v] = key  # new or changed: load once it is still so at the next poll
            return cur
        loaded = self._load(entry, v, path, key, cur)
        return loaded if loaded is not None else cur

    def _load(self, entry: ModelEntry, v: int, path: str, key: tuple,
              cur: Servable | None) -> Servable | None:
        name = entry.config.name
        if cur is None:
            entry.status[v] = VersionStatus(v, "LOADING")
        try:
            tmp, final, digest = snapshot_file(path, self.snapshot_dir)
        except _Changing:
            entry.seen_key.pop(v, None)
            return None
        except OSError as e:
            self._fail(entry, v, key, f"cannot read {path!r}: {e}")
            return None
        try:
            if cur is not None and digest == cur.digest:  # touched, same content
                entry.loaded_key[v] = key
                return cur
            model, used = _load_snapshot(tmp, final)
            servable = Servable(name, v, model, path, digest, None if used == tmp else used)
            for sig in set(servable.signatures.values()):
                sig.warm_up()  # compiles the plan before the switch, off the request path
        except Exception as e:  # a bad file must never take the server down
            msg = f"{type(e).__name__}: {e}".replace(final, path).replace(tmp, path)
            if final != tmp and final not in self._snapshots_in_use():
                _unlink(final)
            self._fail(entry, v, key, msg)
            return None
        finally:
            _unlink(tmp)
        entry.loaded_key[v] = key
        entry.failed_key.pop(v, None)
        entry.last_error.pop(v, None)
        self.metrics.loads.inc(name, "ok")
        log.info("loaded model %r version %d from %s (sha256 %s)", name, v, path, digest[:12])
        return servable

    def _fail(self, entry: ModelEntry, v: int, key: tuple | None, message: str) -> None:
        name = entry.config.name
        if key is not None:
            entry.failed_key[v] = key
        if v not in entry.serving:
            entry.status[v] = VersionStatus(v, "END", "UNKNOWN", message)
        if entry.last_error.get(v) == message:  # the same failure again: say it once
            return
        entry.last_error[v] = message
        self.metrics.loads.inc(name, "error")
        if v in entry.serving:
            log.error("model %r version %d: a changed file failed to load, the previous load "
                      "keeps serving: %s", name, v, message)
        else:
            log.error("model %r version %d failed to load: %s", name, v, message)

    def _snapshots_in_use(self) -> set:
        return {s.snapshot for e in self.entries.values() for s in e.serving.values()}

    def _publish(self, entry: ModelEntry, new: dict[int, Servable]) -> None:
        old = entry.serving
        entry.serving = new  # the switch: one reference assignment
        name = entry.config.name
        for v in new:
            entry.status[v] = VersionStatus(v, "AVAILABLE")
            self.metrics.versions.set(name, str(v), value=1)
        in_use = self._snapshots_in_use()
        for v, s in old.items():
            if new.get(v) is s:
                continue
            if v not in new:
                entry.status[v] = VersionStatus(v, "END")
                entry.loaded_key.pop(v, None)
                self.metrics.versions.remove(name, str(v))
                log.info("unloaded model %r version %d", name, v)
            if s.snapshot not in in_use:
                # mappings of it (here or in other workers) stay valid after the unlink
                _unlink(s.snapshot)
