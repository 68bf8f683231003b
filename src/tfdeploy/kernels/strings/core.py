"""String ops: case, strip, length, substrings, joining, splitting, n-grams, number parsing and
formatting.

String tensors are numpy object arrays of ``bytes``. numpy has no vectorised type for
variable-length bytes, so these kernels apply Python's bytes methods element by element (in list
comprehensions or numpy's object loops); anything numeric around them (lengths, splits, indices)
is vectorised. Regular expressions are in ``strings_regex.py``, hashing in ``strings_hash.py``,
Unicode decoding in ``strings_unicode.py``.
"""

from __future__ import annotations

import math
import re

import numpy as np

from tfdeploy.kernels.common import low_precision, normalize_axis, np_dtype, op
from tfdeploy.runtime.limits import check_elements

_WS = b" \t\n\v\f\r"  # absl::ascii_isspace, as TF's str_util uses


def _to_bytes(v) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, (bytearray, memoryview, np.bytes_)):
        return bytes(v)
    raise TypeError(f"expected a string tensor (bytes elements), got an element of type "
                    f"{type(v).__name__}")


def as_bytes_list(x) -> list[bytes]:
    """The elements of string tensor ``x`` (row-major) as a list of bytes."""
    lst = np.asarray(x, dtype=object).reshape(-1).tolist()
    return [v if type(v) is bytes else _to_bytes(v) for v in lst]


def strings_array(items, shape=None) -> np.ndarray:
    """An object array of ``items`` (bytes), reshaped to ``shape``."""
    items = list(items)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape if shape is not None else (len(items),))


def _map(fn, x) -> np.ndarray:
    x = np.asarray(x, dtype=object)
    return strings_array([fn(v) for v in as_bytes_list(x)], x.shape)


# -- case and whitespace -------------------------------------------------------------------------

def _utf8_case(encoding: str, which: str):
    if encoding in ("", None):
        return getattr(bytes, which)
    if encoding.lower().replace("-", "").replace("_", "") != "utf8":
        raise ValueError(f"unsupported encoding {encoding!r} (expected '' or 'utf-8')")

    def fn(b: bytes) -> bytes:  # (ICU too turns invalid UTF-8 into U+FFFD)
        return getattr(b.decode("utf-8", "replace"), which)().encode("utf-8")
    return fn


@op("StringLower")
def StringLower(input, *, encoding=""):
    """StringLower: lower case; ASCII only unless encoding is 'utf-8' (full Unicode mapping,
    Python's, which follows the same Unicode tables as TF's ICU up to version differences)."""
    return _map(_utf8_case(encoding, "lower"), input)


@op("StringUpper")
def StringUpper(input, *, encoding=""):
    """StringUpper: upper case; ASCII only unless encoding is 'utf-8'."""
    return _map(_utf8_case(encoding, "upper"), input)


@op("StringStrip")
def StringStrip(input):
    """StringStrip: strip leading and trailing ASCII whitespace."""
    return _map(lambda b: b.strip(_WS), input)


# -- length and substrings -----------------------------------------------------------------------

def _char_starts(b: bytes) -> np.ndarray:
    """Byte offsets where UTF-8 characters start (every non-continuation byte)."""
    a = np.frombuffer(b, np.uint8)
    return np.nonzero((a & 0xC0) != 0x80)[0]


@op("StringLength")
def StringLength(input, *, unit="BYTE"):
    """StringLength: length in bytes, or in UTF-8 characters (non-continuation bytes)."""
    x = np.asarray(input, dtype=object)
    items = as_bytes_list(x)
    lens = np.fromiter(map(len, items), np.int64, len(items))
    if unit == "UTF8_CHAR":
        joined = np.frombuffer(b"".join(items), np.uint8)
        starts = ((joined & 0xC0) != 0x80).astype(np.int64)
        cum = np.concatenate([[0], np.cumsum(starts)])
        ends = np.cumsum(lens)
        lens = cum[ends] - cum[ends - lens]
    elif unit != "BYTE":
        raise ValueError(f"unit must be 'BYTE' or 'UTF8_CHAR', got {unit!r}")
    return lens.astype(np.int32).reshape(x.shape)


@op("Substr")
def Substr(input, pos, length, *, unit="BYTE"):
    """Substr: ``len`` bytes (or UTF-8 characters) from ``pos`` (negative: from the end),
    broadcasting input against pos and len (which must have one shape)."""
    x = np.asarray(input, dtype=object)
    pos, ln = np.asarray(pos), np.asarray(length)
    if pos.shape != ln.shape:
        raise ValueError(f"pos and len should have the same shape, got {list(pos.shape)} vs. "
                         f"{list(ln.shape)}")
    x, pos, ln = np.broadcast_arrays(x, pos, ln)
    utf8 = unit == "UTF8_CHAR"
    if not utf8 and unit != "BYTE":
        raise ValueError(f"unit must be 'BYTE' or 'UTF8_CHAR', got {unit!r}")
    out = []
    for s, p, n in zip(as_bytes_list(x), pos.reshape(-1).tolist(), ln.reshape(-1).tolist()):
        if utf8:
            starts = _char_starts(s).tolist() + [len(s)]
            size = len(starts) - 1
        else:
            size = len(s)
        if p < -size or p > size:
            raise ValueError(f"pos {p} out of range for string {s!r}")
        p = p + size if p < 0 else p
        if n < 0:  # TF: the rest of the string in bytes, nothing in characters
            n = 0 if utf8 else size
        end = min(size, p + n)
        out.append(s[starts[p]:starts[end]] if utf8 else s[p:end])
    return strings_array(out, x.shape)


# -- joining -------------------------------------------------------------------------------------

@op("StringJoin")
def StringJoin(*inputs, separator=""):
    """StringJoin: element-wise concatenation of the inputs with ``separator`` (scalars are
    broadcast; the other inputs must have one shape)."""
    if not inputs:
        raise ValueError("StringJoin needs at least one input")
    arrays = [np.asarray(x, dtype=object) for x in inputs]
    shapes = {a.shape for a in arrays if a.ndim}
    if len(shapes) > 1:
        raise ValueError(f"StringJoin inputs must be scalars or of one shape, got "
                         f"{sorted(shapes)}")
    shape = shapes.pop() if shapes else ()
    sep = _to_bytes(separator)
    cols = [as_bytes_list(np.broadcast_to(a, shape)) for a in arrays]
    return strings_array([sep.join(parts) for parts in zip(*cols)], shape)


@op("ReduceJoin")
def ReduceJoin(inputs, reduction_indices, *, keep_dims=False, separator=""):
    """ReduceJoin: join the strings along the given axes with ``separator`` (the first listed
    axis varying fastest); no axes leaves the input as is."""
    x = np.asarray(inputs, dtype=object)
    given = np.asarray(reduction_indices).reshape(-1).tolist()
    axes = list(normalize_axis(given, x.ndim)) if given else []
    if len(set(axes)) != len(axes):
        raise ValueError(f"duplicate reduction dimension in {given}")
    if not axes:
        return x.copy()
    keep = [d for d in range(x.ndim) if d not in axes]
    kept_shape = tuple(x.shape[d] for d in keep)
    # TF joins with the first listed axis varying fastest
    moved = np.transpose(x, keep + axes[::-1])
    count = int(np.prod([x.shape[d] for d in axes]))
    sep = _to_bytes(separator)
    n_out = int(np.prod(kept_shape))
    check_elements(kept_shape, 8, "the joined strings")
    if count == 0 or n_out == 0:  # (no list of n_out empty strings)
        out = np.full(kept_shape, b"", dtype=object)
    else:
        flat = moved.reshape(n_out, count)
        out = strings_array([sep.join(as_bytes_list(r)) for r in flat], kept_shape)
    if keep_dims:
        out = out.reshape(tuple(1 if d in axes else x.shape[d] for d in range(x.ndim)))
    return out


@op("UnsortedSegmentJoin")
def UnsortedSegmentJoin(inputs, segment_ids, num_segments, *, separator=""):
    """UnsortedSegmentJoin: join the input rows of each segment id, in input order."""
    x = np.asarray(inputs, dtype=object)
    ids = np.asarray(segment_ids)
    n = int(num_segments)
    if x.shape[:ids.ndim] != ids.shape:
        raise ValueError(f"segment_ids shape {list(ids.shape)} is not a prefix of the input "
                         f"shape {list(x.shape)}")
    if ids.size and (ids.max() >= n or ids.min() < 0):
        raise ValueError(f"segment ids must be in [0, {n}), got {ids.min()}..{ids.max()}")
    inner = x.shape[ids.ndim:]
    if n < 0:
        raise ValueError(f"num_segments must be non-negative, got {n}")
    # (a hostile num_segments: the output checked first, and the joins only of the segments
    # present, not a Python loop over every segment)
    check_elements((n,) + inner, 8, "the joined strings")
    rows = x.reshape((ids.size, -1)) if x.size else np.empty((ids.size, math.prod(inner)),
                                                             object)
    flat_ids = ids.reshape(-1)
    sep = _to_bytes(separator)
    order = np.argsort(flat_ids, kind="stable")
    present, starts = np.unique(flat_ids[order], return_index=True)
    ends = np.append(starts[1:], flat_ids.size)
    out = np.full((n, rows.shape[1]), b"", dtype=object)
    for s, b, e in zip(present.tolist(), starts.tolist(), ends.tolist()):
        members = rows[order[b:e]]
        for j in range(rows.shape[1]):
            out[s, j] = sep.join(as_bytes_list(members[:, j]))
    return out.reshape((n,) + inner)


# -- splitting -----------------------------------------------------------------------------------

def _split_ws(s: bytes, maxsplit: int) -> list[bytes]:
    """TF's whitespace split: runs of whitespace separate; after ``maxsplit`` tokens the rest
    (leading whitespace removed, possibly empty) is one last token."""
    if maxsplit == 0:
        return [s]
    parts = s.split(None, maxsplit if maxsplit > 0 else -1)
    if maxsplit > 0 and len(parts) == maxsplit:
        parts.append(b"")
    return parts


#: what one token of a split costs before its sparse result exists: a bytes object (33 bytes
#: and its text), the list's reference, then its value and two indices
_TOKEN_BYTES = 96


def _check_tokens(items: list[bytes], d: bytes | None) -> None:
    """At most how many tokens splitting ``items`` on ``d`` makes (on any byte of ``d`` when
    it is a set of bytes: ``len(d) > 1`` for StringSplit, passed as None; on every byte when
    ``d`` is empty), checked before Python makes them: a few megabytes of "a a a ..." make
    millions of objects, ~60x their text (7 MB took 451 MB)."""
    if d is None or not d:  # (a set of bytes, whitespace, or every byte: one token a byte)
        n = sum(map(len, items)) + len(items)
    else:
        n = sum(s.count(d) for s in items) + len(items)
    check_elements((n,), _TOKEN_BYTES, "the tokens")


def _sparse_split(rows: list[list[bytes]]):
    lens = np.fromiter(map(len, rows), np.int64, len(rows))
    n = int(lens.sum())
    ridx = np.repeat(np.arange(len(rows), dtype=np.int64), lens)
    starts = np.repeat(np.cumsum(lens) - lens, lens)
    cidx = np.arange(n, dtype=np.int64) - starts
    indices = np.stack([ridx, cidx], axis=1) if n else np.zeros((0, 2), np.int64)
    values = strings_array([t for r in rows for t in r])
    shape = np.array([len(rows), int(lens.max()) if len(rows) else 0], np.int64)
    return indices, values, shape


@op("StringSplitV2")
def StringSplitV2(input, sep, *, maxsplit=-1):
    """StringSplitV2: split each string on ``sep`` (Python's str.split rules; an empty sep
    splits on runs of whitespace), at most ``maxsplit`` times; a sparse result."""
    x = np.asarray(input, dtype=object)
    if x.ndim != 1:
        raise ValueError(f"input must be a vector, got shape {list(x.shape)}")
    d = np.asarray(sep, dtype=object)
    if d.ndim != 0:
        raise ValueError(f"sep must be a scalar, got shape {list(d.shape)}")
    d = _to_bytes(d.item())
    maxsplit = int(maxsplit)
    items = as_bytes_list(x)
    _check_tokens(items, d)
    if d:
        rows = [s.split(d, maxsplit if maxsplit >= 0 else -1) for s in items]
    else:
        rows = [_split_ws(s, maxsplit) for s in items]
    return _sparse_split(rows)


@op("StringSplit")
def StringSplit(input, delimiter, *, skip_empty=True):
    """StringSplit: split each string on any byte of ``delimiter`` (empty: into bytes);
    ``skip_empty`` drops empty tokens; a sparse result."""
    x = np.asarray(input, dtype=object)
    if x.ndim != 1:
        raise ValueError(f"input must be a vector, got shape {list(x.shape)}")
    d = np.asarray(delimiter, dtype=object)
    if d.ndim != 0:
        raise ValueError(f"delimiter must be a scalar, got shape {list(d.shape)}")
    d = _to_bytes(d.item())
    items = as_bytes_list(x)
    _check_tokens(items, d if len(d) == 1 else None)
    if not d:
        rows = [[s[i:i + 1] for i in range(len(s))] for s in items]
    else:
        rx = re.compile(b"[" + re.escape(d) + b"]") if len(d) > 1 else None
        rows = [(rx.split(s) if rx is not None else s.split(d)) if s else [] for s in items]
        if skip_empty:
            rows = [[t for t in r if t] for r in rows]
    return _sparse_split(rows)


@op("StringNGrams")
def StringNGrams(data, data_splits, *, separator, ngram_widths, left_pad, right_pad,
                 pad_width, preserve_short_sequences):
    """StringNGrams: the n-grams of each row of a ragged string tensor, padded, joined with
    ``separator``; returns (ngrams, ngrams_splits)."""
    values = np.asarray(data, dtype=object).reshape(-1)
    splits = np.asarray(data_splits)
    sdt = splits.dtype
    splits = splits.astype(np.int64)
    for w in ngram_widths:
        if w <= 0:
            raise ValueError("ngram_widths must contain positive values")
    nd = values.size
    if splits.size:
        if splits[0] != 0 or np.any(np.diff(splits) < 0) or splits[-1] != nd:
            raise ValueError(f"invalid data_splits {splits.tolist()} for {nd} values")
    nrows = max(splits.size - 1, 0)
    if nd == 0 or splits.size == 0:
        return values[:0].copy(), np.zeros(splits.shape, sdt)
    sep, lpad, rpad = _to_bytes(separator), _to_bytes(left_pad), _to_bytes(right_pad)
    lens = np.diff(splits)
    # token pool: the data, then the two pads (indices nd and nd + 1)
    pool = np.empty(nd + 2, object)
    pool[:nd] = as_bytes_list(values)
    pool[nd], pool[nd + 1] = lpad, rpad
    blocks = []  # (row index, order within row, strings) per width
    for k, w in enumerate(list(ngram_widths) + [None]):
        if w is None:  # preserve_short_sequences: one n-gram of the whole padded row
            if not preserve_short_sequences:
                break
            counts = sum(np.maximum(0, lens + 2 * _pad(pad_width, v) - v + 1)
                         for v in ngram_widths) if ngram_widths else np.zeros_like(lens)
            short = np.nonzero((lens > 0) & (counts == 0))[0]
            if short.size and pad_width < 0:
                raise ValueError("Pad width should be >= 0 when preserve_short_sequences is "
                                 "True and ngram_widths are not provided")
            if short.size:
                check_elements((short.size, 2 * pad_width + int(lens.max())), 8, "the n-grams")
            for r in short.tolist():
                row = [lpad] * pad_width + pool[splits[r]:splits[r + 1]].tolist() + \
                    [rpad] * pad_width
                blocks.append((np.array([r]), k, strings_array([sep.join(row)])))
            break
        p = _pad(pad_width, w)
        counts = np.maximum(0, lens + 2 * p - w + 1)
        total = int(counts.sum())
        if total == 0:  # (a huge width makes no n-gram: never loop over its positions)
            continue
        check_elements((total, w), 8, "the n-grams")
        rows = np.repeat(np.arange(nrows), counts)
        i = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        acc = None
        for t in range(w):  # one pass per position in the n-gram
            q = i + t - p  # position in the row's tokens (negative: left pad)
            tok = np.where(q < 0, nd, np.where(q >= lens[rows], nd + 1, splits[rows] + q))
            piece = pool[tok]
            acc = piece if acc is None else acc + sep + piece
        blocks.append((rows, k, acc if acc is not None else strings_array([])))
    if blocks:
        rows = np.concatenate([b[0] for b in blocks])
        ks = np.concatenate([np.full(b[0].shape, b[1]) for b in blocks])
        vals = np.concatenate([b[2] for b in blocks])
        order = np.lexsort((ks, rows))  # stable: rows, then widths in order
        out = vals[order]
        per_row = np.bincount(rows, minlength=nrows)
    else:
        out, per_row = strings_array([]), np.zeros(nrows, np.int64)
    out_splits = np.concatenate([[0], np.cumsum(per_row)]).astype(sdt)
    return out, out_splits


def _pad(pad_width: int, w: int) -> int:
    return min(pad_width if pad_width >= 0 else w - 1, w - 1)


# -- numbers <-> strings -------------------------------------------------------------------------

_INT_RE = re.compile(rb"[ \t\n\v\f\r]*[+-]?[0-9]+[ \t\n\v\f\r]*\Z")
# (unambiguous, so a long non-number fails in linear time: "[0-9]+\.?[0-9]*" was quadratic)
_FLOAT_RE = re.compile(rb"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|"
                       rb"infinity|nan)\Z", re.IGNORECASE)
_HEX_RE = re.compile(rb"[+-]?0x(?:[0-9a-f]+(?:\.[0-9a-f]*)?|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?\Z",
                     re.IGNORECASE)


def _parse_float(s: bytes) -> float:
    t = s.strip(_WS)
    if _FLOAT_RE.match(t):
        return float(t)
    if _HEX_RE.match(t):
        return float.fromhex(t.decode("ascii"))
    raise ValueError(f"StringToNumberOp could not correctly convert string: {s!r}")


@op("StringToNumber")
def StringToNumber(string_tensor, *, out_type="float32"):
    """StringToNumber: parse decimal numbers (floats also inf/nan and hex; surrounding
    whitespace allowed); an unparsable string or an integer out of range raises.

    float32 values are parsed as float64 then rounded, which differs from TF's direct parse
    only for decimal strings within half an ulp of a float32 rounding boundary.
    """
    x = np.asarray(string_tensor, dtype=object)
    dt = np_dtype(out_type)
    items = as_bytes_list(x)
    if dt.kind == "f":
        with np.errstate(over="ignore"):
            return np.array([_parse_float(s) for s in items], np.float64).astype(dt).reshape(
                x.shape)
    if dt.kind != "i":
        raise TypeError(f"StringToNumber: unsupported out_type {out_type}")
    info = np.iinfo(dt)
    vals = []
    for s in items:
        if not _INT_RE.match(s):
            raise ValueError(f"StringToNumberOp could not correctly convert string: {s!r}")
        v = int(s)
        if not info.min <= v <= info.max:
            raise ValueError(f"StringToNumberOp could not correctly convert string: {s!r}")
        vals.append(v)
    return np.array(vals, dt).reshape(x.shape)


def _printf_float(fmt: str, v: float) -> str:
    if v - v == 0:  # finite
        return fmt % v
    fmt = fmt.replace("%0", "%", 1)  # C pads inf and nan with spaces, never zeros
    if v != v:  # glibc prints the sign of a NaN: format an infinity of that sign, then rename
        return (fmt % (-np.inf if np.signbit(v) else np.inf)).replace("inf", "nan")
    return fmt % v


@op("AsString")
def AsString(input, *, precision=-1, scientific=False, shortest=False, width=-1, fill=""):
    """AsString: numbers and bools formatted as strings, with printf's rules (%d, %f, %e, %g,
    width, fill flag and precision), as TF does."""
    x = np.asarray(input)
    if x.dtype == object:
        return x.copy()
    kind = "f" if low_precision(x.dtype) else x.dtype.kind  # (bfloat16: its float value)
    fill = fill if isinstance(fill, str) else _to_bytes(fill).decode()
    if len(fill) > 1:
        raise ValueError("Fill string must be one or fewer characters")
    if scientific and shortest:
        raise ValueError("Cannot select both scientific and shortest notation")
    if kind not in "fc" and (scientific or shortest or precision > -1):
        raise ValueError(f"scientific, shortest and precision are not supported for {x.dtype}")
    if kind == "b":
        return strings_array([b"true" if v else b"false" for v in x.reshape(-1).tolist()],
                             x.shape)
    # (a hostile width or precision: every string at least that long)
    check_elements((x.size, max(width, precision, 1)), 1, "the formatted strings")
    fmt = "%"
    if width > -1:
        fmt += f"{fill}{width}"
    if precision > -1:
        fmt += f".{precision}"
    if kind in "iu":
        fmt += "d"
        out = [(fmt % v).encode() for v in x.reshape(-1).tolist()]
    elif kind in "fc":
        fmt += "g" if shortest else "e" if scientific else "f"
        vals = x.astype(np.complex128 if kind == "c" else np.float64).reshape(-1).tolist()
        if kind == "c":
            out = [f"({_printf_float(fmt, v.real)},{_printf_float(fmt, v.imag)})".encode()
                   for v in vals]
        else:
            out = [_printf_float(fmt, v).encode() for v in vals]
    else:
        raise TypeError(f"AsString: cannot format {x.dtype}")
    return strings_array(out, x.shape)
