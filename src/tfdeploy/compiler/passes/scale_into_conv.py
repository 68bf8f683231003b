"""scale_into_conv: a run-time ``Mul`` feeding a fused 1x1 convolution becomes part of it.

A squeeze-excite block (EfficientNet, MobileNetV3, RegNetY...) ends with ``Mul(x, s)`` — the
feature map times a per-image channel scale [N, 1, 1, C] computed from it — then a 1x1
projection conv. The Mul alone is a full pass over the map and a full-size array. When its
product has one reader, a ``_FusedChain`` whose core is a unit-stride 1x1 NHWC ``Conv2D``, the
chain takes the Mul's two operands instead (``scaled``): its kernel folds the scale into each
image's weights, or multiplies into a scratch buffer, whichever is less work
(``conv._Runner.scaled``). Shapes are only known at run time: operands of other shapes (a scale
that is not [N, 1, 1, C]) run the Mul and the chain unfused, as the step's fallback. Matched by
op type after ``fuse_conv``, only where Mul runs tfdeploy's own kernel.
"""

from __future__ import annotations

from tfdeploy import registry
from tfdeploy.compiler.passes.fuse_conv import pointwise_conv
from tfdeploy.compiler.plan import Plan, Step


def _pointwise_chain(st: Step) -> bool:
    """``st`` is a fused chain on a unit-stride 1x1 NHWC Conv2D (not already scaled, and
    without a prologue: its input is the prologue's)."""
    if st.op != "_FusedChain" or st.attrs.get("core") != "Conv2D" or st.attrs.get("scaled") or \
            st.attrs.get("prologue"):
        return False
    return pointwise_conv(st.attrs.get("core_attrs", {}), st.attrs.get("weight")) and \
        st.attrs.get("channels", 0) > 0


def run(plan: Plan, ctx=None) -> Plan:
    """The plan with each such Mul taken into the chain reading it."""
    steps, constants = plan.steps, plan.constants
    pinned = set(plan.fetch_values) | set(plan.feed_values)
    readers: dict[int, list[int]] = {}
    for k, st in enumerate(steps):
        for v in st.ins:
            readers.setdefault(v, []).append(k)
    drop: set[int] = set()
    for k, st in enumerate(steps):
        if st.op != "Mul" or len(st.ins) != 2 or len(st.outs) != 1 or st.outs[0][0] != 0 or \
                any(v in constants for v in st.ins) or not registry.runs_builtin("Mul"):
            continue
        out = st.outs[0][1]
        r = readers.get(out, ())
        if out in pinned or len(r) != 1 or not _pointwise_chain(steps[r[0]]):
            continue
        chain = steps[r[0]]
        if chain.ins[0] != out or out in chain.ins[1:]:
            continue
        label = "+".join(m.op for m in (st, *chain.members))
        attrs = {**chain.attrs, "scaled": True,
                 "_label": f"{label} ({st.name} .. {chain.members[-1].name})"}
        steps[r[0]] = Step("_FusedChain", st.name, (*st.ins, *chain.ins[1:]), chain.outs, attrs,
                           members=(st, *chain.members))
        drop.add(k)
    if drop:
        plan.steps = [st for k, st in enumerate(steps) if k not in drop]
    return plan
