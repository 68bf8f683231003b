"""A small parser for protobuf's text format, the subset TF Serving's config files use.

``parse(text)`` returns a message as ``{field: [value, ...]}`` (every field repeated, in file
order); a value is a str, int, float, bool, an enum identifier (``Identifier``) or a nested
message. Schemas are checked by the caller (config.py), which knows the fields.
"""

from __future__ import annotations

import re

__all__ = ["Identifier", "TextFormatError", "parse"]


class TextFormatError(ValueError):
    """A text-format file does not parse; the message names the line."""


class Identifier(str):
    """An unquoted word in value position: an enum value, or true/false."""


_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n]+|\#[^\n]*)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fF]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[{}<>:,;\[\]])
""", re.VERBOSE)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a",
            "b": "\b", "f": "\f", "v": "\v", "?": "?"}


def _unescape(body: str, line: int) -> str:
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(chr(int(m.group(0), 8)))
            i += 1 + len(m.group(0))
        elif e == "x":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            if not m:
                raise TextFormatError(f"line {line}: bad \\x escape in a string")
            out.append(chr(int(m.group(0), 16)))
            i += 2 + len(m.group(0))
        else:
            raise TextFormatError(f"line {line}: unknown escape \\{e} in a string")
    return "".join(out)


def _tokens(text: str) -> list[tuple[str, object, int]]:
    """(kind, value, line) for every token; adjacent strings are concatenated as in protobuf."""
    out: list[tuple[str, object, int]] = []
    pos, line = 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise TextFormatError(f"line {line}: unexpected character {text[pos]!r}")
        kind, s = m.lastgroup, m.group(0)
        if kind == "str":
            value = _unescape(s[1:-1], line)
            if out and out[-1][0] == "str":
                out[-1] = ("str", out[-1][1] + value, out[-1][2])
            else:
                out.append(("str", value, line))
        elif kind == "num":
            out.append(("num", _number(s, line), line))
        elif kind != "ws":
            out.append((kind, s, line))
        line += s.count("\n")
        pos = m.end()
    return out


def _number(s: str, line: int) -> int | float:
    t = s.rstrip("fF") if not s.lower().startswith(("0x", "-0x", "+0x")) else s
    try:
        if re.fullmatch(r"[-+]?0[xX][0-9a-fA-F]+", t):
            return int(t, 16)
        if re.fullmatch(r"[-+]?\d+", t):
            return int(t)
        return float(t)
    except ValueError:
        raise TextFormatError(f"line {line}: bad number {s!r}") from None


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokens(text)
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("eof", None, self._last_line())

    def _last_line(self) -> int:
        return self.toks[-1][2] if self.toks else 1

    def take(self):
        t = self.peek()
        self.i += 1
        return t

    def expect(self, punct: str):
        kind, v, line = self.take()
        if kind != "punct" or v != punct:
            shown = "the end of the file" if kind == "eof" else repr(v)
            raise TextFormatError(f"line {line}: expected {punct!r}, got {shown}")

    def message(self, close: str | None) -> dict[str, list]:
        fields: dict[str, list] = {}
        while True:
            kind, v, line = self.peek()
            if kind == "eof":
                if close is not None:
                    raise TextFormatError(f"line {line}: missing {close!r} at the end of the "
                                          "file")
                return fields
            if kind == "punct" and v == close:
                self.take()
                return fields
            if kind != "ident":
                raise TextFormatError(f"line {line}: expected a field name, got {v!r}")
            self.take()
            fields.setdefault(str(v), []).extend(self.field_value())
            kind, v, _ = self.peek()
            if kind == "punct" and v in ",;":
                self.take()

    def field_value(self) -> list:
        kind, v, line = self.peek()
        colon = kind == "punct" and v == ":"
        if colon:
            self.take()
            kind, v, line = self.peek()
        if kind == "punct" and v in "{<":
            self.take()
            return [self.message("}" if v == "{" else ">")]
        if not colon:
            raise TextFormatError(f"line {line}: expected ':' or '{{' after a field name")
        if kind == "punct" and v == "[":
            self.take()
            out = []
            while not (self.peek()[0] == "punct" and self.peek()[1] == "]"):
                out.append(self.scalar())
                if self.peek()[0] == "punct" and self.peek()[1] == ",":
                    self.take()
            self.take()
            return out
        return [self.scalar()]

    def scalar(self):
        kind, v, line = self.take()
        if kind in ("str", "num"):
            return v
        if kind == "ident":
            if v in ("true", "True", "t"):
                return True
            if v in ("false", "False", "f"):
                return False
            if v in ("inf", "infinity", "nan"):
                return float(v)
            return Identifier(v)
        shown = "the end of the file" if kind == "eof" else repr(v)
        raise TextFormatError(f"line {line}: expected a value, got {shown}")


def parse(text: str) -> dict[str, list]:
    """Parse a text-format message; raises :class:`TextFormatError` naming the line."""
    return _Parser(text).message(None)
