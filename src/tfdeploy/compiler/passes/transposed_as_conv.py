"""transposed_as_conv: a unit-stride transposed convolution as the convolution it is.

``Conv2DBackpropInput`` with unit strides (Keras' ``Conv2DTranspose`` with ``strides=1``, as
the keras.io U-Net and many decoders use it) computes ``dx[q] = sum_j dy[q + lo - j] w[j]``:
the correlation of ``dy``, padded by ``k - 1 - lo`` before and ``k - 1 - hi`` after, with the
filter flipped along its spatial axes and its channel axes swapped. As a ``Conv2D`` with those
EXPLICIT pads it runs the forward convolution's kernels: the bias, batch norm and activation
after it fuse block by block while the block is in cache (a transposed core applies them to
the whole output after), and Winograd takes the 3x3 layers wide enough to pay.

Here (a plan specialized to its input's shape, ``input_sizes`` a constant) the filter must be
a constant float array, the layout NHWC, the strides and dilations 1, each forward pad at most
``k - 1`` (the transposed pads are then >= 0), and ``dy`` of the shape the sizes imply (else
the op stays, with its own error); both ops run tfdeploy's own kernels.
"""

from __future__ import annotations

import numpy as np

from tfdeploy import registry
from tfdeploy.compiler.patterns import builtin, const_ints, unit_stride_nhwc, unit_stride_pads
from tfdeploy.compiler.plan import Plan, Step


def _rewritten(plan: Plan, st: Step) -> Step | None:
    """The Conv2D computing Conv2DBackpropInput step ``st``, or None."""
    a = st.attrs
    if len(st.ins) != 3 or len(st.outs) != 1 or st.outs[0][0] != 0 or \
            not unit_stride_nhwc(a):
        return None
    sizes, filt, dy = st.ins
    w = plan.constants.get(filt)
    shape = const_ints(plan, sizes, (4,))
    dys = plan.shapes.get(dy)
    if not isinstance(w, np.ndarray) or w.ndim != 4 or w.size == 0 or \
            w.dtype not in (np.float32, np.float64) or shape is None or dys is None or \
            len(dys) != 4 or dy in plan.constants:
        return None
    ks = w.shape[:2]
    pads = unit_stride_pads(a, ks)
    if pads is None or shape[3] != w.shape[2] or dys[3] != w.shape[3] or dys[0] != shape[0]:
        return None
    new_pads = []
    for d, k, (lo, hi), o in zip(shape[1:3], ks, pads, dys[1:3]):
        if min(lo, hi) < 0 or max(lo, hi) > k - 1 or o != d + lo + hi - k + 1:
            return None
        new_pads += [k - 1 - lo, k - 1 - hi]
    flipped = plan.new_value()
    plan.constants[flipped] = np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))
    attrs = {"T": a.get("T", str(w.dtype)), "strides": [1, 1, 1, 1], "padding": "EXPLICIT",
             "explicit_paddings": [0, 0, *new_pads, 0, 0], "data_format": "NHWC",
             "dilations": [1, 1, 1, 1], "use_cudnn_on_gpu": a.get("use_cudnn_on_gpu", True)}
    return Step("Conv2D", st.name, (dy, flipped), st.outs, attrs)


def run(plan: Plan, ctx=None) -> Plan:
    """The plan with each unit-stride transposed convolution as a convolution."""
    if not registry.runs_builtin("Conv2D"):
        return plan
    for k, st in enumerate(plan.steps):
        if st.op == "Conv2DBackpropInput" and builtin(st):
            new = _rewritten(plan, st)
            if new is not None:
                plan.steps[k] = new
    return plan
