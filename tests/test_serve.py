"""tfdeploy serve: real server processes on loopback ports, a real HTTP client, TF Serving's
documented requests and responses (tests/data/serving/), and the config/codec units."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("uvicorn", reason="tfdeploy[serve] is not installed")
pytest.importorskip("starlette", reason="tfdeploy[serve] is not installed")
httpx = pytest.importorskip("httpx", reason="the tests' HTTP client is not installed")

import serve_util as su  # noqa: E402
import tfdeploy as td  # noqa: E402
from tfdeploy.serve import codec, config  # noqa: E402
from tfdeploy.serve.status import ServingError  # noqa: E402

DATA = Path(__file__).parent / "data" / "serving"
# starlette 1.x suggests httpx2 for its TestClient; httpx still works
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

CONFIG = """
# TF Serving's text format: comments, both field styles, labels and version policies
model_config_list {
  config { name: "half_plus_two" base_path: "half_plus_two" model_platform: "tensorflow"
           version_labels { key: "stable" value: 123 } }
  config: { name: 'saved_model_half_plus_three', base_path: "half_plus_three" },
  config { name: "tags" base_path: "tags" }
  config { name: "strings" base_path: "strings" }
  config { name: "softmax" base_path: "softmax" }
  config { name: "growing" base_path: "growing"
           model_version_policy { latest { num_versions: 1 } } }
  config { name: "swap" base_path: "swap" }
  %s
}
"""
BATCHING = """max_batch_size { value: 32 }
batch_timeout_micros { value: 20000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 2 }
"""
MAIN_MODELS = ["half_plus_two", "saved_model_half_plus_three", "tags", "strings", "softmax",
               "growing", "swap"]


@pytest.fixture(scope="module")
def main(tmp_path_factory):
    """One server for most tests: a model config file, batching, a 1 MB body limit, fast
    polling of versions and of the config file."""
    base = tmp_path_factory.mktemp("models")
    su.save_version(base / "half_plus_two", "00000123", su.half_plus(2.0, shape=None))
    su.save_version(base / "half_plus_three", "00000123", su.half_plus_three())
    su.save_version(base / "tags", 1, su.tag_signal_sensor())
    su.save_version(base / "strings", 1, su.strings())
    su.save_version(base / "softmax", 1, su.softmax())
    su.save_version(base / "growing", 1, su.half_plus(1.0))
    su.save_version(base / "swap", 1, su.half_plus(1.0))
    (base / "models.config").write_text(CONFIG % "")
    (base / "batching.config").write_text(BATCHING)
    server = su.ServerProcess(
        ["--model_config_file", str(base / "models.config"),
         "--model_config_file_poll_wait_seconds", "0.2", "--file_system_poll_wait_seconds",
         "0.1", "--enable_batching", "--batching_parameters_file",
         str(base / "batching.config"), "--rest_api_max_body_bytes", str(1 << 20)],
        base / "server.log")
    try:
        server.wait_ready(MAIN_MODELS)
        server.base = base
        with httpx.Client(base_url=server.url, timeout=30) as client:
            server.client = client
            yield server
    finally:
        server.stop()


def _post(client, path: str, doc) -> httpx.Response:
    return client.post(path, content=json.dumps(doc))


def _metric(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wait(cond, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------------------- the API

def test_tf_serving_documented_examples(main):
    cases = json.loads((DATA / "rest_api_examples.json").read_text())["cases"]
    assert len(cases) > 20
    for case in cases:
        body = case["body"] if "body" in case else json.dumps(case.get("request"))
        r = main.client.request(case["method"], case["path"],
                                content=body if case["method"] == "POST" else None)
        assert r.status_code == case["status"], (case["doc"], r.text)
        assert r.headers["content-type"] == "application/json"
        if "response" in case:
            assert r.json() == case["response"], case["doc"]
        if "error" in case:
            assert case["error"] in r.json()["error"], (case["doc"], r.text)


def test_metadata_shows_signatures_dtypes_and_shapes(main):
    r = main.client.get("/v1/models/saved_model_half_plus_three/metadata")
    assert r.status_code == 200
    meta = r.json()
    assert meta["model_spec"] == {"name": "saved_model_half_plus_three", "signature_name": "",
                                  "version": "123"}
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    assert sorted(sigs) == ["serving_default", "tensorflow/serving/regress"]
    assert sigs["serving_default"]["inputs"]["x"] == {
        "dtype": "DT_FLOAT", "name": "x:0", "tensor_shape": {
            "dim": [{"size": "-1", "name": ""}], "unknown_rank": False}}
    assert sigs["tensorflow/serving/regress"]["outputs"]["outputs"]["dtype"] == "DT_FLOAT"
    assert sigs["serving_default"]["method_name"] == "tensorflow/serving/predict"
    tags = main.client.get("/v1/models/tags/versions/1/metadata").json()
    inputs = tags["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert {k: v["dtype"] for k, v in inputs.items()} == {
        "tag": "DT_STRING", "signal": "DT_INT32", "sensor": "DT_INT32"}
    assert [d["size"] for d in inputs["sensor"]["tensor_shape"]["dim"]] == ["-1", "2", "2"]
    r = main.client.get("/v1/models/half_plus_two/versions/7/metadata")
    assert r.status_code == 404
    assert r.json() == {"error": "Servable not found for request: Specific(half_plus_two, 7)"}


def test_named_inputs_and_outputs_row_and_columnar(main):
    m = su.tag_signal_sensor()
    rng = np.random.default_rng(1)
    signal = rng.integers(-100, 100, (3, 5)).astype(np.int32)
    sensor = rng.integers(-100, 100, (3, 2, 2)).astype(np.int32)
    tags = ["a", "éé", ""]
    want = m(tag=np.array([t.encode() for t in tags], object), signal=signal, sensor=sensor)
    rows = [{"tag": t, "signal": s.tolist(), "sensor": x.tolist()}
            for t, s, x in zip(tags, signal, sensor)]
    got = _post(main.client, "/v1/models/tags:predict", {"instances": rows}).json()
    assert [p["signal_sum"] for p in got["predictions"]] == want[0].tolist()
    assert [p["sensor_max"] for p in got["predictions"]] == want[1].tolist()
    assert [p["tag_length"] for p in got["predictions"]] == [1, 4, 0]
    assert [base64.b64decode(p["tag_bytes"]["b64"]).decode() for p in got["predictions"]] == tags
    cols = {"tag": tags, "signal": signal.tolist(), "sensor": sensor.tolist()}
    got = _post(main.client, "/v1/models/tags:predict", {"inputs": cols}).json()["outputs"]
    assert got["signal_sum"] == want[0].tolist() and got["tag_length"] == [1, 4, 0]


def test_b64_strings_in_and_out(main):
    raw = [b"\x00\xff binary", "héllo".encode(), b""]
    doc = {"instances": [{"b64": base64.b64encode(v).decode()} for v in raw[:2]] + [""]}
    got = _post(main.client, "/v1/models/strings:predict", doc).json()["predictions"]
    assert [p["length"] for p in got] == [len(v) for v in raw]
    # outputs named *_bytes are always b64; others are text, or b64 when not UTF-8
    assert [base64.b64decode(p["text_bytes"]["b64"]) for p in got] == raw
    assert got[1]["upper"] == "HéLLO" and got[2]["upper"] == ""
    assert base64.b64decode(got[0]["upper"]["b64"]) == b"\x00\xff BINARY"
    bad = _post(main.client, "/v1/models/strings:predict", {"instances": [{"b64": "!!"}]})
    assert bad.status_code == 400 and "Unable to base64 decode" in bad.json()["error"]
    bad = _post(main.client, "/v1/models/strings:predict", {"instances": [{"b65": "AA=="}]})
    assert bad.status_code == 400 and "does not have named input: b65" in bad.json()["error"]


def test_classify_and_regress(main):
    c = main.client
    r = _post(c, "/v1/models/saved_model_half_plus_three:classify",
              {"examples": [{"x": 1.0}, {"x": -2}]})
    assert r.json() == {"results": [[["", 3.5]], [["", 2.0]]]}
    r = _post(c, "/v1/models/saved_model_half_plus_three:regress",
              {"context": {"x": 4.0}, "examples": [{}]})
    assert r.json() == {"results": [5.0]}
    r = _post(c, "/v1/models/tags:regress", {"examples": [{"tag": "a", "signal": [1, 2, 3, 4, 5],
                                                           "sensor": [1, 2, 3, 4]}]})
    assert r.status_code == 400, r.text
    r = _post(c, "/v1/models/saved_model_half_plus_three:regress", {"examples": [{"y": 1.0}]})
    assert r.status_code == 400 and "feature 'x'" in r.json()["error"]
    r = _post(c, "/v1/models/saved_model_half_plus_three:classify", {"instances": [1.0]})
    assert r.status_code == 400 and "'examples' is expected" in r.json()["error"]


BAD_REQUESTS = [
    ("POST", "/v1/models/half_plus_two:predict", b"{", 400, "JSON Parse error"),
    ("POST", "/v1/models/half_plus_two:predict", b"[1, 2]", 400, "Is not object"),
    ("POST", "/v1/models/half_plus_two:predict", b"\xff\xfe", 400, "JSON Parse error"),
    ("POST", "/v1/models/half_plus_two:predict", b"[" * 100000, 400, "JSON Parse error"),
    ("POST", "/v1/models/half_plus_two:predict", b'{"instances": []}', 400, "No values"),
    ("POST", "/v1/models/half_plus_two:predict",
     b'{"instances": ' + b"[" * 300 + b"1" + b"]" * 300 + b"}", 400, "levels deep"),
    ("POST", "/v1/models/half_plus_two:predict", b'{"instances": 1}', 400, "list/array"),
    ("POST", "/v1/models/half_plus_two:predict", b'{"x": 1}', 400,
     "Missing 'inputs' or 'instances' key"),
    ("POST", "/v1/models/half_plus_two:predict", b'{"instances": [1], "inputs": [1]}', 400,
     "expecting only one of"),
    ("POST", "/v1/models/half_plus_two:predict", b'{"instances": [[1, 2], [3]]}', 400,
     "Expecting tensor size: 2 but got: 1"),
    ("POST", "/v1/models/half_plus_two:predict", b'{"instances": [[1, 2], [3, [4]]]}', 400,
     "Encountered list at unexpected level"),
    ("POST", "/v1/models/half_plus_two:predict", b'{"instances": [null]}', 400,
     "Type: Null is not of expected type: float"),
    ("POST", "/v1/models/half_plus_two:predict",
     b'{"instances": [1], "signature_name": "nope"}', 400,
     'Serving signature name: "nope" not found'),
    ("POST", "/v1/models/saved_model_half_plus_three:predict", b'{"instances": [[1.0]]}', 400,
     "expects rank 1"),
    ("POST", "/v1/models/softmax:predict", b'{"instances": [[1.0, 2.0]]}', 400,
     "expects shape (None, 64)"),
    ("POST", "/v1/models/tags:predict", b'{"instances": [1]}', 400,
     "instances is a plain list"),
    ("POST", "/v1/models/tags:predict", b'{"instances": [{"tag": "a"}]}', 400,
     "keys must be equal to: sensor,signal,tag"),
    ("POST", "/v1/models/tags:predict", b'{"inputs": {"tag": ["a"]}}', 400,
     "Missing named input: signal"),
    ("POST", "/v1/models/tags:predict",
     b'{"inputs": {"tag": ["a"], "signal": [[1.5, 2, 3, 4, 5]], "sensor": [[[1, 2], [3, 4]]]}}',
     400, "JSON Value: 1.5 Type: Number is not of expected type: int32"),
    ("POST", "/v1/models/tags:predict",
     b'{"inputs": {"tag": ["a"], "signal": [[1, 2, 3, 4, 5]], "sensor": [[[1, 2]]]}}',
     400, "sensor"),
    ("POST", "/v1/models/tags:predict",
     b'{"inputs": {"tag": [1], "signal": [[1, 2, 3, 4, 5]], "sensor": [[[1, 2], [3, 4]]]}}',
     400, "is not of expected type: string"),
    ("POST", "/v1/models/nope:predict", b'{"instances": [1]}', 404,
     "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/half_plus_two/versions/9:predict", b'{"instances": [1]}', 404,
     "Servable not found for request: Specific(half_plus_two, 9)"),
    ("GET", "/v1/models/nope", b"", 404, "Could not find any versions of model nope"),
    ("GET", "/v1/models/half_plus_two/versions/9", b"", 404,
     "Could not find version 9 of model half_plus_two"),
    ("PUT", "/v1/models/half_plus_two:predict", b"{}", 400, "Malformed request: PUT"),
    ("GET", "/v2/whatever", b"", 404, "Not found"),
    ("POST", "/v1/models/half_plus_two:predict", b"x" * ((1 << 20) + 1), 413,
     "exceeds the limit of 1048576 bytes"),
]


def test_bad_requests_get_tf_serving_errors_and_the_server_keeps_serving(main):
    for method, path, body, status, message in BAD_REQUESTS * 2:
        r = main.client.request(method, path, content=body)
        assert r.status_code == status, (path, body[:60], r.text)
        assert message in r.json()["error"], (path, body[:60], r.text)
        assert "Traceback" not in r.text
    chunked = main.client.post("/v1/models/half_plus_two:predict",
                               content=iter([b"[" * (1 << 19), b"[" * (1 << 19), b"["]))
    assert chunked.status_code == 413
    r = _post(main.client, "/v1/models/half_plus_two:predict", {"instances": [1.0]})
    assert r.json() == {"predictions": [2.5]}
    assert "Traceback" not in main.log()


def test_float_and_special_values_round_trip(main):
    x = np.array([0.1, -1e-30, 3e38, 1 / 3, 7.0, 16777217.0], np.float32)
    r = main.client.post("/v1/models/half_plus_two:predict",
                         content=b'{"inputs": [NaN, Infinity, -Infinity, ' +
                         ", ".join(map(repr, x.tolist())).encode() + b"]}")
    text = r.text
    assert "NaN, Infinity, -Infinity" in text.replace(",", ", ").replace(",  ", ", ")
    got = np.array(json.loads(text)["outputs"], np.float64).astype(np.float32)
    want = su.half_plus(2.0, shape=None)(np.concatenate([[np.nan, np.inf, -np.inf], x]).astype(
        np.float32))
    np.testing.assert_array_equal(got, want)  # NaN == NaN here; every value read back exactly
    assert "3.5" not in text and re.search(r"\b2\.05\b", text)  # 0.5 * 0.1 + 2 -> 2.05


# ---------------------------------------------------------------------------- batching, metrics

def test_batching_merges_concurrent_requests_and_splits_answers(main):
    model = su.softmax()
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((1 + i % 3, 64)).astype(np.float32) for i in range(48)]
    before = main.client.get("/metrics").text

    def one(x):
        r = _post(main.client, "/v1/models/softmax:predict", {"instances": x.tolist()})
        assert r.status_code == 200, r.text
        return np.array(r.json()["predictions"], np.float32)

    with concurrent.futures.ThreadPoolExecutor(24) as ex:
        got = list(ex.map(one, xs))
    for x, g in zip(xs, got):
        # merged rows go through one larger MatMul: BLAS may round the last bit differently
        np.testing.assert_allclose(g, model(x), rtol=1e-5, atol=1e-7)
    after = main.client.get("/metrics").text
    n_batches = _metric(after, "tfdeploy_batch_requests_count", model="softmax") - \
        _metric(before, "tfdeploy_batch_requests_count", model="softmax")
    singles = _metric(after, "tfdeploy_batch_requests_bucket", model="softmax", le="1") - \
        _metric(before, "tfdeploy_batch_requests_bucket", model="softmax", le="1")
    rows = _metric(after, "tfdeploy_batch_size_sum", model="softmax") - \
        _metric(before, "tfdeploy_batch_size_sum", model="softmax")
    assert rows == sum(len(x) for x in xs)
    assert n_batches < len(xs) and singles < n_batches, (n_batches, singles)


def test_metrics_text_and_access_log(main):
    _post(main.client, "/v1/models/half_plus_two:predict", {"instances": [1.0]})
    r = main.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for family, kind in [("tfdeploy_requests_total", "counter"),
                         ("tfdeploy_request_latency_seconds", "histogram"),
                         ("tfdeploy_batch_size", "histogram"),
                         ("tfdeploy_model_loads_total", "counter")]:
        assert f"# TYPE {family} {kind}" in text
    assert _metric(text, "tfdeploy_requests_total", model="half_plus_two", api="predict",
                   code="200") >= 1
    assert _metric(text, "tfdeploy_request_latency_seconds_count", model="half_plus_two",
                   api="predict") >= 1
    assert 'tfdeploy_request_latency_seconds_bucket{model="half_plus_two",api="predict",' \
           'le="+Inf"}' in text
    assert _metric(text, "tfdeploy_model_version_available", model="tags", version="1") == 1
    # clients cannot grow the label set: unknown model names are counted under ""
    assert 'model="nope"' not in text
    assert main.client.get("/monitoring/prometheus/metrics").text.startswith("# HELP")
    log = main.log()
    assert re.search(r'127\.0\.0\.1 "POST /v1/models/half_plus_two:predict HTTP/1\.1" 200 \d+ '
                     r"[\d.]+ms", log), log[-2000:]


# ---------------------------------------------------------------------------- versions on disk

def test_version_folder_added_while_serving(main):
    c = main.client
    assert _post(c, "/v1/models/growing:predict", {"instances": [2.0]}).json() == \
        {"predictions": [2.0]}
    su.save_version(main.base / "growing", 2, su.half_plus(10.0))

    def switched():
        r = _post(c, "/v1/models/growing:predict", {"instances": [2.0]})
        assert r.status_code == 200, r.text  # never a gap while switching
        return r.json() == {"predictions": [11.0]}

    _wait(switched, what="version 2")
    states = {s["version"]: s["state"] for s in
              c.get("/v1/models/growing").json()["model_version_status"]}
    assert states == {"2": "AVAILABLE", "1": "END"}
    assert c.post("/v1/models/growing/versions/1:predict",
                  content=b'{"instances": [1]}').status_code == 404
    # a version folder whose file does not load: reported, and version 2 keeps serving
    (main.base / "growing" / "3").mkdir()
    (main.base / "growing" / "3" / "model.tfd").write_bytes(b"TFDEPLOY garbage")
    _wait(lambda: any(s["version"] == "3" and s["state"] == "END" for s in
                      c.get("/v1/models/growing").json()["model_version_status"]),
          what="version 3 failed")
    st = c.get("/v1/models/growing/versions/3").json()["model_version_status"][0]
    assert st["status"]["error_code"] == "UNKNOWN" and "FileFormatError" in \
        st["status"]["error_message"]
    assert _post(c, "/v1/models/growing:predict", {"instances": [2.0]}).json() == \
        {"predictions": [11.0]}


def test_model_file_copied_over_in_place(main):
    """cp over the served file (same inode, truncated, written in pieces): answers stay
    correct, old or new, never an error; the half-written file is rejected; then it switches."""
    path = main.base / "swap" / "1" / "model.tfd"
    new = main.base / "new.tfd"
    su.half_plus(100.0).save(new)
    data = new.read_bytes()
    seen: set = set()
    errors: list = []
    stop = threading.Event()

    def hammer():
        with httpx.Client(base_url=main.url, timeout=30) as client:
            while not stop.is_set():
                r = _post(client, "/v1/models/swap:predict", {"instances": [2.0]})
                if r.status_code != 200:
                    errors.append(r.text)
                else:
                    seen.add(r.json()["predictions"][0])

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        loads_before = _metric(main.client.get("/metrics").text, "tfdeploy_model_loads_total",
                               model="swap", result="error")
        with open(path, "r+b") as f:  # what `cp new.tfd model.tfd` does: same inode
            f.truncate(0)
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(0.6)  # the half-written file stays unchanged over several polls
            f.write(data[len(data) // 2:])
        _wait(lambda: 101.0 in seen, what="the new file to be served")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert seen <= {2.0, 101.0}
    text = main.client.get("/metrics").text
    assert _metric(text, "tfdeploy_model_loads_total", model="swap", result="error") > \
        loads_before
    status = main.client.get("/v1/models/swap").json()["model_version_status"]
    assert status == [{"version": "1", "state": "AVAILABLE",
                       "status": {"error_code": "OK", "error_message": ""}}]


def test_model_added_to_the_config_while_serving(main):
    su.save_version(main.base / "late", 5, su.half_plus(0.0))
    tmp = main.base / "models.config.tmp"
    tmp.write_text(CONFIG % 'config { name: "late" base_path: "late" }')
    os.replace(tmp, main.base / "models.config")

    def available():  # (known as LOADING first, as TF Serving reports it: predict 404s then)
        r = main.client.get("/v1/models/late")
        return r.status_code == 200 and [(s["version"], s["state"]) for s in
                                         r.json()["model_version_status"]] == [("5", "AVAILABLE")]

    _wait(available, what="model 'late' version 5 available")
    r = _post(main.client, "/v1/models/late/versions/5:predict", {"instances": [4.0]})
    assert r.json() == {"predictions": [2.0]}


# ---------------------------------------------------------------------------- other servers

def test_short_form_sigterm_finishes_in_flight_request(tmp_path):
    path = tmp_path / "slow_model.tfd"
    su.slow().save(path)
    server = su.ServerProcess([str(path), "--rest_api_timeout_in_ms", "60000"],
                              tmp_path / "log", port_flag="--port")
    try:
        server.wait_ready(["slow_model"])
        result = {}

        def request():
            r = httpx.post(f"{server.url}/v1/models/slow_model:predict",
                           content=b'{"inputs": 3000}', timeout=60)
            result["r"] = r

        t = threading.Thread(target=request)
        t.start()
        time.sleep(0.4)  # the evaluation (about a second) is under way
        t0 = time.monotonic()
        server.proc.send_signal(15)
        t.join(60)
        assert result["r"].status_code == 200, result["r"].text
        assert result["r"].json() == {"outputs": 3000.0 ** 3}
        assert server.proc.wait(20) == 0
        assert time.monotonic() - t0 < 20
    finally:
        server.stop()
    log = server.log()
    assert "Traceback" not in log
    snapshots = re.search(r"snapshots in (\S+)\)", log).group(1)
    assert os.path.isdir(os.path.dirname(snapshots)) and not os.path.exists(snapshots)


def test_workers_share_one_snapshot(tmp_path):
    base = tmp_path / "m"
    su.save_version(base, 1, su.softmax())
    snaps = tmp_path / "snapshots"
    server = su.ServerProcess(["--model_name", "sm", "--model_base_path", str(base),
                               "--workers", "2", "--snapshot_dir", str(snaps)], tmp_path / "log")
    try:
        server.wait_ready(["sm"])
        _wait(lambda: server.log().count("Application startup complete") == 2, 30,
              "both workers")
        model = su.softmax()
        x = np.random.default_rng(3).standard_normal((4, 64)).astype(np.float32)
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            def one(_):
                with httpx.Client(base_url=server.url, timeout=30) as c:
                    r = _post(c, "/v1/models/sm:predict", {"instances": x.tolist()})
                    assert r.status_code == 200, r.text
                    np.testing.assert_array_equal(np.array(r.json()["predictions"], np.float32),
                                                  model(x))
            list(ex.map(one, range(40)))
        pids = set(re.findall(r"Started server process \[(\d+)\]", server.log()))
        assert len(pids) == 2, server.log()
        answered = set(re.findall(r"access\[(\d+)\]: .*:predict", server.log()))
        assert answered == pids  # both workers answered
        # /metrics sums every worker's counts (each publishes them every second)
        _wait(lambda: _metric(httpx.get(f"{server.url}/metrics").text,
                              "tfdeploy_requests_total", model="sm", api="predict",
                              code="200") == 40, 10, "the workers' metrics summed")
        text = httpx.get(f"{server.url}/metrics").text
        assert _metric(text, "tfdeploy_model_version_available", model="sm", version="1") == 1
        assert _metric(text, "tfdeploy_request_latency_seconds_count", model="sm",
                       api="predict") == 40
        files = sorted(p.name for p in snaps.iterdir())
        assert len(files) == 1 and re.fullmatch(r"[0-9a-f]{64}\.tfd", files[0]), files
    finally:
        assert server.stop() == 0


# ---------------------------------------------------------------------------- units

def test_config_text_and_json_formats(tmp_path):
    text = """model_config_list {
      config { name: "a" base_path: "/m/a" model_version_policy { specific { versions: 1
               versions: [3, 4] } } version_labels { key: "stable" value: 3 } }
      config: { name: 'b', base_path: "rel", model_version_policy: { all {} } }
    }"""
    a, b = config.parse_model_config(text, base_dir="/base")
    assert a.policy == config.VersionPolicy("specific", 1, (1, 3, 4)) and a.labels == \
        {"stable": 3}
    assert b.base_path == "/base/rel" and b.policy.kind == "all"
    j = {"modelConfigList": {"config": [{"name": "a", "basePath": "/m/a", "modelVersionPolicy":
         {"latest": {"numVersions": 2}}, "versionLabels": {"canary": "4"}}]}}
    (m,) = config.parse_model_config(json.dumps(j))
    assert m.policy == config.VersionPolicy("latest", 2) and m.labels == {"canary": 4}
    assert m.policy.select([1, 5, 3, 4]) == [4, 5]
    assert config.VersionPolicy("specific", 1, (1, 9)).select([1, 2]) == [1]
    for bad, msg in [("model_config_list { config { name: 'a' } }", "no base_path"),
                     ("model_config_list { config { nme: 'a' } }", "unknown field"),
                     ("model_config_list { config { name: 'a' base_path: 'x' }", "missing '}'"),
                     ("model_config_list { config { name: a base_path: 'x' } }",
                      "quoted string"),
                     ("model_config_list { config { name: 'a' base_path: 'x' "
                      "model_platform: 'onnx' } }", "not served")]:
        with pytest.raises(config.ConfigError, match=msg):
            config.parse_model_config(bad)
    p = config.parse_batching_parameters(BATCHING + "allowed_batch_sizes: [8, 32]\n")
    assert (p.max_batch_size, p.batch_timeout_micros, p.num_batch_threads,
            p.allowed_batch_sizes) == (32, 20000, 2, (8, 32))
    with pytest.raises(config.ConfigError, match="max_batch_size must be positive"):
        config.parse_batching_parameters("max_batch_size { value: 0 }")
    opts = config.ServerOptions(models=[a, b], batching=p, enable_batching=True)
    assert config.ServerOptions.from_json(opts.to_json()) == opts


def test_codec_units():
    spec = type("Spec", (), {})
    x = spec()
    x.name, x.dtype = "x", "int64"
    fmt, feeds = codec.decode_predict({"instances": [[1, 2], [3, 4]]}, [x])
    assert fmt == "row" and feeds["x"].dtype == np.int64 and feeds["x"].shape == (2, 2)
    with pytest.raises(ServingError, match="Encountered list at unexpected size: 1 at level: 1"):
        codec.to_array([[1, 2], [3]], "float32")
    with pytest.raises(ServingError, match="found at incorrect level: 2"):
        codec.to_array([[1, 2], 3], "float32")
    with pytest.raises(ServingError, match="Type: Number is not of expected type: uint8"):
        codec.to_array([1, 256], "uint8")
    with pytest.raises(ServingError) as e:
        codec.to_array([1], "complex64")
    assert e.value.http_status == 501
    assert codec.tokens(np.array([2.5, 3, 0.1, 1e-7, 1234567, np.nan], np.float32), "y") == \
        ["2.5", "3.0", "0.1", "1e-07", "1234567.0", "NaN"]
    assert codec.encode_predict("row", {"y": np.zeros((2, 0, 3))}) == b'{"predictions": [[],[]]}'
    with pytest.raises(ServingError, match="inconsistent batch size"):
        codec.encode_predict("row", {"a": np.zeros(2), "b": np.zeros(3)})
    assert len(codec.debug_string(list(range(10 ** 5)))) == 256


def test_import_tfdeploy_and_cli_do_not_import_the_server_packages():
    code = ("import sys, tfdeploy, tfdeploy.cli, tfdeploy.serve, tfdeploy.serve.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('uvicorn', 'starlette', 'tensorflow')))")
    env = dict(os.environ, PYTHONPATH=su.SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_cli_flag_errors(tmp_path):
    from tfdeploy import cli

    assert cli.main(["serve"]) == 2
    assert cli.main(["serve", str(tmp_path / "missing.tfd")]) == 2
    (tmp_path / "bad.tfd").write_bytes(b"TFDEPLOY")
    assert cli.main(["serve", str(tmp_path / "bad.tfd")]) == 2
    (tmp_path / "bad.config").write_text("model_config_list { config { name: 'a' } }")
    assert cli.main(["serve", "--model_config_file", str(tmp_path / "bad.config")]) == 2


def test_app_embeds_an_in_memory_model():
    from starlette.testclient import TestClient

    import tfdeploy.serve

    app = tfdeploy.serve.app(su.half_plus(2.0), name="hp")
    with TestClient(app) as c:
        assert c.post("/v1/models/hp:predict", content=b'{"instances": [2]}').json() == \
            {"predictions": [3.0]}
        assert c.get("/v1/models/hp").json()["model_version_status"][0]["version"] == "1"
    assert isinstance(td.Model, type)


def test_deadline_exceeded_is_a_504_and_the_server_keeps_serving():
    from starlette.testclient import TestClient

    import tfdeploy.serve

    app = tfdeploy.serve.app(models={"slow": su.slow(), "hp": su.half_plus(2.0)},
                             rest_api_timeout_in_ms=50)
    with TestClient(app) as c:
        r = c.post("/v1/models/slow:predict", content=b'{"inputs": 2500}')
        assert r.status_code == 504 and r.json() == {"error": "Deadline Exceeded"}
        assert c.post("/v1/models/hp:predict", content=b'{"instances": [0]}').json() == \
            {"predictions": [2.0]}


def test_a_loop_past_the_timeout_stops_and_frees_its_thread():
    # one evaluating thread: had the endless loop kept it, the second request could not run
    from starlette.testclient import TestClient

    import tfdeploy.serve

    m = su.endless()
    assert m(np.array([0.25, 0.5], np.float32)).tolist() == [0.5, 1.0]
    app = tfdeploy.serve.app(models={"endless": m, "hp": su.half_plus(2.0)},
                             rest_api_timeout_in_ms=300, rest_api_num_threads=1)
    with TestClient(app) as c:
        t = time.perf_counter()
        r = c.post("/v1/models/endless:predict", content=b'{"instances": [0, 0]}')
        assert r.status_code == 504 and r.json() == {"error": "Deadline Exceeded"}
        assert c.post("/v1/models/hp:predict", content=b'{"instances": [0]}').json() == \
            {"predictions": [2.0]}
        assert time.perf_counter() - t < 10
    from tfdeploy.runtime import limits

    assert limits.LIMITS.max_loop_seconds is None  # (the server set no global limit)


def test_registry_versions_policies_labels_and_snapshots(tmp_path):
    from tfdeploy.serve.registry import Registry

    base = tmp_path / "m"
    su.save_version(base, 1, su.half_plus(1.0))
    su.save_version(base, 2, su.half_plus(2.0))
    bad = base / "3"
    bad.mkdir()
    (bad / "model.tfd").write_bytes(b"TFDEPLOY\x01\x00\x00\x00")  # truncated
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    cfgs = [config.ModelConfig("latest", str(base), labels={"old": 1, "gone": 7}),
            config.ModelConfig("all", str(base), policy=config.VersionPolicy("all")),
            config.ModelConfig("some", str(base), policy=config.VersionPolicy(
                "specific", 1, (1, 3)))]
    reg = Registry(cfgs, str(snaps))
    reg.poll()
    # the newest version does not load: the policy falls back to the newest that does
    assert sorted(reg.entries["latest"].serving) == [2]
    assert sorted(reg.entries["all"].serving) == [1, 2]
    assert sorted(reg.entries["some"].serving) == [1]
    st = {s.version: (s.state, s.error_code) for s in reg.version_status("latest")}
    assert st == {3: ("END", "UNKNOWN"), 2: ("AVAILABLE", "OK")}
    assert str(bad / "model.tfd") in reg.version_status("latest", 3)[0].error_message
    x = np.array([2.0], np.float32)
    assert reg.resolve("latest").model(x)[0] == 3.0
    with pytest.raises(ServingError, match="Specific\\(latest, 1\\)"):
        reg.resolve("latest", label="old")
    with pytest.raises(ServingError, match="Unrecognized servable version label: nope"):
        reg.resolve("latest", label="nope")
    assert reg.resolve("all", label=None, version=1).model(x)[0] == 2.0
    assert reg.resolve("all", version=1).signature(None).warm_up()  # zeros of shape (1,)
    # served from read-only snapshots named by content, shared by equal content
    s2 = reg.resolve("all", version=2)
    assert Path(s2.snapshot).parent == snaps and s2.snapshot != s2.source
    assert s2.snapshot == reg.resolve("latest").snapshot
    assert not os.access(s2.snapshot, os.W_OK) or os.geteuid() == 0
    assert not [p for p in snaps.iterdir() if p.name.startswith(".load-")]
    # a touched file with the same content is not reloaded
    os.utime(base / "2" / "model.tfd", (1, 1))
    reg.poll()
    reg.poll()
    assert reg.resolve("all", version=2) is s2
    # a fixed version 3 is loaded once unchanged over a poll, then switched to
    su.half_plus(30.0).save(bad / "model.tfd")
    reg.poll()
    assert sorted(reg.entries["latest"].serving) == [2]
    reg.poll()
    assert sorted(reg.entries["latest"].serving) == [3]
    assert reg.resolve("latest").model(x)[0] == 31.0
    assert reg.version_status("latest", 2)[0].state == "END"
    reg.close()
    assert sorted(p.name for p in snaps.iterdir()) == []


def test_cors_preflight_and_headers():
    from starlette.testclient import TestClient

    import tfdeploy.serve

    with TestClient(tfdeploy.serve.app(su.half_plus(2.0), name="hp", enable_cors=True)) as c:
        r = c.options("/v1/models/hp:predict", headers={"Origin": "https://example.org"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
        r = c.options("/v1/models/hp:predict")
        assert r.status_code == 400 and "Origin header is missing" in r.json()["error"]
        r = c.post("/v1/models/hp:predict", content=b'{"instances": [0]}')
        assert r.headers["access-control-allow-methods"] == "POST, GET"


@pytest.mark.tf
def test_converted_saved_model_serves_its_signature_as_tf_serving_would(tmp_path):
    """A Keras model with two named inputs and outputs, exported as a SavedModel (what TF
    Serving would serve), converted and served: the same signature names, TF's values."""
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    image = keras.Input((4, 4, 1), name="image")
    meta = keras.Input((3,), name="meta")
    h = keras.layers.Concatenate()([keras.layers.Flatten()(keras.layers.Conv2D(2, 3)(image)),
                                    meta])
    logits = keras.layers.Dense(3, name="logits")(h)
    prob = keras.layers.Softmax(name="prob")(logits)
    keras.Model({"image": image, "meta": meta}, {"logits": logits, "prob": prob}).export(
        str(tmp_path / "sm"), verbose=False)
    sig = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    model = td.convert(str(tmp_path / "sm"))
    model.save(tmp_path / "kmodel.tfd")
    rng = np.random.default_rng(0)
    x = {"image": rng.random((3, 4, 4, 1), dtype=np.float32),
         "meta": rng.random((3, 3), dtype=np.float32)}
    want_tf = {k: v.numpy() for k, v in sig(**{k: tf.constant(v) for k, v in x.items()}).items()}
    want = dict(zip([s.name for s in model.outputs], model(**x)))
    server = su.ServerProcess([str(tmp_path / "kmodel.tfd")], tmp_path / "log")
    try:
        server.wait_ready(["kmodel"])
        meta_json = httpx.get(f"{server.url}/v1/models/kmodel/metadata").json()
        served = meta_json["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert sorted(served["inputs"]) == sorted(sig.structured_input_signature[1])
        assert sorted(served["outputs"]) == sorted(sig.structured_outputs)
        rows = [{k: v[i].tolist() for k, v in x.items()} for i in range(3)]
        r = httpx.post(f"{server.url}/v1/models/kmodel:predict",
                       content=json.dumps({"instances": rows}), timeout=30)
        got = {k: np.array([p[k] for p in r.json()["predictions"]], np.float32)
               for k in want_tf}
    finally:
        server.stop()
    for k in want_tf:
        np.testing.assert_array_equal(got[k], want[k])
        np.testing.assert_allclose(got[k], want_tf[k], rtol=1e-5, atol=1e-6)
