"""The benchmark suite's models: deterministic builders and inputs, importable by the tests.

Every builder seeds Keras first, so two calls (in two processes) give the same weights: the
suite converts a model once and times it in other processes, rebuilding TensorFlow's copy.
Random weights throughout (``weights=None``); outputs are logits, never softmax of a random
network (near-uniform, it would hide errors).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

VOCAB = 1000
BLOCK_SEQ = 16
#: ``bert_base``'s tokens
BASE_SEQ = 128
RNN_STEPS = 20
MLP_WIDTH = 512


@dataclass(frozen=True)
class Case:
    """One benchmarked model: how to build it and feed it, at which batch sizes."""

    name: str
    title: str
    group: str                      # cnn, nlp, rnn, arch, mixed, dense
    build: Callable                 # () -> keras.Model (or None for the classic dense model)
    make_input: Callable            # (batch, rng) -> np.ndarray
    batches: tuple[int, ...]
    tol: float = 1e-4               # agreement with TF, relative to max |TF output|
    quick: bool = False             # part of --quick
    extra: bool = False             # only when asked for (--models NAME or its group)

    def input(self, batch: int) -> np.ndarray:
        """The input of batch size ``batch``: the same in every process."""
        return self.make_input(batch, np.random.default_rng(1000 + batch))


def _seed():
    import keras

    keras.utils.set_random_seed(0)
    return keras


def _randomize_batch_norms(model) -> None:
    """Random BatchNormalization parameters and statistics (deterministic), as a trained model
    has: Keras' initial ones fold into a zero bias, which the fused kernels would skip."""
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if "BatchNormalization" in type(layer).__name__:
            layer.set_weights([w + rng.uniform(0.1, 0.5, np.shape(w)).astype(np.float32)
                               for w in layer.get_weights()])


def _app(ctor: str, policy: str = "float32", side: int = 224):
    """A keras.applications model at ``side`` x ``side`` under the Keras ``policy``
    (``mixed_float16``: float16 compute, float32 variables: the same weights as the float32
    twin); restores the global policy."""
    def build():
        keras = _seed()
        old = keras.mixed_precision.global_policy().name
        keras.mixed_precision.set_global_policy(policy)
        try:
            model = getattr(keras.applications, ctor)(weights=None, input_shape=(side, side, 3),
                                                       classifier_activation=None)
        finally:
            keras.mixed_precision.set_global_policy(old)
        _randomize_batch_norms(model)
        return model
    build.__name__ = ctor if policy == "float32" else f"{ctor}_{policy}"
    return build


def transformer_block(policy: str = "float32"):
    """Embedding(1000, 64), MultiHeadAttention(4 x 16), LayerNorm, gelu FFN 128, residuals,
    under the Keras ``policy`` (``mixed_float16``: the same weights). Restores the global
    policy."""
    keras = _seed()
    old = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        L = keras.layers
        inp = keras.Input((BLOCK_SEQ,), dtype="int32", name="tokens")
        x = L.Embedding(VOCAB, 64)(inp)
        x = L.LayerNormalization()(x + L.MultiHeadAttention(4, 16)(x, x))
        h = L.Dense(64)(L.Dense(128, activation="gelu")(x))
        name = "transformer_block" + ("" if policy == "float32" else f"_{policy}")
        return keras.Model(inp, L.LayerNormalization()(x + h), name=name)
    finally:
        keras.mixed_precision.set_global_policy(old)


def bert_base():
    """BERT-base-sized encoder layers, where the matrix products dominate: Embedding(1000,
    768), two post-norm layers of MultiHeadAttention 12 x 64 and an exact-gelu FFN 3072 with
    residuals and LayerNorms, 128 tokens; the hidden states out."""
    keras = _seed()
    L = keras.layers
    inp = keras.Input((BASE_SEQ,), dtype="int32", name="tokens")
    x = L.LayerNormalization(epsilon=1e-12)(L.Embedding(VOCAB, 768)(inp))
    for _ in range(2):
        x = L.LayerNormalization(epsilon=1e-12)(x + L.MultiHeadAttention(12, 64)(x, x))
        h = L.Dense(768)(L.Dense(3072, activation="gelu")(x))
        x = L.LayerNormalization(epsilon=1e-12)(x + h)
    return keras.Model(inp, x, name="bert_base")


def transformer_block_mixed():
    return transformer_block("mixed_float16")


def recurrent():
    """Embedding(1000, 32), LSTM(64) over every step, GRU(32), Dense(10) logits."""
    keras = _seed()
    L = keras.layers
    return keras.Sequential([keras.Input((RNN_STEPS,), dtype="int32", name="tokens"),
                             L.Embedding(VOCAB, 32), L.LSTM(64, return_sequences=True),
                             L.GRU(32), L.Dense(10)], name="recurrent")


def mlp(policy: str = "float32"):
    """4 x Dense(512, relu) and Dense(10) logits in float32, under the Keras ``policy``
    (``mixed_float16``: float16 compute, float32 variables). Restores the global policy."""
    keras = _seed()
    old = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        L = keras.layers
        inp = keras.Input((MLP_WIDTH,), name="x")
        x = inp
        for _ in range(4):
            x = L.Dense(MLP_WIDTH, activation="relu")(x)
        out = L.Dense(10, dtype="float32")(x)    # the usual float32 head of a mixed model
        return keras.Model(inp, out, name=f"mlp_{policy}")
    finally:
        keras.mixed_precision.set_global_policy(old)


def mlp_mixed():
    return mlp("mixed_float16")


# ------------------------------------------------------------------- the classic dense model
DENSE_IN, DENSE_OUT = 784, 100


def dense_weights() -> tuple[np.ndarray, np.ndarray]:
    """W [784, 100] and b [100] of the original tfdeploy benchmark."""
    rng = np.random.default_rng(0)
    return ((rng.standard_normal((DENSE_IN, DENSE_OUT)) * 0.05).astype(np.float32),
            rng.standard_normal(DENSE_OUT).astype(np.float32))


def dense_numpy(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """softmax(x @ W + b) written by hand in numpy: the floor tfdeploy is measured against."""
    z = x @ W + b
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def dense_session(threads: int | None = None):
    """The model as a TF1 graph in a session (``threads``: its intra/inter-op pools; None:
    TF's default): (session, input placeholder, output tensor)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    W0, b0 = dense_weights()
    config = None
    if threads:
        config = v1.ConfigProto(intra_op_parallelism_threads=threads,
                                inter_op_parallelism_threads=threads)
    g = tf.Graph()
    with g.as_default():
        sess = v1.Session(graph=g, config=config)
        x = v1.placeholder(tf.float32, shape=[None, DENSE_IN], name="input")
        y = tf.nn.softmax(tf.matmul(x, v1.Variable(W0)) + v1.Variable(b0), name="output")
        sess.run(v1.global_variables_initializer())
    return sess, x, y


# ---------------------------------------------------------------------------------- inputs
def _images(side: int):
    return lambda b, rng: rng.standard_normal((b, side, side, 3), dtype=np.float32)


def _tokens(length: int):
    return lambda b, rng: rng.integers(0, VOCAB, size=(b, length)).astype(np.int32)


def _floats(width: int):
    return lambda b, rng: rng.standard_normal((b, width), dtype=np.float32)


def _dense_input(b, rng):
    return rng.random((b, DENSE_IN), dtype=np.float32)


# the Transformer architectures of arch.py (imported on first build: it imports Keras)
ARCHITECTURES = {
    "bert": "BERT-style", "gpt2": "GPT-2-style", "llama": "Llama-style",
    "gemma": "Gemma-style", "mistral": "Mistral-style", "qwen": "Qwen-style",
    "mixtral": "Mixtral-style MoE", "deberta": "DeBERTa-style", "fnet": "FNet-style",
    "vit": "ViT-style",
}


def _arch(name: str):
    def build():
        _seed()
        import arch

        return getattr(arch, name)()
    build.__name__ = name
    return build


def _cases() -> list[Case]:
    cases = [
        Case("mobilenetv2", "MobileNetV2 224", "cnn", _app("MobileNetV2"), _images(224), (1, 8),
             quick=True),
        Case("resnet50", "ResNet50 224", "cnn", _app("ResNet50"), _images(224), (1, 8)),
        Case("efficientnetb0", "EfficientNetB0 224", "cnn", _app("EfficientNetB0"),
             _images(224), (1, 8)),
        Case("block", "Transformer block", "nlp", transformer_block, _tokens(BLOCK_SEQ), (1, 8),
             quick=True),
        Case("rnn", "LSTM+GRU", "rnn", recurrent, _tokens(RNN_STEPS), (1, 8), quick=True),
        Case("bert_base", "BERT-base-sized, 2 layers", "nlp", bert_base, _tokens(BASE_SEQ),
             (1, 8)),
    ]
    for name, title in ARCHITECTURES.items():
        make = _images(32) if name == "vit" else _tokens(32)
        cases.append(Case(name, title, "arch", _arch(name), make, (2,), quick=name == "llama"))
    cases += [
        Case("mlp_f32", "Dense stack float32", "mixed", mlp, _floats(MLP_WIDTH), (32,),
             quick=True),
        # float16 intermediates round differently from TF's: a few float16 ulps of the scale
        Case("mlp_f16", "Dense stack mixed_float16", "mixed", mlp_mixed, _floats(MLP_WIDTH),
             (32,), tol=1e-2, quick=True),
        # the float32 twins are ``block`` and ``mobilenetv2`` (same weights)
        Case("block_f16", "Transformer block mixed_float16", "mixed", transformer_block_mixed,
             _tokens(BLOCK_SEQ), (1, 8), tol=2e-2),
        Case("mobilenetv2_f16", "MobileNetV2 224 mixed_float16", "mixed",
             _app("MobileNetV2", "mixed_float16"), _images(224), (1,), tol=2e-2),
        Case("dense", "softmax(x @ W + b)", "dense", None, _dense_input, (1, 100, 10000),
             tol=1e-5, quick=True),
    ]
    # more of keras.applications, run when asked for (``--models apps``): the convolutional
    # networks beyond the three above, for where tfdeploy stands on each kind of layer
    for ctor, side in APPS:
        cases.append(Case(ctor.lower(), f"{ctor} {side}", "apps", _app(ctor, side=side),
                          _images(side), (1,), extra=True))
    return cases


#: the ``apps`` group: (keras.applications constructor, input side)
APPS = (("DenseNet121", 224), ("NASNetMobile", 224), ("InceptionV3", 299), ("Xception", 299),
        ("EfficientNetV2B0", 224), ("MobileNetV3Small", 224), ("ResNet50V2", 224),
        ("ConvNeXtTiny", 224))
#: the groups --models also takes
GROUPS = ("cnn", "nlp", "rnn", "arch", "mixed", "dense", "apps")


CASES: dict[str, Case] = {c.name: c for c in _cases()}
