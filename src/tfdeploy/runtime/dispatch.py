"""Shape dispatch: each call runs the plan specialized for its feeds' shapes.

The first call with new shapes runs a *tracing* plan (the generic plan, unfused, recording the
shape of every value it computes) and compiles the specialized plan from the trace
(``compiler/passes/specialize.py``); it then returns the specialized plan's result on the
same feeds (``rerun``), so that every call with the same feeds gives the same bits: the
unfused trace rounds differently in the last bits (MobileNetV2: 902 of 1000 logits, by up to
1.5e-7). A graph whose second run would not repeat the first (stateful samplers draw the
next numbers; a user's kernel may have effects) returns the trace's result instead.

A specialized plan checks its feeds inline (class, dtype, every dim) and hands any call that
does not fit back to the dispatcher (``slow``); ``run`` is the first specialized plan itself,
so in the steady state a call costs nothing over the plan. At most ``limit`` shape sets are
specialized per plan; beyond that (a model fed ever new sequence lengths, say), calls run the
generic plan, as do feeds that are not arrays.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: specialized plans kept per plan (fetches and feeds) of a model
MAX_SPECIALIZED = 16


class ShapeDispatch:
    """Call ``dispatch.run(feeds)``: the plan specialized for the feeds' shapes.

    ``generic()``: the generic plan's run (compiled on first need); ``tracer()``: a fresh
    (run, record) pair, the run recording value shapes into the dict; ``specialize(shapes,
    record, miss)``: the specialized plan's run, calling ``miss(feeds)`` for feeds it does not
    fit; ``checks``: per feed, a callable casting and validating it (or None)."""

    __slots__ = ("make_generic", "_generic", "tracer", "specialize", "checks", "plans", "lock",
                 "limit", "rerun", "run")

    def __init__(self, generic: Callable, tracer: Callable, specialize: Callable,
                 checks: list, limit: int = MAX_SPECIALIZED, rerun: bool = False):
        self.make_generic = generic
        self._generic = None
        self.tracer = tracer
        self.specialize = specialize
        self.checks = list(checks)
        self.plans: dict[tuple, Callable] = {}
        self.lock = threading.Lock()
        self.limit = limit
        #: the first call with new shapes returns the specialized plan's result (see above)
        self.rerun = rerun
        #: what callers call: the first specialized plan once there is one
        self.run = self.slow

    def __call__(self, feeds):
        return self.run(feeds)

    def generic(self, feeds):
        run = self._generic
        if run is None:
            with self.lock:
                if self._generic is None:
                    self._generic = self.make_generic()
                run = self._generic
        return run(feeds)

    def slow(self, feeds):
        """A call the current ``run`` does not fit: through the plan for these shapes."""
        if len(feeds) != len(self.checks):
            return self.generic(feeds)  # (it raises the error naming the count)
        # cast and validate first (a float64 array for a float32 input, a wrong rank...):
        # what a specialized plan is given must fit its inline checks
        feeds = tuple(f if c is None else c(f) for c, f in zip(self.checks, feeds))
        try:
            key = feeds[0].shape if len(feeds) == 1 else tuple([f.shape for f in feeds])
        except AttributeError:  # (a string feed kept as a Python object, say)
            return self.generic(feeds)
        run = self.plans.get(key)
        if run is not None:
            return run(feeds)
        return self._first(key, feeds)

    def _first(self, key, feeds):
        if len(self.plans) >= self.limit:
            return self.generic(feeds)
        trace, record = self.tracer()
        out = trace(feeds)  # raises on bad feeds, before anything is cached
        with self.lock:
            run = self.plans.get(key)
            if run is None and len(self.plans) < self.limit:
                shapes = (key,) if len(feeds) == 1 else key
                run = self.specialize(shapes, record, self.slow)
                self.plans[key] = run
                if self.run == self.slow:
                    self.run = run
        return run(feeds) if self.rerun and run is not None else out
