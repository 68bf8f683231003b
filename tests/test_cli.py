"""The command line: the README's example, convert and info."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tfdeploy as td

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _run(*args):
    return subprocess.run([sys.executable, "-m", "tfdeploy", *args], capture_output=True,
                          text=True, env=ENV, timeout=600)


@pytest.mark.tf
def test_example_runs_without_tensorflow_and_matches(tmp_path):
    pytest.importorskip("tensorflow")
    r = _run("example", "--batch", "4", "--output", str(tmp_path / "cnn.tfd"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "TensorFlow cannot be imported" in r.stdout
    diff = float(r.stdout.split("max |tfdeploy - TensorFlow| = ")[1].split()[0])
    assert diff < 1e-4
    assert td.Model(tmp_path / "cnn.tfd").inputs[0].shape == [None, 28, 28, 1]


@pytest.mark.tf
def test_convert_saved_model_and_info(tmp_path):
    tf = pytest.importorskip("tensorflow")

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def f(self, x):
            return {"y": tf.nn.relu(x) * 3.0}

    m = M()
    tf.saved_model.save(m, str(tmp_path / "sm"), signatures=m.f)
    out = tmp_path / "m.tfd"
    r = _run("convert", str(tmp_path / "sm"), str(out))
    assert r.returncode == 0, r.stderr
    x = np.array([[-1, 2]], np.float32)
    np.testing.assert_array_equal(td.Model(out)(x), [[0, 6]])
    r = _run("info", str(out))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["default"]["ops"]["Relu"] == 1


def test_info_on_a_bad_file_is_a_clear_error(tmp_path):
    p = tmp_path / "junk.tfd"
    p.write_bytes(b"not a model")
    r = _run("info", str(p))
    assert r.returncode != 0
    assert "not a tfdeploy model file" in r.stderr
    assert "Traceback" not in r.stderr
