"""Model-level tests across the op families: U-Net, text CNN, Transformer block, mixed
precision, preprocessing layers, and tf.functions built on image/signal/index ops.

Each test builds the model in TensorFlow, converts and saves it, evaluates the file in a fresh
process where TensorFlow cannot be imported, and compares shape, dtype and values (logits, not
softmax) with TensorFlow: within ``tol`` of the output's scale.
"""

from __future__ import annotations

import numpy as np
import pytest

import tfdeploy as td
from tfree import run_without_tf

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.tf

FLAVOURS = ["keras3", "tf_keras"]


def _keras(flavour):
    if flavour == "keras3":
        import keras

        return keras
    return pytest.importorskip("tf_keras")


def _numpy(x) -> np.ndarray:
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def _outputs(result) -> list[np.ndarray]:
    if isinstance(result, dict):
        result = list(result.values())
    if isinstance(result, (list, tuple)):
        return [_numpy(r) for r in result]
    return [_numpy(result)]


def _compare(got: np.ndarray, want: np.ndarray, tol: float, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape} != TF's {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != TF's {want.dtype}"
    if want.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    g = got.astype(np.complex128 if want.dtype.kind == "c" else np.float64)
    w = want.astype(g.dtype)
    scale = max(float(np.max(np.abs(w))) if w.size else 0.0, 1e-3)
    np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale, err_msg=what)


def _check(source, inputs, want, tmp_path, *, ops=(), tol=1e-4):
    """Convert ``source``, check that ``ops`` are in the graph, save, evaluate without TF and
    compare every output with ``want``. Returns the converted model."""
    m = td.convert(source)
    missing = set(ops) - m.op_types()
    assert not missing, f"ops {sorted(missing)} not in the converted graph ({sorted(m.op_types())})"
    p = tmp_path / "model.tfd"
    m.save(p)
    got = run_without_tf(p, inputs, tmp_path)
    want = _outputs(want)
    assert len(got) == len(want), f"{len(got)} outputs, TF has {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        _compare(g, w, tol, f"output {i}")
    return m


def _check_keras(model, inputs, tmp_path, **kw):
    want = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    return _check(model, inputs, want, tmp_path, **kw)


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------- Keras models
def _unet(k):
    L = k.layers
    inp = k.Input((16, 16, 3), name="image")
    c1 = L.Conv2D(8, 3, padding="same", activation="relu")(inp)          # 16
    c2 = L.Conv2D(12, 3, padding="same", activation="relu")(L.MaxPooling2D()(c1))  # 8
    b = L.Conv2D(16, 3, padding="same", activation="relu")(L.MaxPooling2D()(c2))   # 4
    u2 = L.Conv2DTranspose(12, 2, strides=2, padding="same")(b)          # 8
    n2 = L.UpSampling2D(size=2)(b)                                       # 8, nearest
    c3 = L.Conv2D(12, 3, padding="same", activation="relu")(L.Concatenate()([u2, n2, c2]))
    u1 = L.UpSampling2D(size=2, interpolation="bilinear")(c3)            # 16
    t1 = L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu")(c3)  # 16
    c4 = L.Conv2D(8, 3, padding="same", activation="relu")(L.Concatenate(axis=-1)([u1, t1, c1]))
    seg = L.Conv2D(3, 1, name="seg")(c4)
    aux = L.Conv2DTranspose(2, 3, strides=2, padding="valid", name="aux")(b)  # 9
    return k.Model(inp, [seg, aux])


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_unet(flavour, tmp_path):
    k = _keras(flavour)
    k.utils.set_random_seed(0)
    model = _unet(k)
    x = _rng(1).random((2, 16, 16, 3), dtype=np.float32)
    m = _check_keras(model, [x], tmp_path,
                     ops=("Conv2DBackpropInput", "ConcatV2", "ResizeBilinear"))
    assert m.inputs[0].shape == [None, 16, 16, 3]


def _text_cnn(k, vocab=50, length=12):
    L = k.layers
    ids = k.Input((length,), dtype="int32", name="ids")
    e = L.Embedding(vocab, 8)(ids)
    x = L.Conv1D(16, 3, padding="same", activation="relu")(e)
    x = L.Conv1D(16, 3, padding="causal", dilation_rate=2, activation="relu")(x)
    x = L.Conv1D(12, 2, strides=2)(x)
    x = L.GlobalMaxPooling1D()(x)
    # a masked branch: mask_zero makes GlobalAveragePooling1D skip the padding ids
    m = L.Embedding(vocab, 6, mask_zero=True)(ids)
    m = L.GlobalAveragePooling1D()(m)
    out = L.Dense(4)(L.Concatenate()([x, m]))
    return k.Model(ids, out)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_text_cnn(flavour, tmp_path):
    k = _keras(flavour)
    k.utils.set_random_seed(0)
    model = _text_cnn(k)
    ids = _rng(2).integers(1, 50, size=(3, 12)).astype(np.int32)
    ids[0, 8:] = 0        # padding
    ids[1, 5:] = 0
    ops = ("GatherV2", "NotEqual", "SpaceToBatchND")     # lookup, mask, dilated conv
    if flavour == "keras3":
        # Keras 3 wraps negative ids around (take's tf.where fix-up): -1 is the last row
        ids[2, :3] = [-1, -7, -50]
        ops += ("Less", "SelectV2")
    _check_keras(model, [ids], tmp_path, ops=ops)


def _gelu(k, approximate):
    return k.layers.Activation(lambda t: k.activations.gelu(t, approximate=approximate))


def _transformer(k, length=6, dim=16):
    L = k.layers
    inp = k.Input((length, dim), name="tokens")
    a = L.MultiHeadAttention(num_heads=2, key_dim=8, dropout=0.1)(inp, inp)
    x = L.LayerNormalization(epsilon=1e-6)(L.Add()([inp, L.Dropout(0.1)(a)]))
    c = L.MultiHeadAttention(num_heads=4, key_dim=4, value_dim=6)(x, x, use_causal_mask=True)
    x = L.LayerNormalization()(L.Add()([x, c]))
    f = _gelu(k, False)(L.Dense(32)(x))
    f = _gelu(k, True)(L.Dense(32)(f))
    f = L.Dense(dim)(L.Dropout(0.2)(f))
    x = L.LayerNormalization(epsilon=1e-5)(L.Add()([x, f]))
    return k.Model(inp, L.Dense(5)(x))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_transformer_block(flavour, tmp_path):
    k = _keras(flavour)
    k.utils.set_random_seed(0)
    model = _transformer(k)
    x = _rng(3).standard_normal((2, 6, 16)).astype(np.float32)
    # exact gelu is 0.5 * x * erfc(-x / sqrt(2)); the approximate one uses tanh
    m = _check_keras(model, [x], tmp_path,
                     ops=("Erfc", "Tanh", "Softmax", "Einsum", "MatrixBandPart"))
    # another batch size through the same file
    x2 = _rng(4).standard_normal((1, 6, 16)).astype(np.float32)
    _compare(m(x2), _numpy(model(x2, training=False)), 1e-4, "batch of 1")


def _mixed_model(k):
    L = k.layers
    inp = k.Input((8, 8, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = L.BatchNormalization()(x)
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(8, 3, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(16, activation="gelu")(x)
    logits16 = L.Dense(4, name="logits16")(x)                      # float16 output
    logits32 = L.Activation("linear", dtype="float32", name="logits32")(logits16)
    return k.Model(inp, [logits16, logits32])


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_mixed_float16(flavour, tmp_path):
    k = _keras(flavour)
    k.utils.set_random_seed(0)
    k.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _mixed_model(k)
        rng = _rng(5)
        xs = rng.random((32, 8, 8, 3), dtype=np.float32)
        ys = rng.standard_normal((32, 4)).astype(np.float32)
        model.compile(optimizer="adam", loss=[None, "mse"])
        model.fit(xs, ys, batch_size=16, epochs=2, verbose=0)
    finally:
        k.mixed_precision.set_global_policy("float32")
    x = rng.random((3, 8, 8, 3), dtype=np.float32)
    want = model(x, training=False)
    assert [w.dtype for w in _outputs(want)] == [np.float16, np.float32]
    # float16 intermediates may round differently: allow a few float16 ulps of the scale
    _check(model, [x], want, tmp_path, tol=4e-3, ops=("Cast",))


# ---------------------------------------------------------------------------- preprocessing
RESIZE_CASES = [
    ("bilinear", False), ("nearest", False), ("bicubic", False), ("area", False),
    ("lanczos3", False), ("bilinear", True), ("nearest", True),
]


def _preprocess(k, data, interpolation, crop):
    L = k.layers
    norm = L.Normalization(axis=-1)
    norm.adapt(data)
    inp = k.Input((None, None, 3), name="image")      # any image size
    x = L.Rescaling(1.0 / 255, offset=-0.25)(inp)
    n = norm(x)
    x = L.Resizing(12, 14, interpolation=interpolation, crop_to_aspect_ratio=crop)(n)
    y = L.CenterCrop(8, 10)(x)
    z = L.CenterCrop(6, 8)(n)                          # cropping an image of unknown size
    feat = L.Dense(3)(L.Flatten()(y))
    return k.Model(inp, [x, y, z, feat])


# (tf_keras' CenterCrop is a tf.cond whose crop branch holds control-only Assert ops: the
# converter prunes them from function bodies as it does at the top level)
@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
@pytest.mark.parametrize("interpolation, crop", RESIZE_CASES,
                         ids=[f"{m}{'-crop' if c else ''}" for m, c in RESIZE_CASES])
def test_preprocessing_layers(flavour, interpolation, crop, tmp_path):
    k = _keras(flavour)
    k.utils.set_random_seed(0)
    rng = _rng(6)
    data = rng.uniform(0, 1, size=(16, 20, 30, 3)) * [1.0, 2.0, 0.5]
    model = _preprocess(k, data.astype(np.float32), interpolation, crop)
    x = rng.uniform(0, 255, size=(2, 20, 30, 3)).astype(np.float32)
    m = _check_keras(model, [x], tmp_path)
    # another image size through the same model (not smaller than the 6x8 crop: Keras 3's
    # CenterCrop resizes those when run eagerly but slices them when traced with unknown sizes)
    x2 = rng.uniform(0, 255, size=(1, 9, 17, 3)).astype(np.float32)
    for g, w in zip(m(x2), _outputs(model(x2, training=False))):
        _compare(g, w, 1e-4, "9x17 image")


# ---------------------------------------------------------------------------- tf.functions
def _check_fn(fn, inputs, tmp_path, **kw):
    """Convert the tf.function with a signature of the inputs' dtypes and ranks, every dim
    unknown, and compare with TF."""
    sig = [tf.TensorSpec([None] * x.ndim, tf.as_dtype(x.dtype)) for x in inputs]
    traced = tf.function(fn, input_signature=sig)
    return _check(traced, inputs, traced(*inputs), tmp_path, **kw)


@pytest.mark.parametrize("size", [(13, 21), (5, 6)], ids=["up", "down"])
def test_fn_image_resize(size, tmp_path):
    def fn(img):
        out = []
        for method in ("bilinear", "nearest", "bicubic", "area"):
            out.append(tf.image.resize(img, size, method=method))
            out.append(tf.image.resize(img, size, method=method, antialias=True))
        out.append(tf.image.resize(img, size, method="lanczos5"))
        out.append(tf.image.resize(img, size, preserve_aspect_ratio=True))
        out.append(tf.image.resize_with_pad(img, size[0], size[1]))
        return tuple(out)

    x = _rng(7).uniform(0, 10, size=(2, 9, 11, 3)).astype(np.float32)
    _check_fn(fn, [x], tmp_path,
              ops=("ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic", "ResizeArea",
                   "ScaleAndTranslate"))


def test_fn_stft(tmp_path):
    def fn(signal):
        s = tf.signal.stft(signal, frame_length=32, frame_step=8, fft_length=32)
        p = tf.signal.stft(signal, frame_length=20, frame_step=10, pad_end=True,
                           window_fn=None)
        return s, tf.abs(p), tf.math.log(tf.abs(s) + 1e-6)

    x = _rng(8).standard_normal((2, 100)).astype(np.float32)
    _check_fn(fn, [x], tmp_path, ops=("RFFT",))


def test_fn_top_k(tmp_path):
    def fn(x, n):
        v, i = tf.math.top_k(x, k=3)
        vi, ii = tf.math.top_k(n, k=2, sorted=True)
        return v, i, vi, ii, tf.math.top_k(x, k=tf.shape(x)[-1] // 2).indices

    x = _rng(9).standard_normal((4, 7)).astype(np.float32)
    n = _rng(10).permutation(30).reshape(3, 10).astype(np.int32)
    _check_fn(fn, [x, n], tmp_path, ops=("TopKV2",))


def _boxes(rng, n):
    yx = rng.uniform(0, 8, size=(n, 2))
    hw = rng.uniform(1, 4, size=(n, 2))
    return np.concatenate([yx, yx + hw], axis=1).astype(np.float32)


def test_fn_non_max_suppression(tmp_path):
    def fn(boxes, scores):
        a = tf.image.non_max_suppression(boxes, scores, max_output_size=6, iou_threshold=0.4)
        b = tf.image.non_max_suppression(boxes, scores, 10, iou_threshold=0.5,
                                         score_threshold=0.3)
        # TF2's padded NMS is a TF-ops algorithm (While); TF1's (and older SavedModels') is
        # the NonMaxSuppressionV4 op, no longer reachable through a public TF2 API
        c, nc = tf.image.non_max_suppression_padded(boxes, scores, 12, iou_threshold=0.45,
                                                    score_threshold=0.6,
                                                    pad_to_max_output_size=True)
        u, _ = tf.image.non_max_suppression_padded(boxes, scores, 8, iou_threshold=0.45)
        v, nv = tf.raw_ops.NonMaxSuppressionV4(
            boxes=boxes, scores=scores, max_output_size=12, iou_threshold=0.45,
            score_threshold=0.5, pad_to_max_output_size=True)
        d, sd = tf.image.non_max_suppression_with_scores(boxes, scores, 7, iou_threshold=0.5,
                                                         score_threshold=0.1,
                                                         soft_nms_sigma=0.5)
        e, se = tf.image.non_max_suppression_with_scores(boxes, scores, 7, iou_threshold=0.3)
        o = tf.image.non_max_suppression_overlaps(
            tf.linalg.matmul(boxes, boxes, transpose_b=True) / 100.0, scores, 5,
            overlap_threshold=0.5)
        return a, b, c, nc, u, v, nv, d, sd, e, se, o

    rng = _rng(11)
    boxes = _boxes(rng, 20)
    boxes[3] = boxes[2] + 0.1          # a near-duplicate box
    scores = rng.uniform(0, 1, size=20).astype(np.float32)
    _check_fn(fn, [boxes, scores], tmp_path,
              ops=("NonMaxSuppressionV3", "NonMaxSuppressionV4", "NonMaxSuppressionV5",
                   "NonMaxSuppressionWithOverlaps", "StatelessWhile"))


def test_fn_non_max_suppression_padded_batched(tmp_path):
    def fn(boxes, scores):
        return tf.image.non_max_suppression_padded(boxes, scores, 5, iou_threshold=0.5,
                                                   score_threshold=0.2,
                                                   pad_to_max_output_size=True)

    rng = _rng(12)
    boxes = np.stack([_boxes(rng, 12) for _ in range(2)])
    scores = rng.uniform(0, 1, size=(2, 12)).astype(np.float32)
    _check_fn(fn, [boxes, scores], tmp_path)


EINSUMS = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bqhd,bkhd->bhqk", [(2, 3, 2, 4), (2, 5, 2, 4)]),
    ("bhqk,bkhd->bqhd", [(2, 2, 3, 5), (2, 5, 2, 4)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (4, 2)]),
    ("i,j->ij", [(3,), (4,)]),
    ("bi,i->b", [(3, 4), (4,)]),
    ("ij->ji", [(3, 4)]),
    ("ijk->k", [(2, 3, 4)]),
    ("ii->i", [(4, 4)]),
    ("abc,cd->abd", [(2, 3, 4), (4, 5)]),
]


@pytest.mark.parametrize("equation, shapes", EINSUMS, ids=[e for e, _ in EINSUMS])
def test_fn_einsum(equation, shapes, tmp_path):
    def fn(*xs):
        return tf.einsum(equation, *xs)

    rng = _rng(13)
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    _check_fn(fn, xs, tmp_path, ops=("Einsum",))


def test_fn_one_hot(tmp_path):
    def fn(ids):
        return (tf.one_hot(ids, 5),
                tf.one_hot(ids, 5, on_value=2.5, off_value=-1.0, axis=0),
                tf.one_hot(ids, 4, on_value=3, off_value=0, dtype=tf.int32, axis=1))

    ids = np.array([[0, 4, 2], [-1, 5, 1]], np.int32)    # -1 and 5 are out of range: all off
    _check_fn(fn, [ids], tmp_path, ops=("OneHot",))


def test_fn_tensor_scatter_nd_update(tmp_path):
    def fn(t, idx, upd, idx2, rows):
        return (tf.tensor_scatter_nd_update(t, idx, upd),
                tf.tensor_scatter_nd_update(t, idx2, rows))

    rng = _rng(14)
    t = rng.standard_normal((5, 4)).astype(np.float32)
    idx = np.array([[0, 1], [4, 3], [2, 0]], np.int32)
    upd = np.array([10.0, 20.0, 30.0], np.float32)
    idx2 = np.array([[3], [1]], np.int64)
    rows = rng.standard_normal((2, 4)).astype(np.float32)
    _check_fn(fn, [t, idx, upd, idx2, rows], tmp_path, ops=("TensorScatterUpdate",))


def test_fn_cumsum(tmp_path):
    def fn(x, n):
        out = []
        for exclusive in (False, True):
            for reverse in (False, True):
                out.append(tf.math.cumsum(x, axis=1, exclusive=exclusive, reverse=reverse))
                out.append(tf.math.cumsum(n, axis=0, exclusive=exclusive, reverse=reverse))
        out.append(tf.math.cumprod(x, axis=-1, exclusive=True, reverse=True))
        return tuple(out)

    x = _rng(15).standard_normal((3, 6)).astype(np.float32)
    n = _rng(16).integers(-5, 5, size=(4, 2)).astype(np.int64)
    _check_fn(fn, [x, n], tmp_path, ops=("Cumsum", "Cumprod"))
