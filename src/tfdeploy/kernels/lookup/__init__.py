"""Lookup tables frozen into data."""

from tfdeploy.kernels.lookup import (  # noqa: F401
    tables,
)
