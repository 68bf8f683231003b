"""tfdeploy: TensorFlow models converted once, evaluated with numpy alone.

Importing tfdeploy never imports TensorFlow; only :func:`convert` and ``Model.add`` do.
"""

from __future__ import annotations

from tfdeploy import registry as _registry
from tfdeploy._version import __version__

# Import the converter package now (it imports TensorFlow only when called) so that the
# function below, not the subpackage, stays bound to the name `tfdeploy.convert`.
from . import convert as _convert_package  # noqa: E402, F401
from .ensemble import (  # noqa: E402
    METHOD_CUSTOM,
    METHOD_MAX,
    METHOD_MEAN,
    METHOD_MIN,
    Ensemble,
    TensorEnsemble,
)
from .errors import (  # noqa: E402
    ConversionError,
    ExecutionError,
    FeedError,
    FileFormatError,
    GraphError,
    ResourceExhaustedError,
    TFDeployError,
    UnsupportedOpError,
    VerificationError,
)
from .model import Model, Tensor, load  # noqa: E402
from .operation import Operation, get_op  # noqa: E402
from .registry import IMPL_NUMPY, IMPL_SCIPY  # noqa: E402

__all__ = [
    "Model", "Tensor", "Operation", "Ensemble", "TensorEnsemble", "convert", "load", "setup",
    "get_op", "IMPL_NUMPY", "IMPL_SCIPY", "METHOD_MEAN", "METHOD_MAX", "METHOD_MIN",
    "METHOD_CUSTOM", "TFDeployError", "ConversionError", "ExecutionError", "FeedError",
    "FileFormatError", "GraphError", "ResourceExhaustedError", "UnsupportedOpError",
    "VerificationError", "__version__",
]


def setup(tf=None, impl: str | None = None, order=None, *,
          tf_intra_op_threads: int | None = None, threads: int | None = None,
          blas_threads: int | None = None, recycle_mb: int | None = None,
          heap_mb: int | None = None, deterministic: bool | None = None, **limits) -> None:
    """Classic set-up. ``tf`` is accepted for compatibility (conversion imports TensorFlow
    itself); ``impl`` (e.g. ``td.IMPL_SCIPY``) makes every op that has that implementation use
    it, the others stay numpy. Applies to plans compiled afterwards.

    ``threads``: how many threads one evaluation may use (default: the CPUs this process may
    run on); large steps split into blocks over them. ``blas_threads``: the BLAS library's
    own thread count, which tfdeploy otherwise sets to 1 at its first evaluation (unless
    ``OPENBLAS_NUM_THREADS`` or the like is set): a multi-threaded BLAS is what makes more
    threads slower on a busy machine (see ``runtime/threads.py``). Both take effect at once.

    ``recycle_mb``: how many MB of large convolution results each thread keeps to reuse once
    nothing holds them (default 512): a repeated call with the same shapes then allocates
    nothing large, at the cost of keeping that memory between calls; 0 turns it off.
    ``heap_mb``: how many MB of freed memory the process's C heap (glibc) keeps for the next
    call's arrays instead of returning it to the system, which would fault fresh pages in
    again (default 256; set at the first evaluation, with large blocks served from the heap
    and threads sharing it, see ``runtime/heap.py``); 0 leaves glibc's allocator alone.

    ``deterministic``: True makes every choice tfdeploy would measure on this machine (the
    form of a product of a few rows, Winograd or im2col for some 3x3 convolutions, ``exp2``
    or ``exp`` in a swish) take its default form instead, so that every process on one
    machine computes the same rows bit for bit: measured, two processes (Dask workers, a
    server's) can time two close forms differently and give results that differ in the last
    bit. It costs the speed those choices gain (up to 2x on wide Dense layers at batch 2-8).
    Set it before the first evaluation (a plan keeps the swish's choice it was built with),
    or start the processes with ``TFDEPLOY_DETERMINISTIC=1``; False measures again. The bits
    still depend on the machine's BLAS kernels and on ``threads``.

    ``tf_intra_op_threads``: the intra-op thread count of the TensorFlow whose values to
    reproduce where they depend on it (the parameterized truncated normals beyond ~800
    outputs); default: TF's own default on this machine. Takes effect immediately.

    Resource limits (docs/security.md; ``None`` restores the default): ``max_header_bytes``
    (a model file's JSON header, 256 MiB), ``max_tensor_bytes`` (one tensor an op makes,
    checked before allocating; a quarter of the available memory), ``fold_bytes`` (one value
    made by constant folding, 64 MiB), ``fold_seconds`` (constant folding of one compile,
    10 s), ``max_function_depth`` (nested function calls, 64), ``max_graph_nodes`` (nodes of
    one graph read from a file, 10**7), ``max_loop_iterations`` (iterations of one loop in
    one evaluation; none by default, as TF), ``max_loop_seconds`` (the time one loop may run
    in one evaluation; none by default). ``tfdeploy.runtime.limits.current()`` shows
    them."""
    if limits:
        from tfdeploy.runtime import limits as _limits

        _limits.configure(**limits)
    if threads is not None or blas_threads is not None:
        from tfdeploy.runtime import threads as _threads

        _threads.configure(threads, blas_threads)
    if recycle_mb is not None:
        from tfdeploy.kernels.nn import scratch

        scratch.keep_outputs(recycle_mb)
    if heap_mb is not None:
        from tfdeploy.runtime import heap

        heap.configure(heap_mb)
    if deterministic is not None:
        from tfdeploy.numerics import ufunc_speed

        ufunc_speed.set_measuring(not deterministic)
    if tf_intra_op_threads is not None:
        from tfdeploy.kernels.random import binomial as random_binomial

        n = int(tf_intra_op_threads)
        if n < 1:
            raise ValueError(f"tf_intra_op_threads must be at least 1, got {n}")
        random_binomial.INTRA_OP_THREADS = n
    if impl is None and order is None and (limits or any(v is not None for v in (
            tf_intra_op_threads, threads, blas_threads, recycle_mb, heap_mb, deterministic))):
        return
    impl = impl if impl is not None else order
    if isinstance(impl, (list, tuple)):
        impl = impl[0] if impl else None
    _registry.set_default_impl(impl or IMPL_NUMPY)


def convert(source, input_signature=None, *, signature: str | None = None, inputs=None,
            outputs=None, sess=None, key: str | None = None, checkpoint: str | None = None,
            variables: dict | None = None, check_data: bool = True, progress=None) -> Model:
    """Convert a TensorFlow model to a :class:`Model`.

    ``source`` is one of: a Keras 3 or tf_keras model; a ``tf.function`` (with its own
    input_signature, or ``input_signature=[tf.TensorSpec(...)]`` or example arrays); a
    ConcreteFunction; a SavedModel directory (``signature=`` picks one, default
    ``serving_default``); a ``.keras`` or ``.h5`` file; a frozen GraphDef (``.pb`` path or
    object) with ``inputs=`` and ``outputs=`` tensor names (an unfrozen one with
    ``checkpoint=`` or ``variables=`` giving its variables' values); or a TF1 tensor (or list)
    with ``sess=``.

    ``check_data`` (default on): also store in the model a small generated input and
    TensorFlow's outputs on it (a few KB), which ``td.load(path, verify=True)`` and
    ``tfdeploy check`` compare against. ``progress``: called with the name of each stage.
    """
    m = Model()
    m.add(source, sess=sess, key=key, input_signature=input_signature, signature=signature,
          inputs=inputs, outputs=outputs, checkpoint=checkpoint, variables=variables,
          check_data=check_data, progress=progress)
    return m


def _load_kernels() -> None:
    from tfdeploy import kernels  # noqa: F401  (importing registers every built-in kernel)


# the registry sits below the kernels: they load on its first lookup, not at `import tfdeploy`
_registry.set_builtin_loader(_load_kernels)
