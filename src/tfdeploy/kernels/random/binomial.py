"""Binomial and parameterized truncated normal random ops, bit-exact with TF's CPU kernels.

``StatelessRandomBinomial`` (random_binomial_op.cc) gives output ``i`` (in batch-major order)
its own Philox window: 42 calls per output for inversion (count * p < 10), 256 for BTRS, so
TF's sharding never changes a value. The truncated normals (parameterized_truncated_normal_op.cc)
are different: each *shard* of TF's thread pool skips ahead once, to a window proportional to
its first output (V2) or batch (V1), then draws its outputs one after another from that stream,
every batch starting on a fresh Philox call. Their values therefore depend on where TF cuts the
shards, which depends on the intra-op thread count: these kernels cut where TF does on this
machine (Eigen's ``parallelFor`` block size, from TF_NUM_INTRAOP_THREADS or the usable CPUs, and
Eigen's cost estimates as built into TF's x86-64 wheels: AVX, no FMA). The sequential streams
are resolved without a Python loop per output (see ``_Streams``).

C library calls (glibc) and how they are reproduced:

- binomial, all in double: ``log`` (BTRS, inversion) and ``log1p(-p)`` (inversion):
  ``libm.log``, ``libm.log1p``, exact. sqrt, floor, ceil: exact.
- truncated normals, in T (half: in float, rounded): ``logf``/``log`` (exponential sampler,
  Box-Muller) and ``sincosf`` (Box-Muller): ``numerics.libm``, exact; sin/cos: numpy's are glibc's.
  ``expf``/``exp`` only decide acceptance (``u <= exp(g)``) and the sampler choice: numpy's exp
  decides, glibc's (``libm.exp``/``libm.expf``, exact) near a tie. sqrt: exact.
"""

from __future__ import annotations

import os

import numpy as np

from tfdeploy.kernels.common import np_dtype, op
from tfdeploy.kernels.random.stateless import shape_arg, stateful_gen
from tfdeploy.numerics import libm
from tfdeploy.numerics import philox as px
from tfdeploy.runtime.limits import check_array

_EXP = libm.exp
_LOG1P = libm.log1p


# -- shared --------------------------------------------------------------------------------------

#: TF's intra-op thread count to reproduce, set by ``td.setup(tf_intra_op_threads=...)``
INTRA_OP_THREADS: int | None = None


def _intra_op_threads() -> int:
    """TF's intra-op thread count: as set with td.setup, else TF's default
    (TF_NUM_INTRAOP_THREADS, else the usable CPUs)."""
    if INTRA_OP_THREADS is not None:
        return INTRA_OP_THREADS
    env = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
    if env.strip().isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _block_size(n: int, cost: float, threads: int) -> int:
    """The shard size of TF's ``Shard`` (Eigen ``ThreadPoolDevice::parallelFor``) for ``n``
    units of ``cost`` cycles each on ``threads`` threads; ``n`` means a single shard."""
    if n <= 1 or threads <= 1:
        return n
    nthr = (n * float(cost) - 100000.0) / 100000.0 + 0.9  # Eigen's TensorCostModel::numThreads
    if min(threads, max(1, int(min(nthr, 2.0**31 - 1)))) == 1:
        return n
    block = min(n, max(-(-n // (4 * threads)), int(1.0 / (float(cost) / 40000.0))))
    max_block = min(n, 2 * block)
    count = -(-n // block)
    best = count / (-(-count // threads) * threads)
    prev = count
    while best < 1.0 and prev > 1:  # coarsen while the parallel efficiency does not drop
        coarser = -(-n // (prev - 1))
        if coarser > max_block:
            break
        ccount = -(-n // coarser)
        prev = ccount
        eff = ccount / (-(-ccount // threads) * threads)
        if eff + 0.01 >= best:
            block, count = coarser, ccount
            best = max(best, eff)
    return block


def _batch_layout(dims, params, names) -> tuple[int, int, list[np.ndarray]]:
    """TF's BCast of the parameters as the trailing dims of the output: (samples per batch,
    batches, each parameter flattened over the broadcast batch shape)."""
    check_array(dims, np.float64, "the samples")  # (a hostile shape: before its product)
    shapes = [np.shape(p) for p in params]
    try:
        bshape = np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"{', '.join(names)} must have compatible batch dimensions: "
                         f"{' vs. '.join(str(list(s)) for s in shapes)}") from None
    nb_dims = len(bshape)
    if len(dims) < nb_dims or tuple(dims[len(dims) - nb_dims:]) != tuple(bshape):
        raise ValueError(f"Shape passed in must end with broadcasted shape: shape {list(dims)}, "
                         f"broadcast shape {list(bshape)}")
    spb = int(np.prod(dims[:len(dims) - nb_dims], dtype=np.int64))
    nb = int(np.prod(bshape, dtype=np.int64))
    flat = [np.broadcast_to(np.asarray(p), bshape).reshape(-1) for p in params]
    return spb, nb, flat


def _t_exp(x: np.ndarray) -> np.ndarray:
    """Eigen::numext::exp in T: exp (double), expf (float), half(expf(float)) (half)."""
    if x.dtype == np.float64:
        return _EXP(x)
    return libm.expf(x.astype(np.float32)).astype(x.dtype)


# numpy's exp is within a few ulps of glibc's: a comparison with it is decided unless the other
# side lies within this (relative) margin, or the smallest subnormal of T
_EXP_MARGIN = {np.dtype(np.float16): (4e-3, 2.0**-24), np.dtype(np.float32): (1e-6, 2.0**-149),
               np.dtype(np.float64): (1e-13, 5e-324)}


def _le_exp(u: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``u <= exp(g)`` in T, exactly as TF decides it; glibc's exp only near ties."""
    rel, tiny = _EXP_MARGIN[g.dtype]
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(g.astype(np.float64))
        uf = u.astype(np.float64)
        out = uf <= e
        close = ~(np.abs(uf - e) > rel * e + tiny)
    if close.any():
        out[close] = u[close] <= _t_exp(g[close])
    return out


def _t_log(x: np.ndarray) -> np.ndarray:
    """Eigen::numext::log in T of values in [0, 1): log, logf, half(logf(float))."""
    if x.dtype == np.float64:
        return libm.log(x)
    return libm.logf(x.astype(np.float32)).astype(x.dtype)


# -- binomial ------------------------------------------------------------------------------------

_STIRLING_TAIL = np.array([0.0810614667953272, 0.0413406959554092, 0.0276779256849983,
                           0.02079067210376509, 0.0166446911898211, 0.0138761288230707,
                           0.0118967099458917, 0.0104112652619720, 0.00925546218271273,
                           0.00833056343336287])


def _stirling_tail(k: np.ndarray) -> np.ndarray:
    small = k <= 9
    kp1sq = (k + 1) * (k + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        big = (1.0 / 12 - (1.0 / 360 - 1.0 / 1260 / kp1sq) / kp1sq) / (k + 1)
    idx = np.where(small, k, 0).astype(np.int64)  # static_cast<int>: k >= 0 here
    return np.where(small, _STIRLING_TAIL[np.clip(idx, 0, 9)], big)


def _uniform_pairs(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UniformDistribution<double> of Philox outputs (..., 4): (result[0], result[1])."""
    d = px.double_pairs(b)
    return d[..., 0], d[..., 1]


def _binomial_inversion(count, prob, idx, gen) -> np.ndarray:
    """Sum geometric variables until they exceed count; output ``idx`` reads 42 calls from
    42 * idx, two doubles per call taken last first (TF's UNIFORM macro)."""
    n = count.size
    out = np.zeros(n)
    lp = _LOG1P(-prob)
    gsum = np.zeros(n)
    num = np.zeros(n)
    active = np.arange(n)
    first, per = 0, 4  # Philox calls per output and round
    while active.size:
        calls = idx[active, None] * 42 + np.arange(first, first + per, dtype=np.uint64)
        r0, r1 = _uniform_pairs(px.blocks(gen[0], gen[1], calls))
        u = np.stack([r1, r0], axis=-1).reshape(active.size, -1)
        with np.errstate(divide="ignore"):
            geom = np.ceil(libm.log(u.reshape(-1)).reshape(u.shape) / lp[active, None])
        csum = np.cumsum(np.concatenate([gsum[active, None], geom], axis=1), axis=1)[:, 1:]
        over = csum > count[active, None]
        hit = over.any(axis=1)
        k = np.argmax(over, axis=1)
        num[active] += np.where(hit, k, u.shape[1])
        gsum[active] = csum[:, -1]
        out[active[hit]] = num[active[hit]]
        active = active[~hit]
        first += per
        per = min(per * 2, 64)
    return out


def _btrs(count, prob, idx, gen) -> np.ndarray:
    """Hormann's BTRS; output ``idx`` reads one Philox call per try from 256 * idx."""
    n = count.size
    out = np.zeros(n)
    stddev = np.sqrt(count * prob * (1 - prob))
    b = 1.15 + 2.53 * stddev
    a = -0.0873 + 0.0248 * b + 0.01 * prob
    c = count * prob + 0.5
    v_r = 0.92 - 4.2 / b
    r = prob / (1 - prob)
    alpha = (2.83 + 5.1 / b) * stddev
    m = np.floor((count + 1) * prob)
    active = np.arange(n)
    first, per = 0, 2
    while active.size:
        A = active[:, None]
        calls = idx[A] * 256 + np.arange(first, first + per, dtype=np.uint64)
        v, u = _uniform_pairs(px.blocks(gen[0], gen[1], calls))  # u is result[1], v result[0]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            u = u - 0.5
            us = 0.5 - np.abs(u)
            k = np.floor((2 * a[A] / us + b[A]) * u + c[A])
            acc = (us >= 0.07) & (v <= v_r[A])
            test = ~acc & ~((k < 0) | (k > count[A]))
            if test.any():
                ti, tj = np.nonzero(test)
                ai = active[ti]
                cn, mm, rr, kk, uss = count[ai], m[ai], r[ai], k[ti, tj], us[ti, tj]
                lv = libm.log(v[ti, tj] * alpha[ai] / (a[ai] / (uss * uss) + b[ai]))
                ub = ((mm + 0.5) * libm.log((mm + 1) / (rr * (cn - mm + 1)))
                      + (cn + 1) * libm.log((cn - mm + 1) / (cn - kk + 1))
                      + (kk + 0.5) * libm.log(rr * (cn - kk + 1) / (kk + 1))
                      + _stirling_tail(mm) + _stirling_tail(cn - mm)
                      - _stirling_tail(kk) - _stirling_tail(cn - kk))
                acc[ti, tj] = lv <= ub
        hit = acc.any(axis=1)
        j = np.argmax(acc, axis=1)
        out[active[hit]] = k[hit, j[hit]]
        active = active[~hit]
        first += per
        per = min(per * 2, 32)
    return out


def _binomial(dims, gen, counts, probs, out_dtype: np.dtype) -> np.ndarray:
    counts, probs = np.asarray(counts), np.asarray(probs)
    t = counts.dtype
    if t not in (np.float16, np.float32, np.float64) or probs.dtype != t:
        raise TypeError(f"counts and probs must both be float16, float32 or float64, got "
                        f"{counts.dtype} and {probs.dtype}")
    spb, nb, (cnt, prb) = _batch_layout(dims, (counts, probs), ("counts", "probs"))
    n = spb * nb
    if n == 0:
        return np.zeros(dims, out_dtype)
    # output (sample s, batch b) sits at s * nb + b; TF numbers it b * spb + s
    bidx = np.repeat(np.arange(nb, dtype=np.uint64), spb)
    idx = bidx * np.uint64(spb) + np.tile(np.arange(spb, dtype=np.uint64), nb)
    c_t, p_t = cnt[bidx.astype(np.int64)], prb[bidx.astype(np.int64)]
    dcount = c_t.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        zero = (dcount <= 0.0) | (p_t <= 0)
        one = ~zero & (p_t >= 1)
        low = ~zero & ~one & (p_t <= t.type(0.5))
        high = ~zero & ~one & (p_t > t.type(0.5))
        q_t = np.where(high, t.type(1) - p_t, p_t)  # T(1) - prob, in T
        big = (c_t * q_t >= t.type(10))  # count * p (or q) in T
    res = np.full(n, np.nan)
    res[zero] = 0.0
    res[one] = dcount[one]
    if (np.isnan(dcount) & (low | high)).any():
        raise ValueError("binomial count is NaN with 0 < prob < 1: TensorFlow's kernel never "
                         "returns for it")
    for sel, sample in ((big, _btrs), (~big, _binomial_inversion)):
        for side in (low, high):
            s = side & sel
            if s.any():
                v = sample(dcount[s], q_t[s].astype(np.float64), idx[s], gen)
                res[s] = v if side is low else dcount[s] - v
    out = np.empty(n, np.float64)
    out[(bidx.astype(np.int64) + np.tile(np.arange(spb, dtype=np.int64), nb) * nb)] = res
    return _cast_double(out, out_dtype).reshape(dims)


def _cast_double(x: np.ndarray, dt: np.dtype) -> np.ndarray:
    """static_cast<U>(double): half through float; ints truncate (NaN, undefined in C, gives 0)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if dt == np.float16:
            return x.astype(np.float32).astype(np.float16)
        if dt.kind in "iu":
            return np.where(np.isnan(x), 0.0, x).astype(dt)
        return x.astype(dt)


@op("StatelessRandomBinomial")
def StatelessRandomBinomial(shape, seed, counts, probs, *, dtype="int64"):
    """StatelessRandomBinomial: binomial(counts, probs) draws, parameters broadcast as trailing
    dims of ``shape`` (bit-exact with TF: inversion when count * p < 10, else BTRS).

    Integer outputs for NaN probabilities are undefined in TF (a float NaN cast to int); here 0.
    A NaN count with 0 < prob < 1 never returns in TF; here it raises.
    """
    return _binomial(shape_arg(shape), px.key_counter_from_seed(seed), counts, probs,
                     np_dtype(dtype))


# -- parameterized truncated normal: the samplers ------------------------------------------------

_NORMAL, _UNIFORM, _EXPONENTIAL = 0, 1, 2
_MAX_ITERATIONS = 1000


class _Params:
    """Per-batch sampler parameters, in T, as TF's functor derives them."""

    def __init__(self, means, stddevs, minvals, maxvals, dt: np.dtype):
        mean, sd, lo, hi = (np.asarray(v, dt) for v in (means, stddevs, minvals, maxvals))
        with np.errstate(invalid="ignore"):
            ok = (sd > 0) & (lo < hi) & (np.isfinite(lo) | np.isfinite(hi))
        if not ok.all():
            raise ValueError("Invalid parameters: need stddev > 0, minval < maxval and a finite "
                             "minval or maxval")
        if np.isnan(mean).any():  # TF rejects every candidate, then gives up
            raise ValueError("TruncatedNormal rejection sampler failed to accept a sample "
                             f"in {_MAX_ITERATIONS} iterations (a mean is NaN)")
        flip = (np.isinf(lo) & (lo < 0)) | (hi < mean)
        lo, hi = np.where(flip, hi, lo), np.where(flip, lo, hi)
        sd = np.where(flip, -sd, sd)
        two, four = dt.type(2), dt.type(4)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            nmin = (lo - mean) / sd
            nmax = (hi - mean) / sd
            sqrt_factor = np.sqrt(nmin * nmin + four)
            cutoff = two * _t_exp(dt.type(0.5) + (nmin * (nmin - sqrt_factor)) / four) / (
                nmin + sqrt_factor)
            diff = nmax - nmin
            k = dt.type(1.3)
            randn = ((nmin < -k) & (nmax >= 0)) | ((nmax > k) & (nmin <= 0))
            self.branch = np.where(randn, _NORMAL, np.where(diff < cutoff, _UNIFORM, _EXPONENTIAL))
            self.alpha = (nmin + np.sqrt(nmin * nmin + four)) / two
            self.plus = np.where(nmin < 0, dt.type(0), nmin * nmin)
        self.nmin, self.nmax, self.sd, self.mean, self.diff = nmin, nmax, sd, mean, diff
        self.dt = dt
        self.k = 2 if dt == np.float64 else 4  # results per Philox call
        self.cand = np.where(self.branch == _EXPONENTIAL, self.k // 2, self.k)  # per unit
        self.cpu = np.where(self.branch == _UNIFORM, 2, 1)  # Philox calls per unit


def _uniform_t(b: np.ndarray, dt: np.dtype) -> np.ndarray:
    """UniformDistribution<T> of Philox outputs (..., 4) -> (..., k)."""
    if dt == np.float64:
        return np.stack(_uniform_pairs(b), axis=-1)
    if dt == np.float32:
        return px.uint32_to_float(b)
    return px.uint16_to_half(b)


def _normal_t(b: np.ndarray, dt: np.dtype) -> np.ndarray:
    """NormalDistribution<T> of Philox outputs (..., 4) -> (..., k)."""
    if dt == np.float64:
        return np.stack(px.box_muller_double(b[..., 0], b[..., 1], b[..., 2], b[..., 3]), -1)
    s0, c0 = px.box_muller_float(b[..., 0], b[..., 1])
    s1, c1 = px.box_muller_float(b[..., 2], b[..., 3])
    return np.stack([s0, c0, s1, c1], axis=-1).astype(dt)


def _ranges(first: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated call ranges first[i] + [0, length[i]) (uint64), and where each begins."""
    begin = np.cumsum(length) - length
    calls = (np.repeat(first - begin.astype(np.uint64), length)
             + np.arange(int(length.sum()), dtype=np.uint64))
    return calls, begin


def _draws(gen, prm: _Params, calls: np.ndarray, rows: np.ndarray) -> dict:
    """The parameter-free part of every sampler at Philox calls ``calls`` (N,): normals,
    uniforms and logs of uniforms (N, k), as needed by the branches of batches ``rows``."""
    branches = set(np.unique(prm.branch[rows]).tolist())
    b = px.blocks(gen[0], gen[1], calls)
    out = {}
    if _NORMAL in branches:
        out[_NORMAL] = _normal_t(b, prm.dt)
    if branches & {_UNIFORM, _EXPONENTIAL}:
        out[_UNIFORM] = _uniform_t(b, prm.dt)
    if _EXPONENTIAL in branches:
        with np.errstate(divide="ignore"):
            out[_EXPONENTIAL] = -_t_log(out[_UNIFORM][:, 0::2])
    return out


def _eval_units(prm: _Params, rows: np.ndarray, draws: dict, idx: np.ndarray):
    """The sampler units of batches ``rows`` (R,) at draws ``idx`` (R, U) (a uniform unit also
    reads idx + 1): normalized candidates and their acceptance, (R, U, k) each (unused slots
    not accepted)."""
    dt, k = prm.dt, prm.k
    x_all = np.zeros(idx.shape + (k,), dt)
    acc = np.zeros(idx.shape + (k,), bool)
    br = prm.branch[rows]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for branch in (_NORMAL, _UNIFORM, _EXPONENTIAL):
            sel = np.flatnonzero(br == branch)
            if not sel.size:
                continue
            p = rows[sel][:, None, None]
            nmin = prm.nmin[p]
            i = idx[sel]
            if branch == _NORMAL:
                x = draws[_NORMAL][i]
                a = (x >= nmin) & (x <= prm.nmax[p])
            elif branch == _UNIFORM:
                x = draws[_UNIFORM][i] * prm.diff[p] + nmin
                g = (prm.plus[p] - x * x) / dt.type(2)
                a = _le_exp(draws[_UNIFORM][i + 1], g)
            else:
                alpha = prm.alpha[p]
                x = draws[_EXPONENTIAL][i] / alpha + nmin
                w = np.where(nmin < alpha, alpha - x, nmin - alpha)
                a = (_le_exp(draws[_UNIFORM][i][..., 1::2], -w * w / dt.type(2))
                     & (x < prm.nmax[p]))
            kk = x.shape[-1]
            x_all[sel, :, :kk] = x
            acc[sel, :, :kk] = a
    return x_all, acc


def _max_rejection_run(acc: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per row, the longest run of consecutive rejected candidates among the valid ones
    (acc, valid: (R, N), valid a prefix of each row)."""
    n = acc.shape[1]
    if not n:
        return np.zeros(acc.shape[0], np.int64)
    pos = np.arange(n)
    last_acc = np.maximum.accumulate(np.where(acc & valid, pos, -1), axis=1)
    return np.where(valid & ~acc, pos - last_acc, 0).max(axis=1)


def _check_runs(prm: _Params, rows, acc, valid) -> None:
    """TF gives up after 1000 rejections in a row (1001 for the normal sampler); acc and valid
    are (R, U, k) per unit, of which the first ``prm.cand`` slots are real candidates."""
    if acc.shape[1] * acc.shape[2] < _MAX_ITERATIONS:
        return
    cand = prm.cand[rows]
    for c in np.unique(cand):
        sub = np.flatnonzero(cand == c)
        a = acc[sub, :, :c].reshape(sub.size, -1)
        v = valid[sub, :, :c].reshape(sub.size, -1)
        limit = np.where(prm.branch[rows[sub]] == _NORMAL, _MAX_ITERATIONS + 1, _MAX_ITERATIONS)
        if (_max_rejection_run(a, v) >= limit).any():
            raise ValueError("TruncatedNormal rejection sampler failed to accept a sample "
                             f"in {_MAX_ITERATIONS} iterations")


def _take_first(prm: _Params, rows, x, acc, units_used, m):
    """The first ``m[r]`` accepted values of each row among its first ``units_used[r]`` units,
    concatenated in row order (x * stddev + mean, in T); also the accepted and examined
    candidates (R, U, k), for the iteration check."""
    r, u, k = acc.shape
    used = np.arange(u)[None, :] < units_used[:, None]
    sel = (acc & used[..., None]).reshape(r, -1)
    rank = np.cumsum(sel, axis=1)
    take = sel & (rank <= m[:, None])
    # candidates examined: up to and including the m-th accepted one
    flat_pos = np.arange(u * k)[None, :]
    last = np.where(take, flat_pos, -1).max(axis=1)
    valid = (flat_pos <= last[:, None]).reshape(r, u, k)
    p = np.repeat(rows, m)
    values = x.reshape(r, -1)[take] * prm.sd[p] + prm.mean[p]
    return values, sel.reshape(r, u, k), valid


# -- parameterized truncated normal: the shard streams -------------------------------------------

_ROUND_COST = 2000


def _extra_table(n_acc: np.ndarray, cpu: np.ndarray, m: np.ndarray, L: np.ndarray,
                 E: np.ndarray) -> np.ndarray:
    """extra[r, e]: the calls beyond ``L[r]`` that row r takes when it starts at call e of its
    window (units at e, e + cpu, ...; ``n_acc`` (R, span) accepted candidates per unit start),
    for e < E.max(); E.max() where it would end past call L + E."""
    r, span = n_acc.shape
    emax = int(E.max())
    n_acc = np.where(np.arange(span)[None, :] < (L + E)[:, None], n_acc, 0)
    # per row and class p (start call mod cpu): prefix sums over units at p, p + cpu, ...
    j = np.arange(span)
    pos = np.arange(2)[None, :, None] + cpu[:, None, None] * j[None, None, :]  # (R, 2, span)
    cnt = np.where(pos < span, np.take_along_axis(n_acc[:, None, :], np.minimum(pos, span - 1),
                                                  axis=2), 0)
    pref = np.concatenate([np.zeros((r, 2, 1), np.int64), np.cumsum(cnt, axis=2)], axis=2)
    e = np.arange(emax)[None, :]
    p, s0 = e % cpu[:, None], e // cpu[:, None]  # (R, E)
    rows = np.arange(r)[:, None]
    target = pref[rows, p, s0] + m[:, None]
    # batched searchsorted: lift each (row, class) prefix array above the previous ones
    big = int(pref[..., -1].max()) + int(m.max()) + 2
    lift = (np.arange(r * 2, dtype=np.int64) * big).reshape(r, 2, 1)
    flat = (pref + lift).reshape(-1)
    q = np.searchsorted(flat, target + lift[rows, p, 0]) - (rows * 2 + p) * (span + 1)
    reach = q <= span
    used = cpu[:, None] * (q - s0)
    return np.where(reach, np.minimum(used - L[:, None], emax), emax)


class _Streams:
    """TF's shards as sequential streams of segments (a batch's outputs within one shard).

    Segment ``j`` draws sampler units (1 Philox call each, 2 for the uniform sampler) from the
    call after the previous segment's last one, until ``m[j]`` candidates are accepted. Each round
    resolves, for every stream, its first unresolved segment from its exact start, then guesses
    that the next ``B`` segments take their minimum ``L`` calls each, evaluates each at ``E``
    offsets past that guess, and chains the offsets (offsets only grow) as far as they stay
    below ``E``.
    """

    def __init__(self, gen, prm: _Params, seg_param, seg_m, seg_out, seg_stride, stream_lo,
                 stream_skip, n_out: int):
        self.gen, self.prm = gen, prm
        self.param, self.m = seg_param, seg_m
        self.out_base, self.out_stride = seg_out, seg_stride
        self.cand, self.cpu = prm.cand[seg_param], prm.cpu[seg_param]
        self.L = self.cpu * -(-seg_m // self.cand)  # fewest calls a segment can take
        self.lo = stream_lo
        self.hi = np.append(stream_lo[1:], seg_param.size)
        self.skip = stream_skip
        self.out = np.empty(n_out, prm.dt)

    def _emit(self, segs, values) -> None:
        m = self.m[segs]
        k = np.arange(values.size) - np.repeat(np.cumsum(m) - m, m)
        self.out[np.repeat(self.out_base[segs], m) + k * np.repeat(self.out_stride[segs], m)] = \
            values

    def _exact(self, segs, starts) -> np.ndarray:
        """Resolve segments from known start calls; returns the calls each consumed."""
        consumed = np.zeros(segs.size, np.int64)
        todo = np.arange(segs.size)
        units = -(-self.m[segs] // self.cand[segs]) + 2
        per = int(units.max()) if segs.size else 0
        while todo.size:
            s = segs[todo]
            cpu = self.cpu[s]
            calls, begin = _ranges(starts[todo], cpu * per + 1)
            draws = _draws(self.gen, self.prm, calls, self.param[s])
            idx = begin[:, None] + cpu[:, None] * np.arange(per)[None, :]
            x, acc = _eval_units(self.prm, self.param[s], draws, idx)
            cnt = np.cumsum(acc.sum(axis=2), axis=1)
            done = cnt[:, -1] >= self.m[s]
            if (~done).any():  # all evaluated candidates are consumed
                nd = ~done
                _check_runs(self.prm, self.param[s[nd]], acc[nd], np.ones_like(acc[nd]))
            if done.any():
                d = np.flatnonzero(done)
                used = np.argmax(cnt[d] >= self.m[s[d], None], axis=1) + 1
                values, sel, valid = _take_first(self.prm, self.param[s[d]], x[d], acc[d], used,
                                                 self.m[s[d]])
                _check_runs(self.prm, self.param[s[d]], sel, valid)
                self._emit(s[d], values)
                consumed[todo[d]] = used * self.cpu[s[d]]
            todo = todo[~done]
            per *= 2
        return consumed

    def _speculate(self, first, count, start, E):
        """Segments first[i] .. first[i] + count[i] - 1 of stream i, the first starting at call
        ``start[i]``, offsets below ``E[i]``: resolve as many as the offsets allow; returns how
        many were resolved per stream and where the next segment starts."""
        row0 = np.cumsum(count) - count
        segs = np.repeat(first - row0, count) + np.arange(count.sum())
        L = self.L[segs]
        cum = np.cumsum(L) - L
        guess = np.repeat(start, count) + (cum - np.repeat(cum[row0], count)).astype(np.uint64)
        e_row = np.repeat(E, count)
        span = int((L + e_row).max())
        # one contiguous range of calls per stream covers every row's window
        last = row0 + count - 1
        calls, begin = _ranges(start, (guess[last] - start).astype(np.int64) + span + 1)
        draws = _draws(self.gen, self.prm, calls, self.param[segs])
        idx = (np.repeat(begin, count) + (guess - np.repeat(start, count)).astype(np.int64))[
            :, None] + np.arange(span)[None, :]
        x, acc = _eval_units(self.prm, self.param[segs], draws, idx)
        cpu, m = self.cpu[segs], self.m[segs]
        extra = _extra_table(acc.sum(axis=2), cpu, m, L, e_row)
        t = np.arange(span)
        # chain the offsets of each stream: they only grow, so jump from one extra to the next
        off = np.zeros(segs.size, np.int64)
        resolved = np.zeros(first.size, np.int64)
        next_start = start.copy()
        for i in range(first.size):
            lo, hi = row0[i], row0[i] + count[i]
            j, e = lo, 0
            while True:
                ev = np.flatnonzero(extra[j:hi, e] > 0)
                if not ev.size:
                    off[j:hi] = e
                    j, e = hi, e
                    break
                jj = j + ev[0]
                off[j:jj + 1] = e
                e2 = e + extra[jj, e]
                if e2 >= E[i]:  # segment jj starts at offset e but ends out of sight
                    j = jj
                    break
                j, e = jj + 1, e2
            resolved[i] = j - lo
            if j == hi:
                next_start[i] = guess[hi - 1] + np.uint64(L[hi - 1] + e)
            elif j > lo:
                next_start[i] = guess[j] + np.uint64(e)
        done = np.flatnonzero(np.arange(segs.size) - np.repeat(row0, count)
                              < np.repeat(resolved, count))
        if done.size:
            units = off[done, None] + cpu[done, None] * t[None, :]
            n_units = (L[done] + extra[done, off[done]]) // cpu[done]
            pick = np.minimum(units, span - 1)[..., None]
            values, sel, valid = _take_first(self.prm, self.param[segs[done]],
                                             np.take_along_axis(x[done], pick, axis=1),
                                             np.take_along_axis(acc[done], pick, axis=1),
                                             n_units, m[done])
            _check_runs(self.prm, self.param[segs[done]], sel, valid)
            self._emit(segs[done], values)
        # the mean extra calls per segment (from its guessed start), for sizing the next round
        rate = np.add.reduceat(extra[:, 0], row0) / count
        return resolved, next_start, rate

    def run(self) -> np.ndarray:
        front = self.lo.copy()
        start = np.asarray(self.skip, np.uint64).copy()
        width = np.full(front.size, 16, np.int64)
        E = np.full(front.size, 4, np.int64)
        active = np.flatnonzero(front < self.hi)
        while active.size:
            used = self._exact(front[active], start[active])
            front[active] += 1
            start[active] += used.astype(np.uint64)
            spec = active[(front[active] < self.hi[active]) & (width[active] > 0)]
            if spec.size:
                count = np.minimum(width[spec], self.hi[spec] - front[spec])
                got, nxt, rate = self._speculate(front[spec], count, start[spec], E[spec])
                front[spec] += got
                start[spec] = nxt
                # a round costs about _ROUND_COST unit evaluations plus (L + E) per segment and
                # resolves about E / rate segments: balance the two
                rate = np.maximum(rate, 1e-3)
                E[spec] = np.clip(np.sqrt(_ROUND_COST * rate), 2, 256).astype(np.int64)
                width[spec] = np.clip(1.25 * E[spec] / rate, 1, 8192).astype(np.int64)
            active = np.flatnonzero(front < self.hi)
        return self.out


# -- parameterized truncated normal: the ops -----------------------------------------------------

# Eigen's cost estimates (AVX, no FMA: TF's x86-64 wheels): (sqrt, exp) per T
_EIGEN_COST = {np.dtype(np.float16): (8, 43), np.dtype(np.float32): (8, 34),
               np.dtype(np.float64): (28, 51)}


def _costs(dt: np.dtype) -> tuple[int, int]:
    """TF's (batch init, uniform rejection round) cost estimates for T."""
    sqrt_cost, exp_cost = _EIGEN_COST[dt]
    init = 2 * 2 + 2 + sqrt_cost + 4 + exp_cost + 1
    uniform_sample = 10 + 3  # PhiloxRandom and UniformDistribution element costs
    return init, 2 * uniform_sample + 7 + exp_cost


def _ptn_dtype(dtype: str | None, params) -> np.dtype:
    dt = np.asarray(params[0]).dtype if dtype is None else np_dtype(dtype)
    if dt not in (np.float16, np.float32, np.float64):
        raise TypeError(f"dtype must be float16, float32 or float64, got {dtype}")
    for name, p in zip(("means", "stddevs", "minvals", "maxvals"), params):
        if np.asarray(p).dtype != dt:
            raise TypeError(f"{name} must be {dt.name}, got {np.asarray(p).dtype}")
    return dt


@op("StatelessParameterizedTruncatedNormal")
def StatelessParameterizedTruncatedNormal(shape, seed, means, stddevs, minvals, maxvals, *,
                                          dtype=None):
    """StatelessParameterizedTruncatedNormal: normals of the given means and stddevs truncated
    to [minvals, maxvals], parameters broadcast as trailing dims of ``shape``.

    Bit-exact with TF, including its sharding, which changes values of outputs past ~800
    (see the module docstring). A NaN mean fails as in TF, though without first trying 1000
    candidates.
    """
    params = (means, stddevs, minvals, maxvals)
    dt = _ptn_dtype(dtype, params)
    dims = shape_arg(shape)
    gen = px.key_counter_from_seed(seed)
    spb, nb, flat = _batch_layout(dims, params, ("means", "stddevs", "minvals", "maxvals"))
    n = spb * nb
    if n == 0:
        return np.zeros(dims, dt)
    prm = _Params(*flat, dt)
    init, rnd = _costs(dt)
    block = _block_size(n, init + 2 * rnd, _intra_op_threads())
    shard = np.arange(0, n, block, dtype=np.int64)
    k = prm.k
    skip = (shard * 2 * _MAX_ITERATIONS + k - 1) // k
    # segments: a batch's outputs within one shard
    starts = np.union1d(shard, np.arange(0, n, spb, dtype=np.int64))
    ends = np.append(starts[1:], n)
    batch = starts // spb
    lo = np.searchsorted(starts, shard)
    seg_out = (starts - batch * spb) * nb + batch
    streams = _Streams(gen, prm, batch, ends - starts, seg_out, np.full(starts.size, nb),
                       lo, skip.astype(np.uint64), n)
    return streams.run().reshape(dims)


@op("ParameterizedTruncatedNormal", stateful=True)
def ParameterizedTruncatedNormal(shape, means, stdevs, minvals, maxvals, *, dtype=None,
                                 seed=0, seed2=0):
    """ParameterizedTruncatedNormal: normals of the given means and stddevs truncated to
    [minvals, maxvals]; parameters are scalars or vectors over the first dim of ``shape``.

    Exact with TF's first seeded run, including its sharding (see the module docstring).
    Without a seed, fresh entropy on every call.
    """
    params = (means, stdevs, minvals, maxvals)
    dt = _ptn_dtype(dtype, params)
    dims = shape_arg(shape)
    if not dims:
        raise ValueError("Shape tensor must not be empty, got a 0-element shape")
    for name, p in zip(("means", "stddevs", "minvals", "maxvals"), params):
        if np.ndim(p) > 1:
            raise ValueError(f"Input {name} should be a scalar or vector, got shape "
                             f"{list(np.shape(p))}")
    check_array(dims, np.float64, "the samples")  # (a hostile shape: 10 s into 8 GB before)
    n = int(np.prod(dims, dtype=np.int64))
    nb = dims[0]
    spb = n // nb if nb else int(np.prod(dims[1:], dtype=np.int64))
    m, s, lo, hi = (np.asarray(p).reshape(-1) for p in params)
    if (m.size == 1 and s.size == 1 and np.ndim(minvals) == 0 and np.ndim(maxvals) == 0):
        spb = 100  # one parameter set: batches of 100 outputs
        nb = -(-n // spb)
    else:
        for name, p in zip(("means", "stddevs", "minvals", "maxvals"), (m, s, lo, hi)):
            if p.size not in (1, nb):
                raise ValueError(f"Input {name} should have length 1 or shape[0] ({nb}), got "
                                 f"shape {list(p.shape)}")
    if n == 0:
        return np.zeros(dims, dt)
    prm = _Params(*(np.broadcast_to(p, (nb,)) for p in (m, s, lo, hi)), dt)
    init, rnd = _costs(dt)
    block = _block_size(nb, init + rnd * 2 * spb, _intra_op_threads())
    shard = np.arange(0, nb, block, dtype=np.int64)
    skip = shard * 2 * _MAX_ITERATIONS * (spb + 3) // 4
    batch = np.arange(nb, dtype=np.int64)
    counts = np.minimum((batch + 1) * spb, n) - batch * spb
    streams = _Streams(stateful_gen(seed, seed2), prm, batch, counts, batch * spb,
                       np.ones(nb, np.int64), np.searchsorted(batch, shard),
                       skip.astype(np.uint64), n)
    return streams.run().reshape(dims)
