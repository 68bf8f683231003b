"""Comparisons and logical ops: Equal, Less, LogicalAnd... (boolean results, broadcasting)."""

from __future__ import annotations

import numpy as np

from tfdeploy.kernels.common import as_array, op


def _broadcastable(x: np.ndarray, y: np.ndarray) -> bool:
    try:
        np.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        return False
    return True


@op("Equal")
def Equal(x, y, *, incompatible_shape_error=True):
    """Equal: x == y, broadcasting; with incompatible shapes and the attr off, a scalar False."""
    if not incompatible_shape_error and not _broadcastable(x, y):
        return np.asarray(False)
    return as_array(np.equal(x, y))


@op("NotEqual")
def NotEqual(x, y, *, incompatible_shape_error=True):
    """NotEqual: x != y, broadcasting; with incompatible shapes and the attr off, a scalar True."""
    if not incompatible_shape_error and not _broadcastable(x, y):
        return np.asarray(True)
    return as_array(np.not_equal(x, y))


@op("Less")
def Less(x, y):
    """Less: x < y."""
    return as_array(np.less(x, y))


@op("LessEqual")
def LessEqual(x, y):
    """LessEqual: x <= y."""
    return as_array(np.less_equal(x, y))


@op("Greater")
def Greater(x, y):
    """Greater: x > y."""
    return as_array(np.greater(x, y))


@op("GreaterEqual")
def GreaterEqual(x, y):
    """GreaterEqual: x >= y."""
    return as_array(np.greater_equal(x, y))


@op("ApproximateEqual")
def ApproximateEqual(x, y, *, tolerance=1e-5):
    """ApproximateEqual: |x - y| < tolerance."""
    return as_array(np.abs(np.subtract(x, y)) < tolerance)


@op("LogicalAnd")
def LogicalAnd(x, y):
    """LogicalAnd: x and y."""
    return as_array(np.logical_and(x, y))


@op("LogicalOr")
def LogicalOr(x, y):
    """LogicalOr: x or y."""
    return as_array(np.logical_or(x, y))


@op("LogicalNot")
def LogicalNot(x):
    """LogicalNot: not x."""
    return as_array(np.logical_not(x))
