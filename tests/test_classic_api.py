"""The original tfdeploy's extension API: custom ops, implementations, setup, ensembles."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import tfdeploy as td
from graphs import dense_softmax, model_of, placeholder
from tfdeploy import registry
from tfdeploy.ir.graph import Node


@pytest.fixture
def cleanup():
    names = []
    yield names
    for n in names:
        registry.unregister(n)
    td.setup(None, td.IMPL_NUMPY)


def test_operation_subclass_as_documented(cleanup):
    cleanup.append("InvertedSoftmax")

    class InvertedSoftmax(td.Operation):
        def func(a):
            e = np.exp(-a)
            return np.divide(e, np.sum(e, axis=-1, keepdims=True)),

    m = model_of([placeholder("x", "float32", [None, 3]), Node("y", "InvertedSoftmax", ["x"])],
                 ["x"], ["y"])
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    e = np.exp(-x)
    np.testing.assert_allclose(m.get("y").eval({m.get("x"): x}), e / e.sum(), rtol=1e-6)


def test_factory_with_and_without_arguments_and_attrs(cleanup):
    cleanup += ["Twice", "ScaleBy"]

    @td.Operation.factory
    def Twice(a):
        return a * 2,

    @td.Operation.factory(attrs=("factor",))
    def ScaleBy(a, factor):
        return a * factor,

    assert issubclass(Twice, td.Operation) and Twice.types == ("Twice",)
    m = model_of([placeholder("x", "float32", [2]), Node("t", "Twice", ["x"]),
                  Node("s", "ScaleBy", ["t"], {"factor": 5.0})], ["x"], ["s"])
    np.testing.assert_array_equal(m(np.array([1, 2], np.float32)), [10, 20])


def test_add_impl_use_impl_and_setup(cleanup):
    cleanup.append("Which")

    @td.Operation.factory
    def Which(a):
        return np.full_like(a, 1),

    @Which.add_impl(td.IMPL_SCIPY)
    def Which_scipy(a):
        return np.full_like(a, 2),

    def run():
        m = model_of([placeholder("x", "float32", [1]), Node("w", "Which", ["x"])], ["x"], ["w"])
        return m(np.zeros(1, np.float32))[0]

    assert run() == 1
    if importlib.util.find_spec("scipy") is not None:
        td.setup(None, td.IMPL_SCIPY)
        assert run() == 2
        td.setup(None, td.IMPL_NUMPY)
        assert run() == 1
    Which.use_impl(td.IMPL_SCIPY)  # (a user's kernel: it says itself what it needs)
    assert run() == 2
    with pytest.raises(td.TFDeployError, match="unknown implementation"):
        td.setup(None, "cuda")


def test_setup_scipy_switches_builtin_special_functions(cleanup):
    pytest.importorskip("scipy")
    for op in ("Lgamma", "Digamma", "Erf", "Erfc"):
        d = registry.get_opdef(op)
        assert d is not None and {td.IMPL_NUMPY, td.IMPL_SCIPY} <= set(d.impls), op
    td.setup(None, td.IMPL_SCIPY)
    assert registry.choose_impl(registry.get_opdef("Erf")) is registry.get_opdef("Erf").impls[
        td.IMPL_SCIPY]
    # an op with no scipy implementation stays numpy
    assert registry.choose_impl(registry.get_opdef("Relu")) is registry.get_opdef("Relu").impls[
        td.IMPL_NUMPY]


def test_scipy_implementation_without_scipy_is_a_clear_error(monkeypatch, cleanup):
    """Choosing tfdeploy's scipy kernels where scipy is not installed fails at once, naming
    the package, not with an ImportError from inside the first evaluation."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "scipy" else real(name, *a))
    with pytest.raises(td.TFDeployError, match="needs scipy, which is not installed"):
        td.setup(None, td.IMPL_SCIPY)
    assert registry.default_impl() == td.IMPL_NUMPY
    with pytest.raises(td.TFDeployError, match="needs scipy"):
        td.get_op("Erf").use_impl(td.IMPL_SCIPY)
    assert registry.chosen_impl(registry.get_opdef("Erf")) == td.IMPL_NUMPY


def test_builtin_registration_rejects_duplicates():
    with pytest.raises(td.TFDeployError, match="already has a numpy implementation"):
        registry.op("Relu")(lambda x: x)


def _three_models(tmp_path):
    paths = []
    for seed in range(3):
        m, _ = dense_softmax(n_in=8, n_out=4, seed=seed)
        p = tmp_path / f"model{seed}.pkl"
        m.save(p)
        paths.append(p)
    return paths


@pytest.mark.parametrize("method, combine", [
    (td.METHOD_MEAN, lambda v: np.mean(v, axis=0)),
    (td.METHOD_MAX, lambda v: np.max(v, axis=0)),
    (td.METHOD_MIN, lambda v: np.min(v, axis=0)),
])
def test_ensemble_methods(tmp_path, method, combine):
    paths = _three_models(tmp_path)
    ens = td.Ensemble(paths, method=method)
    inp, out = ens.get("input", "output")
    assert isinstance(out, td.TensorEnsemble)
    x = np.random.default_rng(0).random((5, 8), dtype=np.float32)
    values = [td.Model(p)(x) for p in paths]
    got = out.eval({inp: x})
    np.testing.assert_allclose(got, combine(values), rtol=1e-6)
    assert got.dtype == np.float32
    np.testing.assert_allclose(ens.eval(out, {inp: x}), got)


def test_ensemble_custom(tmp_path):
    paths = _three_models(tmp_path)
    ens = td.Ensemble(paths, method=td.METHOD_CUSTOM)
    inp, out = ens.get("input", "output")
    x = np.ones((2, 8), np.float32)
    with pytest.raises(td.TFDeployError, match="func_custom"):
        out.eval({inp: x})
    out.func_custom = lambda values: values[0] - values[1]
    values = [td.Model(p)(x) for p in paths]
    np.testing.assert_allclose(out.eval({inp: x}), values[0] - values[1], rtol=1e-6)
    with pytest.raises(td.TFDeployError, match="unknown ensemble method"):
        td.Ensemble(paths, method="median")
