"""SampleDistortedBoundingBox ops: stateless ones bit-exact with TF, stateful ones exact on TF's
first seeded run; raw ops and the public tf.image API."""

from __future__ import annotations

import numpy as np

from . import Case, adder, tf
from . import raw as _raw

CASES: list[Case] = []
add = adder(CASES, "image_bbox", rtol=0, atol=0)

OPS = ("StatelessSampleDistortedBoundingBox",)
OPS_V2 = ("SampleDistortedBoundingBoxV2",)
OPS_V1 = ("SampleDistortedBoundingBox",)
SIZE_TYPES = ("int32", "int64", "int16", "int8", "uint8")


def _boxes(rng, n, batch=1, ordered=True):
    """``n`` random boxes (y0, x0, y1, x1) in [0, 1], corners in order unless ``ordered`` is
    False."""
    b = rng.random((batch, n, 4)).astype(np.float32)
    if ordered:
        b = np.concatenate([np.minimum(b[..., :2], b[..., 2:]),
                            np.maximum(b[..., :2], b[..., 2:])], axis=-1)
    return b


def _seeds(rng, n, dtype="int64"):
    return rng.integers(-(2**31), 2**31, size=(n, 2)).astype(dtype)


def _stateless(n_seeds, **attrs):
    """One op per seed row (each its own sample), outputs stacked: many draws in one case."""
    def fn(size, boxes, min_covered, seeds):
        outs = [_raw().StatelessSampleDistortedBoundingBox(
            image_size=size, bounding_boxes=boxes, min_object_covered=min_covered,
            seed=seeds[i], **attrs) for i in range(n_seeds)]
        stack = tf().stack
        return tuple(stack([o[k] for o in outs]) for k in range(3))
    return fn


def _stateless1(**attrs):
    def fn(size, boxes, min_covered, seed):
        return tuple(_raw().StatelessSampleDistortedBoundingBox(
            image_size=size, bounding_boxes=boxes, min_object_covered=min_covered, seed=seed,
            **attrs))
    return fn


def _inputs(size, n_boxes=3, batch=1, min_covered=0.1, n_seeds=8, size_dtype="int32",
            seed_dtype="int64", ordered=True):
    def make(rng):
        return [np.array([*size, 3], size_dtype), _boxes(rng, n_boxes, batch, ordered),
                np.float32(min_covered), _seeds(rng, n_seeds, seed_dtype)]
    return make


# -- stateless: dtypes, attributes, many seeds each ---------------------------------------------

for dt in SIZE_TYPES:
    hw = (100, 120) if dt not in ("int8",) else (60, 90)
    add(f"stateless_{dt}", OPS, _stateless(8), _inputs(hw, size_dtype=dt),
        out_dtypes=(dt, dt, "float32"), dynamic=dt == "int32")
add("stateless_seed_int32", OPS, _stateless(8), _inputs((64, 48), seed_dtype="int32"))
add("stateless_scalar_seed_input", OPS, _stateless1(),
    lambda r: [np.array([30, 40, 1], np.int64), _boxes(r, 2), np.float32(0.3),
               np.array([7, -9], np.int32)], dynamic=True)

for name, attrs in [
        ("aspect_wide", dict(aspect_ratio_range=[0.2, 5.0])),
        ("aspect_fixed", dict(aspect_ratio_range=[1.5, 1.5])),
        ("aspect_reversed", dict(aspect_ratio_range=[2.0, 0.5])),
        ("aspect_extreme", dict(aspect_ratio_range=[1e-3, 1e3])),
        ("area_small", dict(area_range=[0.01, 0.05])),
        ("area_fixed", dict(area_range=[0.3, 0.3])),
        ("area_reversed", dict(area_range=[0.9, 0.1])),  # every attempt fails: whole image
        ("area_full", dict(area_range=[1.0, 1.0])),
        ("max_attempts_1", dict(max_attempts=1)),
        ("max_attempts_3", dict(max_attempts=3, area_range=[0.05, 0.2])),
        ("max_attempts_1000", dict(max_attempts=1000, area_range=[0.01, 0.02])),
        ("all_attrs", dict(aspect_ratio_range=[0.5, 2.0], area_range=[0.1, 0.7],
                           max_attempts=20, use_image_if_no_bounding_boxes=True))]:
    add(f"stateless_{name}", OPS, _stateless(8, **attrs), _inputs((90, 70)))

for name, mc in [("covered_0", 0.0), ("covered_1", 1.0), ("covered_07", 0.7),
                 ("covered_2", 2.0), ("covered_denormal", 1e-39)]:  # TF flushes denormals
    add(f"stateless_{name}", OPS, _stateless(8, area_range=[0.02, 0.3]),
        _inputs((80, 80), n_boxes=2, min_covered=mc))

# boxes: several batches, unordered corners (empty or inverted rectangles), one box, many boxes
add("stateless_boxes_batch", OPS, _stateless(8), _inputs((50, 60), n_boxes=2, batch=3))
add("stateless_boxes_unordered", OPS, _stateless(8),
    _inputs((50, 60), n_boxes=4, ordered=False, min_covered=0.0))
add("stateless_boxes_one", OPS, _stateless(8), _inputs((300, 200), n_boxes=1, min_covered=0.5))
add("stateless_boxes_many", OPS, _stateless(4), _inputs((300, 200), n_boxes=200))
add("stateless_boxes_whole", OPS, _stateless(8),
    lambda r: [np.array([40, 30, 3], np.int32), np.array([[[0, 0, 1, 1]]], np.float32),
               np.float32(0.1), _seeds(r, 8)])
add("stateless_boxes_zero_area", OPS, _stateless(4),  # a box with no pixels never counts
    lambda r: [np.array([40, 30, 3], np.int32), np.array([[[0.5, 0.5, 0.5, 0.5]]], np.float32),
               np.float32(0.0), _seeds(r, 4)])

# no boxes: the whole image stands in
for name, shape in [("empty_boxes", (1, 0, 4)), ("empty_batch", (0, 2, 4))]:
    add(f"stateless_{name}", OPS, _stateless(8, use_image_if_no_bounding_boxes=True),
        lambda r, shape=shape: [np.array([64, 80, 3], np.int32), np.zeros(shape, np.float32),
                                np.float32(0.1), _seeds(r, 8)], dynamic=name == "empty_boxes")

# image sizes: tiny, 1-pixel, empty (bboxes are 0/0 = NaN), large (int32 areas wrap as in C)
for name, hw, dt in [("tiny", (3, 2), "int32"), ("one_pixel", (1, 1), "int32"),
                     ("one_row", (1, 500), "int64"), ("zero", (0, 0), "int32"),
                     ("zero_width", (7, 0), "int32"), ("uint8_max", (255, 255), "uint8"),
                     ("large", (50_000, 70_000), "int64"),
                     ("huge", (2**31 - 2, 2**31 - 2), "int64"),
                     ("tall", (2_000_000_000, 1), "int64")]:
    add(f"stateless_size_{name}", OPS, _stateless(8), _inputs(hw, size_dtype=dt))
add("stateless_size_tall_narrow_aspect", OPS,  # large Uniform ranges: rejection sampling
    _stateless(16, aspect_ratio_range=[4e-10, 6e-10], area_range=[0.1, 1.0]),
    lambda r: [np.array([2_000_000_000, 1, 3], np.int64), np.array([[[0, 0, 1, 1]]], np.float32),
               np.float32(0.1), _seeds(r, 16)])


# -- stateful: TF's first run with a seed ---------------------------------------------------------

_SEED_PAIRS = [(1, 2), (0, 87654321), (123, 0), (2**40 + 3, 5), (7, 2**62 + 11)]


def _stack(outs):
    return tuple(tf().stack([o[k] for o in outs]) for k in range(3))


def _v2(seeds=_SEED_PAIRS, **attrs):
    def fn(size, boxes, min_covered):
        return _stack([_raw().SampleDistortedBoundingBoxV2(
            image_size=size, bounding_boxes=boxes, min_object_covered=min_covered, seed=s1,
            seed2=s2, **attrs) for s1, s2 in seeds])
    return fn


def _v1(seeds=_SEED_PAIRS, **attrs):
    def fn(size, boxes):
        return _stack([_raw().SampleDistortedBoundingBox(
            image_size=size, bounding_boxes=boxes, seed=s1, seed2=s2, **attrs)
            for s1, s2 in seeds])
    return fn


def _stateful_inputs(size, n_boxes=3, size_dtype="int32", min_covered=None):
    def make(rng):
        x = [np.array([*size, 3], size_dtype), _boxes(rng, n_boxes)]
        return x if min_covered is None else [*x, np.float32(min_covered)]
    return make


for dt in SIZE_TYPES:
    hw = (100, 120) if dt != "int8" else (60, 90)
    add(f"v2_{dt}", OPS_V2, _v2(), _stateful_inputs(hw, size_dtype=dt, min_covered=0.1),
        out_dtypes=(dt, dt, "float32"), dynamic=dt == "int64")
    add(f"v1_{dt}", OPS_V1, _v1(), _stateful_inputs(hw, size_dtype=dt),
        out_dtypes=(dt, dt, "float32"), dynamic=dt == "int32")
add("v2_attrs", OPS_V2, _v2(aspect_ratio_range=[0.3, 3.0], area_range=[0.02, 0.4], max_attempts=7),
    _stateful_inputs((200, 150), min_covered=0.5))
add("v1_attrs", OPS_V1, _v1(aspect_ratio_range=[0.3, 3.0], area_range=[0.02, 0.4], max_attempts=7,
                            min_object_covered=0.5), _stateful_inputs((200, 150)))
add("v1_covered_0", OPS_V1, _v1(min_object_covered=0.0, area_range=[0.01, 0.1]),
    _stateful_inputs((64, 64), n_boxes=1))
add("v2_empty_boxes", OPS_V2, _v2(use_image_if_no_bounding_boxes=True),
    lambda r: [np.array([64, 80, 3], np.int32), np.zeros((1, 0, 4), np.float32),
               np.float32(0.1)])
add("v1_empty_boxes", OPS_V1, _v1(use_image_if_no_bounding_boxes=True),
    lambda r: [np.array([64, 80, 3], np.int64), np.zeros((2, 0, 4), np.float32)])


# -- the public API -------------------------------------------------------------------------------

def _api_stateless(**kw):
    def fn(size, boxes, seed):
        return tuple(tf().image.stateless_sample_distorted_bounding_box(size, boxes, seed, **kw))
    return fn


def _api_stateful(**kw):
    def fn(size, boxes):
        return tuple(tf().image.sample_distorted_bounding_box(size, boxes, **kw))
    return fn


def _api_v1(**kw):
    def fn(size, boxes):
        return tuple(tf().compat.v1.image.sample_distorted_bounding_box(size, boxes, **kw))
    return fn


add("api_stateless", OPS, _api_stateless(),
    lambda r: [np.array([120, 90, 3], np.int32), _boxes(r, 2), np.array([3, 4], np.int32)],
    dynamic=True)
add("api_stateless_attrs", OPS,
    _api_stateless(min_object_covered=0.4, aspect_ratio_range=(0.5, 2.0), area_range=(0.1, 0.6),
                   max_attempts=30, use_image_if_no_bounding_boxes=True),
    lambda r: [np.array([120, 90, 3], np.int64), np.zeros((1, 0, 4), np.float32),
               np.array([-5, 2**40], np.int64)])
add("api_stateful", OPS_V2, _api_stateful(seed=42),
    lambda r: [np.array([120, 90, 3], np.int32), _boxes(r, 2)], dynamic=True)
add("api_stateful_attrs", OPS_V2,
    _api_stateful(seed=7, min_object_covered=0.0, aspect_ratio_range=(0.5, 2.0),
                  area_range=(0.1, 0.6), max_attempts=30, use_image_if_no_bounding_boxes=True),
    lambda r: [np.array([100, 80, 1], np.uint8), np.zeros((1, 0, 4), np.float32)])
add("api_compat_v1", OPS_V2, _api_v1(seed=9, min_object_covered=0.2),
    lambda r: [np.array([77, 55, 3], np.int16), _boxes(r, 3)])
