"""The fuzzing harness (tests/fuzz.py) in CI: FUZZ_CASES (default 10,000) hostile files and
random ops with a fixed seed; any crash, hang, excess allocation or non-tfdeploy exception
fails. A longer run: ``python tests/fuzz.py --cases 1000000 --seed N`` (docs/security.md)."""

from __future__ import annotations

import os
import random

import pytest

import fuzz
import tfdeploy as td

CASES = int(os.environ.get("FUZZ_CASES", "10000"))
SEED = int(os.environ.get("FUZZ_SEED", "20261204"))


def test_fuzz_fixed_seed():
    counts = fuzz.run(CASES, SEED)
    assert sum(counts.values()) == CASES
    # the mix stays varied: files refused at load, runs that fail cleanly, runs that work
    assert min(counts.get(k, 0) for k in ("load error", "run error", "ok")) > CASES // 20


def test_fuzz_detects_what_it_must(monkeypatch):
    """The harness itself can fail: a raw exception, a hang and an allocation are caught."""
    seeds = [fuzz.save_bytes(g) for g in fuzz.seed_graphs()]
    k = next(k for k in range(1000) if random.Random(k).random() >= 0.7)  # a random-op case
    real_load = td.load

    def raising(data, *a, **kw):
        raise KeyError("raw")
    monkeypatch.setattr(td, "load", raising)
    with pytest.raises(fuzz.Failure, match="KeyError"):
        fuzz.run_case(k, seeds)
    monkeypatch.setattr(fuzz, "TIME_LIMIT", 0.05)

    def slow(data, *a, **kw):
        while True:
            pass
    monkeypatch.setattr(td, "load", slow)
    with pytest.raises(fuzz.Failure, match="ran over"):
        fuzz.run_case(k, seeds)
    monkeypatch.setattr(fuzz, "TIME_LIMIT", 5.0)

    def hog(data, *a, **kw):
        hog.keep = bytearray(64 << 20)
        raise td.FileFormatError("refused, but late")
    import tracemalloc
    monkeypatch.setattr(td, "load", hog)
    tracemalloc.start(1)
    try:
        with pytest.raises(fuzz.Failure, match="allocated"):
            fuzz.run_case(k, seeds)
    finally:
        tracemalloc.stop()
    monkeypatch.setattr(td, "load", real_load)
