"""Make TensorFlow (and Keras) impossible to import in this process.

Used by ``tfdeploy example`` and the tests to prove evaluation never needs TensorFlow.
"""

from __future__ import annotations

import importlib.abc
import sys

BLOCKED = ("tensorflow", "keras", "tf_keras", "tensorboard")


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: tfdeploy must evaluate without TensorFlow")
        return None


def block() -> None:
    for m in list(sys.modules):
        if m.split(".")[0] in BLOCKED:
            raise RuntimeError(f"{m} was imported before TensorFlow could be blocked")
    sys.meta_path.insert(0, _Blocker())
