"""fuse_rnn: Keras LSTM and GRU cells fused into one step each (``_LSTMCell``, ``_GRUCell``).

The body of a Keras RNN loop computes one cell step in some twenty small kernels (matrix
products, bias additions, a split into gates, sigmoids, tanh, the state update); at small
batches their per-call cost, not their arithmetic, is the time. This pass finds the cell's
pattern by op type and replaces it by one fused step (``kernels/nn/rnn.py``):

- LSTM: ``z = x W + h R + b`` (AddV2/Add/BiasAdd in any association), four column blocks of
  ``z`` (Split, SplitV or StridedSlice with constant bounds) ``i, f, g, o`` in any order, and
  ``c' = sigmoid(f) c + sigmoid(i) tanh(g)``, ``h' = sigmoid(o) tanh(c')``;
- GRU: ``xp = x W (+ b)`` and ``hp = h R (+ b')``, three column blocks of each ``z, r, n``,
  ``z = sigmoid(xz + hz)``, ``r = sigmoid(xr + hr)``, ``n = tanh(xn + r hn)`` (reset_after) or
  ``tanh(xn + (r h) Rn)`` (reset before), ``h' = z h + (1 - z) n``.

Products and sums commute in the match, so Keras 3's and tf_keras' graphs (split versus
strided slices, biases split or not) are one pattern each. Every step replaced must run
tfdeploy's own numpy kernel (``registry.runs_builtin``): a user's Sigmoid or scipy's is never
bypassed, the cell simply stays unfused. Values inside the cell must be read only inside it;
the fused step keeps the steps it replaces (``Step.members``), compiled as its fallback.
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

    # -- sums of matrix products and biases ---------------------------------------------
    def terms(self, v: int, out: dict) -> bool:
        """Collect the sum producing ``v`` into ``out``: "matmul" [(input, weight)], "bias"
        [vector]; False if a term is anything else."""
        st = self.step(v, *_ADDS, n_in=2)
        if st is not None:
            if st.op == "BiasAdd" and self.const(st.ins[1]) is None:
                return False
            return self.terms(st.ins[0], out) and self.terms(st.ins[1], out)
        c = self.const(v)
        if c is not None:
            if c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1):
                return False
            out.setdefault("bias", []).append(c.reshape(-1))
            return True
        st = self.step(v, "MatMul", n_in=2)
        if st is None or st.attrs.get("transpose_a", False):
            return False
        w = self.const(st.ins[1])
        if w is None or w.ndim != 2 or w.dtype not in _FLOATS or st.ins[0] in self.constants:
            return False
        out.setdefault("matmul", []).append(
            (st.ins[0], w.T if st.attrs.get("transpose_b", False) else w))
        return True

    def affine(self, v: int) -> dict | None:
        """``v`` as a sum of matrix products by constants and constant biases: {"matmul":
        [(input, weight)], "bias": vector or None, "width": columns}, or None."""
        out: dict = {}
        if not self.terms(v, out) or not out.get("matmul"):
            return None
        width = out["matmul"][0][1].shape[1]
        dt = out["matmul"][0][1].dtype
        if any(w.shape[1] != width or w.dtype != dt for _, w in out["matmul"]):
            return None
        bias = None
        for b in out.get("bias", ()):
            if b.dtype != dt or b.size not in (1, width):
                return None
            bias = np.broadcast_to(b, (width,)) if bias is None else bias + b
        return {"matmul": out["matmul"], "bias": bias, "width": width}

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


def _pairs(pair):
    a, b = pair
    return ((a, b), (b, a))


def _gates(m: _Match, pre: dict[str, int], units_of_width) -> tuple | None:
    """(source, affine, {gate: start column}) when every pre-activation of ``pre`` is a
    column block, of one width, of the same source; ``units_of_width(width)`` -> units."""
    src, bounds = None, {}
    for g, v in pre.items():
        b = m.block(v)
        if b is None or (src is not None and b[0] != src):
            return None
        src, bounds[g] = b
    aff = m.affine(src)
    if aff is None:
        return None
    units = units_of_width(aff["width"])
    if units is None:
        return None
    starts = {}
    for g, f in bounds.items():
        se = f(aff["width"])
        if se is None or se[1] - se[0] != units:
            return None
        starts[g] = se[0]
    return src, aff, starts


def _columns(w: np.ndarray, starts: list[int], units: int) -> np.ndarray:
    return np.concatenate([w[..., s:s + units] for s in starts], axis=-1)


def _split_inputs(m: _Match, products: list, units: int):
    """(x, kernel, h, recurrent_kernel) from the two matrix products of an LSTM sum: the
    recurrent one's weight has ``units`` rows, and its input is a loop value (a feed) when the
    other's comes from a step (TensorListGetItem)."""
    if len(products) != 2:
        return None
    fed = set(m.plan.feed_values)
    (a0, w0), (a1, w1) = products
    options = [(a0, w0, a1, w1), (a1, w1, a0, w0)]
    options = [o for o in options if o[3].shape[0] == units and o[2] != o[0]]
    if len(options) == 2:
        options.sort(key=lambda o: (o[2] not in fed, o[0] in fed))
    return options[0] if options else None


def lstm(m: _Match, k: int) -> dict | None:
    """The LSTM cell whose h' step ``k`` computes: sigmoid(o) * tanh(c'), or None."""
    st = m.plan.steps[k]
    if st.op != "Mul" or len(st.ins) != 2 or not registry.runs_builtin("Mul"):
        return None
    for so, tc in _pairs(st.ins):
        for found in _lstm_state(m, so, tc):
            return found
    return None


def _lstm_state(m: _Match, so: int, tc: int):
    o, c_new = m.unary(so, "Sigmoid"), m.unary(tc, "Tanh")
    ops = m.operands(c_new, "AddV2", "Add") if o is not None and c_new is not None else None
    if ops is None:
        return
    for fc, ig in _pairs(ops):
        for f, c in _sigmoid_times(m, fc):
            for i, tg in _sigmoid_times(m, ig):
                g = m.unary(tg, "Tanh")
                if g is None:
                    continue
                found = _gates(m, {"i": i, "f": f, "g": g, "o": o},
                               lambda w: w // 4 if w % 4 == 0 else None)
                if found is None:
                    continue
                _, aff, starts = found
                units = aff["width"] // 4
                split = _split_inputs(m, aff["matmul"], units)
                if split is None:
                    continue
                x, w, h, r = split
                order = [starts[g] for g in "ifgo"]
                bias = None if aff["bias"] is None else _columns(aff["bias"], order, units)
                yield {"op": "_LSTMCell", "ins": (x, h, c), "outs": (c_new,),
                       "attrs": {"kernel": _columns(w, order, units),
                                 "recurrent_kernel": _columns(r, order, units), "bias": bias}}


def _sigmoid_times(m: _Match, v: int):
    """(sigmoid's input, other factor) for each way ``v`` reads as sigmoid(a) * b."""
    ops = m.operands(v, "Mul")
    if ops is None:
        return
    for a, b in _pairs(ops):
        pre = m.unary(a, "Sigmoid")
        if pre is not None:
            yield pre, b


def gru(m: _Match, k: int) -> dict | None:
    """The GRU cell whose h' step ``k`` computes: z * h + (1 - z) * n, or None."""
    st = m.plan.steps[k]
    if st.op not in ("AddV2", "Add") or len(st.ins) != 2 or not registry.runs_builtin(st.op):
        return None
    for zh, zn in _pairs(st.ins):
        for z, h in _sigmoid_times(m, zh):
            found = _gru_update(m, z, h, zn)
            if found is not None:
                return found
    return None


def _gru_update(m: _Match, z: int, h: int, zn: int) -> dict | None:
    """The rest of a GRU given z (sigmoid's input) and h from z * h, and (1 - z) * n."""
    ops = m.operands(zn, "Mul")
    if ops is None:
        return None
    for one_minus, tn in _pairs(ops):
        sub = m.step(one_minus, "Sub", n_in=2)
        one = m.const(sub.ins[0]) if sub is not None else None
        if one is None or one.size != 1 or float(one.reshape(())) != 1.0 or \
                m.unary(sub.ins[1], "Sigmoid") != z:
            continue
        n_pre = m.unary(tn, "Tanh")
        ops_n = m.operands(n_pre, "AddV2", "Add") if n_pre is not None else None
        if ops_n is None:
            continue
        for xn, rn in _pairs(ops_n):
            found = _gru_gates(m, z, h, xn, rn)
            if found is not None:
                return found
    return None


def _gru_gates(m: _Match, z: int, h: int, xn: int, rn: int) -> dict | None:
    """The GRU's gates given n = tanh(xn + rn): rn is r * hn (reset_after) or (r h) Rn."""
    xb = m.block(xn)
    if xb is None:
        return None
    mm = m.step(rn, "MatMul", n_in=2)
    if mm is not None:  # reset before: rn = (r * h) Rn
        r_n = m.const(mm.ins[1])
        if r_n is None or mm.attrs.get("transpose_a", False) or r_n.ndim != 2:
            return None
        r_n = r_n.T if mm.attrs.get("transpose_b", False) else r_n
        for r, hh in _sigmoid_times(m, mm.ins[0]):
            if hh == h:
                return _gru_sums(m, z, r, xn, None, h, r_n)
        return None
    for r, hn in _sigmoid_times(m, rn):
        found = _gru_sums(m, z, r, xn, hn, h, None)
        if found is not None:
            return found
    return None


def _gru_sums(m: _Match, z: int, r: int, xn: int, hn: int | None, h: int, r_n) -> dict | None:
    """Both sums of a GRU: z and r are sigmoid(x part + h part), blocks of the input's sum
    (that of xn) and of the state's (that of hn, or any block for reset before)."""
    xsrc = m.block(xn)[0]
    zr = {}
    for g, v in (("z", z), ("r", r)):
        ops = m.operands(v, "AddV2", "Add")
        if ops is None:
            return None
        for a, b in _pairs(ops):
            ba, bb = m.block(a), m.block(b)
            if ba is not None and bb is not None and ba[0] == xsrc and bb[0] != xsrc:
                zr[g] = (a, b)
                break
        else:
            return None
    xg = _gates(m, {"z": zr["z"][0], "r": zr["r"][0], "n": xn},
                lambda w: w // 3 if w % 3 == 0 else None)
    hpre = {"z": zr["z"][1], "r": zr["r"][1]}
    if hn is not None:
        hpre["n"] = hn
    hg = _gates(m, hpre, lambda w: w // len(hpre) if w % len(hpre) == 0 else None)
    if xg is None or hg is None:
        return None
    (_, xa, xs), (_, ha, hs) = xg, hg
    units = xa["width"] // 3
    if len(xa["matmul"]) != 1 or len(ha["matmul"]) != 1 or ha["matmul"][0][0] != h or \
            ha["matmul"][0][1].shape != (units, len(hpre) * units):
        return None
    if r_n is not None and (r_n.shape != (units, units) or r_n.dtype != xa["matmul"][0][1].dtype):
        return None
    x, w = xa["matmul"][0]
    rk = _columns(ha["matmul"][0][1], [hs[g] for g in hpre], units)
    if r_n is not None:
        rk = np.concatenate([rk, r_n], axis=1)
    bias = None if xa["bias"] is None else _columns(xa["bias"], [xs[g] for g in "zrn"], units)
    rbias = None if ha["bias"] is None or hn is None else \
        _columns(ha["bias"], [hs[g] for g in "zrn"], units)
    if r_n is not None and ha["bias"] is not None:
        return None  # (a bias of the state's z, r part without one of n: not Keras' GRU)
    return {"op": "_GRUCell", "ins": (x, h), "outs": (),
            "attrs": {"kernel": _columns(w, [xs[g] for g in "zrn"], units),
                      "recurrent_kernel": rk, "bias": bias, "recurrent_bias": rbias,
                      "reset_after": hn is not None}}


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


def run(plan: Plan, ctx=None) -> Plan:
    """The plan with every Keras LSTM and GRU cell fused."""
    m = _Match(plan)
    inserts: dict[int, list[Step]] = {}
    for k in range(len(plan.steps)):
        if k in m.claimed or not plan.steps[k].outs:
            continue
        for matcher in (lstm, gru):
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
            break
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
