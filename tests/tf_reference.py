"""TensorFlow's reference kernels, for the cases whose values TF computes otherwise with oneDNN.

``outputs(case_id)`` runs a conformance case in a child process whose TensorFlow has oneDNN off
(``TF_ENABLE_ONEDNN_OPTS=0``), started once on first use and kept for the session. Run as a
script, this module is that child: it reads case ids on stdin and answers each with the path of
an ``.npz`` file holding TF's outputs (or ``error: ...``).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
_child: list = []


def _start() -> subprocess.Popen:
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__)], cwd=HERE, env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    atexit.register(_stop, p)
    return p


def _stop(p: subprocess.Popen) -> None:
    """End the child at exit: its stdin closed (it stops at end of input), reaped, killed if
    it does not stop, its pipes closed (no "still running" or unclosed-file warnings)."""
    try:
        p.stdin.close()
        p.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        p.kill()
        p.wait()
    p.stdout.close()


def outputs(case_id: str) -> list[np.ndarray]:
    """TF's outputs for the case, computed with TF's reference (non-oneDNN) kernels."""
    if not _child or _child[0].poll() is not None:
        _child[:] = [_start()]
    p = _child[0]
    p.stdin.write(case_id + "\n")
    p.stdin.flush()
    line = p.stdout.readline().strip()
    if not line or line.startswith("error:"):
        raise RuntimeError(f"reference TF child failed on {case_id!r}: {line or 'it exited'}")
    try:
        with np.load(line, allow_pickle=False) as z:
            names = [str(n) for n in z["dtypes"]]
            return [_restore(z[f"arr_{i}"], n) for i, n in enumerate(names)]
    finally:
        os.unlink(line)


def _restore(a: np.ndarray, name: str) -> np.ndarray:
    """An array saved as raw bits (``a``, see ``_serve``) back in its dtype ``name``."""
    if a.dtype.name == name:
        return a
    import ml_dtypes  # noqa: F401  (numpy learns "bfloat16" and friends by name)

    return a.view(np.dtype(getattr(ml_dtypes, name)))


def _serve() -> None:
    sys.path.insert(0, HERE)
    from tensorflow.python.util import _pywrap_util_port

    if _pywrap_util_port.IsMklEnabled():
        print("error: TF_ENABLE_ONEDNN_OPTS=0 did not turn oneDNN off", flush=True)
        return
    from cases import collect
    from harness import run_tf, tf_function

    cases = {c.id: c for c in collect()}
    for line in sys.stdin:
        case_id = line.strip()
        try:
            case = cases[case_id]
            inputs = case.make_inputs()
            outs = run_tf(tf_function(case.fn, inputs), inputs)
            fd, path = tempfile.mkstemp(suffix=".npz")
            # npz knows numpy's own dtypes only: bfloat16 and friends travel as raw bits
            raw = [o if o.dtype.isbuiltin else o.view(f"u{o.itemsize}") for o in outs]
            with os.fdopen(fd, "wb") as f:
                np.savez(f, *raw, dtypes=np.array([o.dtype.name for o in outs]))
        except Exception as e:  # noqa: BLE001  (reported to the parent, which fails the test)
            print(f"error: {type(e).__name__}: {e}".replace("\n", " "), flush=True)
            continue
        print(path, flush=True)


if __name__ == "__main__":
    _serve()
