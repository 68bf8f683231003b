"""Special functions at the edges TF's own kernels cannot show (it reads subnormal inputs as
zero): tfdeploy keeps subnormals, as numpy does, so its values there are the functions' own,
with numpy and with scipy alike (docs/ops.md: the subnormal deviation)."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from tfdeploy import registry

_TINY = np.array([5e-324, 1e-310, 1e-305])


def _impls(op: str):
    """The op's implementations, scipy's only where scipy is installed (it is optional)."""
    d = registry.get_opdef(op)
    return sorted((impl, k) for impl, k in d.impls.items()
                  if impl != registry.IMPL_SCIPY or importlib.util.find_spec("scipy"))


@pytest.mark.parametrize("op", ["BesselK1", "BesselK1e"])
def test_bessel_k1_of_subnormals_is_one_over_x(op):
    """(K1 = 1/x + x/2 log(x/2) I1... : log(x/2) was -inf where x/2 underflows, and -inf * 0
    made NaN; scipy's k1 is NaN there too.)"""
    for impl, kernel in _impls(op):
        with np.errstate(over="ignore"):
            want = 1 / _TINY
        np.testing.assert_allclose(kernel(_TINY), want, rtol=1e-12, err_msg=str(impl))


@pytest.mark.parametrize("op", ["BesselK0", "BesselK0e"])
def test_bessel_k0_of_subnormals_is_finite(op):
    """K0(x) = -log(x/2) - euler_gamma + O(x^2 log x): ~744 at the smallest subnormal (inf
    before, where x/2 underflows; scipy's k0 is inf there)."""
    for impl, kernel in _impls(op):
        want = [-math.log(v) + math.log(2) - 0.5772156649015329 for v in _TINY]
        np.testing.assert_allclose(kernel(_TINY), want, rtol=1e-12, err_msg=str(impl))
