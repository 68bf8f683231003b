"""Random Keras models against TF: the converter and every optimizing pass on mixes of layers
no hand-written test has. The fusion passes match patterns (a conv and what follows it,
parallel convolutions of one input, a squeeze-excite scale, padding before a convolution...);
a pattern matched wrongly is a silently wrong answer, which this looks for.

Each seed builds a small functional model from the layers people deploy (convolutions of every
kind and geometry, batch norm with random statistics, activations, residual additions,
concatenations, parallel branches, pooling, upsampling, padding, squeeze-excite, layer norm,
Dense over channels), converts it, and checks:

- the converted model's first call (the generic plan) and second (the plan specialized for the
  input's shape) against TF, within 1e-4 of the output's scale;
- the optimized plan against the unoptimized one, and against TF, on an input holding inf,
  -inf and NaN: the same NaN and infinities in the same places (a fused path must not change
  where a value stops being finite), the finite values close. (Not for models with a softmax,
  where TF's oneDNN kernel differs from its reference one, nor with max pooling, whose
  float32-lowest results make overflow depend on the order of the arithmetic after it.)

Odd seeds run with every kernel's size threshold forced down (``_forced``): three threads
splitting every step, Winograd for every 3x3 unit-stride layer, im2col, depthwise and
epilogue blocks of a few rows. The models are small, so without that they would only take the
paths for small inputs.

Sequence models are drawn the same way (``test_random_sequence_model``): LSTM, GRU and
SimpleRNN with their options, Bidirectional in every merge mode, Conv1D (causal, dilated,
strided), 1-D pooling, self-attention (causal or not) with residual and layer norm, Dense
feed-forward blocks, on float features or on tokens through an Embedding (masking padding or
not).

The image models are also built with tf_keras (``test_random_tf_keras_model``: Keras 2's
graphs, FusedBatchNormV3 and its own layers).

``RANDOM_MODELS`` image seeds (default 100), ``RANDOM_TF_KERAS_MODELS`` (default 30) and
``RANDOM_SEQUENCE_MODELS`` sequence seeds (default 40) from ``RANDOM_MODELS_SEED`` (default
0); a longer run:
``RANDOM_MODELS=1000 RANDOM_SEQUENCE_MODELS=1000 pytest tests/test_random_models.py``. A
failing seed prints its model's summary; ``pytest tests/test_random_models.py -k
'model[seed_17]'`` reruns it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import tfdeploy as td

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.tf

N = int(os.environ.get("RANDOM_MODELS", "100"))
N_SEQ = int(os.environ.get("RANDOM_SEQUENCE_MODELS", "40"))
N_TF_KERAS = int(os.environ.get("RANDOM_TF_KERAS_MODELS", "30"))
N_HALF = int(os.environ.get("RANDOM_HALF_MODELS", "30"))
SEED0 = int(os.environ.get("RANDOM_MODELS_SEED", "0"))

ACTIVATIONS = ["relu", "relu6", "sigmoid", "tanh", "elu", "selu", "silu", "gelu",
               "hard_sigmoid", "hard_silu", "softplus", "leaky_relu", "softmax", "linear"]


class _Builder:
    """One random model: layers drawn from ``rng``, each applied to the current tensor."""

    def __init__(self, rng: np.random.Generator, keras):
        self.rng, self.k, self.L = rng, keras, keras.layers
        self.extra = []  # intermediate tensors also fetched (a fetched value is never fused)
        #: tf_keras (Keras 2) names a few things otherwise
        self.legacy = keras.__name__ == "tf_keras"
        self.activations = [a for a in ACTIVATIONS if not (self.legacy and a == "hard_silu")]

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    @staticmethod
    def hw(x) -> tuple[int, int, int]:
        return int(x.shape[1]), int(x.shape[2]), int(x.shape[3])

    def act(self):
        return self.pick(self.activations) if self.chance(0.6) else None

    def geometry(self, x, kinds=(1, 1, 3, 3, 3, 5, 2)):
        """(kernel, strides, padding, dilation) that fit ``x``."""
        h, w, _ = self.hw(x)
        k = self.pick(kinds)
        if self.chance(0.15):
            k = (k, self.pick((1, 3)))
        s = self.pick((1, 1, 1, 2)) if min(h, w) >= 4 else 1
        if self.chance(0.1) and min(h, w) >= 4:
            s = (1, 2)
        d = 2 if s == 1 and self.chance(0.15) else 1
        ks = k if isinstance(k, tuple) else (k, k)
        span = [(kk - 1) * d + 1 for kk in ks]
        pad = "same" if span[0] > h or span[1] > w or self.chance(0.6) else "valid"
        return k, s, pad, d

    # --- layers ------------------------------------------------------------------------

    def conv(self, x, filters=None):
        k, s, pad, d = self.geometry(x)
        return self.L.Conv2D(filters or int(self.rng.integers(1, 25)), k, strides=s,
                             padding=pad, dilation_rate=d, use_bias=self.chance(0.7),
                             activation=self.act())(x)

    def grouped(self, x):
        """Conv2D with groups > 1 (ResNeXt, RegNet)."""
        c = self.hw(x)[2]
        g = self.pick([d for d in (2, 3, 4) if c % d == 0] or [1])
        if g == 1:
            return self.conv(x)
        k, s, pad, d = self.geometry(x, (1, 3, 3))
        return self.L.Conv2D(g * int(self.rng.integers(1, 6)), k, strides=s, padding=pad,
                             dilation_rate=d, groups=g, use_bias=self.chance(0.7),
                             activation=self.act())(x)

    def group_norm(self, x):
        c = self.hw(x)[2]
        if self.legacy:
            return self.batch_norm(x)
        return self.L.GroupNormalization(self.pick([d for d in (1, 2, 4) if c % d == 0]))(x)

    def depthwise(self, x):
        k, s, pad, d = self.geometry(x, (3, 3, 5, 7, 2))
        return self.L.DepthwiseConv2D(k, strides=s, padding=pad, dilation_rate=d,
                                      depth_multiplier=self.pick((1, 1, 2)),
                                      use_bias=self.chance(0.5), activation=self.act())(x)

    def separable(self, x):
        k, s, pad, d = self.geometry(x, (3, 5))
        return self.L.SeparableConv2D(int(self.rng.integers(1, 25)), k, strides=s, padding=pad,
                                      dilation_rate=d, activation=self.act())(x)

    def transpose(self, x):
        h, w, _ = self.hw(x)
        if h * w > 150:
            return self.conv(x)
        k = self.pick((2, 3, 4))
        s = self.pick((1, 2, 2)) if k > 1 else 1
        return self.L.Conv2DTranspose(int(self.rng.integers(1, 17)), k, strides=s,
                                      padding=self.pick(("same", "valid")),
                                      use_bias=self.chance(0.7))(x)

    def batch_norm(self, x):
        return self.L.BatchNormalization(epsilon=self.pick((1e-3, 1e-5)))(x)

    def activation(self, x):
        kind = self.pick(("act", "relu6", "leaky", "prelu", "elu"))
        if kind == "relu6":
            return self.L.ReLU(max_value=6.0)(x)
        if kind == "leaky":
            slope = self.pick((0.1, 0.3))
            return self.L.LeakyReLU(**{"alpha" if self.legacy else "negative_slope": slope})(x)
        if kind == "prelu":
            return self.L.PReLU(shared_axes=[1, 2])(x)
        if kind == "elu":
            return self.L.ELU()(x)
        return self.L.Activation(self.pick(self.activations))(x)

    def residual(self, x):
        c = self.hw(x)[2]
        y = self.L.Conv2D(c, self.pick((1, 3)), padding="same", use_bias=self.chance(0.5))(x)
        if self.chance(0.5):
            y = self.batch_norm(y)
        op = self.pick((self.L.Add, self.L.Add, self.L.Subtract, self.L.Multiply))
        pair = [x, y] if self.chance(0.7) else [y, x]
        return op()(pair)

    def concat(self, x):
        y = self.pick((self.conv_same, self.pool_same))(x)
        return self.L.Concatenate()([x, y] if self.chance(0.5) else [y, x])

    def conv_same(self, x):
        return self.L.Conv2D(int(self.rng.integers(1, 17)), self.pick((1, 3)), padding="same",
                             activation=self.act())(x)

    def pool_same(self, x):
        return self.L.MaxPooling2D(3, strides=1, padding="same")(x)

    def parallel(self, x):
        """Convolutions of one input with one geometry (fuse_projections joins them), each
        with the same epilogue, then added or concatenated."""
        k, s, pad, d = self.geometry(x, (1, 1, 3))
        n = self.pick((2, 3))
        same = self.chance(0.5)
        f = int(self.rng.integers(1, 17))
        bn, act = self.chance(0.5), self.act()
        ys = []
        for _ in range(n):
            y = self.L.Conv2D(f if same else int(self.rng.integers(1, 17)), k, strides=s,
                              padding=pad, dilation_rate=d, use_bias=not bn)(x)
            if bn:
                y = self.batch_norm(y)
            if act:
                y = self.L.Activation(act)(y)
            ys.append(y)
        if same and self.chance(0.6):
            return self.L.Add()(ys)
        return self.L.Concatenate()(ys)

    def pool(self, x):
        h, w, _ = self.hw(x)
        p = self.pick((2, 3)) if min(h, w) >= 3 else 1
        s = self.pick((None, 1, 2))
        pad = self.pick(("same", "valid"))
        layer = self.pick((self.L.MaxPooling2D, self.L.AveragePooling2D))
        return layer(p, strides=s, padding=pad)(x)

    def upsample(self, x):
        h, w, _ = self.hw(x)
        if h * w > 200:
            return self.pool(x)
        return self.L.UpSampling2D(self.pick((2, (2, 1))),
                                   interpolation=self.pick(("nearest", "bilinear")))(x)

    def pad(self, x):
        p = self.pick((1, 2, ((1, 0), (0, 2))))
        y = self.L.ZeroPadding2D(p)(x)
        return self.conv(y) if self.chance(0.7) else self.depthwise(y)

    def squeeze_excite(self, x):
        c = self.hw(x)[2]
        s = self.L.GlobalAveragePooling2D(keepdims=True)(x)
        s = self.L.Conv2D(max(1, c // 4), 1, activation=self.pick(("relu", "silu")))(s)
        s = self.L.Conv2D(c, 1, activation=self.pick(("sigmoid", "hard_sigmoid")))(s)
        y = self.L.Multiply()([x, s] if self.chance(0.5) else [s, x])
        return self.L.Conv2D(int(self.rng.integers(1, 25)), 1, use_bias=self.chance(0.5))(y)

    def layer_norm(self, x):
        if self.hw(x)[2] < 4:  # (over 1-3 values the variance can be all rounding error:
            return self.batch_norm(x)  # TF's then differs from an exact one by its scale)
        return self.L.LayerNormalization(epsilon=self.pick((1e-3, 1e-6)))(x)

    def dense(self, x):
        return self.L.Dense(int(self.rng.integers(1, 33)), activation=self.act())(x)

    def crop(self, x):
        h, w, _ = self.hw(x)
        if min(h, w) < 5:
            return self.conv(x)
        return self.L.Cropping2D(((1, 0), (0, 1)))(x)

    LAYERS = ("conv", "conv", "conv", "depthwise", "depthwise", "separable", "transpose",
              "batch_norm", "batch_norm", "activation", "residual", "residual", "concat",
              "parallel", "parallel", "pool", "upsample", "pad", "squeeze_excite",
              "layer_norm", "dense", "crop", "grouped", "group_norm")

    def model(self):
        k, rng = self.k, self.rng
        h, w = int(rng.integers(5, 21)), int(rng.integers(5, 21))
        inp = k.Input((h, w, int(rng.integers(1, 13))))
        x = inp
        if self.chance(0.2):
            x = self.L.Rescaling(1 / 2.0, offset=-0.5)(x)
        for _ in range(int(rng.integers(3, 9))):
            x = getattr(self, self.pick(self.LAYERS))(x)
            if self.hw(x)[0] * self.hw(x)[1] > 4096:  # (keep the model small)
                x = self.L.MaxPooling2D(2)(x)
            if self.chance(0.1):
                self.extra.append(x)
        end = self.pick(("map", "map", "gap", "flatten"))
        if end == "gap":
            x = self.L.GlobalAveragePooling2D()(x)
            x = self.L.Dense(int(rng.integers(2, 11)),
                             activation=self.pick((None, "softmax", "sigmoid")))(x)
        elif end == "flatten":
            x = self.L.Dense(int(rng.integers(2, 11)))(self.L.Flatten()(x))
        return k.Model(inp, [x, *self.extra] if self.extra else x)


class _SequenceBuilder(_Builder):
    """A random sequence model: recurrent layers of every kind and option, 1-D convolutions,
    self-attention, layer norm and Dense over [batch, time, features], on float features or
    on tokens through an Embedding (masking padding or not)."""

    def __init__(self, rng, keras):
        super().__init__(rng, keras)
        self.vocab = 0
        self.masked = False
        self.t = 0  # the sequence length the model is first called with
        self.dynamic = False  # the length is None in the model (each call its own)

    def steps(self, x) -> int:
        return int(x.shape[1]) if x.shape[1] is not None else self.t

    def rnn_layer(self, sequences: bool = True, backwards: bool = True):
        kind = self.pick(("LSTM", "GRU", "SimpleRNN"))
        kw = dict(units=int(self.rng.integers(1, 17)), return_sequences=sequences,
                  go_backwards=backwards and self.chance(0.2), use_bias=self.chance(0.8))
        if kind != "SimpleRNN":
            kw["recurrent_activation"] = self.pick(("sigmoid", "sigmoid", "hard_sigmoid"))
        if kind == "GRU":
            kw["reset_after"] = self.chance(0.7)
        kw["activation"] = self.pick(("tanh", "tanh", "relu"))
        return getattr(self.L, kind)(**kw)

    def rnn(self, x):
        return self.rnn_layer()(x)

    def bidirectional(self, x):
        return self.L.Bidirectional(self.rnn_layer(backwards=False),
                                    merge_mode=self.pick(("concat", "sum", "mul", "ave")))(x)

    def conv1d(self, x):
        if self.masked:
            return self.rnn(x)
        t = self.steps(x)
        k = self.pick((1, 2, 3, 5))
        pad = self.pick(("causal", "same", "valid")) if t >= k else "same"
        s = self.pick((1, 1, 2)) if t >= 4 and pad != "causal" else 1
        d = 2 if s == 1 and pad != "valid" and self.chance(0.3) else 1
        return self.L.Conv1D(int(self.rng.integers(1, 17)), k, strides=s, padding=pad,
                             dilation_rate=d, activation=self.act())(x)

    def conv1d_kinds(self, x):
        """Conv1DTranspose, SeparableConv1D, DepthwiseConv1D."""
        if self.masked:
            return self.rnn(x)
        t = self.steps(x)
        kind = self.pick(("transpose", "separable", "depthwise"))
        k = self.pick((1, 2, 3))
        if kind == "transpose":
            return self.L.Conv1DTranspose(int(self.rng.integers(1, 13)), k,
                                          strides=self.pick((1, 2)), padding="same")(x)
        pad = self.pick(("same", "valid")) if t >= k else "same"
        if kind == "separable":
            return self.L.SeparableConv1D(int(self.rng.integers(1, 13)), k, padding=pad,
                                          activation=self.act())(x)
        return self.L.DepthwiseConv1D(k, padding=pad, depth_multiplier=self.pick((1, 2)))(x)

    def cross_attention(self, x):
        """Keras' dot-product Attention layer of the sequence with a Dense view of itself."""
        v = self.L.Dense(int(x.shape[-1]))(x)
        return self.L.Attention(use_scale=self.chance(0.5))([x, v])

    def time_distributed(self, x):
        if self.dynamic:  # (Keras 3 maps it over the batch in a graph: see test_convert.py)
            return self.dense(x)
        return self.L.TimeDistributed(self.L.Dense(int(self.rng.integers(1, 17)),
                                                   activation=self.act()))(x)

    def pool1d(self, x):
        if self.masked or self.steps(x) < 2:
            return self.dense(x)
        layer = self.pick((self.L.MaxPooling1D, self.L.AveragePooling1D))
        return layer(2, padding=self.pick(("same", "valid")))(x)

    def attention(self, x):
        f = int(x.shape[-1])
        y = self.L.MultiHeadAttention(int(self.rng.integers(1, 5)), int(self.rng.integers(2, 9)),
                                      use_bias=self.chance(0.8))(
            x, x, use_causal_mask=self.chance(0.4))
        y = self.L.Add()([x, y])
        return self.L.LayerNormalization()(y) if f >= 4 else y

    def feed_forward(self, x):
        f = int(x.shape[-1])
        y = self.L.Dense(int(self.rng.integers(4, 33)),
                         activation=self.pick(("gelu", "relu", "silu", "tanh")))(x)
        y = self.L.Dense(f)(y)
        return self.L.Add()([x, y])

    def norm(self, x):
        return self.L.LayerNormalization()(x) if int(x.shape[-1]) >= 4 else self.dense(x)

    LAYERS = ("rnn", "rnn", "bidirectional", "conv1d", "conv1d", "pool1d", "attention",
              "feed_forward", "norm", "dense", "conv1d_kinds", "cross_attention",
              "time_distributed")

    def model(self):
        k, rng = self.k, self.rng
        self.t = int(rng.integers(2, 13))
        self.dynamic = self.chance(0.3)
        t = None if self.dynamic else self.t
        if self.chance(0.4):
            self.vocab = int(rng.integers(5, 30))
            inp = k.Input((t,), dtype="int32")
            self.masked = self.chance(0.4)
            x = self.L.Embedding(self.vocab, int(rng.integers(2, 17)),
                                 mask_zero=self.masked)(inp)
        else:
            inp = k.Input((t, int(rng.integers(1, 11))))
            x = inp
        for _ in range(int(rng.integers(1, 5))):
            x = getattr(self, self.pick(self.LAYERS))(x)
            if self.chance(0.1) and not self.masked:
                self.extra.append(x)
        end = self.pick(("sequence", "last", "pool"))
        if end == "last":
            x = self.rnn_layer(sequences=False)(x)
        elif end == "pool":
            x = self.pick((self.L.GlobalAveragePooling1D,) if self.masked else
                          (self.L.GlobalAveragePooling1D, self.L.GlobalMaxPooling1D))()(x)
        x = self.L.Dense(int(rng.integers(1, 9)),
                         activation=self.pick((None, "softmax", "sigmoid")))(x)
        return k.Model(inp, [x, *self.extra] if self.extra else x)


def _randomize(model, rng: np.random.Generator) -> None:
    """Random biases and batch-norm statistics (Keras starts them at 0 and 1, which would
    leave the folding of a bias or a normalization untested)."""
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        if "BatchNormalization" in type(layer).__name__:
            g, b, m, v = ws
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape).astype(g.dtype),
                               rng.normal(0, 0.5, b.shape).astype(b.dtype),
                               rng.normal(0, 0.3, m.shape).astype(m.dtype),
                               rng.uniform(0.5, 2.0, v.shape).astype(v.dtype)])
            continue
        new = []
        for wt in ws:
            if wt.ndim == 1:
                wt = rng.normal(0, 0.5, wt.shape).astype(wt.dtype)
            new.append(wt)
        layer.set_weights(new)


def _outputs(y) -> list[np.ndarray]:
    return [np.asarray(v) for v in (y if isinstance(y, (list, tuple)) else [y])]


def _softmax(model) -> bool:
    """Whether a layer of ``model`` computes a softmax, wrapped ones too (a TimeDistributed
    Dense's activation): with oneDNN (TF's default on CPUs with AVX-512) TF gives 0 for the
    other logits of a row holding +inf, where its reference kernel, and tfdeploy, give NaN
    (the Softmax cases in tests/cases/nn.py)."""
    return any("softmax" in str(layer.get_config().get("activation", "")).lower() or
               type(layer).__name__ == "Softmax" for layer in _all_layers(model.layers))


def _all_layers(layers):
    """``layers`` and the layers inside them: a wrapper's (TimeDistributed, Bidirectional) and
    a nested model's."""
    for layer in layers:
        yield layer
        inner = (getattr(layer, name, None) for name in ("layer", "forward_layer",
                                                          "backward_layer"))
        yield from _all_layers([w for w in inner if hasattr(w, "get_config")])
        yield from _all_layers(getattr(layer, "layers", ()))


def _max_pools(model) -> bool:
    """Whether ``model`` max-pools: TF's MaxPool gives float32's lowest value for a window of
    only NaN and -inf, and whether what follows overflows (a sum, a layer norm's mean) then
    depends on the order of its arithmetic. Such models skip the non-finite checks."""
    return any("MaxPool" in type(layer).__name__ for layer in _all_layers(model.layers))


def _poisoned(x: np.ndarray, rng: np.random.Generator, values) -> np.ndarray:
    """``x`` with ``values`` (inf, NaN) at random places."""
    bad = x.copy()
    flat = bad.reshape(-1)
    for v in values:
        flat[int(rng.integers(flat.size))] = v
    return bad


def _same_non_finite(got: np.ndarray, want: np.ndarray, what: str, tol: float = 1e-4) -> None:
    """The same NaN and infinities in the same places, the finite values close. A value near
    its dtype's limit against an infinity of its sign counts as the same: whether it
    overflows depends on the order of the arithmetic (a window of NaN max-pools to the lowest
    value; a float16 chain computed in float32 is rounded once, TF rounds each op)."""
    assert got.shape == want.shape and got.dtype == want.dtype, what
    big = np.finfo(got.dtype).max / 16 if got.dtype.kind == "f" else np.inf
    edge = (np.abs(got) > big) & (np.abs(want) > big) & (np.sign(got) == np.sign(want))
    for kind in (np.isnan, np.isposinf, np.isneginf):
        diff = np.flatnonzero((kind(got) != kind(want)) & ~edge)
        assert not diff.size, f"{what}: {kind.__name__} differs at flat indices {diff[:8]}"
    ok = np.isfinite(want) & np.isfinite(got)
    scale = float(np.max(np.abs(want[ok]))) if ok.any() else 1.0
    np.testing.assert_allclose(got[ok], want[ok], rtol=tol, atol=tol * max(scale, 1e-3),
                               err_msg=what)


def _forced(monkeypatch) -> None:
    """Every size threshold down: the paths of large inputs, on small ones."""
    from tfdeploy.kernels.nn import conv, depthwise, fused, transformer, winograd
    from tfdeploy.runtime import parallel, threads

    monkeypatch.setitem(threads._state, "threads", 3)
    monkeypatch.setattr(parallel, "MIN_WORK", 1)
    for mod, name, value in [(winograd, "_MIN_CK", 0), (winograd, "_MIN_MACS", 0),
                             (winograd, "_MIN_TILES", 1), (winograd, "_CHUNK_BYTES", 1),
                             (conv, "_BLOCK_BYTES", 1), (conv, "_MIN_ROWS", 1),
                             (conv, "_GEMM_BLOCK_BYTES", 1), (depthwise, "_BLOCK_BYTES", 1),
                             (depthwise, "_SMALL_BYTES", 1), (fused, "_BLOCK", 16),
                             (transformer, "KEYS_FIRST", 1)]:
        assert hasattr(mod, name), (mod.__name__, name)
        monkeypatch.setattr(mod, name, value)


def _image_case(seed, monkeypatch, keras, policy: str | None = None, tol: float = 1e-4):
    """A random image model built with ``keras`` (under a dtype ``policy``), checked."""
    if seed % 2:
        _forced(monkeypatch)
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    if policy:
        keras.mixed_precision.set_dtype_policy(policy)
    try:
        model = _Builder(rng, keras).model()
    finally:
        if policy:
            keras.mixed_precision.set_dtype_policy("float32")
    _randomize(model, rng)
    x = rng.uniform(-2, 2, (int(rng.integers(1, 4)), *model.inputs[0].shape[1:])
                    ).astype(np.float32)
    _check(model, x, rng, tol)


@pytest.mark.parametrize("seed", range(SEED0, SEED0 + N), ids=lambda s: f"seed_{s}")
def test_random_model(seed, monkeypatch):
    import keras

    _image_case(seed, monkeypatch, keras)


@pytest.mark.parametrize("seed", range(SEED0, SEED0 + N_TF_KERAS), ids=lambda s: f"seed_{s}")
def test_random_tf_keras_model(seed, monkeypatch):
    """The same random models built with tf_keras (Keras 2: FusedBatchNormV3, its own
    activations and layer graphs)."""
    _image_case(seed, monkeypatch, pytest.importorskip("tf_keras"))


@pytest.mark.parametrize("seed", range(SEED0, SEED0 + N_HALF), ids=lambda s: f"seed_{s}")
def test_random_mixed_float16_model(seed, monkeypatch):
    """The random image models in mixed_float16 (layers compute in float16, weights float32):
    Cast chains, fuse_half's float16 stacks. float16 rounding sets the tolerance (1e-2 of the
    output's scale); a wrong pattern is off by its whole scale."""
    import keras

    _image_case(seed, monkeypatch, keras, "mixed_float16", tol=1e-2)


@pytest.mark.parametrize("seed", range(SEED0, SEED0 + N_SEQ), ids=lambda s: f"seed_{s}")
def test_random_sequence_model(seed, monkeypatch):
    import keras

    if seed % 2:
        _forced(monkeypatch)
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    builder = _SequenceBuilder(rng, keras)
    model = builder.model()
    _randomize(model, rng)
    def inputs(t):
        shape = (int(rng.integers(1, 4)), t, *model.inputs[0].shape[2:])
        if builder.vocab:
            x = rng.integers(0, builder.vocab, shape).astype(np.int32)
            x[:, 0] = rng.integers(1, builder.vocab, shape[0])  # (no sequence all padding)
            return x
        return rng.uniform(-2, 2, shape).astype(np.float32)

    m = _check(model, inputs(builder.t), rng)
    if builder.dynamic:  # another length: another specialized plan (loops of other trip counts)
        x = inputs(builder.t + 3)
        for i, (g, w) in enumerate(zip(_outputs(m(x)), _outputs(model(x, training=False)))):
            scale = max(float(np.max(np.abs(w), initial=0)), 1e-3)
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * scale,
                                       err_msg=f"length {x.shape[1]}, output {i}")


def _check(model, x, rng, tol: float = 1e-4):
    """The checks of the module docstring on ``model`` and its input ``x``; returns the
    converted model."""
    summary = []
    model.summary(print_fn=lambda s, **kw: summary.append(s))
    summary = "\n".join(summary)
    try:
        want = _outputs(model(x, training=False))
    except (tf.errors.InvalidArgumentError, tf.errors.AbortedError,
            tf.errors.UnimplementedError) as e:
        # (float16 forms TF's CPU kernels lack; oneDNN primitives TF cannot create on this
        # CPU: a MaxPooling1D over a length-1 sequence aborts in TF's mkl_maxpooling_op)
        pytest.skip(f"TF cannot run it: {str(e).splitlines()[0][:200]}")
    if x.dtype.kind == "f":
        nudged = _outputs(model(x * np.float32(1 + 1e-6), training=False))
        if any(np.max(np.abs(n - w), initial=0) > tol / 10 * max(np.max(np.abs(w), initial=0),
                                                                    1e-3)
               for n, w in zip(nudged, want)):
            pytest.skip(f"chaotic: its output moves by more than {tol / 10:g} of its scale when "
                        "the input moves by 1e-6")

    m = td.convert(model)
    for call in ("generic", "specialized"):
        got = _outputs(m(x))
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            assert g.shape == w.shape and g.dtype == w.dtype, (call, i, summary)
            scale = max(float(np.max(np.abs(w), initial=0)), 1e-3)
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale,
                                       err_msg=f"{call} plan, output {i}\n{summary}")

    # another batch size: another specialized plan, beside the first
    other = np.concatenate([x, x[:1] * np.asarray(0.5, x.dtype)]) if x.dtype.kind == "f" else \
        np.concatenate([x, x[:1]])
    for i, (g, w) in enumerate(zip(_outputs(m(other)),
                                   _outputs(model(other, training=False)))):
        scale = max(float(np.max(np.abs(w), initial=0)), 1e-3)
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale,
                                   err_msg=f"batch {len(other)}, output {i}\n{summary}")

    if x.dtype.kind != "f" or _max_pools(model):
        return m
    # one inf alone (two of opposite signs soon meet and make NaN, which hides where a path
    # made NaN of an inf), then inf, -inf and NaN together
    plain = m.plan(optimize=False)
    for values in ([np.inf], [np.inf, -np.inf, np.nan]):
        bad = _poisoned(x, rng, values)
        with np.errstate(all="ignore"):
            want, got = plain.run([bad]), _outputs(m(bad))
        for i, (g, w) in enumerate(zip(got, want)):
            _same_non_finite(g, np.asarray(w), f"output {i} with {values}\n{summary}", tol)
        if not _softmax(model):  # (TF's oneDNN softmax differs from its own reference there)
            for i, (g, t) in enumerate(zip(got, _outputs(model(bad, training=False)))):
                _same_non_finite(g, t, f"output {i} with {values}, against TF\n{summary}",
                                 tol)
    return m
