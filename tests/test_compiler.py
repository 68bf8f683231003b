"""The compiler's shape: named passes over a printable plan, each pass checked against the plan
before it, fusion by op type that never bypasses a user's kernel, kernels that register in any
order, no import cycles, and small modules and functions."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import numpy as np
import pytest

import tfdeploy as td
from graphs import Node, const, dense_softmax, model_of, placeholder
from tfdeploy import registry
from tfdeploy.compiler.pipeline import PASSES, STAGES, compile_plan
from tfdeploy.ir.graph import FuncAttr, Graph, TensorSpec
from tfdeploy.ir.verify import verify_graph

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src",
                   "tfdeploy")
RNG = np.random.default_rng(0)


def _r(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


def _conv_model(act="Relu"):
    """x -> Conv2D -> BiasAdd -> act (the same weights every time)."""
    rng = np.random.default_rng(1)
    nodes = [placeholder("x", "float32", [None, 6, 6, 3]),
             const("w", rng.uniform(-1, 1, (3, 3, 3, 4)).astype(np.float32)),
             const("b", rng.uniform(-1, 1, 4).astype(np.float32)),
             Node("conv", "Conv2D", ["x", "w"], {"T": "float32", "strides": [1, 1, 1, 1],
                                                 "padding": "SAME", "data_format": "NHWC",
                                                 "dilations": [1, 1, 1, 1]}),
             Node("bias", "BiasAdd", ["conv", "b"], {"T": "float32"}),
             Node("act", act, ["bias"], {"T": "float32"})]
    return model_of(nodes, ["x"], ["act"])


def _pad_conv_model():
    """x -> Pad -> strided VALID depthwise conv -> BiasAdd -> Relu6 (Keras' ZeroPadding2D)."""
    rng = np.random.default_rng(2)
    nodes = [placeholder("x", "float32", [None, 9, 8, 4]),
             const("p", np.array([[0, 0], [0, 1], [1, 1], [0, 0]], np.int32)),
             const("w", rng.uniform(-1, 1, (3, 3, 4, 1)).astype(np.float32)),
             const("b", rng.uniform(-1, 1, 4).astype(np.float32)),
             Node("pad", "Pad", ["x", "p"], {"T": "float32", "Tpaddings": "int32"}),
             Node("dw", "DepthwiseConv2dNative", ["pad", "w"],
                  {"T": "float32", "strides": [1, 2, 2, 1], "padding": "VALID",
                   "data_format": "NHWC", "dilations": [1, 1, 1, 1]}),
             Node("bias", "BiasAdd", ["dw", "b"], {"T": "float32"}),
             Node("act", "Relu6", ["bias"], {"T": "float32"})]
    return model_of(nodes, ["x"], ["act"])


def _se_model():
    """A squeeze-excite block: x * sigmoid(conv(mean(x))), then a 1x1 conv with a bias."""
    rng = np.random.default_rng(3)
    conv = {"T": "float32", "strides": [1, 1, 1, 1], "padding": "SAME", "data_format": "NHWC",
            "dilations": [1, 1, 1, 1]}
    nodes = [placeholder("x", "float32", [None, 5, 4, 6]), const("axes", np.array([1, 2])),
             const("w1", rng.uniform(-1, 1, (1, 1, 6, 6)).astype(np.float32)),
             const("b1", rng.uniform(-1, 1, 6).astype(np.float32)),
             const("w2", rng.uniform(-1, 1, (1, 1, 6, 3)).astype(np.float32)),
             const("b2", rng.uniform(-1, 1, 3).astype(np.float32)),
             Node("mean", "Mean", ["x", "axes"], {"T": "float32", "keep_dims": True}),
             Node("se", "Conv2D", ["mean", "w1"], conv),
             Node("se_b", "BiasAdd", ["se", "b1"], {"T": "float32"}),
             Node("gate", "Sigmoid", ["se_b"], {"T": "float32"}),
             Node("scaled", "Mul", ["x", "gate"], {"T": "float32"}),
             Node("proj", "Conv2D", ["scaled", "w2"], conv),
             Node("out", "BiasAdd", ["proj", "b2"], {"T": "float32"})]
    return model_of(nodes, ["x"], ["out"])


def _loop_model():
    """A While summing x into an accumulator n times, as the converter writes one."""
    cond = Graph([placeholder("i", "int32"), placeholder("n", "int32"),
                  placeholder("acc"), placeholder("x"),
                  Node("less", "Less", ["i", "n"], {"T": "int32"})],
                 [TensorSpec(v, f"{v}:0", "float32") for v in ("i", "n", "acc", "x")],
                 [TensorSpec("less", "less:0", "bool")])
    body = Graph([placeholder("i", "int32"), placeholder("n", "int32"),
                  placeholder("acc"), placeholder("x"), const("one", np.int32(1)),
                  Node("next", "AddV2", ["i", "one"], {"T": "int32"}),
                  Node("tanh", "Tanh", ["x"], {"T": "float32"}),
                  Node("sum", "AddV2", ["acc", "tanh"], {"T": "float32"})],
                 [TensorSpec(v, f"{v}:0", "float32") for v in ("i", "n", "acc", "x")],
                 [TensorSpec(v, f"{v}:0", "float32") for v in ("next", "n", "sum", "x")])
    nodes = [placeholder("x", "float32", [None, 3]), const("zero", np.int32(0)),
             const("n", np.int32(5)), Node("acc0", "ZerosLike", ["x"], {"T": "float32"}),
             Node("loop", "While", ["zero", "n", "acc0", "x"],
                  {"T": ["int32", "int32", "float32", "float32"], "cond": FuncAttr("cond"),
                   "body": FuncAttr("body")}),
             Node("out", "Identity", ["loop:2"], {"T": "float32"})]
    m = model_of(nodes, ["x"], ["out"])
    m.default_graph.functions.update(cond=cond, body=body)
    return m


MODELS = {"dense": lambda: dense_softmax()[0], "conv": _conv_model, "loop": _loop_model,
          "pad_conv": _pad_conv_model, "se": _se_model}
INPUTS = {"dense": lambda: [_r(3, 784)], "conv": lambda: [_r(2, 6, 6, 3)],
          "loop": lambda: [_r(2, 3)], "pad_conv": lambda: [_r(2, 9, 8, 4, lo=-5, hi=5)],
          "se": lambda: [_r(2, 5, 4, 6)]}


@pytest.mark.parametrize("name", MODELS)
def test_every_pass_keeps_the_results_and_the_invariants(name):
    """Each pass compared with the plan before it on the same inputs, the plan verified after
    every pass."""
    m, xs = MODELS[name](), INPUTS[name]()
    g = m.default_graph
    verify_graph(g)
    fetches, feeds = [s.ref for s in g.outputs], [s.ref for s in g.inputs]
    names = [p for p, _, _ in PASSES]
    before = None
    for k in range(len(names) + 1):
        plan = compile_plan(g, fetches, feeds, passes=names[:k], verify=True)
        got = plan.run(xs)
        if before is not None:
            for b, a in zip(before, got):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6,
                                           err_msg=f"after {names[k - 1]}")
        before = got
    np.testing.assert_allclose(m(*xs), before[0], rtol=1e-5, atol=1e-6)


def test_plans_print_one_step_a_line():
    m = _conv_model()
    text = str(m.plan(after="select"))
    assert "%c" in text and "= Conv2D(%0, %c" in text and "strides=[1,1,1,1]" in text
    assert "= BiasAdd(" in text and "= Relu(" in text and text.splitlines()[0].endswith(
        "(after select)")
    fused = str(m.plan())
    assert "_FusedChain(%0)" in fused and "Conv2D+BiasAdd+Relu" in fused
    assert "(after lower)" in fused.splitlines()[0]
    # the graph prints the same way
    assert "%conv = Conv2D(%x, %w)" in str(m.default_graph)


@pytest.mark.parametrize("stage", STAGES)
def test_after_each_stage(stage):
    m = _conv_model()
    plan = m.plan(after=stage)
    assert plan.passes[-1] == stage
    bound = [st.kernel is not None for st in plan.steps]
    assert all(bound) if stage == "lower" else not any(bound)
    with pytest.raises(td.TFDeployError, match="unknown compiler pass 'nope'"):
        m.plan(after="nope")


def test_generated_source_is_kept():
    plan = dense_softmax()[0].plan()
    assert plan.source.startswith("def _make(") and "def run(feeds" in plan.source
    assert plan.run is not None


@pytest.fixture
def restore_op():
    """Put back the built-in kernels of the ops a test replaces."""
    saved = {}

    def save(op):
        d = registry.get_opdef(op)
        saved[op] = (dict(d.impls), set(d.builtin), dict(d.specializers), d.preferred)

    yield save
    for op, (impls, builtin, specs, preferred) in saved.items():
        d = registry._REGISTRY.get(op) or registry.register(op, impls["numpy"], builtin=True)
        d.impls, d.builtin, d.specializers, d.preferred = impls, builtin, specs, preferred


def test_fusion_never_bypasses_a_users_kernel(restore_op):
    restore_op("Relu")
    x = _r(2, 6, 6, 3, lo=-3, hi=3)
    m = _conv_model()
    plain = m(x)
    assert "Conv2D+BiasAdd+Relu" in str(m.plan())

    class Relu(td.Operation):  # a user's Relu: doubles the positive part
        def func(features):
            return np.maximum(features, 0) * 2,

    m = _conv_model()
    plan = m.plan()
    labels = [st.label for st in plan.steps]
    assert labels == ["Conv2D+BiasAdd", "Relu"], labels
    np.testing.assert_allclose(m(x), plain * 2, rtol=1e-6)


def test_fusion_never_bypasses_another_implementation():
    pytest.importorskip("scipy")
    m = _conv_model("Sigmoid")
    assert [st.label for st in m.plan().steps] == ["Conv2D+BiasAdd+Sigmoid"]
    td.setup(None, td.IMPL_SCIPY)
    try:
        plan = _conv_model("Sigmoid").plan()
        assert [st.label for st in plan.steps] == ["Conv2D+BiasAdd", "Sigmoid"]
        assert plan.steps[1].kernel.__name__ == "Sigmoid_scipy"
    finally:
        td.setup(None, td.IMPL_NUMPY)


def test_fused_ops_are_not_graph_ops():
    assert "_FusedChain" not in registry.registered_ops()
    assert not registry.is_registered("_FusedChain")
    with pytest.raises(td.UnsupportedOpError, match="_FusedChain"):
        model_of([placeholder("x"), Node("y", "_FusedChain", ["x"], {})], ["x"], ["y"])


def test_builtin_specializers_wait_for_their_kernel():
    """A built-in specializer may come before its kernel (modules load in any order) and is
    attached when the kernel registers; one whose kernel never comes (a misspelt type) is an
    error at the end of loading. A user's specializer needs its kernel first."""
    spec = lambda consts: None  # noqa: E731
    registry.registered_ops()  # the built-ins loaded (their own check passed)
    try:
        registry.specializer("_WaitsForKernel", builtin=True)(spec)
        with pytest.raises(td.TFDeployError, match="_WaitsForKernel"):
            registry.check_waiting()
        registry.op("_WaitsForKernel", builtin=True)(lambda x: x)
        registry.check_waiting()
        assert registry.get_opdef("_WaitsForKernel").specializers["numpy"] is spec
    finally:
        registry._waiting.pop(("_WaitsForKernel", "numpy"), None)
        registry.unregister("_WaitsForKernel")
    with pytest.raises(td.TFDeployError, match="register its numpy kernel first"):
        registry.specializer("_NoSuchOp")(spec)
    assert not registry._waiting


def test_kernels_register_in_any_order():
    """Every kernel module re-run into an empty registry, in reverse order, gives the same
    registry: no module depends on another having registered first."""
    code = r"""
import importlib, pkgutil, sys
import tfdeploy, tfdeploy.kernels as K
from tfdeploy import registry
def snapshot():
    return {t: (sorted(d.impls), sorted(d.specializers), sorted(d.builtin), d.stateful,
                d.needs_context, d.internal) for t, d in registry._REGISTRY.items()}
registry.registered_ops()
before = snapshot()
mods = sorted(m.name for m in pkgutil.walk_packages(K.__path__, "tfdeploy.kernels."))
registry._REGISTRY.clear()
for name in reversed(mods):
    importlib.reload(importlib.import_module(name))
registry.check_waiting()
after = snapshot()
assert after == before, sorted(set(before) ^ set(after)) or \
    [t for t in before if before[t] != after[t]][:5]
print(len(after))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) > 400


def _modules():
    for d, _, fs in os.walk(SRC):
        for f in sorted(fs):
            if f.endswith(".py"):
                yield os.path.join(d, f)


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, os.path.dirname(SRC))[:-3].replace(os.sep, ".")
    return rel[:-9] if rel.endswith(".__init__") else rel


def _imports(path: str, name: str, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports, anywhere in it (functions included)."""
    out = set()
    is_pkg = path.endswith("__init__.py")
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                base = ".".join(parts[:len(parts) - node.level + 1] +
                                ([node.module] if node.module else []))
            else:
                base = node.module or ""
            subs = [f"{base}.{a.name}" for a in node.names]
            targets = [t for t in subs if t in modules] or [base]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def test_no_import_cycles():
    paths = {_module_name(p): p for p in _modules()}
    edges = {m: _imports(p, m, set(paths)) for m, p in paths.items()}
    # a module in a cycle reaches itself
    for start in edges:
        seen, stack = set(), list(edges[start])
        while stack:
            m = stack.pop()
            assert m != start, f"import cycle through {start}"
            if m not in seen:
                seen.add(m)
                stack.extend(edges[m])


#: modules that are tables of constants (the line limits do not apply)
TABLES = {"tfdeploy.numerics.libm_tables"}


def test_modules_and_functions_stay_small():
    too_long = []
    for path in _modules():
        name = _module_name(path)
        if name in TABLES:
            continue
        src = open(path, encoding="utf-8").read()
        if src.count("\n") > 1000:
            too_long.append(f"module {name}: {src.count(chr(10))} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    too_long.append(f"function {name}.{node.name}: {n} lines")
    assert not too_long, too_long


# --- shape specialization ------------------------------------------------------------------

def _reshape_model():
    """x [?, 6] -> Reshape(x, [Shape(x)[0] * 2, 3]) -> Tanh: shape arithmetic on the batch."""
    i32 = "int32"
    nodes = [placeholder("x", "float32", [None, 6]),
             Node("shape", "Shape", ["x"], {"out_type": i32}),
             const("b", np.array([0], np.int32)), const("e", np.array([1], np.int32)),
             const("s", np.array([1], np.int32)),
             Node("n", "StridedSlice", ["shape", "b", "e", "s"],
                  {"Index": i32, "T": i32, "shrink_axis_mask": 1}),
             const("two", np.int32(2)), Node("n2", "Mul", ["n", "two"], {"T": i32}),
             const("three", np.int32(3)),
             Node("target", "Pack", ["n2", "three"], {"T": i32, "N": 2, "axis": 0}),
             Node("r", "Reshape", ["x", "target"], {"T": "float32"}),
             Node("y", "Tanh", ["r"], {"T": "float32"})]
    return model_of(nodes, ["x"], ["y"])


def test_specialized_plans_fold_the_shape_arithmetic():
    m = _reshape_model()
    for batch in (1, 4, 0, 4, 9):
        x = _r(batch, 6)
        np.testing.assert_array_equal(m(x), np.tanh(x.reshape(batch * 2, 3)))
    generic, special = m.plan(), m.plan(_r(4, 6))
    assert [st.op for st in generic.steps] == ["Shape", "StridedSlice", "Mul", "Pack",
                                               "Reshape", "Tanh"]
    assert [st.op for st in special.steps] == ["Reshape", "Tanh"]
    assert ": [8,3] = Tanh(" in str(special)
    # the shape is a constant (lowering then binds it into the Reshape's specialized kernel)
    assert "= Reshape(%0, %c" in str(m.plan(_r(4, 6), after="liveness"))


def test_data_dependent_shapes_are_never_baked_in():
    """Size(Where(x > 0)) counts positives: its shape depends on the values, not the shape."""
    nodes = [placeholder("x", "float32", [None]), const("zero", np.float32(0)),
             Node("pos", "Greater", ["x", "zero"], {"T": "float32"}),
             Node("where", "Where", ["pos"], {"T": "bool"}),
             Node("count", "Size", ["where"], {"out_type": "int32"})]
    m = model_of(nodes, ["x"], ["count"])
    for x in ([1.0, -1.0, 2.0], [-1.0, -1.0, 2.0], [3.0, 3.0, 3.0], [-1.0, -2.0, -3.0]):
        assert m(np.float32(x)) == sum(v > 0 for v in x)
    assert "Size" in [st.op for st in m.plan(np.float32([1, 2, 3])).steps]


def test_many_shapes_fall_back_to_the_generic_plan():
    from tfdeploy.runtime.dispatch import MAX_SPECIALIZED

    m = _reshape_model()
    for batch in range(MAX_SPECIALIZED + 5):
        x = _r(batch, 6)
        np.testing.assert_array_equal(m(x), np.tanh(x.reshape(batch * 2, 3)))
    # a list (not an array) runs the generic plan, which converts it
    np.testing.assert_allclose(m([[0.5] * 6]), np.tanh(np.full((2, 3), 0.5, np.float32)))


def test_threads_meeting_new_shapes_at_once():
    import threading

    m = _reshape_model()
    xs = [_r(1 + i % 4, 6) for i in range(16)]
    errors = []
    barrier = threading.Barrier(8)

    def work(k):
        barrier.wait()
        for x in xs[k::8] * 5:
            if not np.array_equal(m(x), np.tanh(x.reshape(-1, 3))):
                errors.append(k)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


def test_plan_command(tmp_path):
    path = tmp_path / "m.tfd"
    _reshape_model().save(path)

    def run(*args):
        r = subprocess.run([sys.executable, "-m", "tfdeploy", "plan", str(path), *args],
                           capture_output=True, text=True)
        return r.returncode, r.stdout, r.stderr

    code, out, _ = run()
    assert code == 0 and "= Shape(%0)" in out and "(after lower)" in out
    code, out, _ = run("--batch", "5")
    assert code == 0 and "= Shape(" not in out and ": [10,3] = Tanh(" in out
    assert "feed x:0 float32[5,6]" in out
    code, out, _ = run("--after", "select", "--batch", "2")
    assert code == 0 and "(after select)" in out and "= Shape(" in out
    code, out, _ = run("--source")
    assert code == 0 and out.startswith("def _make(")
    code, _, err = run("--after", "fold", "--source")
    assert code == 2 and "no source after 'fold'" in err
    code, _, err = run("--after", "nope")
    assert code == 2 and "invalid choice" in err
    r = subprocess.run([sys.executable, "-m", "tfdeploy", "profile", str(path), "--batch", "3",
                        "-n", "2", "--threads", "1"], capture_output=True, text=True)
    assert r.returncode == 0 and "ms per run in kernels (2 runs" in r.stdout, r.stderr
    assert "Reshape" in r.stdout and "slowest" in r.stdout
    r = subprocess.run([sys.executable, "-m", "tfdeploy", "profile", str(path), "--threads",
                        "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "--threads must be at least 1" in r.stderr


def test_import_tfdeploy_loads_no_kernel_and_nothing_heavy():
    code = ("import sys, tfdeploy; heavy = [m for m in sys.modules if m.startswith("
            "('tfdeploy.kernels', 'ml_dtypes', 'tensorflow', 'scipy', 'keras'))]; print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
