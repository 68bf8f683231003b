"""Conversion from TensorFlow: the only part of tfdeploy that imports TensorFlow.

Every source is traced to raw TF ops, its variables frozen into constants without lowering
control flow, and the resulting GraphDef turned into the tfdeploy IR (see ``graphdef.py``).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from tfdeploy.convert import reference
from tfdeploy.convert.graphdef import graph_from_def
from tfdeploy.convert.tables import freeze_graph_tables, freeze_tables
from tfdeploy.convert.variables import freeze_from_checkpoint
from tfdeploy.errors import ConversionError
from tfdeploy.ir.graph import Graph, canonical_ref, node_dtype, parse_ref

__all__ = ["convert_graph", "to_graph"]


def _tf():
    try:
        import tensorflow as tf
    except ImportError:
        raise ConversionError("converting needs TensorFlow: pip install 'tfdeploy[tf]'") from None
    return tf


def convert_graph(source, *, check_data: bool = True, progress=None,
                  **kwargs) -> tuple[Graph, dict]:
    """(IR graph, metadata to keep beside it: TF's tensor shapes, check data) of a source."""
    say = progress or (lambda stage: None)
    say("converting")
    graph, run = _convert(source, **kwargs)
    metadata = reference.record(graph, run, check_data, say)
    # signature shapes the source does not give (frozen .pb) are what TF infers
    nodes = metadata.get("tensors", {}).get("nodes", {})
    for s in graph.outputs:
        name, i = parse_ref(s.ref)
        if s.shape is None and len(nodes.get(name, ())) > i:
            s.shape = nodes[name][i][1]
    return graph, metadata


def to_graph(source, sess=None, input_signature=None, signature=None, inputs=None,
             outputs=None, checkpoint=None, variables=None) -> Graph:
    """The IR graph of any supported source (see :func:`tfdeploy.convert`)."""
    return _convert(source, sess, input_signature, signature, inputs, outputs, checkpoint,
                    variables)[0]


def _convert(source, sess=None, input_signature=None, signature=None, inputs=None,
             outputs=None, checkpoint=None, variables=None):
    """(graph, a function running the source in TensorFlow on the signature's inputs)."""
    tf = _tf()
    if sess is not None:
        return _from_session(source, sess, inputs)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            return _from_saved_model(path, signature)
        if os.path.isfile(path) and path.endswith(KERAS_FILES):
            return _from_keras(_load_keras(path), input_signature)
        if os.path.isfile(path):
            gd = tf.compat.v1.GraphDef()
            with open(path, "rb") as f:
                data = f.read()
            try:
                gd.ParseFromString(data)
            except Exception as e:
                raise ConversionError(f"{path!r} is not a GraphDef protobuf ({e})") from None
            return _run_graph_def(freeze_from_checkpoint(gd, checkpoint, variables), inputs,
                                  outputs)
        raise ConversionError(f"no such file or directory: {path!r}")
    if isinstance(source, tf.compat.v1.GraphDef):
        return _run_graph_def(freeze_from_checkpoint(source, checkpoint, variables), inputs,
                              outputs)
    if _is_keras_model(source):
        return _from_keras(source, input_signature)
    if isinstance(source, tf.types.experimental.ConcreteFunction):
        return _from_concrete(source)
    if hasattr(source, "get_concrete_function"):
        return _from_concrete(_concrete_of(source, input_signature))
    if isinstance(source, (tf.Tensor, list, tuple)) and not tf.executing_eagerly():
        raise ConversionError("a TF1 tensor needs its session: model.add(tensor, sess)")
    raise ConversionError(
        f"cannot convert a {type(source).__module__}.{type(source).__name__}; expected a Keras "
        "model, tf.function, ConcreteFunction, SavedModel directory, GraphDef or .pb path, or "
        "a TF1 tensor with its session")


#: file name endings read as Keras models
KERAS_FILES = (".keras", ".h5", ".hdf5")


def _load_keras(path: str):
    """A Keras model from a .keras/.h5 file: Keras 3 first, then tf_keras (legacy .h5)."""
    import importlib

    errors = []
    for name in ("keras", "tf_keras"):
        try:
            keras = importlib.import_module(name)
        except ImportError:
            continue
        try:
            return keras.models.load_model(path, compile=False)
        except Exception as e:  # noqa: BLE001 - try the other Keras, then report both
            errors.append(f"{name}: {type(e).__name__}: {str(e).strip().splitlines()[0]}")
    raise ConversionError(f"cannot load {path!r} as a Keras model: "
                          f"{'; '.join(errors) or 'neither keras nor tf_keras is installed'}")


def _run_graph_def(gd, inputs, outputs):
    g = _from_graph_def(gd, inputs, outputs)
    return g, reference.of_graph_def(gd, [s.ref for s in g.inputs], [s.ref for s in g.outputs])


def _is_keras_model(obj) -> bool:
    for cls in type(obj).__mro__:
        if cls.__name__ in ("Model", "Functional", "Sequential") and \
                cls.__module__.split(".")[0] in ("keras", "tf_keras"):
            return True
    return False


def _spec_of(tf, x, i: int):
    if isinstance(x, tf.TensorSpec):
        return x
    a = np.asarray(x)
    return tf.TensorSpec(a.shape, tf.as_dtype(a.dtype), name=f"input_{i}")


def _concrete_of(fn, input_signature):
    tf = _tf()
    if input_signature is not None:
        specs = [_spec_of(tf, x, i) for i, x in enumerate(input_signature)]
        return fn.get_concrete_function(*specs)
    try:
        return fn.get_concrete_function()
    except (TypeError, ValueError) as e:
        raise ConversionError(
            "this tf.function has no input_signature: pass input_signature=[tf.TensorSpec(...)] "
            f"or example arrays to td.convert ({e})") from None


def _clean(name: str) -> str:
    return name.split(":")[0]


def _path_names(tf, structure) -> list[str]:
    """The name of each leaf of a nested structure, in tf.nest's order (a dict's sorted
    keys, then sequences in order): its path, keys and indices joined by ``_``."""
    out: list[str] = []
    stack = [((), structure)]
    while stack:
        path, s = stack.pop()
        if isinstance(s, dict):
            items = [(path + (str(k),), s[k]) for k in sorted(s)]
        elif isinstance(s, (list, tuple)):
            items = [(path + (str(i),), v) for i, v in enumerate(s)]
        else:
            out.append("_".join(path) or "output")
            continue
        stack.extend(reversed(items))
    assert len(out) == len(tf.nest.flatten(structure))
    return out


def _keras_inputs(model):
    """The structure of a Keras model's inputs (a dict, list or single tensor), or None."""
    for attr in ("_inputs_struct", "_nested_inputs", "input", "inputs"):
        try:
            s = getattr(model, attr, None)
        except (AttributeError, ValueError):
            s = None
        if s is not None:
            return list(s) if attr == "inputs" else s
    return None


def _is_nested(structure) -> bool:
    """A dict, or a list or tuple holding one."""
    return isinstance(structure, dict) or isinstance(structure, (list, tuple)) and any(
        isinstance(s, (dict, list, tuple)) for s in structure)


def _keras_pitfalls(model) -> None:
    """Warn about Keras layers whose traced graph computes otherwise than the model does
    eagerly: what tfdeploy converts is the graph, as TF's SavedModel and tf.function run it."""
    try:
        layers = list(model._flatten_layers(include_self=False))
    except (AttributeError, TypeError):
        layers = list(getattr(model, "layers", ()))
    for layer in layers:
        if type(layer).__name__ != "TimeDistributed" or \
                not type(layer).__module__.startswith("keras.src"):
            continue
        try:
            steps = layer.input.shape[1]
        except (AttributeError, ValueError, IndexError, TypeError):
            continue
        if steps is None:
            warnings.warn(
                f"tfdeploy: TimeDistributed layer {layer.name!r} has an unknown time length. In "
                "a traced graph (tf.function, a SavedModel, and so this conversion) Keras 3 "
                "maps it over range(batch size) instead of range(time steps), so the graph, "
                "TF's and tfdeploy's, gives other results than calling the model eagerly (and "
                "fails when the batch is larger than the length). Give the Input a fixed "
                "length.", stacklevel=3)


def _from_keras(model, input_signature):
    tf = _tf()
    _keras_pitfalls(model)
    structure = None
    if input_signature is None:
        structure = _keras_inputs(model)
        kin = tf.nest.flatten(structure) if structure is not None else None
        if not kin:
            raise ConversionError("this Keras model has no defined inputs (a subclassed or "
                                  "unbuilt model?): pass input_signature=[tf.TensorSpec(...)]")
        names = _path_names(tf, structure) if _is_nested(structure) else \
            [_clean(t.name) for t in kin]
        specs = [tf.TensorSpec(tuple(t.shape), tf.as_dtype(t.dtype), name=nm)
                 for t, nm in zip(kin, names)]
    else:
        specs = [_spec_of(tf, x, i) for i, x in enumerate(input_signature)]
    n = len(specs)

    def call(*args):
        if _is_nested(structure):  # a dict of inputs, or lists of them: passed as built
            return model(tf.nest.pack_sequence_as(structure, list(args)), training=False)
        return model(list(args) if n > 1 else args[0], training=False)

    cf = tf.function(call, autograph=False).get_concrete_function(*specs)
    names = getattr(model, "output_names", None)
    return _from_concrete(cf, output_names=list(names) if names else None)


def _freeze(cf):
    """(frozen GraphDef, input tensors, output tensors) of a ConcreteFunction.

    Uses TF's own variable freezing (grappler inlining, lower_control_flow=False) but stops
    before TF rebuilds a ConcreteFunction from the result, which we do not need and which costs
    most of the conversion time on large models. Falls back on the public API if TF's internals
    move.
    """
    _tf()  # a clear error if TensorFlow is missing
    from tensorflow.python.framework import convert_to_constants as c2c

    try:
        data = c2c._FunctionConverterDataInEager(func=cf, lower_control_flow=False,
                                                 aggressive_inlining=False)
        gd, converted = c2c._replace_variables_by_constants(converter_data=data)
        captures = list(cf.graph.internal_captures)
        gone = {id(captures[i]) for i in converted}
        ins = [t for t in cf.inputs if id(t) not in gone]
        return gd, ins, list(cf.outputs)
    except (AttributeError, TypeError, IndexError):  # pragma: no cover - TF internals moved
        frozen = c2c.convert_variables_to_constants_v2(cf, lower_control_flow=False)
        return frozen.graph.as_graph_def(), list(frozen.inputs), list(frozen.outputs)


def _from_concrete(cf, output_names=None, keep=None):
    tf = _tf()
    try:
        gd, ins, outs = _freeze(cf)
    except Exception as e:
        raise ConversionError(f"TensorFlow could not freeze the function: {e}") from e
    gd, ins = freeze_tables(cf, gd, ins)  # lookup tables become data too
    unfrozen = [t.name for t in ins if t.dtype == tf.resource]
    if unfrozen:
        raise ConversionError(f"resources could not be frozen into constants: {unfrozen} (a "
                              "lookup table or a variable TF could not read?)")
    input_refs = [t.name for t in ins]
    output_refs = [t.name for t in outs]
    structured = cf.structured_outputs
    if _is_nested(structured) and len(tf.nest.flatten(structured)) == len(output_refs):
        names = _path_names(tf, structured)  # (dict keys in tf.nest's sorted order)
    elif output_names and len(output_names) == len(output_refs) and \
            len(set(output_names)) == len(output_names):
        names = output_names
    elif len(output_refs) == 1:
        names = ["output"]
    else:
        names = [f"output_{i}" for i in range(len(output_refs))]
    g = graph_from_def(gd, input_refs, output_refs,
                       input_names=_input_names(tf, cf, ins), output_names=names)
    for s, t in zip(g.outputs, outs):
        s.dtype = t.dtype.name
        s.shape = None if t.shape.rank is None else list(t.shape.as_list())
    for s, t in zip(g.inputs, ins):
        s.dtype = t.dtype.name
        s.shape = None if t.shape.rank is None else list(t.shape.as_list())
    return g, reference.of_concrete(cf, keep)


def _input_names(tf, cf, ins) -> list[str]:
    """The signature's input names: the placeholders' names, or for nested inputs (a dict, a
    tuple of lists...) each leaf's path (a single structured argument's own name left out)."""
    plain = [t.op.name for t in ins]
    try:
        args, kwargs = cf.structured_input_signature
    except (AttributeError, TypeError, ValueError):
        return plain
    if not any(isinstance(a, (dict, list, tuple)) for a in list(args) + list(kwargs.values())):
        return plain
    if len(args) == 1 and not kwargs:
        names = _path_names(tf, args[0])
    else:
        try:
            params = list(cf.function_type.parameters)
        except AttributeError:
            params = []
        names = []
        for base, a in [(params[j] if j < len(params) else str(j), a)
                        for j, a in enumerate(args)] + [(k, kwargs[k]) for k in sorted(kwargs)]:
            names += [base if n == "output" else f"{base}_{n}" for n in _path_names(tf, a)]
    if len(names) != len(ins) or len(set(names)) != len(names):
        return plain
    return names


def _from_saved_model(path: str, signature: str | None):
    tf = _tf()
    try:
        loaded = tf.saved_model.load(path)
    except Exception as e:
        raise ConversionError(f"TensorFlow could not load the SavedModel at {path!r}: {e}") from e
    sigs = dict(getattr(loaded, "signatures", {}) or {})
    name = signature or "serving_default"
    if name not in sigs:
        if signature is None and len(sigs) == 1:
            name = next(iter(sigs))
        else:
            raise ConversionError(f"the SavedModel at {path!r} has no signature {name!r} "
                                  f"(it has {sorted(sigs)})")
    return _from_concrete(sigs[name], keep=loaded)


def _from_graph_def(gd, inputs, outputs) -> Graph:
    gd = freeze_graph_tables(gd)
    if isinstance(inputs, str):
        inputs = [inputs]
    if isinstance(outputs, str):
        outputs = [outputs]
    consumed = {i.split(":")[0].lstrip("^") for n in gd.node for i in n.input}
    if outputs is None:
        outputs = [n.name for n in gd.node if n.name not in consumed
                   and n.op not in ("NoOp", "Const", "Placeholder", "Assert", "SaveV2",
                                    "RestoreV2")]
        if not outputs:
            raise ConversionError("cannot tell the graph's outputs: pass outputs=[...]")
    input_refs = [canonical_ref(r) for r in inputs] if inputs is not None else None
    output_refs = [canonical_ref(r) for r in outputs]
    if input_refs is None:
        g0 = graph_from_def(gd, [], output_refs)
        input_refs = [f"{n.name}:0" for n in g0.nodes if n.op == "Placeholder"]
    names_in = [r.split(":")[0] if r.endswith(":0") else r for r in input_refs]
    names_out = [r.split(":")[0] if r.endswith(":0") else r for r in output_refs]
    g = graph_from_def(gd, input_refs, output_refs, input_names=names_in,
                       output_names=names_out)
    variables = [n.name for n in g.nodes if n.op in _VARIABLE_OPS]
    if variables:
        shown = ", ".join(repr(v) for v in variables[:5])
        raise ConversionError(
            f"the graph reads {len(variables)} variable(s) whose values it does not hold "
            f"({shown}{' ...' if len(variables) > 5 else ''}): pass their values with "
            "checkpoint=... or variables={name: array}, or freeze it first "
            "(tf.compat.v1.graph_util.convert_variables_to_constants), or convert from the "
            "session with model.add(tensor, sess), or from a SavedModel")
    _fill_output_dtypes(g)
    return g


_VARIABLE_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp", "VarIsInitializedOp"})


def _fill_output_dtypes(g: Graph) -> None:
    for s in g.outputs:
        node = g.node(s.ref.split(":")[0])
        s.dtype = node_dtype(node, 0) or "unknown"


def _from_session(tensors, sess, inputs=None):
    """TF1: freeze the session's variables and take everything ``tensors`` depend on."""
    tf = _tf()
    single = not isinstance(tensors, (list, tuple))
    tensors = [tensors] if single else list(tensors)
    refs = []
    for t in tensors:
        if isinstance(t, str):
            refs.append(canonical_ref(t))
        elif hasattr(t, "name") and hasattr(t, "graph"):
            if t.graph is not sess.graph:
                raise ConversionError(f"tensor {t.name!r} is not in the session's graph")
            refs.append(canonical_ref(t.name) if hasattr(t, "op") else f"{t.name}:0")
        else:
            raise ConversionError(f"model.add expects TF1 tensors, got {type(t).__name__}")
    gd = sess.graph.as_graph_def()
    try:
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            sess, gd, sorted({r.split(":")[0] for r in refs}))
    except Exception as e:
        raise ConversionError(f"TensorFlow could not freeze the session's variables: {e}") from e
    frozen = freeze_graph_tables(frozen, sess)
    g = _from_graph_def(frozen, inputs, refs)
    # keep TF's names for the outputs ("output:0" is found as "output" too)
    for s in g.outputs:
        s.name = s.ref.split(":")[0] if s.ref.endswith(":0") else s.ref
    return g, reference.of_session(sess, [s.ref for s in g.inputs], [s.ref for s in g.outputs])


