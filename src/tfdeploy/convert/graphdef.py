"""GraphDef and FunctionDef protos -> the tfdeploy IR (graph.py), with pruning and inlining."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tfdeploy.convert.cflow_v1 import (
    control_inputs_of,
    has_control_flow_v1,
    raise_control_flow_v1,
)
from tfdeploy.convert.implementations import select_cpu_implementations
from tfdeploy.errors import ConversionError
from tfdeploy.ir.graph import (
    CALL_OPS,
    FuncAttr,
    Graph,
    Node,
    TensorSpec,
    canonical_ref,
    parse_ref,
)
from tfdeploy.ir.traverse import reachable

#: ops that call a function given by attribute ``f`` and can be inlined
MAX_INLINE_ROUNDS = 64


def _tf():
    import tensorflow as tf

    return tf


def dtype_name(enum: int) -> str:
    return _tf().dtypes.as_dtype(enum).name


def decode_shape(shape) -> list | None:
    if shape.unknown_rank:
        return None
    return [d.size if d.size >= 0 else None for d in shape.dim]


def decode_tensor(t) -> np.ndarray:
    tf = _tf()
    a = tf.make_ndarray(t)
    if a.dtype.kind in "SU":
        a = a.astype(object)
    # (np.ascontiguousarray would turn a scalar into shape (1,))
    a = a if a.flags.c_contiguous else a.copy(order="C")
    # read-only, as a loaded model's constants are: nothing writes a graph's constants, and
    # what the compiler derives from them is then shared by the plans of every input shape
    # (``runtime/constants.py``), in a model converted in the process as in one loaded
    b = a
    while isinstance(b, np.ndarray):  # (and what it views: nothing else holds that)
        b.setflags(write=False)
        b = b.base
    return a


def decode_attr(av):
    kind = av.WhichOneof("value")
    if kind == "s":
        try:
            return av.s.decode("utf-8")
        except UnicodeDecodeError:
            return bytes(av.s)
    if kind == "i":
        return int(av.i)
    if kind == "f":
        return float(av.f)
    if kind == "b":
        return bool(av.b)
    if kind == "type":
        return dtype_name(av.type)
    if kind == "shape":
        return decode_shape(av.shape)
    if kind == "tensor":
        return decode_tensor(av.tensor)
    if kind == "func":
        return FuncAttr(av.func.name, {k: decode_attr(v) for k, v in av.func.attr.items()})
    if kind == "placeholder":
        return av.placeholder
    if kind == "list":
        lst = av.list
        if lst.s:
            return [_str(x) for x in lst.s]
        if lst.i:
            return [int(x) for x in lst.i]
        if lst.f:
            return [float(x) for x in lst.f]
        if lst.b:
            return [bool(x) for x in lst.b]
        if lst.type:
            return [dtype_name(x) for x in lst.type]
        if lst.shape:
            return [decode_shape(x) for x in lst.shape]
        if lst.tensor:
            return [decode_tensor(x) for x in lst.tensor]
        if lst.func:
            return [FuncAttr(f.name, {k: decode_attr(v) for k, v in f.attr.items()})
                    for f in lst.func]
        return []
    return None


def _str(b: bytes):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(b)


def decode_attrs(attr_map) -> dict:
    # attributes starting with "_" are TF bookkeeping (_class, _output_shapes...)
    return {k: decode_attr(v) for k, v in attr_map.items() if not k.startswith("_")}


def node_from_def(nd) -> Node:
    inputs = [i for i in nd.input if not i.startswith("^")]
    return Node(nd.name, nd.op, inputs, decode_attrs(nd.attr))


def _output_counts(nd, library: dict) -> list[tuple[str, int]]:
    """[(output arg name, number of tensors)] of a node in a FunctionDef."""
    from tensorflow.python.framework import op_def_registry

    if nd.op in library:
        return [(a.name, 1) for a in library[nd.op].signature.output_arg]
    op_def = op_def_registry.get(nd.op)
    if op_def is None:
        raise ConversionError(f"unknown op type {nd.op!r} (node {nd.name!r}) in a function")
    out = []
    for a in op_def.output_arg:
        if a.number_attr:
            n = nd.attr[a.number_attr].i
        elif a.type_list_attr:
            n = len(nd.attr[a.type_list_attr].list.type)
        else:
            n = 1
        out.append((a.name, n))
    return out


def function_from_def(fdef, library: dict) -> Graph:
    """A FunctionDef as a Graph: inputs are Placeholder nodes named after the args."""
    sig = fdef.signature
    nodes: list[Node] = []
    inputs: list[TensorSpec] = []
    for j, a in enumerate(sig.input_arg):
        dtype = dtype_name(a.type) if a.type else None
        shape = None
        arg_attr = fdef.arg_attr.get(j)
        if arg_attr is not None and "_output_shapes" in arg_attr.attr:
            shapes = decode_attr(arg_attr.attr["_output_shapes"])
            shape = shapes[0] if shapes else None
        nodes.append(Node(a.name, "Placeholder", [], {"dtype": dtype, "shape": shape}))
        inputs.append(TensorSpec(a.name, f"{a.name}:0", dtype or "unknown", shape))
    offsets: dict[tuple[str, str], int] = {}
    for nd in fdef.node_def:
        start = 0
        for arg, n in _output_counts(nd, library):
            offsets[(nd.name, arg)] = start
            start += n

    def ref(s: str) -> str:
        parts = s.split(":")
        if len(parts) == 1:
            return f"{parts[0]}:0"
        if len(parts) == 2:  # "arg:idx" never happens for nodes; tolerate "node:idx"
            return f"{parts[0]}:{parts[1]}"
        name, arg, idx = parts[0], parts[1], int(parts[2])
        try:
            return f"{name}:{offsets[(name, arg)] + idx}"
        except KeyError:
            raise ConversionError(f"function {sig.name!r}: bad input reference {s!r}") from None

    for nd in fdef.node_def:
        n = node_from_def(nd)
        n.inputs = [ref(i) for i in n.inputs]
        nodes.append(n)
    outputs = [TensorSpec(a.name, ref(fdef.ret[a.name]),
                          dtype_name(a.type) if a.type else "unknown", None)
               for a in sig.output_arg]
    return Graph(nodes, inputs, outputs)


def _called(n: Node) -> Iterable[str]:
    for v in n.attrs.values():
        for f in v if isinstance(v, list) else [v]:
            if isinstance(f, FuncAttr):
                yield f.name


def graph_from_def(graph_def, inputs: list[str], outputs: list[str],
                   input_names: list[str] | None = None,
                   output_names: list[str] | None = None) -> Graph:
    """Convert, prune to what ``outputs`` need, inline calls; inputs/outputs are tensor refs."""
    graph_def = select_cpu_implementations(graph_def)  # never a CudnnRNN branch
    library = {f.signature.name: f for f in graph_def.library.function}
    nodes = [node_from_def(nd) for nd in graph_def.node]
    by = {n.name: n for n in nodes}
    for r in list(inputs) + list(outputs):
        if parse_ref(r)[0] not in by:
            raise ConversionError(f"the graph has no tensor named {r!r}")
    # functions reachable from the graph, converted once each
    functions: dict[str, Graph] = {}
    todo = [f for n in nodes for f in _called(n)]
    while todo:
        name = todo.pop()
        if name in functions:
            continue
        if name not in library:
            raise ConversionError(f"the graph calls function {name!r}, which its library lacks")
        functions[name] = fg = function_from_def(library[name], library)
        todo.extend(f for n in fg.nodes for f in _called(n))
    # direct calls of a library function by op name become PartitionedCall
    for g in [nodes, *[f.nodes for f in functions.values()]]:
        for n in g:
            if n.op in library:
                n.attrs = {"f": FuncAttr(n.op, {}), "Tin": [], "Tout": []}
                n.op = "PartitionedCall"
    # TF1 control flow (Switch/Merge/Enter/Exit...), also what freezing leaves of switch_case:
    # raised to functional While/If/Case before anything prunes by data edges
    g = Graph(nodes, functions=functions)
    if has_control_flow_v1(g):
        g = raise_control_flow_v1(g, control_inputs_of(graph_def))
        nodes, functions = g.nodes, g.functions
    g = Graph(nodes)
    inline_calls(g, functions)
    for name, f in list(functions.items()):
        inline_calls(f, functions)
        # like the top level, keep only what the results depend on: Asserts and other
        # control-only nodes go (their control edges were dropped at conversion)
        args = [s.ref for s in f.inputs]
        functions[name] = prune(f, [s.ref for s in f.outputs] + args)
    g = prune(g, [canonical_ref(r) for r in outputs])
    used = set()
    todo = [f for n in g.nodes for f in _called(n)]
    while todo:
        name = todo.pop()
        if name not in used:
            used.add(name)
            todo.extend(f for n in functions[name].nodes for f in _called(n))
    g.functions = {k: functions[k] for k in sorted(used)}
    by = g.by_name()
    for j, r in enumerate(inputs):
        n = by.get(parse_ref(r)[0])
        if n is None:  # an input the outputs do not depend on: keep it, as TF's signature does
            n = Node(parse_ref(r)[0], "Placeholder", [], {})
            src = next(x for x in nodes if x.name == n.name)
            n.attrs = dict(src.attrs)
            n.op = src.op
            g.nodes.insert(0, n)
            g.invalidate()
        g.inputs.append(TensorSpec(input_names[j] if input_names else n.name,
                                   canonical_ref(r), n.attrs.get("dtype") or "unknown",
                                   n.attrs.get("shape")))
    for j, r in enumerate(outputs):
        name = output_names[j] if output_names else canonical_ref(r)
        g.outputs.append(TensorSpec(name, canonical_ref(r), "unknown", None))
    return g


def prune(g: Graph, outputs: list[str]) -> Graph:
    """Only the nodes ``outputs`` depend on (data inputs), in their original order."""
    by = g.by_name()

    def deps(name: str) -> list[str]:
        node = by.get(name)
        if node is None:
            raise ConversionError(f"the graph has no node named {name!r}")
        return [parse_ref(r)[0] for r in node.inputs]

    keep = reachable([parse_ref(r)[0] for r in outputs], deps)
    return Graph([n for n in g.nodes if n.name in keep], g.inputs, g.outputs, g.functions)


def inline_calls(g: Graph, functions: dict[str, Graph]) -> None:
    """Replace PartitionedCall nodes by the bodies of their functions, in place.

    The call node becomes an IdentityN of the body's results, so its consumers need no change
    (the plan aliases IdentityN away).
    """
    for _ in range(MAX_INLINE_ROUNDS):
        calls = [n for n in g.nodes if n.op in CALL_OPS]
        if not calls:
            return
        taken = set(g.by_name())
        out: list[Node] = []
        for n in g.nodes:
            if n.op not in CALL_OPS:
                out.append(n)
                continue
            f = functions[n.attrs["f"].name]
            if len(f.inputs) != len(n.inputs):
                raise ConversionError(f"call {n.name!r} passes {len(n.inputs)} inputs to "
                                      f"function {f.name if hasattr(f, 'name') else ''} "
                                      f"which takes {len(f.inputs)}")
            args = {parse_ref(s.ref)[0]: n.inputs[j] for j, s in enumerate(f.inputs)}
            rename = {}
            for b in f.nodes:
                if b.name in args:
                    continue
                new = f"{n.name}/{b.name}"
                while new in taken:
                    new += "_"
                taken.add(new)
                rename[b.name] = new

            def mapped(r: str, args=args, rename=rename) -> str:
                name, i = parse_ref(r)
                if name in args:
                    return args[name]
                return f"{rename[name]}:{i}"

            for b in f.nodes:
                if b.name in args:
                    continue
                out.append(Node(rename[b.name], b.op, [mapped(r) for r in b.inputs],
                                dict(b.attrs)))
            out.append(Node(n.name, "IdentityN", [mapped(s.ref) for s in f.outputs], {}))
        g.nodes = out
        g.invalidate()
    raise ConversionError("function calls are nested too deeply (or recursive) to inline")
