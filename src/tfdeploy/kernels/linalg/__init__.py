"""Linear algebra kernels."""

from tfdeploy.kernels.linalg import (  # noqa: F401
    core,
)
