"""Random ops: stateless ones bit-exact with TF; stateful ones exact on TF's first seeded run."""

from __future__ import annotations

import numpy as np

from . import Case
from . import raw as _raw

CASES: list[Case] = []


SEEDS = [np.array([1, 2], np.int64), np.array([-7, 123456789], np.int32),
         np.array([2**40 + 5, -(2**62)], np.int64)]
SHAPES = [[7], [3, 5], [2, 3, 6], [], [0, 4]]
FLOATS = ["float32", "float64", "float16", "bfloat16"]
# normals are bit-exact too: ops/_libm.py reproduces the glibc logf/sincosf/log TF calls


def _seed_id(seed) -> str:
    return f"{seed.dtype.name}_{abs(int(seed[0])) % 1000}"


def _v2(kind, shape, dtype):
    def fn(seed):
        r = _raw()
        key, counter = r.StatelessRandomGetKeyCounter(seed=seed)
        alg = r.StatelessRandomGetAlg()
        op = {"uniform": r.StatelessRandomUniformV2, "normal": r.StatelessRandomNormalV2,
              "truncated": r.StatelessTruncatedNormalV2}[kind]
        return op(shape=shape, key=key, counter=counter, alg=alg, dtype=dtype)
    return fn


def _v1(kind, shape, dtype):
    def fn(seed):
        r = _raw()
        op = {"uniform": r.StatelessRandomUniform, "normal": r.StatelessRandomNormal,
              "truncated": r.StatelessTruncatedNormal}[kind]
        return op(shape=shape, seed=seed, dtype=dtype)
    return fn


_V2_OPS = {"uniform": "StatelessRandomUniformV2", "normal": "StatelessRandomNormalV2",
           "truncated": "StatelessTruncatedNormalV2"}
_V1_OPS = {"uniform": "StatelessRandomUniform", "normal": "StatelessRandomNormal",
           "truncated": "StatelessTruncatedNormal"}

for kind in ("uniform", "normal", "truncated"):
    for dtype in FLOATS:
        tol = (0, 0)
        for i, shape in enumerate(SHAPES):
            if dtype == "bfloat16" and not shape:
                shape = [1]  # np.asarray() of a 0-d bfloat16 TF tensor fails (in the harness)
            seed = SEEDS[i % len(SEEDS)]
            CASES.append(Case(
                id=f"random_{kind}_v2_{dtype}_{'x'.join(map(str, shape)) or 'scalar'}_"
                   f"{_seed_id(seed)}",
                ops=(_V2_OPS[kind], "StatelessRandomGetKeyCounter", "StatelessRandomGetAlg"),
                fn=_v2(kind, shape, dtype), inputs=[seed], rtol=tol[0], atol=tol[1],
                out_dtypes=(dtype,),
                dynamic=i == 0))
        if dtype != "bfloat16":  # the V1 ops have no bfloat16 CPU kernel
            for seed in SEEDS:
                CASES.append(Case(
                    id=f"random_{kind}_v1_{dtype}_{_seed_id(seed)}",
                    ops=(_V1_OPS[kind],), fn=_v1(kind, [4, 9], dtype), inputs=[seed],
                    out_dtypes=(dtype,),
                    rtol=tol[0], atol=tol[1]))

# a large truncated normal: many groups, each from its own window of the stream
CASES.append(Case(
    id="random_truncated_v2_float64_large", ops=("StatelessTruncatedNormalV2",),
    fn=_v2("truncated", [1001], "float64"), inputs=[SEEDS[0]], rtol=0, atol=0))
CASES.append(Case(
    id="random_normal_v2_float32_large", ops=("StatelessRandomNormalV2",),
    fn=_v2("normal", [3001], "float32"), inputs=[SEEDS[1]], rtol=0, atol=0))


def _shape_input(kind):
    def fn(shape, seed):
        r = _raw()
        key, counter, alg = r.StatelessRandomGetKeyCounterAlg(seed=seed)
        op = {"uniform": r.StatelessRandomUniformV2, "normal": r.StatelessRandomNormalV2}[kind]
        return op(shape=shape, key=key, counter=counter, alg=alg, dtype="float32")
    return fn


for kind in ("uniform", "normal"):
    CASES.append(Case(
        id=f"random_{kind}_v2_shape_input", ops=(_V2_OPS[kind], "StatelessRandomGetKeyCounterAlg"),
        fn=_shape_input(kind), inputs=[np.array([3, 4], np.int64), SEEDS[0]],
        rtol=0, atol=0, dynamic=True))


def _key_counter_alg(seed):
    return tuple(_raw().StatelessRandomGetKeyCounterAlg(seed=seed))


def _key_counter(seed):
    return tuple(_raw().StatelessRandomGetKeyCounter(seed=seed))


for seed in SEEDS:
    CASES.append(Case(id=f"random_get_key_counter_alg_{_seed_id(seed)}",
                      ops=("StatelessRandomGetKeyCounterAlg",), fn=_key_counter_alg,
                      inputs=[seed], rtol=0, atol=0))
    CASES.append(Case(id=f"random_get_key_counter_{_seed_id(seed)}",
                      ops=("StatelessRandomGetKeyCounter",), fn=_key_counter,
                      inputs=[seed], rtol=0, atol=0))


# -- integers ------------------------------------------------------------------------------------

def _int_v2(shape):
    def fn(seed, lo, hi):
        r = _raw()
        key, counter = r.StatelessRandomGetKeyCounter(seed=seed)
        return r.StatelessRandomUniformIntV2(shape=shape, key=key, counter=counter, alg=1,
                                             minval=lo, maxval=hi)
    return fn


def _int_v1(shape):
    def fn(seed, lo, hi):
        return _raw().StatelessRandomUniformInt(shape=shape, seed=seed, minval=lo, maxval=hi)
    return fn


INT_RANGES = {
    "int32": [(0, 10), (-5, 7), (-(2**31), 2**31 - 1), (3, 4), (-100, -1)],
    "int64": [(0, 10), (-5, 7), (-(2**63), 2**63 - 1), (2**40, 2**41), (-(2**62), 2**62)],
}
for dtype, ranges in INT_RANGES.items():
    for i, (lo, hi) in enumerate(ranges):
        seed = SEEDS[i % len(SEEDS)]
        ins = [seed, np.array(lo, dtype), np.array(hi, dtype)]
        CASES.append(Case(id=f"random_uniform_int_v2_{dtype}_{i}",
                          ops=("StatelessRandomUniformIntV2",), fn=_int_v2([5, 7]), inputs=ins,
                          rtol=0, atol=0, dynamic=i == 0))
        CASES.append(Case(id=f"random_uniform_int_v1_{dtype}_{i}",
                          ops=("StatelessRandomUniformInt",), fn=_int_v1([13]), inputs=ins,
                          rtol=0, atol=0))
CASES.append(Case(id="random_uniform_int_v2_empty", ops=("StatelessRandomUniformIntV2",),
                  fn=_int_v2([0, 3]), rtol=0, atol=0,
                  inputs=[SEEDS[0], np.array(5, np.int32), np.array(5, np.int32)]))


def _full_int_v2(dtype, shape):
    def fn(seed):
        r = _raw()
        key, counter = r.StatelessRandomGetKeyCounter(seed=seed)
        return r.StatelessRandomUniformFullIntV2(shape=shape, key=key, counter=counter, alg=3,
                                                 dtype=dtype)
    return fn


def _full_int_v1(dtype, shape):
    def fn(seed):
        return _raw().StatelessRandomUniformFullInt(shape=shape, seed=seed, dtype=dtype)
    return fn


for dtype in ("int32", "int64", "uint32", "uint64"):
    for i, seed in enumerate(SEEDS):
        CASES.append(Case(id=f"random_full_int_v2_{dtype}_{_seed_id(seed)}",
                          ops=("StatelessRandomUniformFullIntV2",),
                          fn=_full_int_v2(dtype, [3, 5 + i]), inputs=[seed], rtol=0, atol=0,
                          out_dtypes=(dtype,)))
        CASES.append(Case(id=f"random_full_int_v1_{dtype}_{_seed_id(seed)}",
                          ops=("StatelessRandomUniformFullInt",),
                          fn=_full_int_v1(dtype, [7 + i]), inputs=[seed], rtol=0, atol=0,
                          out_dtypes=(dtype,)))


# -- multinomial and shuffle ---------------------------------------------------------------------

def _logits(dtype):
    def make(rng):
        x = rng.normal(size=(4, 6)) * 2
        x[1, 2] = -np.inf
        x[2, :] = 0.0
        x[3, :5] = -np.inf
        return [x.astype(dtype), SEEDS[0]]
    return make


def _multinomial(num_samples, output_dtype):
    def fn(logits, seed):
        return _raw().StatelessMultinomial(logits=logits, num_samples=num_samples, seed=seed,
                                           output_dtype=output_dtype)
    return fn


for dtype in ("float32", "float64", "float16"):
    for ns in (1, 7, 0):
        for od in ("int32", "int64"):
            CASES.append(Case(id=f"random_multinomial_{dtype}_{ns}_{od}",
                              ops=("StatelessMultinomial",), fn=_multinomial(ns, od),
                              inputs=_logits(dtype), rtol=0, atol=0, dynamic=ns == 7,
                              out_dtypes=(od,)))


def _bf16_multinomial(logits, seed):
    import tensorflow as tf

    return _raw().StatelessMultinomial(logits=tf.cast(logits, tf.bfloat16), num_samples=5,
                                       seed=seed)


CASES.append(Case(id="random_multinomial_bfloat16", ops=("StatelessMultinomial", "Cast"),
                  fn=_bf16_multinomial, inputs=_logits("float32"), rtol=0, atol=0))


def _stateless_shuffle(value, seed):
    r = _raw()
    key, counter, alg = r.StatelessRandomGetKeyCounterAlg(seed=seed)
    return r.StatelessShuffle(value=value, key=key, counter=counter, alg=alg)


for name, value in [("1d", np.arange(17, dtype=np.int32)),
                    ("2d", np.arange(40, dtype=np.float32).reshape(10, 4)),
                    ("3d", np.arange(60, dtype=np.float64).reshape(5, 3, 4)),
                    ("one", np.arange(1, dtype=np.int64)),
                    ("empty", np.zeros((0, 3), np.float32)),
                    ("bool", np.arange(9) % 2 == 0)]:
    CASES.append(Case(id=f"random_stateless_shuffle_{name}", ops=("StatelessShuffle",),
                      fn=_stateless_shuffle, inputs=[value, SEEDS[1]], rtol=0, atol=0))


# -- stateful ops with a seed: TF's first run is deterministic -----------------------------------

def _stateful(kind, dtype, seed, seed2):
    def fn(x):
        import tensorflow as tf

        r = _raw()
        shape = tf.shape(x)
        op = {"uniform": r.RandomUniform, "normal": r.RandomStandardNormal,
              "truncated": r.TruncatedNormal}[kind]
        return op(shape=shape, dtype=dtype, seed=seed, seed2=seed2)
    return fn


_STATEFUL_OPS = {"uniform": "RandomUniform", "normal": "RandomStandardNormal",
                 "truncated": "TruncatedNormal"}
for kind in ("uniform", "normal", "truncated"):
    for dtype in FLOATS:
        tol = (0, 0)
        for seed, seed2 in [(1, 2), (0, 87654321)]:
            CASES.append(Case(id=f"random_stateful_{kind}_{dtype}_{seed}_{seed2}",
                              ops=(_STATEFUL_OPS[kind],), fn=_stateful(kind, dtype, seed, seed2),
                              inputs=[np.zeros((3, 11), np.float32)], rtol=tol[0], atol=tol[1],
                              out_dtypes=(dtype,)))


def _stateful_int(seed, seed2):
    def fn(x, lo, hi):
        import tensorflow as tf

        return _raw().RandomUniformInt(shape=tf.shape(x), minval=lo, maxval=hi, seed=seed,
                                       seed2=seed2)
    return fn


for dtype in ("int32", "int64"):
    CASES.append(Case(id=f"random_stateful_uniform_int_{dtype}", ops=("RandomUniformInt",),
                      fn=_stateful_int(5, 6), rtol=0, atol=0,
                      inputs=[np.zeros((4, 5)), np.array(-10, dtype), np.array(1000, dtype)]))


def _stateful_multinomial(logits):
    return _raw().Multinomial(logits=logits, num_samples=9, seed=3, seed2=4)


CASES.append(Case(id="random_stateful_multinomial", ops=("Multinomial",),
                  fn=_stateful_multinomial, inputs=lambda rng: [rng.normal(size=(3, 5))],
                  rtol=0, atol=0))


def _stateful_shuffle(value):
    return _raw().RandomShuffle(value=value, seed=11, seed2=12)


for name, value in [("1d", np.arange(30, dtype=np.int64)),
                    ("2d", np.arange(24, dtype=np.float32).reshape(8, 3))]:
    CASES.append(Case(id=f"random_stateful_shuffle_{name}", ops=("RandomShuffle",),
                      fn=_stateful_shuffle, inputs=[value], rtol=0, atol=0))
