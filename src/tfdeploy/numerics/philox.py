"""Philox4x32-10 and TensorFlow's distributions on top of it, bit-exact with TF's CPU kernels.

TF (tensorflow/core/lib/random) draws every random tensor from a Philox4x32-10 stream: a 128-bit
counter (four uint32 words, word 0 least significant) and a 64-bit key (two uint32 words). Each
call turns the counter into four uint32 samples and then increments the counter. Outputs are
filled in groups: a group of ``k`` outputs consumes one Philox call (``k`` = 4 for 32-bit
results, 2 for 64-bit ones), group ``g`` using counter + ``g``. Rejection samplers (truncated
normal) instead give each group of outputs its own window of 256 samples per output.

Everything here is vectorised over Philox calls with numpy uint64 arithmetic.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.numerics import libm, libm_sincos

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
_MASK32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)

#: Philox calls reserved for each output of a rejection sampler, per output element
_RESERVED_SAMPLES_PER_OUTPUT = 256


def philox(ctr: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Philox4x32-10 of counters ``ctr`` (shape (4, n), uint64 holding uint32) under ``key``.

    Returns the (4, n) uint32 outputs (as uint64 words).
    """
    c0, c1, c2, c3 = ctr
    k0, k1 = int(key[0]), int(key[1])
    for r in range(10):
        if r:
            k0 = (k0 + _W0) & 0xFFFFFFFF
            k1 = (k1 + _W1) & 0xFFFFFFFF
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = ((p1 >> _S32) ^ c1 ^ np.uint64(k0), p1 & _MASK32,
                          (p0 >> _S32) ^ c3 ^ np.uint64(k1), p0 & _MASK32)
    return np.stack([c0, c1, c2, c3])


def split64(x: int) -> tuple[int, int]:
    x = int(x) & 0xFFFFFFFFFFFFFFFF
    return x & 0xFFFFFFFF, x >> 32


def key_counter_from_seed(seed) -> tuple[int, tuple[int, int]]:
    """TF's ``GenerateKey``: the (key, counter) of a stateless op's 2-element seed, scrambled.

    The key is one uint64 and the counter two uint64 (low word first), as the V2 ops take them.
    """
    seed = np.asarray(seed)
    if seed.shape != (2,):
        raise ValueError(f"seed must have shape [2], not {list(seed.shape)}")
    if seed.dtype not in (np.int32, np.int64):
        raise TypeError(f"seed must be int32 or int64, got {seed.dtype}")
    s0, s1 = (int(v) & 0xFFFFFFFFFFFFFFFF for v in seed.astype(np.int64).tolist())
    ctr = np.array([*split64(s0), *split64(s1)], dtype=np.uint64).reshape(4, 1)
    mix = [int(v) for v in philox(ctr, (0x3EC8F720, 0x02461E29))[:, 0]]
    key = mix[0] | mix[1] << 32
    return key, (0, mix[2] | mix[3] << 32)


def generator_from_seeds(seed: int, seed2: int) -> tuple[int, tuple[int, int]]:
    """The (key, counter) of a stateful op's ``PhiloxRandom(seed, seed2)`` before its first run."""
    return int(seed) & 0xFFFFFFFFFFFFFFFF, (0, int(seed2) & 0xFFFFFFFFFFFFFFFF)


def blocks(key: int, counter: tuple[int, int], index: np.ndarray) -> np.ndarray:
    """The Philox outputs (shape index.shape + (4,), uint64 holding uint32) at counter + index."""
    index = np.asarray(index, dtype=np.uint64)
    lo0, hi0 = int(counter[0]) & 0xFFFFFFFFFFFFFFFF, int(counter[1]) & 0xFFFFFFFFFFFFFFFF
    lo = index + np.uint64(lo0)  # wraps modulo 2**64
    hi = np.uint64(hi0) + (lo < np.uint64(lo0)).astype(np.uint64)
    flat = np.stack([lo & _MASK32, lo >> _S32, hi & _MASK32, hi >> _S32]).reshape(4, -1)
    out = philox(flat, split64(key))
    return out.T.reshape(index.shape + (4,))


def uint32_stream(key: int, counter: tuple[int, int], n: int, start_block: int = 0) -> np.ndarray:
    """``n`` consecutive uint32 samples (as uint64) starting at Philox call ``start_block``."""
    nblocks = -(-n // 4)
    idx = np.arange(start_block, start_block + nblocks, dtype=np.uint64)
    return blocks(key, counter, idx).reshape(-1)[:n]


# -- conversions (random_distributions_utils.h) -------------------------------------------------

def uint32_to_float(x: np.ndarray) -> np.ndarray:
    """Uniform float32 in [0, 1) from the low 23 bits."""
    bits = (np.uint32(127 << 23) | (x.astype(np.uint32) & np.uint32(0x7FFFFF)))
    return bits.view(np.float32) - np.float32(1.0)


def uint64_to_double(x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Uniform float64 in [0, 1) from 20 bits of ``x0`` and 32 of ``x1``."""
    man = ((x0.astype(np.uint64) & np.uint64(0xFFFFF)) << _S32) | x1.astype(np.uint64)
    return (np.uint64(1023 << 52) | man).view(np.float64) - 1.0


def double_pairs(b: np.ndarray) -> np.ndarray:
    """UniformDistribution<double> of Philox outputs (..., 4): its two doubles, (..., 2)."""
    return np.stack([uint64_to_double(b[..., 0], b[..., 1]),
                     uint64_to_double(b[..., 2], b[..., 3])], axis=-1)


def uint16_to_half(x: np.ndarray) -> np.ndarray:
    bits = np.uint16(15 << 10) | (x.astype(np.uint16) & np.uint16(0x3FF))
    return bits.view(np.float16) - np.float16(1.0)


def uint16_to_bfloat16(x: np.ndarray, bf16: np.dtype) -> np.ndarray:
    bits = np.uint16(127 << 7) | (x.astype(np.uint16) & np.uint16(0x7F))
    # values in [1, 2) with 7 mantissa bits: subtracting 1 is exact in float32 and in bfloat16
    return (bits.view(bf16).astype(np.float32) - np.float32(1.0)).astype(bf16)


def box_muller_float(x0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TF's BoxMullerFloat: two float32 normals from two uint32.

    TF calls glibc's ``logf`` and ``sincosf``, which are not correctly rounded; ``numerics.libm``
    reproduces them bit for bit. The rest is float32 arithmetic, as in TF.
    """
    u1 = uint32_to_float(x0)
    u1 = np.maximum(u1, np.float32(1.0e-7))
    # 2.0f * M_PI is a double product; the float sample is promoted, the product rounded to float
    v1 = (2.0 * np.pi * uint32_to_float(x1).astype(np.float64)).astype(np.float32)
    u2 = np.sqrt(np.float32(-2.0) * libm.logf(u1))
    s, c = libm.sincosf(v1)
    return s * u2, c * u2


def box_muller_double(x0, x1, x2, x3) -> tuple[np.ndarray, np.ndarray]:
    """TF's BoxMullerDouble: two float64 normals from four uint32.

    TF calls glibc's ``log`` and, on Linux, ``sincos``; ``numerics.libm`` and
    ``numerics.libm_sincos`` reproduce them bit for bit (numpy's own sin and cos are glibc's
    only on some versions, and glibc's ``sincos`` is not always its ``sin``).
    """
    u1 = np.maximum(uint64_to_double(x0, x1), 1.0e-7)
    v1 = 2 * np.pi * uint64_to_double(x2, x3)
    u2 = np.sqrt(-2.0 * libm.log(u1))
    s, c = libm_sincos.sincos(v1)
    return s * u2, c * u2


# -- distributions: (key, counter, n) -> n samples ---------------------------------------------

def uniform(key: int, counter, n: int, dtype: np.dtype) -> np.ndarray:
    """UniformDistribution for floats: [0, 1)."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        s = uint32_stream(key, counter, 2 * n)
        return uint64_to_double(s[0::2], s[1::2])
    s = uint32_stream(key, counter, n)
    if dtype == np.float32:
        return uint32_to_float(s)
    if dtype == np.float16:
        return uint16_to_half(s)
    if dtype.name == "bfloat16":
        return uint16_to_bfloat16(s, dtype)
    raise TypeError(f"unsupported dtype {dtype} for a uniform random op")


def normal(key: int, counter, n: int, dtype: np.dtype) -> np.ndarray:
    """NormalDistribution: Box-Muller over consecutive samples (pairs, or quads for double)."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        m = -(-n // 2) * 2
        s = uint32_stream(key, counter, 2 * m).reshape(-1, 4)
        d0, d1 = box_muller_double(s[:, 0], s[:, 1], s[:, 2], s[:, 3])
        return np.stack([d0, d1], axis=1).reshape(-1)[:n]
    if dtype not in (np.float32, np.float16) and dtype.name != "bfloat16":
        raise TypeError(f"unsupported dtype {dtype} for a normal random op")
    m = -(-n // 2) * 2
    s = uint32_stream(key, counter, m).reshape(-1, 2)
    f0, f1 = box_muller_float(s[:, 0], s[:, 1])
    return np.stack([f0, f1], axis=1).reshape(-1)[:n].astype(dtype)


def truncated_normal(key: int, counter, n: int, dtype: np.dtype) -> np.ndarray:
    """TruncatedNormalDistribution: normals with |x| < 2 kept, in order, per output group.

    Group ``g`` of outputs (4 for 32/16-bit floats, 2 for double) reads its own sample stream
    starting 256 samples per output into the generator; each Box-Muller pair yields up to two
    accepted values, first then second.
    """
    dtype = np.dtype(dtype)
    is_double = dtype == np.float64
    if not is_double and dtype not in (np.float32, np.float16) and dtype.name != "bfloat16":
        raise TypeError(f"unsupported dtype {dtype} for a truncated normal random op")
    group = 2 if is_double else 4
    skip = group * _RESERVED_SAMPLES_PER_OUTPUT // 4  # Philox calls per group
    ngroups = -(-n // group)
    if n == 0:
        return np.zeros(0, dtype)
    base = np.arange(ngroups, dtype=np.uint64) * np.uint64(skip)
    # draw Philox calls per group in rounds until every group has `group` accepted values;
    # acceptance is ~95%, so a few calls nearly always suffice
    vals = np.empty((ngroups, 0), np.float64 if is_double else np.float32)
    calls, per_round = 0, 2
    while True:
        idx = base[:, None] + np.arange(calls, calls + per_round, dtype=np.uint64)[None, :]
        if calls + per_round > skip:
            raise ValueError("truncated normal: ran out of reserved samples")  # ~impossible
        s = blocks(key, counter, idx).reshape(ngroups, -1)
        if is_double:
            q = s.reshape(ngroups, -1, 4)
            a, b = box_muller_double(q[..., 0], q[..., 1], q[..., 2], q[..., 3])
        else:
            q = s.reshape(ngroups, -1, 2)
            a, b = box_muller_float(q[..., 0], q[..., 1])
        new = np.stack([a, b], axis=-1).reshape(ngroups, -1)
        vals = np.concatenate([vals, new], axis=1)
        calls += per_round
        acc = np.abs(vals) < 2.0
        if (acc.sum(axis=1) >= group).all():
            break
    # the first `group` accepted values of each group, in order
    rank = np.cumsum(acc, axis=1) - 1
    take = acc & (rank < group)
    out = vals[take].reshape(ngroups, group).reshape(-1)[:n]
    return out.astype(dtype)


def uniform_int(key: int, counter, n: int, lo, hi, dtype: np.dtype) -> np.ndarray:
    """UniformDistribution for int32/int64: lo + bits % (hi - lo), computed unsigned."""
    dtype = np.dtype(dtype)
    lo, hi = int(lo), int(hi)
    if dtype.itemsize == 8:
        s = uint32_stream(key, counter, 2 * n)
        bits = s[0::2] | (s[1::2] << _S32)
        rng = np.uint64((hi - lo) & 0xFFFFFFFFFFFFFFFF)
        r = bits % rng
        return (r + np.uint64(lo & 0xFFFFFFFFFFFFFFFF)).view(np.int64).astype(dtype)
    s = uint32_stream(key, counter, n)
    rng = np.uint64((hi - lo) & 0xFFFFFFFF)
    r = (s % rng + np.uint64(lo & 0xFFFFFFFF)) & _MASK32
    return r.astype(np.uint32).view(np.int32).astype(dtype)


def uniform_full_int(key: int, counter, n: int, dtype: np.dtype) -> np.ndarray:
    """UniformFullIntDistribution: raw 32-bit samples, or pairs joined low word first."""
    dtype = np.dtype(dtype)
    if dtype.itemsize == 8:
        s = uint32_stream(key, counter, 2 * n)
        return (s[0::2] | (s[1::2] << _S32)).view(dtype)
    return uint32_stream(key, counter, n).astype(np.uint32).view(dtype)
