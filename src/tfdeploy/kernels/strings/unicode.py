"""Unicode ops: UnicodeDecode, UnicodeDecodeWithOffsets, UnicodeEncode, UnicodeTranscode.

TF decodes with ICU converters; here Python's codecs do the work. Both follow the Unicode
recommendation of one replacement per maximal invalid subsequence, so ``errors="replace"``
yields the same code points. Encodings: UTF-8, UTF-16(-BE/-LE), UTF-32(-BE/-LE), US-ASCII,
ISO-8859-1, and otherwise any name Python's codecs know (ICU may differ for those). "UTF-16" and
"UTF-32" follow TF's stateful converter (see ``_decode_all``). With
``replace_control_characters``, C0 controls (U+0000-U+001F) are replaced (dropped when
errors="ignore").
"""

from __future__ import annotations

import codecs

import numpy as np

from tfdeploy.kernels.common import np_dtype, op
from tfdeploy.kernels.strings.core import as_bytes_list, strings_array

# decoding errors become one lone surrogate per maximal invalid subsequence, carrying its length
# in bytes (no valid input decodes to a lone surrogate, so the marker is unambiguous)
_MARK = 0xD800


def _mark_errors(exc):
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return chr(_MARK + min(exc.end - exc.start, 0x3FF)), exc.end


codecs.register_error("tfdeploy.unicode_mark", _mark_errors)

_ALIASES = {"utf8": "utf-8", "utf16be": "utf-16-be", "utf16le": "utf-16-le",
            "utf32be": "utf-32-be", "utf32le": "utf-32-le", "usascii": "ascii",
            "ascii": "ascii", "iso88591": "latin-1", "latin1": "latin-1",
            "utf16": "utf-16", "utf32": "utf-32"}
_UNIT = {"utf-8": None, "utf-16-be": 2, "utf-16-le": 2, "utf-32-be": 4, "utf-32-le": 4,
         "ascii": 1, "latin-1": 1}


def _codec(name: str) -> str:
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    if key in _ALIASES:
        return _ALIASES[key]
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise ValueError(f"unsupported encoding {name!r}") from None


def _decode_all(items: list[bytes], codec: str) -> tuple[list[str], list[int]]:
    """(texts with error markers, bytes of byte-order mark skipped per string).

    TF's ICU converter for "UTF-16"/"UTF-32" keeps its state across the strings of a tensor: a
    byte-order mark is honoured only at the start of the first string, whose endianness
    (big-endian without a mark) then holds for all; later marks decode as U+FEFF / U+FFFE.
    """
    boms = [0] * len(items)
    if codec in ("utf-16", "utf-32") and items:
        w = 2 if codec == "utf-16" else 4
        le, be = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) if w == 2 else \
            (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
        head = items[0][:w]
        codec = f"{codec}-le" if head == le else f"{codec}-be"
        if head in (le, be):
            boms[0] = w
            items = [items[0][w:]] + items[1:]
    return [b.decode(codec, "tfdeploy.unicode_mark") for b in items], boms


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), "<u4").astype(np.int64)


def _char_bytes(cps: np.ndarray, codec: str) -> np.ndarray:
    """Encoded length in bytes of each code point (valid ones) in ``codec``."""
    unit = _UNIT.get({"utf-16": "utf-16-be", "utf-32": "utf-32-be"}.get(codec, codec),
                     "other")
    if unit is None:  # UTF-8
        return 1 + (cps >= 0x80) + (cps >= 0x800) + (cps >= 0x10000)
    if unit == 2:
        return 2 + 2 * (cps >= 0x10000)
    if unit == "other":
        return np.array([len(chr(c).encode(codec)) for c in cps.tolist()], np.int64)
    return np.full(cps.shape, unit, np.int64)


def _decode(input, input_encoding: str, errors: str, replacement_char: int,
            replace_control_characters: bool, offsets: bool = False):
    """(code points int64, per-string counts, byte offsets or None) of a string tensor."""
    codec = _codec(input_encoding)
    items = as_bytes_list(input)
    texts, bom_list = _decode_all(items, codec)
    counts = np.fromiter(map(len, texts), np.int64, len(texts))
    cps = _code_points("".join(texts))
    bad = (cps >= _MARK) & (cps < 0xDC00)
    starts = None
    if offsets:
        nbytes = np.where(bad, cps - _MARK, _char_bytes(np.where(bad, 0, cps), codec))
        row = np.repeat(np.arange(len(texts)), counts)
        first = (np.cumsum(counts) - counts)[counts > 0]
        boms = np.array(bom_list, np.int64)
        nbytes[first] += boms[counts > 0]  # a byte-order mark belongs to the first character
        total = np.bincount(row, weights=nbytes, minlength=len(texts)).astype(np.int64)
        starts = (np.cumsum(nbytes) - nbytes) - (np.cumsum(total) - total)[row]
    ctrl = (cps <= 0x1F) if replace_control_characters else None
    if ctrl is not None and errors == "ignore":  # dropped as errors are, else replaced
        bad |= ctrl
        ctrl = None
    if bad.any():
        if errors == "strict":
            raise ValueError("Invalid formatting on input string")
        if errors == "ignore":
            keep = ~bad
            row = np.repeat(np.arange(len(texts)), counts)
            counts = np.bincount(row[keep], minlength=len(texts)).astype(np.int64)
            cps = cps[keep]
            starts = starts[keep] if starts is not None else None
            bad = bad[keep]
        elif errors == "replace":
            cps = np.where(bad, replacement_char, cps)
        else:
            raise ValueError(f"errors must be 'strict', 'replace' or 'ignore', got {errors!r}")
    if ctrl is not None:
        cps = np.where(ctrl, replacement_char, cps)
    return cps, counts, starts


def _splits(counts: np.ndarray, dtype) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(dtype)


@op("UnicodeDecode")
def UnicodeDecode(input, *, input_encoding, errors="replace", replacement_char=65533,
                  replace_control_characters=False, Tsplits="int64"):
    """UnicodeDecode: the code points of each string (flattened) as (row_splits,
    char_values)."""
    cps, counts, _ = _decode(input, input_encoding, errors, replacement_char,
                             replace_control_characters)
    return _splits(counts, np_dtype(Tsplits)), cps.astype(np.int32)


@op("UnicodeDecodeWithOffsets")
def UnicodeDecodeWithOffsets(input, *, input_encoding, errors="replace",
                             replacement_char=65533, replace_control_characters=False,
                             Tsplits="int64"):
    """UnicodeDecodeWithOffsets: UnicodeDecode plus the byte offset where each character
    starts in its string."""
    cps, counts, starts = _decode(input, input_encoding, errors, replacement_char,
                                  replace_control_characters, offsets=True)
    return _splits(counts, np_dtype(Tsplits)), cps.astype(np.int32), starts.astype(np.int64)


_OUTPUT = {"UTF-8": "utf-8", "UTF-16-BE": "utf-16-be", "UTF-32-BE": "utf-32-be"}


def _encode(cps: np.ndarray, counts: np.ndarray, output_encoding: str, errors: str,
            replacement_char: int) -> list[bytes]:
    codec = _OUTPUT.get(output_encoding)
    if codec is None:
        raise ValueError(f"output_encoding must be one of {sorted(_OUTPUT)}, got "
                         f"{output_encoding!r}")
    cps = np.asarray(cps, np.int64)
    bad = (cps < 0) | (cps > 0x10FFFF) | ((cps >= 0xD800) & (cps <= 0xDFFF))
    if bad.any():
        if errors == "strict":
            raise ValueError("Code point is out of range for Unicode, or is a surrogate")
        if errors == "ignore":
            row = np.repeat(np.arange(counts.size), counts)
            counts = np.bincount(row[~bad], minlength=counts.size).astype(np.int64)
            cps = cps[~bad]
        elif errors == "replace":
            cps = np.where(bad, replacement_char, cps)
        else:
            raise ValueError(f"errors must be 'strict', 'replace' or 'ignore', got {errors!r}")
    text = cps.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")
    ends = np.cumsum(counts).tolist()
    begins = [0] + ends[:-1]
    return [text[a:b].encode(codec, "surrogatepass") for a, b in zip(begins, ends)]


@op("UnicodeEncode")
def UnicodeEncode(input_values, input_splits, *, output_encoding, errors="replace",
                  replacement_char=65533):
    """UnicodeEncode: rows of code points (values and row splits) encoded as strings."""
    splits = np.asarray(input_splits).astype(np.int64)
    vals = np.asarray(input_values)
    if splits.ndim != 1 or splits.size < 1 or splits[0] != 0 or splits[-1] != vals.size or \
            np.any(np.diff(splits) < 0):
        raise ValueError(f"invalid input_splits {splits.tolist()} for {vals.size} values")
    out = _encode(vals.reshape(-1), np.diff(splits), output_encoding, errors,
                  replacement_char)
    return strings_array(out)


@op("UnicodeTranscode")
def UnicodeTranscode(input, *, input_encoding, output_encoding, errors="replace",
                     replacement_char=65533, replace_control_characters=False):
    """UnicodeTranscode: re-encode each string from ``input_encoding`` to
    ``output_encoding``."""
    x = np.asarray(input, dtype=object)
    cps, counts, _ = _decode(x, input_encoding, errors, replacement_char,
                             replace_control_characters)
    return strings_array(_encode(cps, counts, output_encoding, "replace", replacement_char),
                         x.shape)
