"""The benchmark suite's models convert with tfdeploy and agree with TensorFlow; its report
helpers hold together.

Every builder of ``benchmarks/models.py`` is traced, converted and run on its smallest batch
(the 224x224 networks are ``slow``); agreement is the suite's own: within ``case.tol`` of the
output's magnitude.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import models  # noqa: E402
import report  # noqa: E402
from common import race, short_error, stats  # noqa: E402

#: the 224x224 networks (float32 and mixed_float16)
#: (the apps group's networks: test_applications.py checks every keras.applications model)
HEAVY = [c.name for c in models.CASES.values()
         if c.group not in ("dense", "apps") and c.input(1).size > 1e5]
LIGHT = [c.name for c in models.CASES.values()
         if c.group not in ("dense", "apps") and c.name not in HEAVY]


def _agree(case, got, want):
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{case.name}: shape {got.shape} != TF's {want.shape}"
    scale = float(np.max(np.abs(want)))
    err = float(np.max(np.abs(got - want)))
    assert err <= case.tol * scale, f"{case.name}: max |tfdeploy - TF| {err:.3g}, scale {scale:.3g}"


def _check_keras(name):
    import tfdeploy as td

    case = models.CASES[name]
    model = case.build()
    x = case.input(min(case.batches))
    want = model(x, training=False).numpy()
    _agree(case, td.convert(model)(x), want)


@pytest.mark.tf
@pytest.mark.parametrize("name", LIGHT)
def test_model_converts_and_matches_tf(name):
    pytest.importorskip("tensorflow")
    _check_keras(name)


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("name", HEAVY)
def test_large_model_converts_and_matches_tf(name):
    pytest.importorskip("tensorflow")
    _check_keras(name)


@pytest.mark.tf
def test_classic_dense_model():
    pytest.importorskip("tensorflow")
    import tfdeploy as td

    sess, _, y = models.dense_session(threads=1)
    m = td.Model()
    m.add(y, sess)
    tx, ty = m.get("input", "output")
    x = models.CASES["dense"].input(100)
    np.testing.assert_allclose(ty.eval({tx: x}), models.dense_numpy(x, *models.dense_weights()),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.tf
def test_builders_are_deterministic():
    """The suite converts in one process and rebuilds TF's copy in another."""
    pytest.importorskip("tensorflow")
    for name in ("llama", "rnn"):
        a, b = models.CASES[name].build(), models.CASES[name].build()
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(wa, wb, err_msg=name)


@pytest.mark.tf
def test_the_lists_agree():
    pytest.importorskip("keras")
    import arch

    assert set(models.ARCHITECTURES) == set(arch.ARCHITECTURES)
    for case in models.CASES.values():
        assert case.batches and case.input(case.batches[0]).shape[0] == case.batches[0]
        np.testing.assert_array_equal(case.input(1), case.input(1))


# ---------------------------------------------------------------------------------- reporting
def _records():
    base = {"case": "llama", "batch": 2, "mode": "one"}
    return [{**base, "runtime": "tfdeploy", "status": "ok", "median_s": 2e-3, "p90_s": 3e-3},
            {**base, "runtime": "TF", "status": "ok", "median_s": 1e-3, "p90_s": 1e-3},
            {**base, "runtime": "onnxruntime", "status": "fails",
             "error": "conversion: KeyError: 'x'"},
            {**base, "runtime": "LiteRT", "status": "wrong", "error": "max |LiteRT - TF| = 1"}]


def test_mixed_line_gives_each_model_over_its_float32_twin():
    def rec(case, batch, runtime, median):
        return {"case": case, "batch": batch, "mode": "one", "runtime": runtime,
                "status": "ok", "median_s": median}

    recs = [rec("mlp_f16", 32, "tfdeploy", 1.2e-3), rec("mlp_f32", 32, "tfdeploy", 1e-3),
            rec("mlp_f16", 32, "TF", 0.7), rec("mlp_f32", 32, "TF", 1e-3),
            rec("mobilenetv2_f16", 1, "tfdeploy", 0.03), rec("mobilenetv2", 1, "tfdeploy", 0.02),
            rec("mobilenetv2", 8, "tfdeploy", 0.16)]
    line = report.mixed_line(recs)
    assert "the Dense stack: tfdeploy 1.20, TF 700" in line
    assert "MobileNetV2 at batch 1: tfdeploy 1.50" in line  # (its twin at batch 1, not 8)
    assert "Dense" not in report.mixed_line(recs[4:])
    assert report.mixed_line(recs[6:]) is None


def test_table_shows_times_ratios_and_reasons():
    text = report.time_table(_records(), {"llama": "Llama-style"})
    row = next(line for line in text.splitlines() if line.startswith("| Llama"))
    assert "| 2 (3) | 1 (1) | fails [1] | wrong [2] | 2.00 | - | - |" in row
    assert "[1] conversion: KeyError: 'x'" in text and "[2] max |LiteRT - TF| = 1" in text


def test_machine_line_names_blas_kernels_and_forced_ones():
    m = {"cpu": "AMD EPYC", "avx512": ["avx512f"], "usable_cores": 2, "cores": 2,
         "versions": {"numpy": "2.4.6"},
         "blas": [{"internal_api": "openblas", "version": "0.3.31", "architecture": "Haswell"}],
         "kernels": {"core": "Haswell", "env": {"OPENBLAS_CORETYPE": "Haswell"}}}
    line = report.machine_line(m)
    assert "numpy 2.4.6 (openblas 0.3.31 Haswell kernels; OPENBLAS_CORETYPE=Haswell set)" in line
    m["kernels"]["env"] = {}
    assert "(openblas 0.3.31 Haswell kernels)" in report.machine_line(m)
    del m["kernels"], m["blas"][0]["architecture"]  # (an older result)
    assert "(openblas 0.3.31)" in report.machine_line(m)


def test_threads_table_has_a_row_per_model_and_load():
    ok = {"batch": 1, "status": "ok", "default_s": 2e-3, "one_s": 1e-3, "ratio": 2.0}
    threads = [{"case": "block", "load": "none", **ok},
               {"case": "rnn", "load": "busy", "batch": 1, "status": "fails",
                "error": "timing exit 1"}]
    text = report.extras_tables({"threads": threads}, {"block": "Transformer block"})
    assert "| Transformer block | 1 | none | 2 | 1 | 2.00 |" in text
    assert "| rnn | 1 | busy | fails [1] | | |" in text and "[1] timing exit 1" in text


def test_threads_models_are_checked_and_converted():
    import run

    args = run.parse_args(["--threads-models", "block,rnn", "--extras", "threads"])
    assert args.threads_models == ["block", "rnn"]
    with pytest.raises(SystemExit):
        run.parse_args(["--threads-models", "block,nope"])


def test_models_take_groups_and_the_apps_run_only_when_asked_for():
    import run

    everything = run.parse_args([]).models
    assert "mobilenetv2" in everything and not any(
        models.CASES[n].group == "apps" for n in everything)
    apps = run.parse_args(["--models", "apps,block"]).models
    assert apps == [c.name for c in models.CASES.values() if c.group == "apps"] + ["block"]
    assert {"densenet121", "nasnetmobile", "inceptionv3"} <= set(apps)
    assert run.parse_args(["--models", "cnn,resnet50"]).models == \
        ["mobilenetv2", "resnet50", "efficientnetb0"]
    with pytest.raises(SystemExit):
        run.parse_args(["--models", "nope"])


def test_readme_needs_its_markers(tmp_path):
    result = {"machine": {}, "config": {"modes": ["one"]}, "records": _records()}
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nno markers\n")
    with pytest.raises(SystemExit, match="bench:start"):
        report.rewrite_readme(str(readme), result)
    readme.write_text(f"a\n{report.README_START}\nold\n{report.README_END}\nb\n")
    report.rewrite_readme(str(readme), json.loads(json.dumps(result)))
    text = readme.read_text()
    assert "old" not in text and "Llama" not in text and "| llama | 2 |" in text
    assert text.startswith("a\n") and text.endswith(f"{report.README_END}\nb\n")


def test_race_interleaves_and_counts():
    calls = []
    out = race({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 0.01,
               slice_time=0.001, warmup=0.0)
    assert set(out) == {"a", "b"} and all(len(v) >= 5 for v in out.values())
    assert stats(out["a"])["calls"] == len(out["a"])
    assert "ab" in "".join(calls) and "ba" in "".join(calls)


def test_short_error_keeps_the_line_that_says_why():
    e = RuntimeError('<unknown>:0: error: loc(callsite(fused["X:", "f"] at fused["Y"])): '
                     "'tf.TensorListReserve' op requires element_shape to be static\n"
                     "<unknown>:0: note: loc(fused): called from\n"
                     "<unknown>:0: error: failed to legalize operation")
    assert short_error(e) == ("RuntimeError: 'tf.TensorListReserve' op requires element_shape "
                              "to be static")
    assert short_error(KeyError("keras_tensor_1")) == "KeyError: 'keras_tensor_1'"
    assert short_error(ValueError("ConverterError: x")) == "ValueError: ConverterError: x"


def test_default_threads_time_each_runtime_in_its_own_process(monkeypatch):
    """With one thread the runtimes of a model share one timing process (interleaved); with
    default threads each gets its own, so no peer's spinning pool threads take its cores."""
    import run

    calls = []

    def fake(name, mode, batches, workdir, args, runtimes, tag):
        calls.append((mode, tuple(runtimes), tag))
        return [{"case": name, "runtime": p} for p in runtimes]

    monkeypatch.setattr(run, "_time_process", fake)

    class Args:
        runtimes = "tfdeploy,TF,onnxruntime,LiteRT,numpy"

    recs = run.time_case("mobilenetv2", "one", [1], "/nowhere", Args)
    assert calls == [("one", ("tfdeploy", "TF", "onnxruntime", "LiteRT", "numpy"), "")]
    assert len(recs) == 5
    calls.clear()
    recs = run.time_case("mobilenetv2", "default", [1], "/nowhere", Args)
    assert calls == [("default", (p,), f"-{p}") for p in ("tfdeploy", "TF", "onnxruntime",
                                                            "LiteRT")]
    assert [r["runtime"] for r in recs] == ["tfdeploy", "TF", "onnxruntime", "LiteRT"]
    calls.clear()
    run.time_case("dense", "default", [1], "/nowhere", Args)
    assert [c[1] for c in calls] == [("tfdeploy",), ("numpy",), ("TF",)]
