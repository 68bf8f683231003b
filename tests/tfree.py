"""Evaluate saved models in a fresh process where TensorFlow cannot be imported."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

_CHILD = r"""
import sys
from tfdeploy._blocktf import block
block()
import numpy as np
import tfdeploy as td
out_path = sys.argv[-1]
inputs = np.load(sys.argv[-2], allow_pickle=False)
results = {}
for path in sys.argv[1:-2]:
    m = td.Model(path)
    got = m(*[inputs[f"x{i}"] for i in range(len(inputs.files))])
    got = got if isinstance(got, tuple) else (got,)
    for j, g in enumerate(got):
        # object arrays (strings) cannot be saved without pickle: fixed-width bytes instead
        results[f"{len(results)}"] = g.astype(bytes) if g.dtype == object else g
assert not any(k.split(".")[0] in ("tensorflow", "keras", "tf_keras") for k in sys.modules)
np.savez(out_path, **results)
"""


def run_without_tf(paths, inputs, tmp_path) -> list[np.ndarray]:
    """Outputs of each model file in ``paths`` on ``inputs``, computed without TensorFlow."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    inp = os.path.join(tmp_path, "inputs.npz")
    out = os.path.join(tmp_path, "outputs.npz")
    np.savez(inp, **{f"x{i}": x for i, x in enumerate(inputs)})
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-c", _CHILD, *map(str, paths), inp, out],
                       capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        raise AssertionError(f"TF-free evaluation failed:\n{r.stdout}\n{r.stderr}")
    with np.load(out, allow_pickle=False) as z:
        res = [z[str(i)] for i in range(len(z.files))]
    return [r.astype(object) if r.dtype.kind == "S" else r for r in res]
