"""Control-flow executors: what While, If, Case, For and function calls run at evaluation.

The compiler (``compiler/loops.py``, ``compiler/pipeline.py``) analyses the bodies and compiles
them once into plans; these objects only run them. Values pass between the caller and the
bodies as tuples, nothing else, and nothing is kept between calls: threads may share them.
"""

from __future__ import annotations

from time import monotonic

import numpy as np

from tfdeploy.runtime.limits import loop_deadline, loop_limit, too_long, too_many_iterations
from tfdeploy.runtime.tensorlist import TensorList

#: most iterations whose condition one evaluation decides (counted loops)
MAX_CHUNK = 1024
#: the iterations the first evaluation decides: a vector of 64 costs no more than one of 16,
#: and covers most RNNs' sequences in one evaluation (each costs a few microseconds)
FIRST_CHUNK = 64
#: first chunks a counted loop keeps (``Loop._counted``), for as many starting values
_FIRST_KEPT = 16


def truth(c) -> bool:
    """TF's ToBool of a predicate tensor: a scalar's value, else non-emptiness."""
    if c.ndim == 0:
        return bool(c)
    return c.size > 0


class Loop:
    """One While node, its cond, body and invariant prologue compiled (``compiler/loops.py``).

    Loop variables are kept in state tuples ordered: loop-variant values, then *counters*, then
    invariants. A counter is a scalar integer the body steps by a constant (``i + 1``). When the
    condition is an elementwise function of counters and scalar invariants only (as in every
    Keras RNN, ``tf.range`` loop and ``maximum_iterations``), the loop is *counted*: the
    condition is evaluated once for a whole chunk of iterations, on vectors of the counters'
    values, and the body is fed each iteration's counters without computing them.

    ``perm``: state position -> loop variable; ``inverse``: loop variable -> position in the
    state followed by ``const_vals`` (invariants compiled into the bodies as constants); ``k``
    variant values, ``nq`` counters; ``steps``: per counter (step, update kernel, counter
    first, is a subtraction); ``cond_invariants``: state positions of the invariants a counted
    condition reads, or None when the loop is not counted.
    """

    def __init__(self, *, perm, inverse, k, counters, cond, body, prologue,
                 cond_invariants, const_vals, chunk=None, body_prologue=None, plans=()):
        #: (label, plan) of the plans it runs, for dumps (``compiler/plan.py``)
        self.plans = tuple(plans)
        self.perm = perm
        self.identity_perm = perm == list(range(len(perm))) and not const_vals
        self.inverse = inverse
        self.k = k
        self.nq = len(counters)
        self.steps = counters
        self.cond = cond
        self.body = body
        self.prologue = prologue
        self.cond_invariants = cond_invariants
        self.const_vals = const_vals
        #: the body inlined in a loop over a chunk of iterations (``compiler/loopgen.py``):
        #: ``chunk(box, counter vectors, n, invariants) -> moving values``, or None
        self.chunk = chunk
        #: the body plan's steps run once per loop: (run, positions of its feeds among the
        #: body's invariants), its results fed to the body after them; or None
        self.body_prologue = body_prologue
        #: (counters' values, condition invariants' values) -> the first chunk's counter
        #: vectors and iteration count (``_counted``)
        self._first: dict = {}

    def __call__(self, *args):
        perm = self.perm
        vals = args if self.identity_perm else tuple(args[i] for i in perm)
        cond, body, k = self.cond, self.body, self.k
        c = cond(vals)[0]
        if not (c if c.ndim == 0 else c.size):
            return args
        if any(type(v) is TensorList for v in vals[:k]):
            # a list the loop updates gets a store of its own: the caller still holds the
            # initial version, which would otherwise keep every superseded element alive
            vals = tuple(v.copy() if type(v) is TensorList else v for v in vals[:k]) + vals[k:]
        kq = k + self.nq
        extra = self.prologue(vals[kq:]) if self.prologue is not None else ()
        if self.body_prologue is not None:
            run, positions = self.body_prologue
            invariants = vals[kq:] + extra
            extra += run(tuple(invariants[i] for i in positions))
        limit, n, deadline = loop_limit(), 1, loop_deadline()
        if self.nq:
            # the state goes in a box the loop empties: a reference kept here to the first
            # version of a list would keep every element the loop overwrites alive
            box = [vals]
            del vals
            vals = self._counted(box, extra, deadline) \
                if self.cond_invariants is not None else None
            if vals is None:
                vals = self._stepped(box, extra, deadline)
        elif not extra and k == len(vals):
            while True:
                vals = body(vals)
                c = cond(vals)[0]
                if not (c if c.ndim == 0 else c.size):
                    break
                n += 1
                if n > limit:
                    raise too_many_iterations(limit)
                if deadline is not None and monotonic() > deadline:
                    raise too_long()
        else:
            while True:
                vals = body(vals + extra) + vals[k:]
                c = cond(vals)[0]
                if not (c if c.ndim == 0 else c.size):
                    break
                n += 1
                if n > limit:
                    raise too_many_iterations(limit)
                if deadline is not None and monotonic() > deadline:
                    raise too_long()
        if self.identity_perm:
            return vals
        vals += self.const_vals
        return tuple(vals[j] for j in self.inverse)

    def _stepped(self, box: list, extra: tuple, deadline: float | None) -> tuple:
        """The loop run one iteration at a time, counters updated by their own kernels."""
        cond, body, k, kq = self.cond, self.body, self.k, self.k + self.nq
        vals = box.pop()
        steps = self.steps
        limit, n = loop_limit(), 0
        while True:
            q = tuple(kernel(v, step) if first else kernel(step, v)
                      for v, (step, kernel, first, _) in zip(vals[k:kq], steps))
            vals = body(vals + extra) + q + vals[kq:]
            c = cond(vals)[0]
            if not (c if c.ndim == 0 else c.size):
                return vals
            n += 1
            if n >= limit:
                raise too_many_iterations(limit)
            if deadline is not None and monotonic() > deadline:
                raise too_long()

    def _counted(self, box: list, extra: tuple, deadline: float | None) -> tuple | None:
        """The loop run with its condition decided a chunk of iterations at a time, or None
        (``box`` untouched) if the values do not allow it: counters that are not integer
        scalars of their step's dtype, invariants of the condition that are not scalars."""
        k, kq = self.k, self.k + self.nq
        vals = box[0]
        q0 = vals[k:kq]
        for v, (step, *_) in zip(q0, self.steps):
            if type(v) is not np.ndarray or v.ndim or v.dtype != step.dtype:
                return None
        for j in self.cond_invariants:
            v = vals[j]
            if type(v) is not np.ndarray or v.ndim:
                return None
        cond, body = self.cond, self.body
        m, rest = vals[:k], vals[kq:]
        tail = rest + extra
        t, size = 0, FIRST_CHUNK
        # the first chunk's counter vectors and iteration count depend only on the counters'
        # and the condition's invariants' values: kept per loop for the values seen (a Keras
        # RNN's loop starts from the same ones every call; ~10 us a loop)
        key = (tuple((v.dtype.char, v.item()) for v in q0),
               tuple((vals[j].dtype.char, vals[j].item()) for j in self.cond_invariants))
        first = self._first.get(key)
        while True:
            if first is not None:
                vecs, n = first
                first = None
            else:
                # counters of iterations t .. t + size - 1, wrapping as repeated integer adds do
                idx = np.arange(t, t + size)
                vecs = []
                for v, (step, _, _, sub) in zip(q0, self.steps):
                    d = np.multiply(idx.astype(v.dtype), step)
                    vecs.append(np.subtract(v, d) if sub else np.add(v, d))
                if t:
                    c = cond(m + tuple(vecs) + rest)[0]
                else:
                    try:
                        c = cond(m + tuple(vecs) + rest)[0]
                    except Exception:  # noqa: BLE001  (not vectorisable after all: step instead)
                        return None
                    if c.shape != (size,) or c.dtype != np.bool_:
                        return None
                stop = (~c).nonzero()[0]  # (c: 1-D; np.flatnonzero's wrappers cost ~5 us)
                n = int(stop[0]) if stop.size else size
                if not t and len(self._first) < _FIRST_KEPT:
                    for v in vecs:  # (the body reads views of them: never written)
                        v.setflags(write=False)
                    self._first[key] = (vecs, n)
            if not t:
                del vals, box[0]  # from here on the loop owns the state (see __call__)
            if self.chunk is not None:
                box = [m]
                del m
                m = self.chunk(box, vecs, n, tail)
            else:
                if self.nq == 1:
                    qs = [(vecs[0][j, ...],) for j in range(n)]
                else:
                    qs = list(zip(*[[v[j, ...] for j in range(n)] for v in vecs]))
                for q in qs:
                    m = body(m + q + tail)
            if n < size:
                return m + tuple(v[n, ...].copy() for v in vecs) + rest
            t += size
            if t >= loop_limit():
                raise too_many_iterations(loop_limit())
            if deadline is not None and monotonic() > deadline:
                raise too_long()
            size = min(2 * size, MAX_CHUNK)


class PartialLoop:
    """A loop some of whose variables are load-time constants: called with the others."""

    def __init__(self, loop: Loop, consts: list):
        self.loop = loop
        self.template = list(consts)
        self.fed = [i for i, c in enumerate(consts) if c is None]

    def __call__(self, *args):
        full = self.template.copy()
        for i, a in zip(self.fed, args):
            full[i] = a
        return self.loop(*full)


def branch(then_run, else_run):
    """If: ``then_run(inputs)`` if ``cond`` holds (TF's ToBool), else ``else_run``."""
    def run(cond, *inputs):
        return (then_run if truth(cond) else else_run)(inputs)
    return run


def switch(runs: list):
    """Case: ``runs[branch_index](inputs)``; an index out of range runs the last branch."""
    last = len(runs) - 1

    def run(branch_index, *inputs):
        _check_scalar(branch_index, "Case", "branch_index")
        i = int(branch_index)
        return runs[i if 0 <= i < last else last](inputs)
    return run


def _check_scalar(x, op: str, what: str) -> None:
    """An integer scalar, as TF's kernels require (a float index was truncated, a vector or
    an empty [2**31, 0] gave Python's 'only 0-dimensional arrays can be converted')."""
    x = np.asarray(x)
    if x.ndim or x.dtype.kind not in "iu":
        raise ValueError(f"{op}: {what} must be an integer scalar, got {x.dtype} of shape "
                         f"{list(x.shape)}")


def typed(run, expected: tuple, name: str):
    """``run`` (a function's plan: If's and Case's branches, a call) with its results' dtypes
    checked against ``expected``, those its caller declares (None: not checked; a string
    any of numpy's string dtypes). TF checks them when it loads a graph: a file declaring one
    dtype and returning another ran on, its consumers computing on the wrong dtype."""
    def checked(inputs):
        out = run(inputs)
        for i, (v, dt) in enumerate(zip(out, expected)):
            got = getattr(v, "dtype", None)
            if dt is not None and got is not None and got != dt and \
                    not (dt.kind == "O" and got.kind in "SUO"):
                raise TypeError(f"function {name!r} returned {got} as its output {i}; the "
                                f"node declares {dt} (Tout)")
        return out
    return checked


def call(fn):
    """A function call: ``fn`` applied to the inputs."""
    def run(*args):
        return fn(args)
    return run


def for_loop(fn):
    """For: ``state = body(i, *state)`` for i in range(start, limit, delta)."""
    def run(start, limit, delta, *state):
        for what, x in (("start", start), ("limit", limit), ("delta", delta)):
            _check_scalar(x, "For", what)
        s, e, d = int(start), int(limit), int(delta)
        if d == 0 or (d > 0 and s > e) or (d < 0 and s < e):
            raise ValueError(f"For: invalid start/limit/delta: {s} {e} {d}")
        dt = start.dtype
        if len(range(s, e, d)) > loop_limit():
            raise too_many_iterations(loop_limit())
        deadline = loop_deadline()
        for i in range(s, e, d):
            state = fn((np.asarray(i, dtype=dt),) + tuple(state))
            if deadline is not None and monotonic() > deadline:
                raise too_long()
        return tuple(state)
    return run
