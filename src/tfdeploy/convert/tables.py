"""Freeze lookup tables (hash-table resources) into data.

TF's variable freezing leaves hash tables alone: a table is a resource captured by the function
(TF2) or a HashTableV2 node initialized by a separate op (TF1). Here each table's contents are
read with TF (LookupTableExportV2) and the resource is replaced by a ``TFDHashTable`` node holding
the keys and values as attributes; the lookup ops that read it (LookupTableFindV2,
LookupTableSizeV2, LookupTableExportV2) keep TF's names and inputs, and the kernels in
``kernels/lookup/tables.py`` run them. Resources that are not tables are left for the caller
to report.
"""

from __future__ import annotations

from tfdeploy.errors import ConversionError

__all__ = ["TABLE_OP", "freeze_tables", "freeze_graph_tables"]

#: the op type of a frozen table in the tfdeploy IR
TABLE_OP = "TFDHashTable"

#: lookup ops and the attributes naming a table's key and value dtypes
_TYPED_READERS = {"LookupTableFindV2": ("Tin", "Tout"), "LookupTableFind": ("Tin", "Tout"),
                  "LookupTableExportV2": ("Tkeys", "Tvalues"),
                  "LookupTableExport": ("Tkeys", "Tvalues"),
                  "LookupTableImportV2": ("Tin", "Tout"), "LookupTableInsertV2": ("Tin", "Tout")}
#: TF1 ops creating a table in the graph (initialized by other ops), with their dtype attrs
_TABLE_NODES = {"HashTableV2": ("key_dtype", "value_dtype"),
                "MutableHashTableV2": ("key_dtype", "value_dtype"),
                "MutableHashTableOfTensorsV2": ("key_dtype", "value_dtype"),
                "MutableDenseHashTableV2": ("key_dtype", "value_dtype")}
_INIT_OPS = frozenset({"InitializeTableV2", "InitializeTableFromTextFileV2",
                       "LookupTableImportV2", "LookupTableInsertV2",
                       "InitializeTableFromDataset"})
# tried (after the dtypes the graph's lookup ops name) to find a captured table's dtypes
_KEY_DTYPES = ("string", "int64", "int32", "float32", "float64")
_VALUE_DTYPES = ("int64", "string", "int32", "float32", "float64", "bool")


def _tf():
    import tensorflow as tf

    return tf


def _dtype_hints(graph_def) -> list[tuple[str, str]]:
    """(key, value) dtype pairs named by the lookup ops of the graph and its functions."""
    tf = _tf()
    hints: list[tuple[str, str]] = []
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    for n in nodes:
        names = _TYPED_READERS.get(n.op)
        if names and all(a in n.attr for a in names):
            pair = tuple(tf.as_dtype(n.attr[a].type).name for a in names)
            if pair not in hints:
                hints.append(pair)
    return hints


def _candidates(hints):
    seen = set()
    for pair in list(hints) + [(k, v) for k in _KEY_DTYPES for v in _VALUE_DTYPES]:
        if pair not in seen:
            seen.add(pair)
            yield pair


def _empty(tf, dtype: str, shape=(0,)):
    return tf.zeros(shape, dtype) if dtype != "string" else tf.fill(shape, "")


def _probe_dtypes(tf, handle, hints):
    """The (key, value) dtypes of a table resource, or None if it is not a lookup table.

    Asks LookupTableFindV2 (with no keys), which checks the dtypes against the table's and
    fails cleanly; LookupTableExportV2 with the wrong dtypes aborts the process.
    """
    for kd, vd in _candidates(hints):
        try:
            tf.raw_ops.LookupTableFindV2(table_handle=handle, keys=_empty(tf, kd),
                                         default_value=_empty(tf, vd, ()))
        except tf.errors.InvalidArgumentError as e:
            if "signature" in e.message.lower():
                continue
            return kd, vd  # another complaint (the default's shape): the dtypes matched
        except tf.errors.OpError:
            return None
        return kd, vd
    return None


def _absent_keys(keys, kd: str, n: int = 2):
    import numpy as np

    present = set(keys.tolist())
    out, i = [], 0
    while len(out) < n:
        k = f"\0tfdeploy-absent-{i}".encode() if kd == "string" else i - (1 << 30)
        if k not in present:
            out.append(k)
        i += 1
    return np.array(out, dtype=object if kd == "string" else kd)


def _probe_elementwise_default(tf, handle, keys, values, kd: str, vd: str) -> bool:
    """Whether the table reads a full-size default_value element-wise (MutableHashTable) or
    always takes its first element (HashTable)."""
    import numpy as np

    vshape = tuple(values.shape[1:])
    if vd == "string":
        default = np.array([[b"0"], [b"1"]], dtype=object).reshape((2,) + (1,) * len(vshape))
        default = np.broadcast_to(default, (2,) + vshape)
    else:
        default = np.broadcast_to(np.arange(2).reshape((2,) + (1,) * len(vshape)),
                                  (2,) + vshape).astype(vd)
    try:
        out = tf.raw_ops.LookupTableFindV2(
            table_handle=handle, keys=tf.constant(_absent_keys(keys, kd), dtype=kd),
            default_value=tf.constant(default, dtype=vd)).numpy()
    except tf.errors.OpError:
        return False
    return bool(np.array_equal(out[1], default[1]))


def _eager_table(tf, handle, hints, what: str):
    """(keys, values, key dtype, value dtype, elementwise default) of an eager table handle,
    or None if the resource is not a lookup table."""
    dtypes = _probe_dtypes(tf, handle, hints)
    if dtypes is None:
        return None
    kd, vd = dtypes
    try:
        k, v = tf.raw_ops.LookupTableExportV2(table_handle=handle, Tkeys=kd, Tvalues=vd)
        size = int(tf.raw_ops.LookupTableSizeV2(table_handle=handle).numpy())
    except tf.errors.OpError:
        return None
    keys, values = k.numpy(), v.numpy()
    if size != len(keys):
        raise ConversionError(
            f"lookup table {what!r} exports {len(keys)} buckets for {size} entries (a "
            "DenseHashTable?): only HashTable and MutableHashTable can be frozen")
    return keys, values, kd, vd, _probe_elementwise_default(tf, handle, keys, values, kd, vd)


def _as_object(a):
    import numpy as np

    a = np.asarray(a)
    if a.dtype.kind in "SU" or a.dtype == object:
        out = np.empty(a.shape, dtype=object)
        out.reshape(-1)[:] = [x if isinstance(x, bytes) else str(x).encode()
                              for x in a.reshape(-1).tolist()]
        return out
    return a


def _table_node(node, keys, values, key_dtype: str, value_dtype: str,
                elementwise_default: bool) -> None:
    """Turn ``node`` (a NodeDef) into a TFDHashTable holding ``keys`` and ``values``."""
    tf = _tf()
    name = node.name
    node.Clear()
    node.name = name
    node.op = TABLE_OP
    node.attr["keys"].tensor.CopyFrom(tf.make_tensor_proto(keys, dtype=key_dtype))
    node.attr["values"].tensor.CopyFrom(tf.make_tensor_proto(values, dtype=value_dtype))
    node.attr["key_dtype"].type = tf.as_dtype(key_dtype).as_datatype_enum
    node.attr["value_dtype"].type = tf.as_dtype(value_dtype).as_datatype_enum
    node.attr["elementwise_default"].b = bool(elementwise_default)


def freeze_tables(concrete_function, graph_def, inputs):
    """Freeze the lookup tables a ConcreteFunction captures; returns (graph_def, inputs).

    ``graph_def`` and ``inputs`` are what variable freezing left: the function's graph and its
    remaining inputs, including the resource placeholders of captured tables. Each table's
    placeholder becomes a TFDHashTable node (same name) and leaves ``inputs``; other resources
    stay in ``inputs`` for the caller to report. ``graph_def`` is not modified (a copy is).
    """
    tf = _tf()
    resources = [t for t in inputs if t.dtype == tf.resource]
    if not resources:
        return graph_def, inputs
    external = {}
    for ext, internal in concrete_function.graph.captures:
        if internal.dtype == tf.resource:
            external[internal.name] = ext
    gd = tf.compat.v1.GraphDef()
    gd.CopyFrom(graph_def)
    by_name = {n.name: n for n in gd.node}
    hints = _dtype_hints(gd)
    frozen = set()
    for t in resources:
        handle = external.get(t.name)
        node = by_name.get(t.op.name)
        if handle is None or node is None or not hasattr(handle, "numpy"):
            continue

        got = _eager_table(tf, handle, hints, t.op.name)
        if got is None:
            continue
        keys, values, kd, vd, elementwise = got
        _table_node(node, _as_object(keys), _as_object(values), kd, vd, elementwise)
        frozen.add(t.name)
    if not frozen:
        return graph_def, inputs
    return gd, [t for t in inputs if t.name not in frozen]


def freeze_graph_tables(graph_def, sess=None):
    """Freeze the tables created inside a (TF1) GraphDef; returns a new GraphDef.

    Each HashTableV2 / MutableHashTableV2 node becomes a TFDHashTable. Its contents come from
    ``sess`` when given (where the tables are already initialized); otherwise the GraphDef is
    imported into a fresh graph and the table's initializers found in it (InitializeTableV2,
    InitializeTableFromTextFileV2, LookupTableImportV2...) are run. A table whose contents cannot
    be read is left as is (the converter then reports its op as unsupported).
    """
    tf = _tf()
    tables = [n for n in graph_def.node if n.op in _TABLE_NODES]
    if not tables:
        return graph_def
    gd = tf.compat.v1.GraphDef()
    gd.CopyFrom(graph_def)
    by_name = {n.name: n for n in gd.node}
    contents = _read_with_session(tables, sess) if sess is not None else {}
    missing = [n for n in tables if n.name not in contents]
    if missing:
        contents.update(_read_by_initializing(graph_def, missing))
    for n in tables:
        if n.name in contents:
            keys, values, kd, vd, elementwise = contents[n.name]
            _table_node(by_name[n.name], _as_object(keys), _as_object(values), kd, vd,
                        elementwise)
    return gd


def _node_dtypes(node) -> tuple[str, str]:
    tf = _tf()
    kd, vd = _TABLE_NODES[node.op]
    return tf.as_dtype(node.attr[kd].type).name, tf.as_dtype(node.attr[vd].type).name


def _export_in(graph, session_run, tables) -> dict:
    tf = _tf()
    out = {}
    with graph.as_default(), tf.name_scope("tfdeploy_table_export"):
        for node in tables:
            kd, vd = _node_dtypes(node)
            try:
                handle = graph.get_operation_by_name(node.name).outputs[0]
                k, v = tf.raw_ops.LookupTableExportV2(table_handle=handle, Tkeys=kd, Tvalues=vd)
                s = tf.raw_ops.LookupTableSizeV2(table_handle=handle)
            except (KeyError, ValueError, TypeError):
                continue
            try:
                keys, values, size = session_run([k, v, s])
            except tf.errors.OpError:
                continue
            if int(size) != len(keys):
                raise ConversionError(
                    f"lookup table {node.name!r} exports {len(keys)} buckets for {int(size)} "
                    "entries (a DenseHashTable?): only HashTable and MutableHashTable can be "
                    "frozen")
            out[node.name] = (keys, values, kd, vd, node.op != "HashTableV2")
    return out


def _read_with_session(tables, sess) -> dict:
    if sess.graph.finalized:
        return {}
    return _export_in(sess.graph, sess.run, tables)


def _read_by_initializing(graph_def, tables) -> dict:
    tf = _tf()
    inits: dict[str, list[str]] = {}
    for n in graph_def.node:
        if n.op in _INIT_OPS and n.input:
            inits.setdefault(n.input[0].split(":")[0].lstrip("^"), []).append(n.name)
    if not any(t.name in inits for t in tables):
        return {}
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.graph_util.import_graph_def(graph_def, name="")
        except (ValueError, TypeError):
            return {}
    ready = []
    with tf.compat.v1.Session(graph=graph) as sess:
        for t in tables:
            ran = False
            for name in inits.get(t.name, ()):
                try:  # (an op that needs feeds is not an initializer: skip it)
                    sess.run(graph.get_operation_by_name(name))
                    ran = True
                except tf.errors.OpError:
                    pass
            # an uninitialized HashTable would export as empty: only freeze what was filled
            if ran or t.op != "HashTableV2":
                ready.append(t)
        return _export_in(graph, sess.run, ready)
