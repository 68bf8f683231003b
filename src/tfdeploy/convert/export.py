"""The tfdeploy IR back to a TensorFlow GraphDef, and TensorFlow's static shapes of its tensors.

IR nodes keep TensorFlow's raw op types and attribute values, so each node becomes a NodeDef
again: attribute types come from TF's op registry, Const values become TensorProtos, function
attributes point into the GraphDef's library, and each IR function becomes a FunctionDef. Uses:
``tfdeploy bench --compare tf|onnxruntime`` runs the very graph tfdeploy runs in TensorFlow (and
in onnxruntime through tf2onnx), and the converter records TF's inferred output shape and dtype
of every node for ``tfdeploy graph`` (:func:`tensor_info`).
"""

from __future__ import annotations

import numpy as np

from tfdeploy.ir.graph import FuncAttr, Graph, Node, parse_ref

from .. import dtypes
from ..errors import ConversionError

__all__ = ["to_graph_def", "tensor_info"]

#: ops calling functions, and the attribute giving their results' dtypes (which complete the
#: functions whose result dtypes the IR does not know)
_CALLERS = {"While": "T", "StatelessWhile": "T", "If": "Tout", "StatelessIf": "Tout",
            "Case": "Tout", "StatelessCase": "Tout", "PartitionedCall": "Tout",
            "StatefulPartitionedCall": "Tout"}


def _tf():
    try:
        import tensorflow as tf
    except ImportError:
        raise ConversionError("exporting to TensorFlow needs TensorFlow: "
                              "pip install 'tfdeploy[tf]'") from None
    return tf


def _pb():
    from tensorflow.core.framework import attr_value_pb2, function_pb2, graph_pb2, node_def_pb2

    return attr_value_pb2, function_pb2, graph_pb2, node_def_pb2


def _op_def(op: str):
    from tensorflow.python.framework import op_def_registry

    return op_def_registry.get(op)


def _dtype_enum(tf, name: str) -> int:
    try:
        return tf.as_dtype(name).as_datatype_enum
    except TypeError:
        raise ConversionError(f"dtype {name!r} is not a TensorFlow dtype") from None


def _shape_proto(tf, shape):
    return tf.TensorShape(None if shape is None else list(shape)).as_proto()


def _tensor_proto(tf, value: np.ndarray, dtype: str | None):
    if dtype is not None and dtype in ("qint8", "quint8", "qint16", "quint16", "qint32"):
        return tf.make_tensor_proto(value, dtype=getattr(tf, dtype))
    if value.dtype.kind == "O":
        return tf.make_tensor_proto([bytes(v) for v in value.reshape(-1).tolist()],
                                    dtype=tf.string, shape=value.shape)
    return tf.make_tensor_proto(value, dtype=tf.as_dtype(dtype) if dtype else None)


def _guess_type(v) -> str:
    """The attribute type of a value whose op definition does not say (custom attributes)."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, np.ndarray):
        return "tensor"
    if isinstance(v, FuncAttr):
        return "func"
    if isinstance(v, (str, bytes)):
        return "type" if isinstance(v, str) and dtypes.is_known(v) else "string"
    if isinstance(v, list):
        return f"list({_guess_type(v[0]) if v else 'int'})"
    raise ConversionError(f"cannot export an attribute value of type {type(v).__name__}")


def _attr_value(tf, kind: str, v, node: Node):
    av = _pb()[0].AttrValue()
    if kind.startswith("list(") and isinstance(v, list):
        inner = kind[5:-1]
        lst = av.list
        for x in v:
            if inner == "type":
                lst.type.append(_dtype_enum(tf, x))
            elif inner == "shape":
                lst.shape.append(_shape_proto(tf, x))
            elif inner == "int":
                lst.i.append(int(x))
            elif inner == "float":
                lst.f.append(float(x))
            elif inner == "bool":
                lst.b.append(bool(x))
            elif inner == "string":
                lst.s.append(x.encode("utf-8") if isinstance(x, str) else bytes(x))
            elif inner == "tensor":
                lst.tensor.append(_tensor_proto(tf, x, None))
            elif inner == "func":
                lst.func.append(_func(tf, x, node))
            else:
                raise ConversionError(f"node {node.name!r} ({node.op}): cannot export a "
                                      f"{kind} attribute")
        return av
    if kind == "type":
        av.type = _dtype_enum(tf, v)
    elif kind == "shape":
        av.shape.CopyFrom(_shape_proto(tf, v))
    elif kind == "int":
        av.i = int(v)
    elif kind == "float":
        av.f = float(v)
    elif kind == "bool":
        av.b = bool(v)
    elif kind == "string":
        av.s = v.encode("utf-8") if isinstance(v, str) else bytes(v)
    elif kind == "tensor":
        av.tensor.CopyFrom(_tensor_proto(tf, v, node.attrs.get("dtype")))
    elif kind == "func":
        av.func.CopyFrom(_func(tf, v, node))
    else:
        raise ConversionError(f"node {node.name!r} ({node.op}): cannot export attribute of type "
                              f"{kind} with value {v!r}")
    return av


def _func(tf, f: FuncAttr, node: Node):
    nal = _pb()[0].NameAttrList(name=f.name)
    for k, x in f.attrs.items():
        nal.attr[k].CopyFrom(_attr_value(tf, _guess_type(x), x, node))
    return nal


def _node_def(tf, n: Node, library: dict, inputs: list[str]):
    nd = _pb()[3].NodeDef(name=n.name, op=n.op)
    nd.input.extend(inputs)
    if n.op in library:
        kinds = {}
    else:
        op_def = _op_def(n.op)
        if op_def is None:
            raise ConversionError(f"node {n.name!r}: {n.op!r} is not a TensorFlow op (a custom "
                                  "tfdeploy op?): TensorFlow cannot run this graph")
        kinds = {a.name: a.type for a in op_def.attr}
    for k, v in n.attrs.items():
        if v is None:
            continue  # an attribute TF left unset (e.g. a Placeholder's unknown dtype)
        nd.attr[k].CopyFrom(_attr_value(tf, kinds.get(k) or _guess_type(v), v, n))
    return nd


def _graph_ref(ref: str) -> str:
    name, i = parse_ref(ref)
    return name if i == 0 else f"{name}:{i}"


def _output_args(n: Node, library: dict) -> list[tuple[str, int]]:
    """[(output arg name, number of tensors)] of a node, as a FunctionDef names its outputs."""
    if n.op in library:
        return [(s.name, 1) for s in library[n.op].outputs]
    op_def = _op_def(n.op)
    if op_def is None:
        raise ConversionError(f"node {n.name!r}: {n.op!r} is not a TensorFlow op")
    out = []
    for a in op_def.output_arg:
        if a.number_attr:
            count = int(n.attrs.get(a.number_attr, 1))
        elif a.type_list_attr:
            count = len(n.attrs.get(a.type_list_attr) or [])
        else:
            count = 1
        out.append((a.name, count))
    return out


def _function_def(tf, name: str, f: Graph, library: dict, out_types: list[str] | None):
    fdef = _pb()[1].FunctionDef()
    fdef.signature.name = name
    args = {}
    for j, s in enumerate(f.inputs):
        arg_name = parse_ref(s.ref)[0]
        args[arg_name] = arg_name
        fdef.signature.input_arg.add(name=arg_name, type=_dtype_enum(tf, s.dtype))
        ph = f.node(arg_name)
        if ph.attrs.get("shape") is not None:
            fdef.arg_attr[j].attr["_output_shapes"].list.shape.append(
                _shape_proto(tf, ph.attrs["shape"]))
    offsets: dict[str, list[tuple[str, int]]] = {}

    def fref(ref: str) -> str:
        node, i = parse_ref(ref)
        if node in args:
            return node
        if node not in offsets:
            offsets[node] = _output_args(f.node(node), library)
        for arg, count in offsets[node]:
            if i < count:
                return f"{node}:{arg}:{i}"
            i -= count
        raise ConversionError(f"function {name!r}: {ref!r} is beyond the outputs of its node")

    for n in f.nodes:
        if n.name in args:
            continue
        fdef.node_def.append(_node_def(tf, n, library, [fref(r) for r in n.inputs]))
    for j, s in enumerate(f.outputs):
        dt = s.dtype
        if not dtypes.is_known(dt) and out_types is not None and j < len(out_types):
            dt = out_types[j]
        fdef.signature.output_arg.add(name=s.name, type=_dtype_enum(tf, dt))
        fdef.ret[s.name] = fref(s.ref)
    return fdef


def _function_out_types(graph: Graph) -> dict[str, list[str]]:
    """Result dtypes of functions, as their callers declare them (raised TF1 control flow
    leaves them unknown in the IR)."""
    out: dict[str, list[str]] = {}
    for g in [graph, *graph.functions.values()]:
        for n in g.nodes:
            attr = _CALLERS.get(n.op)
            if attr is None:
                continue
            types = n.attrs.get(attr) or []
            for k, v in n.attrs.items():
                for fa in v if isinstance(v, list) else [v]:
                    if isinstance(fa, FuncAttr):
                        out.setdefault(fa.name, ["bool"] if k == "cond" else list(types))
    return out


def to_graph_def(graph: Graph):
    """A TensorFlow GraphDef computing what ``graph`` computes (node names unchanged)."""
    tf = _tf()
    gd = _pb()[2].GraphDef()
    gd.versions.producer = tf.version.GRAPH_DEF_VERSION
    library = graph.functions
    for n in graph.nodes:
        gd.node.append(_node_def(tf, n, library, [_graph_ref(r) for r in n.inputs]))
    out_types = _function_out_types(graph)
    for name, f in library.items():
        gd.library.function.append(_function_def(tf, name, f, library, out_types.get(name)))
    return gd


def _info_of(ops) -> dict[str, list]:
    def shape(t):
        return None if t.shape.rank is None else t.shape.as_list()

    return {op.name: [[t.dtype.name, shape(t)] for t in op.outputs] for op in ops}


def tensor_info(graph: Graph, graph_def=None) -> dict:
    """TensorFlow's static dtype and shape of every node's outputs, as plain values::

        {"nodes": {name: [[dtype, shape or None], ...]},
         "functions": {function name: {name: [[dtype, shape], ...]}}}

    (unknown dims are None). Shapes inside functions are what TF infers from the arguments'
    recorded shapes."""
    from tensorflow.python.framework.function_def_to_graph import function_def_to_graph

    tf = _tf()
    gd = to_graph_def(graph) if graph_def is None else graph_def
    g = tf.Graph()
    with g.as_default():
        try:
            tf.graph_util.import_graph_def(gd, name="")
        except (ValueError, TypeError, tf.errors.OpError) as e:
            raise ConversionError(f"TensorFlow rejects the exported graph: {e}") from None
    out: dict = {"nodes": _info_of(g.get_operations()), "functions": {}}
    for fdef in gd.library.function:
        try:
            fg = function_def_to_graph(fdef)
        except (ValueError, TypeError, KeyError, tf.errors.OpError):
            continue  # this function's shapes stay unknown
        out["functions"][fdef.signature.name] = _info_of(fg.get_operations())
    return out
