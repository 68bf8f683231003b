"""Ensembles: several models evaluated together, their outputs combined."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tfdeploy.errors import TFDeployError
from tfdeploy.model import Model, Tensor

METHOD_MEAN = "mean"
METHOD_MAX = "max"
METHOD_MIN = "min"
METHOD_CUSTOM = "custom"
METHODS = (METHOD_MEAN, METHOD_MAX, METHOD_MIN, METHOD_CUSTOM)


class TensorEnsemble:
    """One tensor name across every model of an ensemble; a feed key and an eval target."""

    def __init__(self, tensors: Sequence[Tensor], method: str = METHOD_MEAN):
        if method not in METHODS:
            raise TFDeployError(f"unknown ensemble method {method!r}; expected one of {METHODS}")
        self.tensors = list(tensors)
        self.method = method

    @staticmethod
    def func_custom(values: list[np.ndarray]) -> np.ndarray:
        """Combine the models' values for METHOD_CUSTOM; override it on the instance or class."""
        raise TFDeployError("METHOD_CUSTOM needs func_custom to be overridden")

    def eval(self, feed_dict: Mapping | None = None) -> np.ndarray:
        values = []
        for i, t in enumerate(self.tensors):
            feed = {}
            for k, v in (feed_dict or {}).items():
                if isinstance(k, TensorEnsemble):
                    if len(k.tensors) != len(self.tensors):
                        raise TFDeployError("feed and fetch come from different ensembles")
                    feed[k.tensors[i]] = v
                else:
                    feed[k] = v
            values.append(t.eval(feed))
        return self.combine(values)

    def combine(self, values: list[np.ndarray]) -> np.ndarray:
        if self.method == METHOD_CUSTOM:
            return self.func_custom(values)
        stacked = np.stack(values)
        if self.method == METHOD_MEAN:
            return stacked.mean(axis=0).astype(stacked.dtype, copy=False)
        if self.method == METHOD_MAX:
            return stacked.max(axis=0)
        return stacked.min(axis=0)


class Ensemble:
    """Load several model files (or take Model objects) and evaluate them as one."""

    def __init__(self, paths: Sequence = (), method: str = METHOD_MEAN):
        if method not in METHODS:
            raise TFDeployError(f"unknown ensemble method {method!r}; expected one of {METHODS}")
        self.models = [p if isinstance(p, Model) else Model(p) for p in paths]
        self.method = method

    def get(self, *names: str, key: str | None = None):
        if not self.models:
            raise TFDeployError("the ensemble has no models")
        out = tuple(TensorEnsemble([m.get(n, key=key) for m in self.models], self.method)
                    for n in names)
        return out[0] if len(out) == 1 else out

    def eval(self, tensors, feed_dict: Mapping | None = None):
        if isinstance(tensors, TensorEnsemble):
            return tensors.eval(feed_dict)
        return [t.eval(feed_dict) for t in tensors]
