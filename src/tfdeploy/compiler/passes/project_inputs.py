"""project_inputs: a fused RNN cell's input projection computed for every time step at once.

In a loop body, a fused cell (``_LSTMCell``, ``_GRUCell``, ``_SimpleRNNCell``, from
``fuse_rnn``) whose input is element t of a list the loop never changes
(``TensorListGetItem(L, t)`` of an invariant feed, as in every Keras RNN: L is the input
sequence) multiplies that element by its input kernel at every step, one small matrix product
each. This pass gives the cell a ``_CellInputs(L)`` step instead: every element times the
kernel, plus the bias, as one matrix product, laid out as the cell computes
(``kernels/nn/rnn.py``); the cell reads row t of it. That step reads invariants only, so
``licm`` moves it out of the loop: it runs once per loop.

The cell keeps the TensorListGetItem as the first of its members: its fallback (another dtype,
a list the projection does not take) reads element t as before.
"""

from __future__ import annotations

from tfdeploy import registry
from tfdeploy.compiler.plan import Plan, Step

CELLS = ("_LSTMCell", "_GRUCell", "_SimpleRNNCell")


def run(plan: Plan, ctx=None) -> Plan:
    """The plan with each cell reading an invariant list's element t fed its projection."""
    if not plan.invariant_feeds:
        return plan
    producer = {v: k for k, st in enumerate(plan.steps) for _, v in st.outs}
    readers: dict[int, int] = {}
    for st in plan.steps:
        for v in st.ins:
            readers[v] = readers.get(v, 0) + 1
    fetched = set(plan.fetch_values)
    replace: dict[int, list[Step]] = {}
    for k, st in enumerate(plan.steps):
        if st.op not in CELLS or st.attrs.get("projected"):
            continue
        x = st.ins[0]
        j = producer.get(x)
        get = plan.steps[j] if j is not None else None
        if get is None or get.op != "TensorListGetItem" or len(get.ins) != 3 or \
                not registry.runs_builtin(get.op) or get.ins[0] not in plan.invariant_feeds or \
                readers.get(x) != 1 or x in fetched:
            continue
        lst, t = get.ins[0], get.ins[1]
        attrs = {a: v for a, v in st.attrs.items() if not a.startswith("_")}
        p = plan.new_value()
        plan.refs[p] = f"{get.name}:projected"
        proj = Step("_CellInputs", get.name, (lst,), ((0, p),), {"cell": st.op, **attrs})
        cell = Step(st.op, st.name, (p, lst, t, *st.ins[1:]), st.outs,
                    {**st.attrs, "projected": True}, members=(get, *st.members))
        replace[j] = []
        replace[k] = [proj, cell]
    if replace:
        plan.steps = [s for k, st in enumerate(plan.steps) for s in replace.get(k, [st])]
    return plan
