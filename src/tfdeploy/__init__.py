"""tfdeploy: TensorFlow models converted once, evaluated with numpy alone.

Importing tfdeploy never imports TensorFlow; only :func:`convert` and ``Model.add`` do.
"""

from __future__ import annotations

__version__ = "1.0.0.dev0"

# Import the converter package now (it imports TensorFlow only when called) so that the
# function below, not the subpackage, stays bound to the name `tfdeploy.convert`.
from . import convert as _convert_package  # noqa: E402
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
    "FileFormatError", "GraphError", "UnsupportedOpError", "VerificationError", "__version__",
]


def setup(tf=None, impl: str | None = None, order=None, *,
          tf_intra_op_threads: int | None = None) -> None:
    """Classic set-up. ``tf`` is accepted for compatibility (conversion imports TensorFlow
    itself); ``impl`` (e.g. ``td.IMPL_SCIPY``) makes every op that has that implementation use
    it, the others stay numpy. Applies to plans compiled afterwards.

    ``tf_intra_op_threads``: the intra-op thread count of the TensorFlow whose values to
    reproduce where they depend on it (the parameterized truncated normals beyond ~800
    outputs); default: TF's own default on this machine. Takes effect immediately."""
    from . import registry

    if tf_intra_op_threads is not None:
        from .ops import random_binomial

        n = int(tf_intra_op_threads)
        if n < 1:
            raise ValueError(f"tf_intra_op_threads must be at least 1, got {n}")
        random_binomial.INTRA_OP_THREADS = n
    if impl is None and order is None and tf_intra_op_threads is not None:
        return
    impl = impl if impl is not None else order
    if isinstance(impl, (list, tuple)):
        impl = impl[0] if impl else None
    registry.set_default_impl(impl or IMPL_NUMPY)


def convert(source, input_signature=None, **kwargs) -> Model:
    """Convert a TensorFlow model to a :class:`Model`; see :func:`tfdeploy.convert.convert`
    (``check_data=False`` stores no check input and TensorFlow outputs in the model)."""
    return _convert_package.convert(source, input_signature=input_signature, **kwargs)
