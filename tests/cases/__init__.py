"""Conformance cases as data: each is a TF function, inputs, and a tolerance.

Each module in this package defines ``CASES: list[Case]``; ``tests/test_ops.py`` runs them all
through one harness (``tests/harness.py``): trace ``fn`` with TensorFlow, run it, convert it with
tfdeploy, run that, and compare shape, then dtype, then values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Case:
    #: unique, readable id (becomes the pytest id)
    id: str
    #: op types this case covers; the harness checks each appears in the converted graph
    ops: tuple[str, ...]
    #: a python function of TF tensors returning a tensor or a tuple of tensors
    fn: Callable
    #: the inputs: a list of arrays, or a function of a numpy Generator returning one
    inputs: Callable[[np.random.Generator], Sequence[np.ndarray]] | Sequence[np.ndarray]
    rtol: float = 1e-6
    atol: float = 1e-6
    #: a reason string makes this a known gap (pytest xfail, strict)
    xfail: str | None = None
    #: also convert with every input dim unknown (None) and check again
    dynamic: bool = False
    #: extra options for the harness (e.g. {"nan_ok": True})
    options: dict = field(default_factory=dict)
    #: TF's output dtypes, for ops whose attributes choose them (random ops, Cast...): checked by
    #: the harness, listed in docs/ops.md for the case's first op (the op under test)
    out_dtypes: tuple[str, ...] = ()
    #: the same values in a form TF's CPU kernels run on every machine (NHWC, no dilation,
    #: equal strides...), for a case TF refuses without oneDNN; a TF function of the same inputs
    oracle: Callable | None = None
    #: how TF with oneDNN (its default on CPUs with AVX-512) departs from its reference kernels,
    #: which tfdeploy follows; the case then compares with TF run without oneDNN (see harness)
    onednn: str | None = None
    #: TF rejects these inputs when it runs them: tfdeploy must too, with a tfdeploy error
    #: (``TFDeployError``) whose message matches this regular expression
    rejects: str | None = None

    def make_inputs(self, seed: int = 0) -> list[np.ndarray]:
        if callable(self.inputs):
            return list(self.inputs(np.random.default_rng(seed)))
        return list(self.inputs)


def tf():
    """TensorFlow, imported on first use (when a case runs, not when its module loads)."""
    import tensorflow

    return tensorflow


def raw():
    """``tf.raw_ops``, imported on first use."""
    return tf().raw_ops


def adder(cases: list[Case], prefix: str, **defaults):
    """``add(id, ops, fn, inputs, **kw)``: append a Case with id ``<prefix>_<id>`` to ``cases``,
    keyword arguments defaulting to ``defaults``."""
    def add(id: str, ops, fn, inputs, **kw) -> None:
        cases.append(Case(id=f"{prefix}_{id}", ops=tuple(ops), fn=fn, inputs=inputs,
                          **{**defaults, **kw}))
    return add


def i32(*v) -> np.ndarray:
    return np.array(v, np.int32)


def i64(*v) -> np.ndarray:
    return np.array(v, np.int64)


def collect() -> list[Case]:
    """Every case of every module in this package, ids checked for uniqueness."""
    import importlib
    import pkgutil

    out: list[Case] = []
    for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if m.name.startswith("_"):
            continue
        out.extend(importlib.import_module(f"{__name__}.{m.name}").CASES)
    seen: set[str] = set()
    for c in out:
        if c.id in seen:
            raise ValueError(f"duplicate case id {c.id!r}")
        seen.add(c.id)
    return out


def rand(rng: np.random.Generator, shape, dtype="float32", low=-3.0, high=3.0) -> np.ndarray:
    """Random values of ``dtype``: uniform floats in [low, high), ints in [low, high]."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.uniform(low, high, size=shape).astype(dt)
    if dt.kind == "c":
        return (rng.uniform(low, high, size=shape)
                + 1j * rng.uniform(low, high, size=shape)).astype(dt)
    if dt.kind in "iu":
        lo = max(int(low), np.iinfo(dt).min)
        hi = min(int(high), np.iinfo(dt).max)
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)
    if dt.kind == "b":
        return rng.random(size=shape) < 0.5
    raise ValueError(f"rand: unsupported dtype {dt}")
