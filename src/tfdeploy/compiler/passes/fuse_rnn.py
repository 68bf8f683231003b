"""fuse_rnn: Keras LSTM, GRU and simple RNN cells fused into one step each (``_LSTMCell``,
``_GRUCell``, ``_SimpleRNNCell``).

The body of a Keras RNN loop computes one cell step in some twenty small kernels (matrix
products, bias additions, a split into gates, sigmoids, tanh, the state update); at small
batches their per-call cost, not their arithmetic, is the time. This pass finds the cell's
pattern by op type and replaces it by one fused step (``kernels/nn/rnn.py``):

- LSTM: gates ``i, f, g, o`` whose pre-activations are sums over x and h,
  ``c' = sigmoid(f) c + sigmoid(i) tanh(g)``, ``h' = sigmoid(o) tanh(c')``;
- GRU: gates ``z, r`` (sums over x and h) and ``n = tanh(xn + r hn)`` (reset_after: hn a sum
  over h) or ``tanh(xn + (r h) Rn)`` (reset before), ``h' = z h + (1 - z) n``;
- simple RNN: ``h' = tanh(s)``, s a sum over x and h.

A gate's pre-activation is read as an affine sum (``_Match.affine``): products of inputs by
constant matrices, constant biases (AddV2/Add/BiasAdd in any association), or column blocks
(Split, SplitV, StridedSlice with constant bounds) of another such sum: so one pattern covers
Keras' one product for all gates split into blocks, and its one sum per gate (implementation
1, whenever dropout is set, where tf_keras also multiplies x and h by ``ones_like``, read as
x and h). The fused step takes the weights in Keras' own layout, gates in Keras' order.

Products and sums commute in the match, so Keras 3's and tf_keras' graphs are one pattern
each. Every step replaced must run tfdeploy's own numpy kernel (``registry.runs_builtin``): a
user's Sigmoid or scipy's is never bypassed, the cell simply stays unfused. Values inside the
cell must be read only inside it; the fused step keeps the steps it replaces
(``Step.members``), compiled as its fallback.
"""

from __future__ import annotations

import numpy as np

from tfdeploy import registry
from tfdeploy.compiler.plan import Plan, Step

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_ADDS = ("AddV2", "Add", "BiasAdd")


class _Match:
    """A plan's steps seen as an expression graph: who produces and who reads each value."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.constants = plan.constants
        self.producer: dict[int, tuple[int, int]] = {}
        self.readers: dict[int, list[int]] = {}
        for k, st in enumerate(plan.steps):
            for i, v in st.outs:
                self.producer[v] = (k, i)
            for v in st.ins:
                self.readers.setdefault(v, []).append(k)
        self.claimed: set[int] = set()
        self._affine: dict[int, dict | None] = {}

    def step(self, v: int, *ops: str, n_in: int | None = None) -> Step | None:
        """The step producing ``v`` if its op is one of ``ops``, it runs tfdeploy's own kernel,
        has ``n_in`` inputs and is not part of another fused cell."""
        p = self.producer.get(v)
        if p is None or p[0] in self.claimed:
            return None
        st = self.plan.steps[p[0]]
        if st.op not in ops or (n_in is not None and len(st.ins) != n_in) or \
                not registry.runs_builtin(st.op):
            return None
        return st

    def cone(self, outs: list[int], ins) -> set[int] | None:
        """The steps computing ``outs`` from ``ins`` and constants: the cell's members; None
        if the cell reads another value (the match missed it), or a step is not plain."""
        members: set[int] = set()
        todo = list(outs)
        while todo:
            v = todo.pop()
            if v in ins or v in self.constants:
                continue
            p = self.producer.get(v)
            if p is None:
                return None
            if p[0] in members:
                continue
            st = self.plan.steps[p[0]]
            if p[0] in self.claimed or not registry.runs_builtin(st.op):
                return None
            members.add(p[0])
            todo.extend(st.ins)
        return members

    def output_index(self, v: int) -> int:
        return self.producer[v][1]

    def const(self, v: int):
        c = self.constants.get(v)
        return c if isinstance(c, np.ndarray) else None

    def unary(self, v: int, op_type: str) -> int | None:
        """The input of the ``op_type`` step producing ``v`` (Sigmoid, Tanh...)."""
        st = self.step(v, op_type, n_in=1)
        return st.ins[0] if st is not None else None

    def operands(self, v: int, *ops: str) -> tuple[int, int] | None:
        st = self.step(v, *ops, n_in=2)
        return st.ins if st is not None else None

    def source(self, v: int) -> int:
        """``v`` with multiplications by its own ones_like looked through (tf_keras' inference
        dropout masks: x * ones_like(x) is x, exactly)."""
        while True:
            ops = self.operands(v, "Mul")
            if ops is None:
                return v
            a, b = ops
            if self.unary(b, "OnesLike") == a:
                v = a
            elif self.unary(a, "OnesLike") == b:
                v = b
            else:
                return v

    # -- sums of matrix products and biases ---------------------------------------------
    def affine(self, v: int) -> dict | None:
        """``v`` as a sum of products of inputs by constant matrices plus a constant bias:
        {"terms": {input: weight (rows, width)}, "bias": vector or None, "width": columns};
        the sum's terms may be column blocks of other such sums. None if it is not."""
        if v not in self._affine:
            acc: dict = {"terms": {}, "bias": []}
            ok = self._collect(v, acc) and acc["terms"]
            self._affine[v] = _finish(acc) if ok else None
        return self._affine[v]

    def _collect(self, v: int, acc: dict) -> bool:
        st = self.step(v, *_ADDS, n_in=2)
        if st is not None:
            if st.op == "BiasAdd" and self.const(st.ins[1]) is None:
                return False
            return self._collect(st.ins[0], acc) and self._collect(st.ins[1], acc)
        c = self.const(v)
        if c is not None:
            if c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1):
                return False
            acc["bias"].append(c.reshape(-1))
            return True
        st = self.step(v, "MatMul", n_in=2)
        if st is not None:
            w = self.const(st.ins[1])
            x = self.source(st.ins[0])
            if w is None or w.ndim != 2 or w.dtype not in _FLOATS or x in self.constants or \
                    st.attrs.get("transpose_a", False) or x in acc["terms"]:
                return False
            acc["terms"][x] = w.T if st.attrs.get("transpose_b", False) else w
            return True
        b = self.block(v)
        inner = self.affine(b[0]) if b is not None else None
        se = b[1](inner["width"]) if inner is not None else None
        if se is None or any(x in acc["terms"] for x in inner["terms"]):
            return False
        s, e = se
        acc["terms"].update((x, w[:, s:e]) for x, w in inner["terms"].items())
        if inner["bias"] is not None:
            acc["bias"].append(inner["bias"][s:e])
        return True

    # -- column blocks ---------------------------------------------------------------------
    def block(self, v: int) -> tuple[int, object] | None:
        """(source, bounds) if ``v`` is a column block of a matrix, taken by Split, SplitV or
        StridedSlice with constant arguments; ``bounds(width)`` -> (start, stop) or None."""
        st = self.step(v, "Split", "SplitV", "StridedSlice")
        if st is None:
            return None
        k = self.output_index(v)
        if st.op == "Split" and len(st.ins) == 2:
            dim, n = self.const(st.ins[0]), st.attrs.get("num_split")
            if dim is None or dim.ndim or int(dim) not in (1, -1) or not isinstance(n, int):
                return None
            return st.ins[1], lambda w: (k * w // n, (k + 1) * w // n) if w % n == 0 else None
        if st.op == "SplitV" and len(st.ins) == 3:
            sizes, dim = self.const(st.ins[1]), self.const(st.ins[2])
            if sizes is None or dim is None or dim.ndim or int(dim) not in (1, -1):
                return None
            return st.ins[0], lambda w: _splitv_bounds(sizes.reshape(-1).tolist(), k, w)
        if st.op == "StridedSlice" and len(st.ins) == 4:
            return self._strided(st)
        return None

    def _strided(self, st: Step):
        begin, end, strides = (self.const(v) for v in st.ins[1:])
        a = st.attrs
        if begin is None or end is None or strides is None or begin.shape != (2,) or \
                end.shape != (2,) or strides.tolist() != [1, 1] or \
                any(a.get(m, 0) for m in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask")):
            return None
        bm, em = a.get("begin_mask", 0), a.get("end_mask", 0)
        if not (bm & 1 or int(begin[0]) == 0) or not em & 1:
            return None  # (rows: all of them)
        b0, e0 = int(begin[1]), int(end[1])

        def bounds(w):
            b = 0 if bm & 2 else (b0 + w if b0 < 0 else b0)
            e = w if em & 2 else (e0 + w if e0 < 0 else e0)
            b, e = min(max(b, 0), w), min(max(e, 0), w)
            return (b, e) if b < e else None
        return st.ins[0], bounds


def _splitv_bounds(sizes: list, k: int, width: int):
    if sizes.count(-1) > 1 or k >= len(sizes):
        return None
    if -1 in sizes:
        sizes = [width - (sum(sizes) + 1) if s == -1 else s for s in sizes]
    if sum(sizes) != width or any(s < 0 for s in sizes):
        return None
    start = sum(sizes[:k])
    return (start, start + sizes[k]) if sizes[k] else None


def _finish(acc: dict) -> dict | None:
    """The collected sum as {"terms", "bias", "width"} if its parts agree in width and
    dtype."""
    ws = list(acc["terms"].values())
    width, dt = ws[0].shape[1], ws[0].dtype
    if any(w.shape[1] != width or w.dtype != dt for w in ws):
        return None
    bias = None
    for b in acc["bias"]:
        if b.dtype != dt or b.size not in (1, width):
            return None
        b = np.broadcast_to(b, (width,)).astype(np.float64)
        bias = b if bias is None else bias + b
    return {"terms": acc["terms"], "width": width,
            "bias": None if bias is None else bias.astype(dt)}


def _pairs(pair):
    a, b = pair
    return ((a, b), (b, a))


def _sigmoid_times(m: _Match, v: int):
    """(sigmoid's input, other factor) for each way ``v`` reads as sigmoid(a) * b."""
    ops = m.operands(v, "Mul")
    if ops is None:
        return
    for a, b in _pairs(ops):
        pre = m.unary(a, "Sigmoid")
        if pre is not None:
            yield pre, b


def _gate_sums(m: _Match, pre: list[int], inputs: int) -> tuple[list, int] | None:
    """The affine sums of the pre-activations ``pre``, of one width (the units) and over the
    same ``inputs`` inputs each, and the units."""
    sums = [m.affine(v) for v in pre]
    if any(a is None for a in sums):
        return None
    units, keys = sums[0]["width"], set(sums[0]["terms"])
    if len(keys) != inputs or any(a["width"] != units or set(a["terms"]) != keys
                                  for a in sums):
        return None
    return sums, units


def _stack(sums: list[dict], x: int) -> np.ndarray:
    """The weights of input ``x`` of each sum, side by side (the gates' columns)."""
    return np.concatenate([a["terms"][x] for a in sums], axis=1)


def _stack_bias(sums: list[dict]) -> np.ndarray | None:
    if all(a["bias"] is None for a in sums):
        return None
    dt = next(iter(sums[0]["terms"].values())).dtype
    return np.concatenate([np.zeros(a["width"], dt) if a["bias"] is None else a["bias"]
                           for a in sums])


def lstm(m: _Match, k: int) -> dict | None:
    """The LSTM cell whose h' step ``k`` computes: sigmoid(o) * tanh(c'), or None."""
    st = m.plan.steps[k]
    if st.op != "Mul" or len(st.ins) != 2 or not registry.runs_builtin("Mul"):
        return None
    for so, tc in _pairs(st.ins):
        o, c_new = m.unary(so, "Sigmoid"), m.unary(tc, "Tanh")
        ops = m.operands(c_new, "AddV2", "Add") if o is not None and c_new is not None else None
        for fc, ig in _pairs(ops) if ops is not None else ():
            for f, c in _sigmoid_times(m, fc):
                for i, tg in _sigmoid_times(m, ig):
                    g = m.unary(tg, "Tanh")
                    found = _lstm_sums(m, [i, f, g, o]) if g is not None else None
                    if found is not None:
                        x, h, attrs = found
                        return {"op": "_LSTMCell", "ins": (x, h, c), "outs": (c_new,),
                                "attrs": attrs}
    return None


def _lstm_sums(m: _Match, pre: list[int]):
    """(x, h, attrs) from the gates' pre-activations (LSTM: i, f, g, o): sums over x and h,
    h the input whose weights are square."""
    found = _gate_sums(m, pre, 2)
    if found is None:
        return None
    sums, units = found
    keys = list(sums[0]["terms"])
    rows = {x: sums[0]["terms"][x].shape[0] for x in keys}
    fed = set(m.plan.feed_values)
    options = [(x, h) for x, h in (keys, keys[::-1]) if rows[h] == units]
    options.sort(key=lambda o: (o[1] not in fed, o[0] in fed))
    if not options:
        return None
    x, h = options[0]
    return x, h, {"kernel": _stack(sums, x), "recurrent_kernel": _stack(sums, h),
                  "bias": _stack_bias(sums)}


def gru(m: _Match, k: int) -> dict | None:
    """The GRU cell whose h' step ``k`` computes: z * h + (1 - z) * n, or None."""
    st = m.plan.steps[k]
    if st.op not in ("AddV2", "Add") or len(st.ins) != 2 or not registry.runs_builtin(st.op):
        return None
    for zh, zn in _pairs(st.ins):
        for z, h in _sigmoid_times(m, zh):
            found = _gru_update(m, z, m.source(h), zn)
            if found is not None:
                return found
    return None


def _gru_update(m: _Match, z: int, h: int, zn: int) -> dict | None:
    """The rest of a GRU given z (sigmoid's input) and h from z * h, and (1 - z) * n."""
    ops = m.operands(zn, "Mul")
    for one_minus, tn in _pairs(ops) if ops is not None else ():
        sub = m.step(one_minus, "Sub", n_in=2)
        one = m.const(sub.ins[0]) if sub is not None else None
        if one is None or one.size != 1 or float(one.reshape(())) != 1.0 or \
                m.unary(sub.ins[1], "Sigmoid") != z:
            continue
        n_pre = m.unary(tn, "Tanh")
        ops_n = m.operands(n_pre, "AddV2", "Add") if n_pre is not None else None
        for xn, rn in _pairs(ops_n) if ops_n is not None else ():
            found = _gru_sums(m, z, h, xn, rn)
            if found is not None:
                return found
    return None


def _gru_sums(m: _Match, z: int, h: int, xn: int, rn: int) -> dict | None:
    """The GRU given n = tanh(xn + rn): z, r sums over x and h, xn over x, and rn = r * hn
    with hn a sum over h (reset_after), or (r * h) Rn (reset before)."""
    mm = m.step(rn, "MatMul", n_in=2)
    if mm is None:  # reset_after
        options = [(r, m.affine(hn), None) for r, hn in _sigmoid_times(m, rn)]
    else:
        r_n = m.const(mm.ins[1])
        if r_n is None or r_n.ndim != 2 or mm.attrs.get("transpose_a", False):
            return None
        r_n = r_n.T if mm.attrs.get("transpose_b", False) else r_n
        options = [(r, None, r_n) for r, hh in _sigmoid_times(m, mm.ins[0])
                   if m.source(hh) == h]
    ax = m.affine(xn)
    if ax is None or len(ax["terms"]) != 1 or h in ax["terms"]:
        return None
    (x,) = ax["terms"]
    for r, ah, r_n in options:
        found = _gate_sums(m, [z, r], 2)
        if found is None or (ah is None and r_n is None):
            continue
        (az, ar), units = found
        if set(az["terms"]) != {x, h} or ax["width"] != units:
            continue
        if ah is not None and (set(ah["terms"]) != {h} or ah["width"] != units):
            continue
        if r_n is not None and (r_n.shape != (units, units) or r_n.dtype != az["terms"][h].dtype):
            continue
        return _gru_attrs(x, h, az, ar, ax, ah, r_n, units)
    return None


def _gru_attrs(x, h, az, ar, ax, ah, r_n, units) -> dict:
    """The fused step of a matched GRU, its weights in Keras' layout (gates z, r, n)."""
    if ah is not None:
        rk = _stack([az, ar, ah], h)
    else:
        rk = np.concatenate([_stack([az, ar], h), r_n], axis=1)
    rbias = None
    if ah is not None and ah["bias"] is not None:
        rbias = np.concatenate([np.zeros(2 * units, ah["bias"].dtype), ah["bias"]])
    return {"op": "_GRUCell", "ins": (x, h), "outs": (),
            "attrs": {"kernel": _stack([az, ar, ax], x), "recurrent_kernel": rk,
                      "bias": _stack_bias([az, ar, ax]), "recurrent_bias": rbias,
                      "reset_after": ah is not None}}


def _closed(m: _Match, members: set[int], outs: list[int]) -> bool:
    """Whether every value the members make, but ``outs``, is read by members only and not
    fetched, and the external inputs are made before any reader of the outputs."""
    plan, fetched = m.plan, set(m.plan.fetch_values)
    for k in members:
        for _, v in plan.steps[k].outs:
            if v in outs:
                continue
            if v in fetched or any(r not in members for r in m.readers.get(v, ())):
                return False
    return True


def _place(m: _Match, members: set[int], ins, outs) -> int | None:
    """Where the fused step goes (before the step now there): after every producer of its
    inputs, before every other reader of its outputs; None if there is no such place."""
    after = max((m.producer[v][0] for v in ins if v in m.producer), default=-1)
    before = min((r for v in outs for r in m.readers.get(v, ()) if r not in members),
                 default=len(m.plan.steps))
    pos = max(after + 1, min(members))
    return pos if pos <= before else None


def simple_rnn(m: _Match, k: int) -> dict | None:
    """The simple RNN cell whose h' step ``k`` computes: tanh of a sum over x and h (matched
    after the LSTMs and GRUs, whose tanh(g) is such a sum)."""
    st = m.plan.steps[k]
    if st.op != "Tanh" or len(st.ins) != 1 or not registry.runs_builtin("Tanh"):
        return None
    found = _lstm_sums(m, [st.ins[0]])
    if found is None:
        return None
    x, h, attrs = found
    return {"op": "_SimpleRNNCell", "ins": (x, h), "outs": (), "attrs": attrs}


def run(plan: Plan, ctx=None) -> Plan:
    """The plan with every Keras LSTM, GRU and simple RNN cell fused."""
    m = _Match(plan)
    inserts: dict[int, list[Step]] = {}
    for matcher in (lstm, gru, simple_rnn):
        for k in range(len(plan.steps)):
            if k in m.claimed or not plan.steps[k].outs:
                continue
            found = matcher(m, k)
            if found is None:
                continue
            outs = [plan.steps[k].outs[0][1], *found["outs"]]
            members = m.cone(outs, found["ins"])
            if members is None or not _closed(m, members, outs):
                continue
            pos = _place(m, members, found["ins"], outs)
            if pos is None:
                continue
            m.claimed |= members
            inserts.setdefault(pos, []).append(_fused(plan, found, members, outs))
    if inserts:
        steps = []
        for k, st in enumerate(plan.steps):
            steps.extend(inserts.get(k, ()))
            if k not in m.claimed:
                steps.append(st)
        steps.extend(inserts.get(len(plan.steps), ()))
        plan.steps = steps
    return plan


def _fused(plan: Plan, found: dict, members: set[int], outs: list[int]) -> Step:
    steps = [plan.steps[j] for j in sorted(members)]
    attrs = dict(found["attrs"])
    for key in ("kernel", "recurrent_kernel", "bias", "recurrent_bias"):
        a = attrs.get(key)
        if isinstance(a, np.ndarray):
            a = np.ascontiguousarray(a)
            a.setflags(write=False)
            attrs[key] = a
    attrs["_label"] = f"{found['op']} ({steps[0].name} .. {steps[-1].name})"
    return Step(found["op"], steps[0].name, tuple(found["ins"]),
                tuple(enumerate(outs)), attrs, members=tuple(steps))
