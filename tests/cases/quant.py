"""Quantization ops: FakeQuant*, QuantizeV2/Dequantize, QuantizeAndDequantizeV2/V3/V4."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from . import Case, adder

CASES: list[Case] = []
add = adder(CASES, "quant")
raw = tf.raw_ops


#: TF with oneDNN rewrites QuantizeV2/Dequantize nodes (some modes and types, depending on the
#: oneDNN build and CPU) to _MklQuantizeV2/_MklDequantize, whose rounding departs from the
#: reference kernels tfdeploy follows: every QuantizeV2 case compares with TF without oneDNN
ONEDNN_QUANT = ("rewrites some QuantizeV2/Dequantize nodes (MIN_FIRST and SCALED modes) to "
                "_MklQuantizeV2/_MklDequantize, whose rounding and ranges depart from TF's "
                "reference kernels, which tfdeploy follows")


def values(shape, low=-8.0, high=8.0, dtype="float32"):
    """Random values plus points on and near quantization grid boundaries."""
    def gen(rng):
        x = rng.uniform(low, high, size=shape)
        flat = x.reshape(-1)
        k = min(flat.size // 3, 12)
        flat[:k] = np.round(flat[:k] * 4) / 4  # exact quarter steps
        return x.astype(dtype)
    return gen


def inputs(*gens):
    def make(rng):
        return [g(rng) if callable(g) else np.asarray(g) for g in gens]
    return make


# -- FakeQuant ------------------------------------------------------------------------------

for _lo, _hi in ((-6.0, 6.0), (-1.0, 3.5), (0.5, 2.0), (-3.0, -0.25), (0.0, 1.0)):
    for _bits in (2, 4, 8, 16):
        for _narrow in (False, True):
            _id = f"{_lo}_{_hi}_b{_bits}{'_narrow' if _narrow else ''}"
            add(f"FakeQuantWithMinMaxArgs_{_id}", ["FakeQuantWithMinMaxArgs"],
                lambda x, _lo=_lo, _hi=_hi, _b=_bits, _n=_narrow:
                    raw.FakeQuantWithMinMaxArgs(inputs=x, min=_lo, max=_hi, num_bits=_b,
                                                narrow_range=_n),
                inputs(values((5, 7))), dynamic=_bits == 8 and not _narrow)
            add(f"FakeQuantWithMinMaxVars_{_id}", ["FakeQuantWithMinMaxVars"],
                lambda x, lo, hi, _b=_bits, _n=_narrow:
                    raw.FakeQuantWithMinMaxVars(inputs=x, min=lo, max=hi, num_bits=_b,
                                                narrow_range=_n),
                inputs(values((4, 6)), np.float32(_lo), np.float32(_hi)),
                dynamic=_bits == 4 and _narrow)
add("FakeQuantWithMinMaxVars_zero_range", ["FakeQuantWithMinMaxVars"],
    lambda x, lo, hi: raw.FakeQuantWithMinMaxVars(inputs=x, min=lo, max=hi),
    inputs(values((3, 3)), np.float32(0), np.float32(0)))
add("FakeQuantWithMinMaxArgs_public", ["FakeQuantWithMinMaxArgs"],
    lambda x: tf.quantization.fake_quant_with_min_max_args(x, -2.0, 2.0),
    inputs(values((2, 3, 4), -3, 3)))
add("FakeQuantWithMinMaxArgs_scalar", ["FakeQuantWithMinMaxArgs"],
    lambda x: raw.FakeQuantWithMinMaxArgs(inputs=x), inputs(np.float32(1.337)))


def ranges(n, lo=(-4.0, 0.0), hi=(0.0, 4.0)):
    def gen(rng):
        return rng.uniform(*lo, n).astype(np.float32), rng.uniform(*hi, n).astype(np.float32)
    return gen


for _shape in ((6,), (5, 4), (2, 3, 3, 4)):
    for _bits, _narrow in ((8, False), (5, True), (16, False)):
        add(f"FakeQuantWithMinMaxVarsPerChannel_r{len(_shape)}_b{_bits}"
            f"{'_narrow' if _narrow else ''}", ["FakeQuantWithMinMaxVarsPerChannel"],
            lambda x, lo, hi, _b=_bits, _n=_narrow:
                raw.FakeQuantWithMinMaxVarsPerChannel(inputs=x, min=lo, max=hi, num_bits=_b,
                                                      narrow_range=_n),
            lambda rng, _s=_shape: [values(_s, -5, 5)(rng), *ranges(_s[-1])(rng)],
            dynamic=len(_shape) == 2 and _bits == 8)
add("FakeQuantWithMinMaxVarsPerChannel_zero_channel", ["FakeQuantWithMinMaxVarsPerChannel"],
    lambda x, lo, hi: raw.FakeQuantWithMinMaxVarsPerChannel(inputs=x, min=lo, max=hi),
    inputs(values((3, 3)), np.array([0, -1, 0], np.float32), np.array([0, 1, 2], np.float32)))

# -- QuantizeV2 / Dequantize ----------------------------------------------------------------

QTYPES = {"qint8": tf.qint8, "quint8": tf.quint8, "qint16": tf.qint16, "quint16": tf.quint16,
          "qint32": tf.qint32}


def quant_roundtrip(t, mode, round_mode="HALF_AWAY_FROM_ZERO", narrow=False, axis=-1,
                    ensure=0.01, out_type=tf.float32):
    def fn(x, lo, hi):
        q = raw.QuantizeV2(input=x, min_range=lo, max_range=hi, T=t, mode=mode,
                           round_mode=round_mode, narrow_range=narrow, axis=axis,
                           ensure_minimum_range=ensure)
        d = raw.Dequantize(input=q.output, min_range=q.output_min, max_range=q.output_max,
                           mode=mode, narrow_range=narrow, axis=axis, dtype=out_type)
        return q.output, q.output_min, q.output_max, d
    return fn


for _name, _t in QTYPES.items():
    for _mode in ("MIN_COMBINED", "MIN_FIRST", "SCALED"):
        for _lo, _hi in ((-3.0, 5.0), (0.5, 4.0), (-2.0, -1.0)):
            add(f"QuantizeV2_{_name}_{_mode}_{_lo}_{_hi}", ["QuantizeV2", "Dequantize"],
                quant_roundtrip(_t, _mode),
                inputs(values((4, 5), -6, 6), np.float32(_lo), np.float32(_hi)),
                rtol=1e-5, atol=1e-5, dynamic=_name == "qint8" and _lo == -3.0,
                onednn=ONEDNN_QUANT)
    add(f"QuantizeV2_{_name}_MIN_FIRST_scalar", ["QuantizeV2", "Dequantize"],
        quant_roundtrip(_t, "MIN_FIRST"),
        inputs(np.float32(1.234), np.float32(-1.0), np.float32(2.0)), rtol=1e-5, atol=1e-5,
        onednn=ONEDNN_QUANT)
for _name in ("qint8", "quint8"):
    for _narrow in (False, True):
        add(f"QuantizeV2_{_name}_SCALED_half_to_even{'_narrow' if _narrow else ''}",
            ["QuantizeV2", "Dequantize"],
            quant_roundtrip(QTYPES[_name], "SCALED", "HALF_TO_EVEN", narrow=_narrow),
            inputs(values((4, 5), -2, 2), np.float32(-1.5), np.float32(1.75)), rtol=1e-5,
            atol=1e-6, onednn=ONEDNN_QUANT)
    add(f"QuantizeV2_{_name}_SCALED_axis", ["QuantizeV2", "Dequantize"],
        quant_roundtrip(QTYPES[_name], "SCALED", axis=1),
        lambda rng: [values((2, 3, 4), -3, 3)(rng), *ranges(3)(rng)], rtol=1e-5, atol=1e-6,
        onednn=ONEDNN_QUANT)
    add(f"QuantizeV2_{_name}_MIN_COMBINED_axis0", ["QuantizeV2", "Dequantize"],
        quant_roundtrip(QTYPES[_name], "MIN_COMBINED", axis=0),
        lambda rng: [values((3, 5), -3, 3)(rng), *ranges(3)(rng)], rtol=1e-5, atol=1e-6,
        onednn=ONEDNN_QUANT)
add("QuantizeV2_tiny_range_ensure", ["QuantizeV2", "Dequantize"],
    quant_roundtrip(tf.quint8, "MIN_COMBINED", ensure=0.05),
    inputs(values((6,), 0, 0.01), np.float32(0.001), np.float32(0.002)), rtol=1e-5, atol=1e-6,
    onednn=ONEDNN_QUANT)
add("Dequantize_bfloat16", ["QuantizeV2", "Dequantize"],
    quant_roundtrip(tf.qint8, "MIN_COMBINED", out_type=tf.bfloat16),
    inputs(values((3, 4), -3, 3), np.float32(-3), np.float32(3)), rtol=1e-2, atol=1e-2,
    onednn=ONEDNN_QUANT)
add("QuantizeV2_public", ["QuantizeV2", "Dequantize"],
    lambda x: tf.quantization.dequantize(*tf.quantization.quantize(x, -1.0, 1.0, tf.quint8),
                                         mode="MIN_COMBINED"),
    inputs(values((10,), -1.5, 1.5)), rtol=1e-5, atol=1e-6,
    onednn=ONEDNN_QUANT)

# -- QuantizeAndDequantize ------------------------------------------------------------------

for _t in ("float32", "float64"):
    for _given in (False, True):
        for _signed in (True, False):
            for _round in ("HALF_TO_EVEN", "HALF_UP"):
                for _op in ("QuantizeAndDequantizeV2", "QuantizeAndDequantizeV4"):
                    add(f"{_op}_{_t}_{'given' if _given else 'observed'}_"
                        f"{'signed' if _signed else 'unsigned'}_{_round}", [_op],
                        lambda x, lo, hi, _op=_op, _g=_given, _s=_signed, _r=_round:
                            getattr(raw, _op)(input=x, input_min=lo, input_max=hi,
                                              signed_input=_s, num_bits=6, range_given=_g,
                                              round_mode=_r),
                        inputs(values((4, 6), -3, 5, _t), np.array(-2.0, _t),
                               np.array(3.0, _t)),
                        dynamic=_t == "float32" and _given and _signed)
    # TF 2.21 rejects per-axis ranges when range_given (it wants scalars): observed ranges only
    for _op in ("QuantizeAndDequantizeV2", "QuantizeAndDequantizeV4"):
        for _axis, _narrow in ((1, False), (2, True), (0, False)):
            add(f"{_op}_{_t}_axis{_axis}{'_narrow' if _narrow else ''}", [_op],
                lambda x, lo, hi, _op=_op, _a=_axis, _n=_narrow: getattr(raw, _op)(
                    input=x, input_min=lo, input_max=hi, range_given=False, axis=_a,
                    narrow_range=_n, num_bits=4),
                inputs(values((2, 3, 4), -3, 3, _t), np.zeros(3, _t), np.zeros(3, _t))
                if _axis == 1 else
                lambda rng, _a=_axis, _t=_t: [values((2, 3, 4), -3, 3, _t)(rng),
                                              np.zeros((2, 3, 4)[_a], _t),
                                              np.zeros((2, 3, 4)[_a], _t)])
    add(f"QuantizeAndDequantizeV3_{_t}_axis", ["QuantizeAndDequantizeV3"],
        lambda x, lo, hi, b: raw.QuantizeAndDequantizeV3(
            input=x, input_min=lo, input_max=hi, num_bits=b, range_given=False, axis=1),
        inputs(values((2, 3, 4), -3, 3, _t), np.zeros(3, _t), np.zeros(3, _t), np.int32(3)))
    for _given in (False, True):
        add(f"QuantizeAndDequantizeV3_{_t}_{'given' if _given else 'observed'}",
            ["QuantizeAndDequantizeV3"],
            lambda x, lo, hi, b, _g=_given: raw.QuantizeAndDequantizeV3(
                input=x, input_min=lo, input_max=hi, num_bits=b, range_given=_g),
            inputs(values((5, 4), -4, 4, _t), np.array(-1.5, _t), np.array(2.5, _t),
                   np.int32(5)), dynamic=_given and _t == "float32")
# an observed range skips NaN (TF's vectorised min/max reductions do where it leads the data):
# the other values are quantized, the NaN stays NaN


def _leading_nan(shape, t):
    def gen(rng):
        x = values(shape, -3, 3, t)(rng)
        x.reshape(-1)[0] = np.nan
        return x
    return gen


for _axis, _shape in ((-1, (4, 6)), (0, (2, 3, 4))):
    _n = 1 if _axis == -1 else _shape[_axis]
    _lim = np.zeros(()) if _axis == -1 else np.zeros(_n)
    add(f"QuantizeAndDequantizeV4_nan_axis{_axis}", ["QuantizeAndDequantizeV4"],
        lambda x, lo, hi, _a=_axis: raw.QuantizeAndDequantizeV4(
            input=x, input_min=lo, input_max=hi, range_given=False, axis=_a, num_bits=5),
        inputs(_leading_nan(_shape, "float32"), _lim.astype(np.float32),
               _lim.astype(np.float32)))
# an observed range ignores input_min/input_max: TF checks their shape only when given (at
# run time: boolean_mask hides their length from its shape inference)
add("QuantizeAndDequantizeV4_observed_ignores_limits", ["QuantizeAndDequantizeV4"],
    lambda x, lo, hi: raw.QuantizeAndDequantizeV4(
        input=x, input_min=tf.boolean_mask(lo, lo == lo),
        input_max=tf.boolean_mask(hi, hi == hi), range_given=False, axis=0, num_bits=4),
    inputs(values((6, 3, 4), -3, 3, "float32"), np.zeros(2, np.float32),
           np.zeros(2, np.float32)))
# empty inputs with an axis: empty results (numpy cannot infer a -1 beside a 0 when slicing)
for _axis, _shape in ((1, (0, 3, 4)), (0, (3, 0, 2)), (2, (2, 3, 0))):
    _n = _shape[_axis]
    add(f"QuantizeAndDequantizeV4_empty_axis{_axis}", ["QuantizeAndDequantizeV4"],
        lambda x, lo, hi, _a=_axis: raw.QuantizeAndDequantizeV4(
            input=x, input_min=lo, input_max=hi, range_given=False, axis=_a, num_bits=5),
        [np.zeros(_shape, np.float32), np.zeros(_n, np.float32), np.zeros(_n, np.float32)])
add("QuantizeV2_empty_axis", ["QuantizeV2", "Dequantize"],
    quant_roundtrip(tf.qint8, "SCALED", axis=1),
    [np.zeros((0, 3, 2), np.float32), np.full(3, -2.0, np.float32), np.full(3, 2.0, np.float32)],
    onednn=ONEDNN_QUANT)
add("QuantizeAndDequantizeV2_public", ["QuantizeAndDequantizeV4"],
    lambda x: tf.quantization.quantize_and_dequantize_v2(x, -1.0, 1.0, range_given=True),
    inputs(values((8,), -2, 2)))
