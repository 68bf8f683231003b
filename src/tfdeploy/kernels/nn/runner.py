"""The conv kernels the fused chains drive (``conv_runner``): the built-in Conv2D, Conv3D and
DepthwiseConv2dNative kernels with their filter (and a bias) bound, the geometry worked out
once per input shape, and two extras the fusion passes use: a per-channel bias added inside the
matmul where that is cheaper, a squeeze-excite scale folded into a 1x1 conv (``scaled``), and a
prologue of elementwise ops applied to the input block by block (a pre-activation BatchNorm and
ReLU). One implementation: the work is done by ``conv.py`` and ``depthwise.py``'s functions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfdeploy.kernels.common import all_finite, low_precision, specializer
from tfdeploy.kernels.nn import depthwise, winograd
from tfdeploy.kernels.nn.conv import (
    _conv,
    _depthwise,
    _gemm_rows,
    _geometry,
    _spatial,
    _spatial_attr,
    conv_nd,
    depthwise_groups,
    explicit_pairs,
    gemm_rows,
    trim_key,
    trim_taps,
)
from tfdeploy.kernels.nn.depthwise import Epilogue, depthwise_2d
from tfdeploy.kernels.nn.scratch import output, scratch
from tfdeploy.runtime import parallel
from tfdeploy.runtime.constants import ONE_RUN, derived

#: the largest weight (with its bias row) a 1x1 conv keeps a second copy of, to add its bias
#: in the matmul: an expansion conv's bias pass costs more than copying its narrower input
_AUGMENT_BYTES = 1 << 20


def conv_runner(op_type: str, attrs: dict, filter: np.ndarray, bias: np.ndarray | None = None,
                prologue: Prologue | None = None):
    """The built-in kernel of ``op_type`` (Conv2D, Conv3D, DepthwiseConv2dNative) with its
    attributes and constant ``filter`` bound, as ``run(input, epilogue=None)``: the kernel
    the fused chains drive (one implementation, two entry points). ``epilogue(y, start,
    stop)`` (channels-last only) runs on rows ``start:stop`` of the output ``y.reshape(-1, C)``
    as soon as each block is computed. ``bias`` (channels-last only): a per-channel vector
    added to the convolution, in the matmul itself where that is cheaper. ``prologue(src,
    dst)`` (channels-last only): elementwise ops applied to the input first, a block of rows
    ``x.reshape(-1, C)`` at a time into a buffer (the input is never written); a unit-stride
    1x1 convolution applies it to each block it multiplies, while in cache. None for another
    op."""
    if op_type not in ("Conv2D", "Conv3D", "DepthwiseConv2dNative"):
        return None
    return _Runner(op_type, attrs, filter, bias, prologue)


def _constant_filter(op_type: str, consts, attrs: dict):
    """A lone convolution by a constant float filter (no chain took it: its result has
    several readers, or nothing follows to fuse) runs the chains' kernel too: its geometry
    worked out once per input shape, Winograd for the 3x3 layers that pay (DenseNet121's
    growth convolutions, 128 -> 32 channels: 2.95 -> 2.44 ms at 56 x 56), the depthwise
    filter's tiled forms kept. Other inputs (NCHW, float16, a wrong depth...) take the op's
    own kernel through the runner's generic path, with its errors."""
    x, f = consts
    if f is None or x is not None or f.ndim != 4 or f.dtype not in _FLOATS:
        return None
    run = _Runner(op_type, attrs, f, one_run=ONE_RUN.get())
    return lambda input: run(input)


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _constant_specializer(op_type: str):
    def spec(consts, *, strides, padding, explicit_paddings=(), data_format="NHWC",
             dilations=(1, 1, 1, 1)):
        return _constant_filter(op_type, consts, {
            "strides": strides, "padding": padding, "explicit_paddings": explicit_paddings,
            "data_format": data_format, "dilations": dilations})
    spec.__name__ = spec.__qualname__ = f"_{op_type}_constant_filter"
    return spec


for _op in ("Conv2D", "DepthwiseConv2dNative"):
    specializer(_op)(_constant_specializer(_op))


#: a prologue runs on blocks of input rows of about this many bytes (in cache between its ops
#: and the product reading the block)
_PROLOGUE_BYTES = 1 << 19

#: ``prologue(src, dst)``: the ops applied to rows ``src`` of the input, written to ``dst``
Prologue = Callable[[np.ndarray, np.ndarray], object]


def _biased(epilogue: Epilogue | None, bias: np.ndarray, tiled=None) -> Epilogue:
    """``epilogue`` preceded by adding ``bias`` to the same rows. ``tiled``: the bias repeated
    over a whole output row of pixels, added to blocks of whole rows as one contiguous run per
    row (0.08-0.17 against 0.15-0.25 ns a value for the channel-wise broadcast)."""
    def run(y, start, stop):
        c = y.shape[-1]
        flat = y.reshape(-1)[start * c:stop * c]
        if tiled is not None and flat.size % tiled.size == 0:
            rows = flat.reshape(-1, tiled.size)
            np.add(rows, tiled, out=rows)
        else:
            rows = flat.reshape(-1, c)
            np.add(rows, bias, out=rows)
        if epilogue is not None:
            epilogue(y, start, stop)
    return run


def _augmented(filter: np.ndarray, bias) -> np.ndarray | None:
    """[[W], [bias]] for a 1x1 conv whose bias is cheaper inside the matmul (a ones column
    appended to the input) than as a pass over the output: fewer input than output channels
    (expansions), and a weight small enough to keep twice. None otherwise."""
    if bias is None or filter.shape[:2] != (1, 1) or filter.ndim != 4:
        return None
    c, co = filter.shape[2:]
    if c + 1 >= co or (c + 1) * co * filter.itemsize > _AUGMENT_BYTES:
        return None
    w = np.concatenate([filter.reshape(c, co), bias.reshape(1, co).astype(filter.dtype)])
    w.setflags(write=False)
    return w


class _Runner:
    """:func:`conv_runner`'s kernel. Per input shape and dtype it works out the geometry once
    (a memo of a pure function of the shape, so threads may share it): the attribute parsing
    and checks cost ~20 us a call, as much as a small layer's arithmetic."""

    __slots__ = ("op", "filter", "bias", "augmented", "args", "memo", "tiles", "wino",
                 "prologue", "one_run")

    def __init__(self, op_type: str, attrs: dict, filter: np.ndarray, bias=None,
                 prologue: Prologue | None = None, one_run: bool = False):
        a = dict(attrs)
        default = "NDHWC" if op_type == "Conv3D" else "NHWC"
        self.op, self.filter, self.bias, self.prologue = op_type, filter, bias, prologue
        self.args = (a["strides"], a["padding"], a.get("explicit_paddings", ()),
                     a.get("data_format", default),
                     a.get("dilations", (1,) * (5 if op_type == "Conv3D" else 4)))
        if (bias is not None or prologue is not None) and _spatial(self.args[3])[0]:
            raise ValueError("a conv runner's bias or prologue needs a channels-last format")
        # what a constant filter's runners derive from it is kept with the filter, shared by
        # every plan of the model (one per input shape: ``runtime.constants.derived``)
        self.augmented = None if op_type != "Conv2D" or bias is None else derived(
            filter, ("augmented", bias.dtype.str, bias.tobytes()),
            lambda: _augmented(filter, bias))
        self.memo: dict = {}
        # the depthwise filter tiled per output width (a memo too)
        self.tiles: dict = derived(filter, "tiles", dict)
        self.wino = None  # the filter's Winograd transform, made when a shape first takes it
        #: the runner of a plan that runs once (a shape's trace): no Winograd transform, whose
        #: cost (ResNet50: 54 ms for its 16 3x3 layers) pays only over many calls
        self.one_run = one_run

    def __call__(self, x, epilogue: Epilogue | None = None):
        run = self.memo.get((x.shape, x.dtype))
        if run is None:
            run = self._prepare(x)
            if len(self.memo) > 16:
                self.memo.clear()
            self.memo[(x.shape, x.dtype)] = run
        return run(x, epilogue)

    def scaled(self, a, b, epilogue: Epilogue | None = None):
        """The convolution of ``a * b`` where one operand is a feature map [N, H, W, C] and the
        other a per-image channel scale [N, 1, 1, C] (squeeze-excite), for a unit-stride 1x1
        NHWC conv; None when the operands are not so (the caller then runs the product).

        The scale goes into the weights (C x O values per image) when that is less work than
        scaling the map (H x W x C), else the product goes to a scratch buffer: either way no
        full-size temporary array."""
        w = self.filter
        strides, padding, explicit, fmt, dilations = self.args
        if self.prologue is not None or \
                self.op != "Conv2D" or fmt != "NHWC" or w.shape[:2] != (1, 1) or a.ndim != 4 or \
                b.ndim != 4 or a.dtype != w.dtype or b.dtype != w.dtype or \
                list(strides) != [1, 1, 1, 1] or list(dilations) != [1, 1, 1, 1] or \
                padding not in ("SAME", "VALID") or low_precision(w.dtype):
            return None
        f, s = a, b
        if s.shape != (f.shape[0], 1, 1, f.shape[3]):
            f, s = b, a
            if s.shape != (f.shape[0], 1, 1, f.shape[3]):
                return None
        n, h, wd, c = f.shape
        if c != w.shape[2]:
            return None
        co = w.shape[3]
        if co >= h * wd or n == 0:
            fs = scratch("conv_scaled", f.size, f.dtype).reshape(f.shape)
            np.multiply(f, s, out=fs)
            return self(fs, epilogue)
        if self.bias is not None:
            epilogue = _biased(epilogue, self.bias)
        out = output((n, h, wd, co), w.dtype)
        wm = w.reshape(1, c, co)
        ws = np.multiply(wm, s.reshape(n, c, 1))  # [N, C, O]: each image's own weights
        rows = h * wd
        fm = f.reshape(n * rows, c) if f.flags.c_contiguous else \
            np.ascontiguousarray(f).reshape(n * rows, c)
        om = out.reshape(n * rows, co)

        def part(a: int, b: int) -> None:  # rows a:b of all images' pixels
            for i in range(a // rows, (b - 1) // rows + 1):
                lo, hi = max(a, i * rows), min(b, (i + 1) * rows)
                np.matmul(fm[lo:hi], ws[i], out=om[lo:hi])
            if epilogue is not None:
                epilogue(out, a, b)

        parts = parallel.blocks(n * rows, c * co, matmul=True)
        if parts > 1:
            parallel.run_blocks(part, n * rows, parts)
        else:
            part(0, n * rows)
        return out

    def _generic(self, x, epilogue):
        if self.bias is not None:
            epilogue = _biased(epilogue, self.bias)
        if self.op == "DepthwiseConv2dNative":
            return _depthwise(x, self.filter, *self.args, epilogue, self.tiles)
        strides, padding, explicit, fmt, dilations = self.args
        if self.op == "Conv3D":
            explicit = ()
        return _conv(x, self.filter, strides, padding, explicit, fmt, dilations, epilogue)

    def _prepare(self, x):
        """The call for inputs like ``x``: the generic kernel, or with the geometry bound; a
        prologue is applied by the unit-stride 1x1 path to each block, else to a copy of the
        whole input first."""
        run = self._choose(x)
        pro = self.prologue
        if pro is None or getattr(run, "prologue", False):
            return run

        def prologued(x, epilogue):
            if x.ndim < 1 or x.size == 0:
                return run(x, epilogue)  # (the kernel's own result or error)
            y = np.empty(x.shape, x.dtype)  # (the input is never written)
            src, dst = np.ascontiguousarray(x).reshape(-1, x.shape[-1]), y.reshape(-1, x.shape[-1])
            step = max(1, _PROLOGUE_BYTES // max(dst.shape[1] * y.itemsize, 1))
            for i in range(0, dst.shape[0], step):
                pro(src[i:i + step], dst[i:i + step])
            return run(y, epilogue)
        return prologued

    def _winograd(self, w):
        """The filter's Winograd transform, made once and kept with it (two threads may both
        make it: the same values)."""
        if self.wino is None:
            self.wino = derived(w, "winograd", lambda: winograd.weights(w))
        return self.wino

    def _winograd_pays(self, x, w, st, dl, pads, outs) -> bool:
        """For a convolution in Winograd's measured band (``winograd.borderline``): whether it
        is faster than im2col here, timed once per shape on this first input."""
        key = (x.shape, w.shape[2:], x.dtype.str, tuple(map(tuple, pads)))
        made: list = []  # (the transform, made only to be timed: kept only if it pays)

        def wino():
            if not made:
                made.append(self.wino if self.wino is not None else winograd.weights(w))
            return winograd.conv3x3(x, made[0], pads, outs)

        if not winograd.pays(key, wino, lambda: conv_nd(x, w, st, dl, pads, outs)):
            return False
        if self.wino is None and made:
            self.wino = derived(w, "winograd", lambda: made[0])
        return True

    def _choose(self, x):
        """The call for inputs like ``x`` (without the prologue)."""
        strides, padding, explicit, fmt, dilations = self.args
        w = self.filter
        if self.op == "Conv3D" or fmt != "NHWC" or x.ndim != 4 or w.ndim != 4 or \
                x.dtype != w.dtype or low_precision(x.dtype):
            return self._generic
        st = _spatial_attr(strides, fmt, "strides")
        dl = _spatial_attr(dilations, fmt, "dilations")
        pairs = explicit_pairs(explicit, fmt) if padding == "EXPLICIT" else None
        outs, pads = _geometry(x.shape[1:3], w.shape[:2], st, dl, padding, pairs)
        tiles, cut = self.tiles, trim_taps(x.shape[1:3], w.shape[:2], st, dl, pads, outs)
        if cut is not None and derived(w, "finite", lambda: all_finite(w)):
            # taps that read only padding left out, once per shape: the cut filter's tiles
            # kept apart, and no Winograd transform (the runner keeps one, the whole filter's)
            w, pads, tiles = np.ascontiguousarray(w[cut[0]]), cut[1], tiles.setdefault(
                trim_key(cut[0]), {})
        grouped = self.op == "Conv2D" and depthwise_groups(w.shape, x.shape[-1])
        if self.op == "DepthwiseConv2dNative" or grouped:
            bias = self.bias
            if grouped:  # (Conv2D(groups=C): [KH, KW, 1, O] -> [KH, KW, C, O/C])
                w = w.reshape(*w.shape[:2], x.shape[-1], w.shape[3] // x.shape[-1])
                tiles = tiles.setdefault(("groups", x.shape[-1]), {})  # (per depth C)
            elif x.shape[-1] != w.shape[2]:
                return self._generic  # (its error)
            clip = getattr(self.prologue, "clip", None)  # (applied as the input is copied)
            run = _depthwise_run(x.shape, w, st, dl, pads, outs, bias, tiles, clip)
            run.prologue = clip is not None
            return run
        if w.shape[:2] == (1, 1) and x.shape[-1] == w.shape[2] and st == [1, 1] and \
                not any(lo or hi for lo, hi in pads) and x.flags.c_contiguous and \
                list(x.shape[1:3]) == outs:  # (a stride past the input is 1 here, outs 1)
            return _pointwise_run(x.shape, w, outs, self.bias, self.augmented,
                                  None if self.bias is None else np.tile(self.bias, outs[1]),
                                  self.prologue)
        geom = (x.shape, w.shape, x.dtype, st, dl, pads)
        whole = not self.one_run and w is self.filter
        fits = whole and winograd.applies(*geom)
        band = whole and not fits and winograd.borderline(*geom)
        # (an inf weight: its transform would make NaN too; the band's convolutions measured)
        if (fits or band) and all_finite(w) and (
                fits or self._winograd_pays(x, w, st, dl, pads, outs)):
            u = self._winograd(w)

            def conv(x, ep):
                # Winograd sums differences of inputs: an inf would meet itself with the other
                # sign and give NaN where the convolution is +-inf. An input holding inf or
                # NaN goes by im2col, as TF computes it (the check: 0.02 ms on a 2.1 ms layer)
                if all_finite(x):
                    return winograd.conv3x3(x, u, pads, outs, ep)
                return conv_nd(x, w, st, dl, pads, outs, ep)
        else:
            def conv(x, ep):
                return conv_nd(x, w, st, dl, pads, outs, ep)
        if self.bias is None:
            return conv
        bias, tb = self.bias, np.tile(self.bias, outs[1])
        return lambda x, ep: conv(x, _biased(ep, bias, tb))


def _depthwise_run(shape, w, st, dl, pads, outs, bias, tiles, clip):
    """A depthwise convolution of inputs of ``shape`` by ``w`` [KH, KW, C, M]: its layout
    (``depthwise.layout``) made once per thread split and kept, so that a call is the copy
    and the einsums (a channel multiplier repeats the input first: ``depthwise_2d``)."""
    if bias is None:
        def biased(ep):
            return ep
    else:
        tb = np.tile(bias, outs[1])
        plain = _biased(None, bias, tb)

        def biased(ep):
            return plain if ep is None else _biased(ep, bias, tb)
    if w.shape[3] != 1:
        def run(x, ep):
            return depthwise_2d(x, w, st, dl, pads, *outs, biased(ep), tiles, clip)
        return run
    needs = depthwise.needs_finite(w.shape, st, dl)
    layouts: dict = {}

    def run(x, ep):
        if not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        key = (depthwise.split(shape, w.shape, *outs), not needs or all_finite(x))
        lay = layouts.get(key)
        if lay is None:
            lay = layouts[key] = depthwise.layout(shape, w, st, dl, pads, *outs, tiles, clip,
                                                  *key)
        return lay(x, biased(ep))
    return run


def _pointwise_run(shape, w, outs, bias, augmented, tiled, prologue=None):
    """A unit-stride 1x1 convolution of inputs of ``shape``: matmuls on the input itself, or
    with the bias in the matmul (``augmented``: the input copied with a ones column); with a
    ``prologue``, on each block of input rows copied and transformed by it."""
    n, c, co = shape[0], shape[-1], w.shape[-1]
    wm, oshape = w.reshape(c, co), (n, *outs, co)
    m = n * outs[0] * outs[1]
    step = max(1, _gemm_rows(m, c, co, w.itemsize))
    if prologue is not None:  # (the input block stays in cache through the prologue too)
        step = min(step, max(64, _PROLOGUE_BYTES // (c * w.itemsize)))

    def ones(rows: int):  # (a scratch block of rows with the ones column set)
        buf = scratch("conv_ones", rows * (c + 1), wm.dtype).reshape(rows, c + 1)
        buf[:, c] = 1
        return buf

    def fill(xa, xm, r: int, e: int):  # (input rows r:e into xa, through the prologue)
        if prologue is None:
            xa[:, :c] = xm[r:e]
        else:
            prologue(xm[r:e], xa[:, :c])
        return xa

    def run(x, epilogue):
        out = output(oshape, wm.dtype)
        if not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        xm, ym = x.reshape(m, c), out.reshape(m, co)
        if augmented is not None:
            def part(a: int, b: int) -> None:
                # in blocks of ``step`` rows: the copy, product and epilogue of one block run
                # while it is in cache (in one piece, MobileNetV2's 112 x 112 expansion at
                # batch 8 wrote and clipped 38 MB through memory)
                buf = ones(min(b - a, step))
                for r in range(a, b, len(buf)):
                    e = min(b, r + len(buf))
                    np.matmul(fill(buf[:e - r], xm, r, e), augmented, out=ym[r:e])
                    if epilogue is not None:
                        epilogue(out, r, e)

            parts = parallel.blocks(m, (c + 1) * co, matmul=True)
            if parts > 1 and parallel.by_columns(m, co, parts):
                parallel.matmul_columns(fill(ones(m), xm, 0, m), augmented, ym, parts,
                                        None if epilogue is None
                                        else lambda a, b: epilogue(out, a, b))
            elif parts > 1:
                parallel.run_blocks(part, m, parts)
            else:
                part(0, m)
            return out
        if bias is not None:
            epilogue = _biased(epilogue, bias, tiled)
        gemm_rows(xm, wm, ym, out, m if epilogue is None and prologue is None else step,
                  epilogue, prologue)
        return out
    run.prologue = prologue is not None
    return run
