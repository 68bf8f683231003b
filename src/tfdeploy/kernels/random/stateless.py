"""Random ops: the stateless family bit-exact with TensorFlow's CPU kernels, and stateful ones.

Every kernel draws from TF's Philox4x32-10 stream (see ``_philox``). Stateless ops are pure
functions of their seed (or key/counter). Stateful ops (``RandomUniform``...) reproduce TF's
*first* run when ``seed`` or ``seed2`` is set, and draw fresh entropy on every call otherwise.
"""

from __future__ import annotations

import os

import numpy as np

from tfdeploy.kernels.common import np_dtype, op
from tfdeploy.numerics import philox as px
from tfdeploy.runtime.limits import check_array

RNG_ALG_PHILOX = 1
RNG_ALG_THREEFRY = 2
RNG_ALG_AUTO_SELECT = 3


# -- helpers -------------------------------------------------------------------------------------

def shape_arg(shape) -> tuple[int, ...]:
    s = np.asarray(shape)
    if s.ndim != 1 or s.dtype.kind not in "iu":
        raise ValueError(f"shape must be a vector of int32 or int64, got {s.dtype} {list(s.shape)}")
    dims = tuple(int(d) for d in s.tolist())
    if any(d < 0 for d in dims):
        raise ValueError(f"shape must not have negative dimensions, got {list(dims)}")
    return dims


def key_counter(key, counter, alg) -> tuple[int, tuple[int, int]]:
    """Validate a V2 op's (key, counter, alg) and return Philox's key and counter."""
    a = int(np.asarray(alg).reshape(-1)[0]) if np.size(alg) == 1 else None
    if a is None or np.ndim(alg) != 0:
        raise ValueError(f"alg must be a scalar, got shape {list(np.shape(alg))}")
    if a == RNG_ALG_AUTO_SELECT:
        a = RNG_ALG_PHILOX
    if a != RNG_ALG_PHILOX:
        raise ValueError(f"Unsupported algorithm id: {a} (only Philox, 1, runs on CPU)")
    key, counter = np.asarray(key), np.asarray(counter)
    if key.shape != (1,):
        raise ValueError(f"key must have shape [1], not {list(key.shape)}")
    if counter.ndim != 1 or counter.shape[0] < 2:
        raise ValueError(f"counter must have shape [2] or larger, not {list(counter.shape)}")
    c = counter.astype(np.uint64).tolist()
    return int(key.astype(np.uint64)[0]), (int(c[0]), int(c[1]))


def stateful_gen(seed: int, seed2: int) -> tuple[int, tuple[int, int]]:
    """The generator of a stateful op: TF's initial one when seeded, fresh entropy otherwise."""
    if seed == 0 and seed2 == 0:
        seed, seed2 = (int.from_bytes(os.urandom(8), "little") for _ in range(2))
    return px.generator_from_seeds(seed, seed2)


def _float_dtype(dtype: str) -> np.dtype:
    dt = np_dtype(dtype)
    if dt.kind != "f" and dt.name != "bfloat16":
        raise TypeError(f"dtype must be a float type, got {dtype}")
    return dt


def _fill(dist, dims, gen, *args) -> np.ndarray:
    key, counter = gen
    check_array(dims, np.float64, "the random tensor")
    n = int(np.prod(dims, dtype=np.int64))
    return dist(key, counter, n, *args).reshape(dims)


def _int_bounds(minval, maxval, dtype: np.dtype) -> tuple[int, int]:
    for name, v in (("minval", minval), ("maxval", maxval)):
        if np.ndim(v) != 0:
            raise ValueError(f"{name} must be 0-D, got shape {list(np.shape(v))}")
    lo, hi = int(minval), int(maxval)
    return lo, hi


def _uniform_int(dims, gen, minval, maxval) -> np.ndarray:
    dt = np.asarray(minval).dtype
    lo, hi = _int_bounds(minval, maxval, dt)
    check_array(dims, np.int64, "the random tensor")
    n = int(np.prod(dims, dtype=np.int64))
    if n == 0:
        return np.zeros(dims, dt)
    if not lo < hi:
        raise ValueError(f"Need minval < maxval, got {lo} >= {hi}")
    return px.uniform_int(gen[0], gen[1], n, lo, hi, dt).reshape(dims)


# -- key/counter/alg -----------------------------------------------------------------------------

@op("StatelessRandomGetKeyCounter")
def StatelessRandomGetKeyCounter(seed):
    """StatelessRandomGetKeyCounter: scramble a 2-element seed into Philox's key and counter."""
    key, counter = px.key_counter_from_seed(seed)
    return np.array([key], np.uint64), np.array(counter, np.uint64)


@op("StatelessRandomGetKeyCounterAlg")
def StatelessRandomGetKeyCounterAlg(seed):
    """StatelessRandomGetKeyCounterAlg: key and counter of a seed, and the CPU algorithm."""
    key, counter = StatelessRandomGetKeyCounter(seed)
    return key, counter, np.asarray(RNG_ALG_PHILOX, np.int32)


@op("StatelessRandomGetAlg")
def StatelessRandomGetAlg():
    """StatelessRandomGetAlg: the RNG algorithm of this device (Philox on CPU)."""
    return np.asarray(RNG_ALG_PHILOX, np.int32)


# -- stateless, V2 (key, counter, alg) ----------------------------------------------------------

@op("StatelessRandomUniformV2")
def StatelessRandomUniformV2(shape, key, counter, alg, *, dtype="float32"):
    """StatelessRandomUniformV2: uniform floats in [0, 1)."""
    return _fill(px.uniform, shape_arg(shape), key_counter(key, counter, alg), _float_dtype(dtype))


@op("StatelessRandomNormalV2")
def StatelessRandomNormalV2(shape, key, counter, alg, *, dtype="float32"):
    """StatelessRandomNormalV2: standard normal floats (Box-Muller), bit-exact with TF.

    TF's Box-Muller calls glibc's logf/sincosf (float32) and log (float64), which are not
    correctly rounded; numerics/libm.py reproduces them bit for bit (x86-64 glibc >= 2.28 with FMA,
    the configuration of TF's Linux wheels on any CPU since 2013).
    """
    return _fill(px.normal, shape_arg(shape), key_counter(key, counter, alg), _float_dtype(dtype))


@op("StatelessTruncatedNormalV2")
def StatelessTruncatedNormalV2(shape, key, counter, alg, *, dtype="float32"):
    """StatelessTruncatedNormalV2: standard normals with |x| < 2, by rejection (bit-exact, as
    StatelessRandomNormalV2)."""
    return _fill(px.truncated_normal, shape_arg(shape), key_counter(key, counter, alg),
                 _float_dtype(dtype))


@op("StatelessRandomUniformIntV2")
def StatelessRandomUniformIntV2(shape, key, counter, alg, minval, maxval):
    """StatelessRandomUniformIntV2: integers in [minval, maxval) (bits % range, as TF)."""
    return _uniform_int(shape_arg(shape), key_counter(key, counter, alg), minval, maxval)


@op("StatelessRandomUniformFullIntV2")
def StatelessRandomUniformFullIntV2(shape, key, counter, alg, *, dtype="uint64"):
    """StatelessRandomUniformFullIntV2: integers over the whole range of ``dtype``."""
    return _fill(px.uniform_full_int, shape_arg(shape), key_counter(key, counter, alg),
                 np_dtype(dtype))


@op("StatelessShuffle")
def StatelessShuffle(value, key, counter, alg):
    """StatelessShuffle: ``value`` permuted along its first axis (Fisher-Yates as TF)."""
    return _shuffle(value, key_counter(key, counter, alg))


# -- stateless, V1 (seed) ------------------------------------------------------------------------

@op("StatelessRandomUniform")
def StatelessRandomUniform(shape, seed, *, dtype="float32"):
    """StatelessRandomUniform: uniform floats in [0, 1) from a 2-element seed."""
    return _fill(px.uniform, shape_arg(shape), px.key_counter_from_seed(seed), _float_dtype(dtype))


@op("StatelessRandomNormal")
def StatelessRandomNormal(shape, seed, *, dtype="float32"):
    """StatelessRandomNormal: standard normals from a 2-element seed (bit-exact with TF)."""
    return _fill(px.normal, shape_arg(shape), px.key_counter_from_seed(seed), _float_dtype(dtype))


@op("StatelessTruncatedNormal")
def StatelessTruncatedNormal(shape, seed, *, dtype="float32"):
    """StatelessTruncatedNormal: standard normals with |x| < 2 from a 2-element seed (bit-exact
    with TF)."""
    return _fill(px.truncated_normal, shape_arg(shape), px.key_counter_from_seed(seed),
                 _float_dtype(dtype))


@op("StatelessRandomUniformInt")
def StatelessRandomUniformInt(shape, seed, minval, maxval):
    """StatelessRandomUniformInt: integers in [minval, maxval) from a 2-element seed."""
    return _uniform_int(shape_arg(shape), px.key_counter_from_seed(seed), minval, maxval)


@op("StatelessRandomUniformFullInt")
def StatelessRandomUniformFullInt(shape, seed, *, dtype="uint64"):
    """StatelessRandomUniformFullInt: integers over the whole range of ``dtype``."""
    seed = np.asarray(seed)
    if seed.dtype.kind == "u":  # the op accepts unsigned seeds; GenerateKey reads the bits
        seed = seed.view(np.int32 if seed.dtype.itemsize == 4 else np.int64)
    return _fill(px.uniform_full_int, shape_arg(shape), px.key_counter_from_seed(seed),
                 np_dtype(dtype))


@op("StatelessMultinomial")
def StatelessMultinomial(logits, num_samples, seed, *, output_dtype="int64"):
    """StatelessMultinomial: class indices drawn from unnormalised log-probabilities.

    Exact for batches TF draws in one shard (all but very large logits); TF's own result
    for larger ones depends on its thread count.
    """
    return _multinomial(logits, num_samples, px.key_counter_from_seed(seed), output_dtype)


# -- stateful ------------------------------------------------------------------------------------

@op("RandomUniform", stateful=True)
def RandomUniform(shape, *, dtype="float32", seed=0, seed2=0):
    """RandomUniform: uniform floats in [0, 1)."""
    return _fill(px.uniform, shape_arg(shape), stateful_gen(seed, seed2), _float_dtype(dtype))


@op("RandomStandardNormal", stateful=True)
def RandomStandardNormal(shape, *, dtype="float32", seed=0, seed2=0):
    """RandomStandardNormal: standard normal floats."""
    return _fill(px.normal, shape_arg(shape), stateful_gen(seed, seed2), _float_dtype(dtype))


@op("TruncatedNormal", stateful=True)
def TruncatedNormal(shape, *, dtype="float32", seed=0, seed2=0):
    """TruncatedNormal: standard normals with |x| < 2."""
    return _fill(px.truncated_normal, shape_arg(shape), stateful_gen(seed, seed2),
                 _float_dtype(dtype))


@op("RandomUniformInt", stateful=True)
def RandomUniformInt(shape, minval, maxval, *, seed=0, seed2=0):
    """RandomUniformInt: integers in [minval, maxval)."""
    return _uniform_int(shape_arg(shape), stateful_gen(seed, seed2), minval, maxval)


@op("Multinomial", stateful=True)
def Multinomial(logits, num_samples, *, seed=0, seed2=0, output_dtype="int64"):
    """Multinomial: class indices drawn from unnormalised log-probabilities."""
    return _multinomial(logits, num_samples, stateful_gen(seed, seed2), output_dtype)


@op("RandomShuffle", stateful=True)
def RandomShuffle(value, *, seed=0, seed2=0):
    """RandomShuffle: ``value`` permuted along its first axis."""
    return _shuffle(value, stateful_gen(seed, seed2))


# -- shared bodies -------------------------------------------------------------------------------

def _multinomial(logits, num_samples, gen, output_dtype: str) -> np.ndarray:
    logits = np.asarray(logits)
    out_dt = np_dtype(output_dtype)
    if logits.ndim != 2:
        raise ValueError(f"logits should be a matrix, got shape {list(logits.shape)}")
    if np.ndim(num_samples) != 0:
        raise ValueError(f"num_samples should be a scalar, got shape {list(np.shape(num_samples))}")
    ns = int(num_samples)
    if ns < 0:
        raise ValueError(f"num_samples should be non-negative, got {ns}")
    batch, classes = logits.shape
    if classes == 0:
        raise ValueError("num_classes should be positive, got 0")
    check_array((batch, ns), np.uint64, "the samples")  # (and their random stream: 8 bytes each)
    if batch * ns == 0:
        return np.zeros((batch, ns), out_dt)
    x = logits.astype(np.float64)
    finite = np.isfinite(x)
    # rows without a finite logit get total 0 and so index num_classes, as in TF
    mx = np.where(finite, x, -np.inf).max(axis=1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    cdf = np.cumsum(np.where(finite, np.exp(np.where(finite, x, 0.0) - mx), 0.0), axis=1)
    total = cdf[:, -1]
    # one SimplePhilox stream over all rows: two uint32 per double sample
    s = px.uint32_stream(gen[0], gen[1], 2 * batch * ns)
    u = px.uint64_to_double(s[0::2], s[1::2]).reshape(batch, ns) * total[:, None]
    out = np.empty((batch, ns), out_dt)
    for b in range(batch):  # upper_bound per row
        out[b] = np.searchsorted(cdf[b], u[b], side="right")
    return out


def _shuffle(value, gen) -> np.ndarray:
    value = np.asarray(value)
    if value.ndim == 0:
        raise ValueError("value must be at least 1-D to shuffle, got a scalar")
    size = value.shape[0]
    if value.size <= 1 or size <= 1:
        return value.copy()
    if size >= 2**32 - 1:
        raise ValueError(f"shuffling {size} rows is not supported")
    draws = px.uint32_stream(gen[0], gen[1], size - 1)
    # swap i with i + r % (size - i): the draws are vectorised, the swaps are sequential
    picks = (draws % np.arange(size, 1, -1, dtype=np.uint64)).astype(np.int64).tolist()
    perm = list(range(size))
    for i, r in enumerate(picks):
        j = i + r
        perm[i], perm[j] = perm[j], perm[i]
    return value[np.asarray(perm, np.int64)]
