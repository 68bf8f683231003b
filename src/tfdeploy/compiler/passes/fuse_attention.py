"""fuse_attention: scaled dot-product attention as one ``_Attention`` step.

Keras' ``MultiHeadAttention`` traces to ``Einsum(q, k)`` (e.g. ``BTNH,BSNH->BNTS``), a ``Mul``
by a constant scale (or a ``RealDiv``), optionally an ``AddV2`` of a mask or a
``SelectV2(mask, scores, fill)`` (Keras' causal and padding masks), ``Softmax``, and
``Einsum(scores, v)``; hand-written attention uses ``BatchMatMulV2(q, k, adj_y=True)`` and
``BatchMatMulV2(p, v)`` around the same middle (grouped-query heads broadcast)
(``BNTS,BSNH->BTNH``). The fused kernel computes the same as two batched matmuls over
transposed views, with the softmax in place between them: no einsum dispatch, no copies.

A mixed_float16 Keras model computes its softmax in float32: ``Einsum`` (float16) -> ``Cast``
to float32 -> scale -> ``Softmax`` -> ``Cast`` back -> ``Einsum``. The two Casts join the step,
whose float16 inputs it then computes in float32, rounded once at the end (TF rounds the
scores and the probabilities to float16 too: the results differ by float16 roundings, as for
``half_region``'s other fused steps). The suite's mixed transformer block, one thread: batch 1
0.229 -> 0.169 ms, batch 8 0.566 -> 0.461 (2.2x and 1.7x its float32 twin's time, from 3.0x
and 2.1x).

The equations are read by their structure, not their letters: in ``q,k->scores`` the one
letter of q and k missing from the scores is the head width H, the one of q alone the query
positions T, of k alone the key positions S (the scores' last axis: tf_keras writes the keys
first, ``aecd,abcd->acbe``, and the operands are then taken the other way round), and the
letters of all three are batch axes; the second equation must contract S with v and keep T
and the batch axes.

A self-attention's q, k and v are often one product cut by a SplitV (``fuse_projections``)
and reshaped to heads: the split and the reshapes join the step, which then reads q, k and v
as views of the product (``packed``), and a Reshape merging the heads of its result too
(``merge``). The suite's transformer block at batch 1: 0.070 -> 0.065 ms with the kernel's
plain path decided once per shape (the BERT-style model 0.91x, GPT-2-style 0.99x).
"""

from __future__ import annotations

import math

from tfdeploy.compiler.patterns import (
    Dataflow,
    builtin,
    fused_step,
    plain_cast,
    replace,
    split_bounds,
    static_shape,
)
from tfdeploy.compiler.plan import Plan, Step


def _equation(st: Step) -> tuple[str, str, str] | None:
    eq = st.attrs.get("equation")
    if not isinstance(eq, str) or "." in eq or "->" not in eq:
        return None
    lhs, out = eq.replace(" ", "").split("->")
    ops = lhs.split(",")
    if len(ops) != 2 or len(st.ins) != 2 or any(len(set(o)) != len(o) for o in (*ops, out)):
        return None
    return ops[0], ops[1], out


def _roles(q: str, k: str, s: str):
    """(batch letters in s order, T, H, S) of ``q,k->s`` as attention scores, or None."""
    h = set(q) & set(k) - set(s)
    t = set(q) & set(s) - set(k)
    sk = set(k) & set(s) - set(q)
    batch = [c for c in s if c in q and c in k]
    if len(h) != 1 or len(t) != 1 or len(sk) != 1 or len(batch) + 2 != len(s) or \
            len(q) != len(batch) + 2 or len(k) != len(batch) + 2:
        return None
    (h,), (t,), (sk,) = h, t, sk
    if s[-1] != sk:  # softmax runs over the last axis: it must be the key positions
        return None
    return batch, t, h, sk


def _second(eq2, eq1, batch, t, sk):
    """(v's letters, the output's, H') of ``scores,v->out`` written with the letters of
    ``eq1`` (the scores operand is the same tensor as eq1's result, axis for axis), or
    (None, None, None) if it is not attention's second product."""
    s_in, v, out = eq2
    if len(s_in) != len(eq1[2]):
        return None, None, None
    m = dict(zip(s_in, eq1[2]))
    extra = [c for c in v if c not in m]
    if len(extra) != 1 or any(c not in m and c != extra[0] for c in out):
        return None, None, None
    hv = next(c for c in "HVWXYZhvwxyz" if c not in eq1[0] + eq1[1] + eq1[2])
    m[extra[0]] = hv
    v, out = "".join(m[c] for c in v), "".join(m[c] for c in out)
    if len(v) != len(batch) + 2 or set(v) != set(batch) | {sk, hv} or \
            len(out) != len(batch) + 2 or set(out) != set(batch) | {t, hv}:
        return None, None, None
    return v, out, hv


def _perm(src: str, dst: str) -> list[int]:
    return [src.index(c) for c in dst]


_LOW = ("float16", "bfloat16")


def _upcast(st: Step | None) -> str | None:
    """The float16/bfloat16 dtype ``st`` casts to float32 (mixed_float16 scores made float32
    for the softmax), or None."""
    for low in _LOW:
        if st is not None and plain_cast(st, low, "float32"):
            return low
    return None


def _middle(flow: Dataflow, qk: Step):
    """What follows the scores product ``qk`` up to the Softmax: (members after qk, the
    Softmax, attrs for scale and mask, mask inputs, the dtype the scores were cast from to
    float32 first or None), or None."""
    members, attrs, mask = [], {}, ()
    cur = flow.only_reader(qk.outs[0][1])
    low = _upcast(cur)
    if low is not None:
        members.append(cur)
        cur = flow.only_reader(cur.outs[0][1])
    if cur is not None and cur.op in ("Mul", "RealDiv") and len(cur.ins) == 2:
        prev = (members[-1] if members else qk).outs[0][1]
        other = cur.ins[1] if cur.ins[0] == prev else cur.ins[0]
        c = flow.const(other) if flow.scalar(other) is not None else None
        if c is not None and (cur.op == "Mul" or cur.ins[0] == prev):
            attrs["scale" if cur.op == "Mul" else "divisor"] = c.reshape(())
            members.append(cur)
            cur = flow.only_reader(cur.outs[0][1])
    prev = (members[-1] if members else qk).outs[0][1]
    if cur is not None and (flow.shape(prev) is None or
                            flow.shape(cur.outs[0][1]) != flow.shape(prev)):
        return None  # (a mask that broadcasts the scores to more elements: left alone)
    if cur is not None and cur.op in ("AddV2", "Add") and len(cur.ins) == 2:
        other = cur.ins[1] if cur.ins[0] == prev else cur.ins[0]
        if other != prev:
            mask = (other,)
            members.append(cur)
            cur = flow.only_reader(cur.outs[0][1])
    elif cur is not None and cur.op == "SelectV2" and len(cur.ins) == 3 and \
            cur.ins.count(prev) == 1 and cur.ins[0] != prev:
        fill = flow.scalar(cur.ins[2] if cur.ins[1] == prev else cur.ins[1])
        if fill is not None:  # Keras' causal and padding masks: where(mask, scores, -big)
            mask = (cur.ins[0],)
            attrs["masked_fill"], attrs["mask_keeps"] = fill, cur.ins[1] == prev
            members.append(cur)
            cur = flow.only_reader(cur.outs[0][1])
    if cur is None or cur.op != "Softmax":
        return None
    return members, cur, attrs, mask, low


def _second_product(flow: Dataflow, soft: Step, low: str | None):
    """(the step reading the probabilities, the Cast before it or None): with scores cast
    from ``low``, the probabilities must be cast back to it."""
    nxt = flow.only_reader(soft.outs[0][1])
    if low is None:
        return nxt, None
    if nxt is None or not plain_cast(nxt, "float32", low):
        return None, None
    return flow.only_reader(nxt.outs[0][1]), nxt


def _einsum_chain(flow: Dataflow, qk: Step):
    """(members, ins, attrs, out) of the attention starting at Einsum ``qk``, or None."""
    eq1 = _equation(qk)
    if eq1 is None:  # (also any Einsum of other than two operands)
        return None
    roles = _roles(*eq1)
    q_in, k_in = qk.ins
    if roles is None:  # (keys first: tf_keras' ``aecd,abcd->acbe``)
        eq1 = (eq1[1], eq1[0], eq1[2])
        roles = _roles(*eq1)
        q_in, k_in = k_in, q_in
    mid = _middle(flow, qk) if roles is not None else None
    if mid is None:
        return None
    batch, t, h, sk = roles
    rest, soft, attrs, mask, low = mid
    sv, down = _second_product(flow, soft, low)
    probs = (down or soft).outs[0][1]
    eq2 = _equation(sv) if sv is not None and sv.op == "Einsum" else None
    if eq2 is None or sv.ins[0] != probs:
        return None
    v, out, hv = _second(eq2, eq1, batch, t, sk)
    if v is None:
        return None
    b = "".join(batch)
    attrs.update(q_perm=_perm(eq1[0], b + t + h), k_perm=_perm(eq1[1], b + h + sk),
                 v_perm=_perm(v, b + sk + hv), out_perm=_perm(b + t + hv, out))
    return [qk, *rest, soft, *([down] if down else []), sv], \
        (q_in, k_in, sv.ins[1], *mask), attrs, sv.outs[0][1]


def _matmul_chain(flow: Dataflow, qk: Step):
    """(members, ins, attrs, out) of attention written with BatchMatMulV2:
    ``BatchMatMulV2(q, k, adj_y)`` ... ``Softmax`` ... ``BatchMatMulV2(p, v)``, or None."""
    a = qk.attrs
    if a.get("adj_x") or len(qk.ins) != 2:
        return None
    mid = _middle(flow, qk)
    if mid is None:
        return None
    rest, soft, attrs, mask, low = mid
    sv, down = _second_product(flow, soft, low)
    if sv is None or sv.op not in ("BatchMatMulV2", "BatchMatMul") or \
            sv.attrs.get("adj_x") or sv.attrs.get("adj_y") or \
            sv.ins[0] != (down or soft).outs[0][1]:
        return None
    ranks = [len(flow.shape(v) or ()) for v in (qk.ins[0], qk.ins[1], sv.ins[1])]
    if min(ranks) < 2:
        return None

    def ident(r):
        return list(range(r))

    def swap(r):
        return ident(r - 2) + [r - 1, r - 2]

    out_rank = len(flow.shape(sv.outs[0][1]) or ())
    attrs.update(q_perm=ident(ranks[0]), k_perm=swap(ranks[1]) if a.get("adj_y")
                 else ident(ranks[1]), v_perm=ident(ranks[2]), out_perm=ident(out_rank))
    return [qk, *rest, soft, *([down] if down else []), sv], \
        (qk.ins[0], qk.ins[1], sv.ins[1], *mask), attrs, sv.outs[0][1]


def run(plan: Plan, ctx=None) -> Plan:
    flow = Dataflow(plan)
    groups = []
    for st in plan.steps:
        if st.op == "Einsum" and builtin(st):
            found = _einsum_chain(flow, st)
        elif st.op in ("BatchMatMulV2", "BatchMatMul") and builtin(st):
            found = _matmul_chain(flow, st)
        else:
            continue
        if found is None:
            continue
        members, ins, attrs, out = found
        inside = {id(m) for m in members}
        if not all(builtin(m) for m in members) or not all(
                flow.internal(v, inside) for m in members for _, v in m.outs if v != out):
            continue
        groups.append((members, ins, attrs, out))
    for members, ins, attrs, out in groups:
        members, ins, out = _packed(flow, members, ins, attrs, out)
        replace(plan, members, fused_step("_Attention", members, ins, out, attrs))
    return plan


def _packed(flow: Dataflow, members: list[Step], ins: tuple, attrs: dict, out: int):
    """(members, ins, out) with the split of one product into q, k and v and their head
    reshapes taken in (``attrs["packed"]``: per role its [start, stop) along the product's
    last axis and its (heads, width)), and the heads merged after it (``attrs["merge"]``),
    where the attention has them: a self-attention's fused projection (``fuse_projections``)
    is then read through views by the kernel, four steps fewer."""
    parts = [_head_part(flow, v) for v in ins[:3]]
    if None not in parts and len({p[0] for p in parts}) == 1 and \
            len({p[1] for p in parts}) == 3 and len(parts[0][0].outs) == 3:
        sp = parts[0][0]
        bounds = split_bounds(flow, sp)
        shape = flow.shape(sp.ins[0])
        if bounds is not None and all(
                flow.shape(steps[0].outs[0][1]) == (*shape[:-1], *hd) and math.prod(hd) ==
                bounds[i][1] - bounds[i][0] for _, i, steps, hd, _ in parts):
            attrs["packed"] = [[*bounds[i], *hd] for _, i, _, hd, _ in parts]
            for role, (*_, scale) in zip("qkv", parts):
                if scale is not None:
                    attrs[f"{role}_scale"] = scale
            members = [sp, *(st for p in parts for st in p[2]), *members]
            ins = (sp.ins[0], *ins[3:])
    merge = flow.only_reader(out)
    shape = flow.shape(out)
    if merge is not None and merge.op == "Reshape" and builtin(merge) and \
            merge.ins[0] == out and static_shape(shape) and len(shape) >= 2 and \
            flow.shape(merge.outs[0][1]) == (*shape[:-2], shape[-2] * shape[-1]):
        attrs["merge"] = True
        members, out = [*members, merge], merge.outs[0][1]
    return members, ins, out


def _head_part(flow: Dataflow, v: int):
    """(the SplitV, its output index, [the Reshape, the Mul], the Reshape's last two dims, the
    Mul's scale) when ``v`` is a Reshape's result, read only by the attention, of a SplitV's
    output read only by it; or that result times a scalar constant (tf_keras scales its
    query so), the Mul then read only by the attention."""
    scale, steps = None, []
    m = flow.step(v, "Mul")
    if m is not None and len(m.ins) == 2 and flow.only_reader(v) is not None:
        for k in (0, 1):
            c = flow.const(m.ins[1 - k])
            if c is not None and c.size == 1 and flow.const(m.ins[k]) is None:
                scale, steps, v = c.reshape(()), [m], m.ins[k]
                break
    r = flow.step(v, "Reshape")
    if r is None or flow.only_reader(v) is None or flow.only_reader(r.ins[0]) is not r:
        return None
    src = flow.producer.get(r.ins[0])
    shape = flow.shape(v)
    if src is None or src[0].op != "SplitV" or not builtin(src[0]) or not static_shape(shape) or \
            len(shape) < 2 or (scale is not None and flow.shape(steps[0].outs[0][1]) != shape):
        return None
    return src[0], src[1], [r, *steps], tuple(shape[-2:]), scale
