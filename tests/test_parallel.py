"""tfdeploy's threads: BLAS kept to one thread, large steps split into blocks of rows over a
pool, results as without threads, a forked child that still works."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import tfdeploy as td
from graphs import Node, const, model_of, placeholder
from tfdeploy.runtime import parallel, threads


@pytest.fixture
def two_threads():
    saved = threads._state["threads"]
    td.setup(threads=2)
    yield
    threads._state["threads"] = saved


def _mlp(k=256, n=512):
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((k, n)).astype(np.float32) / 16
    w2 = rng.standard_normal((n, 10)).astype(np.float32) / 16
    nodes = [placeholder("x", "float32", [None, k]), const("w1", w1),
             const("b1", rng.standard_normal(n).astype(np.float32)), const("w2", w2),
             Node("h", "MatMul", ["x", "w1"], {"T": "float32"}),
             Node("hb", "BiasAdd", ["h", "b1"], {"T": "float32"}),
             Node("r", "Relu", ["hb"], {"T": "float32"}),
             Node("y", "MatMul", ["r", "w2"], {"T": "float32"})]
    return model_of(nodes, ["x"], ["y"]), (w1, w2)


def test_large_products_split_over_threads(two_threads, split_calls, monkeypatch):
    calls = split_calls
    m, (w1, w2) = _mlp()
    g = m.default_graph
    b1 = g.node("b1").attrs["value"]
    # (80 rows: 10 M multiply-adds, which elementwise work would split and a product does not)
    for rows in (1, 3, 80, 2000):
        x = np.random.default_rng(rows).standard_normal((rows, 256)).astype(np.float32)
        want = np.maximum(x @ w1 + b1, 0) @ w2
        for _ in range(2):  # (the first call with a shape traces it, unfused)
            np.testing.assert_allclose(m(x), want, rtol=1e-4, atol=1e-4)
    assert (2000, 2) in calls and not any(r < 100 for r, _ in calls)


def test_products_split_from_more_work_than_other_steps(two_threads):
    """A matrix product's multiply-adds are cheap (BLAS): it splits only from
    ``MATMUL_FACTOR`` times the work of other steps' blocks."""
    work = 3 * parallel.MIN_WORK  # enough for two blocks of depthwise or elementwise work
    assert parallel.blocks(100, work / 100) == 2
    assert parallel.blocks(100, work / 100, matmul=True) == 1
    assert parallel.blocks(100, parallel.MATMUL_FACTOR * work / 100, matmul=True) == 2


def test_one_thread_never_splits(monkeypatch):
    saved = threads._state["threads"]
    td.setup(threads=1)
    try:
        monkeypatch.setattr(parallel, "run_blocks", lambda *a: pytest.fail("split"))
        m, _ = _mlp()
        m(np.ones((4000, 256), np.float32))
    finally:
        threads._state["threads"] = saved


def test_setup_rejects_nonsense():
    with pytest.raises(ValueError, match="threads must be at least 1"):
        td.setup(threads=0)
    with pytest.raises(ValueError, match="blas_threads must be at least 1"):
        td.setup(blas_threads=-2)


def test_blas_runs_one_thread_unless_the_user_chose():
    pytest.importorskip("threadpoolctl")
    code = ("import numpy as np, tfdeploy as td, threadpoolctl, sys; sys.path.insert(0, 'tests');"
            "from graphs import dense_softmax; m, _ = dense_softmax();"
            "m(np.ones((2, 784), np.float32));"
            "print([i['num_threads'] for i in threadpoolctl.threadpool_info()"
            " if i['user_api'] == 'blas'])")
    env = {k: v for k, v in os.environ.items() if k not in threads.BLAS_ENV}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=root)
    assert r.returncode == 0, r.stderr
    assert set(eval(r.stdout)) == {1}
    env["OPENBLAS_NUM_THREADS"] = "2"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=root)
    assert r.returncode == 0, r.stderr
    assert 1 not in set(eval(r.stdout)) or threads.cpu_count() == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_workers(two_threads):
    m, _ = _mlp()
    x = np.ones((3000, 256), np.float32)
    want = m(x)  # the pool exists in the parent now
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports by its exit status
        try:
            ok = np.allclose(m(x), want)
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_a_block_of_a_split_never_splits_again(two_threads):
    """Inside a block (on the caller's thread or a worker), ``blocks`` is 1: a worker's block
    waiting on blocks queued behind itself would wait forever. Outside, as before."""
    seen = []

    def block(a, b):
        seen.append(parallel.blocks(1000, 1 << 30))
        parallel.run_blocks(lambda c, d: seen.append(("inner", c, d)), 4,
                            parallel.blocks(4, 1 << 30))

    assert parallel.blocks(1000, 1 << 30) == 2
    parallel.run_blocks(block, 10, 2)
    assert seen.count(1) == 2 and sorted(x for x in seen if x != 1) == [("inner", 0, 4)] * 2
    assert parallel.blocks(1000, 1 << 30) == 2


def test_blocks_run_with_numpys_warnings_off(two_threads):
    """A split's blocks, on the caller's thread and on the workers (whose numpy error state
    is their own), compute inf and NaN silently, as a model call does on its own thread."""
    got = []

    def block(a, b):
        got.append(tuple(sorted(set(np.geterr().values()))))

    with np.errstate(all="warn"):
        parallel.run_blocks(block, 10, 2)
        assert np.geterr()["divide"] == "warn"
    assert got == [("ignore",), ("ignore",)]


def _dense_residual(k, n):
    """relu(x @ w + b + r) as a model (a fused Dense chain with a residual), and w, b."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((k, n)).astype(np.float32) / 16
    b = rng.standard_normal(n).astype(np.float32)
    nodes = [placeholder("x", "float32", [None, k]), placeholder("r", "float32", [None, n]),
             const("w", w), const("b", b),
             Node("h", "MatMul", ["x", "w"], {"T": "float32"}),
             Node("hb", "BiasAdd", ["h", "b"], {"T": "float32"}),
             Node("s", "AddV2", ["hb", "r"], {"T": "float32"}),
             Node("y", "Relu", ["s"], {"T": "float32"})]
    return model_of(nodes, ["x", "r"], ["y"]), w, b


def test_products_of_few_rows_split_by_columns(split_everything):
    """A product by a weight of more columns than it has rows splits its columns over the
    threads (each block packs a share of the weight, not all of it), then runs its epilogue
    by blocks of rows; of more rows, its rows."""
    m, w, b = _dense_residual(96, 512)
    rng = np.random.default_rng(2)
    for rows, want_split in ((10, (32, 4)), (600, (600, 4))):
        x = rng.standard_normal((rows, 96)).astype(np.float32)
        r = rng.standard_normal((rows, 512)).astype(np.float32)
        for _ in range(2):  # (the first call with a shape traces it, unfused)
            split_everything.clear()
            np.testing.assert_allclose(m(x, r), np.maximum(x @ w + b + r, 0), rtol=1e-5,
                                       atol=1e-5)
        assert want_split in split_everything
    assert parallel.by_columns(49, 2048, 2) and not parallel.by_columns(784, 512, 2)
    assert not parallel.by_columns(10, 48, 2)  # (too few columns for a block each)


def test_pointwise_convolutions_of_small_maps_split_by_columns(split_everything):
    from tfdeploy.kernels.nn.runner import conv_runner

    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 7, 7, 64)).astype(np.float32)
    w = rng.standard_normal((1, 1, 64, 256)).astype(np.float32)
    b = rng.standard_normal(256).astype(np.float32)
    seen = []

    def epilogue(y, start, stop):
        seen.append((start, stop))
        v = y.reshape(-1, 256)[start:stop]
        np.maximum(v, 0, out=v)

    def relu(src, dst):  # (a prologue: applied to the input as it is copied)
        np.maximum(src, 0, out=dst)

    for strides, prologue in (([1, 1, 1, 1], None), ([1, 2, 2, 1], None), ([1, 1, 1, 1], relu)):
        run = conv_runner("Conv2D", {"strides": strides, "padding": "SAME"}, w, b,
                          prologue=prologue)
        split_everything.clear()
        seen.clear()
        got = run(x, epilogue)
        xs = x[:, ::strides[1], ::strides[2]]
        if prologue is not None:
            xs = np.maximum(xs, 0)
        np.testing.assert_allclose(got, np.maximum(xs @ w[0, 0] + b, 0), rtol=1e-5,
                                   atol=1e-4)
        assert (16, 4) in split_everything
        # the epilogue on every row once, in blocks of rows over the threads
        rows = xs.shape[1] * xs.shape[2]
        assert len(seen) == 4 and sorted(seen)[0][0] == 0 and sorted(seen)[-1][1] == rows
        assert all(a[1] == b[0] for a, b in zip(sorted(seen), sorted(seen)[1:]))
