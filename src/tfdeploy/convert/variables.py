"""Unfrozen GraphDefs plus a checkpoint: the variables become constants.

A TF1 graph saved without freezing holds VariableV2 / VarHandleOp nodes and reads them with
ReadVariableOp / ResourceGather; their values live in a checkpoint. ``freeze_from_checkpoint``
rewrites such a GraphDef: each variable becomes a Const of its checkpointed value, each
ReadVariableOp an Identity of it and each ResourceGather a GatherV2, as TF's own freezing does.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.errors import ConversionError

VARIABLE_OPS = ("VariableV2", "Variable", "VarHandleOp")


def _tf():
    import tensorflow as tf

    return tf


def freeze_from_checkpoint(graph_def, checkpoint: str | None = None, variables: dict | None = None):
    """``graph_def`` with its variables' values taken from ``checkpoint`` (a prefix or
    directory) or from ``variables`` (name -> array); returns a new GraphDef."""
    tf = _tf()
    nodes = [n for n in graph_def.node if n.op in VARIABLE_OPS]
    if not nodes:
        return graph_def
    values = dict(variables or {})
    reader = None
    if checkpoint is not None:
        try:
            reader = tf.train.load_checkpoint(checkpoint)
        except Exception as e:  # noqa: BLE001
            raise ConversionError(f"cannot read the checkpoint {checkpoint!r}: {e}") from None
    gd = tf.compat.v1.GraphDef()
    gd.CopyFrom(graph_def)
    const_of = {}
    for n in gd.node:
        if n.op not in VARIABLE_OPS:
            continue
        key = n.name
        shared = n.attr["shared_name"].s.decode() if "shared_name" in n.attr else ""
        value = values.get(key, values.get(shared))
        if value is None and reader is not None:
            for k in (key, shared):
                if k and reader.has_tensor(k):
                    value = reader.get_tensor(k)
                    break
        if value is None:
            continue  # reported by the caller, with every other unresolved variable
        dtype = n.attr["dtype"].type
        value = np.asarray(value, dtype=tf.dtypes.as_dtype(dtype).as_numpy_dtype)
        n.op = "Const"
        for a in list(n.attr):
            del n.attr[a]
        n.attr["dtype"].type = dtype
        n.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        del n.input[:]
        const_of[n.name] = n
    for n in gd.node:
        if n.op == "ReadVariableOp" and n.input and n.input[0] in const_of:
            n.op = "Identity"
            n.attr["T"].type = n.attr["dtype"].type
            del n.attr["dtype"]
        elif n.op == "ResourceGather" and n.input and n.input[0] in const_of:
            n.op = "GatherV2"
            batch_dims = n.attr["batch_dims"].i if "batch_dims" in n.attr else 0
            tparams = n.attr["dtype"].type
            tindices = n.attr["Tindices"].type
            for a in list(n.attr):
                del n.attr[a]
            axis = gd.node.add(name=n.name + "/tfdeploy_axis", op="Const")
            axis.attr["dtype"].type = tf.int32.as_datatype_enum
            axis.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.int32(batch_dims)))
            n.input.insert(2, axis.name)
            n.attr["Tparams"].type = tparams
            n.attr["Tindices"].type = tindices
            n.attr["Taxis"].type = tf.int32.as_datatype_enum
            n.attr["batch_dims"].i = batch_dims
    return gd
