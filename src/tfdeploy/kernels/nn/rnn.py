"""Fused recurrent cells: the ops the compiler's ``fuse_rnn`` pass makes, never found in a graph.

``_LSTMCell`` and ``_GRUCell`` compute one step of a Keras LSTM or GRU cell (sigmoid gates,
tanh activation) in about a dozen in-place numpy calls instead of some twenty kernels, each
with its own allocation and Python call. Two layout choices make those calls cheap:

- Gates are computed *transposed*, as a (gates * units, batch) array, so that each gate is a
  contiguous block of rows: at batch 8 a numpy call on a strided (batch, units) column block
  costs several times one on a contiguous block. The new states are returned as transposes of
  such blocks (Fortran-ordered (batch, units) arrays), which the next step reads back as
  contiguous blocks without a copy.
- sigmoid(x) = (1 + tanh(x / 2)) / 2: the sigmoid gates' weight columns and biases are halved
  once at load, so one tanh covers every gate, then two in-place ops finish the sigmoids. The
  result differs from 1 / (1 + exp(-x)) by a few float32 ulps of 1 (absolute), well inside TF's
  tolerance for these layers (its own CPU kernels use other approximations again).

The weights arrive in Keras' own layout (``kernel`` (input, gates * units), ``recurrent_kernel``
(units, gates * units), gates in Keras' order: LSTM i, f, g, o; GRU z, r, h); the pass has put
them there. A cell is a pure function of its inputs: its outputs are fresh arrays, its inputs
are never written. Inputs the fast path does not take (another dtype or shape) run the fused
steps' own kernels (``fallback``), which also raise TF's errors.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.kernels.common import op

#: LSTM: Keras' gate order i, f, g, o, reordered i, f, o, g so the sigmoid gates are contiguous
_LSTM_ORDER = (0, 1, 3, 2)


def _prepared(w: np.ndarray, order, n_sigmoid: int, units: int) -> np.ndarray:
    """``w`` (..., gates * units) with its gate blocks in ``order``, the first ``n_sigmoid``
    halved (sigmoid via tanh), transposed to (gates * units, ...), contiguous, read-only."""
    blocks = [w[..., g * units:(g + 1) * units].astype(np.float64) for g in order]
    for j in range(n_sigmoid):
        blocks[j] = blocks[j] * 0.5
    out = np.ascontiguousarray(np.concatenate(blocks, axis=-1).T.astype(w.dtype))
    out.setflags(write=False)
    return out


class _Cell:
    """What both cells share: prepared weights, the fast path's checks, the fallback."""

    __slots__ = ("dtype", "units", "depth", "wt", "rt", "bias", "half", "fallback", "name")

    def __init__(self, kernel, units: int, fallback, name: str):
        self.dtype = kernel.dtype
        self.units = units
        self.depth = kernel.shape[0]
        self.half = np.full((), 0.5, kernel.dtype)
        self.fallback = fallback
        self.name = name

    def _takes(self, x, *states) -> bool:
        """Whether the fast path takes these inputs: 2-D arrays of the weights' dtype, ``x``
        (batch, depth) and each state (batch, units)."""
        dt = self.dtype
        try:
            b = x.shape[0]
            if x.dtype != dt or x.shape != (b, self.depth):
                return False
            shape = (b, self.units)
            return all(s.dtype == dt and s.shape == shape for s in states)
        except (AttributeError, IndexError):
            return False

    def __repr__(self) -> str:
        return f"<fused kernel {self.name}>"


class LSTMCell(_Cell):
    """``h', c' = cell(x, h, c)``: c' = f c + i g, h' = o tanh(c'), with the gates i, f, o =
    sigmoid and g = tanh of x W + h R + b."""

    __slots__ = ()

    def __init__(self, kernel, recurrent_kernel, bias, fallback, name="_LSTMCell"):
        units = recurrent_kernel.shape[0]
        super().__init__(kernel, units, fallback, name)
        self.wt = _prepared(kernel, _LSTM_ORDER, 3, units)
        self.rt = _prepared(recurrent_kernel, _LSTM_ORDER, 3, units)
        self.bias = None if bias is None or not np.any(bias) else \
            _prepared(bias.reshape(1, -1), _LSTM_ORDER, 3, units)

    def __call__(self, x, h, c):
        if not self._takes(x, h, c):
            return self.fallback(x, h, c)
        z = np.matmul(self.wt, x.T)
        np.add(z, np.matmul(self.rt, h.T), out=z)
        if self.bias is not None:
            np.add(z, self.bias, out=z)
        return self.gates(z, c)

    def gates(self, z, c):
        """The step from the transposed, prepared pre-activations ``z`` (4 units, batch)."""
        n, half = self.units, self.half
        np.tanh(z, out=z)
        s = z[:3 * n]
        np.multiply(s, half, out=s)
        np.add(s, half, out=s)
        c_new = np.multiply(z[n:2 * n], c.T)
        t = np.multiply(z[:n], z[3 * n:])
        np.add(c_new, t, out=c_new)
        np.tanh(c_new, out=t)
        np.multiply(t, z[2 * n:3 * n], out=t)
        return t.T, c_new.T


class GRUCell(_Cell):
    """``h' = cell(x, h)``: h' = z h + (1 - z) n = n + z (h - n), with z, r = sigmoid and
    n = tanh of the input and recurrent parts; reset_after: n = tanh(x Wh + bh + r (h Rh +
    bh')), else n = tanh(x Wh + bh + (r h) Rh)."""

    __slots__ = ("reset_after", "rt_h", "bias_h")

    def __init__(self, kernel, recurrent_kernel, bias, recurrent_bias, reset_after: bool,
                 fallback, name="_GRUCell"):
        units = recurrent_kernel.shape[0]
        super().__init__(kernel, units, fallback, name)
        order = (0, 1, 2)
        self.reset_after = reset_after
        self.wt = _prepared(kernel, order, 2, units)
        rt = _prepared(recurrent_kernel, order, 2, units)
        self.rt = rt if reset_after else rt[:2 * units]
        self.rt_h = None if reset_after else rt[2 * units:]
        # the recurrent biases of z and r add to the input's; that of n is multiplied by r
        b = np.zeros(3 * units, np.float64)
        if bias is not None:
            b += bias.reshape(-1)
        bh = None
        if recurrent_bias is not None:
            b[:2 * units] += recurrent_bias.reshape(-1)[:2 * units]
            bh = recurrent_bias.reshape(-1)[2 * units:]
        self.bias = _prepared(b.astype(kernel.dtype).reshape(1, -1), order, 2, units) \
            if np.any(b) else None
        self.bias_h = None if bh is None or not np.any(bh) else \
            np.ascontiguousarray(bh.reshape(-1, 1))

    def __call__(self, x, h):
        if not self._takes(x, h):
            return self.fallback(x, h)
        xp = np.matmul(self.wt, x.T)
        if self.bias is not None:
            np.add(xp, self.bias, out=xp)
        return self.step(xp, h)

    def step(self, xp, h):
        """The step from the transposed, prepared input part ``xp`` (3 units, batch)."""
        n, half = self.units, self.half
        ht = h.T
        if self.reset_after:
            y = np.matmul(self.rt, ht)
            zr = y[:2 * n]
            hh = y[2 * n:]
        else:
            zr = np.matmul(self.rt, ht)
        np.add(zr, xp[:2 * n], out=zr)
        np.tanh(zr, out=zr)
        np.multiply(zr, half, out=zr)
        np.add(zr, half, out=zr)
        if self.reset_after:
            if self.bias_h is not None:
                np.add(hh, self.bias_h, out=hh)
            np.multiply(hh, zr[n:], out=hh)
        else:
            hh = np.matmul(self.rt_h, np.multiply(zr[n:], ht))
        np.add(hh, xp[2 * n:], out=hh)
        np.tanh(hh, out=hh)
        out = np.subtract(ht, hh)
        np.multiply(out, zr[:n], out=out)
        np.add(out, hh, out=out)
        return out.T


@op("_LSTMCell", internal=True, needs_context=True)
def _LSTMCell(*, _ctx=None, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias=None,
              _fallback=None, _label: str = "_LSTMCell"):
    """One Keras LSTM cell step ``h', c' = cell(x, h, c)`` (see the module docstring);
    ``_fallback``: the fused steps, compiled (set by the compiler's lowering)."""
    return LSTMCell(kernel, recurrent_kernel, bias, _fallback, _label)


@op("_GRUCell", internal=True, needs_context=True)
def _GRUCell(*, _ctx=None, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias=None,
             recurrent_bias=None, reset_after: bool = True, _fallback=None,
             _label: str = "_GRUCell"):
    """One Keras GRU cell step ``h' = cell(x, h)`` (see the module docstring)."""
    return GRUCell(kernel, recurrent_kernel, bias, recurrent_bias, reset_after, _fallback,
                   _label)
