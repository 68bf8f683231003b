"""Hardening: outputs never alias the model, hostile files and inputs fail cleanly and fast,
careless callers get clear errors (docs/security.md)."""

from __future__ import annotations

import contextlib
import io
import json
import struct
import time
import tracemalloc

import numpy as np
import pytest

import tfdeploy as td
from graphs import const, dense_softmax, model_of, placeholder
from tfdeploy.ir.graph import FuncAttr, Graph, Node, TensorSpec


def _graph(nodes, inputs, outputs, functions=None, out_dtype="float32") -> Graph:
    by = {n.name: n for n in nodes}
    g = Graph(list(nodes),
              [TensorSpec(i, f"{i}:0", by[i].attrs.get("dtype", "float32"),
                          by[i].attrs.get("shape")) for i in inputs],
              [TensorSpec(o.split(":")[0], o if ":" in o else f"{o}:0", out_dtype, None)
               for o in outputs])
    g.functions = functions or {}
    return g


def _saved(g: Graph) -> td.Model:
    m = td.Model()
    m._add_graph(g, None)
    b = io.BytesIO()
    m.save(b)
    return td.load(b.getvalue())


# ------------------------------------------------------------------ outputs never alias the model

def _writes_do_not_stick(model, *args):
    first = model(*args)
    outs = first if isinstance(first, tuple) else (first,)
    before = [o.copy() for o in outs]
    for o in outs:
        assert o.flags.writeable
        o[...] = o.flat[0] if o.dtype == object else 7
    again = model(*args)
    again = again if isinstance(again, tuple) else (again,)
    for b, a in zip(before, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("saved", [False, True])
def test_views_of_weights_are_copied(saved):
    W = np.arange(12, dtype=np.float32).reshape(3, 4)
    nodes = [placeholder("x", "float32", [None]), const("W", W), const("shape", [4, 3]),
             Node("r", "Reshape", ["W", "shape"], {"T": "float32"}),
             const("b", [0]), const("e", [2]), const("s1", [1]),
             Node("sl", "StridedSlice", ["W", "b", "e", "s1"], {"T": "float32"}),
             Node("t", "Transpose", ["W", "perm"], {"T": "float32"}), const("perm", [1, 0]),
             Node("y", "AddV2", ["x", "x"], {"T": "float32"})]
    m = model_of(nodes, ["x"], ["r", "sl", "t", "y", "r"])
    if saved:
        b = io.BytesIO()
        m.save(b)
        m = td.load(b.getvalue())
    _writes_do_not_stick(m, np.ones(2, np.float32))
    r1, _, _, _, r2 = m(np.ones(2, np.float32))
    assert not np.may_share_memory(r1, r2)  # the same tensor fetched twice: two arrays
    np.testing.assert_array_equal(W, np.arange(12).reshape(3, 4))


def test_reshape_of_weight_by_a_fed_shape_is_copied():
    W = np.arange(6, dtype=np.float32)
    m = model_of([placeholder("s", "int32", [None]), const("W", W),
                  Node("r", "Reshape", ["W", "s"], {"T": "float32"})], ["s"], ["r"])
    _writes_do_not_stick(m, np.array([2, 3], np.int32))
    np.testing.assert_array_equal(W, np.arange(6))


@pytest.mark.parametrize("value", [np.array([1.5, 2.5], np.float32),
                                   np.array([b"a", b"b"], dtype=object)])
def test_if_branch_returning_its_constant(value):
    then = _graph([placeholder("a", "float32"), const("c", value)], ["a"], ["c"])
    other = _graph([placeholder("a", "float32"), const("d", value)], ["a"], ["d"])
    g = _graph([placeholder("p", "bool"), placeholder("x"),
                Node("if", "If", ["p", "x"], {"then_branch": FuncAttr("t"),
                                              "else_branch": FuncAttr("e")})],
               ["p", "x"], ["if"], {"t": then, "e": other})
    m = _saved(g)
    _writes_do_not_stick(m, np.bool_(True), np.float32(1))
    _writes_do_not_stick(m, np.bool_(False), np.float32(1))


def test_lookup_table_export_is_a_copy():
    keys = np.array([b"a", b"b"], dtype=object)
    g = _graph([placeholder("x", "string"),
                Node("t", "TFDHashTable", [], {"keys": keys, "values": np.array([1, 2]),
                                               "key_dtype": "string", "value_dtype": "int64"}),
                Node("ex", "LookupTableExportV2", ["t"], {"Tkeys": "string",
                                                          "Tvalues": "int64"})],
               ["x"], ["ex:0", "ex:1"])
    _writes_do_not_stick(_saved(g), np.array([b"a"], dtype=object))


def test_load_copies_a_writable_buffer():
    m, _ = dense_softmax()
    b = io.BytesIO()
    m.save(b)
    buf = bytearray(b.getvalue())
    loaded = td.load(buf)
    x = np.ones((1, 784), np.float32)
    y = loaded(x)
    buf[-4000:] = b"\x7f" * 4000
    np.testing.assert_array_equal(loaded(x), y)


# ------------------------------------------------------------------ hostile files: clean errors

def _model_bytes() -> bytes:
    m, _ = dense_softmax(8, 3)
    b = io.BytesIO()
    m.save(b)
    return b.getvalue()


def _header_of(data: bytes):
    (hlen,) = struct.unpack_from("<Q", data, 16)
    return json.loads(data[24:24 + hlen]), hlen


def _with_header(data: bytes, header_text: str) -> bytes:
    """``data`` with another header; arrays are addressed from the end of the header."""
    _, hlen = _header_of(data)
    h = header_text.encode()
    h += b" " * (-(24 + len(h)) % 64)
    return data[:16] + struct.pack("<Q", len(h)) + h + data[24 + hlen:]


def _mutated(mutate) -> bytes:
    data = _model_bytes()
    header, _ = _header_of(data)
    mutate(header)
    return _with_header(data, json.dumps(header))


def _nodes(h):
    return h["graphs"][0]["graph"]["nodes"]


def _set_output_ref(ref):
    def f(h):
        h["graphs"][0]["graph"]["outputs"][0]["ref"] = ref
    return f


def _placeholder_attr(key, value):
    def f(h):
        _nodes(h)[0]["attrs"][key] = value
    return f


def _array_shape(shape):
    def f(h):
        h["arrays"][0]["shape"] = shape
    return f


@pytest.mark.parametrize("mutate, match", [
    (_set_output_ref("W:1000000000"), "invalid output index"),
    (_set_output_ref("W:1"), "has 1 output"),
    (_set_output_ref("W:\u00b2"), "missing tensor 'W:\u00b2'"),
    (_placeholder_attr("dtype", ["float32"]), "'dtype' must be a dtype name"),
    (_placeholder_attr("dtype", {"$bytes": ""}), "'dtype' must be a dtype name"),
    (_placeholder_attr("shape", [[1]]), "'shape' must be null or a list"),
    (_placeholder_attr("shape", [1] * 100), "'shape' must be null or a list"),
    (_array_shape([1] * 100), "rank 100"),
    (_array_shape([2 ** 70]), "invalid dimension"),
])
def test_hostile_headers_raise_file_format_errors(mutate, match):
    with pytest.raises(td.FileFormatError, match=match):
        td.load(_mutated(mutate))


def test_huge_integer_in_header():
    data = _model_bytes()
    header, _ = _header_of(data)
    text = json.dumps(header).replace('"format_version": 1', '"format_version": 1' + "0" * 5000)
    with pytest.raises(td.FileFormatError, match="corrupted header"):
        td.load(_with_header(data, text))


def test_header_limit_is_adjustable():
    data = _model_bytes()
    td.setup(max_header_bytes=64)
    try:
        with pytest.raises(td.FileFormatError, match="max_header_bytes"):
            td.load(data)
    finally:
        td.setup(max_header_bytes=None)
    td.load(data)


def _call_graph(functions, top_op="PartitionedCall", attrs=None) -> Graph:
    return _graph([placeholder("x"), Node("call", top_op, ["x"],
                                          attrs if attrs is not None else {"f": FuncAttr("f")})],
                  ["x"], ["call"], functions)


def _caller(name: str, callee: str) -> Graph:
    return _graph([placeholder("a"), Node(name, "PartitionedCall", ["a"],
                                          {"f": FuncAttr(callee)})], ["a"], [name])


@pytest.mark.parametrize("op, attrs, match", [
    ("PartitionedCall", {}, "needs the function attribute 'f'"),
    ("While", {"cond": FuncAttr("f")}, "needs the function attribute 'body'"),
    ("Case", {"branches": []}, "needs the function attribute 'branches'"),
    ("StatelessIf", {"then_branch": FuncAttr("f"), "else_branch": "f"},
     "needs the function attribute 'else_branch'"),
])
def test_control_flow_without_its_functions(op, attrs, match):
    f = _graph([placeholder("a"), Node("n", "Neg", ["a"], {"T": "float32"})], ["a"], ["n"])
    g = _call_graph({"f": f}, op, attrs)
    m = td.Model()
    m.graphs["default"] = g  # (as a file would hold it: Model._add_graph checks calls only)
    b = io.BytesIO()
    td.fileformat.save(m.graphs, b)
    with pytest.raises(td.FileFormatError, match=match):
        td.load(b.getvalue())


def test_recursive_functions_are_refused_at_load_with_the_cycle():
    g = _call_graph({"f": _caller("c", "g"), "g": _caller("d", "f")})
    b = io.BytesIO()
    td.fileformat.save({"default": g}, b)
    with pytest.raises(td.FileFormatError, match="call themselves: 'f' -> 'g' -> 'f'"):
        td.load(b.getvalue())
    with pytest.raises(td.GraphError, match="call themselves"):
        td.Model()._add_graph(g, None)


def test_function_nesting_limit():
    funcs = {f"f{k}": _caller(f"c{k}", f"f{k + 1}") for k in range(10)}
    funcs["f10"] = _graph([placeholder("a"), Node("n", "Neg", ["a"], {"T": "float32"})],
                          ["a"], ["n"])
    g = _call_graph(funcs, attrs={"f": FuncAttr("f0")})
    b = io.BytesIO()
    td.fileformat.save({"default": g}, b)
    td.setup(max_function_depth=5)
    try:
        with pytest.raises(td.FileFormatError, match="nests function calls"):
            td.load(b.getvalue())
    finally:
        td.setup(max_function_depth=None)
    assert td.load(b.getvalue())(np.float32(2)) == -2


def test_nested_calls_compile_in_linear_time():
    """Each function calls the next twice: 2**depth calls, but each body compiles once."""
    depth = 16
    funcs = {}
    for k in range(depth):
        funcs[f"f{k}"] = _graph(
            [placeholder("a"), Node("c1", "PartitionedCall", ["a"], {"f": FuncAttr(f"f{k + 1}")}),
             Node("c2", "StatefulPartitionedCall", ["a"], {"f": FuncAttr(f"f{k + 1}")}),
             Node("s", "AddV2", ["c1", "c2"], {"T": "float32"})], ["a"], ["s"])
    funcs[f"f{depth}"] = _graph([placeholder("a"), Node("n", "Neg", ["a"], {"T": "float32"})],
                                ["a"], ["n"])
    g = _call_graph(funcs, attrs={"f": FuncAttr("f0")})
    m = _saved(g)
    t = time.perf_counter()
    np.testing.assert_allclose(m(np.float32(1)), -(2.0 ** depth))
    assert time.perf_counter() - t < 5  # (0.1 s here; exponential would be hours)


def test_wrong_shaped_constant_where_a_scalar_is_expected():
    m = _saved(_graph([placeholder("x"), const("dims", [2, 2]), const("v", [[1.0, 2.0]]),
                       Node("f", "Fill", ["dims", "v"], {"T": "float32"}),
                       Node("y", "AddV2", ["x", "f"], {"T": "float32"})], ["x"], ["y"]))
    with pytest.raises(td.TFDeployError, match="'f' \\(Fill\\).*scalar"):
        m(np.float32(1))


# ------------------------------------------------------------------ denial of service: bounded

def _string_model(op, attrs, n_inputs=1, out_dtype="string") -> td.Model:
    ins = [placeholder(f"s{i}", "string") for i in range(n_inputs)]
    g = _graph(ins + [Node("op", op, [n.name for n in ins], attrs)],
               [n.name for n in ins], ["op"], out_dtype=out_dtype)
    return _saved(g)


@pytest.mark.parametrize("pattern, text", [(b"(a+)+$", b"a" * 26 + b"!"),
                                           (b"\\s+$", b" " * 40000 + b"x"),
                                           (b"(x+x+)+y", b"x" * 5000)])
def test_regexes_run_in_linear_time(pattern, text):
    full = _string_model("StaticRegexFullMatch", {"pattern": pattern}, out_dtype="bool")
    repl = _string_model("StaticRegexReplace", {"pattern": pattern, "rewrite": b"-"})
    x = np.array([text], dtype=object)
    t = time.perf_counter()
    try:
        assert not full(x)[0]
        assert repl(x)[0] == text
    except td.ExecutionError as e:  # (the fallback without google-re2 refuses them)
        assert "without RE2" in str(e)
    assert time.perf_counter() - t < 1


def test_regex_fallback_refuses_what_can_backtrack(monkeypatch):
    from tfdeploy.kernels.strings import regex

    monkeypatch.setattr(regex, "_re2", None)
    regex.compile_re2.cache_clear()
    try:
        full = _string_model("StaticRegexFullMatch", {"pattern": b"(a+)+$"}, out_dtype="bool")
        with pytest.raises(td.ExecutionError, match="repetition inside a repetition"):
            full(np.array([b"aaa"], dtype=object))
        ok = _string_model("StaticRegexFullMatch", {"pattern": b"[a-z]+\\d"}, out_dtype="bool")
        assert ok(np.array([b"abc1"], dtype=object))[0]
        with pytest.raises(td.ExecutionError, match="longer than regular expressions"):
            ok(np.array([b"a" * 5000], dtype=object))
    finally:
        regex.compile_re2.cache_clear()


def test_string_to_number_is_linear():
    m = _string_model("StringToNumber", {"out_type": "float32"}, out_dtype="float32")
    t = time.perf_counter()
    with pytest.raises(td.ExecutionError, match="could not correctly convert"):
        m(np.array([b"1" * 20000 + b"x"], dtype=object))
    assert time.perf_counter() - t < 1
    assert m(np.array([b" 1.5e3 ", b"0x1p4"], dtype=object)).tolist() == [1500.0, 16.0]


def test_string_ngrams_with_a_huge_width_makes_nothing_fast():
    ins = [placeholder("s", "string"), placeholder("sp", "int64")]
    g = _graph(ins + [Node("ng", "StringNGrams", ["s", "sp"], {
        "separator": b" ", "ngram_widths": [10 ** 9], "left_pad": b"", "right_pad": b"",
        "pad_width": 0, "preserve_short_sequences": False, "Tsplits": "int64"})],
        ["s", "sp"], ["ng:0", "ng:1"], out_dtype="string")
    t = time.perf_counter()
    vals, splits = _saved(g)(np.array([b"a", b"b"], dtype=object), np.array([0, 2]))
    assert time.perf_counter() - t < 1 and vals.size == 0 and splits.tolist() == [0, 0]


def test_one_hot_of_no_indices_with_a_huge_depth_makes_nothing_fast():
    """(Found by the fuzzer: the comparison's range of depth values was made before anything
    looked at the indices: 2**31 - 1 of them, 16 GB, for an empty result.)"""
    g = _graph([placeholder("i", "int32", [None, 2]), const("d", np.int32(2 ** 31 - 1)),
                const("on", np.float32(1)), const("off", np.float32(0)),
                Node("h", "OneHot", ["i", "d", "on", "off"], {"T": "float32", "axis": 1,
                                                              "TI": "int32"})], ["i"], ["h"])
    t = time.perf_counter()
    out = _saved(g)(np.zeros((0, 2), np.int32))
    assert time.perf_counter() - t < 1
    assert out.shape == (0, 2 ** 31 - 1, 2) and out.dtype == np.float32


@pytest.mark.parametrize("fed", [False, True])
def test_tile_to_nothing_by_a_huge_multiple_makes_nothing_fast(fed):
    """(Found by the fuzzer: np.tile repeats dim by dim, so a huge multiple before a zero one
    made a 384 GB intermediate for an empty result.) Constant multiples take the specialized
    kernel, fed ones the generic one."""
    mult = np.array([2 ** 31 - 1, 1, 0], np.int32)
    src = placeholder("m", "int32", [3]) if fed else const("m", mult)
    g = _graph([placeholder("x", "float64", [2, 4, 3]), src,
                Node("t", "Tile", ["x", "m"], {"T": "float64", "Tmultiples": "int32"})],
               ["x", "m"] if fed else ["x"], ["t"])
    t = time.perf_counter()
    x = np.ones((2, 4, 3))
    out = _saved(g)(x, mult) if fed else _saved(g)(x)
    assert time.perf_counter() - t < 1
    assert out.shape == (2 * (2 ** 31 - 1), 4, 0) and out.dtype == np.float64


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_pools_with_a_huge_window_run_fast(padding):
    """(Found probing what the fuzzer found: a pool's taps were a Python loop over the window
    and its padded input as long as the window: ksize 2**31 - 1 ran 10 s into a MemoryError.)
    SAME windows larger than the input read what a window over all of it reads; VALID ones
    give nothing."""
    from tfdeploy.kernels.nn.pool import AvgPool, MaxPool, MaxPoolWithArgmax

    x = np.random.default_rng(0).standard_normal((2, 5, 7, 3)).astype(np.float32)
    huge, whole = [1, 2 ** 31 - 1, 2 ** 31 - 1, 1], [1, 15, 21, 1]
    t = time.perf_counter()
    for kernel in (MaxPool, AvgPool, MaxPoolWithArgmax):
        for s in (1, 2):
            got = kernel(x, ksize=huge, strides=[1, s, s, 1], padding=padding)
            want = kernel(x, ksize=whole, strides=[1, s, s, 1], padding=padding)
            for g, w in zip(got if isinstance(got, tuple) else (got,),
                            want if isinstance(want, tuple) else (want,)):
                np.testing.assert_array_equal(g, w)
                assert (g.size == 0) == (padding == "VALID")
    assert time.perf_counter() - t < 2


def test_pool_with_huge_explicit_paddings_is_refused():
    from tfdeploy.kernels.nn.pool import MaxPool

    with pytest.raises(td.ResourceExhaustedError, match="pooled tensor"):
        MaxPool(np.ones((1, 4, 4, 1), np.float32), ksize=[1, 2, 2, 1], strides=[1, 1, 1, 1],
                padding="EXPLICIT", explicit_paddings=[0, 0, 2 ** 31, 2 ** 31, 0, 0, 0, 0])


def test_resizes_of_nothing_to_a_huge_size_make_nothing_fast():
    """(Probing what the fuzzer found: the per-axis tables of a resize were made before
    anything looked at the batch, 8-16 GB for 2**31 output rows of no images.) An empty
    result comes back at once; one numpy cannot index even empty is a clean error; a crop
    size over the tensor limit is refused before its coordinates are made."""
    from tfdeploy.kernels.image import resize

    huge = 2 ** 31 - 1
    t = time.perf_counter()
    for images in (np.zeros((0, 4, 4, 3), np.float32), np.zeros((2, 4, 4, 0), np.uint8)):
        for name in ("ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic", "ResizeArea"):
            out = getattr(resize, name)(images, np.array([huge, 1], np.int32))
            assert out.shape == (images.shape[0], huge, 1, images.shape[3])
            with pytest.raises(td.ResourceExhaustedError, match="numpy can index"):
                getattr(resize, name)(images, np.array([huge, huge], np.int32))
    out = resize.ScaleAndTranslate(np.zeros((0, 4, 4, 3), np.float32), np.int32([huge, 1]),
                                   np.float32([1, 1]), np.float32([0, 0]))
    assert out.shape == (0, huge, 1, 3)
    crops = resize.CropAndResize(np.zeros((1, 4, 4, 3), np.float32), np.zeros((0, 4),
                                 np.float32), np.zeros((0,), np.int32), np.int32([huge, 1]))
    assert crops.shape == (0, huge, 1, 3)
    with pytest.raises(td.ResourceExhaustedError, match="the crops"):
        resize.CropAndResize(np.zeros((1, 4, 4, 3), np.float32), np.zeros((1, 4), np.float32),
                             np.zeros((1,), np.int32), np.int32([huge, huge]))
    assert time.perf_counter() - t < 2


@pytest.mark.parametrize("op,args,attrs,what", [
    ("Conv2D", ((1, 4, 4, 3), (3, 3, 3, 2)),
     {"padding": "SAME", "dilations": [1, 2 ** 31 - 1, 1, 1]}, "padded input"),
    ("Conv3D", ((1, 2, 4, 4, 3), (2, 2, 2, 3, 2)),
     {"padding": "SAME", "dilations": [1, 2 ** 31 - 1, 1, 1, 1]}, "padded input"),
    ("DepthwiseConv2dNative", ((1, 4, 4, 3), (3, 3, 3, 1)),
     {"padding": "SAME", "dilations": [1, 2 ** 31 - 1, 1, 1]}, "temporary"),
    ("Conv2D", ((1, 4, 4, 3), (3, 3, 3, 2)),
     {"padding": "EXPLICIT", "explicit_paddings": [0, 0, 2 ** 31, 2 ** 31, 0, 0, 0, 0]},
     "result"),
    ("ExtractImagePatches", ((1, 4, 4, 3),),
     {"ksizes": [1, 2 ** 31 - 1, 1, 1], "rates": [1, 1, 1, 1], "padding": "SAME"}, "patches"),
    ("ExtractImagePatches", ((1, 4, 4, 3),),
     {"ksizes": [1, 2, 1, 1], "rates": [1, 2 ** 31 - 1, 1, 1], "padding": "SAME"},
     "padded input")])
def test_hostile_dilations_paddings_and_windows_are_refused_before_allocating(op, args, attrs,
                                                                              what):
    """(Probing what the fuzzer found: a dilation, padding or window of 2**31 made padded
    inputs, temporaries or patches of 100-600 GB, refused by the system only where it is
    short of memory.) The tensor limit holds for them: a clean error before allocating. (A
    convolution's filter holds a NaN here: with finite weights the taps that read only
    padding are left out, and the convolution runs: the next test.)"""
    from tfdeploy import registry

    d = registry.get_opdef(op)
    kernel = d.impls.get(d.preferred) or next(iter(d.impls.values()))
    arrays = [np.ones(s, np.float32) for s in args]
    if len(arrays) > 1:
        arrays[1].flat[0] = np.nan
    strides = [1] * len(args[0])
    t = time.perf_counter()
    with pytest.raises(td.ResourceExhaustedError, match=what):
        kernel(*arrays, strides=strides, **attrs)
    assert time.perf_counter() - t < 1


@pytest.mark.parametrize("op,xs,ws,axis", [
    ("Conv2D", (1, 4, 4, 3), (3, 3, 3, 2), 1),
    ("Conv3D", (1, 2, 4, 4, 3), (2, 3, 2, 3, 2), 2),
    ("DepthwiseConv2dNative", (1, 4, 4, 3), (3, 3, 3, 1), 2)])
def test_huge_dilations_run_fast_as_the_taps_on_the_input(op, xs, ws, axis):
    """A dilation of 2**31 - 1 puts every tap but one per dim on padding: those are left out
    (``trim_taps``), so the convolution runs at once, to the same values as with a dilation
    just past the input (TF's kernels skip padding too)."""
    from tfdeploy import registry

    d = registry.get_opdef(op)
    kernel = d.impls.get(d.preferred) or next(iter(d.impls.values()))
    rng = np.random.default_rng(0)
    x, w = rng.uniform(-1, 1, xs).astype(np.float32), rng.uniform(-1, 1, ws).astype(np.float32)
    strides = [1] * len(xs)
    t = time.perf_counter()
    dil = [1] * len(xs)
    dil[axis] = 2 ** 31 - 1
    got = kernel(x, w, strides=strides, padding="SAME", dilations=dil)
    assert time.perf_counter() - t < 1
    dil[axis] = xs[axis] + 1
    np.testing.assert_allclose(got, kernel(x, w, strides=strides, padding="SAME",
                                           dilations=dil), rtol=1e-6, atol=1e-6)


def test_patches_of_nothing_with_a_huge_window_make_nothing_fast():
    """(The fuzzer, once ExtractImagePatches joined its ops: an empty image's patches looped
    over 2**31 taps, whose index tuple alone took 19 GB before the OOM killer came.)"""
    from tfdeploy.kernels.image.color import ExtractImagePatches

    t = time.perf_counter()
    out = ExtractImagePatches(np.zeros((4, 4, 2, 0), np.int32), ksizes=[1, 2 ** 31 - 1, 1, 1],
                              strides=[1, 1, 1, 1], rates=[1, 1, 1, 1], padding="SAME")
    assert out.shape == (4, 4, 2, 0) and out.dtype == np.int32
    assert time.perf_counter() - t < 1


def test_transposed_conv_with_a_huge_dilation_is_refused_before_allocating():
    from tfdeploy.kernels.nn.conv import Conv2DBackpropInput

    with pytest.raises(td.ResourceExhaustedError, match="padded gradient"):
        Conv2DBackpropInput(np.int32([1, 4, 4, 3]), np.ones((3, 3, 3, 2), np.float32),
                            np.ones((1, 4, 4, 2), np.float32), strides=[1, 1, 1, 1],
                            padding="SAME", dilations=[1, 2 ** 31 - 1, 1, 1])


@pytest.mark.parametrize("op,args,attrs,what", [
    ("TensorListReserve", (np.int32([2]), np.int32(2 ** 31 - 1)), {"element_dtype": "float32"},
     "list's elements"),
    ("TensorArrayV3", (np.int32(2 ** 31 - 1),), {"dtype": "float32"}, "array's elements"),
    ("AsString", (np.zeros(3, np.float32),), {"width": 2 ** 31 - 1}, "formatted strings"),
    ("AsString", (np.zeros(3, np.float32),), {"precision": 2 ** 31 - 1}, "formatted strings"),
    ("SparseSegmentSumWithNumSegments", (np.zeros((1, 3), np.float32), np.zeros(1, np.int32),
                                         np.zeros(1, np.int32), np.int32(2 ** 31 - 1)), {},
     "segments"),
    ("Multinomial", (np.zeros((1, 3), np.float32), np.int32(2 ** 31 - 1)),
     {"seed": 1, "seed2": 1}, "samples"),
    ("MatrixDiagV3", (np.zeros(3, np.float32), np.int32(0), np.int32(2 ** 31 - 1), np.int32(-1),
                      np.float32(0)), {}, "matrices"),
    ("NonMaxSuppressionV4", (np.zeros((3, 4), np.float32), np.zeros(3, np.float32),
                             np.int32(2 ** 31 - 1), np.float32(0.5), np.float32(0)),
     {"pad_to_max_output_size": True}, "padded selection"),
    ("CombinedNonMaxSuppression", (np.zeros((1, 3, 1, 4), np.float32),
                                   np.zeros((1, 3, 1), np.float32), np.int32(2 ** 31 - 1),
                                   np.int32(2 ** 31 - 1), np.float32(0.5), np.float32(0)),
     {"pad_per_class": False}, "the boxes"),
    ("SegmentSum", (np.zeros((2, 3), np.float32), np.int32([0, 2 ** 31 - 1])), {}, "segments"),
    ("Diag", (np.zeros(100000, np.float32),), {}, "diagonal tensor"),
    ("ParameterizedTruncatedNormal", (np.int32([2 ** 31 - 1, 1]), np.float32(0), np.float32(1),
                                      np.float32(-1), np.float32(1)), {"seed": 1, "seed2": 2},
     "the samples"),
    ("RaggedTensorToTensor", (np.int64([1, 2 ** 31 - 1]), np.zeros(2, np.float32),
                              np.float32(0), np.int64([0, 2])),
     {"row_partition_types": ["ROW_SPLITS"]}, "dense tensor"),
    ("RaggedBincount", (np.int64([0, 2]), np.int32([0, 1]), np.int32(2 ** 31 - 1),
                        np.zeros(0, np.float32)), {}, "the counts"),
    ("ImageProjectiveTransformV3", (np.zeros((1, 4, 4, 3), np.float32),
                                    np.zeros((1, 8), np.float32),
                                    np.int32([2 ** 31 - 1, 2 ** 31 - 1]), np.float32(0)),
     {"interpolation": "NEAREST", "fill_mode": "CONSTANT", "dtype": "float32"},
     "transformed images"),
    # (the systematic probe of every registered op, 2026-12-07)
    ("RFFT", (np.zeros(8, np.float32), np.int32([2 ** 31 - 1])), {}, "padded signal"),
    ("IRFFT2D", (np.zeros((4, 4), np.complex64), np.int32([2 ** 31 - 1, 4])), {},
     "padded spectrum"),
    ("RandomGamma", (np.int32([2 ** 31 - 1, 3]), np.ones(2, np.float32)),
     {"seed": 1, "seed2": 2}, "the samples"),
    ("StatelessRandomPoisson", (np.int32([2 ** 31 - 1, 2]), np.int64([1, 2]),
                                np.ones(2, np.float32)), {}, "the samples"),
    ("StatelessRandomBinomial", (np.int32([2 ** 31 - 1, 2]), np.int64([1, 2]),
                                 np.ones(2, np.float32), np.full(2, 0.5, np.float32)), {},
     "the samples"),
    ("SpaceToBatchND", (np.zeros((2, 4, 4, 3), np.float32), np.int32([2, 2]),
                        np.int32([[2 ** 31 - 1, 1], [0, 0]])), {}, "padded input"),
    ("BatchToSpaceND", (np.zeros((0, 2, 2, 1), np.float32), np.int32([2 ** 31 - 1] * 2),
                        np.zeros((2, 2), np.int32)), {}, "the result"),
    ("Split", (np.int32(0), np.zeros((0, 3), np.float32)), {"num_split": 2 ** 31 - 1},
     "the pieces"),
    ("Unpack", (np.zeros((2 ** 31 - 1, 0), np.float32),), {"num": 2 ** 31 - 1}, "the pieces"),
    ("UnsortedSegmentJoin", (np.array([b"a"], dtype=object), np.int32([0]),
                             np.int32(2 ** 31 - 1)), {}, "joined strings")])
def test_hostile_counts_and_widths_are_refused_before_allocating(op, args, attrs, what):
    """(Probing what the fuzzer found: a list of 2**31 elements, strings 2**31 wide (12 s into
    a MemoryError), 2**31 segments of a sparse sum, 2**31 samples' random stream, 2**31 rows
    of a diagonal matrix's index grid.)"""
    from tfdeploy import registry

    d = registry.get_opdef(op)
    kernel = d.impls.get(d.preferred) or next(iter(d.impls.values()))
    t = time.perf_counter()
    with pytest.raises(td.ResourceExhaustedError, match=what):
        kernel(*args, **attrs)
    assert time.perf_counter() - t < 1


def test_empty_results_of_huge_matrices_make_nothing_fast():
    """(The systematic probe: MatrixDiagV3 of no diagonals made its index grid for 2**31 rows,
    16 GB; MatrixSetDiagV3 on an empty batch of 2**30 x 2**30 matrices asked for 8 EB.)
    UnsortedSegmentJoin of a million segments joins only those present."""
    from tfdeploy.kernels.linalg.core import MatrixDiagV3, MatrixSetDiagV3
    from tfdeploy.kernels.strings.core import UnsortedSegmentJoin

    t = time.perf_counter()
    out = MatrixDiagV3(np.zeros((0, 3), np.float32), np.int32(0), np.int32(2 ** 31 - 1),
                       np.int32(-1), np.float32(0))
    assert out.shape == (0, 2 ** 31 - 1, 3) and out.dtype == np.float32
    x = np.zeros((0, 2 ** 30, 2 ** 30), np.float32)
    out = MatrixSetDiagV3(x, np.zeros((0, 2 ** 30), np.float32), np.int32(0))
    assert out.shape == x.shape and not np.may_share_memory(out, x)
    joined = UnsortedSegmentJoin(np.array([[b"a", b"b"], [b"c", b"d"]], dtype=object),
                                 np.int32([5, 5]), np.int32(10 ** 6), separator=b"-")
    assert joined.shape == (10 ** 6, 2) and joined[5].tolist() == [b"a-c", b"b-d"]
    assert joined[0].tolist() == [b"", b""] and joined[-1].tolist() == [b"", b""]
    assert time.perf_counter() - t < 1


_BIG = 2 ** 31 - 1


def _z(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


@pytest.mark.parametrize("op,args,attrs,expect", [
    # (a clean error: over the tensor limit, or empty but beyond what numpy can index)
    ("Diag", (_z(_BIG, 0),), {}, (td.ResourceExhaustedError, "diagonal tensor")),
    ("Complex", (_z(_BIG, 1, 0), _z(_BIG, 0)), {}, (td.ResourceExhaustedError, "complex result")),
    ("Fingerprint", (_z(_BIG, 3, 0, dtype=np.int32), np.array(b"farmhash64", object)), {},
     (td.ResourceExhaustedError, "fingerprints")),
    ("GatherNd", (_z(2, 3), _z(_BIG, 0, dtype=np.int32)), {},
     (td.ResourceExhaustedError, "gathered slices")),
    ("GatherNd", (_z(_BIG, 0), _z(_BIG, 0, dtype=np.int32)), {},  # (slices of empty
     (ValueError, "params of shape .* is empty")),                      # params: as TF)
    ("ReduceJoin", (np.zeros((0, 3, _BIG), object), np.int32([0])), {},
     (td.ResourceExhaustedError, "joined strings")),
    ("SoftmaxCrossEntropyWithLogits", (_z(_BIG, 0, dtype=np.float16),) * 2, {},
     (td.ResourceExhaustedError, "losses")),
    ("UniqueV2", (_z(_BIG, 6, 0), np.int64([0])), {},
     (td.ResourceExhaustedError, "unique indices")),
    ("UniqueWithCountsV2", (_z(_BIG, 6, 0), np.int32([0])), {"out_idx": "int64"},
     (td.ResourceExhaustedError, "unique indices")),
    # (an ordinary error naming the problem, before any table of the 2**31 indices)
    ("BandedTriangularSolve", (_z(0, _BIG), np.ones((5, 2), np.float32)), {},
     (ValueError, "must not be empty")),
    ("ScatterNd", (_z(_BIG, 0, dtype=np.int32), np.ones(4, np.float32), np.int32([6])), {},
     (ValueError, "updates must have shape")),
    *[(f"TensorScatter{m}", (np.ones(6, np.float32), _z(_BIG, 0, dtype=np.int32),
                             np.ones(4, np.float32)), {}, (ValueError, "updates must have shape"))
      for m in ("Add", "Sub", "Max", "Min", "Update")],
    # (TF's empty result, at once)
    ("AdjustContrastv2", (_z(0, 4, _BIG), np.float32(0.4)), {}, [((0, 4, _BIG), np.float32)]),
    ("MatrixBandPart", (_z(0, 4, _BIG), np.int64(0), np.int64(0)), {},
     [((0, 4, _BIG), np.float32)]),
    ("ReverseSequence", (_z(4, _BIG, 0), np.int64([3, 2, 5, 1])), {"seq_dim": 1},
     [((4, _BIG, 0), np.float32)]),
    ("ScatterNd", (_z(_BIG, 0, dtype=np.int32), _z(_BIG, 0), np.int32([0])), {},
     [((0,), np.float32)]),
    ("TensorScatterAdd", (_z(5, 0), _z(_BIG, 0, dtype=np.int32), _z(_BIG, 5, 0)), {},
     [((5, 0), np.float32)]),
    ("SoftmaxCrossEntropyWithLogits", (_z(5, 0, dtype=np.float16),) * 2, {},  # (no classes:
     [((5,), np.float16), ((5, 0), np.float16)]),                          # a loss of 0, as TF)
])
def test_huge_but_empty_inputs_fail_cleanly_or_make_nothing_fast(op, args, attrs, expect):
    """(The systematic probe's "huge but empty" inputs: a dim of 2**31 - 1 beside a 0, no
    bytes, made means, tables, ranges and loops of 2**31 rows, or reached numpy's raw "array
    is too big"; each commit that fixed one says what it cost.) Each case is checked with the
    tensor limit at 1 GiB, in under 1 s and 1 MiB."""
    from tfdeploy import registry

    d = registry.get_opdef(op)
    kernel = d.impls.get(d.preferred) or next(iter(d.impls.values()))
    td.setup(max_tensor_bytes=1 << 30)
    tracemalloc.start()  # (numpy reports its allocations to it)
    try:
        t = time.perf_counter()
        if isinstance(expect, tuple):
            with pytest.raises(expect[0], match=expect[1]):
                kernel(*args, **attrs)
        else:
            out = kernel(*args, **attrs)
            outs = out if isinstance(out, tuple) else (out,)
            assert [(o.shape, o.dtype) for o in outs] == expect
            assert all(not o.size or not o.any() for o in outs)
        assert time.perf_counter() - t < 1
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()
        td.setup(max_tensor_bytes=None)


def test_tensor_lists_with_hostile_sizes_are_refused_before_allocating():
    """(The systematic probe: a list resized, scattered or set at index 2**31 made 2**31
    references, 16 GB; unset elements of a hostile element shape or leading dims, and the
    copies a stack makes of the one zero element they share, were made unchecked.)"""
    from tfdeploy.kernels.lists import tensorlist as tl

    huge = 2 ** 31 - 1
    empty = tl.EmptyTensorList(np.int32(-1), np.int32(-1), element_dtype="float32")
    unset = tl.TensorListReserve(np.int32([huge, huge]), np.int32(3), element_dtype="float32")
    rows = tl.TensorListReserve(np.int32([-1, 2]), np.int32(8), element_dtype="float32")
    many = tl.TensorListReserve(np.int32([1000]), np.int32(10 ** 6), element_dtype="float32")
    f32 = {"element_dtype": "float32"}
    for call, what in [
            (lambda: tl.TensorListResize(empty, np.int32(huge)), "list's elements"),
            (lambda: tl.TensorListScatter(np.zeros((1, 2), np.float32), np.int32([huge]),
                                          np.int32([2])), "list's elements"),
            (lambda: tl.TensorListScatterIntoExistingList(
                empty, np.zeros((1, 2), np.float32), np.int32([huge])), "list's elements"),
            (lambda: tl.TensorListSetItem(empty, np.int32(huge), np.zeros(2, np.float32),
                                          resize_if_index_out_of_bounds=True),
             "list's elements"),
            (lambda: tl.TensorListStack(unset, np.int32([-1, -1]), **f32), "unset element"),
            (lambda: tl.TensorListGather(empty, np.zeros(0, np.int32), np.int32([huge, huge]),
                                         **f32), "stacked elements"),
            (lambda: tl.TensorListConcatV2(rows, np.int32([-1, 2]), np.int64([2 ** 27] * 8),
                                           **f32), "concatenation"),
            (lambda: tl.TensorListStack(many, np.int32([1000]), **f32), "stacked elements")]:
        td.setup(max_tensor_bytes=1 << 30)
        t = time.perf_counter()
        try:
            with pytest.raises(td.ResourceExhaustedError, match=what):
                call()
        finally:
            td.setup(max_tensor_bytes=None)
        assert time.perf_counter() - t < 1
    stacked = tl.TensorListStack(tl.TensorListResize(empty, np.int32(3)), np.int32([2]), **f32)
    assert stacked.shape == (3, 2) and not stacked.any()


@pytest.mark.parametrize("limit", ["deadline", "max_loop_seconds", "max_loop_iterations"])
def test_sample_distorted_bounding_box_attempts_stop_as_loops_do(limit):
    """(A hostile max_attempts of 2**31 with a box no crop can cover ran 2**31 attempts: about
    35 minutes.) The attempts are a loop, bounded as While loops are."""
    from tfdeploy.kernels.image.bbox import SampleDistortedBoundingBoxV2
    from tfdeploy.runtime import limits

    size, box = np.int32([100, 100, 3]), np.float32([[[0, 0, 1, 1]]])
    # no crop of at most a tenth of the image covers the whole box
    kw = {"seed": 1, "seed2": 2, "area_range": [0.05, 0.1], "max_attempts": 2 ** 31 - 1}
    says = {"deadline": "deadline passed", "max_loop_seconds": "0.2 s, the longest",
            "max_loop_iterations": "1000 iterations"}[limit]
    t = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if limit == "deadline":
            stack.enter_context(limits.deadline(0.2))
        else:
            td.setup(**{limit: 0.2 if limit == "max_loop_seconds" else 1000})
            stack.callback(td.setup, **{limit: None})
        with pytest.raises(td.ResourceExhaustedError, match=says):
            SampleDistortedBoundingBoxV2(size, box, np.float32(1.0), **kw)
        assert time.perf_counter() - t < 1
        # a crop found in the first attempts, as before; boxes of no pixels, which no
        # attempt can cover, give the whole image without running the attempts
        begin, crop, _ = SampleDistortedBoundingBoxV2(size, box, np.float32(0.01), **kw)
        assert 0 < crop[0] * crop[1] <= 1000
        begin, crop, _ = SampleDistortedBoundingBoxV2(
            size, np.float32([[[0.5, 0.5, 0.5, 0.5]]]), np.float32(0.1), **kw)
        assert begin.tolist() == [0, 0, 0] and crop.tolist() == [100, 100, -1]


def test_regex_replace_that_would_write_gigabytes_is_refused():
    """(Probing: a rewrite 10**5 long on the 10**5 + 1 empty matches of a string wrote 10 GB.)
    The bound on what the replacement can write is checked first; an ordinary replacement is
    not affected."""
    from tfdeploy.kernels.strings import regex
    from tfdeploy.kernels.strings.regex import RegexReplace, StaticRegexReplace

    x = np.array([b"a" * 100000], dtype=object)
    t = time.perf_counter()
    td.setup(max_tensor_bytes=1 << 30)
    try:
        with pytest.raises(td.ResourceExhaustedError, match="replaced strings"):
            StaticRegexReplace(x, pattern=b"", rewrite=b"x" * 100000, replace_global=True)
        with pytest.raises(td.ResourceExhaustedError, match="replaced strings"):
            RegexReplace(x, np.array(b"(a)", dtype=object),
                         np.array(b"\\1" * 20000, dtype=object), replace_global=True)
        if regex._re2 is not None:
            assert StaticRegexReplace(x, pattern=b"a", rewrite=b"bc")[0] == b"bc" * 100000
        else:  # (without google-re2 the guarded fallback refuses strings that long)
            with pytest.raises(ValueError, match="without RE2"):
                StaticRegexReplace(x, pattern=b"a", rewrite=b"bc")
    finally:
        td.setup(max_tensor_bytes=None)
    assert time.perf_counter() - t < 2


def test_huge_broadcast_fails_fast_naming_the_node():
    m = _saved(_graph([placeholder("x"), const("shape", np.array([10 ** 6, 10 ** 6])),
                       Node("b", "BroadcastTo", ["x", "shape"], {"T": "float32"}),
                       const("axes", np.array([0, 1])),
                       Node("s", "Sum", ["b", "axes"], {"T": "float32"})], ["x"], ["s"]))
    t = time.perf_counter()
    with pytest.raises(td.ResourceExhaustedError, match="'b' \\(BroadcastTo\\).*max_tensor"):
        m(np.float32(1))
    assert time.perf_counter() - t < 1


def test_broadcasting_binary_op_over_the_limit():
    m = _saved(_graph([placeholder("x", "float32", [None, 1]), placeholder("y", "float32",
                                                                        [1, None]),
                       Node("s", "AddV2", ["x", "y"], {"T": "float32"})], ["x", "y"], ["s"]))
    td.setup(max_tensor_bytes=1 << 20)
    try:
        with pytest.raises(td.ResourceExhaustedError, match="'s' \\(AddV2\\)"):
            m(np.ones((2000, 1), np.float32), np.ones((1, 2000), np.float32))
    finally:
        td.setup(max_tensor_bytes=None)
    assert m(np.ones((2000, 1), np.float32), np.ones((1, 2000), np.float32)).shape == (2000,
                                                                                       2000)


def test_memory_error_is_resource_exhausted():
    from tfdeploy.compiler import codegen

    m = model_of([placeholder("x"), Node("y", "Neg", ["x"], {"T": "float32"})], ["x"], ["y"])
    err = codegen._failure(m.plan(), 0, MemoryError("Unable to allocate 7.28 TiB"))
    assert isinstance(err, td.ResourceExhaustedError) and "'y' (Neg)" in str(err)


@pytest.mark.parametrize("op", ["Svd", "MatrixSolveLs", "SelfAdjointEigV2"])
def test_linalg_on_inf_gives_nans(op):
    a = np.eye(3, dtype=np.float32)
    a[0, 1] = np.inf
    from tfdeploy.kernels.linalg import core

    t = time.perf_counter()
    if op == "MatrixSolveLs":
        out = core.MatrixSolveLs(a, np.ones((3, 1), np.float32), np.float64(0))
    else:
        out = getattr(core, op)(a)[0]
    assert time.perf_counter() - t < 1 and np.isnan(out).all()


def test_folding_never_runs_a_loop_in_a_branch_not_taken():
    """A branch holds an If with constant inputs whose branch loops for ever: compiling the
    outer branches (both are compiled) must not fold it."""
    forever_cond = _graph([placeholder("i"), const("t", True)], ["i"], ["t"])
    forever_body = _graph([placeholder("i"), const("one", np.float32(1)),
                           Node("n", "AddV2", ["i", "one"], {"T": "float32"})], ["i"], ["n"])
    loops = _graph([placeholder("a"), Node("w", "While", ["a"], {
        "cond": FuncAttr("fc"), "body": FuncAttr("fb")})], ["a"], ["w"])
    inner = _graph([placeholder("a"), const("yes", True), const("z", np.float32(0)),
                    Node("i", "StatelessIf", ["yes", "z"], {"then_branch": FuncAttr("loops"),
                                                            "else_branch": FuncAttr("loops")}),
                    Node("r", "AddV2", ["a", "i"], {"T": "float32"})], ["a"], ["r"])
    plain = _graph([placeholder("a"), Node("n", "Neg", ["a"], {"T": "float32"})], ["a"], ["n"])
    g = _graph([placeholder("p", "bool"), placeholder("x"),
                Node("if", "If", ["p", "x"], {"then_branch": FuncAttr("inner"),
                                              "else_branch": FuncAttr("plain")})],
               ["p", "x"], ["if"], {"fc": forever_cond, "fb": forever_body, "loops": loops,
                                    "inner": inner, "plain": plain})
    m = _saved(g)
    t = time.perf_counter()
    assert m(np.bool_(False), np.float32(3)) == -3
    assert time.perf_counter() - t < 5


def test_folding_is_bounded_in_bytes_and_time():
    nodes = [placeholder("x"), const("dims", np.array([1000, 1000])), const("v", np.float32(1)),
             Node("f", "Fill", ["dims", "v"], {"T": "float32"}),
             Node("y", "AddV2", ["x", "f"], {"T": "float32"})]
    m = model_of(nodes, ["x"], ["y"])
    assert "Fill" not in str(m.plan(after="fold"))
    td.setup(fold_bytes=1 << 20)
    try:
        assert "Fill" in str(m.plan(after="fold"))  # 4 MB: made at run time instead
    finally:
        td.setup(fold_bytes=None)
    td.setup(fold_seconds=1e-9)
    try:
        assert "Fill" in str(m.plan(after="fold"))  # no time left to fold anything
    finally:
        td.setup(fold_seconds=None)
    assert m(np.float32(1)).shape == (1000, 1000)


def test_limits_are_validated():
    from tfdeploy.runtime import limits

    with pytest.raises(td.TFDeployError, match="unknown limit"):
        td.setup(max_tensor=5)
    with pytest.raises(td.TFDeployError, match="positive integer"):
        td.setup(max_tensor_bytes=-1)
    td.setup(max_tensor_bytes=12345)
    assert limits.current()["max_tensor_bytes"] == 12345
    td.setup(max_tensor_bytes=None)
    assert limits.current()["max_tensor_bytes"] >= 64 << 20


# ------------------------------------------------------------------ careless callers

def test_ragged_feed_is_a_feed_error_naming_the_input():
    m, _ = dense_softmax(3, 2)
    with pytest.raises(td.FeedError, match="input 'input'.*not an array"):
        m([[1.0, 2.0, 3.0], [1.0]])


def test_feeding_an_intermediate_tensor_is_checked_and_cast():
    m, _ = dense_softmax(3, 2)
    h, y = m.get("add", "output")
    logits = np.zeros((1, 2), np.float64)
    m.metadata["tensors"] = {"default": {"nodes": {"add": [["float32", [None, 2]]]}}}
    m._plans.clear()
    m._evals.clear()
    out = y.eval({h: logits})
    assert out.dtype == np.float32  # float64 cast to float32, as TF1 does
    with pytest.raises(td.FeedError, match="'add:0' expects shape"):
        y.eval({h: np.zeros((1, 5), np.float32)})
    W = m.get("W")
    with pytest.raises(td.FeedError, match="'W:0' expects"):
        y.eval({W: np.zeros((2, 2), np.float32), "input": np.zeros((1, 3), np.float32)})


def test_classic_eval_returns_numpy_scalars():
    m = model_of([placeholder("x", "float32", [None]), const("ax", np.array(0)),
                  Node("s", "Sum", ["x", "ax"], {"T": "float32"})], ["x"], ["s"])
    s = m.get("s")
    got = s.eval({"x": np.ones(3, np.float32)})
    assert type(got) is np.float32 and got == 3
    (both,) = m.eval([s], {"x": np.ones(2, np.float32)})
    assert type(both) is np.float32
    assert isinstance(m(np.ones(2, np.float32)), np.ndarray)  # the new API keeps 0-d arrays


@pytest.mark.parametrize("source, match", [
    (None, "td.load\\(None\\)"), (3, "from int"), (3.5, "from float"),
    (io.StringIO("TFDEPLOY"), "text mode"), (object(), "from a object"),
])
def test_load_of_wrong_sources(source, match):
    with pytest.raises(td.FileFormatError, match=match):
        td.load(source)


def test_load_of_buffers():
    data = _model_bytes()
    x = np.ones((1, 8), np.float32)
    want = td.load(data)(x)
    for source in (bytearray(data), memoryview(data), np.frombuffer(data, np.uint8),
                   memoryview(bytes(np.repeat(np.frombuffer(data, np.uint8), 2)))[::2],
                   io.BytesIO(data)):
        np.testing.assert_array_equal(td.load(source)(x), want)


@pytest.mark.parametrize("mmap", [None, False])
def test_file_overwritten_in_place_does_not_change_a_loaded_model(tmp_path, mmap):
    """Small files are read (never mapped) by default: copying another model over the file or
    truncating it changes nothing for a model already loaded."""
    p = tmp_path / "m.tfd"
    a, _ = dense_softmax(8, 3, seed=0)
    b, _ = dense_softmax(8, 3, seed=1)
    a.save(p)
    x = np.ones((1, 8), np.float32)
    loaded = td.load(p, mmap=mmap)
    want = loaded(x)
    other = tmp_path / "other.tfd"
    b.save(other)
    with open(p, "r+b") as f:  # what `cp other.tfd m.tfd` does: the same inode, rewritten
        f.write(other.read_bytes())
    np.testing.assert_array_equal(loaded(x), want)
    with open(p, "r+b") as f:
        f.truncate(10)
    np.testing.assert_array_equal(loaded(x), want)


def test_mapped_file_replaced_atomically_is_safe(tmp_path):
    p = tmp_path / "m.tfd"
    a, _ = dense_softmax(8, 3, seed=0)
    b, _ = dense_softmax(8, 3, seed=1)
    a.save(p)
    x = np.ones((1, 8), np.float32)
    loaded = td.load(p, mmap=True)
    W = loaded.default_graph.node("W").attrs["value"]
    assert not W.flags.owndata and not W.flags.writeable
    want = loaded(x)
    b.save(p)  # save writes a temporary file and os.replace()s it: the mapping keeps the old
    np.testing.assert_array_equal(loaded(x), want)
    assert not np.array_equal(td.load(p)(x), want)


def test_resize_with_align_corners_and_half_pixel_centers_is_refused_at_load():
    g = _graph([placeholder("x", "float32", [1, 2, 2, 1]), const("s", np.array([4, 4])),
                Node("r", "ResizeBilinear", ["x", "s"], {"T": "float32", "align_corners": True,
                                                        "half_pixel_centers": True})],
               ["x"], ["r"])
    b = io.BytesIO()
    td.fileformat.save({"default": g}, b)
    with pytest.raises(td.FileFormatError, match="half_pixel_centers is True, align_corners"):
        td.load(b.getvalue())


def _endless_loops():
    """Two While loops whose condition always holds: one counting (its condition decided a
    chunk of iterations at a time) and one doubling a float vector (stepped)."""
    cond = _graph([placeholder("i", "int32"), const("t", True)], ["i"], ["t"])
    body = _graph([placeholder("i", "int32"), const("one", np.int32(1)),
                   Node("n", "AddV2", ["i", "one"], {"T": "int32"})], ["i"], ["n"])
    counting = _graph([placeholder("i0", "int32"),
                       Node("w", "While", ["i0"], {"cond": FuncAttr("c"), "body": FuncAttr("b")})],
                      ["i0"], ["w"], {"c": cond, "b": body}, out_dtype="int32")
    fcond = _graph([placeholder("x", "float32", [None]), const("t", True)], ["x"], ["t"])
    fbody = _graph([placeholder("x", "float32", [None]), const("two", np.float32(2)),
                    Node("y", "Mul", ["x", "two"], {"T": "float32"})], ["x"], ["y"])
    doubling = _graph([placeholder("x0", "float32", [None]),
                       Node("w", "While", ["x0"], {"cond": FuncAttr("c"),
                                                   "body": FuncAttr("b")})],
                      ["x0"], ["w"], {"c": fcond, "b": fbody})
    return (_saved(counting), np.int32(0)), (_saved(doubling), np.zeros(3, np.float32))


@pytest.mark.parametrize("limit, value, says", [
    ("max_loop_iterations", 1000, "1000 iterations"),
    ("max_loop_seconds", 0.2, "0.2 s, the longest one loop")])
def test_loop_limits(limit, value, says):
    td.setup(**{limit: value})
    try:
        for m, x in _endless_loops():
            t = time.perf_counter()
            with pytest.raises(td.ResourceExhaustedError, match=f"'w' \\(While\\).*{says}"):
                m(x)
            assert time.perf_counter() - t < 3
    finally:
        td.setup(**{limit: None})


def test_loop_seconds_must_be_positive():
    for bad in (0, -1, float("nan"), "1", True):
        with pytest.raises(td.TFDeployError, match="max_loop_seconds must be a positive number"):
            td.setup(max_loop_seconds=bad)


def test_deadline_stops_the_loops_run_within_it():
    from tfdeploy.runtime import limits

    (m, x), _ = _endless_loops()
    with limits.deadline(0.2):
        t = time.perf_counter()
        with pytest.raises(td.ResourceExhaustedError, match="deadline passed"):
            m(x)
        assert time.perf_counter() - t < 3
    assert limits.loop_deadline() is None  # (gone with the block)


def test_reading_a_missing_output_of_a_one_output_op():
    m = _saved(_graph([placeholder("x", "float32", [3, 2]),
                       Node("n", "Neg", ["x"], {"T": "float32"})], ["x"], ["n:1"]))
    with pytest.raises(td.ExecutionError, match="'n' \\(Neg\\).*one output"):
        m(np.ones((3, 2), np.float32))


def test_arithmetic_on_strings_is_refused_not_repeated():
    m = _saved(_graph([placeholder("s", "string"), const("n", np.int64(10 ** 6)),
                       Node("m", "Mul", ["s", "n"], {"T": "int64"})], ["s"], ["m"]))
    with pytest.raises(td.ExecutionError, match="'m' \\(Mul\\).*no kernel for string"):
        m(np.array([b"abc"], dtype=object))


def test_arithmetic_on_string_constants_is_not_folded_into_repeats():
    """(The fuzzer, seed 8675309: Mul of a string constant by 2**20 was constant-folded by
    numpy's object multiply, a 34 MB bytes value made before the fold's size check.)"""
    import tracemalloc

    g = _graph([placeholder("x"), const("s", np.array(b"a" * 32 + b"!", dtype=object)),
                const("n", np.int64(2 ** 20)), Node("m", "Mul", ["s", "n"], {"T": "string"})],
               ["x"], ["m"])
    tracemalloc.start()
    try:
        m = _saved(g)
        with pytest.raises(td.ExecutionError, match="'m' \\(Mul\\).*no kernel for string"):
            m(np.float32(1))
        assert tracemalloc.get_traced_memory()[1] < 8 << 20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("op,shapes,nsp", [
    ("Conv2D", [(1, 4, 5, 3), (3, 3, 3, 2)], 2),
    ("DepthwiseConv2dNative", [(1, 4, 5, 3), (3, 3, 3, 2)], 2),
    ("Conv3D", [(1, 2, 4, 5, 3), (2, 2, 2, 3, 2)], 3)])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_huge_strides_give_the_one_output_of_a_stride_past_the_input(op, shapes, nsp, padding):
    """(The systematic probe: a stride of 2**62 overflowed the strided views' byte offsets,
    numpy's 'maximum allowed dimension exceeded'.) One output per dim, as TF computes."""
    from tfdeploy import registry

    d = registry.get_opdef(op)
    kernel = d.impls.get(d.preferred) or next(iter(d.impls.values()))
    rng = np.random.default_rng(0)
    x, w = (rng.uniform(-1, 1, s).astype(np.float32) for s in shapes)
    got = kernel(x, w, strides=[1] + [2 ** 62] * nsp + [1], padding=padding)
    want = kernel(x, w, strides=[1] + [8] * nsp + [1], padding=padding)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_depthwise_input_gradient_of_a_hostile_batch_is_refused():
    """(The systematic probe: input_sizes with a batch of 2**31 - 1 and an out_backprop of
    one image asked numpy for 864 GB.) The batches must agree, as in Conv2DBackpropInput."""
    from tfdeploy.kernels.nn.conv import DepthwiseConv2dNativeBackpropInput

    with pytest.raises(ValueError, match="does not match"):
        DepthwiseConv2dNativeBackpropInput(np.int32([2 ** 31 - 1, 4, 4, 3]),
                                           np.ones((3, 3, 3, 1), np.float32),
                                           np.ones((1, 4, 4, 3), np.float32),
                                           strides=[1, 1, 1, 1], padding="SAME")


@pytest.mark.parametrize("op,delimiter", [("StringSplitV2", b" "), ("StringSplitV2", b""),
                                          ("StringSplit", b" "), ("StringSplit", b" ,"),
                                          ("StringSplit", b"")])
def test_string_splits_count_their_tokens_before_making_them(op, delimiter):
    """(The systematic probe: StringSplit turned 7 MB of "a a a ..." into 451 MB of Python
    objects before any check.) The tokens a split can make are counted against the tensor
    limit first; small splits are unchanged."""
    import tracemalloc

    from tfdeploy import registry
    from tfdeploy.runtime import limits

    d = registry.get_opdef(op)
    kernel = d.impls.get(d.preferred) or next(iter(d.impls.values()))
    text = np.array([b"a ,b" * 500_000], dtype=object)  # 2 MB
    before = limits.current()["max_tensor_bytes"]
    td.setup(max_tensor_bytes=16 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(td.ResourceExhaustedError, match="tokens"):
            kernel(text, np.array(delimiter, dtype=object))
        assert tracemalloc.get_traced_memory()[1] < 24 << 20
    finally:
        tracemalloc.stop()
        td.setup(max_tensor_bytes=before)
    indices, values, shape = kernel(np.array([b"a b,c", b"d"], dtype=object),
                                    np.array(delimiter, dtype=object))
    assert len(values) == len(indices) and shape[0] == 2


def test_a_table_handle_fetched_twice_is_no_crash():
    """(The fuzzer, seed 8675309: a mutated file fetched a lookup table's handle, through an
    IdentityN, as two outputs; the plan copied the repeated fetch with ``.copy()``, an
    AttributeError.) A value that is no array is passed on as it is, as the first fetch."""
    g = _graph([placeholder("k", "string", [None]),
                Node("t", "TFDHashTable", [], {"keys": np.array([b"a", b"b"], dtype=object),
                                               "values": np.array([1, 2], np.int64),
                                               "key_dtype": "string", "value_dtype": "int64"}),
                Node("find", "IdentityN", ["t", "k"], {})], ["k"], [])
    g.outputs = [TensorSpec("a", "find:0", "float32", None),
                 TensorSpec("b", "find:0", "float32", None),
                 TensorSpec("c", "find:1", "string", None)]
    m = _saved(g)
    a, b, c = m(np.array([b"a"], dtype=object))
    assert a is b and not isinstance(a, np.ndarray)
    assert c.tolist() == [b"a"]


def test_convolutions_of_huge_but_empty_inputs_and_filters_fail_cleanly():
    """(A probe of every op with huge-but-empty inputs: an input of depth 0 and 2**31 - 1
    images raised a ZeroDivisionError; a depthwise filter of no rows and a channel multiplier
    of 2**31 - 1 repeated the input into 2.6 TB.) TF refuses both too."""
    from tfdeploy.kernels.nn.conv import Conv2D, Conv3D, DepthwiseConv2dNative

    with pytest.raises(ValueError, match="at least one group"):
        Conv2D(np.empty((2 ** 31 - 1, 7, 8, 0), np.float32), np.ones((3, 3, 3, 4), np.float32),
               strides=[1, 1, 1, 1], padding="SAME")
    with pytest.raises(ValueError, match="at least one group"):
        Conv3D(np.empty((2 ** 31 - 1, 4, 5, 6, 0), np.float32),
               np.ones((2, 2, 2, 3, 4), np.float32), strides=[1] * 5, padding="SAME")
    t = time.perf_counter()
    with pytest.raises(td.ResourceExhaustedError, match="the result"):
        DepthwiseConv2dNative(np.ones((2, 7, 8, 3), np.float32),
                              np.empty((0, 3, 3, 2 ** 31 - 1), np.float32),
                              strides=[1, 1, 1, 1], padding="SAME")
    assert time.perf_counter() - t < 1
