"""The command line, run as users run it: the installed ``tfdeploy`` script in a subprocess.

TensorFlow-free tests use models built by hand (tests/graphs.py) whose check data numpy
computes; the ``tf`` tests convert a Keras model once (``tfdeploy convert``) and share it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import tfdeploy as td
from graphs import const, dense_softmax, model_of, placeholder
from tfdeploy import checkdata, fileformat
from tfdeploy.cli import COMMANDS, main
from tfdeploy.ir.graph import FuncAttr, Graph, Node, TensorSpec

SRC = os.path.dirname(os.path.dirname(td.__file__))
# the code under test, whether installed in the venv or not
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
           PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
ENV.pop("TFDEPLOY_PROGRESS", None)
SCRIPT = os.path.join(os.path.dirname(sys.executable), "tfdeploy")


def tfdeploy(*args, timeout=600):
    """Run the installed console script (``pip install -e .`` puts it beside python)."""
    return subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def cli(capsys, *args) -> subprocess.CompletedProcess:
    """The same command in this process (quicker, for the many variants of one behaviour)."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out, err)


def _ok(r) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _one_line_error(r, *needles) -> str:
    """The run failed as the policy says: exit status 2, one line on stderr, no traceback."""
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------- TF-free models

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Model files built without TensorFlow: ``dense`` (softmax(x @ W + b), with check data
    numpy computed), ``loop`` (a While loop, no check data), ``cube`` (a custom op)."""
    d = tmp_path_factory.mktemp("cli")
    m, w = dense_softmax(n_in=20, n_out=7)
    g = m.default_graph
    x, recipes = checkdata.make_inputs(g.inputs)
    want = _softmax(x[0].astype(np.float64) @ w["W"] + w["b"]).astype(np.float32)
    m.metadata["check"] = {"default": checkdata.record(g.inputs, x, recipes, g.outputs, [want],
                                                       "numpy")}
    m.save(d / "dense.tfd")
    m.metadata = {}
    m.save(d / "nocheck.tfd")
    loop = _loop_model()
    loop.save(d / "loop.tfd")
    cube = Graph([placeholder("x", "float32", [None]), Node("y", "CliTestCube", ["x"], {})],
                 [TensorSpec("x", "x:0", "float32", [None])],
                 [TensorSpec("y", "y:0", "float32", [None])])
    fileformat.save({"default": cube}, d / "cube.tfd")
    (d / "cube_ops.py").write_text("import tfdeploy as td\n\n\n@td.Operation.factory\n"
                                   "def CliTestCube(a):\n    return a ** 3,\n")
    np.save(d / "x20.npy", np.ones((3, 20), np.float32))
    return d


def _loop_model() -> td.Model:
    """x doubled n times: a While whose body and cond are functions."""
    def ph(name, dtype):
        return placeholder(name, dtype, [])

    body = Graph([ph("i", "int32"), ph("v", "float32"), ph("n", "int32"), const("one", np.int32(1)),
                  const("two", np.float32(2)),
                  Node("i1", "AddV2", ["i", "one"], {"T": "int32"}),
                  Node("v2", "Mul", ["v", "two"], {"T": "float32"})],
                 [TensorSpec(a, f"{a}:0", t, []) for a, t in
                  (("i", "int32"), ("v", "float32"), ("n", "int32"))],
                 [TensorSpec(o, f"{r}:0", t, []) for o, r, t in
                  (("i1", "i1", "int32"), ("v2", "v2", "float32"), ("n", "n", "int32"))])
    cond = Graph([ph("i", "int32"), ph("v", "float32"), ph("n", "int32"),
                  Node("lt", "Less", ["i", "n"], {"T": "int32"})],
                 [TensorSpec(a, f"{a}:0", t, []) for a, t in
                  (("i", "int32"), ("v", "float32"), ("n", "int32"))],
                 [TensorSpec("lt", "lt:0", "bool", [])])
    nodes = [placeholder("x", "float32", []), placeholder("n", "int32", []),
             const("zero", np.int32(0)),
             Node("loop/while", "While", ["zero", "x", "n"],
                  {"T": ["int32", "float32", "int32"], "cond": FuncAttr("loop_cond"),
                   "body": FuncAttr("loop_body"), "parallel_iterations": 10,
                   "output_shapes": [[], [], []]}),
             Node("y", "Identity", ["loop/while:1"], {"T": "float32"})]
    m = model_of(nodes, ["x", "n"], ["y"])
    m.default_graph.functions = {"loop_body": body, "loop_cond": cond}
    return m


def test_help_lists_every_command_with_examples(capsys):
    code = ("import sys; from tfdeploy.cli import build_parser; build_parser(); "
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', "
            "'tqdm', 'matplotlib', 'onnxruntime', 'tf2onnx')]; assert not heavy, heavy")
    _ok(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV))
    out = _ok(tfdeploy("--help"))
    for cmd in COMMANDS:
        assert f"\n    {cmd} " in out, cmd
    assert "examples:" in out
    for cmd in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        assert f"usage: tfdeploy {cmd}" in capsys.readouterr().out


def test_commands_of_other_packages_register_themselves(tmp_path, monkeypatch, capsys):
    """How ``tfdeploy serve`` (src/tfdeploy/serve/cli.py) joins: a module in
    EXTERNAL_COMMANDS with add_parser(subparsers); an absent package is skipped."""
    (tmp_path / "hello_cmd.py").write_text(
        "def add_parser(subparsers):\n"
        "    p = subparsers.add_parser('hello', help='say hello')\n"
        "    p.add_argument('name')\n"
        "    p.set_defaults(func=lambda args: print('hello', args.name))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import tfdeploy.cli as cli_package

    monkeypatch.setattr(cli_package, "EXTERNAL_COMMANDS", ("hello_cmd", "no_such_pkg.cli"))
    assert _ok(cli(capsys, "hello", "world")) == "hello world\n"
    _one_line_error(cli(capsys, "hello"), "tfdeploy hello: error:", "required: name")


def test_python_m_is_the_same_command(files):
    r = subprocess.run([sys.executable, "-m", "tfdeploy", "info", files / "dense.tfd", "--json"],
                       capture_output=True, text=True, env=ENV)
    assert _ok(r) == _ok(tfdeploy("info", files / "dense.tfd", "--json"))


def test_info_readable_and_json(files):
    out = _ok(tfdeploy("info", files / "dense.tfd"))
    assert "format version 1" in out
    assert "input  float32  (None, 20)" in out
    assert "parameters: 147 values in 2 constants, 588 B" in out  # W 20x7 + b 7, float32
    assert "MatMul 1" in out and "Softmax 1" in out
    assert "custom ops: none" in out and "functions: none" in out
    assert "check data: numpy's outputs on a generated input (input (2, 20))" in out
    d = json.loads(_ok(tfdeploy("info", files / "loop.tfd", "--json")))
    g = d["graphs"]["default"]
    assert g["inputs"] == [{"name": "x", "dtype": "float32", "shape": []},
                           {"name": "n", "dtype": "int32", "shape": []}]
    assert g["functions"]["loop_body"] == {"nodes": 7, "called_by": [["loop/while", "While"]]}
    assert g["control_flow"] == {"loop": 1}
    assert g["ops"]["While"] == 1 and g["check"] == {"present": False}


def test_custom_ops_listed_and_loaded_with_plugin(files, capsys):
    out = _ok(cli(capsys, "info", files / "cube.tfd"))
    assert "CliTestCube (1 nodes, NOT registered in this process)" in out
    np.save(files / "x3.npy", np.arange(3, dtype=np.float32))
    _one_line_error(cli(capsys, "run", files / "cube.tfd", "--input", files / "x3.npy"),
                    "CliTestCube: used by 'y'", "--plugin")
    # (the plugin registers the op for good: only in a process of its own)
    out = _ok(tfdeploy("--plugin", files / "cube_ops.py", "run", files / "cube.tfd",
                       "--input", files / "x3.npy", "-o", files / "y3.npy"))
    assert "y: float32 (3,)" in out
    np.testing.assert_array_equal(np.load(files / "y3.npy"), [0, 1, 8])
    _one_line_error(cli(capsys, "run", files / "cube.tfd", "--plugin", "no_such_module_xyz"),
                    "cannot import plugin 'no_such_module_xyz'")


def test_plan_shows_loop_bodies(files, capsys):
    """``tfdeploy plan`` prints a While loop's condition and body plans indented under its
    step, also in a profiled plan (whose kernels are wrapped)."""
    out = _ok(cli(capsys, "plan", files / "loop.tfd"))
    lines = out.splitlines()
    at = next(i for i, ln in enumerate(lines) if "= While(" in ln)
    nested = "\n".join(lines[at + 1:])
    assert "condition: plan of" in nested and "body: plan of" in nested
    assert "Less(" in nested and "Mul(" in nested and "# v2" in nested
    assert all(ln.startswith("      ") for ln in lines[at + 1:at + 3])
    m = td.load(files / "loop.tfd")
    from tfdeploy.compiler.profile import Profile

    profiled = str(m.plan(profile=Profile()))
    assert "body: plan of" in profiled and "Mul(" in profiled


def test_run_inputs_from_npy_npz_json(files, capsys):
    m, w = dense_softmax(n_in=20, n_out=7)
    x = np.ones((3, 20), np.float32)
    want = m(x)
    out = _ok(tfdeploy("run", files / "dense.tfd", "--input", files / "x20.npy",
                       "--output", files / "y.npz"))
    assert "output: float32 (3, 7)  min " in out and "... (21 values)" in out
    with np.load(files / "y.npz") as z:
        np.testing.assert_array_equal(z["output"], want)
    np.savez(files / "named.npz", input=x)
    (files / "x.json").write_text(json.dumps({"input": x.tolist()}))
    for src in ("named.npz", "x.json"):
        _ok(cli(capsys, "run", files / "dense.tfd", "-i", files / src, "-o", files / "y.json"))
        np.testing.assert_allclose(json.loads((files / "y.json").read_text())["output"], want,
                                   rtol=1e-6)
    (files / "n.json").write_text("3")
    (files / "x1.json").write_text("1.5")
    out = _ok(cli(capsys, "run", files / "loop.tfd", "-i", f"n={files / 'n.json'}", "-i",
                  f"x={files / 'x1.json'}"))
    assert "y: float32 ()  min 12  max 12" in out
    (files / "loop.json").write_text("[1.5, 3]")  # a list: one value per input
    out = _ok(cli(capsys, "run", files / "loop.tfd", "-i", files / "loop.json"))
    assert "y: float32 ()  min 12  max 12" in out
    out = _ok(tfdeploy("run", files / "dense.tfd"))  # no input: the stored check input
    assert "the check input stored in the file" in out and "output: float32 (2, 7)" in out


def test_run_bad_inputs_are_one_line_errors(files, capsys):
    np.save(files / "bad.npy", np.ones((3, 19), np.float32))
    _one_line_error(cli(capsys, "run", files / "dense.tfd", "-i", files / "bad.npy"),
                    "input 'input' expects shape (None, 20), got (3, 19)")
    np.savez(files / "wrong.npz", image=np.ones((3, 20), np.float32))
    _one_line_error(cli(capsys, "run", files / "dense.tfd", "-i", files / "wrong.npz"),
                    "no input named 'image' (inputs: input)")
    _one_line_error(cli(capsys, "run", files / "loop.tfd", "-i", files / "x20.npy"),
                    "missing value for input(s) n")
    np.save(files / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _one_line_error(cli(capsys, "run", files / "dense.tfd", "-i", files / "obj.npy"),
                    "never done")


def test_check_passes_fails_on_a_tampered_file_and_needs_check_data(files, capsys):
    out = _ok(tfdeploy("check", files / "dense.tfd"))
    assert "against numpy" in out and "ok" in out and "OK:" in out
    data = bytearray((files / "dense.tfd").read_bytes())
    (hlen,) = struct.unpack_from("<Q", data, 16)
    header = json.loads(data[24:24 + hlen])
    w = max(header["arrays"], key=lambda e: e.get("nbytes", 0))  # W, 20x7 float32
    start = 24 + hlen + w["offset"]
    vals = -np.frombuffer(bytes(data[start:start + w["nbytes"]]), np.float32)
    data[start:start + w["nbytes"]] = vals.tobytes()
    (files / "tampered.tfd").write_bytes(bytes(data))
    r = cli(capsys, "check", files / "tampered.tfd")
    _one_line_error(r, "failed its check: output 'output'")
    assert "FAILED" in r.stdout
    with pytest.raises(td.VerificationError, match="failed its check"):
        td.load(files / "tampered.tfd", verify=True)
    assert td.load(files / "dense.tfd", verify=True).inputs[0].name == "input"
    _one_line_error(cli(capsys, "check", files / "nocheck.tfd"), "cannot be verified",
                    "no check data")
    with pytest.raises(td.VerificationError, match="no check data"):
        td.load(files / "nocheck.tfd", verify=True)
    assert td.load(files / "nocheck.tfd").outputs[0].name == "output"  # still loads


def test_graph_svg_dot_and_html(files, capsys):
    for ext in ("svg", "dot", "html"):
        out = _ok(cli(capsys, "graph", files / "loop.tfd", "-o", files / f"loop.{ext}",
                           "--engine", "builtin"))
        assert f"loop.{ext}" in out and "2 functions" in out
    svg = ET.parse(files / "loop.svg").getroot()
    ns = "{http://www.w3.org/2000/svg}"
    names = {g.get("data-name") for g in svg.iter(f"{ns}g") if g.get("class", "").startswith(
        "node")}
    assert {"x", "n", "loop/while", "y", "i1", "v2", "lt"} <= names
    assert "zero" not in names and "one" not in names  # constants are folded
    clusters = {g.get("data-function") for g in svg.iter(f"{ns}g") if g.get("class") ==
                "cluster"}
    assert clusters == {"loop_body", "loop_cond"}
    dot = (files / "loop.dot").read_text()
    assert dot.startswith("digraph tfdeploy {") and dot.count('subgraph "cluster_') == 2
    assert 'lhead="cluster_' in dot and "<b>While</b>" in dot
    _one_line_error(cli(capsys, "graph", files / "loop.tfd", "-o", files / "loop.png"),
                    "expected a .svg, .dot or .html")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_graph_svg_with_graphviz(files):
    out = _ok(tfdeploy("graph", files / "loop.tfd", "-o", files / "gv.svg", "--engine", "dot"))
    assert "layout: Graphviz dot" in out
    assert "loop/while" in (files / "gv.svg").read_text()


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))
                 if p), None)


def dump_dom(url: str, tmp_path) -> str:
    """The DOM of ``url`` after its scripts ran, in headless Chromium (offline)."""
    r = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1200,900",
                        "--virtual-time-budget=5000", "--dump-dom", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.mark.skipif(_chromium() is None, reason="no Chromium (apt-get install chromium)")
def test_graph_html_renders_and_searches_in_a_browser(files, tmp_path):
    _ok(tfdeploy("graph", files / "loop.tfd", "-o", files / "loop.html"))
    dom = dump_dom(f"file://{files / 'loop.html'}#search=Mul", tmp_path)
    body = dom[dom.index("<body"):dom.index(">", dom.index("<body"))]
    assert 'data-ready="1"' in body
    # x, n, While, y, output; cond: 3 arguments, lt, output; body: 3 arguments, i1, v2,
    # 3 outputs: each drawn with a box of non-zero size
    assert 'data-nodes="18"' in body
    assert 'data-selected="v2"' in body and 'data-matches="1"' in body  # the one Mul
    details = dom[dom.index('<aside id="details">'):]
    assert "<h2>v2</h2>" in details and "op Mul" in details
    for name in ("loop/while", "i1", "lt"):
        assert f'data-name="{name}"' in dom
    assert "http://" not in dom.replace("http://www.w3.org/2000/svg", "")  # offline


def test_graph_of_a_large_model_is_grouped_and_quick(tmp_path):
    nodes, prev = [placeholder("x", "float32", [None, 4])], "x"
    for b in range(250):  # 1,252 nodes in 250 name scopes
        s = f"net/block{b}"
        nodes += [const(f"{s}/w", np.eye(4, dtype=np.float32) * 0.5),
                  Node(f"{s}/MatMul", "MatMul", [prev, f"{s}/w"], {"T": "float32"}),
                  Node(f"{s}/Relu", "Relu", [f"{s}/MatMul"], {"T": "float32"}),
                  Node(f"{s}/add", "AddV2", [f"{s}/Relu", prev], {"T": "float32"}),
                  Node(f"{s}/out", "Identity", [f"{s}/add"], {"T": "float32"})]
        prev = f"{s}/out"
    nodes.append(Node("y", "Identity", [prev], {"T": "float32"}))
    model_of(nodes, ["x"], ["y"]).save(tmp_path / "big.tfd")
    t0 = time.perf_counter()
    out = _ok(tfdeploy("graph", tmp_path / "big.tfd", "-o", tmp_path / "big.html"))
    assert time.perf_counter() - t0 < 30
    assert "wrote" in out and "253 boxes for 1252 nodes (250 constants folded)" in out
    html = (tmp_path / "big.html").read_text()
    assert html.count('class="node kind-group"') == 250
    assert "shapes observed running an input generated from the signature" in out
    assert "(2, 4)" in html


def test_bench_reports_percentiles_and_threads(files, capsys):
    r = subprocess.run([SCRIPT, "bench", files / "dense.tfd", "--batch", "1,4", "--time",
                        "0.05", "--threads", "1"], capture_output=True, text=True,
                       env=dict(ENV, TFDEPLOY_PROGRESS="1"))  # a bar, though not on a tty
    lines = _ok(r).splitlines()
    assert "1 thread(s) (threadpoolctl)" in lines[0] or "(the BLAS library's setter)" in lines[0]
    if importlib.util.find_spec("tqdm"):
        assert "batch 4 tfdeploy" in r.stderr  # tqdm's description
    assert lines[1].split() == ["batch", "engine", "p50", "p90", "p99", "samples/s", "calls"]
    assert [ln.split()[:2] for ln in lines[2:4]] == [["1", "tfdeploy"], ["4", "tfdeploy"]]
    # without threadpoolctl, the BLAS library's own setter, in this process: the caller's code
    # after main() runs (bench once re-executed the process instead) with BLAS at 1 thread
    code = ("import sys; sys.modules['threadpoolctl'] = None; from tfdeploy.cli import main; "
            "from tfdeploy.runtime import threads; "
            "get = ('openblas_get_num_threads', 'openblas_get_num_threads64_', "
            "'scipy_openblas_get_num_threads', 'scipy_openblas_get_num_threads64_'); "
            "threads.set_blas_threads(2); "
            f"rc = main(['bench', {str(files / 'dense.tfd')!r}, '--batch', '2', "
            "'--time', '0.05', '--threads', '1']); "
            "print('after main', rc, [f() for f in threads._blas_functions(get)])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    out = _ok(r)
    assert "1 thread(s) (the BLAS library's setter)" in out
    after = out.splitlines()[-1]
    assert after.startswith("after main 0 [") and after != "after main 0 []", after
    assert set(after[len("after main 0 ["):-1].split(", ")) == {"1"}, after
    _one_line_error(cli(capsys, "bench", files / "dense.tfd", "--compare", "mxnet"),
                    "unknown peer(s) mxnet")
    _one_line_error(cli(capsys, "bench", files / "dense.tfd", "--batch", "0"), "--batch")


def test_commands_that_need_tensorflow_say_so_without_it(tmp_path):
    """Without TensorFlow, ``example`` and ``convert`` fail with one line saying how to get it
    (they showed ``internal error: ModuleNotFoundError``)."""
    (tmp_path / "g.pb").write_bytes(b"x")
    for args in (["example"], ["convert", str(tmp_path / "g.pb"), str(tmp_path / "g.tfd")]):
        code = ("import sys; from tfdeploy._blocktf import block; block(); "
                f"from tfdeploy.cli import main; sys.exit(main({args!r}))")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=ENV, timeout=120)
        _one_line_error(r, f"tfdeploy {args[0]}: error:", "needs TensorFlow",
                        "pip install 'tfdeploy[tf]'")


def test_bench_threads_limit_tfdeploy_too(files, capsys, monkeypatch):
    """--threads N is tfdeploy's thread count as well as BLAS's and the peers'."""
    from tfdeploy.cli.bench import THREAD_VARS
    from tfdeploy.runtime import threads

    for v in THREAD_VARS:  # (bench sets them for the peers: restored after the test)
        if v in os.environ:
            monkeypatch.setenv(v, os.environ[v])
        else:
            monkeypatch.delenv(v, raising=False)
    monkeypatch.setitem(threads._state, "threads", None)
    _ok(cli(capsys, "bench", files / "dense.tfd", "--batch", "1", "--time", "0.05",
            "--threads", "1"))
    assert threads.threads() == 1


def test_bench_notes_forced_simd_kernels(files):
    """A core type forced on OpenBLAS (or numpy's dispatch narrowed) is said on stderr: the
    first thing to rule out when matrix products are slow; the table is unchanged."""
    from tfdeploy.runtime import threads

    core = threads.blas_kernels()["core"]
    if core is None:
        pytest.skip("numpy does not use OpenBLAS here")
    clean = {k: v for k, v in ENV.items() if k not in threads.KERNEL_ENV}
    args = [SCRIPT, "bench", files / "dense.tfd", "--batch", "1", "--time", "0.05"]
    # the core already in use: forcing it changes no kernel, on any CPU
    r = subprocess.run(args, capture_output=True, text=True,
                       env=dict(clean, OPENBLAS_CORETYPE=core))
    assert f"note: OPENBLAS_CORETYPE={core} is set (OpenBLAS's kernels in use: {core})" in \
        r.stderr
    assert _ok(r).splitlines()[1].split()[:2] == ["batch", "engine"]
    r = subprocess.run(args, capture_output=True, text=True, env=clean)
    assert "note:" not in r.stderr and _ok(r).splitlines()[1].split()[:2] == ["batch", "engine"]
    # tfdeploy profile says it too
    r = subprocess.run([SCRIPT, "profile", files / "dense.tfd", "-n", "2"], capture_output=True,
                       text=True, env=dict(clean, OPENBLAS_CORETYPE=core))
    assert "ms per run in kernels" in _ok(r) and f"OPENBLAS_CORETYPE={core} is set" in r.stderr


def test_bench_reports_a_missing_peer(files):
    code = ("import sys; from tfdeploy._blocktf import block; block(); "
            "from tfdeploy.cli import main; "
            f"sys.exit(main(['bench', {str(files / 'dense.tfd')!r}, '--batch', '1', "
            "'--time', '0.05', '--compare', 'tf,onnxruntime']))")
    out = _ok(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=ENV))
    assert "tf: not installed (tensorflow" in out
    assert "onnxruntime: not installed" in out or "onnxruntime: could not run" in out


def test_errors_are_one_line_unless_debug(files, capsys):
    _one_line_error(tfdeploy("info", files / "missing.tfd"), "tfdeploy info: error:",
                    "no such model file")
    p = files / "junk.tfd"
    p.write_bytes(b"not a model")
    _one_line_error(cli(capsys, "check", p), "not a tfdeploy model file")
    _one_line_error(cli(capsys, "frobnicate"), "invalid choice: 'frobnicate'")
    _one_line_error(cli(capsys, "run"), "the following arguments are required: model")
    r = tfdeploy("info", files / "missing.tfd", "--debug")
    assert r.returncode == 2 and "Traceback (most recent call last)" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("tfdeploy info: error:")


# ---------------------------------------------------------------------------- with TensorFlow

@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """The example CNN saved as .keras, converted by ``tfdeploy convert --verify``."""
    pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    from tfdeploy.cli import example_model

    d = tmp_path_factory.mktemp("cnn")
    keras.utils.set_random_seed(0)
    example_model(keras).save(d / "cnn.keras")
    r = tfdeploy("convert", d / "cnn.keras", "--verify")
    return d, r


@pytest.mark.tf
def test_convert_keras_with_verify(cnn):
    d, r = cnn
    out = _ok(r)
    assert "converted " in out and "cnn.tfd (" in out
    assert "inputs: image float32 (None, 28, 28, 1)" in out
    assert "check data: stored (TensorFlow" in out
    row = next(ln for ln in out.splitlines() if ln.strip().startswith("output ")
               and ln.endswith(("ok", "FAILED")))
    assert float(row.split()[1]) < 1e-4 and row.endswith("ok")
    assert (d / "cnn.tfd").is_file()  # beside the source, by default


@pytest.mark.tf
def test_converted_file_checks_and_draws_tf_shapes(cnn, tmp_path):
    d, r = cnn
    path = d / "cnn.tfd"
    assert "OK:" in _ok(tfdeploy("check", path))
    out = _ok(tfdeploy("info", path))
    assert "check data: TensorFlow 2." in out
    out = _ok(tfdeploy("graph", path, "-o", tmp_path / "cnn.html"))
    assert "TF's static shapes" in out
    html = (tmp_path / "cnn.html").read_text()
    assert "(?, 28, 28, 16)" in html and "(?, 10)" in html


@pytest.mark.tf
def test_bench_compares_with_tensorflow(cnn):
    d, r = cnn
    path = d / "cnn.tfd"
    out = _ok(tfdeploy("bench", path, "--batch", "2", "--time", "0.1", "--compare",
                       "tf,onnxruntime"))
    engines = [ln.split()[1] for ln in out.splitlines()[2:] if ln.split()[:1] == ["2"]]
    assert engines[:2] == ["tfdeploy", "tf"]
    diff = float(out.split("tf: TensorFlow")[1].split("max |difference| to tfdeploy ")[1]
                 .split()[0])
    assert diff < 1e-4
    # tf2onnx cannot convert Keras 3's gelu (Erfc): the peer says so instead of vanishing
    assert "onnxruntime: could not run this graph: tf2onnx cannot convert op type(s) Erfc" in out \
        or "onnxruntime: not installed" in out


@pytest.mark.tf
def test_example_runs_without_tensorflow_and_matches(tmp_path):
    pytest.importorskip("tensorflow")
    r = tfdeploy("example", "--batch", "4", "--output", tmp_path / "cnn.tfd")
    out = _ok(r)
    assert "TensorFlow cannot be imported" in out
    diff = float(out.split("max |tfdeploy - TensorFlow| = ")[1].split()[0])
    assert diff < 1e-4
    assert td.Model(tmp_path / "cnn.tfd").inputs[0].shape == [None, 28, 28, 1]


@pytest.mark.tf
def test_convert_saved_model_and_frozen_pb(tmp_path):
    tf = pytest.importorskip("tensorflow")

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def f(self, x):
            return {"y": tf.nn.relu(x) * 3.0}

    m = M()
    tf.saved_model.save(m, str(tmp_path / "sm"), signatures=m.f)
    out = tmp_path / "m.tfd"
    _ok(tfdeploy("convert", tmp_path / "sm", out))
    x = np.array([[-1, 2]], np.float32)
    np.testing.assert_array_equal(td.Model(out)(x), [[0, 6]])
    assert "check" in td.Model(out).metadata and "tensors" in td.Model(out).metadata
    frozen = m.f.get_concrete_function()
    from tensorflow.python.framework import convert_to_constants as c2c

    gd = c2c.convert_variables_to_constants_v2(frozen).graph.as_graph_def()
    (tmp_path / "f.pb").write_bytes(gd.SerializeToString())
    outs = [n.name for n in gd.node if n.op == "Identity"][-1:]
    text = _ok(tfdeploy("convert", tmp_path / "f.pb", tmp_path / "f.tfd", "--inputs", "x",
                        "--outputs", outs[0], "--no-check-data"))
    assert "check data: none (--no-check-data)" in text
    assert "outputs: " in text and "(None, 2)" in text  # TF's inferred shape
    _one_line_error(tfdeploy("convert", tmp_path / "nothere.keras"), "no such file")
