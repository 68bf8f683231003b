"""Binomial and parameterized truncated normal random ops: bit-exact with TF, sharding included.

The truncated normals' values depend on how TF shards them over its intra-op threads; the kernel
computes the same shards for this machine, so the large cases below (several shards on any
machine with 2+ cores) check that too.
"""

from __future__ import annotations

import numpy as np

from . import Case

CASES: list[Case] = []

SEED = np.array([5, -9], np.int64)
SEED32 = np.array([123, 456789], np.int32)
FLOATS = ["float16", "float32", "float64"]


def _raw():
    import tensorflow as tf

    return tf.raw_ops


# -- StatelessRandomBinomial ---------------------------------------------------------------------

def _binomial(shape, dtype):
    def fn(seed, counts, probs):
        return _raw().StatelessRandomBinomial(shape=np.array(shape, np.int32), seed=seed,
                                              counts=counts, probs=probs, dtype=dtype)
    return fn


def _binomial_params(t, n=12):
    """Every branch: inversion (count * p < 10), BTRS, p > 0.5 (both), p = 0 / 1, count 0,
    a negative and a non-integer count."""
    def make(rng):
        counts = np.array([5, 40, 1000, 30, 7.5, 200, 0, -3, 12, 60, 3, 250], np.float64)[:n]
        probs = np.array([0.3, 0.5, 0.02, 0.9, 0.6, 0.55, 0.4, 0.5, 0.0, 1.0, 0.999, 0.25])[:n]
        return [SEED, counts.astype(t), probs.astype(t)]
    return make


for t in FLOATS:
    for out in FLOATS + ["int32", "int64"]:
        CASES.append(Case(id=f"random_binomial_{t}_{out}", ops=("StatelessRandomBinomial",),
                          fn=_binomial([9, 12], out), inputs=_binomial_params(t), rtol=0, atol=0,
                          dynamic=out == "float32", out_dtypes=(out,)))

CASES += [
    # one shared parameter pair, scalars, many outputs: TF shards them, values must not move
    Case(id="random_binomial_large_btrs", ops=("StatelessRandomBinomial",),
         fn=_binomial([20000], "float32"), rtol=0, atol=0,
         inputs=[SEED, np.float32(120.0), np.float32(0.35)]),
    Case(id="random_binomial_large_inversion", ops=("StatelessRandomBinomial",),
         fn=_binomial([300, 40], "int32"), rtol=0, atol=0,
         inputs=lambda rng: [SEED32, rng.integers(0, 30, 40).astype(np.float64),
                             rng.uniform(0, 1, 40)]),
    # broadcasting: counts [3, 1] against probs [4], two leading sample dims
    Case(id="random_binomial_broadcast", ops=("StatelessRandomBinomial",),
         fn=_binomial([2, 5, 3, 4], "float64"), rtol=0, atol=0, dynamic=True,
         inputs=lambda rng: [SEED, np.array([[4.0], [50.0], [700.0]], np.float32),
                             np.array([0.1, 0.45, 0.5, 0.8], np.float32)]),
    # shape equal to the parameters' (one sample per batch), and a scalar output
    Case(id="random_binomial_one_sample", ops=("StatelessRandomBinomial",),
         fn=_binomial([2, 3], "int64"), rtol=0, atol=0,
         inputs=[SEED, np.full((2, 3), 25.0), np.array([[0.1, 0.5, 0.7], [0.2, 0.95, 0.45]])]),
    Case(id="random_binomial_scalar", ops=("StatelessRandomBinomial",),
         fn=_binomial([], "float32"), rtol=0, atol=0,
         inputs=[SEED, np.float64(17.0), np.float64(0.6)]),
    Case(id="random_binomial_empty", ops=("StatelessRandomBinomial",),
         fn=_binomial([0, 3], "int32"), rtol=0, atol=0,
         inputs=[SEED, np.ones(3, np.float32), np.full(3, 0.5, np.float32)]),
    # a NaN probability gives NaN (float outputs; TF's int outputs are undefined); an infinite
    # count goes to BTRS and gives inf or NaN
    Case(id="random_binomial_nan_inf", ops=("StatelessRandomBinomial",),
         fn=_binomial([6, 3], "float32"), rtol=0, atol=0,
         inputs=[SEED, np.array([5.0, np.inf, 3.0]), np.array([np.nan, 0.3, 0.5])]),
]


def _binomial_api(shape, output_dtype):
    def fn(seed, counts, probs):
        import tensorflow as tf

        return tf.random.stateless_binomial(shape, seed, counts, probs,
                                            output_dtype=output_dtype)
    return fn


CASES += [
    Case(id="random_binomial_api_int32", ops=("StatelessRandomBinomial",),
         fn=_binomial_api([10, 4], "int32"), rtol=0, atol=0,
         inputs=[SEED32, np.array([10.0, 20.0, 30.0, 400.0], np.float32),
                 np.array([0.8, 0.5, 0.01, 0.5], np.float32)]),
    Case(id="random_binomial_api_float64", ops=("StatelessRandomBinomial",),
         fn=_binomial_api([7, 2, 3], "float64"), rtol=0, atol=0, dynamic=True,
         inputs=[SEED, np.array([[5.0], [80.0]]), np.array([0.3, 0.6, 0.95])]),
]


# -- StatelessParameterizedTruncatedNormal -------------------------------------------------------

def _ptn(shape):
    def fn(seed, means, stddevs, minvals, maxvals):
        return _raw().StatelessParameterizedTruncatedNormal(
            shape=np.array(shape, np.int32), seed=seed, means=means, stddevs=stddevs,
            minvals=minvals, maxvals=maxvals)
    return fn


def _scalars(t, mean, sd, lo, hi, seed=SEED):
    return [seed] + [np.asarray(v, t) for v in (mean, sd, lo, hi)]


# which sampler TF picks: normal rejection (bounds wide around the mean), uniform rejection
# (narrow bounds), exponential (Robert's, one bound far out), and the mirrored one-sided case
BRANCHES = {
    "normal": (0.5, 2.0, -3.0, 4.0),
    "uniform": (0.0, 1.0, 1.0, 1.5),
    "exponential": (0.0, 1.0, 3.0, np.inf),
    "exponential_two_sided": (1.0, 0.5, 2.5, 3.5),
    "mirrored": (0.0, 1.0, -np.inf, -3.0),
    "far_tail": (0.0, 1.0, 30.0, 31.0),
}
for t in FLOATS:
    for name, p in BRANCHES.items():
        CASES.append(Case(id=f"random_ptn_{name}_{t}",
                          ops=("StatelessParameterizedTruncatedNormal",), fn=_ptn([4, 9]),
                          inputs=_scalars(t, *p), rtol=0, atol=0,
                          dynamic=name == "normal"))


def _mixed(t, nb):
    """Per-batch parameters over every sampler, infinite bounds included."""
    def make(rng):
        mean = rng.normal(size=nb) * 2
        sd = rng.uniform(0.2, 3, size=nb)
        lo = mean + sd * rng.normal(size=nb) * 2
        hi = lo + np.maximum(rng.exponential(size=nb) * sd * rng.choice([0.05, 1, 5], nb),
                             0.05 * sd)
        lo[::5] = -np.inf
        hi[3::7] = np.where(np.isinf(lo[3::7]), hi[3::7], np.inf)
        return [SEED32] + [v.astype(t) for v in (mean, sd, lo, hi)]
    return make


for t in FLOATS:
    # few batches of many samples; many batches of few: each batch starts on a fresh Philox call
    CASES.append(Case(id=f"random_ptn_batches_{t}", ops=("StatelessParameterizedTruncatedNormal",),
                      fn=_ptn([30, 20]), inputs=_mixed(t, 20), rtol=0, atol=0))
    # several shards (TF shards above ~1000 outputs on 2+ cores), shard starts inside batches
    CASES.append(Case(id=f"random_ptn_sharded_{t}", ops=("StatelessParameterizedTruncatedNormal",),
                      fn=_ptn([3, 1100]), inputs=_mixed(t, 1100), rtol=0, atol=0))
    CASES.append(Case(id=f"random_ptn_sharded_scalar_{t}",
                      ops=("StatelessParameterizedTruncatedNormal",), fn=_ptn([5000]),
                      inputs=_scalars(t, 1.0, 2.0, -1.0, 4.0), rtol=0, atol=0))

CASES += [
    # broadcasting: means [3, 1], stddevs [4], scalar bounds, two sample dims
    Case(id="random_ptn_broadcast", ops=("StatelessParameterizedTruncatedNormal",),
         fn=_ptn([2, 5, 3, 4]), rtol=0, atol=0, dynamic=True,
         inputs=[SEED, np.array([[0.0], [1.0], [-2.0]], np.float32),
                 np.array([0.5, 1.0, 2.0, 3.0], np.float32), np.float32(-1.0), np.float32(2.0)]),
    Case(id="random_ptn_scalar", ops=("StatelessParameterizedTruncatedNormal",), fn=_ptn([]),
         inputs=_scalars("float64", 0.0, 1.0, 0.5, 0.7), rtol=0, atol=0),
    # an empty output draws nothing, so even invalid parameters pass
    Case(id="random_ptn_empty", ops=("StatelessParameterizedTruncatedNormal",), fn=_ptn([0, 3]),
         inputs=_scalars("float32", [0.0, 0.0, 0.0], -1.0, 1.0, 0.0), rtol=0, atol=0),
    # float16 overflow in the sampler setup: accepts only u == 0, TF still succeeds here
    Case(id="random_ptn_float16_overflow", ops=("StatelessParameterizedTruncatedNormal",),
         fn=_ptn([3]), inputs=_scalars("float16", 0.0, 1.0, 300.0, np.inf,
                                       seed=np.array([0, 1], np.int64)), rtol=0, atol=0),
]


def _ptn_api(shape):
    def fn(seed, means, stddevs, minvals, maxvals):
        import tensorflow as tf

        return tf.random.stateless_parameterized_truncated_normal(shape, seed, means, stddevs,
                                                                  minvals, maxvals)
    return fn


CASES += [
    Case(id="random_ptn_api", ops=("StatelessParameterizedTruncatedNormal",),
         fn=_ptn_api([6, 4]), inputs=_mixed("float32", 4), rtol=0, atol=0, dynamic=True),
    Case(id="random_ptn_api_float64", ops=("StatelessParameterizedTruncatedNormal",),
         fn=_ptn_api([50]), inputs=_scalars("float64", 0.0, 1.0, -2.0, 2.0), rtol=0, atol=0),
]


# -- ParameterizedTruncatedNormal (stateful): TF's first run with a seed -------------------------

def _stateful(seed, seed2):
    def fn(shape, means, stdevs, minvals, maxvals):
        return _raw().ParameterizedTruncatedNormal(shape=shape, means=means, stdevs=stdevs,
                                                   minvals=minvals, maxvals=maxvals, seed=seed,
                                                   seed2=seed2)
    return fn


def _v1_inputs(shape, t, mean, sd, lo, hi):
    return [np.array(shape, np.int32)] + [np.asarray(v, t) for v in (mean, sd, lo, hi)]


for t in FLOATS:
    for name, p in BRANCHES.items():
        if name in ("normal", "uniform", "exponential", "mirrored"):
            CASES.append(Case(id=f"random_ptn_stateful_{name}_{t}",
                              ops=("ParameterizedTruncatedNormal",), fn=_stateful(3, 4),
                              inputs=_v1_inputs([3, 11], t, *p), rtol=0, atol=0))
    # one parameter set: TF regroups the outputs in batches of 100 and shards those
    CASES.append(Case(id=f"random_ptn_stateful_sharded_{t}", ops=("ParameterizedTruncatedNormal",),
                      fn=_stateful(0, 77), inputs=_v1_inputs([2500], t, 1.0, 2.0, 0.0, 5.0),
                      rtol=0, atol=0))


def _v1_vectors(shape, t):
    def make(rng):
        nb = shape[0]
        ins = _mixed(t, nb)(rng)[1:]
        return [np.array(shape, np.int64)] + ins
    return make


CASES += [
    # one parameter set per row of the output
    Case(id="random_ptn_stateful_rows", ops=("ParameterizedTruncatedNormal",),
         fn=_stateful(11, 0), inputs=_v1_vectors([12, 2, 5], "float32"), rtol=0, atol=0),
    Case(id="random_ptn_stateful_rows_sharded", ops=("ParameterizedTruncatedNormal",),
         fn=_stateful(11, 0), inputs=_v1_vectors([300, 10], "float64"), rtol=0, atol=0),
    # a [1]-shaped bound is not a scalar to TF: batches are the rows then, not groups of 100
    Case(id="random_ptn_stateful_vector_bound", ops=("ParameterizedTruncatedNormal",),
         fn=_stateful(5, 6), rtol=0, atol=0,
         inputs=[np.array([40, 5], np.int32), np.float32(0.5), np.float32(1.0),
                 np.array([-1.0], np.float32), np.float32(3.0)]),
    Case(id="random_ptn_stateful_empty", ops=("ParameterizedTruncatedNormal",),
         fn=_stateful(1, 2), inputs=_v1_inputs([0, 4], "float32", 0.0, 1.0, -1.0, 1.0),
         rtol=0, atol=0),
]
