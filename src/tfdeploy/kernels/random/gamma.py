"""Gamma and Poisson random ops, bit-exact with TensorFlow's CPU kernels up to the C library.

TF's samplers (``stateless_random_gamma_op.cc``, ``random_op.cc``, ``random_poisson_op.cc``)
give output ``i`` -- counted parameter-major: every sample of the first alpha (or rate), then
every sample of the next -- its own stretch of the Philox stream, starting ``256 * i`` calls
in, so TF's sharding over threads never changes a value. Each output then draws by rejection
until it accepts, and lands sample-major (``out[..., sample, alpha]``). A sampler pops doubles
from two-slot buffers (normals, uniforms), each refilled from the output's next Philox call and
popped last slot first. Here the rejection loops run in rounds over the outputs not yet
accepted, vectorised over outputs.

Everything is computed in double precision, as TF does, then cast (float16 and bfloat16 via
float32, as Eigen's conversions do), with subnormal results flushed to zero (TF's CPU threads
run with FTZ/DAZ). The C library functions TF calls, all double precision, and ours:

- gamma: ``log`` in the acceptance test (``libm.log``), ``pow(u, 1 / alpha)`` for alpha < 1
  (``libm.pow``), ``log1p(-u)`` for alpha == 1 (``_log1p`` below): all bit-exact with glibc;
- poisson: ``exp(-rate)`` for rate < 10 (``libm.exp``), ``log`` (``libm.log``) and
  ``lgamma`` for rate >= 10. lgamma only enters an acceptance test (``s <= lgamma-based
  bound``): ``_lgamma_int`` is accurate to a few ulps, so a decision could differ from glibc's
  only for a test landing within ~1e-15 of its bound (never observed).
"""

from __future__ import annotations

import math

import numpy as np

from tfdeploy.kernels.common import flush_subnormals, np_dtype, op
from tfdeploy.kernels.random.stateless import key_counter, shape_arg, stateful_gen
from tfdeploy.numerics import libm
from tfdeploy.numerics import philox as px
from tfdeploy.runtime.limits import check_array

#: Philox calls reserved for each output (kReservedSamplesPerOutput, in 128-bit calls)
_RESERVED = 256
#: Philox calls an output may use before we give up: TF's own loop would never end there
_MAX_CALLS = 1 << 16


# -- Philox calls as pairs of doubles ------------------------------------------------------------

def _normal_pairs(gen, calls: np.ndarray) -> np.ndarray:
    """NormalDistribution<double>: the two Box-Muller doubles of each Philox call, (n, 2)."""
    w = px.blocks(gen[0], gen[1], calls)
    a, b = px.box_muller_double(w[:, 0], w[:, 1], w[:, 2], w[:, 3])
    return np.stack([a, b], axis=1)


def _uniform_pairs(gen, calls: np.ndarray) -> np.ndarray:
    """UniformDistribution<double>: the two doubles in [0, 1) of each Philox call, (n, 2)."""
    return px.double_pairs(px.blocks(gen[0], gen[1], calls))


class _Buffer:
    """TF's per-output two-slot sample buffer, for many outputs at once.

    ``pop(rows)`` returns one double per row, refilling an empty buffer from the row's next
    Philox call (``calls[row]`` counts the calls it used) and handing out slot 1, then slot 0.
    """

    def __init__(self, gen, base: np.ndarray, calls: np.ndarray, draw) -> None:
        self.gen, self.base, self.calls, self.draw = gen, base, calls, draw
        self.vals = np.empty((base.size, 2))
        self.left = np.zeros(base.size, np.int8)

    def pop(self, rows: np.ndarray) -> np.ndarray:
        empty = rows[self.left[rows] == 0]
        if empty.size:
            self.vals[empty] = self.draw(self.gen, self.base[empty] + self.calls[empty])
            self.calls[empty] += np.uint64(1)
            self.left[empty] = 2
        self.left[rows] -= 1
        return self.vals[rows, self.left[rows]]


def _check_calls(calls: np.ndarray, rows: np.ndarray, what: str) -> None:
    if rows.size and int(calls[rows].max()) > _MAX_CALLS:
        raise ValueError(f"{what}: no sample accepted after {_MAX_CALLS} Philox calls "
                         "(TensorFlow's kernel would loop forever here)")


def _place(values: np.ndarray, num_params: int, dims, dtype: np.dtype) -> np.ndarray:
    """Outputs in parameter-major order -> TF's sample-major layout, cast as TF casts."""
    out = np.ascontiguousarray(values.reshape(num_params, -1).T)
    with np.errstate(invalid="ignore", over="ignore"):
        if dtype.kind == "f" or dtype.name == "bfloat16":
            # the double -> float conversion flushes; Eigen's half(double) and
            # bfloat16(double) go via float
            out = flush_subnormals(out if dtype == np.float64 else out.astype(np.float32))
        return out.astype(dtype).reshape(dims)


# -- gamma ---------------------------------------------------------------------------------------

def _gamma(gen, alpha: np.ndarray, per_alpha: int) -> np.ndarray:
    """Gamma(alpha) samples as doubles, ``per_alpha`` for each alpha, parameter-major.

    Marsaglia and Tsang's transformation-rejection (TF's loop, step for step); alpha < 1 draws
    for alpha + 1 and scales by ``pow(uniform, 1 / alpha)``; alpha == 1 is ``-log1p(-u)``.
    """
    a = np.repeat(alpha, per_alpha)
    n = a.size
    base = np.arange(n, dtype=np.uint64) * np.uint64(_RESERVED)
    res = np.empty(n)
    one = np.flatnonzero(a == 1.0)
    if one.size:
        u = _uniform_pairs(gen, base[one])[:, 1]
        res[one] = -libm.log1p(-u)
    lt1 = a < 1
    with np.errstate(invalid="ignore", divide="ignore"):
        d = a + np.where(lt1, 2.0 / 3, -1.0 / 3)
        c = 1.0 / 3 / np.sqrt(d)
    calls = np.zeros(n, np.uint64)
    normals = _Buffer(gen, base, calls, _normal_pairs)
    uniforms = _Buffer(gen, base, calls, _uniform_pairs)
    act = np.flatnonzero(a != 1.0)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        while act.size:
            x = normals.pop(act)
            v = 1 + c[act] * x
            go = ~(v <= 0)  # NaN goes on, as in C
            rows, x, v = act[go], x[go], v[go]
            v = v * v * v
            u = uniforms.pop(rows)
            ok = u < 1 - 0.0331 * (x * x) * (x * x)
            slow = np.flatnonzero(~ok)
            if slow.size:
                xs, vs = x[slow], v[slow]
                bound = 0.5 * xs * xs + d[rows[slow]] * (1 - vs + libm.log(vs))
                ok[slow] = libm.log(u[slow]) < bound
            rows, r = rows[ok], flush_subnormals(d[rows[ok]] * v[ok])
            small = np.flatnonzero(lt1[rows])
            if small.size:
                b = uniforms.pop(rows[small])
                p = flush_subnormals(libm.pow(b, 1 / a[rows[small]]))
                r[small] = flush_subnormals(r[small] * p)
            res[rows] = r
            done = np.zeros(n, bool)
            done[rows] = True
            act = act[~done[act]]
            _check_calls(calls, act, "random gamma")
    return res


def _gamma_op(dims, gen, alpha, dtype: str, append: bool) -> np.ndarray:
    """The shared body: ``append`` is the stateful op's shape + alpha.shape convention."""
    dt = np_dtype(dtype)
    if dt.kind != "f" and dt.name != "bfloat16":
        raise TypeError(f"gamma samples must be a float type, got {dtype}")
    alpha = np.asarray(alpha)
    dims, per = _layout(dims, alpha, "alpha", append)
    if not per:
        return np.zeros(dims, dt)
    vals = _gamma(gen, alpha.astype(np.float64).reshape(-1), per)
    return _place(vals, alpha.size, dims, dt)


def _layout(dims, param: np.ndarray, name: str, append: bool) -> tuple[tuple, int]:
    """(output dims, samples per parameter; 0 for an empty output). The stateful ops append
    the parameter's shape to ``dims``; the stateless ones need ``dims`` to end with it."""
    dims = tuple(dims) + (param.shape if append else ())
    check_array(dims, np.float64, "the samples")  # (a hostile shape: before its product)
    if not append and int(np.prod(dims, dtype=np.int64)) and not _ends_with(dims, param.shape):
        raise ValueError(f"Shape passed in must end with broadcasted shape: shape "
                         f"{list(dims)}, {name} shape {list(param.shape)}")
    n = int(np.prod(dims, dtype=np.int64))
    return dims, (n // param.size if n else 0)


def _ends_with(dims, tail) -> bool:
    return len(tail) <= len(dims) and tuple(dims[len(dims) - len(tail):]) == tuple(tail)


@op("StatelessRandomGammaV2")
def StatelessRandomGammaV2(shape, seed, alpha, *, dtype="float32"):
    """StatelessRandomGammaV2: Gamma(alpha, 1) samples; ``shape`` must end with alpha's shape."""
    return _gamma_op(shape_arg(shape), px.key_counter_from_seed(seed), alpha, dtype, False)


@op("StatelessRandomGammaV3")
def StatelessRandomGammaV3(shape, key, counter, alg, alpha, *, dtype="float32"):
    """StatelessRandomGammaV3: StatelessRandomGammaV2 from a key, counter and algorithm."""
    return _gamma_op(shape_arg(shape), key_counter(key, counter, alg), alpha, dtype, False)


@op("RandomGamma", stateful=True)
def RandomGamma(shape, alpha, *, seed=0, seed2=0, T="float32"):
    """RandomGamma: Gamma(alpha, 1) samples of shape ``shape + alpha.shape`` (as
    StatelessRandomGammaV2)."""
    return _gamma_op(shape_arg(shape), stateful_gen(seed, seed2), alpha, T, True)


# -- poisson -------------------------------------------------------------------------------------

def _highest(dt: np.dtype) -> float:
    """``double(Eigen::NumTraits<U>::highest())``."""
    return float(np.iinfo(dt).max if dt.kind in "iu" else np.finfo(dt).max)


def _lgamma_int(n: np.ndarray) -> np.ndarray:
    """lgamma of integral ``n >= 1`` (accurate to a few ulps, as glibc's)."""
    out = np.empty_like(n)
    small = n < 32
    if small.any():
        out[small] = _LGAMMA_TABLE[n[small].astype(np.int64)]
    big = ~small
    if big.any():
        x = n[big]
        r = 1.0 / (x * x)
        series = (1 / 12 + r * (-1 / 360 + r * (1 / 1260 + r * (-1 / 1680 + r / 1188)))) / x
        out[big] = (x - 0.5) * np.log(x) - x + 0.5 * math.log(2 * math.pi) + series
    return out


_LGAMMA_TABLE = np.array([0.0] + [math.lgamma(k) for k in range(1, 32)])


def _poisson(gen, rate: np.ndarray, per_rate: int, out_dt: np.dtype) -> np.ndarray:
    """Poisson(rate) samples as doubles, ``per_rate`` for each rate, parameter-major.

    rate < 10: Knuth's product of uniforms; rate >= 10: Hormann's transformed rejection, one
    Philox call (two uniforms) per attempt; rate == inf: TF's infinity (0 for integers).
    """
    hi = _highest(out_dt)
    r = np.repeat(rate, per_rate)
    n = r.size
    if np.isnan(r).any():
        raise ValueError("Poisson rate is NaN (TensorFlow's kernel would loop forever)")
    # a finite rate whose samples all lie beyond the output type's largest value (40 standard
    # deviations: none fits in practice) is refused at once: each sample would meet the
    # Philox-call limit (15,000 samples at rate 1e20 into int64 took 150 s to fail)
    with np.errstate(invalid="ignore"):
        hopeless = (r - 40 * np.sqrt(r) > hi) & (r < np.inf)
    if hopeless.any():
        raise ValueError(f"Poisson rate {r[hopeless][0]:g} is too large for {out_dt.name} "
                         "samples: none would fit (TensorFlow's kernel would loop forever)")
    base = np.arange(n, dtype=np.uint64) * np.uint64(_RESERVED)
    res = np.empty(n)
    calls = np.zeros(n, np.uint64)
    inf = r == np.inf
    res[inf] = np.inf if out_dt.kind == "f" else 0.0
    knuth = np.flatnonzero(r < 10)
    with np.errstate(all="ignore"):
        if knuth.size:
            _knuth(gen, r, base, calls, knuth, res, hi)
        horm = np.flatnonzero(~(r < 10) & ~inf)
        if horm.size:
            _hormann(gen, r, base, calls, horm, res, hi)
    return res


def _knuth(gen, r, base, calls, act, res, hi) -> None:
    enr = libm.exp(-r)
    prod = np.ones(r.size)
    x = np.zeros(r.size)
    top = float(np.clip(r[act].max(), 0, 10))
    # Philox calls per round (two uniforms each): enough for nearly every output at once
    per = int(np.ceil((top + 1 + 4 * np.sqrt(top + 1)) / 2))
    while act.size:
        idx = base[act, None] + calls[act, None] + np.arange(per, dtype=np.uint64)
        u = _uniform_pairs(gen, idx)[..., ::-1].reshape(act.size, -1)  # slot 1, then slot 0
        p = np.cumprod(np.concatenate([prod[act, None], u], axis=1), axis=1)[:, 1:]
        xs = x[act, None] + np.arange(2 * per)
        hit = (p <= enr[act, None]) & (xs <= hi)
        first = hit.argmax(axis=1)
        found = hit[np.arange(act.size), first]
        done = act[found]
        res[done] = xs[found, first[found]]
        prod[act], x[act] = p[:, -1], xs[:, -1] + 1
        calls[act] += np.uint64(per)
        act = act[~found]
        _check_calls(calls, act, "random poisson")


def _hormann(gen, r, base, calls, act, res, hi) -> None:
    rate = r[act]
    log_rate = libm.log(rate)
    b = 0.931 + 2.53 * np.sqrt(rate)
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2)
    pos = np.arange(act.size)  # rows of the per-rate constants above
    per = 2
    while act.size:
        idx = base[act, None] + calls[act, None] + np.arange(per, dtype=np.uint64)
        uv = _uniform_pairs(gen, idx)
        u, v = uv[..., 1] - 0.5, uv[..., 0]
        ra, rb = rate[pos, None], b[pos, None]
        us = 0.5 - np.abs(u)
        k = np.floor((2 * a[pos, None] / us + rb) * u + ra + 0.43)
        fits = ~(k > hi)
        ok = fits & (us >= 0.07) & (v <= vr[pos, None])
        test = fits & ~ok & ~((k < 0) | ((us < 0.013) & (v > us)))
        if test.any():
            row = np.nonzero(test)[0]
            kt, ust = k[test], us[test]
            s = libm.log(v[test] * inv_alpha[pos[row]] / (a[pos[row]] / (ust * ust) + b[pos[row]]))
            t = -rate[pos[row]] + kt * log_rate[pos[row]] - _lgamma_int(kt + 1)
            ok[test] = s <= t
        first = ok.argmax(axis=1)
        found = ok[np.arange(act.size), first]
        res[act[found]] = k[found, first[found]]
        calls[act] += np.uint64(per)
        act, pos = act[~found], pos[~found]
        per = min(2 * per, 1024)
        _check_calls(calls, act, "random poisson")


def _poisson_op(dims, gen, rate, dtype: str, append: bool) -> np.ndarray:
    dt = np_dtype(dtype)
    if dt.kind not in "fi" and dt.name != "bfloat16":
        raise TypeError(f"poisson samples must be a float or int type, got {dtype}")
    rate = np.asarray(rate)
    dims, per = _layout(dims, rate, "lam", append)
    if not per:
        return np.zeros(dims, dt)
    vals = _poisson(gen, rate.astype(np.float64).reshape(-1), per, dt)
    return _place(vals, rate.size, dims, dt)


@op("StatelessRandomPoisson")
def StatelessRandomPoisson(shape, seed, lam, *, dtype="int64"):
    """StatelessRandomPoisson: Poisson(lam) samples; ``shape`` must end with lam's shape.

    A NaN rate (or one too large for the output type) makes TF loop forever; here it raises.
    """
    return _poisson_op(shape_arg(shape), px.key_counter_from_seed(seed), lam, dtype, False)


@op("RandomPoissonV2", stateful=True)
def RandomPoissonV2(shape, rate, *, seed=0, seed2=0, dtype="int64"):
    """RandomPoissonV2: Poisson(rate) samples of shape ``shape + rate.shape`` (as
    StatelessRandomPoisson)."""
    return _poisson_op(shape_arg(shape), stateful_gen(seed, seed2), rate, dtype, True)

