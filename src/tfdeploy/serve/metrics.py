"""Counters and histograms in Prometheus' text format, with no dependency.

One :class:`Metrics` per server process. With ``--workers N`` every worker writes its state
to a shared folder (``write_state``) and ``GET /metrics``, whichever worker answers it, sums
them all (``render_merged``): counters and histograms add up, gauges take the maximum.
"""

from __future__ import annotations

import bisect
import glob
import json
import logging
import math
import os
import threading

log = logging.getLogger("tfdeploy.serve")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _labels(names: tuple[str, ...], values: tuple) -> str:
    if not names:
        return ""
    esc = (str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
           for v in values)
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, esc)) + "}"


def _num(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


class Counter:
    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()):
        self.name, self.help, self.label_names = name, help, labels
        self._values: dict[tuple, float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels) -> float:
        return self._values.get(labels, 0.0)

    def state(self) -> list:
        with self._lock:
            return [[list(k), v] for k, v in self._values.items()]

    def merge(self, state: list) -> None:
        for k, v in state:
            self.inc(*k, amount=v)

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self._values.items())
        out += [f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in items]
        return out


class Gauge(Counter):
    def set(self, *labels, value: float) -> None:
        with self._lock:
            self._values[labels] = value

    def remove(self, *labels) -> None:
        with self._lock:
            self._values.pop(labels, None)

    def merge(self, state: list) -> None:
        for k, v in state:
            with self._lock:
                self._values[tuple(k)] = max(v, self._values.get(tuple(k), v))

    def render(self) -> list[str]:
        out = super().render()
        out[1] = f"# TYPE {self.name} gauge"
        return out


class Histogram:
    def __init__(self, name: str, help: str, labels: tuple[str, ...], buckets: tuple):
        self.name, self.help, self.label_names = name, help, labels
        self.buckets = tuple(buckets)
        self._series: dict[tuple, list] = {}  # labels -> [bucket counts..., sum, count]
        self._lock = threading.Lock()

    def observe(self, value: float, *labels) -> None:
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            s = self._series.get(labels)
            if s is None:
                s = self._series[labels] = [0] * (len(self.buckets) + 1) + [0.0, 0]
            s[i] += 1
            s[-2] += value
            s[-1] += 1

    def count(self, *labels) -> int:
        s = self._series.get(labels)
        return s[-1] if s else 0

    def state(self) -> list:
        with self._lock:
            return [[list(k), list(v)] for k, v in self._series.items()]

    def merge(self, state: list) -> None:
        with self._lock:
            for k, series in state:
                s = self._series.setdefault(tuple(k), [0] * (len(self.buckets) + 1) + [0.0, 0])
                for i, v in enumerate(series):
                    s[i] += v

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        names = self.label_names + ("le",)
        for k, s in items:
            acc = 0
            for b, c in zip(self.buckets + (math.inf,), s):
                acc += c
                out.append(f"{self.name}_bucket{_labels(names, k + (_num(b),))} {acc}")
            out.append(f"{self.name}_sum{_labels(self.label_names, k)} {_num(s[-2])}")
            out.append(f"{self.name}_count{_labels(self.label_names, k)} {s[-1]}")
        return out


class Metrics:
    """The server's metrics; ``render()`` is the ``GET /metrics`` body."""

    def __init__(self):
        self.requests = Counter("tfdeploy_requests_total", "HTTP requests by model, API and "
                                "status code", ("model", "api", "code"))
        self.latency = Histogram("tfdeploy_request_latency_seconds", "Request latency from the "
                                 "first byte read to the response, by model and API",
                                 ("model", "api"), LATENCY_BUCKETS)
        self.batch_size = Histogram("tfdeploy_batch_size", "Rows (first-dim entries) per model "
                                    "evaluation with batching", ("model",), BATCH_BUCKETS)
        self.batch_requests = Histogram("tfdeploy_batch_requests", "Requests merged into one "
                                        "model evaluation with batching", ("model",),
                                        BATCH_BUCKETS)
        self.loads = Counter("tfdeploy_model_loads_total", "Model version loads by result",
                             ("model", "result"))
        self.versions = Gauge("tfdeploy_model_version_available", "1 for every version being "
                              "served", ("model", "version"))
        self._all = [self.requests, self.latency, self.batch_size, self.batch_requests,
                     self.loads, self.versions]

    def render(self) -> str:
        lines: list[str] = []
        for m in self._all:
            lines += m.render()
        return "\n".join(lines) + "\n"

    def write_state(self, folder: str) -> None:
        """Publish this process's metrics for the other workers (atomically)."""
        path = os.path.join(folder, f"{os.getpid()}.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({m.name: m.state() for m in self._all}, f)
        os.replace(tmp, path)

    def render_merged(self, folder: str) -> str:
        """The metrics of every worker that wrote its state to ``folder``, summed."""
        self.write_state(folder)
        total = Metrics()
        by_name = {m.name: m for m in total._all}
        for path in glob.glob(os.path.join(folder, "*.json")):
            try:
                with open(path) as f:
                    state = json.load(f)
            except (OSError, ValueError):  # a worker is replacing it right now
                log.debug("skipped metrics file %s", path)
                continue
            for name, series in state.items():
                if name in by_name:
                    by_name[name].merge(series)
        return total.render()
