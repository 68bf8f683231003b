"""Fused recurrent cells: the ops the compiler's ``fuse_rnn`` pass makes, never found in a graph.

``_LSTMCell`` and ``_GRUCell`` compute one step of a Keras LSTM or GRU cell (sigmoid gates,
tanh activation; ``_SimpleRNNCell`` that of a simple RNN) in about a dozen in-place numpy
calls instead of some twenty kernels, each with its own allocation and Python call. Two
layout choices make those calls cheap:

- Gates are computed *transposed*, as a (gates * units, batch) array, so that each gate is a
  contiguous block of rows: at batch 8 a numpy call on a strided (batch, units) column block
  costs several times one on a contiguous block. The new states are returned as transposes of
  such blocks (Fortran-ordered (batch, units) arrays), which the next step reads back as
  contiguous blocks without a copy.
- sigmoid(x) = (1 + tanh(x / 2)) / 2: the sigmoid gates' weight columns and biases are halved
  once at load, so one tanh covers every gate, then two in-place ops finish the sigmoids. The
  result differs from 1 / (1 + exp(-x)) by a few float32 ulps of 1 (absolute), well inside TF's
  tolerance for these layers (its own CPU kernels use other approximations again).
- At batch 1 a step is some ten numpy calls on a few hundred values, each ~0.3 us of call
  overhead: the layout is a row instead ((1, gates * units), the same memory), which takes
  the cheaper vector-matrix product (h R: 1.2 us against 1.5 for R^T h^T). The
  pre-activations go into a per-thread scratch row whose gate views are made once; multiplying
  by a 0.5 row of the gates' size costs 0.28 us against 0.45 for a 0.5 scalar.

The weights arrive in Keras' own layout (``kernel`` (input, gates * units), ``recurrent_kernel``
(units, gates * units), gates in Keras' order: LSTM i, f, g, o; GRU z, r, h); the pass has put
them there. A cell is a pure function of its inputs: its outputs are fresh arrays, its inputs
are never written. Inputs the fast path does not take (another dtype or shape) run the fused
steps' own kernels (``fallback``), which also raise TF's errors.
"""

from __future__ import annotations

import threading

import numpy as np

from tfdeploy.kernels.common import op
from tfdeploy.kernels.math.few_rows import columns_by
from tfdeploy.runtime.tensorlist import TensorList

#: LSTM: Keras' gate order i, f, g, o, reordered i, f, o, g so the sigmoid gates are contiguous
_LSTM_ORDER = (0, 1, 3, 2)
#: the largest projection of a whole sequence (``project``): above, each step projects its own
#: element (a long sequence at a large batch would otherwise hold one more copy of it all)
PROJECTION_LIMIT_BYTES = 64 << 20


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

    __slots__ = ("dtype", "units", "depth", "w", "wt", "rt", "rr", "rec", "row", "bias",
                 "bias_row", "half", "halves", "fallback", "name", "_local")

    def __init__(self, kernel, units: int, fallback, name: str):
        self.dtype = kernel.dtype
        self.units = units
        self.depth = kernel.shape[0]
        self.half = np.full((), 0.5, kernel.dtype)
        self.fallback = fallback
        self.name = name
        self._local = threading.local()

    def _set_recurrent(self, rt: np.ndarray, n_sigmoid: int) -> None:
        """The prepared recurrent kernel ``rt`` (gates * units, units), its row form ``rr``
        (units, gates * units) and the 0.5 row of the sigmoid gates (batch 1)."""
        self.rt = rt
        self.rr = np.ascontiguousarray(rt.T)
        #: rt @ h^T at batch 2-8 in the form measured fastest: the product, by columns or by
        #: blocks of rt's rows (``math/few_rows.py``); None for a small kernel (the product)
        self.rec = columns_by(rt)
        self.halves = np.full((1, n_sigmoid * self.units), 0.5, self.dtype)

    def _scratch(self):
        """This thread's scratch row (1, gates * units) and its views (``_views``)."""
        try:
            return self._local.views
        except AttributeError:
            z = np.empty((1, self.rr.shape[1]), self.dtype)
            views = self._local.views = (z, *self._views(z))
            return views

    def _views(self, z) -> tuple:
        return ()

    def _set_input(self, wt: np.ndarray, bias: np.ndarray | None) -> None:
        """The prepared input kernel ``wt`` (gates * units, depth) and bias (gates * units,
        1), as a row ``bias_row``; ``w``: the kernel untransposed (a matrix product of
        contiguous operands is faster: ``project``, and ``_input`` at batch 1)."""
        self.bias = bias
        self.bias_row = None if bias is None else np.ascontiguousarray(bias.T)
        self.w = np.ascontiguousarray(wt.T)
        self.row = (1, wt.shape[0])  # (a batch-1 input part's shape)
        self.wt = wt

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

    def _part(self, lst, i: int, *states):
        """The prepared input part of element ``i`` of ``lst`` alone (the projected step of a
        list ``project`` declined); TypeError if the fast path does not take it."""
        x = lst.get(i) if 0 <= i < len(lst) else None
        if x is None or not self._takes(x, *states):
            raise TypeError("not for the fast path")
        return self._input(x)

    def _input(self, x):
        """The prepared input part of ``x`` (batch, depth): (gates * units, batch), or at batch
        1 the row (1, gates * units)."""
        if x.shape[0] == 1:
            xp = np.dot(x, self.w)
            if self.bias is not None:
                np.add(xp, self.bias_row, xp)
            return xp
        xp = np.dot(self.wt, x.T)  # (np.dot: a little faster than np.matmul on small matrices)
        if self.bias is not None:
            np.add(xp, self.bias, xp)
        return xp

    def _fits(self, x, h, c=None) -> bool:
        """Whether the projected step takes ``x`` (``_input``'s layout), the state ``h`` and
        (LSTM) ``c``: every step checks, so the common case (numpy's own dtype object)
        is decided by identity first."""
        shape, dt = h.shape, self.dtype
        if len(shape) != 2 or shape[1] != self.units or h.dtype is not dt and h.dtype != dt:
            return False
        if c is not None and (c.shape != shape or c.dtype is not dt and c.dtype != dt):
            return False
        return x.shape == (self.row if shape[0] == 1 else (self.row[1], shape[0]))

    def project(self, lst):
        """The prepared input parts of every element of the list ``lst``, (length, gates *
        units, batch) (at batch 1 (length, 1, gates * units)): x W + b for each; None if the
        list is empty or its elements are not all set, of one (batch, depth) shape and the
        weights' dtype, or the result would be larger than ``PROJECTION_LIMIT_BYTES`` (each
        step then projects its element).

        One matrix product of the whole sequence, then (above batch 1) a transposing copy of
        its result into the gates' layout. A product per element straight into that layout
        (the bias a column of the weight against a row of ones) needed a transposing copy of
        the input instead, and ran BLAS with N = batch: 8 steps x 8 images of 15376 features
        (a TimeDistributed CNN's) 6.3 -> 2.6 ms, 100 x 8 x 256 into LSTM(256) 7.8 -> 3.6, the
        suite's LSTM(64) and GRU(32) at batch 8 0.068 -> 0.056 and 0.041 -> 0.027 ms."""
        if lst.__class__ is not TensorList or lst.dtype != self.dtype:
            return None
        whole = lst.whole  # (the tensor the list was made from: its elements, joined)
        if whole is not None and whole.ndim == 3 and whole.shape[0] and \
                whole.shape[2] == self.depth and whole.dtype == self.dtype:
            (n, b, d), items = whole.shape, None
        else:
            items = lst.items()
            try:
                shape = items[0].shape
                if len(shape) != 2 or shape[1] != self.depth or \
                        len({a.shape for a in items}) != 1:
                    return None
            except (AttributeError, IndexError):  # (no element, or one unset: None)
                return None
            n, (b, d) = len(items), shape
        if n * b * self.wt.shape[0] * self.dtype.itemsize > PROJECTION_LIMIT_BYTES:
            return None
        if items is not None:
            x = np.concatenate(items)  # (much faster than np.stack)
        else:  # (at batch 1 a view, unless the tensor is not contiguous)
            x = whole.reshape(n, d) if b == 1 else whole
        if x.dtype != self.dtype:  # (the list's own dtype: a list never holds others)
            return None
        y = np.dot(x.reshape(n * b, d), self.w)
        if self.bias is not None:
            np.add(y, self.bias_row, out=y)
        if b == 1:
            return y.reshape(n, 1, y.shape[1])
        # the transposed layout: a copy of the result (n x gates x batch values)
        return np.ascontiguousarray(y.reshape(n, b, y.shape[1]).transpose(0, 2, 1))

    def __repr__(self) -> str:
        return f"<fused kernel {self.name}>"


class LSTMCell(_Cell):
    """``h', c' = cell(x, h, c)``: c' = f c + i g, h' = o tanh(c'), with the gates i, f, o =
    sigmoid and g = tanh of x W + h R + b."""

    __slots__ = ()

    def __init__(self, kernel, recurrent_kernel, bias, fallback, name="_LSTMCell"):
        units = recurrent_kernel.shape[0]
        super().__init__(kernel, units, fallback, name)
        self._set_recurrent(_prepared(recurrent_kernel, _LSTM_ORDER, 3, units), 3)
        self._set_input(_prepared(kernel, _LSTM_ORDER, 3, units),
                        None if bias is None or not np.any(bias) else
                        _prepared(bias.reshape(1, -1), _LSTM_ORDER, 3, units))

    def _views(self, z) -> tuple:
        n = self.units  # the sigmoid gates, then i, f, o, g
        return z[:, :3 * n], z[:, :n], z[:, n:2 * n], z[:, 2 * n:3 * n], z[:, 3 * n:]

    def __call__(self, x, h, c):
        if not self._takes(x, h, c):
            return self.fallback(x, h, c)
        return self._step(self._input(x), h, c)

    def projected(self, p, lst, t, h, c):
        """The step reading its input part, row ``t`` of ``p = project(lst)`` (or, ``p`` None,
        computing it from element t)."""
        try:
            i = int(t)
            x = p[i] if p is not None else self._part(lst, i, h, c)
            ok = i >= 0 and self._fits(x, h, c)
        except (TypeError, IndexError, AttributeError):
            ok = False
        if not ok:
            return self.fallback(p, lst, t, h, c)
        return self._step(x, h, c)

    def _step(self, x, h, c):
        """The step from the prepared input part ``x`` (``_input``'s layout)."""
        if h.shape[0] == 1:  # the row layout, in this thread's scratch row
            z, s, zi, zf, zo, zg = self._scratch()
            halves = self.halves
            np.dot(h, self.rr, z)
            np.add(z, x, z)
            np.tanh(z, z)
            np.multiply(s, halves, s)
            np.add(s, halves, s)
            c_new = np.multiply(zf, c)
            t = np.multiply(zi, zg)
            np.add(c_new, t, c_new)
            np.tanh(c_new, t)
            np.multiply(t, zo, t)
            return t, c_new
        n, half = self.units, self.half  # the transposed layout (4 units, batch)
        z = np.dot(self.rt, h.T) if self.rec is None else self.rec(h.T)
        np.add(z, x, z)
        np.tanh(z, z)
        s = z[:3 * n]
        np.multiply(s, half, s)
        np.add(s, half, s)
        c_new = np.multiply(z[n:2 * n], c.T)
        t = np.multiply(z[:n], z[3 * n:])
        np.add(c_new, t, c_new)
        np.tanh(c_new, t)
        np.multiply(t, z[2 * n:3 * n], t)
        return t.T, c_new.T


class GRUCell(_Cell):
    """``h' = cell(x, h)``: h' = z h + (1 - z) n = n + z (h - n), with z, r = sigmoid and
    n = tanh of the input and recurrent parts; reset_after: n = tanh(x Wh + bh + r (h Rh +
    bh')), else n = tanh(x Wh + bh + (r h) Rh)."""

    __slots__ = ("reset_after", "rt_h", "rr_h", "rec_h", "bias_h", "bias_h_row")

    def __init__(self, kernel, recurrent_kernel, bias, recurrent_bias, reset_after: bool,
                 fallback, name="_GRUCell"):
        units = recurrent_kernel.shape[0]
        super().__init__(kernel, units, fallback, name)
        order = (0, 1, 2)
        self.reset_after = reset_after
        rt = _prepared(recurrent_kernel, order, 2, units)
        self._set_recurrent(rt if reset_after else rt[:2 * units], 2)
        self.rt_h = None if reset_after else rt[2 * units:]
        self.rr_h = None if reset_after else np.ascontiguousarray(self.rt_h.T)
        self.rec_h = None if reset_after else columns_by(self.rt_h)
        # the recurrent biases of z and r add to the input's; that of n is multiplied by r
        b = np.zeros(3 * units, np.float64)
        if bias is not None:
            b += bias.reshape(-1)
        bh = None
        if recurrent_bias is not None:
            b[:2 * units] += recurrent_bias.reshape(-1)[:2 * units]
            bh = recurrent_bias.reshape(-1)[2 * units:]
        self._set_input(_prepared(kernel, order, 2, units),
                        _prepared(b.astype(kernel.dtype).reshape(1, -1), order, 2, units)
                        if np.any(b) else None)
        self.bias_h = None if bh is None or not np.any(bh) else \
            np.ascontiguousarray(bh.reshape(-1, 1))
        self.bias_h_row = None if self.bias_h is None else \
            np.ascontiguousarray(self.bias_h.T)

    def _views(self, z) -> tuple:
        n = self.units  # z and r, z, r, and (reset_after) the recurrent part of n
        return z[:, :2 * n], z[:, :n], z[:, n:2 * n], z[:, 2 * n:]

    def __call__(self, x, h):
        if not self._takes(x, h):
            return self.fallback(x, h)
        return self._step(self._input(x), h)

    def projected(self, p, lst, t, h):
        """The step reading its input part, row ``t`` of ``p = project(lst)`` (or, ``p`` None,
        computing it from element t)."""
        try:
            i = int(t)
            x = p[i] if p is not None else self._part(lst, i, h)
            ok = i >= 0 and self._fits(x, h)
        except (TypeError, IndexError, AttributeError):
            ok = False
        if not ok:
            return self.fallback(p, lst, t, h)
        return self._step(x, h)

    def _step(self, xp, h):
        """The step from the prepared input part ``xp`` (``_input``'s layout)."""
        if h.shape[0] == 1:
            return self._row(xp, h)
        n, half = self.units, self.half
        ht = h.T
        rec = self.rec
        if self.reset_after:
            y = np.dot(self.rt, ht) if rec is None else rec(ht)
            zr = y[:2 * n]
            hh = y[2 * n:]
        else:
            zr = np.dot(self.rt, ht) if rec is None else rec(ht)
        np.add(zr, xp[:2 * n], out=zr)
        np.tanh(zr, out=zr)
        np.multiply(zr, half, out=zr)
        np.add(zr, half, out=zr)
        if self.reset_after:
            if self.bias_h is not None:
                np.add(hh, self.bias_h, out=hh)
            np.multiply(hh, zr[n:], out=hh)
        else:
            hh = np.dot(self.rt_h, np.multiply(zr[n:], ht)) if self.rec_h is None else \
                self.rec_h(np.multiply(zr[n:], ht))
        np.add(hh, xp[2 * n:], out=hh)
        np.tanh(hh, out=hh)
        out = np.subtract(ht, hh)
        np.multiply(out, zr[:n], out=out)
        np.add(out, hh, out=out)
        return out.T

    def _row(self, xp, h):
        """The step at batch 1: ``xp`` the row (1, 3 units), in this thread's scratch row."""
        y, zr, z, r, hh = self._scratch()
        n2, halves = 2 * self.units, self.halves
        np.dot(h, self.rr, y)
        np.add(zr, xp[:, :n2], zr)
        np.tanh(zr, zr)
        np.multiply(zr, halves, zr)
        np.add(zr, halves, zr)
        if self.reset_after:
            if self.bias_h_row is not None:
                np.add(hh, self.bias_h_row, hh)
            hn = np.multiply(hh, r)
        else:
            hn = np.dot(np.multiply(r, h), self.rr_h)
        np.add(hn, xp[:, n2:], hn)
        np.tanh(hn, hn)
        out = np.subtract(h, hn)
        np.multiply(out, z, out)
        np.add(out, hn, out)
        return out


class SimpleRNNCell(_Cell):
    """``h' = cell(x, h)``: h' = tanh(x W + h R + b)."""

    __slots__ = ()

    def __init__(self, kernel, recurrent_kernel, bias, fallback, name="_SimpleRNNCell"):
        units = recurrent_kernel.shape[0]
        super().__init__(kernel, units, fallback, name)
        self._set_recurrent(_prepared(recurrent_kernel, (0,), 0, units), 0)
        self._set_input(_prepared(kernel, (0,), 0, units),
                        None if bias is None or not np.any(bias) else
                        _prepared(bias.reshape(1, -1), (0,), 0, units))

    def __call__(self, x, h):
        if not self._takes(x, h):
            return self.fallback(x, h)
        return self._step(self._input(x), h)

    def projected(self, p, lst, t, h):
        """The step reading its input part, row ``t`` of ``p = project(lst)`` (or, ``p`` None,
        computing it from element t)."""
        try:
            i = int(t)
            x = p[i] if p is not None else self._part(lst, i, h)
            ok = i >= 0 and self._fits(x, h)
        except (TypeError, IndexError, AttributeError):
            ok = False
        if not ok:
            return self.fallback(p, lst, t, h)
        return self._step(x, h)

    def _step(self, x, h):
        z = np.dot(h, self.rr) if h.shape[0] == 1 else \
            np.dot(self.rt, h.T) if self.rec is None else self.rec(h.T)
        np.add(z, x, z)
        np.tanh(z, z)
        return z if h.shape[0] == 1 else z.T


@op("_LSTMCell", internal=True, needs_context=True)
def _LSTMCell(*, _ctx=None, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias=None,
              projected: bool = False, _fallback=None, _label: str = "_LSTMCell"):
    """One Keras LSTM cell step ``h', c' = cell(x, h, c)`` (see the module docstring), or
    (``projected``) ``cell(p, list, t, h, c)`` with ``p`` the list's projection
    (``_CellInputs``); ``_fallback``: the fused steps, compiled (set by the compiler's
    lowering)."""
    cell = LSTMCell(kernel, recurrent_kernel, bias, _fallback, _label)
    return cell.projected if projected else cell


@op("_GRUCell", internal=True, needs_context=True)
def _GRUCell(*, _ctx=None, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias=None,
             recurrent_bias=None, reset_after: bool = True, projected: bool = False,
             _fallback=None, _label: str = "_GRUCell"):
    """One Keras GRU cell step ``h' = cell(x, h)`` (see the module docstring), or
    (``projected``) ``cell(p, list, t, h)``."""
    cell = GRUCell(kernel, recurrent_kernel, bias, recurrent_bias, reset_after, _fallback,
                   _label)
    return cell.projected if projected else cell


@op("_SimpleRNNCell", internal=True, needs_context=True)
def _SimpleRNNCell(*, _ctx=None, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias=None,
                   projected: bool = False, _fallback=None, _label: str = "_SimpleRNNCell"):
    """One Keras simple RNN cell step ``h' = cell(x, h)``, or (``projected``)
    ``cell(p, list, t, h)``."""
    cell = SimpleRNNCell(kernel, recurrent_kernel, bias, _fallback, _label)
    return cell.projected if projected else cell


@op("_CellInputs", internal=True, needs_context=True)
def _CellInputs(*, _ctx=None, cell: str, kernel: np.ndarray, recurrent_kernel: np.ndarray,
                bias=None, recurrent_bias=None, reset_after: bool = True):
    """The input parts of a fused ``cell`` (``_LSTMCell``, ``_GRUCell``, ``_SimpleRNNCell``,
    with its weights) for every element of a list at once, laid out as the cell reads them
    (``Cell.project``)."""
    if cell == "_LSTMCell":
        return LSTMCell(kernel, recurrent_kernel, bias, None).project
    if cell == "_SimpleRNNCell":
        return SimpleRNNCell(kernel, recurrent_kernel, bias, None).project
    return GRUCell(kernel, recurrent_kernel, bias, recurrent_bias, reset_after, None).project
