"""Every keras.applications network: convert, save, evaluate without TF, compare logits.

Random weights (weights=None) and random inputs, at the smallest input size each model allows,
with classifier_activation=None so the comparison sees logits. Agreement: within 1e-4 of the
output's scale.
"""

from __future__ import annotations

import numpy as np
import pytest

import tfdeploy as td
from tfree import run_without_tf

tf = pytest.importorskip("tensorflow")
pytestmark = [pytest.mark.tf, pytest.mark.slow]

# (name, smallest input side); Keras 3 and tf_keras share most of them
APPS = [
    ("ConvNeXtTiny", 32), ("ConvNeXtSmall", 32), ("ConvNeXtBase", 32), ("ConvNeXtLarge", 32),
    ("ConvNeXtXLarge", 32),
    ("DenseNet121", 32), ("DenseNet169", 32), ("DenseNet201", 32),
    ("EfficientNetB0", 32), ("EfficientNetB1", 32), ("EfficientNetB2", 32),
    ("EfficientNetB3", 32), ("EfficientNetB4", 32), ("EfficientNetB5", 32),
    ("EfficientNetB6", 32), ("EfficientNetB7", 32),
    ("EfficientNetV2B0", 32), ("EfficientNetV2B1", 32), ("EfficientNetV2B2", 32),
    ("EfficientNetV2B3", 32), ("EfficientNetV2S", 32), ("EfficientNetV2M", 32),
    ("EfficientNetV2L", 32),
    ("InceptionResNetV2", 75), ("InceptionV3", 75),
    ("MobileNet", 32), ("MobileNetV2", 32), ("MobileNetV3Small", 32), ("MobileNetV3Large", 32),
    ("NASNetMobile", 32), ("NASNetLarge", 32),
    ("ResNet50", 32), ("ResNet101", 32), ("ResNet152", 32),
    ("ResNet50V2", 32), ("ResNet101V2", 32), ("ResNet152V2", 32),
    ("VGG16", 32), ("VGG19", 32), ("Xception", 71),
]
REGNETS = [f"RegNet{k}{s}" for k in "XY" for s in
           ("002", "004", "006", "008", "016", "032", "040", "064", "080", "120", "160", "320")]


def _build(k, name: str, side: int):
    ctor = getattr(k.applications, name)
    kw = dict(weights=None, input_shape=(side, side, 3), classes=10)
    if "NASNet" in name or name.startswith("MobileNetV3"):
        kw["input_shape"] = (side, side, 3)
    try:
        return ctor(classifier_activation=None, **kw)
    except TypeError:  # the odd constructor without classifier_activation
        return ctor(**kw)


# Deep random networks can be chaotic: TF's own output then moves by its whole scale when the
# input moves by 1e-6, and no comparison means anything. Shrinking BatchNorm's gamma tames them.
DAMP_GAMMA = {"EfficientNetV2L": 0.8}


def _damp(model, factor: float) -> None:
    for layer in model.layers:
        if "BatchNormalization" in type(layer).__name__:
            w = layer.get_weights()
            w[0] = w[0] * factor
            layer.set_weights(w)


def _check(k, name, side, tmp_path):
    k.utils.set_random_seed(0)
    model = _build(k, name, side)
    if name in DAMP_GAMMA:
        _damp(model, DAMP_GAMMA[name])
    x = np.random.default_rng(0).uniform(0, 255 if "EfficientNet" in name or "ConvNeXt" in name
                                         or "RegNet" in name else 1,
                                         size=(2, side, side, 3)).astype(np.float32)
    want = np.asarray(model(x, training=False))
    nudged = np.asarray(model(x * np.float32(1 + 1e-6), training=False))
    scale = float(np.max(np.abs(want)))
    assert np.max(np.abs(nudged - want)) < 1e-5 * scale, \
        f"{name} is chaotic with these random weights: add it to DAMP_GAMMA"
    m = td.convert(model)
    p = tmp_path / f"{name}.tfd"
    m.save(p)
    del m
    (got,) = run_without_tf(p, [x], tmp_path)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(scale, 1e-3),
                               err_msg=name)


@pytest.mark.parametrize("name, side", APPS, ids=[a[0] for a in APPS])
def test_keras3_application(name, side, tmp_path):
    import keras

    _check(keras, name, side, tmp_path)


TF_KERAS_APPS = [a for a in APPS if not a[0].startswith(("ConvNeXt", "EfficientNetV2"))] + [
    ("EfficientNetV2B0", 32), ("ConvNeXtTiny", 32)] + [(r, 32) for r in REGNETS]


@pytest.mark.parametrize("name, side", TF_KERAS_APPS, ids=[a[0] for a in TF_KERAS_APPS])
def test_tf_keras_application(name, side, tmp_path):
    k = pytest.importorskip("tf_keras")
    _check(k, name, side, tmp_path)
