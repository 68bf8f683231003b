"""Array kernels: creation, shapes, slicing, joining, gather/scatter, segments."""

from tfdeploy.kernels.array import (  # noqa: F401
    core,
    index,
    segment,
    space,
)
