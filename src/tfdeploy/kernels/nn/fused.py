"""Fused kernels: the ops the compiler's fusion passes make, never found in a graph.

``_FusedChain`` runs a convolution or matrix product with a load-time weight, whose per-channel
scale (BatchNorm) the pass has already folded in, then applies its epilogue in place on the
fresh result: bias, residual addition, activation. Compared with one kernel per node this saves
a full-size allocation and a pass over memory per node of the chain. On channels-last outputs
the conv kernels (``runner.conv_runner``) add the bias themselves (inside the matmul where that
is cheaper) and call the rest of the epilogue on each block they finish, in pieces of
``_BLOCK`` values that stay in cache from one op to the next; a ``scaled`` chain also takes a
squeeze-excite product (``compiler/passes/scale_into_conv.py``). A 1x1 unit-stride conv of a
small map (squeeze-excite's own two, on 1 x 1 maps: 32 in EfficientNetB0) runs as a Dense
layer (``_dense``: the product, the bias, the epilogue, no conv runner), its conv chain taking
larger maps and any input the conv rejects.

The epilogue writes into the core kernel's result, so that result must be a buffer nobody else
holds: the built-in Conv2D, Conv3D, DepthwiseConv2dNative, MatMul and BatchMatMulV2 kernels
return an array nobody else holds for float32/float64 inputs (``np.empty`` or a recycled
result, ``scratch.output``, + BLAS/einsum output, or a contiguous copy of it), never an input,
a constant or a view of either;
``tests/test_optimize.py`` checks this on each code path. The fusion pass builds chains only on
ops that run these built-in kernels (``registry.runs_builtin``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tfdeploy.kernels.common import Tiled, op, to_numpy
from tfdeploy.kernels.math.elementwise import sigmoid_
from tfdeploy.kernels.math.few_rows import PRODUCT, rows_by
from tfdeploy.kernels.nn.core import elu_, leaky_relu_, softmax_into
from tfdeploy.kernels.nn.runner import conv_runner
from tfdeploy.kernels.nn.scratch import output, scratch
from tfdeploy.kernels.nn.transformer import gelu_
from tfdeploy.numerics import clip as _clip
from tfdeploy.numerics import quiet
from tfdeploy.numerics.half import (
    float16_to_float32,
    float16_values_to_float16,
    round_small_positives_to_float16,
    round_to_float16,
)
from tfdeploy.numerics.ufunc_speed import cheaper
from tfdeploy.runtime import parallel

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
#: a prologue runs over pieces of about this many values (``prologue_op``), its constants
#: repeated to a piece's shape: as fast as pieces of 32 K values, and a quarter of the copies
#: (DenseNet121: 4 MB of them, not 20)
_PIECE = 1 << 13
_BINARY = {"mul": np.multiply, "add": np.add, "sub": np.subtract, "div": np.divide}


def _residual(kind: str, index: int) -> Callable:
    ufunc = np.add if kind == "add_input" else np.subtract

    def residual(y, ext):
        r = ext[index]
        if r.dtype != y.dtype:
            return None
        if r.shape != y.shape:
            try:
                if np.broadcast_shapes(r.shape, y.shape) != y.shape:
                    return None
            except ValueError:  # (the unfused kernel raises its own error)
                return None
        return ufunc(y, r, out=y)
    return residual


def _swish(dtype: np.dtype, beta) -> Callable:
    # y * sigmoid(beta y) = y / (1 + e ** (-beta y)): four passes over a scratch buffer, the
    # power by exp2 (2 ** (-beta log2(e) y)) where numpy's exp2 is the cheaper
    # (``numerics/ufunc_speed.py``: with AVX-512, 0.22 against exp's 0.48 ns a float32 value,
    # the swish of EfficientNet a sixth of its time), else by exp (AVX2: 2.2 against 5.0 ns;
    # EfficientNetB0 0.80x on an AMD EPYC). Rounding the scaled argument moves the power by
    # < |t| * 6e-8 relative, which matters only where sigmoid is already below e ** -|beta y|
    # (absolute error < 1e-6 of the value y). The power overflows to inf where -beta y is
    # above ~88.7, and y / inf is -0 where the exact value is below ~1e-36 in magnitude
    b = 1.0 if beta is None else np.asarray(beta, np.float64)
    by_exp2 = cheaper("exp2", "exp", np.dtype(dtype).name)
    power = np.exp2 if by_exp2 else np.exp
    k = np.asarray(-b * (np.log2(np.e) if by_exp2 else 1.0), dtype)
    one = np.ones((), dtype)

    def swish(y, ext):
        t = scratch("swish", y.size, dtype).reshape(y.shape)
        np.multiply(y, k, out=t)
        with quiet():
            power(t, out=t)
        np.add(t, one, out=t)
        return np.divide(y, t, out=y)
    return swish


def _relu_round_half(six: bool) -> Callable:
    """ReLU (or ReLU6), then float16 rounding: the epilogue's "round_half" followed by
    "relu"/"relu6", in the other order (both are monotonic, and 0 and 6 are float16 values:
    the same values, but for a rounded -0, which comes out +0). The clipped values are not
    negative: the rounding is Veltkamp's split of y itself (``numerics/half.py``), four passes
    where the signed rounding takes eight. Values above 65504, infinities and NaNs take the
    signed rounding."""
    zero, top = np.zeros((), np.float32), np.full((), 6 if six else np.inf, np.float32)
    largest = np.float32(65504.0)

    def relu_round_half(y, ext):
        if y.dtype != np.float32:
            return None
        _clip(y, zero, top, out=y)
        if not y.size:
            return y
        if not np.maximum.reduce(y, axis=None) <= largest:  # (a NaN fails it too)
            return round_to_float16(y, y)
        return round_small_positives_to_float16(y)
    return relu_round_half


def _hard_swish(dtype: np.dtype, arg) -> Callable:
    """y * (relu6(y + a) / c) (or * c), the unfused ops' arithmetic in their order, in a
    scratch buffer: four passes over the block while in cache."""
    a, op, c = (np.asarray(arg[0], dtype), arg[1], np.asarray(arg[2], dtype))
    ufunc = np.divide if op == "div" else np.multiply
    zero, six = np.zeros((), dtype), np.full((), 6, dtype)

    def hard_swish(y, ext):
        t = scratch("hard_swish", y.size, dtype).reshape(y.shape)
        np.add(y, a, out=t)
        _clip(t, zero, six, out=t)
        ufunc(t, c, out=t)
        return np.multiply(y, t, out=y)
    return hard_swish


def epilogue_op(kind: str, dtype: np.dtype, arg=None) -> Callable:
    """``f(y, ext) -> y`` applying one elementwise op in place on ``y`` (dtype ``dtype``), or
    returning None when the fast path does not apply (the chain then runs unfused).

    kinds: "mul"/"add"/"sub"/"div" (``arg``: a constant broadcasting into y without changing
    its shape, as the second operand), "add_input"/"sub_input" (``arg``: the index of an
    external input of the same shape), "relu", "relu6", "leaky_relu" (``arg``: alpha), "elu",
    "sigmoid", "tanh", "swish" (``arg``: None or the constant beta of y * sigmoid(beta y)),
    "hard_swish" (``arg``: (a, "div" or "mul", c) of y * (relu6(y + a) / c) or * c),
    "gelu" (``arg``: its form, see ``transformer.gelu_``), "softmax" (over the last axis,
    which must be the channels: every block the chain runs it on is made of whole rows) and
    "round_half" (float32 values rounded to float16 values, ``numerics/half.py``).
    """
    zero = np.zeros((), dtype)
    if kind in _BINARY:
        ufunc = _BINARY[kind]
        if getattr(arg, "ndim", 0):  # (repeated to small results: see Tiled)
            tiled = Tiled(arg)

            def binary(y, ext):
                return ufunc(y, tiled.like(y), out=y)
            if kind == "add":
                binary.bias = tiled  # (FusedChain adds a leading bias without calling this)
        else:
            def binary(y, ext):
                return ufunc(y, arg, out=y)
        return binary
    if kind in ("add_input", "sub_input"):
        return _residual(kind, arg)
    if kind == "relu":
        # clip to [0, inf]: one vectorised pass, ~3.5x faster here than np.maximum with a
        # scalar; NaN stays NaN, -0 stays -0 (the Relu op's values: TF's sign of a zero here
        # depends on the CPU)
        inf = np.full((), np.inf, dtype)
        return lambda y, ext: _clip(y, zero, inf, out=y)
    if kind == "relu6":
        six = np.full((), 6, dtype)
        return lambda y, ext: _clip(y, zero, six, out=y)  # one pass; NaN stays NaN
    if kind == "leaky_relu":
        return lambda y, ext: leaky_relu_(y, arg)
    if kind == "elu":
        return lambda y, ext: elu_(y)
    if kind == "sigmoid":
        return lambda y, ext: sigmoid_(y)
    if kind == "tanh":
        return lambda y, ext: np.tanh(y, out=y)
    if kind == "swish":
        return _swish(dtype, arg)
    if kind == "hard_swish":
        return _hard_swish(dtype, arg)
    if kind == "gelu":
        return lambda y, ext: gelu_(y, arg)
    if kind == "softmax":
        return lambda y, ext: softmax_into(y, y) if y.shape[-1] else y
    if kind == "round_half":
        return lambda y, ext: round_to_float16(y, y) if y.dtype == np.float32 else None
    if kind in ("relu_round_half", "relu6_round_half"):
        return _relu_round_half(kind == "relu6_round_half")
    raise ValueError(f"unknown epilogue op {kind!r}")


_CONVS = ("Conv2D", "Conv3D", "DepthwiseConv2dNative")
_TRANSPOSED = ("Conv2DBackpropInput", "Conv3DBackpropInputV2")

#: a channels-last epilogue of several ops runs over blocks of about this many values, which
#: stay in cache from one op to the next (40% faster than whole-array passes on large maps)
_BLOCK = 1 << 16


class _Unfit(Exception):
    """A residual operand the epilogue by blocks cannot take (another shape): run it after."""


class FusedChain:
    """``core(x)`` (the core op with the folded weight bound) then each epilogue op in place;
    ``fallback`` (the chain's own steps, compiled) when an input is not what the fast path
    assumes (another dtype, a residual operand of another dtype or a shape that would widen the
    result).

    ``channels``: the output's channel count when its channels are last (0 otherwise): the
    epilogue may then run block by block over whole rows of channels. ``blocked``: the core
    takes the epilogue and calls it on each block it finishes (``runner.conv_runner``), so each
    block goes through the whole chain while it is in cache."""

    __slots__ = ("core", "dtype", "epilogue", "fallback", "name", "channels", "rows", "blocked",
                 "scaled", "_plain", "matrix", "split_rows", "few", "bias", "rest")

    def __init__(self, core: Callable, dtype: np.dtype, epilogue: Sequence[Callable],
                 fallback: Callable, name: str, channels: int = 0, blocked: bool = False,
                 scaled: bool = False, matrix: np.ndarray | None = None):
        self.core = core
        self.dtype = dtype
        self.epilogue = tuple(epilogue)
        self.fallback = fallback
        self.name = name
        self.channels = channels
        self.rows = max(1, _BLOCK // channels) if channels else 0
        self.blocked = blocked and channels > 0 and bool(self.epilogue)
        self._plain = self._by_blocks(())  # the blocked epilogue of a chain without residuals
        #: the chain's input is the product of its first two inputs (``runner.conv_runner``'s
        #: ``scaled``: a squeeze-excite scale folded into a 1x1 conv)
        self.scaled = scaled
        #: the [K, N] weight when the core is ``x @ matrix`` over x's last axis: large
        #: products then split into blocks of rows over threads (``runtime/parallel.py``);
        #: below ``split_rows`` rows they never do (checked without a call)
        self.matrix = matrix
        self.split_rows = 2 * parallel.min_work(matmul=True) // max(matrix.size, 1) \
            if matrix is not None else 1 << 62
        #: x @ matrix for 2-8 rows by a large matrix, in the form measured fastest: the
        #: product, the rows one by one, or block sums (``math/few_rows.py``)
        self.few = rows_by(matrix) if matrix is not None else None
        #: a chain of a product and a bias (a Dense layer) adds the bias without a call
        #: layer: np.matmul then np.add, in place (a Tiled or None)
        self.bias = getattr(self.epilogue[0], "bias", None) if self.epilogue else None
        self.rest = self.epilogue[1:] if self.bias is not None else self.epilogue

    def __call__(self, x, *ext):
        dt = x.dtype
        if self.scaled:
            return self._scaled(x, *ext)
        if dt is not self.dtype and dt != self.dtype:
            return self.fallback(x, *ext)
        if self.blocked:
            if not ext:
                return self.core(x, self._plain)
            if all(r.dtype == dt and r.flags.c_contiguous for r in ext):
                try:
                    return self.core(x, self._by_blocks(ext))
                except _Unfit:
                    pass
        w = self.matrix
        if w is not None:
            if x.ndim >= 2 and x.size >= self.split_rows * x.shape[-1] and \
                    x.shape[-1] == w.shape[0]:
                rows = x.size // max(x.shape[-1], 1)
                k = parallel.blocks(rows, w.size, matmul=True)
                # (a few rows whose product BLAS does slowly: the faster form on one thread,
                # not the slow product split by rows: 8 x 768 x 3072 layers, two threads 1.37x
                # the one-thread time split, 1.0x not; by columns, from 8 rows, 0.85x)
                if k > 1 and (self.few is None or x.ndim != 2 or rows >= 8 or
                              self.few.form(rows) == PRODUCT):
                    y = self._split(x, ext, k, parallel.by_columns(rows, w.shape[1], k))
                    if y is not None:
                        return y
            if x.ndim == 2 and x.shape[1] == w.shape[0]:
                y = np.matmul(x, w) if self.few is None else self.few(x)
                if self.bias is not None:
                    np.add(y, self.bias.like(y), out=y)
                for f in self.rest:
                    if f(y, ext) is None:
                        return self.fallback(x, *ext)
                return y
        y = self.core(x)
        rows = self.rows
        if rows and len(self.epilogue) > 1 and y.size > 2 * _BLOCK and \
                y.flags.c_contiguous and \
                all(r.shape == y.shape and r.flags.c_contiguous for r in ext):
            c = self.channels
            y2 = y.reshape(-1, c)
            e2 = [r.reshape(-1, c) for r in ext]
            for i in range(0, y2.shape[0], rows):
                yb = y2[i:i + rows]
                eb = [r[i:i + rows] for r in e2]
                for f in self.epilogue:
                    if f(yb, eb) is None:
                        return self.fallback(x, *ext)
            return y
        for f in self.epilogue:
            if f(y, ext) is None:
                return self.fallback(x, *ext)
        return y

    def _split(self, x, ext, k: int, columns: bool):
        """The chain over ``k`` blocks of rows in parallel, or of columns (``columns``: the
        product, then the epilogue by blocks of rows), or None where it would need the
        fallback (a residual of another dtype or shape)."""
        w = self.matrix
        shape = x.shape[:-1] + (w.shape[1],)
        if any(r.dtype != self.dtype or r.shape != shape for r in ext):
            return None
        x2 = np.ascontiguousarray(x).reshape(-1, w.shape[0])
        y = output(shape, self.dtype)
        y2 = y.reshape(-1, w.shape[1])
        e2 = [np.ascontiguousarray(r).reshape(y2.shape) for r in ext]
        epilogue = self.epilogue

        def after(a: int, b: int) -> None:  # (the epilogue on rows a:b)
            yb, eb = y2[a:b], [r[a:b] for r in e2]
            for f in epilogue:
                f(yb, eb)

        def block(a: int, b: int) -> None:
            np.matmul(x2[a:b], w, out=y2[a:b])
            after(a, b)

        if columns:
            parallel.matmul_columns(x2, w, y2, k, after if epilogue else None)
        else:
            parallel.run_blocks(block, y2.shape[0], k)
        return y

    def _scaled(self, a, b, *ext):
        """The chain on ``a * b`` (see ``scaled``), or its fallback (which runs the Mul)."""
        dt = self.dtype
        if a.dtype == dt and b.dtype == dt and \
                all(r.dtype == dt and r.flags.c_contiguous for r in ext):
            try:
                y = self.core.scaled(a, b, self._by_blocks(ext) if ext else self._plain)
            except _Unfit:
                y = None
            if y is not None:
                return y
        return self.fallback(a, b, *ext)

    def _by_blocks(self, ext) -> Callable:
        """The epilogue as the core calls it: ``f(y, start, stop)`` on rows ``start:stop`` of
        ``y.reshape(-1, C)``, in pieces of ``rows`` rows; raises ``_Unfit`` on the first
        block when a residual operand is not of ``y``'s shape (nothing is written then: the
        core's other blocks, on other threads, may have run, but only into its own output,
        which the fallback replaces). The core may call it from several threads at once, on
        disjoint rows."""
        epilogue, c, step = self.epilogue, self.channels, max(self.rows, 1)
        if not ext:
            def plain(y, start, stop):
                y2 = y.reshape(-1, c)
                for i in range(start, stop, step):
                    yb = y2[i:min(stop, i + step)]
                    for f in epilogue:
                        f(yb, ())
            return plain
        flat: list = []

        def run(y, start, stop):
            if not flat:  # (threads may call it at once: the list is filled in one step)
                if y.shape[-1] != c or any(r.shape != y.shape for r in ext):
                    raise _Unfit
                flat[:] = [y.reshape(-1, c), *(r.reshape(-1, c) for r in ext)]
            y2 = flat[0]
            for i in range(start, stop, step):
                j = min(stop, i + step)
                yb = y2[i:j]
                eb = [r[i:j] for r in flat[1:]]
                for f in epilogue:
                    f(yb, eb)
        return run

    def __repr__(self) -> str:
        return f"<fused kernel {self.name}>"


def prologue_op(prologue: list, dtype: np.dtype, channels: int) -> Callable:
    """``pro(src, dst)``: the ops ``prologue`` ((kind, argument) pairs of
    :func:`epilogue_op`'s elementwise kinds, no external inputs) applied to the rows ``src``
    [R, channels], written to ``dst`` of the same shape (the first op reads ``src``, the
    rest work in place on ``dst``: no separate copy). In pieces of ``_PIECE`` values, the
    constants repeated to their shape (``Tiled``): numpy's broadcast of a row of channels
    costs 1.3-3.6x an operation on two arrays of one shape."""
    (kind, arg), rest = prologue[0], [epilogue_op(k, dtype, a) for k, a in prologue[1:]]
    if kind in _BINARY:
        ufunc = _BINARY[kind]
        tiled = Tiled(arg) if getattr(arg, "ndim", 0) else None

        def first(src, dst):
            ufunc(src, arg if tiled is None else tiled.like(dst), out=dst)
    elif kind in ("relu", "relu6"):
        lo, hi = np.zeros((), dtype), np.full((), np.inf if kind == "relu" else 6, dtype)

        def first(src, dst):
            _clip(src, lo, hi, out=dst)
    else:
        f = epilogue_op(kind, dtype, arg)

        def first(src, dst):
            np.copyto(dst, src)
            f(dst, ())
    sub = max(1, _PIECE // max(channels, 1))

    def pro(src, dst):
        for i in range(0, src.shape[0], sub):
            s, d = src[i:i + sub], dst[i:i + sub]
            first(s, d)
            for f in rest:
                f(d, ())
    #: a lone ReLU or ReLU6: (low, high), which the depthwise kernel applies as it copies
    pro.clip = (lo, hi) if kind in ("relu", "relu6") and not rest else None
    return pro


#: a chain followed by a pool (``compiler/passes/pool_into_chain.py``) runs over groups of
#: images whose chain output takes about this many bytes, each group's output pooled while it
#: is in cache: the full-size output is never written out and read back. A TimeDistributed
#: CNN into an LSTM, frames of 62 x 62 x 16, one thread, alternating processes: 256 frames
#: (63 MB of conv output) 0.78x the model's time, 64 frames 0.98x; groups of 1-4 MB were all
#: within a few % of each other. An image whose output alone is larger gains nothing (VGG16's
#: 224 x 224 x 64 maps), and neither does an output of fewer than ``_POOL_MIN_GROUPS`` groups
#: (32 of those frames: 1.04x, the convolution's per-call cost over the groups): those batches
#: run whole
_POOL_GROUP_BYTES = 1 << 21
_POOL_MIN_GROUPS = 6


class _Whole(Exception):
    """A pooled chain's inner chain needed its fallback: the whole step's runs instead."""


def _raise_whole(*args):
    raise _Whole


class _PooledChain:
    """A ``_FusedChain`` with a ``pool``: the chain on groups of images (``_POOL_GROUP_BYTES``
    of its output), each group pooled right away into the result; ``fallback``: the unfused
    steps, pool included. A batch of one group runs the chain, then the pool."""

    __slots__ = ("chain", "pool", "fallback", "groups", "name")

    def __init__(self, chain: FusedChain, pool: Callable, fallback: Callable, name: str):
        self.chain, self.pool, self.fallback, self.name = chain, pool, fallback, name
        self.groups: dict = {}  # input shape -> images a group

    def __call__(self, x):
        chain, pool = self.chain, self.pool
        if x.__class__ is not np.ndarray or x.ndim != 4 or x.dtype != chain.dtype or \
                not x.shape[0]:
            return self.fallback(x)
        n = x.shape[0]
        try:
            per = self.groups.get(x.shape)
            if per is None:  # (from one image's output, once per shape)
                size = max(chain(x[:1]).nbytes, 1)
                per = _POOL_GROUP_BYTES // size if size <= _POOL_GROUP_BYTES and \
                    n * size >= _POOL_MIN_GROUPS * _POOL_GROUP_BYTES else n
                if len(self.groups) < 16:
                    self.groups[x.shape] = per
            if per >= n:
                return pool(chain(x))
            p = pool(chain(x[:per]))
            out = output((n,) + p.shape[1:], p.dtype)
            out[:per] = p
            groups = -(-n // per)
            # the other groups over threads, each group's chain then on one thread (a group
            # is ~2 MB of output, each value at least a few multiply-adds: always worth it)
            parts = parallel.blocks(groups - 1, _POOL_GROUP_BYTES)

            def run(g0: int, g1: int) -> None:
                for g in range(g0 + 1, g1 + 1):
                    out[g * per:(g + 1) * per] = pool(chain(x[g * per:(g + 1) * per]))

            if parts > 1:
                parallel.run_blocks(run, groups - 1, parts)
            else:
                run(0, groups - 1)
            return out
        except _Whole:
            return self.fallback(x)

    def __repr__(self) -> str:
        return f"<fused kernel {self.name}>"


@op("_Gated", internal=True, needs_context=True)
def _Gated(*, _ctx=None, act: str, arg=None, gate, up, tail=None, _fallback=None):
    """A gated activation (``compiler/passes/fuse_gated.py``): ``act(x[..., gate]) *
    x[..., up]``, ``gate`` and ``up`` the [start, stop) columns of x's last axis (each viewed
    as ``tail``, when given: the parts' last axis split); ``act``
    "swish" (``arg``: its beta or None) or "gelu" (``arg``: its form), computed as the fused
    chains' epilogue computes it (:func:`epilogue_op`). The gate's columns are copied once
    into the result, which the activation and the product by the up columns then update in
    place. Other dtypes than float32/float64 run the unfused steps (``_fallback``)."""
    (g0, g1), (u0, u1) = gate, up
    gs, us = (..., slice(g0, g1)), (..., slice(u0, u1))
    fns: dict = {}  # dtype -> the activation, in place
    nd, width = np.ndarray, max(g1, u1)
    tail = (g1 - g0,) if tail is None else tuple(tail)

    def Gated(x):
        f = fns.get(x.dtype) if x.__class__ is nd and x.ndim and x.shape[-1] >= width \
            else None
        if f is None:
            if x.__class__ is not nd or x.dtype not in _FLOATS or not x.ndim or \
                    x.shape[-1] < width:
                return _fallback(x)
            f = fns[x.dtype] = epilogue_op(act, x.dtype, arg)
        lead = x.shape[:-1]
        y = output(lead + tail, x.dtype)
        np.copyto(y, x[gs].reshape(lead + tail))
        f(y, ())
        return np.multiply(y, x[us].reshape(lead + tail), out=y)

    return Gated


@op("_FusedChain", internal=True, needs_context=True)
def _FusedChain(*, _ctx, core: str, core_attrs: dict, weight: np.ndarray, epilogue: list,
                channels: int = 0, scaled: bool = False, dtype: str | None = None,
                prologue: list | None = None, pool: dict | None = None, _fallback=None,
                _label: str = "_FusedChain"):
    """A convolution or matrix product with its constant weight, then its epilogue in place
    (see the module docstring). ``epilogue``: (kind, argument) pairs, see :func:`epilogue_op`;
    ``scaled``: the conv's input is the product of the step's first two inputs (a 1x1 conv
    only); ``prologue``: (kind, argument) pairs applied to the input first, block by block
    (a channels-last Conv2D of float32/float64 only, ``runner.conv_runner``); ``_fallback``:
    the unfused steps, compiled (set by the compiler's lowering). ``dtype``: a
    float16/bfloat16 chain's dtype, computed in the weight's float32 and rounded once.
    ``pool``: the MaxPool or AvgPool after the chain (``op`` and its attributes), applied to
    groups of images (:class:`_PooledChain`)."""
    if pool is not None:
        if dtype is not None or scaled or core not in _CONVS or not channels:
            raise ValueError(f"_FusedChain: a pool needs a channels-last float32/float64 "
                             f"convolution, got {core} ({dtype or weight.dtype})")
        chain = _FusedChain(_ctx=_ctx, core=core, core_attrs=core_attrs, weight=weight,
                            epilogue=epilogue, channels=channels, prologue=prologue,
                            _fallback=_raise_whole, _label=_label)
        # (a 1x1 conv's Dense closure: its conv chain, which the groups of images suit)
        chain = getattr(chain, "chain", chain)
        attrs = {k: v for k, v in pool.items() if k != "op"}
        return _PooledChain(chain, _ctx.kernel(pool["op"], attrs, [None]), _fallback, _label)
    dt = weight.dtype
    pro = None
    if prologue:
        depthwise = core == "DepthwiseConv2dNative" and len(prologue) == 1 and \
            prologue[0][0] in ("relu", "relu6")
        if core != "Conv2D" and not depthwise or dtype is not None or scaled or \
                dt not in _FLOATS or not channels:
            raise ValueError(f"_FusedChain: a prologue needs a channels-last float32/float64 "
                             f"Conv2D core (or a lone ReLU/ReLU6 before a depthwise one), "
                             f"got {core} ({dtype or dt})")
        pro = prologue_op(prologue, dt, weight.shape[2])
    if dtype is not None:
        low = to_numpy(dtype)
        chain = _FusedChain(_ctx=_ctx, core=core, core_attrs=core_attrs, weight=weight,
                            epilogue=epilogue, channels=channels, scaled=scaled,
                            _fallback=_fallback, _label=_label)
        return _in_float32(chain, low, dt, _fallback)
    bias, whole = None, epilogue
    if core in _CONVS and channels and epilogue and epilogue[0][0] == "add" and \
            getattr(epilogue[0][1], "shape", None) == (channels,):
        bias, epilogue = epilogue[0][1], epilogue[1:]  # (the conv kernel adds it)
    ops = [epilogue_op(k, dt, a) for k, a in _relu_after_rounding(epilogue)]
    kernel = conv_runner(core, core_attrs, weight, bias, pro)
    if kernel is not None:
        chain = FusedChain(kernel, dt, ops, _fallback, _label, channels, blocked=True,
                           scaled=scaled)
        matrix = _pointwise_matrix(core, core_attrs, weight, channels) \
            if pro is None and not scaled and dt in _FLOATS else None
        if matrix is None:
            return chain
        # a 1x1 convolution of a small map (squeeze-excite's, on 1 x 1) as a Dense layer
        dense = FusedChain(kernel, dt, [epilogue_op(k, dt, a) for k, a in
                                        _relu_after_rounding(whole)],
                           _fallback, _label, channels, matrix=matrix)
        return _dense(dense, batched=True, whole=chain)
    if core in _TRANSPOSED:  # (input_sizes, filter, dy): the sizes a constant, in the attrs
        attrs = {a: v for a, v in core_attrs.items() if a != "input_sizes"}
        sizes = np.array(core_attrs["input_sizes"], np.int64)
        kernel = _ctx.kernel(core, attrs, [sizes, weight, None])
    else:
        kernel = _ctx.kernel(core, core_attrs, [None, weight])
    matrix = None
    if core in ("MatMul", "BatchMatMulV2") and weight.ndim == 2 and \
            not core_attrs.get("transpose_a") and not core_attrs.get("adj_x"):
        matrix = weight.T if core_attrs.get("transpose_b") or core_attrs.get("adj_y") \
            else weight
    chain = FusedChain(kernel, dt, ops, _fallback, _label, channels, matrix=matrix)
    if matrix is not None:
        return _dense(chain, softmax=len(chain.rest) == 1 and epilogue[-1][0] == "softmax",
                      batched=core == "BatchMatMulV2")
    return chain


def _relu_after_rounding(epilogue: list) -> list:
    """``epilogue`` with each "round_half" followed by "relu"/"relu6" as one op
    (:func:`_relu_round_half`)."""
    out: list = []
    for kind, arg in epilogue:
        if kind in ("relu", "relu6") and out and out[-1] == ("round_half", None):
            out[-1] = (f"{kind}_round_half", None)
        else:
            out.append((kind, arg))
    return out


def _pointwise_matrix(core: str, attrs: dict, weight: np.ndarray, channels: int):
    """The [C, Co] matrix of a channels-last Conv2D that is a product over the last axis (a
    1x1 filter, unit strides and dilations, no explicit padding), else None."""
    if core != "Conv2D" or weight.ndim != 4 or weight.shape[:2] != (1, 1) or \
            weight.shape[3] != channels or attrs.get("data_format", "NHWC") != "NHWC":
        return None
    if any(int(v) != 1 for v in attrs.get("strides", (1, 1, 1, 1))) or \
            any(int(v) != 1 for v in attrs.get("dilations", (1, 1, 1, 1))):
        return None
    if attrs.get("padding") == "EXPLICIT" and any(int(v) for v in
                                                  attrs.get("explicit_paddings", ())):
        return None
    return weight.reshape(weight.shape[2], weight.shape[3])


def _dense(chain: FusedChain, softmax: bool = False, batched: bool = False,
           whole: Callable | None = None) -> Callable:
    """A Dense layer (a product over the last axis with a constant matrix, its bias, and the
    rest of its epilogue; ``softmax``: that rest is one softmax) as one closure over locals:
    on small batches the cost of the layer is its Python calls, so the common case takes as
    few as it can (two numpy calls for x @ w + b, eight with the softmax). With ``batched``
    (a BatchMatMulV2 core), an input of rank above 2 (a sequence: [batch, tokens, features])
    is multiplied as its rows. The bias is added as a same-shape array (``Tiled``). Anything
    else (another dtype, too many rows, which split over threads, a residual that does not
    fit) goes through the chain, or through ``whole`` if given: a 1x1 convolution's blocked
    conv chain, for its inputs of more rows (``_FusedChain``)."""
    w, b, dt, split = chain.matrix, chain.bias, chain.dtype, chain.split_rows
    k, n = w.shape
    rest = chain.rest
    # a large weight: 2-8 rows in the form measured fastest (``few_rows``)
    few = chain.few
    # a 1x1 convolution: only its own rank (4) takes the closure's path; others (a misfit's
    # error too) go through the conv chain
    rank = None if whole is None else 4
    if whole is not None:
        chain = whole
    # rank > 2: rows of at most 2 * _BLOCK values (larger ones take the chain's blocked
    # epilogue) and below the threads' split
    most = min(split, max(1, 2 * _BLOCK // max(n, 1))) * k if batched else 0
    # np.dot: the product of two matrices, 0.3-0.4 us faster than np.matmul at 1-8 rows
    dot, add, nd = np.dot, np.add, np.ndarray

    if softmax:  # softmax(x @ w + b), the classic classifier head

        def DenseSoftmax(x, *ext):
            if ext or x.__class__ is not nd or x.dtype is not dt or x.ndim != 2 or \
                    x.shape[1] != k or x.shape[0] >= split or not n:
                return chain(x, *ext)
            y = dot(x, w) if few is None else few(x)
            if b is not None:
                add(y, b.like(y), y)
            return softmax_into(y, y)

        DenseSoftmax.chain = chain
        return DenseSoftmax

    def Dense(x, *ext):
        if x.__class__ is not nd or x.dtype is not dt:
            return chain(x, *ext)
        s = x.shape
        if len(s) == 2 and rank is None:
            if s[1] != k or s[0] >= split:
                return chain(x, *ext)
            y = dot(x, w) if few is None else few(x)
        elif len(s) > 2 and s[-1] == k and x.size < most and (rank is None or len(s) == rank):
            x2 = x.reshape(-1, k)
            y = (dot(x2, w) if few is None else few(x2)).reshape(s[:-1] + (n,))
        else:
            return chain(x, *ext)
        if b is not None:
            add(y, b.like(y), y)
        for f in rest:
            if f(y, ext) is None:
                return chain(x, *ext)
        return y

    Dense.chain = chain
    return Dense


def _in_float32(chain: Callable, low: np.dtype, dt: np.dtype, fallback) -> Callable:
    """A float16/bfloat16 chain computed in float32 by ``chain``, rounded once at the end
    (TF rounds after each op of it: the results differ by float16 roundings)."""
    def Half(x, *ext):
        if x.dtype != low:
            return fallback(x, *ext)
        return chain(x.astype(dt), *[r.astype(dt) for r in ext]).astype(low)

    Half.chain = chain
    return Half


def _never(*args):
    raise AssertionError("a chain of a _HalfStack took its fallback")  # (float32 in, no ext)


@op("_RoundHalf", internal=True)
def _RoundHalf(x):
    """float32 values rounded to the nearest float16 values, kept float32: a float16 op's
    rounding in a float16 region computed in float32 (``compiler/passes/half_region.py``)."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise TypeError(f"_RoundHalf: expected a float32 array, got {getattr(x, 'dtype', x)}")
    return round_to_float16(x)


@op("_HalfCopy", internal=True)
def _HalfCopy(x):
    """The float16 array of a float32 array of float16 values (a float16 region's value read
    by a step outside it, or fetched: ``compiler/passes/half_region.py``): ``astype``'s
    values, by bits (``numerics/half.py``)."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise TypeError(f"_HalfCopy: expected a float32 array, got {getattr(x, 'dtype', x)}")
    return float16_values_to_float16(x)


@op("_HalfStack", internal=True, needs_context=True)
def _HalfStack(*, _ctx, chains: list, cast_in: bool = False, cast_out: bool = False,
               _fallback=None, _label: str = "_HalfStack"):
    """float16 chains one after the other (a mixed_float16 Dense or conv stack), computed in
    float32 throughout: each chain's result is rounded to float16 values but stays float32
    for the next (``numerics/half.py``), where each ``_FusedChain`` with ``dtype`` would
    convert to float16 and back. The same values bit for bit as those chains.

    ``chains``: the chains' attributes (float32 weights); ``cast_in``: the input is float32
    (a Cast to float16 before the first chain); ``cast_out``: the result is float32 (a Cast
    after the last). Another input dtype runs the steps unfused (``_fallback``)."""
    kernels = [_FusedChain(_ctx=_ctx, core=c["core"], core_attrs=c["core_attrs"],
                           weight=c["weight"], epilogue=c["epilogue"],
                           channels=c.get("channels", 0), _fallback=_never,
                           _label=c.get("_label", "_FusedChain")) for c in chains]
    src = np.dtype(np.float32 if cast_in else np.float16)
    last = len(kernels) - 1

    def HalfStack(x):
        if x.dtype != src:
            return _fallback(x)
        y = round_to_float16(x) if cast_in else float16_to_float32(x)
        for i, kernel in enumerate(kernels):
            z = kernel(y)
            if i < last or cast_out:    # (in place: a chain's result is a new array)
                z = round_to_float16(z, z if z is not y and z.flags.writeable else None)
            y = z
        return y if cast_out else float16_values_to_float16(y)

    HalfStack.kernels = kernels
    return HalfStack
