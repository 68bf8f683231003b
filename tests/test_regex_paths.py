"""RegexReplace through RE2's own matcher (spans, ``_RE2.replace``'s fast path) against the
same replacement through the wrapper's search(): the same bytes on patterns that match empty,
at boundaries, on invalid UTF-8, with and without groups, global or not."""

from __future__ import annotations

import functools

import pytest

from tfdeploy.kernels.strings import regex as R

pytest.importorskip("re2")

PATTERNS = [b"a", b"x*", b"(a)|(b)", b"\\b", b"^", b"$", b"(?i)A+", b"[^a]", b".", b"(a*)(b?)",
            b"\\w+", b"", b"(ab|a)", b"\xc3\xa9|e", b"(?s).*"]
REWRITES = ["-", r"<\1>", r"\0\0", "", r"\\x", r"[\2]"]
TEXTS = [b"", b"abc", b"aaa bbb", b"h\xc3\xa9llo w\xc3\xb6rld", b"\xff\xfeab", b"ab" * 50,
         b"\n\na\nb\n"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_spans_path_is_the_search_path(pattern):
    rx = R.compile_re2(pattern)
    assert rx._match is not None  # (the wrapper's matcher is there: the fast path runs)
    for rewrite in REWRITES:
        parts, top, _ = R._parse_rewrite(rewrite)
        if top > rx.groups:
            continue
        parts = tuple(p.encode() if isinstance(p, str) else p for p in parts)
        for text in TEXTS:
            for replace_global in (True, False):
                fast = rx.replace(parts, text, replace_global)
                slow = R._replace(R._searcher(rx.rx.search), functools.partial(R._expand, parts),
                                  text, replace_global, R._step_utf8)
                assert fast == slow, (pattern, rewrite, text, replace_global)
