"""Gamma and Poisson random ops: bit-exact with TF (zero tolerance) in every dtype.

The samplers call glibc's log, pow, log1p and exp, reproduced bit for bit (ops/_libm.py and
ops/random_gamma.py); Poisson's lgamma only decides acceptance tests."""

from __future__ import annotations

import numpy as np

from . import Case

CASES: list[Case] = []

SEED64 = np.array([1, 2], np.int64)
SEED32 = np.array([-7, 123456789], np.int32)
FLOATS = ["float16", "float32", "float64"]  # no bfloat16: the op definitions do not allow it
# alpha < 1 calls pow(u, 1 / alpha), alpha == 1 log1p(-u), others log only
ALPHA_BIG = np.array([[1.5, 2.0, 3.25], [7.0, 60.0, 1e4]])
ALPHA_SMALL = np.array([[0.5, 1.0, 0.05], [0.999, 0.3, 1e-3]])
ALPHA_SPECIAL = np.array([0.0, -0.5, -2 / 3, -1.0, np.inf, np.nan, 1e-30, 1e30])
RATES = np.array([0.0, 0.5, 3.0, 9.99, 10.0, 15.5, 250.0, 1e5])
RATE_SPECIAL = np.array([-1.0, -np.inf, np.inf, 1e-30, 1e12])
POISSON_TYPES = ["float16", "float32", "float64", "int32", "int64"]


def _raw():
    import tensorflow as tf

    return tf.raw_ops


def _alpha(values, dtype):
    def make(rng):
        with np.errstate(over="ignore"):  # 1e30 is inf in float16
            return [values.astype(dtype)]
    return make


# -- StatelessRandomGammaV2 (seed) --------------------------------------------------------------

def _gamma_v2(shape, seed):
    def fn(alpha):
        return _raw().StatelessRandomGammaV2(shape=shape, seed=seed, alpha=alpha)
    return fn


for dtype in FLOATS:
    for name, alpha, seed in [("big", ALPHA_BIG, SEED64), ("small", ALPHA_SMALL, SEED32)]:
        CASES.append(Case(
            id=f"random_gamma_v2_{dtype}_{name}", ops=("StatelessRandomGammaV2",),
            fn=_gamma_v2([40, 2, 3], seed), inputs=_alpha(alpha, dtype), rtol=0, atol=0,
            dynamic=name == "big"))
    # 0, negative, inf, NaN and extreme alphas; tiny alphas give float32 subnormals, which
    # TF flushes to zero
    CASES.append(Case(
        id=f"random_gamma_v2_{dtype}_special", ops=("StatelessRandomGammaV2",),
        fn=_gamma_v2([30, ALPHA_SPECIAL.size], SEED64), inputs=_alpha(ALPHA_SPECIAL, dtype),
        rtol=0, atol=0))
    CASES.append(Case(
        id=f"random_gamma_v2_{dtype}_scalar", ops=("StatelessRandomGammaV2",),
        fn=_gamma_v2(np.zeros(0, np.int32), SEED32), inputs=[np.array(2.5, dtype)], rtol=0, atol=0))
    CASES.append(Case(
        id=f"random_gamma_v2_{dtype}_scalar_alpha", ops=("StatelessRandomGammaV2",),
        fn=_gamma_v2([7, 5], SEED64), inputs=[np.array(4.0, dtype)], rtol=0, atol=0))
CASES.append(Case(
    id="random_gamma_v2_empty", ops=("StatelessRandomGammaV2",), fn=_gamma_v2([0, 3], SEED64),
    inputs=[np.array([1.0, 2.0, 3.0], np.float32)], rtol=0, atol=0))
CASES.append(Case(
    id="random_gamma_v2_empty_alpha", ops=("StatelessRandomGammaV2",),
    fn=_gamma_v2([4, 0], SEED64), inputs=[np.zeros(0, np.float32)], rtol=0, atol=0))
# large enough for TF to split the work over threads: each output has its own stream window
CASES.append(Case(
    id="random_gamma_v2_float32_sharded", ops=("StatelessRandomGammaV2",),
    fn=_gamma_v2([6000, 4], SEED32), inputs=[np.array([0.2, 1.0, 2.5, 9.0], np.float32)],
    rtol=0, atol=0))


def _gamma_v2_shape(shape, alpha):
    return _raw().StatelessRandomGammaV2(shape=shape, seed=SEED64, alpha=alpha)


CASES.append(Case(
    id="random_gamma_v2_shape_input", ops=("StatelessRandomGammaV2",), fn=_gamma_v2_shape,
    inputs=[np.array([6, 3], np.int64), np.array([1.5, 2.5, 3.5], np.float32)], rtol=0, atol=0,
    dynamic=True))


# -- StatelessRandomGammaV3 (key, counter, alg) and tf.random.stateless_gamma -------------------

def _gamma_v3(shape, alg):
    def fn(seed, alpha):
        r = _raw()
        key, counter = r.StatelessRandomGetKeyCounter(seed=seed)
        return r.StatelessRandomGammaV3(shape=shape, key=key, counter=counter, alg=alg,
                                        alpha=alpha)
    return fn


for dtype in FLOATS:
    for alg in (1, 3):
        CASES.append(Case(
            id=f"random_gamma_v3_{dtype}_alg{alg}",
            ops=("StatelessRandomGammaV3", "StatelessRandomGetKeyCounter"),
            fn=_gamma_v3([25, 2, 3], alg), inputs=[SEED64, ALPHA_BIG.astype(dtype)],
            rtol=0, atol=0, dynamic=alg == 1))
    CASES.append(Case(
        id=f"random_gamma_v3_{dtype}_small", ops=("StatelessRandomGammaV3",),
        fn=_gamma_v3([25, 2, 3], 1), inputs=[SEED32, ALPHA_SMALL.astype(dtype)],
        rtol=0, atol=0))


def _stateless_gamma(dtype, beta):
    def fn(seed, alpha):
        import tensorflow as tf

        return tf.random.stateless_gamma([30, 2, 3], seed, alpha, beta=beta, dtype=dtype)
    return fn


for dtype in FLOATS:
    CASES.append(Case(
        id=f"random_gamma_api_stateless_{dtype}",
        ops=("StatelessRandomGammaV3", "StatelessRandomGetKeyCounter"),
        fn=_stateless_gamma(dtype, None), inputs=[SEED64, ALPHA_BIG.astype(dtype)],
        rtol=0, atol=0))
CASES.append(Case(
    id="random_gamma_api_stateless_beta", ops=("StatelessRandomGammaV3",),
    fn=_stateless_gamma("float32", [[0.5], [2.0]]), inputs=[SEED32, np.array([3.0, 0.7, 1.0],
                                                                            np.float32)],
    rtol=0, atol=0))


# -- RandomGamma (stateful: TF's first run with a seed) and tf.random.gamma ---------------------

def _random_gamma(seed, seed2):
    def fn(x, alpha):
        import tensorflow as tf

        return _raw().RandomGamma(shape=tf.shape(x), alpha=alpha, seed=seed, seed2=seed2)
    return fn


for dtype in FLOATS:
    for seed, seed2 in [(1, 2), (0, 87654321)]:
        CASES.append(Case(
            id=f"random_gamma_stateful_{dtype}_{seed}_{seed2}", ops=("RandomGamma",),
            fn=_random_gamma(seed, seed2),
            inputs=[np.zeros((9, 4)), ALPHA_BIG.astype(dtype)], rtol=0, atol=0))
    CASES.append(Case(
        id=f"random_gamma_stateful_{dtype}_small", ops=("RandomGamma",),
        fn=_random_gamma(5, 6), inputs=[np.zeros((11,)), ALPHA_SMALL.astype(dtype)],
        rtol=0, atol=0))
CASES.append(Case(
    id="random_gamma_stateful_scalar", ops=("RandomGamma",), fn=_random_gamma(3, 4),
    inputs=[np.zeros((5, 2)), np.array(2.5, np.float32)], rtol=0, atol=0))
CASES.append(Case(
    id="random_gamma_stateful_empty", ops=("RandomGamma",), fn=_random_gamma(3, 4),
    inputs=[np.zeros((0, 2)), np.array([2.5], np.float32)], rtol=0, atol=0))
CASES.append(Case(
    id="random_gamma_stateful_empty_alpha", ops=("RandomGamma",), fn=_random_gamma(3, 4),
    inputs=[np.zeros((3,)), np.zeros(0, np.float32)], rtol=0, atol=0))


def _api_gamma(alpha):
    import tensorflow as tf

    return tf.random.gamma([20, 3], alpha, beta=[[1.0], [4.0]], seed=42)


CASES.append(Case(
    id="random_gamma_api_stateful", ops=("RandomGamma",), fn=_api_gamma,
    inputs=[np.array([1.5, 2.5, 8.0], np.float32)], rtol=0, atol=0))


# -- StatelessRandomPoisson and tf.random.stateless_poisson --------------------------------------

def _rates(dtype, values=RATES):
    v = values
    if dtype == "float16":
        v = v[v < 6e4]
    if dtype in ("int32", "int64"):
        v = v[np.isfinite(v)]
    return v.astype(dtype)


def _fits(rates: np.ndarray, out: str) -> np.ndarray:
    """The rates TF can sample in ``out`` (larger ones make its kernel loop forever)."""
    lim = {"float16": 6e4, "int32": 2e9}.get(out, np.inf)
    return rates[rates.astype(np.float64) < lim]


def _stateless_poisson(shape_head, dtype):
    def fn(lam):
        import tensorflow as tf

        shape = tf.concat([tf.constant(shape_head, tf.int32), tf.shape(lam)], 0)
        return _raw().StatelessRandomPoisson(shape=shape, seed=SEED64, lam=lam, dtype=dtype)
    return fn


for rtype in POISSON_TYPES:
    for dtype in POISSON_TYPES:
        lam = _fits(_rates(rtype), dtype)
        CASES.append(Case(
            id=f"random_poisson_stateless_{rtype}_{dtype}", ops=("StatelessRandomPoisson",),
            fn=_stateless_poisson([30], dtype), inputs=[lam], rtol=0, atol=0,
            dynamic=rtype == dtype == "float32", out_dtypes=(dtype,)))
for dtype in ("float32", "int64"):
    CASES.append(Case(
        id=f"random_poisson_stateless_special_{dtype}", ops=("StatelessRandomPoisson",),
        fn=_stateless_poisson([20], dtype), inputs=[_fits(RATE_SPECIAL, dtype)], rtol=0, atol=0))
CASES.append(Case(
    id="random_poisson_stateless_scalar", ops=("StatelessRandomPoisson",),
    fn=_stateless_poisson([], "int32"), inputs=[np.array(4.5, np.float32)], rtol=0, atol=0))
CASES.append(Case(
    id="random_poisson_stateless_empty", ops=("StatelessRandomPoisson",),
    fn=_stateless_poisson([0, 2], "float32"), inputs=[np.array([4.5, 20.0])], rtol=0, atol=0))
CASES.append(Case(
    id="random_poisson_stateless_sharded", ops=("StatelessRandomPoisson",),
    fn=_stateless_poisson([5000], "int64"), inputs=[np.array([2.0, 40.0, 700.0])],
    rtol=0, atol=0))


def _api_stateless_poisson(seed, lam):
    import tensorflow as tf

    return tf.random.stateless_poisson([25, 2, 2], seed, lam, dtype=tf.float32)


CASES.append(Case(
    id="random_poisson_api_stateless", ops=("StatelessRandomPoisson",),
    fn=_api_stateless_poisson, inputs=[SEED32, np.array([[1.0, 12.0], [0.25, 70.0]])],
    rtol=0, atol=0))


# -- RandomPoissonV2 (stateful) and tf.random.poisson -------------------------------------------

def _random_poisson(dtype, seed, seed2):
    def fn(x, rate):
        import tensorflow as tf

        return _raw().RandomPoissonV2(shape=tf.shape(x), rate=rate, seed=seed, seed2=seed2,
                                      dtype=dtype)
    return fn


for rtype in POISSON_TYPES:
    for dtype in POISSON_TYPES:
        CASES.append(Case(
            id=f"random_poisson_v2_{rtype}_{dtype}", ops=("RandomPoissonV2",),
            fn=_random_poisson(dtype, 11, 12), rtol=0, atol=0, out_dtypes=(dtype,),
            inputs=[np.zeros((6, 2)), _fits(_rates(rtype), dtype)]))
CASES.append(Case(
    id="random_poisson_v2_seed2_only", ops=("RandomPoissonV2",),
    fn=_random_poisson("int64", 0, 99), inputs=[np.zeros((10,)), np.array(3.5)],
    rtol=0, atol=0))
CASES.append(Case(
    id="random_poisson_v2_special", ops=("RandomPoissonV2",),
    fn=_random_poisson("float64", 1, 1), inputs=[np.zeros((10,)), RATE_SPECIAL],
    rtol=0, atol=0))
CASES.append(Case(
    id="random_poisson_v2_empty_rate", ops=("RandomPoissonV2",),
    fn=_random_poisson("int32", 1, 1), inputs=[np.zeros((4,)), np.zeros((0,), np.float32)],
    rtol=0, atol=0))


def _api_poisson(lam):
    import tensorflow as tf

    return tf.random.poisson([15, 2], lam, dtype=tf.int32, seed=7)


CASES.append(Case(
    id="random_poisson_api_stateful", ops=("RandomPoissonV2",), fn=_api_poisson,
    inputs=[np.array([[2.0, 30.0]], np.float32)], rtol=0, atol=0))
