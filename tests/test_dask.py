"""tfdeploy.dask on a real distributed.LocalCluster of two worker processes.

Models without BLAS calls are compared exactly with ``model(x)`` on the whole batch. Models
with a matrix product are compared exactly with the model applied to the same row blocks in a
worker process: OpenBLAS' last bits depend on a call's row count and thread count (workers run
one thread), so a product's rows are not guaranteed to equal those of one big call.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import dask  # noqa: E402

import dask_ops  # noqa: E402
import tfdeploy as td  # noqa: E402
import tfdeploy.dask as tdd  # noqa: E402
from graphs import Node, const, dense_softmax, model_of, placeholder  # noqa: E402
from tfdeploy.dask import models  # noqa: E402

SRC = os.path.dirname(os.path.dirname(os.path.abspath(td.__file__)))


@pytest.fixture(scope="module")
def client():
    # Workers are spawned with this process's sys.path, so they import this tfdeploy and the
    # tests' helper modules; the plugin registers the custom op on every (re)started worker.
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None, silence_logs=logging.CRITICAL) as cl, \
            distributed.Client(cl) as c:
        assert set(c.run(lambda: td.__file__).values()) == {td.__file__}
        c.register_plugin(tdd.RegisterOps("dask_ops"))
        yield c


def rowwise_model(seed: int = 1) -> td.Model:
    """Inputs a [N, 8] float32 and c [N, 3] float64; outputs y = tanh(a * w + b) [N, 8],
    s = sum(c, 1) [N] float64 and k = argmax(a, 1) [N] int64. No BLAS: each row's values do
    not depend on the block around it."""
    rng = np.random.default_rng(seed)
    nodes = [placeholder("a", "float32", [None, 8]), placeholder("c", "float64", [None, 3]),
             const("w", rng.standard_normal(8).astype(np.float32)),
             const("b", rng.standard_normal(8).astype(np.float32)),
             const("one", np.int32(1)),
             Node("mul", "Mul", ["a", "w"], {"T": "float32"}),
             Node("add", "AddV2", ["mul", "b"], {"T": "float32"}),
             Node("y", "Tanh", ["add"], {"T": "float32"}),
             Node("s", "Sum", ["c", "one"], {"T": "float64", "keep_dims": False}),
             Node("k", "ArgMax", ["a", "one"], {"T": "float32", "output_type": "int64"})]
    # the hand-built signature says float32 for every output: predict must not trust it
    return model_of(nodes, ["a", "c"], ["y", "s", "k"])


def rowwise_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 8)).astype(np.float32), rng.standard_normal((n, 3)))


def saved(model: td.Model, tmp_path, name: str = "model.tfd") -> str:
    path = str(tmp_path / name)
    model.save(path)
    return path


def stats(client) -> dict[str, dict]:
    return client.run(tdd.cache_info)


def deltas(before: dict, after: dict, key: str) -> dict[str, int]:
    return {w: after[w][key] - before.get(w, {key: 0})[key] for w in after}


def data_keys(graph) -> list:
    """The graph's tasks that hold model bytes."""
    return [k for k in dict(graph) if (k if isinstance(k, str) else k[0]).startswith(
        "tfdeploy-model-")]


# ---------------------------------------------------------------------------- arrays

def test_dense_path_model(client, tmp_path):
    model, _ = dense_softmax(seed=11)
    path = saved(model, tmp_path)
    x = np.random.default_rng(0).random((1000, 784), dtype=np.float32)
    X = da.from_array(x, chunks=(150, 392))  # rows split in 7, features in 2 (rechunked)
    before = stats(client)
    y = tdd.predict(path, X)
    assert y.dtype == np.float32 and type(y._meta) is np.ndarray and y._meta.dtype == np.float32
    assert y.chunks == ((150,) * 6 + (100,), (100,))
    assert not data_keys(y.__dask_graph__())  # the workers see the file: only its path goes
    got = client.compute(y).result()
    want = client.submit(dask_ops.blockwise, path, x, y.chunks[0], pure=False).result()
    np.testing.assert_array_equal(got, want)
    after = stats(client)
    blocks, loads = deltas(before, after, "blocks"), deltas(before, after, "loads")
    assert sum(blocks.values()) == 7
    assert loads == {w: int(blocks[w] > 0) for w in blocks}  # each worker loads it once
    for w in after:
        if blocks[w]:
            assert f"file:{path}" in after[w]["models"].values()  # (small: read, not mapped)
    # the workers never imported TensorFlow
    assert not any(client.run(lambda: "tensorflow" in sys.modules).values())
    # again: no worker loads it a second time
    np.testing.assert_array_equal(client.compute(tdd.predict(path, X)).result(), want)
    assert all(v == 0 for v in deltas(after, stats(client), "loads").values())


def test_blocks_of_any_size(client, tmp_path):
    """Ragged, tiny and empty blocks: each equals the model applied to that block."""
    model, _ = dense_softmax(seed=12)
    path = saved(model, tmp_path)
    x = np.random.default_rng(1).random((120, 784), dtype=np.float32)
    rows = (1, 7, 0, 41, 64, 7)
    y = tdd.predict(path, da.from_array(x, chunks=(rows, 784)))
    assert y.chunks[0] == rows
    want = client.submit(dask_ops.blockwise, path, x, rows, pure=False).result()
    np.testing.assert_array_equal(client.compute(y).result(), want)


def test_several_inputs_and_outputs(client):
    model = rowwise_model()
    a, c = rowwise_inputs(1000)
    want = model(a, c)
    A = da.from_array(a, chunks=(200, 8))
    C = da.from_array(c, chunks=(300, 2))  # realigned on A's row chunks, features gathered
    before = stats(client)
    y, s, k = tdd.predict(model, [A, C])
    assert [r.dtype for r in (y, s, k)] == [np.float32, np.float64, np.int64]
    assert [r.shape for r in (y, s, k)] == [(1000, 8), (1000,), (1000,)]
    assert y.chunks == ((200,) * 5, (8,)) and s.chunks == k.chunks == ((200,) * 5,)
    got = client.compute([y, s, k], sync=True)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)
    # one model evaluation per row block for the three outputs
    assert sum(deltas(before, stats(client), "blocks").values()) == 5

    out = tdd.predict(model, {"c": C, "a": A}, as_dict=True)
    assert list(out) == ["y", "s", "k"]
    got = client.compute(out, sync=True)
    for name, w in zip(out, want):
        np.testing.assert_array_equal(got[name], w)


def test_unknown_trailing_dims(client):
    """Signature [None, None, 4]: the output shapes come from the model on a sample."""
    nodes = [placeholder("x", "float32", [None, None, 4]), const("one", np.int32(1)),
             Node("t", "Tanh", ["x"], {"T": "float32"}),
             Node("m", "Sum", ["x", "one"], {"T": "float32", "keep_dims": False})]
    model = model_of(nodes, ["x"], ["t", "m"])
    x = np.random.default_rng(2).standard_normal((300, 7, 4)).astype(np.float32)
    t, m = tdd.predict(model, da.from_array(x, chunks=(70, 3, 2)))
    assert t.shape == (300, 7, 4) and t.chunks == ((70,) * 4 + (20,), (7,), (4,))
    assert m.shape == (300, 4) and m.chunks == ((70,) * 4 + (20,), (4,))
    got = client.compute([t, m], sync=True)
    for g, w in zip(got, model(x)):
        np.testing.assert_array_equal(g, w)


def test_in_memory_model_is_shipped_once(client):
    model, _ = dense_softmax(seed=13)
    buf = io.BytesIO()
    model.save(buf)
    size = len(buf.getvalue())
    x = np.random.default_rng(3).random((400, 784), dtype=np.float32)
    y = tdd.predict(model, da.from_array(x, chunks=(50, 784)))
    graph = y.__dask_graph__()
    assert len(data_keys(graph)) == 1
    # 8 block tasks, the model's bytes once (a td.Model is not even picklable)
    import cloudpickle

    assert len(cloudpickle.dumps(dict(graph))) < size + x.nbytes + 100_000
    before = stats(client)
    got = client.compute(y).result()
    want = client.submit(_blockwise_bytes, buf.getvalue(), x, y.chunks[0], pure=False).result()
    np.testing.assert_array_equal(got, want)
    after = stats(client)
    blocks, loads = deltas(before, after, "blocks"), deltas(before, after, "loads")
    assert loads == {w: int(blocks[w] > 0) for w in blocks}
    for w in after:
        if blocks[w]:
            assert "bytes" in after[w]["models"].values()


def _blockwise_bytes(data: bytes, x, rows):
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".tfd") as f:
        f.write(data)
        f.flush()
        return dask_ops.blockwise(f.name, x, rows)


def test_ship_path_to_a_worker_without_the_file(client, tmp_path):
    model = rowwise_model(seed=21)  # a model no worker has cached (the caches key on content)
    path = saved(model, tmp_path)
    a, c = rowwise_inputs(100)
    y = tdd.predict(path, [da.from_array(a, chunks=50), da.from_array(c, chunks=50)],
                    ship="path")[0]
    assert not data_keys(y.__dask_graph__())
    os.remove(path)
    with pytest.raises(td.TFDeployError, match="missing or different on this worker"):
        client.compute(y).result()


def test_worker_with_a_different_file_takes_the_bytes(tmp_path):
    """A worker whose file at that path differs loads the shipped bytes (in this process)."""
    path = saved(rowwise_model(), tmp_path)
    ref, _, data = models.ship_model(path, "bytes")
    (raw,) = dask.compute(data)
    dense_softmax(n_in=4, n_out=2)[0].save(path)
    tdd.clear_cache()
    a, c = rowwise_inputs(3)
    got = models.cached_model(ref, raw)(a, c)
    np.testing.assert_array_equal(got[0], rowwise_model()(a, c)[0])
    assert list(tdd.cache_info()["models"].values()) == ["bytes"]
    tdd.clear_cache()
    with pytest.raises(td.TFDeployError, match="missing or different"):
        models.cached_model(ref, None)


def test_cache_info_says_how_the_file_was_loaded(tmp_path, monkeypatch):
    """``cache_info`` names a model loaded from the worker's file ``file:<path>`` when read,
    ``mmap:<path>`` when memory-mapped (from ``MMAP_MIN_BYTES``, as td.load decides)."""
    from tfdeploy import fileformat

    path = saved(rowwise_model(), tmp_path)
    ref, _, _ = models.ship_model(path, "path")
    tdd.clear_cache()
    models.cached_model(ref, None)
    assert list(tdd.cache_info()["models"].values()) == [f"file:{path}"]
    tdd.clear_cache()
    monkeypatch.setattr(fileformat, "MMAP_MIN_BYTES", ref.size)
    m = models.cached_model(ref, None)
    assert list(tdd.cache_info()["models"].values()) == [f"mmap:{path}"]
    np.testing.assert_array_equal(m(*rowwise_inputs(2))[0], rowwise_model()(*rowwise_inputs(2))[0])
    tdd.clear_cache()


def test_local_schedulers(tmp_path):
    """Without distributed: the threaded and synchronous schedulers of dask itself."""
    model = rowwise_model()
    a, c = rowwise_inputs(90)
    y = tdd.predict(saved(model, tmp_path), [da.from_array(a, chunks=40),
                                             da.from_array(c, chunks=40)])
    np.testing.assert_array_equal(y[1].compute(scheduler="sync"), model(a, c)[1])
    np.testing.assert_array_equal(y[0].compute(scheduler="threads"), model(a, c)[0])


def test_array_errors(tmp_path):
    model = rowwise_model()
    a, c = rowwise_inputs(20)
    A, C = da.from_array(a, chunks=10), da.from_array(c, chunks=10)
    with pytest.raises(td.FeedError, match="input 'a' expects float32, got complex64"):
        tdd.predict(model, [A.astype(np.complex64), C])
    with pytest.raises(td.FeedError, match=r"input 'c' expects shape \(None, 3\)"):
        tdd.predict(model, [A, da.concatenate([C, C], axis=1)])
    with pytest.raises(td.FeedError, match="input 'a' expects rank 2"):
        tdd.predict(model, [A[:, :, None], C])
    with pytest.raises(td.FeedError, match="'c' has 10 rows"):
        tdd.predict(model, [A, C[:10]])
    with pytest.raises(td.FeedError, match="no input named 'z'"):
        tdd.predict(model, {"a": A, "z": C})
    with pytest.raises(td.FeedError, match=r"missing input\(s\) \['c'\]"):
        tdd.predict(model, {"a": A})
    with pytest.raises(td.FeedError, match="takes 2 input"):
        tdd.predict(model, [A, C, C])
    with pytest.raises(TypeError, match="input 'c' must be a dask array"):
        tdd.predict(model, [A, c])
    with pytest.raises(ValueError, match="split along axes \\[1\\]"):
        tdd.predict(model, [A.rechunk((10, 4)), C], rechunk=False)
    with pytest.raises(ValueError, match="rechunk them alike"):
        tdd.predict(model, [A, C.rechunk(5)], rechunk=False)
    with pytest.raises(TypeError, match="model must be a path"):
        tdd.predict(42, A)
    with pytest.raises(td.TFDeployError, match="cannot read the model file"):
        tdd.predict(str(tmp_path / "nope.tfd"), A)
    fixed = model_of([placeholder("x", "float32", [1, 4]),
                      Node("y", "Tanh", ["x"], {"T": "float32"})], ["x"], ["y"])
    with pytest.raises(td.FeedError, match="fixed batch size"):
        tdd.predict(fixed, da.ones((4, 4), chunks=1, dtype=np.float32))
    total = model_of([placeholder("x", "float32", [None, 4]), const("zero", np.int32(0)),
                      Node("y", "Sum", ["x", "zero"], {"T": "float32", "keep_dims": False})],
                     ["x"], ["y"])
    with pytest.raises(td.TFDeployError, match="one output row per input row"):
        tdd.predict(total, da.ones((4, 4), chunks=2, dtype=np.float32))


def test_model_import_is_light_and_the_extra_is_named():
    """`import tfdeploy` never imports dask; without dask, tfdeploy.dask names the extra."""
    code = ("import sys\n"
            "import tfdeploy\n"
            "assert 'dask' not in sys.modules and 'distributed' not in sys.modules\n"
            "sys.modules['dask'] = None\n"
            "try:\n"
            "    import tfdeploy.dask\n"
            "except ImportError as e:\n"
            "    assert \"pip install 'tfdeploy[dask]'\" in str(e), e\n"
            "else:\n"
            "    raise SystemExit('imported without dask')\n")
    env = dict(os.environ, PYTHONPATH=SRC)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------- dataframes

def rowwise_frame(n: int, npartitions: int):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    a, c = rowwise_inputs(n, seed=5)
    df = pd.DataFrame({f"a{i}": a[:, i] for i in range(8)}
                      | {f"c{i}": c[:, i] for i in range(3)}
                      | {"label": [f"row {i}" for i in range(n)]},
                      index=pd.Index(np.arange(n) * 3 + 7, name="id"))
    return df, dd.from_pandas(df, npartitions=npartitions)


def test_dataframe_several_inputs_and_outputs(client):
    model = rowwise_model()
    df, ddf = rowwise_frame(600, 4)
    a_cols, c_cols = [f"a{i}" for i in range(8)], [f"c{i}" for i in range(3)]
    out = tdd.predict_partitions(model, ddf, columns={"a": a_cols, "c": c_cols})
    names = [f"y_{i}" for i in range(8)] + ["s", "k"]
    assert list(out.columns) == names
    assert list(out.dtypes) == [np.float32] * 8 + [np.float64, np.int64]
    assert out.divisions == ddf.divisions and out.npartitions == 4
    got = client.compute(out).result()
    y, s, k = model(df[a_cols].to_numpy(), df[c_cols].to_numpy())
    assert got.index.equals(df.index)
    np.testing.assert_array_equal(got[names[:8]].to_numpy(), y)
    np.testing.assert_array_equal(got["s"].to_numpy(), s)
    np.testing.assert_array_equal(got["k"].to_numpy(), k)

    renamed = [f"p{i}" for i in range(10)]
    out = tdd.predict_partitions(model, ddf, [a_cols, c_cols], output_columns=renamed)
    got2 = client.compute(out).result()
    assert list(got2.columns) == renamed
    np.testing.assert_array_equal(got2.to_numpy(), got.to_numpy())


def test_dataframe_dense_path_model(client, tmp_path):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    model, _ = dense_softmax(n_in=16, n_out=3, seed=14)
    path = saved(model, tmp_path)
    x = np.random.default_rng(6).random((500, 16))  # float64 columns, cast by the model
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(16)])
    ddf = dd.from_pandas(df, npartitions=3)
    cols = [f"f{i}" for i in reversed(range(16))]  # the order the model takes them in
    out = tdd.predict_partitions(path, ddf, columns=cols)
    assert list(out.columns) == ["output_0", "output_1", "output_2"]
    got = client.compute(out).result()
    rows = tuple(ddf.map_partitions(len).compute())
    want = client.submit(dask_ops.blockwise, path, df[cols].to_numpy(), rows,
                         pure=False).result()
    np.testing.assert_array_equal(got.to_numpy(), want)
    assert got.index.equals(df.index)


def test_dataframe_errors():
    model = rowwise_model()
    _, ddf = rowwise_frame(20, 2)
    a_cols, c_cols = [f"a{i}" for i in range(8)], [f"c{i}" for i in range(3)]
    with pytest.raises(td.FeedError, match=r"no column\(s\) \['zz'\]"):
        tdd.predict_partitions(model, ddf, {"a": a_cols, "c": ["c0", "c1", "zz"]})
    with pytest.raises(td.FeedError, match="takes rows of shape \\(3,\\), got 2 column"):
        tdd.predict_partitions(model, ddf, {"a": a_cols, "c": ["c0", "c1"]})
    with pytest.raises(td.FeedError, match="column 'label' is .*astype"):
        tdd.predict_partitions(model, ddf, {"a": a_cols, "c": ["c0", "c1", "label"]})
    with pytest.raises(td.FeedError, match="the model takes 2 inputs"):
        tdd.predict_partitions(model, ddf)
    with pytest.raises(td.FeedError, match=r"no columns for input\(s\) \['c'\]"):
        tdd.predict_partitions(model, ddf, {"a": a_cols})
    with pytest.raises(ValueError, match=r"output_columns has 2 name\(s\), the outputs give "
                                         r"10 column\(s\) \(y: 8, s: 1, k: 1\)"):
        tdd.predict_partitions(model, ddf, [a_cols, c_cols], output_columns=["u", "v"])
    with pytest.raises(TypeError, match="must be a dask DataFrame"):
        tdd.predict_partitions(model, ddf.compute(), [a_cols, c_cols])


# ---------------------------------------------------------------------------- failures

@pytest.mark.parametrize("ship", ["path", "bytes"])
def test_killed_worker_mid_job(client, tmp_path, ship):
    """SIGKILL one worker process while blocks run: Dask reruns its tasks (and recomputes
    what it held, the model's bytes too) on the other and on the worker the nanny restarts;
    the result is whole."""
    scale = np.float32(1.5 if ship == "path" else 2.5)  # two models: no cache hit between
    nodes = [placeholder("x", "float32", [None, 4]), const("scale", scale),
             Node("slow", "SlowIdentity", ["x"], {"T": "float32"}),
             Node("mul", "Mul", ["slow", "scale"], {"T": "float32"}),
             Node("y", "Tanh", ["mul"], {"T": "float32"})]
    model = model_of(nodes, ["x"], ["y"])
    source = saved(model, tmp_path) if ship == "path" else model
    x = np.random.default_rng(7).standard_normal((240, 4)).astype(np.float32)
    y = tdd.predict(source, da.from_array(x, chunks=10), ship=ship)  # 24 blocks of 0.1 s
    assert bool(data_keys(y.__dask_graph__())) == (ship == "bytes")
    client.wait_for_workers(2)
    pids = client.run(os.getpid)
    before = stats(client)
    future = client.compute(y)
    deadline = time.monotonic() + 30
    while not all(v > 0 for v in deltas(before, stats(client), "blocks").values()):
        assert time.monotonic() < deadline, "the workers never started"
        time.sleep(0.02)
    assert not future.done()
    victim = sorted(pids)[0]
    os.kill(pids[victim], signal.SIGKILL)
    np.testing.assert_array_equal(future.result(timeout=60), model(x))
    # the blocks running on the victim were rerun elsewhere (the scheduler counts them)
    assert client.run_on_scheduler(_suspicious, keys=[future.key]) >= 1
    client.wait_for_workers(2, timeout=30)
    assert pids[victim] not in client.run(os.getpid).values()


def _suspicious(dask_scheduler, keys) -> int:
    """How many tasks behind ``keys`` were running on a worker when it died."""
    seen, stack, n = set(), list(keys), 0
    while stack:
        ts = dask_scheduler.tasks.get(stack.pop())
        if ts is None or ts.key in seen:
            continue
        seen.add(ts.key)
        n += ts.suspicious > 0
        stack.extend(d.key for d in ts.dependencies)
    return n


def _measuring() -> bool:
    from tfdeploy.numerics import ufunc_speed

    return ufunc_speed.measuring()


def test_setup_plugin_on_every_worker(client):
    """``Setup`` runs ``td.setup`` on every worker, and on one that restarts; a bad option
    is the worker's error, raised at registration."""
    assert all(client.run(_measuring).values())
    plugin = tdd.Setup(deterministic=True)
    client.register_plugin(plugin)
    try:
        assert not any(client.run(_measuring).values())
        pids = client.run(os.getpid)
        victim = sorted(pids)[0]
        os.kill(pids[victim], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while victim in client.scheduler_info()["workers"] or \
                len(client.scheduler_info()["workers"]) < 2:
            assert time.monotonic() < deadline, "the worker never restarted"
            time.sleep(0.1)
        assert not any(client.run(_measuring).values())  # (the restarted one too)
        with pytest.raises(Exception, match="no_such_limit"):
            client.register_plugin(tdd.Setup(no_such_limit=1))
    finally:
        client.unregister_worker_plugin(plugin.name)
        client.run(td.setup, deterministic=False)
    assert all(client.run(_measuring).values())
