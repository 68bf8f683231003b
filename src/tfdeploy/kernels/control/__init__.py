"""Functional control flow: While, If, Case, For and function calls."""

from tfdeploy.kernels.control import (  # noqa: F401
    flow,
)
