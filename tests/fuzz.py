"""The fuzzing harness: hostile model files and random ops on random inputs, and the rules
every case must keep (docs/security.md).

A case is made from a ``random.Random``: either a seed model (built by hand, no TensorFlow)
whose file is mutated (header fields, references, shapes, dtypes, attributes, function graphs,
raw bytes), or one random op of a list with random attributes and random inputs (fed or
constant). The case loads the file and runs the model on inputs made from its signature. It
fails if it

- raises anything but a ``td.TFDeployError`` (a crash of the process fails the whole run);
- takes more than ``TIME_LIMIT`` seconds (a ``Hang`` is raised in it by a timer);
- allocates (tracemalloc, which numpy reports to) more than ``2 * file size + SLACK`` before a
  clean error at load, or more than that plus ``4 * max_tensor_bytes`` in a run.

``tests/test_fuzz.py`` runs ``FUZZ_CASES`` (default 10,000) cases with a fixed seed in CI;
``python tests/fuzz.py --cases 1000000 --seed 7`` runs longer (docs/security.md).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import random
import signal
import struct
import time
import tracemalloc

import numpy as np

import tfdeploy as td
from graphs import const, placeholder
from tfdeploy.ir.graph import FuncAttr, Graph, Node, TensorSpec
from tfdeploy.runtime import limits

TIME_LIMIT = 5.0
SLACK = 4 << 20
#: the limits a fuzzing run sets (small, so allocations are cheap and checkable)
FUZZ_LIMITS = {"max_tensor_bytes": 4 << 20, "fold_bytes": 1 << 20, "fold_seconds": 1.0,
               "max_header_bytes": 1 << 20, "max_loop_iterations": 10_000}


class Hang(BaseException):
    """Raised in a case that ran over TIME_LIMIT (a BaseException: no kernel swallows it)."""


class Failure(AssertionError):
    """A case broke a rule; the message says which, and how to replay it."""


# ---------------------------------------------------------------------------- seed models

def _graph(nodes, inputs, outputs, functions=None) -> Graph:
    by = {n.name: n for n in nodes}
    g = Graph(list(nodes),
              [TensorSpec(i, f"{i}:0", by[i].attrs.get("dtype", "float32"),
                          by[i].attrs.get("shape")) for i in inputs],
              [TensorSpec(o.replace(":", "_"), o if ":" in o else f"{o}:0", "float32", None)
               for o in outputs])
    g.functions = functions or {}
    return g


def _f32(*shape) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) / 7


def seed_graphs() -> list[Graph]:
    """Small models covering what a file can hold: weights, shape ops, control flow and
    functions, strings and regexes, a lookup table, linear algebra."""
    T = {"T": "float32"}
    dense = _graph([placeholder("x", "float32", [None, 4]), const("W", _f32(4, 3)),
                    const("b", _f32(3)), Node("mm", "MatMul", ["x", "W"], dict(T)),
                    Node("add", "AddV2", ["mm", "b"], dict(T)),
                    Node("y", "Softmax", ["add"], dict(T))], ["x"], ["y"])
    shapes = _graph([placeholder("x", "float32", [None]), const("s", np.array([-1, 1])),
                     Node("r", "Reshape", ["x", "s"], dict(T)), const("m", np.array([1, 2])),
                     Node("t", "Tile", ["r", "m"], dict(T)), const("d", np.array([2, 2])),
                     const("v", np.float32(1.5)), Node("f", "Fill", ["d", "v"], dict(T)),
                     const("p", np.array([[1, 0], [0, 1]])),
                     Node("pad", "Pad", ["f", "p"], dict(T)),
                     const("bs", np.array([3, 3])), Node("bt", "BroadcastTo", ["pad", "bs"],
                                                         dict(T)),
                     const("lo", np.int32(0)), const("hi", np.int32(5)), const("one", np.int32(1)),
                     Node("rg", "Range", ["lo", "hi", "one"], {"Tidx": "int32"})],
                    ["x"], ["t", "bt", "rg"])
    then = _graph([placeholder("a"), Node("n", "Neg", ["a"], dict(T))], ["a"], ["n"])
    other = _graph([placeholder("a"), const("c", _f32(2)), Node("m", "Mul", ["a", "c"], dict(T))],
                   ["a"], ["m"])
    cond = _graph([placeholder("i", "int32"), placeholder("a"), const("k", np.int32(3)),
                   Node("lt", "Less", ["i", "k"], {"T": "int32"})], ["i", "a"], ["lt"])
    body = _graph([placeholder("i", "int32"), placeholder("a"), const("one", np.int32(1)),
                   Node("i1", "AddV2", ["i", "one"], {"T": "int32"}),
                   Node("c", "PartitionedCall", ["a"], {"f": FuncAttr("then")})],
                  ["i", "a"], ["i1", "c"])
    control = _graph([placeholder("p", "bool", []), placeholder("x", "float32", [2]),
                      const("i0", np.int32(0)),
                      Node("if", "If", ["p", "x"], {"then_branch": FuncAttr("then"),
                                                    "else_branch": FuncAttr("other")}),
                      Node("w", "While", ["i0", "if"], {"cond": FuncAttr("cond"),
                                                        "body": FuncAttr("body"),
                                                        "T": ["int32", "float32"]})],
                     ["p", "x"], ["w:1"], {"then": then, "other": other, "cond": cond,
                                           "body": body})
    S = np.array
    strings = _graph([placeholder("s", "string", [None]),
                      Node("rx", "StaticRegexReplace", ["s"], {"pattern": b"(a|b)+c",
                                                               "rewrite": b"<\\1>"}),
                      Node("fm", "StaticRegexFullMatch", ["s"], {"pattern": b"[0-9.e+-]+"}),
                      Node("num", "StringToNumber", ["rx"], {"out_type": "float32"}),
                      Node("up", "StringUpper", ["s"], {})], ["s"], ["rx", "fm", "up", "num"])
    table = _graph([placeholder("k", "string", [None]),
                    Node("t", "TFDHashTable", [], {"keys": S([b"a", b"b"], dtype=object),
                                                   "values": S([1, 2], np.int64),
                                                   "key_dtype": "string",
                                                   "value_dtype": "int64"}),
                    const("dflt", np.int64(-1)),
                    Node("find", "LookupTableFindV2", ["t", "k", "dflt"], {}),
                    Node("ex", "LookupTableExportV2", ["t"], {"Tkeys": "string",
                                                              "Tvalues": "int64"})],
                   ["k"], ["find", "ex:0", "ex:1"])
    linalg = _graph([placeholder("a", "float32", [3, 3]), Node("svd", "Svd", ["a"], dict(T)),
                     const("r", _f32(3, 1)), const("l2", np.float64(0)),
                     Node("ls", "MatrixSolveLs", ["a", "r", "l2"], dict(T))],
                    ["a"], ["svd", "svd:1", "ls"])
    return [dense, shapes, control, strings, table, linalg]


def save_bytes(g: Graph) -> bytes:
    b = io.BytesIO()
    td.fileformat.save({"default": g}, b)
    return b.getvalue()


# ---------------------------------------------------------------------------- file mutations

_HOSTILE_VALUES = [None, True, -1, 0, 1, 2 ** 31, 2 ** 63, -2 ** 63, 10 ** 30, 1e308, -0.0,
                   float("inf"), float("nan"), "", "float32", "string", "W:0", "\u00b2", "x" * 300,
                   [], [None], [1] * 40, [[1]], {}, {"$array": 0}, {"$array": 10 ** 9},
                   {"$func": "nowhere"}, {"$func": "then"}, {"$bytes": "!!"}, {"$bytes": ""},
                   {"$x": 1}, [2 ** 40, 2 ** 40], [-5], "Const", "While"]
_REFS = ["W:1000000000", "W:\u00b2", "", ":", "x:-1", "x:1", "x:01", "nowhere:0", "x:99999",
         "y:0", "y:7", "mm:0", "if:3", "t:1", "ex:2", "a:0"]
_DTYPES = ["float32", "float64", "int32", "int64", "uint8", "bool", "string", "float16",
           "bfloat16", "complex64", "object", "resource", "", "int4"]


def _containers(obj, out: list) -> list:
    """Every dict and list in the JSON tree ``obj`` (iteratively)."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, (dict, list)):
            out.append(o)
            stack.extend(o.values() if isinstance(o, dict) else o)
    return out


def _graphs(h) -> list[dict]:
    out = []
    for e in h.get("graphs", []) if isinstance(h, dict) else []:
        g = e.get("graph") if isinstance(e, dict) else None
        if isinstance(g, dict):
            out.append(g)
            out.extend(f for f in (g.get("functions") or {}).values() if isinstance(f, dict))
    return out


def _nodes(h) -> list[dict]:
    return [n for g in _graphs(h) for n in g.get("nodes", []) if isinstance(n, dict)]


def _mutate_value(rng: random.Random, h) -> None:
    # (copies: a hostile list or dict put in the header, mutated later, changed the shared
    # one for every later case, and one put inside itself made a cycle json cannot write)
    cs = _containers(h, [])
    c = rng.choice(cs)
    if isinstance(c, dict) and c:
        c[rng.choice(list(c))] = copy.deepcopy(rng.choice(_HOSTILE_VALUES))
    elif isinstance(c, list) and c:
        op = rng.random()
        if op < 0.6:
            c[rng.randrange(len(c))] = copy.deepcopy(rng.choice(_HOSTILE_VALUES))
        elif op < 0.8:
            del c[rng.randrange(len(c))]
        else:
            c.append(copy.deepcopy(rng.choice(c)))


def _mutate_ref(rng: random.Random, h) -> None:
    names = [n.get("name") for n in _nodes(h)] or ["x"]
    ref = rng.choice(_REFS) if rng.random() < 0.5 else \
        f"{rng.choice(names)}:{rng.choice([0, 1, 2, 5, 10 ** 6])}"
    nodes = [n for n in _nodes(h) if isinstance(n.get("inputs"), list) and n["inputs"]]
    specs = [s for g in _graphs(h) for s in g.get("outputs", []) + g.get("inputs", [])
             if isinstance(s, dict)]
    if nodes and rng.random() < 0.6:
        n = rng.choice(nodes)
        n["inputs"][rng.randrange(len(n["inputs"]))] = ref
    elif specs:
        rng.choice(specs)["ref"] = ref


def _mutate_shape(rng: random.Random, h) -> None:
    shape = rng.choice([[], [0], [2 ** 40], [1] * rng.randrange(30, 70), [-1, 3], [None],
                        [rng.randrange(10) for _ in range(rng.randrange(5))], "3", None])
    arrays = [a for a in h.get("arrays", []) if isinstance(a, dict)]
    holders = [n.get("attrs") for n in _nodes(h) if isinstance(n.get("attrs"), dict) and
               "shape" in n["attrs"]]
    specs = [s for g in _graphs(h) for s in g.get("inputs", []) if isinstance(s, dict)]
    pick = rng.random()
    if arrays and pick < 0.4:
        rng.choice(arrays)["shape"] = shape
    elif holders and pick < 0.7:
        rng.choice(holders)["shape"] = shape
    elif specs:
        rng.choice(specs)["shape"] = shape


def _mutate_dtype(rng: random.Random, h) -> None:
    dt = rng.choice(_DTYPES)
    arrays = [a for a in h.get("arrays", []) if isinstance(a, dict)]
    attrs = [(n["attrs"], k) for n in _nodes(h) if isinstance(n.get("attrs"), dict)
             for k in n["attrs"] if k in ("dtype", "T", "DstT", "out_type", "Tidx")]
    if arrays and rng.random() < 0.5:
        rng.choice(arrays)["dtype"] = dt
    elif attrs:
        a, k = rng.choice(attrs)
        a[k] = dt if rng.random() < 0.8 else [dt]


def _mutate_node(rng: random.Random, h) -> None:
    nodes = _nodes(h)
    if not nodes:
        return
    n = rng.choice(nodes)
    attrs = n.get("attrs") if isinstance(n.get("attrs"), dict) else {}
    pick = rng.random()
    if pick < 0.3:
        n["op"] = rng.choice(["While", "If", "Case", "PartitionedCall", "Reshape", "Fill",
                              "BroadcastTo", "Tile", "Range", "Const", "Placeholder", "Identity",
                              "IdentityN", "_FusedChain", "Svd", "StringNGrams", "NoSuchOp"])
    elif pick < 0.5 and attrs:
        del attrs[rng.choice(list(attrs))]
    elif pick < 0.8:
        funcs = ["then", "other", "cond", "body", "nowhere"]
        key = rng.choice(["f", "then_branch", "else_branch", "cond", "body", "branches"])
        attrs[key] = [{"$func": rng.choice(funcs)}] if key == "branches" else \
            {"$func": rng.choice(funcs)}
        n["attrs"] = attrs
    else:
        n["name"] = rng.choice([x.get("name") for x in nodes])  # duplicate names


def _mutate_functions(rng: random.Random, h) -> None:
    gs = [e.get("graph") for e in h.get("graphs", []) if isinstance(e, dict)]
    g = gs[0] if gs and isinstance(gs[0], dict) else None
    funcs = g.get("functions") if g else None
    if not isinstance(funcs, dict) or not funcs:
        return
    names = list(funcs)
    f = funcs[rng.choice(names)]
    if not isinstance(f, dict) or not isinstance(f.get("nodes"), list):
        return
    pick = rng.random()
    if pick < 0.4:  # a call of itself or another (cycles)
        ins = f.get("inputs") or [{"ref": "a:0"}]
        ref = ins[0].get("ref", "a:0") if isinstance(ins[0], dict) else "a:0"
        f["nodes"].append({"name": "rec", "op": "PartitionedCall", "inputs": [ref],
                           "attrs": {"f": {"$func": rng.choice(names)}}})
        if isinstance(f.get("outputs"), list) and f["outputs"]:
            f["outputs"][0] = {"name": "o", "ref": "rec:0", "dtype": "float32", "shape": None}
    elif pick < 0.7 and f["nodes"]:
        del f["nodes"][rng.randrange(len(f["nodes"]))]
    else:
        a, b = rng.choice(names), rng.choice(names)
        funcs[a], funcs[b] = funcs[b], funcs[a]


_MUTATORS = [_mutate_value, _mutate_ref, _mutate_shape, _mutate_dtype, _mutate_node,
             _mutate_functions]


def _split(data: bytes) -> tuple[dict, bytes]:
    (hlen,) = struct.unpack_from("<Q", data, 16)
    return json.loads(data[24:24 + hlen]), data[24 + hlen:]


def _join(prefix: bytes, header: dict, rest: bytes) -> bytes:
    h = json.dumps(header, allow_nan=True).encode()
    h += b" " * (-(24 + len(h)) % 64)
    return prefix[:16] + struct.pack("<Q", len(h)) + h + rest


def mutate_file(rng: random.Random, data: bytes) -> bytes:
    """A hostile variant of a model file."""
    if rng.random() < 0.15:  # raw bytes: flips, truncation, garbage
        b = bytearray(data)
        for _ in range(rng.randrange(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        if rng.random() < 0.3:
            del b[rng.randrange(len(b)):]
        return bytes(b)
    header, rest = _split(data)
    for _ in range(rng.randrange(1, 4)):
        try:
            rng.choice(_MUTATORS)(rng, header)
        except (TypeError, AttributeError, KeyError, IndexError, ValueError):
            pass  # (an earlier mutation left no such field: the file is hostile enough)
    if rng.random() < 0.05:  # a 5,000-digit integer somewhere
        return _join(data, {**header}, rest).replace(b'"format_version": 1',
                                                     b'"format_version": 1' + b"7" * 5000)
    return _join(data, header, rest)


# ---------------------------------------------------------------------------- random ops

_OPS = [  # (op, number of inputs, attributes)
    ("AddV2", 2, {}), ("Mul", 2, {}), ("RealDiv", 2, {}), ("FloorMod", 2, {}), ("Pow", 2, {}),
    ("Maximum", 2, {}), ("Less", 2, {}), ("SelectV2", 3, {}), ("Reshape", 2, {}),
    ("Transpose", 2, {}), ("Tile", 2, {}), ("Fill", 2, {}), ("BroadcastTo", 2, {}),
    ("Range", 3, {}), ("Pad", 2, {}), ("MirrorPad", 2, {"mode": "REFLECT"}),
    ("ConcatV2", 3, {}), ("GatherV2", 3, {}), ("Slice", 3, {}),
    ("StridedSlice", 4, {"begin_mask": 1, "shrink_axis_mask": 2}), ("Sum", 2, {}),
    ("Max", 2, {"keep_dims": True}), ("ArgMax", 2, {}), ("Cast", 1, {"DstT": "int8"}),
    ("OneHot", 4, {"axis": -1}), ("Cumsum", 2, {}), ("MatMul", 2, {}), ("BatchMatMulV2", 2, {}),
    ("Softmax", 1, {}), ("Sqrt", 1, {}), ("Svd", 1, {}), ("MatrixSolveLs", 3, {}),
    ("ExpandDims", 2, {}), ("Squeeze", 1, {"squeeze_dims": [0]}), ("Where", 1, {}),
    ("TopKV2", 2, {}), ("Unique", 1, {}), ("UnsortedSegmentSum", 3, {}), ("ScatterNd", 3, {}),
    ("SparseToDense", 4, {}), ("Bincount", 3, {}), ("LinSpace", 3, {}),
    ("InplaceAdd", 3, {}), ("InplaceUpdate", 3, {}), ("ResizeBilinear", 2, {}),
    ("Conv2D", 2, {"strides": [1, 1, 1, 1], "padding": "SAME"}),
    ("MaxPool", 1, {"ksize": [1, 2, 2, 1], "strides": [1, 1, 1, 1], "padding": "VALID"}),
    ("StringToNumber", 1, {"out_type": "float32"}),
    ("StaticRegexReplace", 1, {"pattern": b"(a+)+$", "rewrite": b"-"}),
    ("StaticRegexFullMatch", 1, {"pattern": b"\\s+$"}), ("StringUpper", 1, {}),
    ("StringNGrams", 2, {"separator": b" ", "ngram_widths": [2, 10 ** 9], "left_pad": b"",
                         "right_pad": b"", "pad_width": -1,
                         "preserve_short_sequences": False}),
    ("InvertPermutation", 1, {}), ("ReverseV2", 2, {}), ("Einsum", 2, {"equation": "ij,jk->ik"}),
    # what the run of seed 424242 and the probing after it found: sizes, windows, dilations,
    # widths and counts that made huge intermediates (docs/security.md)
    ("ResizeNearestNeighbor", 2, {}), ("ResizeBicubic", 2, {}), ("ResizeArea", 2, {}),
    ("CropAndResize", 4, {}), ("Multinomial", 2, {"seed": 1, "seed2": 2}),
    ("MatrixDiagV3", 5, {"align": "RIGHT_LEFT"}), ("SparseSegmentSumWithNumSegments", 4, {}),
    ("AsString", 1, {"width": 2 ** 31 - 1}),
    ("MaxPool", 1, {"ksize": [1, 2 ** 31 - 1, 2, 1], "strides": [1, 1, 1, 1], "padding": "SAME"}),
    ("AvgPool", 1, {"ksize": [1, 3, 2 ** 31 - 1, 1], "strides": [1, 2, 1, 1], "padding": "SAME"}),
    ("Conv2D", 2, {"strides": [1, 1, 1, 1], "padding": "SAME",
                   "dilations": [1, 2 ** 31 - 1, 1, 1]}),
    ("ExtractImagePatches", 1, {"ksizes": [1, 2 ** 31 - 1, 1, 1], "strides": [1, 1, 1, 1],
                                "rates": [1, 1, 1, 1], "padding": "SAME"}),
    # what the systematic probe of every op found (docs/security.md)
    ("RFFT", 2, {}), ("IRFFT2D", 2, {}), ("RandomGamma", 2, {"seed": 1, "seed2": 2}),
    ("StatelessRandomPoisson", 3, {"dtype": "int64"}), ("SpaceToBatchND", 3, {}),
    ("BatchToSpaceND", 3, {}), ("MatrixSetDiagV3", 3, {}), ("Split", 2, {"num_split": 2 ** 31 - 1}),
    ("Unpack", 1, {"num": 2 ** 31 - 1}), ("UnsortedSegmentJoin", 3, {}),
]
_STRING_OPS = {"StringToNumber", "StaticRegexReplace", "StaticRegexFullMatch", "StringUpper",
               "StringNGrams", "UnsortedSegmentJoin"}


def random_array(rng: random.Random, string: bool = False) -> np.ndarray:
    shape = tuple(rng.choice([0, 1, 1, 2, 2, 3, 4]) for _ in range(rng.choice([0, 0, 1, 1, 2,
                                                                               3, 4])))
    n = int(np.prod(shape))
    if string or rng.random() < 0.05:
        vals = [rng.choice([b"", b"a", b"12.5", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!",
                            b" " * 3000 + b"x", b"\xff\xfe", b"1" * 500 + b"x", b"0x1p3"])
                for _ in range(n)]
        a = np.empty(n, dtype=object)
        a[:] = vals
        return a.reshape(shape)
    dt = rng.choice([np.float32, np.float32, np.int32, np.int64, np.bool_, np.float64])
    pick = rng.random()
    if pick < 0.75:
        vals = [rng.randrange(-2, 5) for _ in range(n)]
    elif pick < 0.9:
        vals = [rng.choice([2 ** 20, 10 ** 6, -1, 2 ** 31 - 1, 0]) for _ in range(n)]
    else:
        vals = [rng.choice([float("inf"), float("nan"), -0.0, 1e30]) for _ in range(n)]
    with np.errstate(all="ignore"):
        return np.array(vals, dtype=np.float64).astype(dt).reshape(shape)


def random_op_graph(rng: random.Random) -> tuple[Graph, list]:
    """One random op on random inputs, each a fed placeholder or a constant; and the feeds."""
    op, n, attrs = rng.choice(_OPS)
    nodes, names, feeds = [], [], []
    for i in range(n):
        a = random_array(rng, string=op in _STRING_OPS and i == 0)
        name = f"in{i}"
        if rng.random() < 0.5:
            nodes.append(const(name, a))
        else:
            dt = "string" if a.dtype == object else td.dtypes.from_numpy(a.dtype)
            nodes.append(placeholder(name, dt, None))
            feeds.append(a)
        names.append(name)
    a0 = nodes[0].attrs.get("value") if nodes[0].op == "Const" else feeds[0] if feeds else None
    t = "string" if a0 is not None and a0.dtype == object else \
        td.dtypes.from_numpy(a0.dtype) if a0 is not None else "float32"
    nodes.append(Node("op", op, names, {"T": t, **attrs}))
    ins = [x.name for x in nodes if x.op == "Placeholder"]
    return _graph(nodes, ins, ["op"]), feeds


# ---------------------------------------------------------------------------- running a case

def inputs_for(model: td.Model, rng: random.Random) -> list:
    out = []
    for s in model.inputs:
        dt = s.dtype if isinstance(s.dtype, str) and td.dtypes.is_known(s.dtype) else "float32"
        shape = [d if isinstance(d, int) and 0 <= d <= 6 else rng.randrange(4)
                 for d in (s.shape or [])]
        if dt == "string":
            a = random_array(rng, string=True)
            out.append(np.resize(a, shape) if a.size else np.full(shape, b"a", dtype=object))
        else:
            with np.errstate(all="ignore"):
                out.append(np.asarray(rng.random() * 4, dtype=np.float64).astype(
                    td.dtypes.to_numpy(dt)) + np.zeros(shape, td.dtypes.to_numpy(dt)))
    return out


def _alarm(signum, frame):
    raise Hang(f"the case ran over {TIME_LIMIT} s")


def run_case(seed, seeds: list[bytes]) -> str:
    """Run case ``seed`` (a number, or a ``random.Random``: hypothesis's, which it can shrink);
    returns what happened ("ok", "load error", "run error"), raises Failure when a rule is
    broken."""
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    if rng.random() < 0.7:
        data, feeds = mutate_file(rng, rng.choice(seeds)), None
    else:
        g, feeds = random_op_graph(rng)
        data = save_bytes(g)
    stage = "load"
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
    t0 = time.perf_counter()
    try:
        model = td.load(data)
        stage = "run"
        args = feeds if feeds is not None else inputs_for(model, rng)
        model(*args)
        outcome = "ok"
    except td.TFDeployError:
        outcome = f"{stage} error"
    except Hang as e:
        raise Failure(f"case {seed}: {e} (at {stage})") from None
    except Exception as e:  # noqa: BLE001  (the rule: only tfdeploy errors)
        raise Failure(f"case {seed}: {type(e).__name__} at {stage}: {e}") from e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    elapsed = time.perf_counter() - t0
    if elapsed > TIME_LIMIT:
        raise Failure(f"case {seed}: took {elapsed:.1f} s")
    peak = tracemalloc.get_traced_memory()[1] - base
    allowed = 2 * len(data) + SLACK
    if outcome != "load error":
        allowed += 4 * FUZZ_LIMITS["max_tensor_bytes"]
    if peak > allowed:
        raise Failure(f"case {seed}: allocated {peak} bytes ({outcome}) for a file of "
                      f"{len(data)} bytes")
    return outcome


def warm_up(seeds: list[bytes]) -> None:
    """Import what loads lazily (kernels, bfloat16, RE2...) before allocations are measured:
    a module's first import is not the file's doing."""
    try:
        td.dtypes.to_numpy("bfloat16")
    except td.TFDeployError:  # (no ml_dtypes: bfloat16 files fail to load, cleanly)
        pass
    rng = random.Random(0)
    for data in seeds:
        m = td.load(data)
        try:
            m(*inputs_for(m, rng))
        except td.TFDeployError:
            pass
    for op, _, _ in _OPS:
        td.registry.get_opdef(op)


@contextlib.contextmanager
def fuzzing():
    """The seed files, with the fuzzing limits set, lazy imports done and allocations traced,
    numpy's warnings and floating-point errors silenced; the limits are restored afterwards,
    even when the warm-up fails (later code sees the defaults)."""
    import warnings

    seeds = [save_bytes(g) for g in seed_graphs()]
    before = limits.current()
    td.setup(**FUZZ_LIMITS)
    try:
        warm_up(seeds)
        tracemalloc.start(1)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            yield seeds
    finally:
        tracemalloc.stop()
        td.setup(**{k: v for k, v in before.items() if k in FUZZ_LIMITS})


def run(cases: int, seed: int = 0, progress=None) -> dict:
    """Run ``cases`` cases from ``seed`` with the fuzzing limits; returns outcome counts."""
    counts: dict[str, int] = {}
    with fuzzing() as seeds:
        for k in range(cases):
            outcome = run_case(seed * 10 ** 9 + k, seeds)
            counts[outcome] = counts.get(outcome, 0) + 1
            if progress is not None and k % 1000 == 999:
                progress(k + 1, counts)
    return counts


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Fuzz tfdeploy with hostile files and random ops.")
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args(argv)
    print(f"fuzzing {args.cases} cases from seed {args.seed}")
    t = time.perf_counter()
    counts = run(args.cases, args.seed,
                 lambda k, c: print(f"  {k} cases, {time.perf_counter() - t:.0f} s: {c}",
                                    flush=True))
    print(f"done in {time.perf_counter() - t:.0f} s: {counts}")
    return 0


if __name__ == "__main__":
    import sys

    sys.path.insert(0, __import__("os").path.dirname(__file__))
    raise SystemExit(main())
