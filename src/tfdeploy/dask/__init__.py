"""Batch inference on Dask: a tfdeploy model mapped over the row blocks of dask arrays and the
partitions of dask DataFrames, on any Dask scheduler (threads, processes, ``distributed``).

Workers need numpy, dask and tfdeploy, never TensorFlow. The model travels as a small picklable
:class:`ModelRef` (its file's path and content hash) in every task, plus, where the workers
cannot read the file, the file's bytes as **one** key of the graph that every task depends on:
each worker fetches it once, not once per chunk, and Dask can recompute it if a worker dies.
Each worker process loads a model once and keeps it in a small LRU cache keyed by the content
hash, memory-mapping the file when it can reach it.

    import tfdeploy.dask as tdd
    y = tdd.predict("model.tfd", x)                    # x: a dask array chunked by rows
    out = tdd.predict_partitions("model.tfd", ddf, columns=["a", "b", "c"])
"""

from __future__ import annotations

try:
    import dask  # noqa: F401
    import dask.array  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"tfdeploy.dask needs Dask ({e}): install the extra with "
        "pip install 'tfdeploy[dask]' (dask[array,dataframe] and distributed)") from e

from .arrays import predict  # noqa: E402
from .frames import predict_partitions  # noqa: E402
from .models import ModelRef, RegisterOps, Setup, cache_info, clear_cache  # noqa: E402

__all__ = ["ModelRef", "RegisterOps", "Setup", "predict", "predict_partitions", "cache_info",
           "clear_cache"]
