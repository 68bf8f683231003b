"""Resource limits: what a hostile file or input may make tfdeploy spend before it fails cleanly.

Set with ``td.setup(...)`` (``configure`` here); read by the loader, the compiler and the
kernels that make outputs whose size comes from an input's *values* (a shape, a count, a
repeat), which is how a few bytes ask for terabytes. docs/security.md lists them and why.

==========================  =======================================================  ========
limit                       what it bounds                                           default
==========================  =======================================================  ========
``max_header_bytes``        the JSON header of a model file                          256 MiB
``max_tensor_bytes``        one tensor an op makes (checked before allocating)       1/4 of
                                                                                     free RAM
``fold_bytes``              one value constant folding makes at load                 64 MiB
``fold_seconds``            constant folding of one compile, in total                10 s
``max_function_depth``      nesting of function calls (If/While/Case/calls)          64
``max_graph_nodes``         nodes of one graph or function read from a file          10**7
``max_loop_iterations``     iterations of one While or For loop in one evaluation    none
``max_loop_seconds``        seconds one While or For loop may run in one evaluation  none
==========================  =======================================================  ========

A loop is bounded only when asked (TF runs a loop for as long as its condition holds, and so
does tfdeploy by default): a server evaluating models from strangers sets one of the two, or
evaluates under a :func:`deadline` of its own, as ``tfdeploy serve`` does with its request
timeout, so that a loop an input keeps going frees its thread with a clean error.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time

import numpy as np

from tfdeploy.errors import ResourceExhaustedError, TFDeployError

_MIB = 1 << 20
#: numpy's largest array in bytes (its sizes are intp)
_LARGEST_ARRAY = int(np.iinfo(np.intp).max)


def _available_memory() -> int:
    """The memory this process could still get (Linux MemAvailable), or a guess of 4 GiB."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


class Limits:
    """The limits in force (one instance, ``LIMITS``); ``None`` max_tensor_bytes means the
    default, a quarter of the memory available when first needed."""

    __slots__ = ("max_header_bytes", "_max_tensor_bytes", "fold_bytes", "fold_seconds",
                 "max_function_depth", "max_graph_nodes", "max_loop_iterations",
                 "max_loop_seconds")

    def __init__(self):
        self.max_header_bytes = 256 * _MIB
        self._max_tensor_bytes: int | None = None
        self.fold_bytes = 64 * _MIB
        self.fold_seconds = 10.0
        self.max_function_depth = 64
        self.max_graph_nodes = 10_000_000
        self.max_loop_iterations: int | None = None
        self.max_loop_seconds: float | None = None

    @property
    def max_tensor_bytes(self) -> int:
        if self._max_tensor_bytes is None:
            self._max_tensor_bytes = max(64 * _MIB, _available_memory() // 4)
        return self._max_tensor_bytes

    @max_tensor_bytes.setter
    def max_tensor_bytes(self, value: int | None) -> None:
        self._max_tensor_bytes = value


LIMITS = Limits()

_NAMES = ("max_header_bytes", "max_tensor_bytes", "fold_bytes", "fold_seconds",
          "max_function_depth", "max_graph_nodes", "max_loop_iterations", "max_loop_seconds")
#: limits whose default is None (computed, or no limit)
_NONE_DEFAULT = ("max_tensor_bytes", "max_loop_iterations", "max_loop_seconds")
#: limits in seconds (any positive number; the others are positive integers)
_SECONDS = ("fold_seconds", "max_loop_seconds")


def configure(**limits) -> None:
    """Set limits by name (see the module docstring); ``None`` restores a default. Takes
    effect for files loaded and plans compiled afterwards, and for kernels at once."""
    defaults = Limits()
    for name, value in limits.items():
        if name not in _NAMES:
            raise TFDeployError(f"unknown limit {name!r}; the limits are {list(_NAMES)}")
        if value is None:
            value = None if name in _NONE_DEFAULT else getattr(defaults, name)
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not value > 0 or (name not in _SECONDS and not float(value).is_integer()):
            raise TFDeployError(f"limit {name} must be a positive "
                                f"{'number' if name in _SECONDS else 'integer'}, "
                                f"got {value!r}")
        elif name not in _SECONDS:
            value = int(value)
        else:
            value = float(value)
        setattr(LIMITS, name, value)


def current() -> dict:
    """The limits in force, by name."""
    return {name: getattr(LIMITS, name) for name in _NAMES}


_local = threading.local()


@contextlib.contextmanager
def folding():
    """Within it (constant folding at load, in this thread), the largest tensor an op may make
    is ``fold_bytes``: a file's constants cannot make loading allocate more."""
    old = getattr(_local, "limit", None)
    _local.limit = min(LIMITS.fold_bytes, LIMITS.max_tensor_bytes)
    try:
        yield
    finally:
        _local.limit = old


def tensor_limit() -> int:
    """The largest tensor (bytes) an op may make now, in this thread."""
    limit = getattr(_local, "limit", None)
    return LIMITS.max_tensor_bytes if limit is None else limit


def loop_limit() -> int:
    """The most iterations one loop may run now (``max_loop_iterations``, or no limit)."""
    n = LIMITS.max_loop_iterations
    return n if n is not None else 1 << 62


def too_many_iterations(n: int) -> ResourceExhaustedError:
    return ResourceExhaustedError(
        f"the loop ran {n} iterations, the most one loop may run "
        f"(td.setup(max_loop_iterations=...))")


@contextlib.contextmanager
def deadline(seconds: float):
    """Within it (in this thread), a While or For loop still running ``seconds`` from now stops
    with ResourceExhaustedError: a server's request timeout (``serve/server.py``)."""
    old = getattr(_local, "deadline", None)
    end = time.monotonic() + seconds
    _local.deadline = end if old is None else min(old, end)
    try:
        yield
    finally:
        _local.deadline = old


def loop_deadline() -> float | None:
    """The ``time.monotonic()`` past which a loop starting now must stop
    (``max_loop_seconds``, or this thread's :func:`deadline`), or None: loops compare it after
    each iteration."""
    s = LIMITS.max_loop_seconds
    end = None if s is None else time.monotonic() + s
    d = getattr(_local, "deadline", None)
    return d if d is not None and (end is None or d < end) else end


def check_rows(n: int, deadline: float | None, every: int = 1024) -> None:
    """For a kernel's loop over rows (a substitution): raise :func:`too_long` if ``deadline``
    (from :func:`loop_deadline`) has passed, looking at the clock every ``every`` rows."""
    if deadline is not None and not n % every and time.monotonic() > deadline:
        raise too_long()


def too_long() -> ResourceExhaustedError:
    d = getattr(_local, "deadline", None)
    if d is not None and time.monotonic() > d:
        return ResourceExhaustedError("the loop was still running when the evaluation's "
                                      "deadline passed (a server's request timeout)")
    return ResourceExhaustedError(
        f"the loop ran {LIMITS.max_loop_seconds:g} s, the longest one loop may run "
        f"(td.setup(max_loop_seconds=...))")


def check_elements(shape, itemsize: int, what: str = "the output") -> None:
    """Raise ResourceExhaustedError if a tensor of ``shape`` (ints) with items of ``itemsize``
    bytes would exceed the tensor limit; called *before* allocating it. Object (string) items
    count as 8 bytes."""
    n = 1
    for d in shape:
        n *= max(int(d), 0)
    limit = tensor_limit()
    if n * max(itemsize, 1) > limit:
        raise ResourceExhaustedError(
            f"{what} would have shape {list(shape)} ({n} elements of {itemsize} bytes), over "
            f"the largest tensor an op may make ({limit} bytes; td.setup(max_tensor_bytes=...))")
    if not n:  # (numpy refuses an empty shape whose other dims overflow its sizes)
        m = max(itemsize, 1)
        for d in shape:
            m *= max(int(d), 1)
        if m > _LARGEST_ARRAY:
            raise ResourceExhaustedError(
                f"{what} would have shape {list(shape)}: empty, but its nonzero dims make more "
                f"bytes than numpy can index ({m} > 2**63 - 1)")


def check_array(shape, dtype, what: str = "the output") -> None:
    """:func:`check_elements` for a numpy dtype."""
    check_elements(shape, max(np.dtype(dtype).itemsize, 8 if np.dtype(dtype) == object else 1),
                   what)


#: what an empty operand counts for in a caller's cheap test (a product of sizes): enough to
#: send it to the checks below, as its size bounds nothing: its other dims may be 2**40 (numpy
#: refuses a result whose dims overflow, with its own "array is too big"), and a product over
#: a dim of 0 is anything ([m, 0] @ [0, n] is m * n zeros)
EMPTY_SIZE = 1 << 40


def _bound(a) -> int:
    """What ``a`` counts for in a product of sizes bounding a result's: its size, or for an
    empty one the product of its nonzero dims (bounding the result's nonzero dims)."""
    return a.size or math.prod([d or 1 for d in a.shape])


def check_broadcast(*arrays, what: str = "the broadcast result") -> None:
    """Check the shape ``arrays`` broadcast to, when it could be large: a cheap test (product
    of sizes, an empty operand's nonzero dims counting) first, so the common case costs
    almost nothing."""
    n = 1
    for a in arrays:
        n *= _bound(a)
    if n * 16 <= tensor_limit():
        return
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        return  # the kernel raises its own error
    check_elements(shape, max(a.dtype.itemsize for a in arrays), what)


def check_matmul(x, y, adj_x: bool = False, adj_y: bool = False,
                 what: str = "the matrix product") -> None:
    """Check the shape of ``x @ y`` (batch dims broadcast; ``adj_*``: that operand's last two
    dims swapped), when it could be large: as :func:`check_broadcast` (with an inner dim of
    at least 1, the product has at most ``x.size * y.size`` elements; with an inner dim of 0,
    [m, 0] @ [0, n] is m * n zeros, the product of their nonzero dims)."""
    if _bound(x) * _bound(y) * 16 <= tensor_limit() or \
            x.ndim < 2 or y.ndim < 2:
        return
    try:
        batch = np.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    except ValueError:
        return  # the kernel raises its own error
    rows, cols = x.shape[-1 if adj_x else -2], y.shape[-2 if adj_y else -1]
    check_elements(batch + (rows, cols), max(x.dtype.itemsize, y.dtype.itemsize), what)
