"""Special functions: error and gamma functions, Bessel functions, and the rest."""

from tfdeploy.kernels.special import (  # noqa: F401
    bessel,
    erf_gamma,
    functions,
)
