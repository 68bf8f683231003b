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
