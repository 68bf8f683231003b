"""A few rows by a large constant matrix (``kernels/math/few_rows.py``): a row at a time where
measured faster, the same values as the product (each row the one-row product's, exactly),
the same choice fused and unfused."""

from __future__ import annotations

import time

import numpy as np
import pytest

from graphs import const, placeholder
from tfdeploy.compiler.pipeline import compile_plan
from tfdeploy.ir.graph import Graph, Node, TensorSpec
from tfdeploy.kernels.math import few_rows

RNG = np.random.default_rng(0)
K, N = 512, 512  # 1 MB: a candidate


@pytest.fixture
def fresh(monkeypatch):
    """An empty choice cache, restored after the test."""
    monkeypatch.setattr(few_rows, "_CHOICES", {})
    return few_rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("form", [0, 1, 2])  # PRODUCT, ROWS, BLOCKS
def test_rows_by_computes_the_product(fresh, monkeypatch, dtype, form):
    monkeypatch.setattr(fresh, "_measure", lambda m, w, columns=False: form)
    w = RNG.standard_normal((K, N)).astype(dtype)
    w.setflags(write=False)
    fn = fresh.rows_by(w)
    for m in (1, 2, 3, 5, 8, 9, 33):
        x = RNG.standard_normal((m, K)).astype(dtype)
        y = fn(x)
        assert y.shape == (m, N) and y.dtype == dtype and y.flags.c_contiguous
        np.testing.assert_allclose(y, x @ w, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-4 if dtype == np.float32 else 1e-11)
        if form == fresh.ROWS and 2 <= m <= fresh.MAX_ROWS:  # each row: the one-row product
            for i in range(m):
                np.testing.assert_array_equal(y[i], np.dot(x[i], w))
                np.testing.assert_array_equal(y[i], np.dot(x[i:i + 1], w)[0])
        if form == fresh.BLOCKS and 2 <= m <= fresh.MAX_ROWS:  # the blocks' products summed
            r = fresh.block_rows(K, N, m)
            assert r < K
            want = x[:, :r] @ w[:r]
            for j in range(r, K, r):
                want += x[:, j:j + r] @ w[j:j + r]
            np.testing.assert_array_equal(y, want)
    # the choices of the candidates only, kept per (rows, K, N, dtype)
    assert fresh._CHOICES == {(m, K, N, np.dtype(dtype)): form for m in (2, 3, 5, 8)}
    # a non-contiguous input (a transposed view), and another dtype (multiplied directly)
    xt = RNG.standard_normal((K, 3)).astype(dtype).T
    np.testing.assert_allclose(fn(xt), xt @ w, rtol=1e-5, atol=1e-4)
    other = np.float64 if dtype == np.float32 else np.float32
    x = RNG.standard_normal((3, K)).astype(other)
    assert fn(x).dtype == np.result_type(other, dtype)


def test_small_or_non_float_weights_multiply_directly():
    assert few_rows.rows_by(np.ones((64, 256), np.float32)) is None  # 64 KB
    assert few_rows.rows_by(np.ones((784, 100), np.float32)) is None  # 313 KB
    assert few_rows.rows_by(np.ones((512, 512), np.int32)) is None
    assert few_rows.rows_by(np.ones((4, 512, 512), np.float32)) is None
    assert few_rows.rows_by(np.ones((512, 512), np.float32)) is not None


def test_the_choice_is_a_measurement(fresh, monkeypatch):
    """Timed once per shape (every form, alternately), then kept: the clock decides."""
    calls = []
    real_rows = fresh._rows
    monkeypatch.setattr(fresh, "_rows", lambda x, w: calls.append(x.shape[0]) or real_rows(x, w))
    w = RNG.standard_normal((K, N)).astype(np.float32)
    fn = fresh.rows_by(w)
    assert fresh.block_rows(K, N, 2) < K  # (K = 512 rows: two blocks or more)

    def clock(*durations):  # each form takes its duration, every round
        seq = iter([t for _ in range(fresh.ROUNDS) for d in durations for t in (0, d)])
        monkeypatch.setattr(time, "perf_counter", lambda: next(seq))

    clock(1, 1, 1)  # no form clearly faster than the product: the product
    fn(RNG.standard_normal((2, K)).astype(np.float32))
    assert fresh._CHOICES[(2, K, N, np.dtype(np.float32))] == fresh.PRODUCT
    assert calls == [2] * fresh.ROUNDS
    fn(RNG.standard_normal((2, K)).astype(np.float32))  # kept: no timing, the product
    assert calls == [2] * fresh.ROUNDS
    clock(10, 1, 5)  # rows
    fn(RNG.standard_normal((3, K)).astype(np.float32))
    assert fresh._CHOICES[(3, K, N, np.dtype(np.float32))] == fresh.ROWS
    clock(10, 5, 1)  # block sums
    fn(RNG.standard_normal((4, K)).astype(np.float32))
    assert fresh._CHOICES[(4, K, N, np.dtype(np.float32))] == fresh.BLOCKS
    # another weight of that shape takes the choice without timing
    calls.clear()
    y = fresh.rows_by(w * 2)(x := RNG.standard_normal((3, K)).astype(np.float32))
    assert calls == [3] and np.allclose(y, x @ (w * 2), rtol=1e-5, atol=1e-4)


def _dense_relu():
    """relu(x @ w + b) as a graph, w [K, N] random (a candidate), and w, b."""
    w = RNG.standard_normal((K, N)).astype(np.float32)
    b = RNG.standard_normal(N).astype(np.float32)
    nodes = [placeholder("x"), const("w", w), const("b", b),
             Node("mm", "MatMul", ["x", "w"], {"T": "float32", "transpose_a": False,
                                               "transpose_b": False}),
             Node("add", "BiasAdd", ["mm", "b"], {"T": "float32"}),
             Node("act", "Relu", ["add"], {"T": "float32"})]
    return Graph(nodes, [TensorSpec("x", "x:0", "float32")],
                 [TensorSpec("act", "act:0", "float32")]), w, b


@pytest.mark.parametrize("m", [2, 3, 6])
@pytest.mark.parametrize("form", ["PRODUCT", "ROWS", "BLOCKS"])
def test_dense_chain_fused_and_unfused_agree_bit_for_bit(fresh, monkeypatch, m, form):
    """The fused Dense chain and the unfused MatMul kernel take the same choice: the same
    values, in each form."""
    calls = []
    for name in ("_rows", "_sums"):
        real = getattr(fresh, name)
        monkeypatch.setattr(fresh, name, lambda x, w, real=real, name=name:
                            calls.append(name) or real(x, w))
    fresh._CHOICES[(m, K, N, np.dtype(np.float32))] = getattr(fresh, form)  # (no timing)
    g, w, b = _dense_relu()
    plain = compile_plan(g, ["act:0"], ["x:0"], optimize=False)
    opt = compile_plan(g, ["act:0"], ["x:0"])
    assert any(st.members for st in opt.steps)  # fused
    x = RNG.standard_normal((m, K)).astype(np.float32)
    got, want = opt(x)[0], plain(x)[0]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got, np.maximum(x @ w + b, 0),
                               rtol=1e-5, atol=1e-4)
    # both plans took the form
    assert calls == {"PRODUCT": [], "ROWS": ["_rows"] * 2, "BLOCKS": ["_sums"] * 2}[form]


@pytest.mark.parametrize("form", [0, 1, 2])  # PRODUCT, COLUMNS, BLOCKS
def test_columns_by_computes_the_product(fresh, monkeypatch, form):
    """``a @ v`` for v's columns (a recurrent cell's transposed states), C-contiguous, in the
    form chosen; outside 2-8 columns, or another dtype, the product."""
    monkeypatch.setattr(fresh, "_measure", lambda m, w, columns=False: form)
    a = RNG.standard_normal((4 * 256, 256)).astype(np.float32)  # 1 MB
    fn = fresh.columns_by(a)
    for b in (1, 2, 3, 8, 9):
        for v in (RNG.standard_normal((256, b)).astype(np.float32),
                  np.asfortranarray(RNG.standard_normal((256, b)).astype(np.float32)),
                  RNG.standard_normal((b, 256)).astype(np.float32).T):
            y = fn(v)
            assert y.shape == (1024, b) and y.dtype == np.float32 and y.flags.c_contiguous
            np.testing.assert_allclose(y, a @ v, rtol=1e-5, atol=1e-4)
            if form == fresh.COLUMNS and 2 <= b <= 8:
                for j in range(b):
                    np.testing.assert_array_equal(y[:, j], np.dot(a, np.ascontiguousarray(
                        v[:, j])))
            if form == fresh.BLOCKS and 2 <= b <= 8:
                r = fresh.block_rows(1024, 256, b)
                np.testing.assert_array_equal(y[:r], np.dot(a[:r], v))
    assert set(fresh._CHOICES) == {("columns", b, 1024, 256, np.dtype(np.float32))
                                   for b in (2, 3, 8)}
    assert fresh.columns_by(a[:64]) is None  # 64 KB
    assert fn(RNG.standard_normal((256, 3))).dtype == np.float64  # (float64 states: the product)


def test_block_rows_keep_a_block_below_the_small_matrix_limit():
    for m, k, b in [(2048, 512, 2), (2048, 512, 8), (4096, 1024, 3), (512, 128, 8), (64, 4096, 8)]:
        r = few_rows.block_rows(m, k, b)
        assert r >= 16 and r & (r - 1) == 0 and (r * k * b <= few_rows.BLOCK_WORK or r == 16)
        assert r * 2 * k * b > few_rows.BLOCK_WORK or r * 2 >= m
    assert few_rows.block_rows(2048, 512, 2) == 512 and few_rows.block_rows(2048, 512, 8) == 128


def test_the_columns_measurement_picks_the_fastest_clear_form(fresh, monkeypatch):
    w = RNG.standard_normal((512, 128)).astype(np.float32)
    for times, want in (([10, 5, 3], fresh.BLOCKS), ([10, 5, 9], fresh.COLUMNS),
                        ([10, 9, 9], fresh.PRODUCT)):
        seq = iter([t for _ in range(fresh.ROUNDS) for d in times for t in (0, d)])
        monkeypatch.setattr(time, "perf_counter", lambda seq=seq: next(seq))
        assert fresh._measure(4, w, columns=True) == want


@pytest.mark.parametrize("form", ["PRODUCT", "ROWS", "BLOCKS"])
def test_few_rows_are_not_split_over_threads_unless_a_product(fresh, monkeypatch, form):
    """A chain's product of a few rows splits over threads (blocks of rows, each a product)
    only where the product is the measured form: another form runs on one thread (OpenBLAS's
    slow product of a few rows, split in two, took 1.37x the one-thread time of 8 x 768 x 3072
    layers on two threads)."""
    from tfdeploy.kernels.nn import fused
    from tfdeploy.runtime import parallel

    m = 6
    fresh._CHOICES[(m, K, N, np.dtype(np.float32))] = getattr(fresh, form)  # (no timing)
    g, w, b = _dense_relu()
    # (a product splits from 2 rows, as by a weight of several MB; two threads, free)
    monkeypatch.setattr(parallel, "MIN_WORK", 2 * K * N // (2 * parallel.MATMUL_FACTOR))
    opt = compile_plan(g, ["act:0"], ["x:0"])
    assert opt.steps[0].kernel.chain.split_rows == 2
    monkeypatch.setattr(parallel, "blocks", lambda *a, **k: 2)
    split = []
    real = fused.FusedChain._split
    monkeypatch.setattr(fused.FusedChain, "_split",
                        lambda self, *a: split.append(1) or real(self, *a))
    x = RNG.standard_normal((m, K)).astype(np.float32)
    got = opt(x)[0]
    np.testing.assert_allclose(got, np.maximum(x @ w + b, 0), rtol=1e-5,
                               atol=1e-4)
    assert bool(split) == (form == "PRODUCT")


def test_deterministic_takes_the_default_forms(monkeypatch):
    """``td.setup(deterministic=True)``: no choice is timed, each takes its default form (the
    product, im2col, the second ufunc), choices kept before are forgotten; False measures
    again."""
    import tfdeploy as td
    from tfdeploy.kernels.nn import winograd
    from tfdeploy.numerics import ufunc_speed

    saved = dict(few_rows._CHOICES)
    w = RNG.standard_normal((K, N)).astype(np.float32)
    key = (3, K, N, np.dtype(np.float32))
    few_rows._CHOICES[key] = few_rows.ROWS  # as a measurement would have kept it
    winograd._PAYS["kept"] = True
    try:
        td.setup(deterministic=True)
        assert not ufunc_speed.measuring()
        assert key not in few_rows._CHOICES and "kept" not in winograd._PAYS
        monkeypatch.setattr(time, "perf_counter", lambda: pytest.fail("a choice was timed"))
        calls = []
        real_rows = few_rows._rows
        monkeypatch.setattr(few_rows, "_rows", lambda x, w: calls.append(1) or real_rows(x, w))
        x = RNG.standard_normal((3, K)).astype(np.float32)
        y = few_rows.rows_by(w)(x)
        assert few_rows._CHOICES[key] == few_rows.PRODUCT and not calls
        np.testing.assert_array_equal(y, np.dot(x, w))
        assert not ufunc_speed.cheaper("negative", "sin", "float64")  # (measured: True)
        assert ufunc_speed.fastest([pytest.fail, pytest.fail], 3, 0.9) == 0
        assert not winograd.pays("new", pytest.fail, pytest.fail)
    finally:
        monkeypatch.undo()
        td.setup(deterministic=False)
    assert ufunc_speed.measuring() and key not in few_rows._CHOICES
    assert ufunc_speed.cheaper("negative", "sin", "float64")
    few_rows._CHOICES.update(saved)


@pytest.mark.parametrize("value, measuring", [("1", False), ("true", False), ("", True),
                                              ("0", True)])
def test_deterministic_from_the_environment(value, measuring):
    import os
    import subprocess
    import sys

    code = "from tfdeploy.numerics import ufunc_speed as u; print(u.measuring())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TFDEPLOY_DETERMINISTIC": value}, check=True)
    assert out.stdout.strip() == str(measuring)
