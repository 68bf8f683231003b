"""Small Transformer architectures for the benchmark suite, built from Keras layers.

Each is 2 layers of width 64 over 32 tokens (ViT: 32x32x3 images in 4x4 patches), random
weights, logits out. The layers the Keras library lacks (RMSNorm, rotary embeddings, grouped-query
attention, mixture of experts, disentangled attention, Fourier mixing) are written here with
``keras.ops`` only, so every model traces to raw TensorFlow ops under the TF backend: what
tfdeploy, tf2onnx and the TFLite converter see is what a Keras user would hand them.

Masks, rotary tables and relative-position indices depend only on the (static) sequence length:
they are numpy constants, as a deployed model would fold them.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers as L
from keras import ops

WIDTH = 64
HEADS = 4
HEAD_DIM = 16
FFN = 128
DEPTH = 2
SEQ = 32
VOCAB = 1000
NEG = -1e9  # additive mask: exp underflows to exactly 0 in float32


# ---------------------------------------------------------------------------------- pieces
class RMSNorm(L.Layer):
    """x / rms(x) * w (Llama), or * (1 + w) with w starting at 0 (Gemma)."""

    def __init__(self, plus_one: bool = False, eps: float = 1e-6, **kw):
        super().__init__(**kw)
        self.plus_one, self.eps = plus_one, eps

    def build(self, shape):
        # random around the usual init (ones; zeros for 1 + w): a unit scale would hide a bug
        init = keras.initializers.RandomNormal(0.0 if self.plus_one else 1.0, 0.1)
        self.w = self.add_weight(shape=(shape[-1],), initializer=init, name="scale")

    def call(self, x):
        x = x * ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + self.eps)
        return x * (1.0 + self.w if self.plus_one else self.w)


class Positions(L.Layer):
    """Adds a learned position embedding [length, width] (BERT, GPT-2, FNet, ViT)."""

    def build(self, shape):
        self.table = self.add_weight(shape=tuple(shape[1:]), name="positions",
                                     initializer=keras.initializers.RandomNormal(0.0, 0.02))

    def call(self, x):
        return x + self.table


class ClassToken(L.Layer):
    """Prepends a learned class token to a [batch, tokens, width] sequence (ViT)."""

    def build(self, shape):
        self.token = self.add_weight(shape=(1, 1, shape[-1]), name="cls",
                                     initializer=keras.initializers.RandomNormal(0.0, 0.02))

    def call(self, x):
        cls = ops.broadcast_to(self.token, (ops.shape(x)[0], 1, ops.shape(x)[2]))
        return ops.concatenate([cls, x], axis=1)


def rotary_tables(length: int, dim: int, base: float = 10000.0):
    """cos and sin [length, dim] of the rotate-half rotary embedding (Llama's layout)."""
    inv = 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    ang = np.outer(np.arange(length, dtype=np.float64), inv)
    ang = np.concatenate([ang, ang], axis=-1)
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def rotate(x, cos, sin):
    """Rotary embedding of x [..., tokens, dim]: x * cos + rotate_half(x) * sin."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + ops.concatenate([-x2, x1], axis=-1) * sin


def mask_bias(length: int, kind: str | None, window: int = 0) -> np.ndarray | None:
    """Additive attention bias [length, length]: None (full), causal, or sliding-window causal
    (each token sees itself and the ``window - 1`` before it, Mistral)."""
    if kind is None:
        return None
    i, j = np.arange(length)[:, None], np.arange(length)[None, :]
    keep = j <= i
    if kind == "sliding":
        keep &= j > i - window
    return np.where(keep, 0.0, NEG).astype(np.float32)


class Attention(L.Layer):
    """Self-attention with ``heads`` query heads sharing ``kv_heads`` key/value heads (GQA;
    1: multi-query), optional q/k/v bias (Qwen), rotary embeddings and a mask."""

    def __init__(self, heads=HEADS, kv_heads=HEADS, head_dim=HEAD_DIM, *, qkv_bias=False,
                 rotary=False, mask=None, window=0, **kw):
        super().__init__(**kw)
        self.h, self.kv, self.d = heads, kv_heads, head_dim
        self.rotary, self.mask, self.window = rotary, mask, window
        self.q = L.Dense(heads * head_dim, use_bias=qkv_bias)
        self.k = L.Dense(kv_heads * head_dim, use_bias=qkv_bias)
        self.v = L.Dense(kv_heads * head_dim, use_bias=qkv_bias)
        self.o = None  # built when the width is known

    def build(self, shape):
        t, width = shape[1], shape[-1]
        self.o = L.Dense(width, use_bias=False)
        for dense in (self.q, self.k, self.v):
            dense.build(shape)
        self.o.build((None, t, self.h * self.d))
        self.cos, self.sin = rotary_tables(t, self.d)
        self.bias = mask_bias(t, self.mask, self.window)

    def _heads(self, x, n):
        t = x.shape[1]
        return ops.transpose(ops.reshape(x, (-1, t, n, self.d)), (0, 2, 1, 3))

    def call(self, x):
        t, g = x.shape[1], self.h // self.kv
        q, k, v = self._heads(self.q(x), self.h), self._heads(self.k(x), self.kv), \
            self._heads(self.v(x), self.kv)
        if self.rotary:
            q, k = rotate(q, self.cos, self.sin), rotate(k, self.cos, self.sin)
        # grouped heads: q [b, kv, g, t, d] against k, v [b, kv, 1, t, d], broadcast over g
        q = ops.reshape(q, (-1, self.kv, g, t, self.d))
        k, v = ops.expand_dims(k, 2), ops.expand_dims(v, 2)
        s = ops.matmul(q, ops.swapaxes(k, -1, -2)) * (1.0 / np.sqrt(self.d))
        if self.bias is not None:
            s = s + self.bias
        y = ops.matmul(ops.softmax(s, axis=-1), v)              # [b, kv, g, t, d]
        y = ops.reshape(y, (-1, self.h, t, self.d))
        y = ops.reshape(ops.transpose(y, (0, 2, 1, 3)), (-1, t, self.h * self.d))
        return self.o(y)


class GatedFFN(L.Layer):
    """down(act(gate(x)) * up(x)): SwiGLU (silu, Llama) or GeGLU (tanh gelu, Gemma)."""

    def __init__(self, hidden=FFN, act="silu", **kw):
        super().__init__(**kw)
        self.act = act
        self.gate = L.Dense(hidden, use_bias=False)
        self.up = L.Dense(hidden, use_bias=False)
        self.down = None

    def build(self, shape):
        self.gate.build(shape)
        self.up.build(shape)
        self.down = L.Dense(shape[-1], use_bias=False)
        self.down.build((*shape[:-1], self.gate.units))

    def call(self, x):
        a = self.gate(x)
        a = ops.silu(a) if self.act == "silu" else ops.gelu(a, approximate=True)
        return self.down(a * self.up(x))


class MoE(L.Layer):
    """Mixtral's sparse FFN: a router picks the top 2 of 4 SwiGLU experts per token and mixes
    them by the softmax of their router logits. Computed densely (every expert on every token,
    the unpicked ones weighted 0): at this size that is cheaper than gathering tokens."""

    def __init__(self, experts=4, top=2, hidden=FFN, **kw):
        super().__init__(**kw)
        self.e, self.top, self.hidden = experts, top, hidden
        self.router = L.Dense(experts, use_bias=False)

    def build(self, shape):
        d, e, h = shape[-1], self.e, self.hidden
        self.router.build(shape)
        init = keras.initializers.GlorotUniform()
        self.w_gate = self.add_weight(shape=(e, d, h), initializer=init, name="w_gate")
        self.w_up = self.add_weight(shape=(e, d, h), initializer=init, name="w_up")
        self.w_down = self.add_weight(shape=(e, h, d), initializer=init, name="w_down")

    def call(self, x):
        logits = self.router(x)                                   # [b, t, e]
        top, idx = ops.top_k(logits, self.top)                    # [b, t, 2]
        weight = ops.sum(ops.one_hot(idx, self.e) * ops.expand_dims(ops.softmax(top), -1),
                         axis=-2)                                 # [b, t, e], 2 nonzero
        a = ops.einsum("btd,edh->bteh", x, self.w_gate)
        u = ops.einsum("btd,edh->bteh", x, self.w_up)
        y = ops.einsum("bteh,ehd->bted", ops.silu(a) * u, self.w_down)
        return ops.einsum("bted,bte->btd", y, weight)


class DisentangledAttention(L.Layer):
    """DeBERTa's attention, simplified (one shared relative table, no log buckets): content to
    content, plus content to position q_c . k_r[d(i, j)] and position to content
    k_c[j] . q_r[d(j, i)], with d the relative distance clipped to [-span, span), all scaled
    by 1 / sqrt(3 d). The relative terms are gathered along the last axis, as DeBERTa does."""

    def __init__(self, heads=HEADS, head_dim=HEAD_DIM, span=8, **kw):
        super().__init__(**kw)
        self.h, self.d, self.span = heads, head_dim, span
        self.q, self.k, self.v = (L.Dense(heads * head_dim) for _ in range(3))
        self.qr = L.Dense(heads * head_dim)
        self.kr = L.Dense(heads * head_dim)

    def build(self, shape):
        t, width = shape[1], shape[-1]
        for dense in (self.q, self.k, self.v):
            dense.build(shape)
        self.rel = self.add_weight(shape=(2 * self.span, width), name="rel_embeddings",
                                   initializer=keras.initializers.RandomNormal(0.0, 0.02))
        self.qr.build((2 * self.span, width))
        self.kr.build((2 * self.span, width))
        self.o = L.Dense(width)
        self.o.build((None, t, self.h * self.d))
        rel = np.arange(t)[:, None] - np.arange(t)[None, :]       # i - j
        self.c2p_idx = (np.clip(rel, -self.span, self.span - 1) + self.span).astype(np.int32)
        self.p2c_idx = (np.clip(-rel, -self.span, self.span - 1) + self.span).astype(np.int32)

    def _heads(self, x):
        return ops.transpose(ops.reshape(x, (-1, x.shape[-2], self.h, self.d)), (0, 2, 1, 3))

    def _gather(self, s, idx):
        # s [b, h, t, 2*span] -> [b, h, t, t]: s[..., i, idx[i, j]]
        full = ops.broadcast_to(idx, (ops.shape(s)[0], self.h, *idx.shape))
        return ops.take_along_axis(s, full, axis=-1)

    def call(self, x):
        t = x.shape[1]
        q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
        qr = ops.reshape(self.qr(self.rel), (2 * self.span, self.h, self.d))
        kr = ops.reshape(self.kr(self.rel), (2 * self.span, self.h, self.d))
        qr, kr = ops.transpose(qr, (1, 2, 0)), ops.transpose(kr, (1, 2, 0))  # [h, d, 2s]
        c2c = ops.matmul(q, ops.swapaxes(k, -1, -2))
        c2p = self._gather(ops.matmul(q, kr), self.c2p_idx)
        p2c = ops.swapaxes(self._gather(ops.matmul(k, qr), self.p2c_idx), -1, -2)
        s = (c2c + c2p + p2c) * (1.0 / np.sqrt(3 * self.d))
        y = ops.matmul(ops.softmax(s, axis=-1), v)
        return self.o(ops.reshape(ops.transpose(y, (0, 2, 1, 3)), (-1, t, self.h * self.d)))


class FourierMix(L.Layer):
    """FNet's token mixing: the real part of the 2-D FFT over (tokens, width)."""

    def call(self, x):
        real, _ = ops.fft2((x, ops.zeros_like(x)))
        return real


# ---------------------------------------------------------------------------------- models
def _gelu_ffn(x, approximate=False):
    h = L.Dense(FFN)(x)
    h = L.Activation(lambda t: keras.activations.gelu(t, approximate=approximate))(h)
    return L.Dense(x.shape[-1])(h)


def _tokens(seq=SEQ):
    return keras.Input((seq,), dtype="int32", name="tokens")


def _head(x, name):
    return L.Dense(VOCAB, name=f"{name}_logits")(x)


def _post_norm_stack(x, mix):
    """BERT's layer, ``mix`` the attention: x = LN(x + mix(x)); x = LN(x + FFN(x))."""
    for _ in range(DEPTH):
        x = L.LayerNormalization(epsilon=1e-12)(x + mix()(x))
        x = L.LayerNormalization(epsilon=1e-12)(x + _gelu_ffn(x))
    return x


def bert():
    """BERT: learned positions, post-norm, exact gelu."""
    inp = _tokens()
    x = L.LayerNormalization(epsilon=1e-12)(Positions()(L.Embedding(VOCAB, WIDTH)(inp)))

    def mha():
        return lambda v: L.MultiHeadAttention(HEADS, HEAD_DIM)(v, v)
    return keras.Model(inp, _head(_post_norm_stack(x, mha), "bert"), name="bert")


def gpt2():
    """GPT-2: learned positions, pre-norm, causal mask, tanh gelu, final LayerNorm."""
    inp = _tokens()
    x = Positions()(L.Embedding(VOCAB, WIDTH)(inp))
    for _ in range(DEPTH):
        h = L.LayerNormalization(epsilon=1e-5)(x)
        x = x + L.MultiHeadAttention(HEADS, HEAD_DIM)(h, h, use_causal_mask=True)
        x = x + _gelu_ffn(L.LayerNormalization(epsilon=1e-5)(x), approximate=True)
    return keras.Model(inp, _head(L.LayerNormalization(epsilon=1e-5)(x), "gpt2"), name="gpt2")


def _decoder(name, *, kv_heads, ffn, qkv_bias=False, mask="causal", window=0,
             plus_one=False, scale_embed=False):
    """The Llama family: pre-RMSNorm, rotary attention, gated or MoE FFN, final RMSNorm."""
    inp = _tokens()
    x = L.Embedding(VOCAB, WIDTH)(inp)
    if scale_embed:  # Gemma multiplies the embeddings by sqrt(width)
        x = L.Rescaling(float(np.sqrt(WIDTH)))(x)
    for _ in range(DEPTH):
        x = x + Attention(HEADS, kv_heads, qkv_bias=qkv_bias, rotary=True, mask=mask,
                          window=window)(RMSNorm(plus_one)(x))
        x = x + ffn()(RMSNorm(plus_one)(x))
    return keras.Model(inp, _head(RMSNorm(plus_one)(x), name), name=name)


def llama():
    """Llama: RMSNorm, rotary, grouped-query attention (4 query heads, 2 key/value), SwiGLU."""
    return _decoder("llama", kv_heads=2, ffn=lambda: GatedFFN(act="silu"))


def gemma():
    """Gemma: RMSNorm with (1 + w), scaled embeddings, GeGLU, rotary, multi-query attention."""
    return _decoder("gemma", kv_heads=1, ffn=lambda: GatedFFN(act="gelu"), plus_one=True,
                    scale_embed=True)


def mistral():
    """Mistral: Llama with a sliding-window (8 tokens) causal mask."""
    return _decoder("mistral", kv_heads=2, ffn=lambda: GatedFFN(act="silu"), mask="sliding",
                    window=8)


def qwen():
    """Qwen: Llama with biases on q, k and v."""
    return _decoder("qwen", kv_heads=2, ffn=lambda: GatedFFN(act="silu"), qkv_bias=True)


def mixtral():
    """Mixtral: Mistral's attention with a top-2-of-4 mixture of SwiGLU experts."""
    return _decoder("mixtral", kv_heads=2, ffn=MoE, mask="sliding", window=8)


def deberta():
    """DeBERTa: post-norm, disentangled relative-position attention, no absolute positions."""
    inp = _tokens()
    x = L.LayerNormalization(epsilon=1e-7)(L.Embedding(VOCAB, WIDTH)(inp))
    return keras.Model(inp, _head(_post_norm_stack(x, DisentangledAttention), "deberta"),
                       name="deberta")


def fnet():
    """FNet: learned positions, post-norm, Fourier token mixing instead of attention."""
    inp = _tokens()
    x = L.LayerNormalization(epsilon=1e-12)(Positions()(L.Embedding(VOCAB, WIDTH)(inp)))
    return keras.Model(inp, _head(_post_norm_stack(x, FourierMix), "fnet"), name="fnet")


def vit(classes: int = 10):
    """ViT: 4x4 patch embedding (a strided conv) of 32x32x3 images, class token, learned
    positions, pre-norm encoder, logits from the class token."""
    inp = keras.Input((32, 32, 3), name="image")
    x = L.Conv2D(WIDTH, 4, strides=4)(inp)
    x = L.Reshape((-1, WIDTH))(x)
    x = Positions()(ClassToken()(x))
    for _ in range(DEPTH):
        h = L.LayerNormalization(epsilon=1e-6)(x)
        x = x + L.MultiHeadAttention(HEADS, HEAD_DIM)(h, h)
        x = x + _gelu_ffn(L.LayerNormalization(epsilon=1e-6)(x))
    x = L.LayerNormalization(epsilon=1e-6)(x)
    return keras.Model(inp, L.Dense(classes)(x[:, 0]), name="vit")


ARCHITECTURES = {f.__name__: f for f in (bert, gpt2, llama, gemma, mistral, qwen, mixtral,
                                          deberta, fnet, vit)}
