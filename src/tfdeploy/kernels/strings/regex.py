"""Regular expressions: StaticRegexReplace, RegexReplace, StaticRegexFullMatch, RegexFullMatch.

TF uses RE2, whose matching time is linear in the input. With the ``google-re2`` package
installed (``pip install 'tfdeploy[re2]'``, in the ``test`` extra too) these kernels use RE2
itself, on the UTF-8 bytes, exactly as TF does. Without it they fall back on Python's ``re``,
which backtracks: a hostile pattern such as ``(a+)+$`` would take exponential time, so the
fallback refuses (a clear error) patterns with a repetition nested in a repetition, or more
than ``FALLBACK_MAX_REPEATS`` unbounded repetitions, and strings longer than
``FALLBACK_MAX_TEXT`` bytes (docs/security.md). The fallback translates the RE2 pattern to
Python's ``re`` (once per pattern, cached) and matches on the UTF-8 decoded text, keeping RE2's
meaning where the two differ:

- ``\\d \\w \\s \\b`` are ASCII-only in RE2 (``\\s`` is ``[\\t\\n\\f\\r ]``, without ``\\v``);
- ``$`` without the ``m`` flag matches only at the very end (``\\Z``), never before a final
  newline; ``\\z`` is ``\\Z``;
- ``[[:alpha:]]``-style POSIX classes, ``\\Q...\\E``, ``\\x{...}``, ``(?<name>...)`` and flag
  groups in mid-pattern (``a(?i)b``) are rewritten into Python's syntax;
- a global replace never replaces an empty match right after the previous match (RE2's rule;
  Python's ``re.sub`` does), and rewrites use RE2's syntax (``\\0``-``\\9``, ``\\\\``).

Not supported by the fallback (a clear error): ``\\C``, ``(?U)``, negated POSIX classes,
and Unicode classes other than ``\\pL``/``\\p{L}`` and ``\\p{Nd}`` (and their ``\\P``
negations) outside brackets. Its known deviations: ``\\D \\W \\S`` *inside* brackets use
Python's Unicode meaning; case-insensitive matching uses Python's case folding; bytes that are
not valid UTF-8 count as one character each (``.`` and negated classes match them, where RE2
never matches them).
"""

from __future__ import annotations

import functools
import re

import numpy as np

try:  # RE2 itself when installed (linear time); else the guarded fallback on Python's re
    import re2 as _re2
except ImportError:  # pragma: no cover - depends on the environment
    _re2 = None

from tfdeploy.kernels.common import op
from tfdeploy.kernels.strings.core import as_bytes_list, strings_array
from tfdeploy.runtime.limits import check_elements

_POSIX = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
    "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z",
    "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
}
_CLASS_OUT = {"d": "[0-9]", "D": "[^0-9]", "w": "[0-9A-Za-z_]", "W": "[^0-9A-Za-z_]",
              "s": "[\\t\\n\\f\\r ]", "S": "[^\\t\\n\\f\\r ]", "b": "(?a:\\b)", "B": "(?a:\\B)",
              "z": "\\Z"}
_CLASS_IN = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r "}
_UNICODE = {"L": "[^\\W\\d_]", "Nd": "\\d"}
_UNICODE_NEG = {"L": "[\\W\\d_]", "Nd": "\\D"}


def _unsupported(what: str, pattern: str):
    return ValueError(f"regular expression {pattern!r}: {what} is not supported by tfdeploy's "
                      "RE2 translation")


def _hex_escape(pattern: str, i: int) -> tuple[str, int]:
    """``\\x{...}`` or ``\\xhh`` at ``pattern[i] == 'x'``: (escaped char, next index)."""
    if pattern.startswith("{", i + 1):
        end = pattern.index("}", i + 2)
        return re.escape(chr(int(pattern[i + 2:end], 16))), end + 1
    return re.escape(chr(int(pattern[i + 1:i + 3], 16))), i + 3


def _unicode_class(pattern: str, i: int) -> tuple[str, int]:
    """``\\pX`` / ``\\p{X}`` / ``\\P...`` at ``pattern[i]`` in 'pP': (translation, next)."""
    neg = pattern[i] == "P"
    if pattern.startswith("{", i + 1):
        end = pattern.index("}", i + 2)
        name, nxt = pattern[i + 2:end], end + 1
    else:
        name, nxt = pattern[i + 1:i + 2], i + 2
    if name.startswith("^"):
        neg, name = not neg, name[1:]
    table = _UNICODE_NEG if neg else _UNICODE
    if name not in table:
        raise _unsupported(f"the Unicode class \\p{{{name}}}", pattern)
    return table[name], nxt


@functools.lru_cache(maxsize=256)
def translate(pattern: str) -> str:
    """An RE2 pattern in Python ``re`` syntax (see the module docstring)."""
    multiline = re.search(r"\(\?[a-zA-Z]*m[a-zA-Z]*[:)]", pattern) is not None
    out: list[str] = []
    # per open group: the scoped flag groups "(?i:" opened by mid-pattern flags "(?i)", which
    # RE2 applies to the end of the group (through "|") and Python needs closed
    scoped: list[list[str]] = [[]]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i = _translate_escape(pattern, i, out)
        elif c == "[":
            i = _translate_class(pattern, i, out)
        elif c == "$":
            out.append("$" if multiline else "\\Z")
            i += 1
        elif c == "(":
            if pattern.startswith("(?", i):
                m = re.match(r"\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])", pattern[i:])
                if m and "U" in m.group(0):
                    raise _unsupported("the U (ungreedy) flag", pattern)
                if m and m.group(3) == ")":
                    if not out:  # at the very start: global flags, in Python too
                        out.append(m.group(0))
                    else:
                        opener = m.group(0)[:-1] + ":"
                        out.append(opener)
                        scoped[-1].append(opener)
                    i += len(m.group(0))
                    continue
                named = re.match(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>", pattern[i:])
                if named:
                    out.append(f"(?P<{named.group(1)}>")
                    scoped.append([])
                    i += len(named.group(0))
                    continue
            out.append("(")
            scoped.append([])
            i += 1
        elif c == ")":
            out.append(")" * len(scoped.pop()) + ")")
            if not scoped:
                raise ValueError(f"regular expression {pattern!r}: unbalanced ')'")
            i += 1
        elif c == "|" and scoped[-1]:
            out.append(")" * len(scoped[-1]) + "|" + "".join(scoped[-1]))
            i += 1
        elif c == "{" and re.match(r"\{,\d*\}", pattern[i:]):
            out.append("\\{")  # RE2 reads "{,n}" literally, Python as a repetition
            i += 1
        else:
            out.append(c)
            i += 1
    out.append(")" * len(scoped[0]))
    return "".join(out)


def _translate_escape(pattern: str, i: int, out: list[str]) -> int:
    """Translate the escape starting at ``pattern[i] == '\\'``; returns the index after it."""
    n = len(pattern)
    if i + 1 >= n:
        raise ValueError(f"regular expression {pattern!r} ends with a backslash")
    e = pattern[i + 1]
    if e in _CLASS_OUT:
        out.append(_CLASS_OUT[e])
        return i + 2
    if e == "Q":
        end = pattern.find("\\E", i + 2)
        end = n if end < 0 else end
        out.append(re.escape(pattern[i + 2:end]))
        return end + 2
    if e == "E":
        return i + 2
    if e in "xpP":
        s, i = (_hex_escape if e == "x" else _unicode_class)(pattern, i + 1)
        out.append(s)
        return i
    if e == "C":
        raise _unsupported("\\C (any byte)", pattern)
    if e in "123456789":
        raise _unsupported("a backreference", pattern)
    out.append(pattern[i:i + 2])
    return i + 2


def _translate_class(pattern: str, i: int, out: list[str]) -> int:
    """Translate the bracket expression starting at ``pattern[i] == '['``; returns the index
    after it."""
    n = len(pattern)
    parts = ["["]
    i += 1
    if i < n and pattern[i] == "^":
        parts.append("^")
        i += 1
    first = True
    while i < n:
        c = pattern[i]
        if c == "]" and not first:
            parts.append("]")
            out.append("".join(parts))
            return i + 1
        first = False
        if c == "[" and pattern.startswith("[:", i):
            end = pattern.find(":]", i + 2)
            name = pattern[i + 2:end] if end > 0 else ""
            if name.startswith("^"):
                raise _unsupported("a negated POSIX class", pattern)
            if name not in _POSIX:
                raise ValueError(f"regular expression {pattern!r}: unknown POSIX class "
                                 f"[:{name}:]")
            parts.append(_POSIX[name])
            i = end + 2
        elif c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            if e in _CLASS_IN:
                parts.append(_CLASS_IN[e])
                i += 2
            elif e == "x":
                s, i = _hex_escape(pattern, i + 1)
                parts.append(s)
            elif e in "pPQC":
                raise _unsupported(f"\\{e} inside brackets", pattern)
            else:
                parts.append(pattern[i:i + 2])
                i += 2
        elif c in "[&~|":  # literal in RE2; Python warns about (or will give meaning to) them
            parts.append("\\" + c)
            i += 1
        else:
            parts.append(c)
            i += 1
    raise ValueError(f"regular expression {pattern!r}: missing ']'")


#: the fallback (no google-re2) refuses strings longer than this many bytes...
FALLBACK_MAX_TEXT = 4096
#: ... and patterns with more unbounded repetitions than this (or one nested in another)
FALLBACK_MAX_REPEATS = 2


def _sre():
    """Python's regex parser and its constants (moved in Python 3.11)."""
    try:
        from re import _constants, _parser
    except ImportError:  # Python 3.10
        import sre_constants as _constants
        import sre_parse as _parser
    return _constants, _parser


def _repeats(tree, inside: bool, what: str, counts: list) -> None:
    """Count the unbounded repetitions of a parsed Python pattern; refuse nesting."""
    C = _sre()[0]  # noqa: N806
    repeats = (C.MAX_REPEAT, C.MIN_REPEAT, getattr(C, "POSSESSIVE_REPEAT", C.MAX_REPEAT))
    for op_, av in tree:
        if op_ in repeats:
            lo, hi, sub = av
            if hi == C.MAXREPEAT or hi > 1:
                if inside:
                    raise ValueError(f"regular expression {what!r}: a repetition inside a "
                                     "repetition can take exponential time without RE2 "
                                     "(pip install google-re2)")
                counts[0] += hi == C.MAXREPEAT or hi > 16
                _repeats(sub, True, what, counts)
                continue
            _repeats(sub, inside, what, counts)
        elif op_ == C.SUBPATTERN:
            _repeats(av[-1], inside, what, counts)
        elif op_ == C.BRANCH:
            for b in av[1]:
                _repeats(b, inside, what, counts)
        elif op_ in (C.ASSERT, C.ASSERT_NOT):
            _repeats(av[1], inside, what, counts)


def _guard(rx: re.Pattern, pattern: str) -> None:
    """The fallback's limit on patterns that backtrack badly (module docstring)."""
    counts = [0]
    _repeats(_sre()[1].parse(rx.pattern, rx.flags), False, pattern, counts)
    if counts[0] > FALLBACK_MAX_REPEATS:
        raise ValueError(f"regular expression {pattern!r}: more than {FALLBACK_MAX_REPEATS} "
                         "unbounded repetitions can take polynomial time without RE2 (pip "
                         "install google-re2)")


class _Fallback:
    """Python's ``re`` with RE2's meaning, on bytes (decoded with surrogateescape)."""

    def __init__(self, rx: re.Pattern):
        self.rx = rx
        self.groups = rx.groups

    def fullmatch(self, b: bytes) -> bool:
        return self.rx.fullmatch(_text(b)) is not None

    def replace(self, parts, b: bytes, replace_global: bool) -> bytes:
        s = _text(b)
        return _replace(_searcher(self.rx.search), functools.partial(_expand, parts), s,
                        replace_global, _step_str).encode("utf-8", "surrogateescape")


def _text(b: bytes) -> str:
    if len(b) > FALLBACK_MAX_TEXT:
        raise ValueError(f"a string of {len(b)} bytes is longer than regular expressions may "
                         f"match without RE2 ({FALLBACK_MAX_TEXT}; pip install google-re2)")
    return b.decode("utf-8", "surrogateescape")


class _RE2:
    """RE2 itself, on the UTF-8 bytes as TF runs it."""

    def __init__(self, rx):
        self.rx = rx
        self.groups = rx.groups
        # the wrapper's own matcher, which returns spans: ~2.4x faster a match than its
        # search(), which builds a match object in Python
        self._anchor = getattr(getattr(_re2, "_Anchor", None), "UNANCHORED", None)
        self._match = getattr(rx, "_regexp", None) if self._anchor is not None else None

    def fullmatch(self, b: bytes) -> bool:
        return self.rx.fullmatch(b) is not None

    def replace(self, parts, b: bytes, replace_global: bool) -> bytes:
        if self._match is None:
            return _replace(_searcher(self.rx.search), functools.partial(_expand, parts), b,
                            replace_global, _step_utf8)
        match, anchor, n = self._match.Match, self._anchor, len(b)

        def search(s, p):
            spans = match(anchor, s, p, n)
            st, en = spans[0]
            return None if st < 0 else (st, en, spans)
        if any(isinstance(x, int) for x in parts):
            def expand(spans):
                return b"".join(x if not isinstance(x, int) else
                                b[spans[x][0]:spans[x][1]] if spans[x][0] >= 0 else b""
                                for x in parts)
        else:
            literal = b"".join(parts)

            def expand(spans):
                return literal
        return _replace(search, expand, b, replace_global, _step_utf8)


def _searcher(search):
    """``search(s, p)`` of a match object as ``_replace`` reads it: (start, end, match)."""
    def find(s, p):
        m = search(s, p)
        return None if m is None else (*m.span(), m)
    return find


@functools.lru_cache(maxsize=256)
def compile_re2(pattern: bytes | str):
    """The compiled RE2 pattern (bytes are UTF-8): RE2 itself, or the guarded fallback."""
    if isinstance(pattern, str):
        pattern = pattern.encode("utf-8", "surrogateescape")
    if _re2 is not None:
        options = _re2.Options()
        options.log_errors = False
        try:
            return _RE2(_re2.compile(pattern, options))
        except _re2.error as e:
            raise ValueError(f"invalid regular expression {pattern!r}: {e}") from None
    text = pattern.decode("utf-8", "surrogateescape")
    try:
        rx = re.compile(translate(text))
    except (re.error, OverflowError, RecursionError) as e:
        raise ValueError(f"invalid regular expression {text!r}: {e}") from None
    _guard(rx, text)
    return _Fallback(rx)


@functools.lru_cache(maxsize=256)
def _parse_rewrite(rewrite: str):
    """RE2 rewrite -> (parts: str literals and int group numbers, max group, valid)."""
    parts: list[str | int] = []
    lit: list[str] = []
    i, n = 0, len(rewrite)
    top = 0
    valid = True
    while i < n:
        c = rewrite[i]
        if c != "\\":
            lit.append(c)
            i += 1
            continue
        e = rewrite[i + 1] if i + 1 < n else ""
        if e.isdigit() and e.isascii():
            if lit:
                parts.append("".join(lit))
                lit = []
            parts.append(int(e))
            top = max(top, int(e))
        elif e == "\\":
            lit.append("\\")
        else:  # RE2 logs "invalid rewrite pattern" and keeps what it wrote so far
            valid = False
            break
        i += 2
    if lit:
        parts.append("".join(lit))
    return tuple(parts), top, valid


def _expand(parts, m) -> str | bytes:
    empty = m.string[:0]
    return empty.join(p if not isinstance(p, int) else (m.group(p) or empty) for p in parts)


def _step_str(s: str, p: int) -> int:
    return 1


def _step_utf8(s: bytes, p: int) -> int:
    """The length of the UTF-8 character at ``s[p]`` (1 for an invalid byte), as RE2 skips."""
    c = s[p]
    n = 1 if c < 0xC0 else 2 if c < 0xE0 else 3 if c < 0xF0 else 4 if c < 0xF8 else 1
    if n > 1:
        try:
            s[p:p + n].decode("utf-8")
        except UnicodeDecodeError:
            return 1
    return n


def _replace(search, expand, s, replace_global: bool, step):
    """RE2's GlobalReplace / Replace on one string (str or bytes): ``search(s, pos)`` gives
    the next match as (start, end, m) or None, ``expand(m)`` its replacement."""
    out: list = []
    p, n = 0, len(s)
    lastend = -1
    count = 0
    while p <= n:
        found = search(s, p)
        if found is None:
            break
        st, en, m = found
        if p < st:
            out.append(s[p:st])
        if st == en and st == lastend:  # no empty match right after the previous one
            k = step(s, p) if p < n else 1
            out.append(s[p:p + k])
            p += k
            continue
        out.append(expand(m))
        p = lastend = en
        count += 1
        if not replace_global:
            break
    if count == 0:
        return s
    if p < n:
        out.append(s[p:])
    return s[:0].join(out)


def _scalar_text(x, what: str) -> bytes:
    a = np.asarray(x, dtype=object)
    if a.size != 1:
        raise ValueError(f"{what} must be a scalar string, got shape {list(a.shape)}")
    return as_bytes_list(a)[0]


def _check_replaced(items, parts, replace_global: bool) -> None:
    """The replaced strings within the tensor limit, before replacing: each string's matches
    (at most one more than its length, one without ``replace_global``) each write the
    rewrite's literals, and its group references at most the string again (the matches do
    not overlap). A hostile rewrite 10**5 long on 10**5 empty matches wrote 10 GB."""
    total = sum(len(b) for b in items)
    matches = total + len(items) if replace_global else len(items)
    literal = sum(len(p) for p in parts if not isinstance(p, int))
    refs = sum(1 for p in parts if isinstance(p, int))
    check_elements((total + matches * literal + refs * total,), 1, "the replaced strings")


def _regex_replace(input, pattern, rewrite, replace_global: bool) -> np.ndarray:
    x = np.asarray(input, dtype=object)
    rx = compile_re2(pattern)
    if isinstance(rewrite, bytes):
        rewrite = rewrite.decode("utf-8", "surrogateescape")
    parts, top, valid = _parse_rewrite(rewrite)
    items = as_bytes_list(x)
    # RE2 refuses a rewrite naming a missing group, and Replace (not GlobalReplace) one with a
    # bad escape: the strings stay as they are
    if top > rx.groups or not (valid or replace_global):
        return strings_array(items, x.shape)
    _check_replaced(items, parts, replace_global)
    if isinstance(rx, _RE2):
        parts = tuple(p.encode("utf-8", "surrogateescape") if isinstance(p, str) else p
                      for p in parts)
    return strings_array([rx.replace(parts, b, replace_global) for b in items], x.shape)


@op("StaticRegexReplace")
def StaticRegexReplace(input, *, pattern, rewrite, replace_global=True):
    """StaticRegexReplace: replace the matches of the RE2 ``pattern`` with ``rewrite``."""
    return _regex_replace(input, pattern, rewrite, replace_global)


@op("RegexReplace")
def RegexReplace(input, pattern, rewrite, *, replace_global=True):
    """RegexReplace: replace the matches of the RE2 ``pattern`` (a scalar tensor)."""
    return _regex_replace(input, _scalar_text(pattern, "pattern"),
                          _scalar_text(rewrite, "rewrite"), replace_global)


def _full_match(input, pattern) -> np.ndarray:
    x = np.asarray(input, dtype=object)
    rx = compile_re2(pattern)
    got = [rx.fullmatch(b) for b in as_bytes_list(x)]
    return np.array(got, dtype=bool).reshape(x.shape)


@op("StaticRegexFullMatch")
def StaticRegexFullMatch(input, *, pattern):
    """StaticRegexFullMatch: whether each whole string matches the RE2 ``pattern``."""
    return _full_match(input, pattern)


@op("RegexFullMatch")
def RegexFullMatch(input, pattern):
    """RegexFullMatch: whether each whole string matches the RE2 ``pattern`` (a tensor)."""
    return _full_match(input, _scalar_text(pattern, "pattern"))
