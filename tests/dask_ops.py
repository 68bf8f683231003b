"""A slow custom op for tests/test_dask.py, imported on the Dask workers by a plugin."""

from __future__ import annotations

import time

import tfdeploy as td

#: seconds each call sleeps: long enough to kill a worker while a block runs
DELAY = 0.1


@td.Operation.factory
def SlowIdentity(a):
    """The input, after a pause (a stand-in for a heavy model)."""
    time.sleep(DELAY)
    return a.copy(),


def blockwise(path: str, x, rows: tuple[int, ...]):
    """The model of ``path`` applied to consecutive blocks of ``rows`` rows of ``x``, as plain
    tfdeploy does it in this process (a Dask worker's, whose BLAS runs one thread)."""
    import numpy as np

    model = td.load(path)
    starts = np.cumsum((0,) + tuple(rows))
    return np.concatenate([model(x[a:b]) for a, b in zip(starts[:-1], starts[1:])])
