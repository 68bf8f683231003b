"""Every conformance case in tests/cases, run against TensorFlow."""

import pytest

pytest.importorskip("tensorflow")

from cases import collect  # noqa: E402
from harness import check_case  # noqa: E402

pytestmark = pytest.mark.tf

CASES = collect()


def _params(dynamic: bool):
    for c in CASES:
        if dynamic and not c.dynamic:
            continue
        marks = [pytest.mark.xfail(reason=c.xfail, strict=True)] if c.xfail else []
        yield pytest.param(c, id=c.id, marks=marks)


@pytest.mark.parametrize("case", list(_params(False)))
def test_case(case):
    check_case(case)


@pytest.mark.parametrize("case", list(_params(True)))
def test_case_dynamic(case):
    check_case(case, dynamic=True)


def _scipy_params():
    import tfdeploy.registry as reg

    for c in CASES:
        if any(reg.IMPL_SCIPY in (reg.get_opdef(o).impls if reg.get_opdef(o) else ())
               for o in c.ops):
            marks = [pytest.mark.xfail(reason=c.xfail, strict=True)] if c.xfail else []
            yield pytest.param(c, id=c.id, marks=marks)


@pytest.mark.parametrize("case", list(_scipy_params()))
def test_case_scipy(case):
    """Every case of an op with a scipy implementation, run again with IMPL_SCIPY."""
    pytest.importorskip("scipy")
    import tfdeploy as td

    td.setup(None, td.IMPL_SCIPY)
    try:
        check_case(case)
    finally:
        td.setup(None, td.IMPL_NUMPY)


def test_every_registered_op_has_a_case():
    from graphs import builtin_op_types

    covered = {o for c in CASES for o in c.ops}
    # ops the plan handles itself; calls the converter inlines and TensorArrayCloseV3, which it
    # prunes: all tested on hand-built graphs in test_control_models.py
    covered |= {"Placeholder", "Const", "PartitionedCall", "StatefulPartitionedCall",
                "TensorArrayCloseV3"}
    missing = sorted(set(builtin_op_types()) - covered)
    assert not missing, f"registered ops without a conformance case: {missing}"
