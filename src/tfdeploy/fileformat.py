"""The model file: data only, memory-mappable, versioned, validated on every read.

Layout (all integers little-endian)::

    b"TFDEPLOY"  u32 format version  u32 reserved (0)  u64 header length
    header: UTF-8 JSON (graphs, signatures, array table)
    padding to 64 bytes, then the data section: raw array bytes, each aligned to 64

Arrays are read with ``np.frombuffer`` over the file's bytes: for files of ``MMAP_MIN_BYTES``
or more an ``mmap`` (loading costs no copy and no time proportional to the weights), for
smaller ones a copy read into memory (immune to the file being overwritten or truncated
later; ``load(..., mmap=True/False)`` chooses; see docs/security.md). Nothing in the file is
ever executed or unpickled. String tensors (rare: lookup tables) are stored in the header as
base64. Everything read is validated: integers, shapes (rank at most ``MAX_RANK``), dtypes,
offsets, references (``node:i``, ASCII digits), the attribute types the compiler relies on,
and the functions' call graph (no recursion, nesting bounded).

The header's ``metadata`` (check data, recorded tensor shapes...) may hold arrays too: they are
stored in the array table like weights and referenced as ``{"$array": i}``; the header key
``metadata_arrays`` says so. Readers that predate it still load such files (they see the
references as plain dicts), and files without it load unchanged.
"""

from __future__ import annotations

import base64
import json
import mmap
import os
import struct
from typing import Any

import numpy as np

from tfdeploy import dtypes
from tfdeploy._version import __version__
from tfdeploy.errors import FileFormatError, GraphError
from tfdeploy.ir.graph import FuncAttr, Graph, Node, TensorSpec, parse_ref
from tfdeploy.ir.verify import check_attrs, check_calls, check_signatures
from tfdeploy.runtime.limits import LIMITS

MAGIC = b"TFDEPLOY"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIIQ")
ALIGN = 64
MAX_NESTING = 64
#: the largest rank of a shape (numpy's limit on every supported version)
MAX_RANK = 32
#: files this large or larger are memory-mapped by default, smaller ones read into memory
MMAP_MIN_BYTES = 64 << 20
#: the largest output index a reference may name
MAX_OUTPUT_INDEX = 1 << 16


# ---------------------------------------------------------------------------- writing

class _Arrays:
    def __init__(self):
        self.table: list[dict] = []
        self.data: list[tuple[int, np.ndarray]] = []
        self._ids: dict[int, int] = {}
        self._size = 0

    def add(self, a: np.ndarray) -> int:
        key = id(a)
        if key in self._ids:
            return self._ids[key]
        name = dtypes.from_numpy(a.dtype)
        if name == "string":
            vals = [base64.b64encode(v if isinstance(v, bytes) else str(v).encode()).decode()
                    for v in a.reshape(-1).tolist()]
            entry = {"dtype": "string", "shape": list(a.shape), "values": vals}
        else:
            offset = -(-self._size // ALIGN) * ALIGN
            entry = {"dtype": name, "shape": list(a.shape), "offset": offset,
                     "nbytes": int(a.nbytes)}
            self.data.append((offset, a))
            self._size = offset + a.nbytes
        self.table.append(entry)
        self._ids[key] = len(self.table) - 1
        return self._ids[key]


def _encode_attr(v: Any, arrays: _Arrays) -> Any:
    if isinstance(v, np.ndarray):
        return {"$array": arrays.add(v)}
    if isinstance(v, FuncAttr):
        return {"$func": v.name, "attrs": {k: _encode_attr(x, arrays) for k, x in v.attrs.items()}}
    if isinstance(v, bytes):
        return {"$bytes": base64.b64encode(v).decode()}
    if isinstance(v, (list, tuple)):
        return [_encode_attr(x, arrays) for x in v]
    if isinstance(v, (np.generic,)):
        return v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"cannot store attribute value of type {type(v).__name__}")


def _encode_metadata(v: Any, arrays: _Arrays, depth: int = 0) -> Any:
    """Metadata as JSON: dicts of JSON values, arrays (into the array table) and bytes."""
    if depth > MAX_NESTING:
        raise TypeError("metadata is nested too deeply")
    if isinstance(v, dict):
        for k in v:
            # keys starting with "$" would read back as array or bytes references
            if not isinstance(k, str) or k.startswith("$"):
                raise TypeError(f"metadata keys must be strings not starting with '$', got {k!r}")
        return {k: _encode_metadata(x, arrays, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_encode_metadata(x, arrays, depth + 1) for x in v]
    return _encode_attr(v, arrays)


def _encode_spec(s: TensorSpec) -> dict:
    return {"name": s.name, "ref": s.ref, "dtype": s.dtype, "shape": s.shape}


def _encode_graph(g: Graph, arrays: _Arrays) -> dict:
    out = {
        "nodes": [{"name": n.name, "op": n.op, "inputs": list(n.inputs),
                   "attrs": {k: _encode_attr(v, arrays) for k, v in n.attrs.items()}}
                  for n in g.nodes],
        "inputs": [_encode_spec(s) for s in g.inputs],
        "outputs": [_encode_spec(s) for s in g.outputs],
    }
    if g.functions:
        out["functions"] = {k: _encode_graph(f, arrays) for k, f in g.functions.items()}
    return out


def dumps(graphs: dict[str, Graph], metadata: dict | None = None) -> list:
    """The file as a list of byte chunks (header, then arrays)."""
    arrays = _Arrays()
    header = {
        "format": "tfdeploy",
        "format_version": FORMAT_VERSION,
        "writer": f"tfdeploy {__version__}",
        "metadata": _encode_metadata(metadata or {}, arrays),
        "metadata_arrays": True,
        "graphs": [{"key": k, "graph": _encode_graph(g, arrays)} for k, g in graphs.items()],
        "arrays": arrays.table,
    }
    hbytes = json.dumps(header, separators=(",", ":"), allow_nan=True).encode("utf-8")
    head_len = _PREFIX.size + len(hbytes)
    pad = -(-head_len // ALIGN) * ALIGN - head_len
    chunks: list = [_PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(hbytes) + pad), hbytes,
                    b" " * pad]
    pos = 0
    for offset, a in arrays.data:
        if offset > pos:
            chunks.append(b"\0" * (offset - pos))
        le = a.astype(a.dtype.newbyteorder("<"), copy=False) if a.dtype.byteorder == ">" else a
        chunks.append(np.ascontiguousarray(le).tobytes())  # type: ignore[arg-type]
        pos = offset + a.nbytes
    return chunks


def save(graphs: dict[str, Graph], target, metadata: dict | None = None) -> None:
    """Write ``graphs`` to ``target``: a path or a binary file object."""
    chunks = dumps(graphs, metadata)
    if hasattr(target, "write"):
        for c in chunks:
            target.write(c)
        return
    tmp = f"{os.fspath(target)}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        for c in chunks:
            f.write(c)
    os.replace(tmp, target)


# ---------------------------------------------------------------------------- reading

def _bad(msg: str) -> FileFormatError:
    return FileFormatError(msg)


def _buffer_of(source, use_mmap: bool | None = None) -> tuple[Any, str]:
    """A read-only buffer over ``source`` (path, bytes-like or binary file) and a label.

    Only ``bytes`` is used in place: any other buffer (bytearray, memoryview, numpy array) is
    copied, so the caller changing it later cannot change the model's weights. A path is
    memory-mapped if ``use_mmap`` (default: files of ``MMAP_MIN_BYTES`` or more), else read."""
    if source is None or isinstance(source, (bool, int, float, complex)):
        raise _bad(f"cannot load a model from {type(source).__name__} {source!r}: pass a "
                   "path, bytes or a binary file object")
    if isinstance(source, bytes):
        return memoryview(source), "<bytes>"
    if hasattr(source, "read"):
        label = str(getattr(source, "name", "<file>"))
        try:
            data = source.read()
        except (OSError, ValueError, TypeError) as e:
            raise _bad(f"cannot read the model from {label!r}: {e}") from None
        if isinstance(data, str):
            raise _bad(f"{label!r} is open in text mode; open model files in binary mode "
                       "('rb')")
        if isinstance(data, bytes):
            return memoryview(data), label
        source = data
    if not isinstance(source, (str, os.PathLike)):
        try:
            view = memoryview(source)
        except TypeError:
            raise _bad(f"cannot load a model from a {type(source).__name__}: pass a path, "
                       "bytes or a binary file object") from None
        return memoryview(view.tobytes()), "<bytes>"
    return _map_file(os.fspath(source), use_mmap)


def _map_file(path: str, use_mmap: bool | None) -> tuple[Any, str]:
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if os.path.isdir(path):
        raise _bad(f"{path!r} is a directory, not a tfdeploy model file (to convert a "
                   "SavedModel directory use td.convert)")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise _bad(f"{path!r} is empty: not a tfdeploy model file")
            if use_mmap or (use_mmap is None and size >= MMAP_MIN_BYTES):
                return memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)), path
            data = f.read()
    except FileNotFoundError:
        raise FileFormatError(f"no such model file: {path!r}") from None
    except (OSError, ValueError) as e:
        raise FileFormatError(f"cannot read model file {path!r}: {e}") from None
    return memoryview(data), path


def _sniff_foreign(head: bytes, label: str) -> FileFormatError:
    if head[:1] == b"\x80" and len(head) > 1 and head[1] in range(2, 6) or head[:1] in (b"(", b"c"):
        return _bad(f"{label} looks like a Python pickle, perhaps a model saved by the original "
                    "tfdeploy. tfdeploy never unpickles files (unpickling runs code); convert the "
                    "model again from TensorFlow with this version")
    if head[:2] == b"\x93N":
        return _bad(f"{label} is a numpy .npy file, not a tfdeploy model file")
    if head[:2] == b"PK":
        return _bad(f"{label} is a zip archive (a Keras .keras file?), not a tfdeploy model; "
                    "load it with Keras and td.convert it")
    if head[:4] == b"\x89HDF":
        return _bad(f"{label} is an HDF5 file (a Keras .h5?), not a tfdeploy model")
    if head[:1] == b"\x0a":
        return _bad(f"{label} looks like a protobuf (a frozen GraphDef .pb?), not a tfdeploy "
                    "model; convert it with td.convert(path, inputs=..., outputs=...)")
    return _bad(f"{label} is not a tfdeploy model file (bad magic {bytes(head[:8])!r})")


def _check_list(v, what: str) -> list:
    if not isinstance(v, list):
        raise _bad(f"{what} must be a list, got {type(v).__name__}")
    return v


def _check_str(v, what: str) -> str:
    if not isinstance(v, str):
        raise _bad(f"{what} must be a string, got {type(v).__name__}")
    return v


def _check_shape(v, what: str, allow_unknown: bool) -> list | None:
    if v is None and allow_unknown:
        return None
    _check_list(v, what)
    if len(v) > MAX_RANK:
        raise _bad(f"{what} has rank {len(v)}; tfdeploy supports ranks up to {MAX_RANK}")
    for d in v:
        if d is None and allow_unknown:
            continue
        if type(d) is not int or not 0 <= d < 1 << 62:
            raise _bad(f"{what} has an invalid dimension {d!r}")
    return v


def _load_arrays(table, buf, data_start: int) -> list[np.ndarray]:
    arrays = []
    data_len = len(buf) - data_start
    for i, e in enumerate(_check_list(table, "array table")):
        what = f"array {i}"
        if not isinstance(e, dict):
            raise _bad(f"{what}: entry must be an object")
        name = _check_str(e.get("dtype"), f"{what} dtype")
        shape = _check_shape(e.get("shape"), f"{what} shape", allow_unknown=False)
        count = 1
        for d in shape:
            count *= d
        if name == "string":
            vals = _check_list(e.get("values"), f"{what} values")
            if len(vals) != count:
                raise _bad(f"{what}: {len(vals)} strings for shape {shape}")
            try:
                arr = np.empty(count, dtype=object)
                arr[:] = [base64.b64decode(_check_str(v, f"{what} value"), validate=True)
                          for v in vals]
            except (ValueError, TypeError) as ex:
                raise _bad(f"{what}: invalid base64 string value ({ex})") from None
            arrays.append(arr.reshape(shape))
            continue
        if name not in dtypes.STORABLE:
            raise _bad(f"{what}: unsupported dtype {name!r}")
        native = dtypes.to_numpy(name)
        dt = native.newbyteorder("<")
        offset, nbytes = e.get("offset"), e.get("nbytes")
        if type(offset) is not int or type(nbytes) is not int or offset < 0 or nbytes < 0:
            raise _bad(f"{what}: invalid offset/nbytes {offset!r}/{nbytes!r}")
        if nbytes != count * dt.itemsize:
            raise _bad(f"{what}: {nbytes} bytes do not hold shape {shape} of {name}")
        if offset + nbytes > data_len:
            raise _bad(f"{what} lies beyond the end of the file (offset {offset}, {nbytes} "
                       f"bytes, data section {data_len} bytes): the file is truncated")
        arr = np.frombuffer(buf, dtype=dt, count=count, offset=data_start + offset)
        if not dt.isnative:
            arr = arr.astype(native)
        elif arr.dtype is not native:
            # numpy's own dtype object, not an equal '<f4': kernels test `x.dtype is dt` on
            # their fast paths (a Dense layer read from a file took its slow path for this)
            arr = arr.view(native)
        arrays.append(arr.reshape(shape))
    return arrays


def _decode_attr(v, arrays: list, depth: int = 0):
    if depth > MAX_NESTING:
        raise _bad("attribute nesting is too deep")
    if isinstance(v, dict):
        if "$array" in v:
            i = v["$array"]
            if type(i) is not int or not 0 <= i < len(arrays):
                raise _bad(f"attribute refers to missing array {i!r}")
            return arrays[i]
        if "$func" in v:
            attrs = v.get("attrs", {})
            if not isinstance(attrs, dict):
                raise _bad("function attribute has invalid attrs")
            return FuncAttr(_check_str(v["$func"], "function name"),
                            {k: _decode_attr(x, arrays, depth + 1) for k, x in attrs.items()})
        if "$bytes" in v:
            try:
                return base64.b64decode(_check_str(v["$bytes"], "bytes"), validate=True)
            except ValueError:
                raise _bad("invalid base64 in a bytes attribute") from None
        raise _bad(f"unknown attribute encoding with keys {sorted(v)[:5]}")
    if isinstance(v, list):
        return [_decode_attr(x, arrays, depth + 1) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise _bad(f"invalid attribute value of type {type(v).__name__}")


def _decode_metadata(v, arrays: list, depth: int = 0):
    if depth > MAX_NESTING:
        raise _bad("metadata is nested too deeply")
    if isinstance(v, dict):
        if any(k.startswith("$") for k in v):
            return _decode_attr(v, arrays)
        return {k: _decode_metadata(x, arrays, depth + 1) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode_metadata(x, arrays, depth + 1) for x in v]
    return v


def _decode_spec(d, what: str) -> TensorSpec:
    if not isinstance(d, dict):
        raise _bad(f"{what} must be an object")
    return TensorSpec(_check_str(d.get("name"), f"{what} name"),
                      _check_str(d.get("ref"), f"{what} ref"),
                      _check_str(d.get("dtype"), f"{what} dtype"),
                      _check_shape(d.get("shape"), f"{what} shape", allow_unknown=True))


def _decode_graph(d, arrays: list, what: str, depth: int = 0) -> Graph:
    if depth > MAX_NESTING:
        raise _bad("functions are nested too deeply")
    if not isinstance(d, dict):
        raise _bad(f"{what} must be an object")
    nodes = []
    for j, nd in enumerate(_check_list(d.get("nodes"), f"{what} nodes")):
        if not isinstance(nd, dict):
            raise _bad(f"{what} node {j} must be an object")
        name = _check_str(nd.get("name"), f"{what} node {j} name")
        attrs = nd.get("attrs", {})
        if not isinstance(attrs, dict):
            raise _bad(f"{what} node {name!r}: attrs must be an object")
        nodes.append(Node(name, _check_str(nd.get("op"), f"node {name!r} op"),
                          [_check_str(r, f"node {name!r} input") for r in
                           _check_list(nd.get("inputs", []), f"node {name!r} inputs")],
                          {_check_str(k, "attr name"): _decode_attr(v, arrays)
                           for k, v in attrs.items()}))
    g = Graph(nodes,
              [_decode_spec(s, f"{what} input") for s in _check_list(d.get("inputs", []), what)],
              [_decode_spec(s, f"{what} output") for s in _check_list(d.get("outputs", []), what)])
    funcs = d.get("functions", {})
    if not isinstance(funcs, dict):
        raise _bad(f"{what} functions must be an object")
    g.functions = {k: _decode_graph(f, arrays, f"function {k!r}", depth + 1)
                   for k, f in funcs.items()}
    return g


def _check_ref(r: str, what: str, by: dict) -> None:
    """``r`` is ``node`` or ``node:i`` (ASCII digits, i < MAX_OUTPUT_INDEX) naming a node of
    ``by``; single-output nodes are read at output 0 only."""
    name, sep, idx = r.rpartition(":")
    if sep and idx.isdigit():
        if not idx.isascii() or len(idx) > 6 or int(idx) >= MAX_OUTPUT_INDEX:
            raise _bad(f"{what} reads {r!r}: invalid output index {idx!r}")
        node, i = by.get(name), int(idx)
    else:
        node, i = by.get(r), 0
    if node is None:
        raise _bad(f"{what} reads {r!r}, which does not exist")
    n_out = 1 if node.op in ("Const", "Placeholder", "PlaceholderWithDefault", "Identity",
                             "StopGradient", "Snapshot", "PreventGradient") else None
    if node.op == "IdentityN":
        n_out = len(node.inputs)
    if n_out is not None and i >= n_out:
        raise _bad(f"{what} reads {r!r}, but node {node.name!r} ({node.op}) has {n_out} "
                   "output(s)")


def validate_graph(g: Graph, what: str, functions: dict[str, Graph]) -> None:
    """Every reference in ``g`` resolves: inputs to nodes, signatures to tensors, funcs exist;
    the attributes the compiler relies on have their types."""
    if len(g.nodes) > LIMITS.max_graph_nodes:
        raise _bad(f"{what} has {len(g.nodes)} nodes, over the limit "
                   f"({LIMITS.max_graph_nodes}; td.setup(max_graph_nodes=...))")
    try:
        by = g.by_name()
    except Exception as e:
        raise _bad(f"{what}: {e}") from None
    for n in g.nodes:
        for r in n.inputs:
            _check_ref(r, f"{what}: node {n.name!r} ({n.op})", by)
        for v in n.attrs.values():
            for f in (v if isinstance(v, list) else [v]):
                if isinstance(f, FuncAttr) and f.name not in functions:
                    raise _bad(f"{what}: node {n.name!r} ({n.op}) calls missing function "
                               f"{f.name!r}")
        try:
            check_attrs(n)
        except GraphError as e:
            raise _bad(f"{what}: {e}") from None
    for s in g.inputs + g.outputs:
        if parse_ref(s.ref)[0] not in by:
            raise _bad(f"{what}: signature entry {s.name!r} refers to missing tensor {s.ref!r}")
        _check_ref(s.ref, f"{what}: signature entry {s.name!r}", by)


def _read_header(source, use_mmap: bool | None = None) -> tuple[dict, Any, str, int, int]:
    """(header, buffer, label, format version, header length) of a model file, validated."""
    buf, label = _buffer_of(source, use_mmap)
    if len(buf) < _PREFIX.size:
        raise _sniff_foreign(bytes(buf[:8]), label) if bytes(buf[:8]) != MAGIC[:len(buf[:8])] \
            else _bad(f"{label} is truncated ({len(buf)} bytes)")
    magic, version, _reserved, hlen = _PREFIX.unpack_from(buf, 0)
    if magic != MAGIC:
        raise _sniff_foreign(bytes(buf[:8]), label)
    if version > FORMAT_VERSION or version < 1:
        raise _bad(f"{label} has format version {version}; this tfdeploy reads versions up to "
                   f"{FORMAT_VERSION} (upgrade tfdeploy to load it)")
    if hlen > len(buf) - _PREFIX.size:
        raise _bad(f"{label}: header length {hlen} exceeds the file size ({len(buf)} bytes): "
                   "the file is truncated or corrupted")
    if hlen > LIMITS.max_header_bytes:
        raise _bad(f"{label}: header of {hlen} bytes exceeds the largest header allowed "
                   f"({LIMITS.max_header_bytes} bytes; td.setup(max_header_bytes=...))")
    try:
        header = json.loads(bytes(buf[_PREFIX.size:_PREFIX.size + hlen]).decode("utf-8"))
    except (ValueError, RecursionError) as e:  # (bad UTF-8 or JSON, a 5,000-digit integer)
        raise _bad(f"{label}: corrupted header ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(header, dict) or header.get("format") != "tfdeploy":
        raise _bad(f"{label}: header is not a tfdeploy header")
    if header.get("format_version") != version:
        raise _bad(f"{label}: header version {header.get('format_version')!r} contradicts the "
                   f"file's version {version}")
    return header, buf, label, version, hlen


def describe(source) -> dict:
    """What the file itself says, without decoding its graphs: format version, writer, sizes."""
    header, buf, _label, version, hlen = _read_header(source)
    table = header.get("arrays", [])
    table = table if isinstance(table, list) else []
    return {"format_version": version, "writer": header.get("writer"), "file_bytes": len(buf),
            "header_bytes": hlen, "arrays": len(table),
            "array_bytes": sum(e.get("nbytes", 0) for e in table
                               if isinstance(e, dict) and type(e.get("nbytes")) is int)}


def load(source, mmap: bool | None = None) -> tuple[dict[str, Graph], dict]:
    """Read a model file (path, bytes or binary file); returns (graphs by key, metadata).
    ``mmap``: map a path rather than read it (default: for files of ``MMAP_MIN_BYTES`` or
    more)."""
    header, buf, _label, _version, hlen = _read_header(source, mmap)
    arrays = _load_arrays(header.get("arrays", []), buf, _PREFIX.size + hlen)
    graphs: dict[str, Graph] = {}
    for j, e in enumerate(_check_list(header.get("graphs"), "graphs")):
        if not isinstance(e, dict):
            raise _bad(f"graph entry {j} must be an object")
        key = _check_str(e.get("key"), f"graph {j} key")
        if key in graphs:
            raise _bad(f"two graphs have the key {key!r}")
        g = _decode_graph(e.get("graph"), arrays, f"graph {key!r}")
        validate_graph(g, f"graph {key!r}", g.functions)
        for fname, f in g.functions.items():
            validate_graph(f, f"function {fname!r}", g.functions)
        try:
            check_calls(g, LIMITS.max_function_depth)
            check_signatures(g)
        except GraphError as ex:
            raise _bad(f"graph {key!r}: {ex}") from None
        graphs[key] = g
    meta = header.get("metadata", {})
    if not isinstance(meta, dict):
        return graphs, {}
    return graphs, _decode_metadata(meta, arrays) if header.get("metadata_arrays") else meta
