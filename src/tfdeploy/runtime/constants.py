"""What is derived from a model's constants, kept with them and shared by all its plans.

A model compiles a plan per input shape (``runtime/dispatch.py``); the weights its passes fold
(a batch norm into a convolution's filter), join (projections of one input) or transform (a
filter's Winograd form) are the same for every shape, so they are made once and kept with the
constant they come from while it lives (:func:`derived`), not once per plan: ResNet50 held
0.2 GB more for each batch size it saw. A plan that runs once (the trace of a new shape) is
bound with :data:`ONE_RUN` set, so kernels skip what pays only over many calls.
"""

from __future__ import annotations

import contextvars
import functools
import weakref
from collections.abc import Callable

import numpy as np

__all__ = ["ONE_RUN", "immutable", "derived"]

#: True while the kernels of a plan that runs once (the trace of a new input shape: see
#: ``runtime/dispatch.py``) are bound: a specializer may then skip preparation that pays only
#: over many calls (a convolution's Winograd filter transform)
ONE_RUN: contextvars.ContextVar[bool] = contextvars.ContextVar("tfdeploy_one_run",
                                                               default=False)


def immutable(a: np.ndarray) -> bool:
    """Whether nothing can write ``a``'s values: read-only, as is every array it views (a
    loaded model's constants: views of its file's read-only memory map; the weights the
    compiler derives from them)."""
    while isinstance(a, np.ndarray):
        if a.flags.writeable:
            return False
        a = a.base
    return True


_DERIVED: dict[int, tuple] = {}
_DERIVED_KEEP = 4096
_MISSING = object()


def _forget(ident: int, ref, derived=_DERIVED) -> None:
    """The array of ``ref`` died: drop what was derived from it, if its entry is still this
    ref's. The dict is bound as a default: at interpreter exit the module's globals are None
    before the last arrays die (pytest's workers printed "Exception ignored ... 'NoneType'
    object has no attribute 'pop'" for each)."""
    entry = derived.get(ident)
    if entry is not None and entry[0] is ref:
        del derived[ident]


def derived(a: np.ndarray, key, make: Callable[[], object]):
    """``make()``, kept with the immutable array ``a`` under ``key`` while ``a`` lives, so
    every plan of a model shares one copy: a plan is compiled per input shape, and each held
    its own folded weights and filter transforms (ResNet50: 0.2 GB more per batch size). For
    an array that can change, ``make()`` each time."""
    if not immutable(a):
        return make()
    ident = id(a)
    entry = _DERIVED.get(ident)
    if entry is None or entry[0]() is not a:
        try:
            ref = weakref.ref(a, functools.partial(_forget, ident))
        except TypeError:
            return make()
        if len(_DERIVED) >= _DERIVED_KEEP:
            _DERIVED.clear()
        entry = _DERIVED[ident] = (ref, {})
    value = entry[1].get(key, _MISSING)
    if value is _MISSING:
        value = entry[1][key] = make()
    return value
