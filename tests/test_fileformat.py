"""The model file: round trips, zero-copy loading, and hostile or broken files."""

from __future__ import annotations

import io
import json
import pickle
import struct

import numpy as np
import pytest

import tfdeploy as td
from graphs import dense_softmax
from tfdeploy import fileformat


@pytest.fixture
def saved(tmp_path):
    m, _ = dense_softmax()
    p = tmp_path / "model.pkl"
    m.save(p)
    return m, p


def test_round_trip_is_exact_and_memory_mapped(saved):
    m, p = saved
    loaded = td.Model(p)
    x = np.random.default_rng(0).random((4, 784), dtype=np.float32)
    np.testing.assert_array_equal(loaded(x), m(x))
    W = loaded.default_graph.node("W").attrs["value"]
    assert not W.flags.owndata and not W.flags.writeable  # a view of the mapped file
    # numpy's own dtype objects, not equal '<f4' ones: fast paths test `x.dtype is dt`
    assert W.dtype is np.dtype(np.float32)
    (step,) = loaded.plan(x).steps  # softmax(x @ W + b) as one closure, taking its fast path
    assert step.kernel.__name__ == "DenseSoftmax"
    f = step.kernel
    cells = dict(zip(f.__code__.co_freevars, f.__closure__))

    def slow(*args):
        raise AssertionError("the slow path")
    cells["chain"].cell_contents = slow
    np.testing.assert_array_equal(f(x), m(x))
    assert td.load(p.read_bytes()).inputs[0].name == "input"
    assert td.load(io.BytesIO(p.read_bytes())).outputs[0].name == "output"


def test_file_is_data_only(saved):
    _, p = saved
    data = p.read_bytes()
    assert data[:8] == b"TFDEPLOY"
    (hlen,) = struct.unpack_from("<Q", data, 16)
    header = json.loads(data[24:24 + hlen])
    assert header["format_version"] == fileformat.FORMAT_VERSION
    assert {a["dtype"] for a in header["arrays"]} == {"float32"}


def _header(data: bytes) -> tuple[dict, int]:
    (hlen,) = struct.unpack_from("<Q", data, 16)
    return json.loads(data[24:24 + hlen]), hlen


def _rewrite(data: bytes, mutate) -> bytes:
    header, hlen = _header(data)
    mutate(header)
    h = json.dumps(header).encode()
    h += b" " * max(0, hlen - len(h))
    if len(h) != hlen:  # keep the data section's offset: arrays are addressed relative to it
        return data[:16] + struct.pack("<Q", len(h)) + h + data[24 + hlen:]
    return data[:24] + h + data[24 + hlen:]


def _missing_array(h):
    h["arrays"].pop()


def _missing_node(h):
    h["graphs"][0]["graph"]["nodes"][-1]["inputs"] = ["nowhere:0"]


def _huge_shape(h):
    h["arrays"][0]["shape"] = [2**40, 2**40]


def _beyond_end(h):
    h["arrays"][0]["offset"] = 10**12


def _bad_dtype(h):
    h["arrays"][0]["dtype"] = "object"


def _bad_ref(h):
    h["graphs"][0]["graph"]["outputs"][0]["ref"] = "ghost:0"


def _unknown_op(h):
    h["graphs"][0]["graph"]["nodes"][-1]["op"] = "NotARealOp"


def _negative_dim(h):
    h["arrays"][0]["shape"] = [-1, 5]


def _func_missing(h):
    h["graphs"][0]["graph"]["nodes"][-1]["attrs"]["f"] = {"$func": "nowhere"}


@pytest.mark.parametrize("mutate, match", [
    (_missing_array, "missing array"),
    (_missing_node, "reads 'nowhere:0', which does not exist"),
    (_huge_shape, "bytes do not hold shape"),
    (_beyond_end, "beyond the end of the file"),
    (_bad_dtype, "unsupported dtype 'object'"),
    (_bad_ref, "refers to missing tensor 'ghost:0'"),
    (_negative_dim, "invalid dimension -1"),
    (_func_missing, "calls missing function 'nowhere'"),
])
def test_corrupted_headers_are_rejected(saved, mutate, match):
    _, p = saved
    with pytest.raises(td.FileFormatError, match=match):
        td.load(_rewrite(p.read_bytes(), mutate))


def test_unregistered_op_is_named_on_load(saved):
    _, p = saved
    with pytest.raises(td.UnsupportedOpError, match="NotARealOp: used by 'output'"):
        td.load(_rewrite(p.read_bytes(), _unknown_op))


def test_truncated_files(saved):
    _, p = saved
    data = p.read_bytes()
    for n in (0, 3, 8, 23, 40, len(data) // 2, len(data) - 1):
        with pytest.raises(td.FileFormatError):
            td.load(data[:n])


def test_unknown_version(saved):
    _, p = saved
    data = bytearray(p.read_bytes())
    struct.pack_into("<I", data, 8, 99)
    with pytest.raises(td.FileFormatError, match="format version 99"):
        td.load(bytes(data))


def test_header_length_beyond_file(saved):
    _, p = saved
    data = bytearray(p.read_bytes())
    struct.pack_into("<Q", data, 16, 2**62)
    with pytest.raises(td.FileFormatError, match="exceeds the file size"):
        td.load(bytes(data))


def test_garbage_header(saved):
    _, p = saved
    data = bytearray(p.read_bytes())
    data[30:60] = b"\xff" * 30
    with pytest.raises(td.FileFormatError, match="corrupted header"):
        td.load(bytes(data))


class _Evil:
    def __reduce__(self):
        return (exec, ("raise SystemExit('pickle code ran')",))


def test_pickles_are_never_unpickled(tmp_path):
    p = tmp_path / "model.pkl"
    p.write_bytes(pickle.dumps({"model": _Evil()}))
    with pytest.raises(td.FileFormatError, match="pickle.*never unpickles"):
        td.Model(p)


@pytest.mark.parametrize("data, match", [
    (b"\x93NUMPY\x01\x00", "numpy .npy"),
    (b"PK\x03\x04" + b"\0" * 40, "zip archive"),
    (b"\x0a\x0bsomething" + b"\0" * 30, "protobuf"),
    (b"hello world, this is not a model at all", "not a tfdeploy model file"),
])
def test_foreign_files(data, match):
    with pytest.raises(td.FileFormatError, match=match):
        td.load(data)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(td.FileFormatError, match="no such model file"):
        td.Model(tmp_path / "nope.tfd")
    with pytest.raises(td.FileFormatError, match="is a directory"):
        td.Model(tmp_path)


def test_random_corruption_never_crashes(saved):
    """Flipping random header bytes gives a tfdeploy error or a working model, nothing else."""
    _, p = saved
    data = p.read_bytes()
    _, hlen = _header(data)
    rng = np.random.default_rng(0)
    for _ in range(200):
        b = bytearray(data)
        for i in rng.integers(0, 24 + hlen, size=3):
            b[i] = rng.integers(0, 256)
        try:
            td.load(bytes(b))
        except td.TFDeployError:
            pass
