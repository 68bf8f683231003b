"""Ragged tensor kernels."""

from tfdeploy.kernels.ragged import (  # noqa: F401
    core,
)
