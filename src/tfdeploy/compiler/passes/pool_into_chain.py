"""pool_into_chain: a convolution chain and the pool after it as one ``_FusedChain`` step.

A classic CNN pools each convolution block's output: ``Conv2D -> BatchNorm -> ReLU ->
MaxPooling2D``, Keras' ``Conv1D -> MaxPooling1D`` (a Squeeze and an ExpandDims between them)
and ``TimeDistributed`` ones (two Reshapes). Unfused, the chain writes its full-size output and
the pool reads it back: at batch 32 a 62 x 62 x 16 map per frame of a TimeDistributed CNN is
63 MB each way, more than the arithmetic costs. Fused, the chain runs on groups of images whose
output stays in cache, each pooled right away (``kernels/nn/fused.py``, ``_PooledChain``).

Taken: a ``_FusedChain`` of a channels-last Conv2D or DepthwiseConv2dNative core with one input
(no residual, no squeeze-excite scale, not a float16 chain), whose output flows, through
Reshape/Squeeze/ExpandDims steps that give it back its own shape (each the value's only
reader), into a MaxPool or AvgPool of NHWC data whose window and stride along the batch are 1
(so images pool independently). The fused step keeps every step it replaces as its fallback.
"""

from __future__ import annotations

from tfdeploy.compiler.patterns import Dataflow, builtin, fused_step, replace
from tfdeploy.compiler.plan import Plan, Step

_MOVES = ("Reshape", "Squeeze", "ExpandDims")
_POOLS = ("MaxPool", "AvgPool")
_CORES = ("Conv2D", "DepthwiseConv2dNative")


def _chain(st: Step) -> bool:
    a = st.attrs
    return st.op == "_FusedChain" and a.get("core") in _CORES and len(st.ins) == 1 and \
        a.get("channels", 0) > 0 and not a.get("scaled") and a.get("dtype") is None and \
        a.get("pool") is None and a.get("core_attrs", {}).get("data_format", "NHWC") == "NHWC"


def _pool(st: Step | None, v: int) -> bool:
    if st is None or st.op not in _POOLS or not builtin(st) or list(st.ins) != [v]:
        return False
    a = st.attrs
    ks, ss = list(a.get("ksize", ())), list(a.get("strides", ()))
    return a.get("data_format", "NHWC") == "NHWC" and len(ks) == 4 and len(ss) == 4 and \
        ks[0] == 1 and ss[0] == 1


def _pooled(st: Step, flow: Dataflow) -> tuple[list[Step], Step] | None:
    """(the moves between, the pool) after chain ``st``, or None."""
    v = st.outs[0][1]
    shape = flow.shape(v)
    if shape is None or len(shape) != 4:
        return None
    w, moves = v, []
    nxt = flow.only_reader(w)
    while nxt is not None and nxt.op in _MOVES and nxt.ins[0] == w and builtin(nxt):
        moves.append(nxt)
        w = nxt.outs[0][1]
        nxt = flow.only_reader(w)
    if moves and flow.shape(w) != shape or not _pool(nxt, w):
        return None
    return moves, nxt


def run(plan: Plan, ctx=None) -> Plan:
    if not plan.shapes:
        return plan
    flow = Dataflow(plan)
    found = []
    for st in plan.steps:
        if _chain(st):
            p = _pooled(st, flow)
            if p is not None:
                found.append((st, *p))
    for st, moves, pool in found:
        attrs = {k: v for k, v in pool.attrs.items() if k not in ("T", "_class")}
        fused = fused_step("_FusedChain", [*st.members, *moves, pool], st.ins,
                           pool.outs[0][1], {**st.attrs, "pool": {"op": pool.op, **attrs}})
        replace(plan, [st, *moves, pool], fused)
    return plan
