"""Image ops: resizes, ScaleAndTranslate, CropAndResize, NMS, projective transforms, colour."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from . import Case, adder, rand

CASES: list[Case] = []
add = adder(CASES, "image")
raw = tf.raw_ops

INT_TYPES = ("int8", "uint8", "int16", "uint16", "int32", "int64")
FLOAT_TYPES = ("float16", "bfloat16", "float32", "float64")


def _bf16():
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def image(shape, dtype="float32", low=0.0, high=255.0):
    """An input generator of random images (bfloat16 made from float32)."""
    def gen(rng):
        if dtype == "bfloat16":
            return rand(rng, shape, "float32", low, high).astype(_bf16())
        dt = np.dtype(dtype)
        lo, hi = low, high
        if dt.kind in "iu":
            lo, hi = max(lo, np.iinfo(dt).min), min(hi, np.iinfo(dt).max)
        return rand(rng, shape, dtype, lo, hi)
    return gen


def inputs(*gens):
    """Combine generators and constants into one inputs function."""
    def make(rng):
        return [g(rng) if callable(g) else np.asarray(g) for g in gens]
    return make


# -- ResizeBilinear / NearestNeighbor / Bicubic / Area ---------------------------------------

_MODES = {"legacy": (False, False), "align": (True, False), "halfpix": (False, True)}
_SIZES = {"up": ((2, 4, 5, 3), (7, 9)), "down": ((1, 9, 11, 2), (4, 3)),
          "one": ((1, 3, 4, 1), (1, 1)),
          # whole factors: bilinear by phases, nearest by one broadcast copy (half-pixel, legacy)
          "whole": ((2, 4, 5, 3), (8, 15))}

for _op in ("ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic"):
    for _mode, (_ac, _hp) in _MODES.items():
        for _sz, (_shape, _out) in _SIZES.items():
            add(f"{_op}_{_mode}_{_sz}", [_op],
                lambda x, s, _op=_op, _ac=_ac, _hp=_hp: getattr(raw, _op)(
                    images=x, size=s, align_corners=_ac, half_pixel_centers=_hp),
                inputs(image(_shape), np.array(_out, np.int32)),
                rtol=1e-5, atol=1e-3, dynamic=_sz == "up")
    for _dt in INT_TYPES + ("float16", "bfloat16", "float64"):
        add(f"{_op}_{_dt}", [_op],
            lambda x, s, _op=_op: getattr(raw, _op)(images=x, size=s, half_pixel_centers=True),
            inputs(image((1, 5, 6, 2), _dt, -100, 100), np.array([8, 3], np.int32)),
            rtol=1e-5, atol=1e-3)

for _ac in (False, True):
    for _sz, (_shape, _out) in dict(_SIZES, odd=((1, 7, 5, 3), (3, 4))).items():
        add(f"ResizeArea_{'align' if _ac else 'legacy'}_{_sz}", ["ResizeArea"],
            lambda x, s, _ac=_ac: raw.ResizeArea(images=x, size=s, align_corners=_ac),
            inputs(image(_shape), np.array(_out, np.int32)), rtol=1e-5, atol=1e-3,
            dynamic=_sz == "down")
for _dt in INT_TYPES + ("float16", "bfloat16", "float64"):
    add(f"ResizeArea_{_dt}", ["ResizeArea"],
        lambda x, s: raw.ResizeArea(images=x, size=s),
        inputs(image((2, 6, 5, 1), _dt, -100, 100), np.array([4, 3], np.int32)),
        rtol=1e-5, atol=1e-3)

# the row-once kernel keeps TF's float32 arithmetic and order: the same values, bit for bit
for _name, (_shape, _out, _ac, _hp) in {
        "up2_halfpix": ((2, 16, 12, 32), (32, 24), False, True),
        "down_align": ((1, 23, 30, 5), (9, 11), True, False),
        "mixed_legacy": ((1, 10, 40, 3), (25, 13), False, False)}.items():
    add(f"ResizeBilinear_exact_{_name}", ["ResizeBilinear"],
        lambda x, s, _ac=_ac, _hp=_hp: raw.ResizeBilinear(
            images=x, size=s, align_corners=_ac, half_pixel_centers=_hp),
        inputs(image(_shape), np.array(_out, np.int32)), rtol=0, atol=0)

add("ResizeBilinear_empty_batch", ["ResizeBilinear"],
    lambda x, s: raw.ResizeBilinear(images=x, size=s),
    inputs(np.zeros((0, 3, 4, 2), np.float32), np.array([5, 5], np.int32)))
add("ResizeNearestNeighbor_bool_free_uint8_up", ["ResizeNearestNeighbor"],
    lambda x: tf.image.resize(x, [8, 10], method="nearest"),
    inputs(image((1, 4, 5, 3), "uint8")))

# -- tf.image.resize: every method, with and without antialias -------------------------------

for _method in ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian",
                "mitchellcubic"):
    for _aa in (False, True):
        for _sz, _shape, _out in (("down", (1, 12, 10, 3), (5, 7)),
                                  ("up", (2, 4, 5, 1), (9, 7))):
            _expect = {"bilinear": "ResizeBilinear", "nearest": "ResizeNearestNeighbor",
                       "bicubic": "ResizeBicubic", "area": "ResizeArea"}.get(_method)
            if _expect is None or (_aa and _method in ("bilinear", "bicubic")):
                _expect = "ScaleAndTranslate"
            add(f"resize_{_method}_{'aa_' if _aa else ''}{_sz}", [_expect],
                lambda x, _m=_method, _aa=_aa, _out=_out: tf.image.resize(
                    x, _out, method=_m, antialias=_aa),
                inputs(image(_shape)), rtol=1e-5, atol=1e-3)

# -- ScaleAndTranslate ----------------------------------------------------------------------

for _k in ("lanczos1", "lanczos3", "lanczos5", "gaussian", "box", "triangle", "keyscubic",
           "mitchellcubic"):
    for _aa in (True, False):
        add(f"ScaleAndTranslate_{_k}_{'aa' if _aa else 'noaa'}", ["ScaleAndTranslate"],
            lambda x, s, sc, tr, _k=_k, _aa=_aa: raw.ScaleAndTranslate(
                images=x, size=s, scale=sc, translation=tr, kernel_type=_k, antialias=_aa),
            inputs(image((1, 9, 8, 2)), np.array([5, 13], np.int32),
                   np.array([0.55, 1.7], np.float32), np.array([0.3, -1.25], np.float32)),
            rtol=1e-5, atol=1e-3, dynamic=_k == "lanczos3")
for _dt in INT_TYPES + ("float16", "bfloat16", "float64"):
    add(f"ScaleAndTranslate_{_dt}", ["ScaleAndTranslate"],
        lambda x, s, sc, tr: raw.ScaleAndTranslate(images=x, size=s, scale=sc, translation=tr,
                                                   kernel_type="keyscubic"),
        inputs(image((2, 6, 7, 1), _dt, -100, 100), np.array([4, 9], np.int32),
               np.array([0.7, 1.3], np.float32), np.array([0.0, 0.5], np.float32)),
        rtol=1e-5, atol=1e-3)

# an inf or NaN reaches only the outputs whose spans hold it, as in TF's tap-by-tap kernels: a
# weight matrix would spread inf * 0 = NaN along its whole row and column


def _poisoned(shape):
    def gen(rng):
        x = rand(rng, shape, "float32", 0, 255)
        x[0, 1, 2, 0], x[0, shape[1] - 2, shape[2] // 2, 1] = np.inf, np.nan
        x[-1, shape[1] // 2, shape[2] - 1, 0] = -np.inf
        return x
    return gen


for _k, _aa, _out, _sc, _tr in (("lanczos3", True, (5, 4), (0.55, 0.45), (0.3, -0.2)),
                                ("keyscubic", False, (14, 17), (1.6, 1.9), (0.0, 0.5)),
                                ("box", True, (6, 6), (0.7, 0.6), (-1.5, 0.75))):
    add(f"ScaleAndTranslate_non_finite_{_k}", ["ScaleAndTranslate"],
        lambda x, s, sc, tr, _k=_k, _aa=_aa: raw.ScaleAndTranslate(
            images=x, size=s, scale=sc, translation=tr, kernel_type=_k, antialias=_aa),
        inputs(_poisoned((2, 9, 8, 2)), np.array(_out, np.int32), np.array(_sc, np.float32),
               np.array(_tr, np.float32)), rtol=1e-5, atol=1e-3)
for _sz, _out in (("down", (4, 3)), ("up", (13, 11))):
    add(f"ResizeArea_non_finite_{_sz}", ["ResizeArea"],
        lambda x, s: raw.ResizeArea(images=x, size=s),
        inputs(_poisoned((2, 9, 8, 2)), np.array(_out, np.int32)), rtol=1e-5, atol=1e-3)

# -- CropAndResize --------------------------------------------------------------------------

_BOXES = np.array([[0.1, 0.2, 0.8, 0.9], [-0.2, -0.1, 0.5, 1.3], [0.9, 0.8, 0.2, 0.1],
                   [0.3, 0.3, 0.3, 0.3], [0.0, 0.0, 1.0, 1.0]], np.float32)
_BOX_IND = np.array([0, 1, 1, 0, 1], np.int32)
for _method in ("bilinear", "nearest"):
    for _crop in ((4, 5), (1, 1), (1, 3)):
        add(f"CropAndResize_{_method}_{_crop[0]}x{_crop[1]}", ["CropAndResize"],
            lambda x, b, i, c, _m=_method: raw.CropAndResize(
                image=x, boxes=b, box_ind=i, crop_size=c, method=_m,
                extrapolation_value=-7.5),
            inputs(image((2, 7, 9, 3)), _BOXES, _BOX_IND, np.array(_crop, np.int32)),
            rtol=1e-5, atol=1e-3, dynamic=_crop == (4, 5))
for _dt in ("uint8", "uint16", "int8", "int16", "int32", "int64", "float16", "float64"):
    add(f"CropAndResize_{_dt}", ["CropAndResize"],
        lambda x, b, i: tf.image.crop_and_resize(x, b, i, [3, 4]),
        inputs(image((2, 6, 5, 2), _dt, -100, 100), _BOXES, _BOX_IND), rtol=1e-5, atol=1e-3)
add("CropAndResize_no_boxes", ["CropAndResize"],
    lambda x, b, i: tf.image.crop_and_resize(x, b, i, [3, 4]),
    inputs(image((1, 6, 5, 2)), np.zeros((0, 4), np.float32), np.zeros(0, np.int32)))

# -- non-max suppression --------------------------------------------------------------------


def boxes(n, dtype="float32", seed_shift=0):
    def gen(rng):
        c = rng.uniform(0, 1, (n, 2))
        hw = rng.uniform(0.05, 0.4, (n, 2))
        b = np.concatenate([c - hw / 2, c + hw / 2], axis=1)
        flip = rng.random(n) < 0.3  # some boxes given as (ymax, xmax, ymin, xmin)
        b[flip] = b[flip][:, [2, 3, 0, 1]]
        return b.astype(dtype)
    return gen


def scores(n, dtype="float32"):
    return lambda rng: rng.permutation(n).astype(dtype) / n + rng.uniform(0, 0.5 / n, n).astype(
        dtype)


for _dt in ("float32", "float16"):
    _n = 40
    add(f"NonMaxSuppressionV3_{_dt}", ["NonMaxSuppressionV3"],
        lambda b, s, m, t, st: raw.NonMaxSuppressionV3(
            boxes=b, scores=s, max_output_size=m, iou_threshold=t, score_threshold=st),
        inputs(boxes(_n, _dt), scores(_n, _dt), np.int32(12), np.array(0.3, _dt),
               np.array(0.2, _dt)), dynamic=_dt == "float32")
    for _pad in (False, True):
        add(f"NonMaxSuppressionV4_{_dt}_{'pad' if _pad else 'nopad'}", ["NonMaxSuppressionV4"],
            lambda b, s, m, t, st, _pad=_pad: raw.NonMaxSuppressionV4(
                boxes=b, scores=s, max_output_size=m, iou_threshold=t, score_threshold=st,
                pad_to_max_output_size=_pad),
            inputs(boxes(_n, _dt), scores(_n, _dt), np.int32(30), np.array(0.4, _dt),
                   np.array(0.5, _dt)))
        for _sigma in (0.0, 0.5):
            add(f"NonMaxSuppressionV5_{_dt}_{'pad' if _pad else 'nopad'}_sigma{_sigma}",
                ["NonMaxSuppressionV5"],
                lambda b, s, m, t, st, sg, _pad=_pad: raw.NonMaxSuppressionV5(
                    boxes=b, scores=s, max_output_size=m, iou_threshold=t, score_threshold=st,
                    soft_nms_sigma=sg, pad_to_max_output_size=_pad),
                inputs(boxes(_n, _dt), scores(_n, _dt), np.int32(25), np.array(0.4, _dt),
                       np.array(0.1, _dt), np.array(_sigma, _dt)),
                rtol=4e-3 if _dt == "float16" else 1e-6)
    add(f"NonMaxSuppressionV2_{_dt}", ["NonMaxSuppressionV2"],
        lambda b, s, m, t: raw.NonMaxSuppressionV2(boxes=b, scores=s, max_output_size=m,
                                                   iou_threshold=t),
        inputs(boxes(_n, _dt), scores(_n, _dt), np.int32(10), np.array(0.5, _dt)))
add("NonMaxSuppression_v1", ["NonMaxSuppression"],
    lambda b, s, m: raw.NonMaxSuppression(boxes=b, scores=s, max_output_size=m,
                                          iou_threshold=0.35),
    inputs(boxes(30), scores(30), np.int32(100)))
add("NonMaxSuppressionV3_empty", ["NonMaxSuppressionV3"],
    lambda b, s, m: tf.image.non_max_suppression(b, s, m),
    inputs(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.int32(5)))
add("NonMaxSuppressionV3_ties_zero_area", ["NonMaxSuppressionV3"],
    lambda b, s, m: tf.image.non_max_suppression(b, s, m, iou_threshold=0.5),
    inputs(np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0.5, 0.5, 0.5, 0.9], [0, 0, 0.9, 1],
                     [2, 2, 3, 3]], np.float32),
           np.array([0.9, 0.9, 0.95, 0.9, 0.9], np.float32), np.int32(5)))
add("NonMaxSuppressionV5_public_soft", ["NonMaxSuppressionV5"],
    lambda b, s: tf.image.non_max_suppression_with_scores(b, s, 20, soft_nms_sigma=0.3,
                                                          score_threshold=0.05),
    inputs(boxes(50), scores(50)), rtol=1e-5)


def overlaps(n):
    def gen(rng):
        m = rng.uniform(0, 1, (n, n)).astype(np.float32)
        return (m + m.T) / 2
    return gen


add("NonMaxSuppressionWithOverlaps", ["NonMaxSuppressionWithOverlaps"],
    lambda o, s, m, t, st: raw.NonMaxSuppressionWithOverlaps(
        overlaps=o, scores=s, max_output_size=m, overlap_threshold=t, score_threshold=st),
    inputs(overlaps(20), scores(20), np.int32(8), np.float32(0.6), np.float32(0.1)))
# TF reads overlaps[candidate, selected]: an asymmetric matrix (the overlap as a share of the
# candidate's area) told apart from its transpose (tfdeploy read [selected, candidate])
add("NonMaxSuppressionWithOverlaps_asymmetric", ["NonMaxSuppressionWithOverlaps"],
    lambda o, s, m, t, st: raw.NonMaxSuppressionWithOverlaps(
        overlaps=o, scores=s, max_output_size=m, overlap_threshold=t, score_threshold=st),
    inputs(lambda rng: rng.uniform(0, 1, (20, 20)).astype(np.float32), scores(20),
           np.int32(12), np.float32(0.5), np.float32(0.0)))

# NaN and inf corners as TF's IOU reads them (C++'s min and max skip a NaN in second place),
# and a NaN overlap weighing the candidate's score by 0 (hard NMS: it comes back after every
# positive score, if 0 passes the score threshold; soft NMS: its score is NaN, dropped)
_nan_boxes = np.array([[np.nan, 0, 1, 1], [0, 0, 1, 1], [0.5, 0.5, np.inf, 0.9],
                       [0, 0, 0.9, 1], [2, 2, 3, -np.inf], [0.1, 0.1, 0.6, np.nan],
                       [0.2, np.nan, 0.7, 0.8], [0.3, 0.3, 0.4, 0.4]], np.float32)
_nan_scores = np.array([0.9, 0.9, 0.95, 0.9, 0.9, 0.8, 0.85, 0.7], np.float32)
for _st in (-np.inf, 0.0):
    add(f"NonMaxSuppressionV3_nan_boxes_{'above0' if _st == 0 else 'all'}",
        ["NonMaxSuppressionV3"],
        lambda b, s, m, t, st: raw.NonMaxSuppressionV3(
            boxes=b, scores=s, max_output_size=m, iou_threshold=t, score_threshold=st),
        inputs(_nan_boxes, _nan_scores, np.int32(8), np.float32(0.5), np.float32(_st)))
# negative scores (logits): a weight raises them, and TF weighs a candidate only when it comes
# to the top of its queue, so the order differs from weighing every candidate at once
add("NonMaxSuppressionV5_logits_soft", ["NonMaxSuppressionV5"],
    lambda b, s: tuple(raw.NonMaxSuppressionV5(
        boxes=b, scores=s, max_output_size=30, iou_threshold=0.5, score_threshold=-np.inf,
        soft_nms_sigma=0.5))[:2],
    inputs(boxes(40), lambda rng: rng.uniform(-3, 1, 40).astype(np.float32)), rtol=1e-5)
add("NonMaxSuppressionV3_nan_boxes_negative_scores", ["NonMaxSuppressionV3"],
    lambda b, s, m: raw.NonMaxSuppressionV3(boxes=b, scores=s, max_output_size=m,
                                            iou_threshold=0.5, score_threshold=-np.inf),
    inputs(_nan_boxes, np.array([3e38, 0.9, -0.0, 0.9, -3e38, 0.8, 0.85, 1e-30], np.float32),
           np.int32(8)))
add("NonMaxSuppressionV5_nan_boxes_soft", ["NonMaxSuppressionV5"],
    lambda b, s: tuple(raw.NonMaxSuppressionV5(
        boxes=b, scores=s, max_output_size=8, iou_threshold=0.5, score_threshold=-np.inf,
        soft_nms_sigma=0.5))[:2],
    inputs(_nan_boxes, _nan_scores), rtol=1e-5)


def det_boxes(batch, n, q, spread=1.2):
    def gen(rng):
        c = rng.uniform(-0.1, spread, (batch, n, q, 2))
        hw = rng.uniform(0.05, 0.5, (batch, n, q, 2))
        return np.concatenate([c - hw / 2, c + hw / 2], axis=-1).astype(np.float32)
    return gen


def det_scores(batch, n, classes):
    return lambda rng: rng.permutation(batch * n * classes).reshape(
        batch, n, classes).astype(np.float32) / (batch * n * classes)


for _q in ("shared", "perclass"):
    for _pad in (False, True):
        for _clip in (True, False):
            add(f"CombinedNonMaxSuppression_{_q}_{'pad' if _pad else 'nopad'}_"
                f"{'clip' if _clip else 'noclip'}", ["CombinedNonMaxSuppression"],
                lambda b, s, mpc, mt, t, st, _pad=_pad, _clip=_clip:
                    raw.CombinedNonMaxSuppression(
                        boxes=b, scores=s, max_output_size_per_class=mpc, max_total_size=mt,
                        iou_threshold=t, score_threshold=st, pad_per_class=_pad,
                        clip_boxes=_clip),
                inputs(det_boxes(2, 12, 1 if _q == "shared" else 3), det_scores(2, 12, 3),
                       np.int32(3), np.int32(20), np.float32(0.3), np.float32(0.2)),
                dynamic=_q == "shared" and _pad)
add("CombinedNonMaxSuppression_total_small", ["CombinedNonMaxSuppression"],
    lambda b, s: tf.image.combined_non_max_suppression(b, s, 4, 5, 0.5, 0.0),
    inputs(det_boxes(3, 10, 1), det_scores(3, 10, 4)))

# -- ImageProjectiveTransformV3 / V2 --------------------------------------------------------


def transforms(batch):
    def gen(rng):
        out = []
        for _ in range(batch):
            a = rng.uniform(-0.6, 0.6)
            s = rng.uniform(0.7, 1.4)
            out.append([s * np.cos(a), -s * np.sin(a), rng.uniform(-3, 3),
                        s * np.sin(a), s * np.cos(a), rng.uniform(-3, 3),
                        rng.uniform(-0.02, 0.02), rng.uniform(-0.02, 0.02)])
        return np.array(out, np.float32)
    return gen


for _interp in ("NEAREST", "BILINEAR"):
    for _fill in ("REFLECT", "WRAP", "CONSTANT", "NEAREST"):
        add(f"ImageProjectiveTransformV3_{_interp}_{_fill}", ["ImageProjectiveTransformV3"],
            lambda x, t, s, f, _i=_interp, _f=_fill: raw.ImageProjectiveTransformV3(
                images=x, transforms=t, output_shape=s, fill_value=f,
                interpolation=_i, fill_mode=_f),
            inputs(image((2, 7, 8, 3)), transforms(2), np.array([9, 6], np.int32),
                   np.float32(17.5)), rtol=1e-5, atol=1e-3,
            dynamic=_fill == "REFLECT")
for _dt in ("uint8", "int32", "int64", "float16", "bfloat16", "float64"):
    for _interp in ("NEAREST", "BILINEAR"):
        add(f"ImageProjectiveTransformV3_{_dt}_{_interp}", ["ImageProjectiveTransformV3"],
            lambda x, t, s, f, _i=_interp: raw.ImageProjectiveTransformV3(
                images=x, transforms=t, output_shape=s, fill_value=f,
                interpolation=_i, fill_mode="WRAP"),
            inputs(image((1, 6, 5, 2), _dt, 0, 100), transforms(1), np.array([6, 5], np.int32),
                   np.float32(3.0)), rtol=1e-5, atol=1e-3)
add("ImageProjectiveTransformV3_shared_transform", ["ImageProjectiveTransformV3"],
    lambda x, t, s, f: raw.ImageProjectiveTransformV3(
        images=x, transforms=t, output_shape=s, fill_value=f,
        interpolation="BILINEAR", fill_mode="CONSTANT"),
    inputs(image((3, 5, 5, 1)), transforms(1), np.array([5, 5], np.int32), np.float32(-1)),
    rtol=1e-5, atol=1e-3)
add("ImageProjectiveTransformV2", ["ImageProjectiveTransformV2"],
    lambda x, t, s: raw.ImageProjectiveTransformV2(
        images=x, transforms=t, output_shape=s, interpolation="BILINEAR",
        fill_mode="REFLECT"),
    inputs(image((2, 6, 7, 2)), transforms(2), np.array([6, 7], np.int32)),
    rtol=1e-5, atol=1e-3)

# -- colour ---------------------------------------------------------------------------------


def rgb(shape, dtype="float32"):
    def gen(rng):
        x = rng.uniform(0, 1, shape)
        x.reshape(-1, 3)[::7] = x.reshape(-1, 3)[::7, :1]  # some grey pixels
        x.reshape(-1, 3)[1::11, 1] = x.reshape(-1, 3)[1::11, 0]  # some ties
        if dtype == "bfloat16":
            return x.astype(np.float32).astype(_bf16())
        return x.astype(dtype)
    return gen


for _dt in FLOAT_TYPES:
    _tol = dict(rtol=2e-2, atol=2e-2) if _dt in ("float16", "bfloat16") else dict(
        rtol=1e-5, atol=1e-6)
    add(f"RGBToHSV_{_dt}", ["RGBToHSV"], tf.image.rgb_to_hsv, inputs(rgb((2, 5, 6, 3), _dt)),
        dynamic=_dt == "float32", **_tol)
    add(f"HSVToRGB_{_dt}", ["HSVToRGB"], tf.image.hsv_to_rgb, inputs(rgb((4, 7, 3), _dt)),
        **_tol)
add("RGBToHSV_single_pixel", ["RGBToHSV"], tf.image.rgb_to_hsv,
    inputs(np.array([0.2, 0.9, 0.4], np.float32)))

add("AdjustContrastv2", ["AdjustContrastv2"],
    lambda x, f: raw.AdjustContrastv2(images=x, contrast_factor=f),
    inputs(image((2, 5, 6, 3), "float32", 0, 1), np.float32(1.7)), rtol=1e-5, atol=1e-6,
    dynamic=True)
add("AdjustContrastv2_3d_public", ["AdjustContrastv2"],
    lambda x: tf.image.adjust_contrast(x, 0.4),
    inputs(image((5, 4, 1), "float32", 0, 1)), rtol=1e-5, atol=1e-6)
for _scale in (0.3, 1.8):
    add(f"AdjustSaturation_{_scale}", ["AdjustSaturation"],
        lambda x, s: raw.AdjustSaturation(images=x, scale=s),
        inputs(rgb((2, 5, 6, 3)), np.float32(_scale)), rtol=1e-5, atol=1e-6,
        dynamic=_scale == 0.3)
for _delta in (0.15, -0.4, 0.93):
    add(f"AdjustHue_{_delta}", ["AdjustHue"],
        lambda x, d: raw.AdjustHue(images=x, delta=d),
        inputs(rgb((3, 4, 5, 3)), np.float32(_delta)), rtol=1e-5, atol=1e-6,
        dynamic=_delta == 0.15)

# -- patches --------------------------------------------------------------------------------

for _pad in ("VALID", "SAME"):
    for _k, _s, _r in (((2, 2), (1, 1), (1, 1)), ((3, 2), (2, 3), (1, 1)),
                       ((2, 3), (1, 2), (2, 2)), ((1, 1), (3, 3), (1, 1))):
        add(f"ExtractImagePatches_{_pad}_k{_k[0]}{_k[1]}_s{_s[0]}{_s[1]}_r{_r[0]}{_r[1]}",
            ["ExtractImagePatches"],
            lambda x, _k=_k, _s=_s, _r=_r, _pad=_pad: tf.image.extract_patches(
                x, [1, *_k, 1], [1, *_s, 1], [1, *_r, 1], _pad),
            inputs(image((2, 7, 8, 3))), dynamic=_k == (3, 2))
for _dt in ("int8", "uint8", "int16", "uint16", "int32", "int64", "uint32", "uint64",
            "float16", "bfloat16", "float64", "complex64", "complex128"):
    add(f"ExtractImagePatches_{_dt}", ["ExtractImagePatches"],
        lambda x: tf.image.extract_patches(x, [1, 2, 3, 1], [1, 2, 1, 1], [1, 1, 1, 1],
                                           "SAME"),
        inputs(image((1, 5, 4, 2), _dt, 0, 100)))
# an empty batch: the depth of the result is spelled out, never inferred
add("ExtractImagePatches_empty_batch", ["ExtractImagePatches"],
    lambda x: tf.image.extract_patches(x, [1, 2, 3, 1], [1, 1, 2, 1], [1, 1, 1, 1], "SAME"),
    [np.zeros((0, 5, 4, 3), np.float32)], dynamic=True)
add("ExtractVolumePatches_empty_batch", ["ExtractVolumePatches"],
    lambda x: tf.extract_volume_patches(x, [1, 2, 2, 2, 1], [1, 1, 1, 1, 1], "VALID"),
    [np.zeros((0, 3, 4, 4, 2), np.float32)], dynamic=True)
add("ResizeArea_empty_batch", ["ResizeArea"], lambda x: raw.ResizeArea(images=x, size=[3, 4]),
    [np.zeros((0, 5, 6, 2), np.float32)], dynamic=True)
add("ScaleAndTranslate_empty_batch", ["ScaleAndTranslate"],
    lambda x: tf.image.resize(x, [3, 4], method="lanczos3", antialias=True),
    [np.zeros((0, 5, 6, 2), np.float32)], dynamic=True)
for _pad in ("VALID", "SAME"):
    add(f"ExtractVolumePatches_{_pad}", ["ExtractVolumePatches"],
        lambda x, _pad=_pad: tf.extract_volume_patches(x, [1, 2, 3, 2, 1], [1, 1, 2, 2, 1],
                                                       _pad),
        inputs(image((2, 4, 5, 6, 2))), dynamic=_pad == "SAME")
