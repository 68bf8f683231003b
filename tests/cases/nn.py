"""Neural-network kernels (nn.py): activations, softmax, bias, batch normalization, top-k."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from . import Case, adder
from .math import ALL_INTS, COMPLEX, FLOATS, INTS, _raw, fixed, gen, tol

CASES: list[Case] = []
add = adder(CASES, "nn")
raw = tf.raw_ops


_EXT = [0.0, -0.0, 1e-30, -1e-30, 3.0, 6.0, 6.5, -6.0, 20, -20, 100, -100, 1e30, -1e30, np.inf,
        -np.inf, np.nan]

# --- Relu, Relu6 --------------------------------------------------------------------------
for _op in ("Relu", "Relu6"):
    for _dt in FLOATS + ALL_INTS:
        _lo = 0 if _dt.startswith("u") else -9
        add(f"{_op}_{_dt}", [_op], _raw(_op), gen(((3, 5), _dt, _lo, 9)),
            dynamic=_dt == "float32", **tol(_dt))
    add(f"{_op}_scalar", [_op], _raw(_op), gen(((), "float32", -9, 9)))
    add(f"{_op}_empty", [_op], _raw(_op), gen(((0, 4), "float32")))
    add(f"{_op}_extremes", [_op], _raw(_op), [fixed(_EXT, "float32")])

# --- Softmax ------------------------------------------------------------------------------
for _dt in ("float16", "bfloat16", "float32", "float64"):
    add(f"Softmax_{_dt}", ["Softmax"], _raw("Softmax"), gen(((4, 7), _dt, -5, 5)),
        dynamic=_dt == "float32", **tol(_dt, 2))
for _shape in ((7,), (2, 3, 5), (2, 1, 3, 4), (3, 1), (2, 2, 2, 2, 3)):
    add(f"Softmax_rank{len(_shape)}_{_shape[-1]}", ["Softmax"], _raw("Softmax"),
        gen((_shape, "float32", -5, 5)), **tol("float32", 2))
add("Softmax_large_logits", ["Softmax"], _raw("Softmax"),
    gen(((5, 10), "float32", -1e4, 1e4)), **tol("float32", 2))
add("Softmax_large_logits_f64", ["Softmax"], _raw("Softmax"),
    gen(((5, 10), "float64", -1e300, 1e300)), **tol("float64", 2))
add("Softmax_neg_inf", ["Softmax"], _raw("Softmax"),
    [np.array([[-np.inf, 1.0, 2.0], [0.0, -np.inf, -np.inf], [-1e30, -np.inf, 5.0]],
              np.float32)], **tol("float32", 2))
add("Softmax_nan_inf_rows", ["Softmax"], _raw("Softmax"),
    [np.array([[-np.inf, -np.inf], [np.inf, np.inf], [np.nan, np.nan]], np.float32)])
add("Softmax_inf_and_finite", ["Softmax"], _raw("Softmax"),
    [np.array([[np.inf, 1.0], [np.nan, 1.0]], np.float32)],
    onednn="gives 0 for the finite logits of a row holding +inf or NaN, where TF's reference "
           "kernel (and tfdeploy) gives NaN for the whole row")
# few classes over many rows (a segmentation head) go over the transposed rows
for _shape, _dt in (((1, 16, 16, 2), "float32"), ((64, 5), "float64"), ((50, 16), "float32"),
                    ((2, 8, 8, 7), "float32"), ((64, 17), "float32"), ((47, 3), "float32")):
    add(f"Softmax_few_classes_{'x'.join(map(str, _shape))}_{_dt}", ["Softmax"],
        _raw("Softmax"), gen((_shape, _dt, -8, 8)), **tol(_dt, 2))
_rows = np.random.default_rng(3).uniform(-5, 5, (64, 3)).astype(np.float32)
_rows[:4] = [[-np.inf, 1.0, 2.0], [0.0, -np.inf, -np.inf], [-np.inf, -np.inf, -np.inf],
             [np.nan, np.nan, np.nan]]
add("Softmax_few_classes_non_finite_rows", ["Softmax"], _raw("Softmax"), [_rows],
    **tol("float32", 2))
add("Softmax_few_classes_transposed", ["Softmax", "Transpose"],
    lambda x: tf.nn.softmax(tf.transpose(x)), gen(((4, 96), "float32", -5, 5)),
    **tol("float32", 2))
add("Softmax_empty_batch", ["Softmax"], _raw("Softmax"), gen(((0, 5), "float32")))
add("Softmax_logits_layer", ["Softmax"], lambda x, w, b: tf.nn.softmax(x @ w + b),
    gen(((16, 64), "float32"), ((64, 10), "float32", -0.5, 0.5), ((10,), "float32")),
    dynamic=True, **tol("float32", 4))

# --- BiasAdd ------------------------------------------------------------------------------
for _dt in FLOATS + COMPLEX + INTS + ("uint16", "uint32", "uint64"):
    _lo = 0 if _dt.startswith("u") else -9
    add(f"BiasAdd_{_dt}", ["BiasAdd"], _raw("BiasAdd"),
        gen(((2, 3, 4), _dt, _lo, 9), ((4,), _dt, _lo, 9)), dynamic=_dt == "float32",
        **tol(_dt))
for _shape, _c in (((2, 3, 4, 5), 3), ((2, 3, 4), 3), ((2, 3, 2, 2, 2), 3)):
    add(f"BiasAdd_NCHW_rank{len(_shape)}", ["BiasAdd"], _raw("BiasAdd", data_format="NCHW"),
        gen((_shape, "float32"), ((_c,), "float32")), dynamic=len(_shape) == 4, **tol("float32"))
for _shape in ((2, 3), (2, 3, 4, 5), (1, 2, 2, 2, 3)):
    add(f"BiasAdd_NHWC_rank{len(_shape)}", ["BiasAdd"], _raw("BiasAdd", data_format="NHWC"),
        gen((_shape, "float32"), ((_shape[-1],), "float32")), **tol("float32"))
add("BiasAdd_empty", ["BiasAdd"], _raw("BiasAdd"), gen(((0, 4), "float32"), ((4,), "float32")))
for _dt in ("float32", "float64", "int32"):
    add(f"BiasAddV1_{_dt}", ["BiasAddV1"], _raw("BiasAddV1"),
        gen(((2, 3, 4), _dt), ((4,), _dt)), **tol(_dt))

# --- FusedBatchNorm -----------------------------------------------------------------------


def _bn_inputs(shape, c, dtype="float32"):
    def make(rng):
        x = rng.normal(1.0, 2.0, shape).astype(np.dtype(dtype) if dtype != "bfloat16"
                                               else _bf16())
        stats = [rng.uniform(0.5, 2.0, c), rng.normal(0, 1, c), rng.normal(0, 1, c),
                 rng.uniform(0.5, 3.0, c)]
        return [x] + [s.astype(np.float32) for s in stats]
    return make


def _bf16():
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def _bn_channels_last(op, **kw):
    """Inference FusedBatchNorm of an NCHW input computed channels-last (TF's CPU kernels
    refuse NCHW without oneDNN): y, mean and variance."""
    f = getattr(raw, op)

    def call(x, s, o, m, v):
        y, mean, var = tuple(f(x=tf.transpose(x, [0, 2, 3, 1]), scale=s, offset=o, mean=m,
                               variance=v, is_training=False, **kw))[:3]
        return tf.transpose(y, [0, 3, 1, 2]), mean, var
    return call


def _bn(op, n_out=None, **kw):
    f = getattr(raw, op)

    def call(x, s, o, m, v):
        outs = f(x=x, scale=s, offset=o, mean=m, variance=v, **kw)
        return tuple(outs)[:n_out] if n_out else tuple(outs)
    return call


# In inference the reserve spaces (outputs 3 and up, kept for the gradient) are whatever the
# kernel leaves there: zeros from TF's Eigen kernel, the mean and variance from oneDNN's (which
# tfdeploy returns). The cases compare y, mean and variance.
for _op in ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"):
    for _fmt, _shape in (("NHWC", (2, 3, 4, 5)), ("NCHW", (2, 5, 3, 4))):
        add(f"{_op}_{_fmt}_inference", [_op],
            _bn(_op, 3, is_training=False, data_format=_fmt, epsilon=1e-3),
            _bn_inputs(_shape, 5), dynamic=_fmt == "NHWC", rtol=1e-5, atol=1e-5,
            oracle=_bn_channels_last(_op, epsilon=1e-3) if _fmt == "NCHW" else None)
    add(f"{_op}_training", [_op], _bn(_op, 5, is_training=True), _bn_inputs((2, 3, 4, 5), 5),
        rtol=1e-4, atol=1e-4)
for _dt in ("float16", "bfloat16"):
    for _op in ("FusedBatchNormV2", "FusedBatchNormV3"):
        add(f"{_op}_{_dt}_inference", [_op], _bn(_op, 3, is_training=False),
            _bn_inputs((2, 3, 4, 5), 5, _dt), **tol(_dt, 4))
add("FusedBatchNormV3_training_avg_factor", ["FusedBatchNormV3"],
    _bn("FusedBatchNormV3", 5, is_training=True, exponential_avg_factor=0.3),
    _bn_inputs((2, 3, 4, 5), 5), rtol=1e-4, atol=1e-4)
add("FusedBatchNormV3_training_NCHW", ["FusedBatchNormV3"],
    _bn("FusedBatchNormV3", 5, is_training=True, data_format="NCHW"),
    _bn_inputs((2, 5, 3, 4), 5), rtol=1e-4, atol=1e-4)
# TF leaves the 5-D inference reserve spaces uninitialized: compare y, mean and variance
for _fmt, _shape in (("NDHWC", (1, 2, 3, 4, 5)), ("NCDHW", (1, 5, 2, 3, 4))):
    add(f"FusedBatchNormV3_{_fmt}_inference", ["FusedBatchNormV3"],
        _bn("FusedBatchNormV3", 3, is_training=False, data_format=_fmt), _bn_inputs(_shape, 5),
        rtol=1e-5, atol=1e-5)
# an empty batch returns before any kernel runs: NaN batch statistics in both modes (the reserve
# spaces are left as they come: zeros with oneDNN, whatever memory held without it; tfdeploy
# gives zeros, and the cases compare y, mean and variance)
for _train in (False, True):
    add(f"FusedBatchNormV3_empty_batch_{'training' if _train else 'inference'}",
        ["FusedBatchNormV3"], _bn("FusedBatchNormV3", 3, is_training=_train),
        _bn_inputs((0, 3, 4, 5), 5), dynamic=True)
add("FusedBatchNormV3_keras_layernorm_trick", ["FusedBatchNormV3"],
    lambda x: tf.compat.v1.nn.fused_batch_norm(
        tf.reshape(x, [1, 6, 4, 1]), tf.ones([6]), tf.zeros([6]), data_format="NCHW")[0],
    gen(((6, 4), "float32")), rtol=1e-4, atol=1e-4)

# --- priority 2: more activations, LogSoftmax, TopK, InTopK ---------------------------------

for _op, (_lo, _hi) in {"Elu": (-6, 3), "Selu": (-6, 3), "Softplus": (-20, 20),
                        "Softsign": (-9, 9)}.items():
    for _dt in FLOATS:
        add(f"{_op}_{_dt}", [_op], _raw(_op), gen(((4, 6), _dt, _lo, _hi)),
            dynamic=_dt == "float32", **tol(_dt, 2))
    add(f"{_op}_scalar", [_op], _raw(_op), gen(((), "float32", _lo, _hi)), **tol("float32", 2))
    add(f"{_op}_empty", [_op], _raw(_op), gen(((0, 3), "float32")))
    for _dt in ("float32", "float64"):
        add(f"{_op}_{_dt}_extremes", [_op], _raw(_op), [fixed(_EXT, _dt)], **tol(_dt, 2))
add("Softplus_thresholds", ["Softplus"], _raw("Softplus"),
    [np.array([-16.0, -15.0, -14.0, -13.9, -13.0, 13.0, 13.9, 14.0, 15.0, 16.0, 36, 37, 38],
              np.float32)], **tol("float32", 2))
add("Softplus_thresholds_f64", ["Softplus"], _raw("Softplus"),
    [np.array([-36.0, -35.0, -34.0, -33.0, 33.0, 34.0, 35.0, 36.0, 700, 710, 800])],
    **tol("float64", 2))
for _alpha in (0.2, 0.01, 1.5, -0.3, 0.0):
    add(f"LeakyRelu_alpha{_alpha}", ["LeakyRelu"], _raw("LeakyRelu", alpha=_alpha),
        gen(((3, 5), "float32", -9, 9)), dynamic=_alpha == 0.2, **tol("float32"))
for _dt in FLOATS:
    add(f"LeakyRelu_{_dt}", ["LeakyRelu"], _raw("LeakyRelu"), gen(((3, 5), _dt, -9, 9)),
        **tol(_dt))
add("LeakyRelu_extremes", ["LeakyRelu"], _raw("LeakyRelu"), [fixed(_EXT, "float32")])

for _dt in FLOATS:
    add(f"LogSoftmax_{_dt}", ["LogSoftmax"], _raw("LogSoftmax"), gen(((4, 7), _dt, -5, 5)),
        dynamic=_dt == "float32", **tol(_dt, 4))
for _shape in ((7,), (2, 3, 5), (3, 1)):
    add(f"LogSoftmax_rank{len(_shape)}_{_shape[-1]}", ["LogSoftmax"], _raw("LogSoftmax"),
        gen((_shape, "float32", -5, 5)), **tol("float32", 4))
add("LogSoftmax_large_logits", ["LogSoftmax"], _raw("LogSoftmax"),
    gen(((5, 10), "float32", -1e4, 1e4)), rtol=1e-5, atol=1e-3)
add("LogSoftmax_neg_inf", ["LogSoftmax"], _raw("LogSoftmax"),
    [np.array([[-np.inf, 1.0, 2.0], [0.0, -np.inf, -np.inf]], np.float32)], **tol("float32", 4))


def _topk(k, sorted_=True, index_type=None):
    kw = {"index_type": index_type} if index_type is not None else {}

    def call(x):
        return tuple(raw.TopKV2(input=x, k=k, sorted=sorted_, **kw))
    return call


def _topk_unsorted(k):
    # TF's order is unspecified for sorted=False: compare the sets (sorted) only
    def call(x):
        v, i = raw.TopKV2(input=x, k=k, sorted=False)
        return tf.sort(v, axis=-1), tf.sort(i, axis=-1)
    return call


_TOPK_TYPES = FLOATS + ("int8", "int16", "int32", "int64") + ("uint8", "uint16", "uint32",
                                                               "uint64")
for _dt in _TOPK_TYPES:
    _lo = 0 if _dt.startswith("u") else -50
    add(f"TopKV2_{_dt}", ["TopKV2"], _topk(3), gen(((4, 9), _dt, _lo, 50)),
        dynamic=_dt == "float32")
for _k in (0, 1, 6):
    add(f"TopKV2_k{_k}", ["TopKV2"], _topk(_k), gen(((2, 3, 6), "float32")))
add("TopKV2_ties", ["TopKV2"], _topk(4),
    [np.array([[1.0, 3, 3, 1, 3], [0.0, -0.0, 0, 0, 1], [2, 2, 2, 2, 2]], np.float32)])
add("TopKV2_int_ties", ["TopKV2"], _topk(5), gen(((3, 12), "int32", 0, 3)))
add("TopKV2_index_int64", ["TopKV2"], _topk(2, index_type=tf.int64), gen(((3, 5), "float32")))
add("TopKV2_rank1", ["TopKV2"], _topk(3), gen(((10,), "float64")))
add("TopKV2_unsorted", ["TopKV2"], _topk_unsorted(4), gen(((3, 20), "float32")))
add("TopKV2_k_input", ["TopKV2"], lambda x, k: tuple(raw.TopKV2(input=x, k=k)),
    gen(((3, 8), "float32"), np.array(3, np.int32)), dynamic=True)
add("TopKV2_inf", ["TopKV2"], _topk(3),
    [np.array([[1.0, np.inf, -np.inf, 2.0], [-np.inf, -np.inf, 0.0, -np.inf]], np.float32)])


def _in_top_k(k):
    def call(p, t):
        return raw.InTopKV2(predictions=p, targets=t, k=k)
    return call


for _k in (1, 2, 5):
    add(f"InTopKV2_k{_k}", ["InTopKV2"], _in_top_k(_k),
        gen(((6, 5), "float32", 0, 3), ((6,), "int32", 0, 4)), dynamic=_k == 2)
add("InTopKV2_ties_nan_range", ["InTopKV2"], _in_top_k(1),
    [np.array([[1.0, 2, 2, 0], [np.nan, 1, 1, 1], [1, 1, 1, 1], [1, np.inf, 0, 0],
               [1, 2, np.nan, 0]], np.float32), np.array([1, 0, 7, 1, 1], np.int32)])
add("InTopKV2_int64", ["InTopKV2"], _in_top_k(np.int64(2)),
    [np.array([[1.0, 2, 2, 0], [1, 1, 1, 1], [3, 2, 1, 0]], np.float32),
     np.array([0, 3, -1], np.int64)])
add("InTopK_v1", ["InTopK"], lambda p, t: raw.InTopK(predictions=p, targets=t, k=2),
    gen(((6, 5), "float32", 0, 3), ((6,), "int32", 0, 4)))

# --- composites seen in real models ---------------------------------------------------------


def _layer_norm(x, g, b):
    # Keras 3 LayerNormalization: Mean, SquaredDifference, Rsqrt
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    var = tf.reduce_mean(tf.math.squared_difference(x, mean), axis=-1, keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + 1e-3) * g + b


add("composite_layer_norm", ["Mean", "SquaredDifference", "Rsqrt"], _layer_norm,
    gen(((4, 3, 16), "float32"), ((16,), "float32"), ((16,), "float32")), dynamic=True,
    rtol=1e-5, atol=1e-5)
add("composite_gelu_exact", ["Erfc"], lambda x: tf.nn.gelu(x, approximate=False),
    gen(((4, 32), "float32", -6, 6)), dynamic=True, rtol=1e-6, atol=1e-6)
add("composite_gelu_erf", ["Erf"],
    lambda x: 0.5 * x * (1 + tf.math.erf(x / np.sqrt(2.0).astype(np.float32))),
    gen(((4, 32), "float32", -6, 6)), rtol=1e-6, atol=1e-6)
add("composite_gelu_tanh", ["Tanh"], lambda x: tf.nn.gelu(x, approximate=True),
    gen(((4, 32), "float32", -6, 6)), rtol=1e-6, atol=1e-6)


def _lstm_gates(x, h, w, u, b):
    z = tf.matmul(x, w) + tf.matmul(h, u) + b
    i, f, c, o = z[:, :8], z[:, 8:16], z[:, 16:24], z[:, 24:]
    return tf.sigmoid(o) * tf.tanh(tf.sigmoid(f) * h + tf.sigmoid(i) * tf.tanh(c))


add("composite_lstm_cell", ["MatMul", "Sigmoid", "Tanh", "AddV2", "Mul"], _lstm_gates,
    gen(((3, 5), "float32"), ((3, 8), "float32", -1, 1), ((5, 32), "float32", -0.5, 0.5),
        ((8, 32), "float32", -0.5, 0.5), ((32,), "float32", -0.5, 0.5)),
    dynamic=True, rtol=1e-5, atol=1e-6)
add("composite_attention", ["BatchMatMulV2", "Softmax"],
    lambda q, k, v: tf.matmul(tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / 2.0), v),
    gen(((2, 4, 5, 8), "float32"), ((2, 4, 6, 8), "float32"), ((2, 4, 6, 8), "float32")),
    dynamic=True, rtol=1e-5, atol=1e-5)
