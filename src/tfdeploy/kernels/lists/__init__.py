"""TensorList and TensorArray kernels."""

from tfdeploy.kernels.lists import (  # noqa: F401
    tensorarray,
    tensorlist,
)
