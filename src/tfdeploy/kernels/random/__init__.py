"""Random kernels: TF's Philox streams, bit-exact."""

from tfdeploy.kernels.random import (  # noqa: F401
    binomial,
    gamma,
    stateless,
)
