"""Shape dispatch: each call runs the plan specialized for its feeds' shapes.

The first call with new shapes runs a *tracing* plan (the generic plan recording the shape of
every value it computes), returns its result, and compiles the specialized plan from the trace
(``compiler/passes/specialize.py``); later calls with those shapes run it directly. At most
``limit`` shape sets are specialized per plan; beyond that (a model fed ever new sequence
lengths, say), calls run the generic plan. Feeds that are not arrays run the generic plan.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: specialized plans kept per plan (fetches and feeds) of a model
MAX_SPECIALIZED = 16


class ShapeDispatch:
    """``run(feeds)`` through the plan specialized for ``tuple(f.shape for f in feeds)``.

    ``generic()``: the generic plan's run (compiled on first need); ``tracer()``: a fresh
    (run, record) pair, the run recording value shapes into the dict; ``specialize(shapes,
    record)``: the specialized plan's run."""

    __slots__ = ("make_generic", "_generic", "tracer", "specialize", "plans", "lock", "limit")

    def __init__(self, generic: Callable, tracer: Callable, specialize: Callable,
                 limit: int = MAX_SPECIALIZED):
        self.make_generic = generic
        self._generic = None
        self.tracer = tracer
        self.specialize = specialize
        self.plans: dict[tuple, Callable] = {}
        self.lock = threading.Lock()
        self.limit = limit

    def generic(self, feeds):
        run = self._generic
        if run is None:
            with self.lock:
                if self._generic is None:
                    self._generic = self.make_generic()
                run = self._generic
        return run(feeds)

    def __call__(self, feeds):
        try:
            key = tuple([f.shape for f in feeds])
        except AttributeError:  # a list or a scalar: the generic plan converts it
            return self.generic(feeds)
        run = self.plans.get(key)
        if run is not None:
            return run(feeds)
        return self._first(key, feeds)

    def _first(self, key: tuple, feeds):
        if len(self.plans) >= self.limit:
            return self.generic(feeds)
        run, record = self.tracer()
        out = run(feeds)  # raises on bad feeds, before anything is cached
        with self.lock:
            if key not in self.plans and len(self.plans) < self.limit:
                self.plans[key] = self.specialize(key, record)
        return out
