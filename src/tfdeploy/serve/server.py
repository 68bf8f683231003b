"""The REST API's logic, independent of the HTTP framework: TF Serving's URLs and answers.

``Server.handle(method, raw_path, body)`` returns ``(status, JSON bytes)``; http.py is the
ASGI glue (body limits, access log, lifespan).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

import tfdeploy as td
from tfdeploy.runtime import heap as _heap
from tfdeploy.runtime import limits as _limits
from tfdeploy.runtime import threads as _threads

from . import codec, examples
from .batching import Batcher
from .config import BatchingParameters, ServerOptions, load_model_config
from .metrics import Metrics
from .registry import Registry
from .status import ServingError, invalid_argument

log = logging.getLogger("tfdeploy.serve")

__all__ = ["Server"]

# TF Serving's http_rest_api_util.cc
_PREDICT = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                      r":(classify|regress|predict)", re.I)
_STATUS = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                     r"(?:/(metadata))?", re.I)
_INLINE_BYTES = 32 << 10  # smaller bodies are decoded on the event loop (a thread hop costs more)


def _version(s: str | None) -> int | None:
    if not s:
        return None
    v = int(s)
    if v >= 1 << 63:
        raise invalid_argument(f"Failed to convert version: {s} to numeric.")
    return v


class Server:
    """Models, batchers, thread pools and metrics of one server process."""

    def __init__(self, options: ServerOptions, models: dict | None = None):
        self.options = options
        if options.blas_threads > 0:  # (TF Serving's intra-op parallelism: tfdeploy's own
            _threads.configure(threads=options.blas_threads)  # threads inside one evaluation)
        # the heap tuned before any worker thread exists, so that they all share the main
        # heap (runtime/heap.py: a thread's own arena maps large arrays afresh each call)
        _heap.ensure()
        self.metrics = Metrics()
        self._own_snapshot_dir = options.snapshot_dir is None
        self.snapshot_dir = options.snapshot_dir or tempfile.mkdtemp(prefix="tfdeploy-serve-")
        os.makedirs(self.snapshot_dir, exist_ok=True)
        self.registry = Registry(options.models, self.snapshot_dir, self.metrics)
        for name, model in (models or {}).items():
            self.registry.add_model(name, model)
        threads = options.rest_api_num_threads or max(4, 2 * (os.cpu_count() or 1))
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="tfdeploy-eval")
        self.batching: BatchingParameters | None = None
        self.batch_pool: ThreadPoolExecutor | None = None
        if options.enable_batching:
            self.batching = options.batching or BatchingParameters()
            self.batch_pool = ThreadPoolExecutor(self.batching.num_batch_threads,
                                                 thread_name_prefix="tfdeploy-batch")
        self._batchers: dict[tuple[int, str], tuple[object, Batcher]] = {}
        self._tasks: list[asyncio.Task] = []
        self._config_mtime: float | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Load what is on disk (before the first request is accepted), then keep polling."""
        await asyncio.to_thread(self.registry.poll)
        o = self.options
        if o.file_system_poll_wait_seconds > 0:
            self._tasks.append(asyncio.create_task(
                self._every(o.file_system_poll_wait_seconds, self.registry.poll)))
        if o.metrics_dir:
            self._tasks.append(asyncio.create_task(
                self._every(1.0, self.metrics.write_state, o.metrics_dir)))
        if o.model_config_file and o.model_config_file_poll_wait_seconds > 0:
            self._config_mtime = os.stat(o.model_config_file).st_mtime_ns
            self._tasks.append(asyncio.create_task(
                self._every(o.model_config_file_poll_wait_seconds, self._reload_config)))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self.pool.shutdown(wait=False)
        if self.batch_pool is not None:
            self.batch_pool.shutdown(wait=False)
        self.registry.close()
        if self.options.metrics_dir:  # what this worker counted stays in the totals
            self.metrics.write_state(self.options.metrics_dir)
        if self._own_snapshot_dir:
            shutil.rmtree(self.snapshot_dir, ignore_errors=True)

    async def _every(self, seconds: float, fn, *args) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await asyncio.to_thread(fn, *args)
            except Exception:
                log.exception("background %s failed", getattr(fn, "__name__", fn))

    def _reload_config(self) -> None:
        path = self.options.model_config_file
        try:
            mtime = os.stat(path).st_mtime_ns
            if mtime == self._config_mtime:
                return
            models = load_model_config(path)
        except Exception as e:  # a bad edit keeps the running config
            log.error("model config %r not reloaded: %s", path, e)
            return
        self._config_mtime = mtime
        log.info("model config %r reloaded: %s", path, [m.name for m in models])
        self.registry.set_models(models)
        self.registry.poll()

    # ------------------------------------------------------------------ dispatch
    async def handle(self, method: str, raw_path: str, body_reader) -> tuple[int, bytes, str]:
        """(HTTP status, JSON body, model name for metrics) for one request to ``/v1/...``.

        ``body_reader`` is an async callable returning the request body (it may raise
        ServingError for an oversized body)."""
        name = ""
        try:
            if method == "POST":
                m = _PREDICT.fullmatch(raw_path)
                if m:
                    name = unquote(m.group(1))
                    body = await body_reader()
                    out = await self._post(m.group(4).lower(), name, _version(m.group(2)),
                                           unquote(m.group(3)) if m.group(3) else None, body)
                    return 200, out, name
            elif method == "GET":
                m = _STATUS.fullmatch(raw_path)
                if m:
                    if not m.group(1):
                        raise invalid_argument("Missing model name in request.")
                    name = unquote(m.group(1))
                    label = unquote(m.group(3)) if m.group(3) else None
                    return 200, self._get(name, _version(m.group(2)), label, m.group(4)), name
            raise invalid_argument(f"Malformed request: {method} {raw_path}")
        except ServingError as e:
            return e.http_status, codec.error_json(e.message), name
        except (td.FeedError, td.ExecutionError) as e:
            return 400, codec.error_json(str(e)), name
        except td.TFDeployError as e:
            return 400, codec.error_json(f"{type(e).__name__}: {e}"), name
        except Exception as e:  # a bug: said without a traceback to the client, logged here
            log.exception("internal error on %s %s", method, raw_path)
            return 500, codec.error_json(f"Internal: {type(e).__name__}: {e}"), name

    def _get(self, name: str, version: int | None, label: str | None,
             sub: str | None) -> bytes:
        if sub:
            servable = self.registry.resolve(name, version, label)
            return json.dumps(servable.metadata_json(), indent=1).encode()
        states = self.registry.version_status(name, version, label)
        return json.dumps({"model_version_status": [s.json() for s in states]},
                          indent=1).encode()

    async def _post(self, api: str, name: str, version: int | None, label: str | None,
                    body: bytes) -> bytes:
        timeout = self.options.rest_api_timeout_in_ms / 1000 or None
        try:
            return await asyncio.wait_for(self._evaluate(api, name, version, label, body),
                                          timeout)
        except asyncio.TimeoutError:
            raise ServingError("DEADLINE_EXCEEDED", "Deadline Exceeded") from None

    async def _evaluate(self, api: str, name: str, version: int | None, label: str | None,
                        body: bytes) -> bytes:
        loop = asyncio.get_running_loop()

        def prepare():
            doc = codec.parse_json(body)
            sig_name = codec.signature_name(doc)
            servable = self.registry.resolve(name, version, label)
            sig = servable.signature(sig_name)
            if api == "predict":
                fmt, feeds = codec.decode_predict(doc, sig.inputs)
                return servable, sig, fmt, feeds
            n, feeds = examples.decode_examples(doc, sig.inputs, api)
            return servable, sig, n, feeds

        def encode(fmt, outputs) -> bytes:
            if api == "predict":
                return codec.encode_predict(fmt, outputs)
            if api == "classify":
                return examples.encode_classify(outputs, fmt)
            return examples.encode_regress(outputs, fmt)

        batcher = None
        if self.batching is None or len(body) > _INLINE_BYTES:
            if self.batching is None:  # one thread hop for the whole request
                def whole():
                    servable, sig, fmt, feeds = prepare()
                    return encode(fmt, self._timed(sig.run)(feeds))

                return await loop.run_in_executor(self.pool, whole)
            servable, sig, fmt, feeds = await loop.run_in_executor(self.pool, prepare)
        else:
            servable, sig, fmt, feeds = prepare()
        batcher = self._batcher(servable, sig)
        outputs = await (batcher.submit(feeds) if batcher else
                         loop.run_in_executor(self.pool, self._timed(sig.run), feeds))
        if sum(a.size for a in outputs.values()) * 12 > _INLINE_BYTES:
            return await loop.run_in_executor(self.pool, encode, fmt, outputs)
        return encode(fmt, outputs)

    def _timed(self, run):
        """``run`` under the request timeout: a loop still going a little after it has passed
        (when the client has had its 504) stops with a clean error, so that the request frees
        its thread (``runtime/limits.py``, ``deadline``)."""
        if not self.options.rest_api_timeout_in_ms:
            return run
        seconds = self.options.rest_api_timeout_in_ms / 1000 * 1.1 + 0.05

        def timed(feeds):
            with _limits.deadline(seconds):
                return run(feeds)
        return timed

    def _batcher(self, servable, sig) -> Batcher | None:
        if not sig.batchable:
            return None
        key = (id(servable), sig.name)
        entry = self._batchers.get(key)
        if entry is None or entry[0] is not servable:
            # drop batchers of servables no longer served (ids may be reused)
            live = {id(s) for s in self.registry.servables()}
            for k in [k for k in self._batchers if k[0] not in live]:
                del self._batchers[k]
            entry = (servable, Batcher(self._timed(sig.run), self.batching, self.batch_pool,
                                       self.metrics, servable.name))
            self._batchers[key] = entry
        return entry[1]

    # ------------------------------------------------------------------ metrics
    def metrics_text(self) -> str:
        """The ``/metrics`` body: this process's, or with workers every worker's, summed."""
        if self.options.metrics_dir:
            return self.metrics.render_merged(self.options.metrics_dir)
        return self.metrics.render()

    def observe(self, name: str, api: str, status: int, seconds: float) -> None:
        if name not in self.registry.entries:  # clients must not grow the label set at will
            name = ""
        self.metrics.requests.inc(name, api, str(status))
        self.metrics.latency.observe(seconds, name, api)

    @staticmethod
    def api_of(method: str, path: str) -> str:
        if method == "POST":
            m = _PREDICT.fullmatch(path)
            return m.group(4).lower() if m else "other"
        m = _STATUS.fullmatch(path) if method == "GET" else None
        return ("metadata" if m.group(4) else "status") if m else "other"
