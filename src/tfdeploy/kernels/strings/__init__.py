"""String kernels."""

from tfdeploy.kernels.strings import (  # noqa: F401
    core,
    hash,
    regex,
    unicode,
)
