"""Test models and a real server process for tests/test_serve.py and benchmarks/bench_serve.py.

The models are built by hand (no TensorFlow): TF Serving's documented examples
(``half_plus_two``, ``saved_model_half_plus_three`` with its ``tensorflow/serving/regress``
signature, the tag/signal/sensor request of its REST API doc), a string model for b64, a
dense softmax for batching, a slow model for in-flight requests, and one whose loop an
input keeps going forever.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

import tfdeploy as td
from graphs import Node, const, dense_softmax, model_of, placeholder

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _set_specs(m: td.Model, outputs: dict, key: str | None = None) -> td.Model:
    """Give the outputs their real dtype and shape (model_of records float32, unknown)."""
    g = m.graphs[key or next(iter(m.graphs))]
    for s in g.outputs:
        if s.name in outputs:
            s.dtype, s.shape = outputs[s.name]
    return m


def half_plus(c: float, name_out: str = "y", key: str | None = None,
              shape: list | None = (None,)) -> td.Model:
    """y = 0.5 * x + c over a float tensor x (TF Serving's half_plus_two/three); x is a vector
    unless ``shape`` says otherwise (None: any shape)."""
    shape = None if shape is None else list(shape)
    nodes = [placeholder("x", "float32", shape), const("half", np.float32(0.5)),
             const("c", np.float32(c)), Node("mul", "Mul", ["half", "x"], {"T": "float32"}),
             Node(name_out, "AddV2", ["mul", "c"], {"T": "float32"})]
    return _set_specs(model_of(nodes, ["x"], [name_out], key=key),
                      {name_out: ("float32", shape)}, key)


def half_plus_three() -> td.Model:
    """Two signatures, as in TF Serving's REST example: serving_default and
    ``tensorflow/serving/regress`` (output ``outputs``)."""
    m = half_plus(3.0)
    regress = half_plus(3.0, "outputs", key="tensorflow/serving/regress")
    m._add_graph(regress.graphs["tensorflow/serving/regress"], "tensorflow/serving/regress")
    return m


def tag_signal_sensor() -> td.Model:
    """Three named inputs and four named outputs (the REST API doc's multi-input example)."""
    nodes = [placeholder("tag", "string", [None]), placeholder("signal", "int32", [None, 5]),
             placeholder("sensor", "int32", [None, 2, 2]), const("ax1", np.int32(1)),
             const("ax12", np.array([1, 2], np.int32)),
             Node("signal_sum", "Sum", ["signal", "ax1"],
                  {"T": "int32", "Tidx": "int32", "keep_dims": False}),
             Node("sensor_max", "Max", ["sensor", "ax12"],
                  {"T": "int32", "Tidx": "int32", "keep_dims": False}),
             Node("tag_length", "StringLength", ["tag"], {"unit": "BYTE"}),
             Node("tag_bytes", "Identity", ["tag"], {"T": "string"})]
    m = model_of(nodes, ["tag", "signal", "sensor"],
                 ["signal_sum", "sensor_max", "tag_length", "tag_bytes"])
    return _set_specs(m, {"signal_sum": ("int32", [None]), "sensor_max": ("int32", [None]),
                          "tag_length": ("int32", [None]), "tag_bytes": ("string", [None])})


def strings() -> td.Model:
    """text (string) -> length (int32) and text_bytes (the same strings, sent back as b64)."""
    nodes = [placeholder("text", "string", [None]),
             Node("length", "StringLength", ["text"], {"unit": "BYTE"}),
             Node("text_bytes", "Identity", ["text"], {"T": "string"}),
             Node("upper", "StringUpper", ["text"], {"encoding": ""})]
    m = model_of(nodes, ["text"], ["length", "text_bytes", "upper"])
    return _set_specs(m, {"length": ("int32", [None]), "text_bytes": ("string", [None]),
                          "upper": ("string", [None])})


def softmax(n_in: int = 64, n_out: int = 10, seed: int = 0) -> td.Model:
    m, _ = dense_softmax(n_in, n_out, seed)
    return _set_specs(m, {"output": ("float32", [None, n_out])})


def mlp(sizes=(784, 1024, 1024, 10), seed: int = 0) -> td.Model:
    """A ReLU MLP with logits out: heavy enough per row that batching pays (benchmarks)."""
    rng = np.random.default_rng(seed)
    nodes = [placeholder("x", "float32", [None, sizes[0]])]
    prev = "x"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        nodes += [const(f"W{i}", w), const(f"b{i}", np.zeros(b, np.float32)),
                  Node(f"mm{i}", "MatMul", [prev, f"W{i}"], {"T": "float32", "transpose_a": False,
                                                             "transpose_b": False}),
                  Node(f"z{i}", "AddV2", [f"mm{i}", f"b{i}"], {"T": "float32"})]
        prev = f"z{i}"
        if i < len(sizes) - 2:
            nodes.append(Node(f"h{i}", "Relu", [prev], {"T": "float32"}))
            prev = f"h{i}"
    nodes.append(Node("logits", "Identity", [prev], {"T": "float32"}))
    return _set_specs(model_of(nodes, ["x"], ["logits"]), {"logits": ("float32",
                                                                      [None, sizes[-1]])})


def slow() -> td.Model:
    """total = sum(ones(n, n) @ ones(n, n)): n = 3000 takes about a second."""
    nodes = [placeholder("n", "int32", []), const("one", np.float32(1)),
             Node("shape", "Pack", ["n", "n"], {"T": "int32", "N": 2, "axis": 0}),
             Node("f", "Fill", ["shape", "one"], {"T": "float32", "index_type": "int32"}),
             Node("mm", "MatMul", ["f", "f"], {"T": "float32", "transpose_a": False,
                                               "transpose_b": False}),
             const("axes", np.array([0, 1], np.int32)),
             Node("total", "Sum", ["mm", "axes"], {"T": "float32", "Tidx": "int32",
                                                    "keep_dims": False})]
    return _set_specs(model_of(nodes, ["n"], ["total"]), {"total": ("float32", [])})


def endless() -> td.Model:
    """y = x doubled for as long as the sum of x is below 1: zeros (or negatives) loop forever,
    a data-dependent While an input keeps going."""
    from tfdeploy.ir.graph import FuncAttr, Graph, TensorSpec

    vec = [None]
    cond = Graph([placeholder("x", "float32", vec), const("axes", np.array([0], np.int32)),
                  const("one", np.float32(1)),
                  Node("s", "Sum", ["x", "axes"], {"T": "float32", "Tidx": "int32",
                                                   "keep_dims": False}),
                  Node("c", "Less", ["s", "one"], {"T": "float32"})],
                 [TensorSpec("x", "x:0", "float32", vec)], [TensorSpec("c", "c:0", "bool", [])])
    body = Graph([placeholder("x", "float32", vec), const("two", np.float32(2)),
                  Node("y", "Mul", ["x", "two"], {"T": "float32"})],
                 [TensorSpec("x", "x:0", "float32", vec)],
                 [TensorSpec("y", "y:0", "float32", vec)])
    m = model_of([placeholder("x", "float32", vec),
                  Node("y", "While", ["x"], {"T": ["float32"], "cond": FuncAttr("c"),
                                             "body": FuncAttr("b")})], ["x"], ["y"])
    m.graphs[next(iter(m.graphs))].functions = {"c": cond, "b": body}
    return _set_specs(m, {"y": ("float32", vec)})


def save_version(base: Path, version: int | str, model: td.Model, name: str = "model.tfd",
                 atomic: bool = True) -> Path:
    """Write ``base/<version>/<name>``; atomically (a folder renamed in) unless told not."""
    final = base / str(version)
    if not atomic:
        final.mkdir(parents=True, exist_ok=True)
        model.save(final / name)
        return final / name
    tmp = base / f".tmp-{version}"
    tmp.mkdir(parents=True)
    model.save(tmp / name)
    os.rename(tmp, final)
    return final / name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m tfdeploy serve ARGS`` on a loopback port, stopped with SIGTERM."""

    def __init__(self, args: list[str], log_path: Path, port_flag: str = "--rest_api_port",
                 env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = dict(os.environ, **(env or {}))
        env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tfdeploy", "serve", *args, "--host", "127.0.0.1",
             port_flag, str(self.port)], stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, names: list[str], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready for {pending}:\n{self.log()}")
            try:
                r = httpx.get(f"{self.url}/v1/models/{pending[0]}", timeout=2)
                if r.status_code == 200 and any(s["state"] == "AVAILABLE" for s in
                                                r.json()["model_version_status"]):
                    pending.pop(0)
                    continue
            except httpx.TransportError:
                pass
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
