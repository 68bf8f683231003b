"""The fuzzing harness (tests/fuzz.py) in CI: FUZZ_CASES (default 10,000) hostile files and
random ops from a fixed seed, then HYPOTHESIS_CASES more drawn by hypothesis (derandomized),
which shrinks a failing case to a small one; any crash, hang, excess allocation or
non-tfdeploy exception fails. A longer run: ``python tests/fuzz.py --cases 1000000 --seed N``
(docs/security.md)."""

from __future__ import annotations

import os
import random
import tracemalloc

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import fuzz
import tfdeploy as td

CASES = int(os.environ.get("FUZZ_CASES", "10000"))
SEED = int(os.environ.get("FUZZ_SEED", "20261204"))
#: hypothesis's random streams cost ~15 ms a case more than the plain ones
HYPOTHESIS_CASES = int(os.environ.get("FUZZ_HYPOTHESIS_CASES", "300"))


@pytest.fixture(scope="module")
def fuzzing():
    """The seed files, the fuzzing limits set and allocations traced (``fuzz.fuzzing``); the
    outcomes seen."""
    with fuzz.fuzzing() as seeds:
        yield seeds, {}


def test_fuzz_fixed_seed(fuzzing):
    seeds, _ = fuzzing
    counts: dict[str, int] = {}
    for k in range(CASES):
        outcome = fuzz.run_case(SEED * 10 ** 9 + k, seeds)
        counts[outcome] = counts.get(outcome, 0) + 1
    # the mix stays varied: files refused at load, runs that fail cleanly, runs that work
    assert min(counts.get(k, 0) for k in ("load error", "run error", "ok")) > CASES // 20


def test_fuzz_hypothesis(fuzzing):
    seeds, counts = fuzzing

    @settings(max_examples=HYPOTHESIS_CASES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate, Phase.shrink])
    @given(st.randoms(use_true_random=False))
    def case(rng):
        outcome = fuzz.run_case(rng, seeds)
        counts[outcome] = counts.get(outcome, 0) + 1

    case()
    assert sum(counts.values()) >= HYPOTHESIS_CASES


def test_fuzz_detects_what_it_must(monkeypatch):
    """The harness itself can fail: a raw exception, a hang and an allocation are caught."""
    seeds = [fuzz.save_bytes(g) for g in fuzz.seed_graphs()]
    k = next(k for k in range(1000) if random.Random(k).random() >= 0.7)  # a random-op case

    def raising(data, *a, **kw):
        raise KeyError("raw")
    monkeypatch.setattr(td, "load", raising)
    with pytest.raises(fuzz.Failure, match="KeyError"):
        fuzz.run_case(k, seeds)

    def slow(data, *a, **kw):
        while True:
            pass
    monkeypatch.setattr(fuzz, "TIME_LIMIT", 0.05)
    monkeypatch.setattr(td, "load", slow)
    with pytest.raises(fuzz.Failure, match="ran over"):
        fuzz.run_case(k, seeds)

    def hog(data, *a, **kw):
        hog.keep = bytearray(64 << 20)
        raise td.FileFormatError("refused, but late")
    monkeypatch.setattr(fuzz, "TIME_LIMIT", 5.0)
    monkeypatch.setattr(td, "load", hog)
    tracemalloc.start(1)
    try:
        with pytest.raises(fuzz.Failure, match="allocated"):
            fuzz.run_case(k, seeds)
    finally:
        tracemalloc.stop()
