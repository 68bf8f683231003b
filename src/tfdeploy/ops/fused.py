"""Fused kernels built by the plan optimizer (``tfdeploy.optimize``), never by a graph.

A :class:`FusedChain` runs a convolution or matrix product with a load-time weight, whose
per-channel scale (BatchNorm) is already folded in, then applies its epilogue in place on the
fresh result: bias, residual addition, activation. Compared with one kernel per node this saves
a full-size allocation and a pass over memory per node of the chain; on large channels-last
outputs the epilogue runs block by block, so each block stays in cache through all its ops.

The epilogue writes into the core kernel's result, so that result must be a buffer nobody else
holds. The optimizer only builds chains on the built-in Conv2D, Conv3D, DepthwiseConv2dNative,
MatMul and BatchMatMulV2 kernels, which for float32/float64 inputs return a newly allocated
array (``np.empty`` + BLAS/einsum output, or a contiguous copy of it), never an input, a
constant or a view of either; ``tests/test_optimize.py`` checks this on each code path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

#: sigmoid(x) rounds to 1 above ~16.6 (float32) and ~36.7 (float64); exp(40) overflows neither
_SIGMOID_CAP = {np.dtype(t): np.array(40, t) for t in (np.float32, np.float64)}


def _sigmoid_(t: np.ndarray) -> np.ndarray:
    """sigmoid(t) in place: e / (1 + e) with e = exp(min(t, 40)), exact in both tails."""
    np.minimum(t, _SIGMOID_CAP[t.dtype], out=t)
    np.exp(t, out=t)
    d = t + np.ones((), t.dtype)
    return np.divide(t, d, out=t)


_BINARY = {"mul": np.multiply, "add": np.add, "sub": np.subtract, "div": np.divide}


def epilogue_op(kind: str, dtype: np.dtype, arg=None) -> Callable:
    """``f(y, ext) -> y`` applying one elementwise op in place on ``y`` (dtype ``dtype``), or
    returning None when the fast path does not apply (the chain then runs unfused).

    kinds: "mul"/"add"/"sub"/"div" (``arg``: a constant broadcasting into y without changing
    its shape, as the second operand),
    "add_input"/"sub_input" (``arg``: the index of an external input of the same shape),
    "relu", "relu6", "leaky_relu" (``arg``: alpha), "elu", "sigmoid", "tanh" and "swish"
    (``arg``: None or the constant beta of y * sigmoid(beta * y)).
    """
    zero = np.zeros((), dtype)
    if kind in _BINARY:
        ufunc = _BINARY[kind]
        return lambda y, ext: ufunc(y, arg, out=y)
    if kind in ("add_input", "sub_input"):
        ufunc = np.add if kind == "add_input" else np.subtract

        def residual(y, ext):
            r = ext[arg]
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
    if kind == "relu":
        return lambda y, ext: np.maximum(y, zero, out=y)
    if kind == "relu6":
        six = np.full((), 6, dtype)
        # one pass (max then min takes two); NaN stays NaN
        return lambda y, ext: np.clip(y, zero, six, out=y)
    if kind in ("leaky_relu", "elu"):
        alpha = np.asarray(arg, dtype) if kind == "leaky_relu" else None

        def selected(y, ext):
            # max(y, 0) + f(min(y, 0)): exact, as one term is 0 (as nn.LeakyRelu and nn.Elu)
            t = np.minimum(y, zero)
            if alpha is None:
                np.expm1(t, out=t)
            else:
                np.multiply(t, alpha, out=t)
            np.maximum(y, zero, out=y)
            return np.add(y, t, out=y)
        return selected
    if kind == "sigmoid":
        return lambda y, ext: _sigmoid_(y)
    if kind == "tanh":
        return lambda y, ext: np.tanh(y, out=y)
    if kind == "swish":
        # y * sigmoid(beta y) = y / (1 + exp(-beta y)): four passes and one buffer, a third
        # faster than the unfused formula. exp overflows to inf where -beta y > ~88 (float32),
        # and y / inf is -0 where the exact value is below ~1e-36 in magnitude
        nbeta = None if arg is None or np.all(arg == 1) else np.negative(arg)
        one = np.ones((), dtype)

        def swish(y, ext):
            t = np.negative(y) if nbeta is None else np.multiply(y, nbeta)
            with np.errstate(over="ignore"):
                np.exp(t, out=t)
            np.add(t, one, out=t)
            return np.divide(y, t, out=y)
        return swish
    raise ValueError(f"unknown epilogue op {kind!r}")


def matmul_kernel(transpose_a: bool) -> Callable:
    """``MatMul(a, w)``: matrix ``a`` (transposed first if ``transpose_a``) times the [K, N]
    weight ``w``, checked as the MatMul kernel specialized on constant weights."""
    def MatMul(a, w):
        if transpose_a:
            a = a.T
        if a.ndim != 2 or a.shape[1] != w.shape[0]:
            raise ValueError(f"MatMul: cannot multiply shape {a.shape} by weights of shape "
                             f"{w.shape}")
        return np.matmul(a, w)
    return MatMul


#: a channels-last epilogue of several ops runs over blocks of about this many values, which
#: stay in cache from one op to the next (40% faster than whole-array passes on large maps)
_BLOCK = 1 << 16


class FusedChain:
    """``core(x, weight)`` then each epilogue op in place; ``fallback`` (the chain's original
    kernels one by one) when an input is not what the fast path assumes (another dtype, a
    residual operand of another dtype or a shape that would widen the result).

    ``channels``: the output's channel count when its channels are last (0 otherwise): the
    epilogue may then run block by block over whole rows of channels."""

    __slots__ = ("core", "weight", "dtype", "epilogue", "fallback", "name", "channels", "rows")

    def __init__(self, core: Callable, weight: np.ndarray, epilogue: Sequence[Callable],
                 fallback: Callable, name: str, channels: int = 0):
        self.core = core
        self.weight = weight
        self.dtype = weight.dtype
        self.epilogue = tuple(epilogue)
        self.fallback = fallback
        self.name = name
        self.channels = channels
        self.rows = max(1, _BLOCK // channels) if channels and len(self.epilogue) > 1 else 0

    def __call__(self, x, *ext):
        dt = x.dtype
        if dt is not self.dtype and dt != self.dtype:
            return self.fallback(x, *ext)
        y = self.core(x, self.weight)
        rows = self.rows
        if rows and y.size > 2 * _BLOCK and y.flags.c_contiguous and \
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

    def __repr__(self) -> str:
        return f"<fused kernel {self.name}>"


class Unfused:
    """The original kernels of a chain run one after the other (a slot-level interpreter).

    ``program``: (kernel, inputs, output slot) per step, each input ``("ext", i)`` (the i-th
    argument), ``("slot", s)`` (an earlier step's output) or ``("const", value)``."""

    __slots__ = ("program", "out")

    def __init__(self, program: list, out: int):
        self.program = program
        self.out = out

    def __call__(self, *ext):
        env: dict[int, object] = {}
        for kernel, ins, slot in self.program:
            args = [ext[v] if how == "ext" else env[v] if how == "slot" else v for how, v in ins]
            r = kernel(*args)
            env[slot] = r[0] if type(r) is tuple else r
        return env[self.out]
