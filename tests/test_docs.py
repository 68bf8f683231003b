"""Generated documentation stays current."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.tf
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ops_doc_is_current():
    pytest.importorskip("tensorflow")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "gen_ops.py"), "--check"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr + "\n(run: python docs/gen_ops.py)"


def test_readme_states_the_op_count():
    from graphs import builtin_op_types

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    n = len(builtin_op_types())
    assert f"**Ops:** {n} TensorFlow op types" in readme, f"README should say {n} op types"
