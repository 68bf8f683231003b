"""SampleDistortedBoundingBox ops: a random crop covering part of the given boxes, bit-exact
with TensorFlow's CPU kernels (tensorflow/core/kernels/image/sample_distorted_bounding_box_op.cc).

The kernel draws from a ``SimplePhilox``: consecutive uint32 samples of one Philox stream,
``RandFloat`` = the low 23 bits as a float in [0, 1), ``Uniform(n)`` = TF's ``ExactUniformInt``
(rejection sampling, so an attempt may consume more than one sample). Each attempt draws an
aspect ratio, then ``GenerateRandomCrop`` draws a height and the crop's offset; the first crop
covering ``min_object_covered`` of one box wins, else the whole image. The attempts depend on
each other's sample consumption, so they run as a Python loop (at most ``max_attempts``, one
crop; stopped, as a While loop is, by the loop limits and the evaluation's deadline); the
coverage test is vectorised over the boxes.

Arithmetic follows the compiled kernel (x86-64, checked by disassembly): float32 products and
quotients (no FMA), ``sqrtf`` (correctly rounded, as numpy's), glibc ``lrintf`` (``cvtss2si``:
round half to even, LONG_MIN when out of range or NaN), ``static_cast<int>`` of floats and
doubles (``cvttss2si``/``cvttsd2si``: toward zero, INT_MIN out of range), int32 products that
wrap; and TF runs kernels with denormals flushed to zero (FTZ/DAZ), so a denormal attribute,
box or ``min_object_covered`` counts as 0 here too. Stateful ops give TF's first run on every
call when ``seed`` or ``seed2`` is set (TF's later runs move on by ``max_attempts`` Philox calls).
"""

from __future__ import annotations

from time import monotonic

import numpy as np

from tfdeploy.kernels.common import flush_subnormals, op
from tfdeploy.kernels.random.stateless import stateful_gen
from tfdeploy.numerics import philox as px
from tfdeploy.runtime.limits import loop_deadline, loop_limit, too_long, too_many_iterations

_INT_MIN = -(2**31)
_LONG_MIN = -(2**63)
_F32 = np.float32
_TINY = np.finfo(np.float32).tiny
#: GenerateRandomCrop's ``const float kEps = 0.0000001``, promoted to double
_KEPS = float(np.float32(1e-7))
#: attempts run between checks of the loop limits and the deadline (~10 ms of them)
_CHECK_EVERY = 4096


# -- C conversions -------------------------------------------------------------------------------

def _ftz(x) -> np.float32:
    """A float32 as TF's kernels see it: they run with denormals flushed to zero (FTZ/DAZ)."""
    x = _F32(x)
    return _F32(np.copysign(_F32(0.0), x)) if abs(x) < _TINY else x


def _i32(v: int) -> int:
    """An int as C's 32-bit ``int`` after wrapping arithmetic (two's complement)."""
    return ((v + 2**31) & 0xFFFFFFFF) - 2**31


def _lrintf(x) -> int:
    """glibc ``lrintf`` on x86-64 (``cvtss2si``): nearest, ties to even; LONG_MIN if invalid."""
    f = float(x)
    if f != f or abs(f) >= 2.0**63:
        return _LONG_MIN
    return round(f)  # Python rounds floats half to even, exactly


def _trunc_int(x) -> int:
    """``static_cast<int>`` of a float or double (``cvtt*2si``): toward zero, INT_MIN if invalid."""
    f = float(x)
    if not -(2.0**31) - 1.0 < f < 2.0**31:  # also false for NaN
        return _INT_MIN
    return int(f)


def _trunc_int_array(x: np.ndarray) -> np.ndarray:
    """:func:`_trunc_int` of a float32 array (no NaN), as int64."""
    t = np.trunc(x.astype(np.float64))
    return np.where((t > -(2.0**31) - 1.0) & (t < 2.0**31), t, _INT_MIN).astype(np.int64)


def _wrap32(a: np.ndarray) -> np.ndarray:
    return ((a + 2**31) & 0xFFFFFFFF) - 2**31


# -- SimplePhilox --------------------------------------------------------------------------------

class _SimplePhilox:
    """TF's ``SimplePhilox`` over a Philox generator: one uint32 sample at a time, in order."""

    def __init__(self, gen, chunk: int) -> None:
        self.key, self.counter = gen
        self.chunk = max(int(chunk), 1)  # Philox calls fetched at once
        self.calls = 0
        self.buf: list[int] = []
        self.pos = 0

    def rand32(self) -> int:
        if self.pos == len(self.buf):
            idx = np.arange(self.calls, self.calls + self.chunk, dtype=np.uint64)
            self.buf = px.blocks(self.key, self.counter, idx).reshape(-1).tolist()
            self.calls += self.chunk
            self.pos = 0
        self.pos += 1
        return self.buf[self.pos - 1]

    def rand_float(self) -> np.float32:
        """``Uint32ToFloat``: the low 23 bits as the mantissa of [1, 2), minus 1."""
        bits = np.uint32(0x3F800000 | (self.rand32() & 0x7FFFFF))
        return bits.view(np.float32) - _F32(1.0)

    def uniform(self, n: int) -> int:
        """``ExactUniformInt<uint32>(n)``: rejection sampling, ``n`` taken modulo 2**32."""
        n &= 0xFFFFFFFF
        if n == 0:
            self.rand32()  # consumed anyway
            return 0
        if n & (n - 1) == 0:
            return self.rand32() & (n - 1)
        rem = 0xFFFFFFFF % n + 1
        r = self.rand32()
        while r < rem:
            r = self.rand32()
        return r % n


# -- the kernel ----------------------------------------------------------------------------------

def _random_crop(width: int, height: int, min_rel, max_rel, ar, rng: _SimplePhilox):
    """``GenerateRandomCrop``: (x, y, w, h) of a crop of the given aspect ratio, or None."""
    if not (max_rel > 0 and ar > 0 and width > 0 and height > 0) or min_rel > max_rel:
        return None  # (NaN ratios pass, as in C: `x <= 0.0` is false for NaN)
    fw, fh = _F32(width), _F32(height)
    min_area = _ftz(_ftz(min_rel * fw) * fh)
    max_area = _ftz(_ftz(max_rel * fw) * fh)
    h = _i32(_lrintf(np.sqrt(_ftz(min_area / ar))))
    max_h = _i32(_lrintf(np.sqrt(_ftz(max_area / ar))))
    if _lrintf(_F32(max_h) * ar) > width:
        # the largest height with round(h * ar) <= width, computed in double
        max_h = _trunc_int((width + 0.5 - _KEPS) / float(ar))
        if _lrintf(_F32(max_h) * ar) > width:
            max_h = _i32(max_h - 1)
    if max_h > height:
        max_h = height
    if h >= max_h:
        h = max_h
    else:
        h = _i32(h + rng.uniform(max_h - h + 1))
    w = _i32(_lrintf(_F32(h) * ar))
    area = _F32(_i32(w * h))
    if area < min_area:  # rounding made it too small: one row more
        h = _i32(h + 1)
        w = _i32(_lrintf(_F32(h) * ar))
        area = _F32(_i32(w * h))
    if area > max_area:  # too big: one row less
        h = _i32(h - 1)
        w = _i32(_lrintf(_F32(h) * ar))
        area = _F32(_i32(w * h))
    if (area < min_area or area > max_area or w > width or h > height
            or w <= 0 or h <= 0):
        return None
    y = rng.uniform(height - h) if h < height else 0
    x = rng.uniform(width - w) if w < width else 0
    return x, y, w, h


def _covers(crop, boxes: np.ndarray, areas: np.ndarray, min_covered) -> bool:
    """``SatisfiesOverlapConstraints``: does ``crop`` cover enough of one box (area >= 1)?"""
    x0, y0, x1, y1 = crop
    if _i32((x1 - x0) * (y1 - y0)) <= 0:
        return False
    # a non-empty intersection lies inside the crop: its sides need no wrapping, its area may
    d = np.minimum(boxes[:, 2:], (x1, y1)) - np.maximum(boxes[:, :2], (x0, y0))
    inter = np.where((d >= 0).all(axis=1), _wrap32(d[:, 0] * d[:, 1]), 0).astype(np.float32)
    return bool((inter / areas >= min_covered).any())


def _check_attrs(aspect_ratio_range, area_range, max_attempts) -> tuple:
    if len(aspect_ratio_range) != 2:
        raise ValueError("Aspect ratio range field must specify 2 dimensions, got "
                         f"{list(aspect_ratio_range)}")
    ar = [_ftz(v) for v in aspect_ratio_range]
    if not (ar[0] > 0 and ar[1] > 0):
        raise ValueError(f"Aspect ratio range must be positive: {list(aspect_ratio_range)}")
    if len(area_range) != 2:
        raise ValueError(f"Area range field must specify 2 dimensions, got {list(area_range)}")
    area = [_ftz(v) for v in area_range]
    if not (area[0] > 0 and area[1] > 0):
        raise ValueError(f"Area range must be positive: {list(area_range)}")
    if not (area[0] <= 1 and area[1] <= 1):
        raise ValueError(f"Area range must be less than or equal to 1.0: {list(area_range)}")
    if not int(max_attempts) > 0:
        raise ValueError(f"Max attempts must be positive, got {max_attempts}")
    return ar, area, int(max_attempts)


def _min_covered(value) -> np.float32:
    v = np.asarray(value)
    if v.ndim != 0:
        raise ValueError(f"min_object_covered must be 0-D, got shape {list(v.shape)}")
    v = _ftz(v)
    if not v >= 0:
        raise ValueError(f"Min object covered must be non-negative: {v!s}")
    return v


def _image_dims(image_size) -> tuple[int, int, np.dtype]:
    s = np.asarray(image_size)
    if s.dtype.kind not in "iu":
        raise TypeError(f"image_size must be an integer tensor, got {s.dtype}")
    if s.ndim != 1 or s.shape[0] != 3:
        raise ValueError(f"image_size must be a vector of 3 elements, got shape {list(s.shape)}")
    h, w = (int(v) for v in s[:2].tolist())
    # TF reads them as uint64 and wants them below INT32_MAX: negative sizes fail too
    if not 0 <= h < 2**31 - 1:
        raise ValueError(f"image height must be in [0, 2**31 - 1), got {h}")
    if not 0 <= w < 2**31 - 1:
        raise ValueError(f"image width must be in [0, 2**31 - 1), got {w}")
    return h, w, s.dtype


def _boxes_shape(bounding_boxes) -> np.ndarray:
    b = np.asarray(bounding_boxes)
    if b.ndim != 3:
        raise ValueError("bounding_boxes must be 3-dimensional [batch, num_boxes, coords], got "
                         f"shape {list(b.shape)}")
    if b.shape[-1] != 4:
        raise ValueError(f"bounding boxes must have shape [*, 4], got {list(b.shape)}")
    return b.reshape(-1, 4).astype(np.float32, copy=False)


def _boxes(b: np.ndarray, width: int, height: int) -> np.ndarray:
    """The (n, 4) boxes (y0, x0, y1, x1) as int rectangles (x0, y0, x1, y1), int64 holding
    int32."""
    b = flush_subnormals(b)
    bad = ~((b >= 0) & (b <= 1))
    if bad.any():
        raise ValueError("All bounding box coordinates must be in [0.0, 1.0]: "
                         f"{b.reshape(-1)[np.argmax(bad.reshape(-1))]}")
    scale = np.array([height, width, height, width], np.float32)  # (y0, x0, y1, x1)
    r = _trunc_int_array(b * scale)
    return r[:, [1, 0, 3, 2]]


def _attempts(gen, attempts: int, width: int, height: int, ar_range, area_range, boxes, areas,
              min_covered):
    """The first attempt's crop (x0, y0, x1, y1) covering enough of a box, or None. A loop
    as a While loop is: it stops at ``max_loop_iterations`` attempts, ``max_loop_seconds`` or
    the evaluation's deadline (checked every ``_CHECK_EVERY`` attempts)."""
    # TF reserves 4 samples per attempt: one call each; fetched 64 K calls at a time at most
    # (the same stream: a hostile max_attempts of 2**31 fetched 16 GB of it up front)
    rng = _SimplePhilox(gen, min(attempts, 1 << 16))
    (ar_lo, ar_hi), (area_lo, area_hi) = ar_range, area_range
    limit, deadline, done = loop_limit(), loop_deadline(), 0
    with np.errstate(all="ignore"):
        ar_span = _ftz(ar_hi - ar_lo)
        while done < attempts:
            if done >= limit:
                raise too_many_iterations(limit)
            if deadline is not None and done and monotonic() > deadline:
                raise too_long()
            n = min(attempts, limit, done + _CHECK_EVERY) - done
            for _ in range(n):
                ar = _ftz(_ftz(rng.rand_float() * ar_span) + ar_lo)
                c = _random_crop(width, height, area_lo, area_hi, ar, rng)
                if c is None:
                    continue
                x, y, w, h = c
                rect = (x, y, _i32(x + w), _i32(y + h))
                if _covers(rect, boxes, areas, min_covered):
                    return rect
            done += n
    return None


def _sample(image_size, bounding_boxes, min_covered, gen, aspect_ratio_range, area_range,
            max_attempts, use_image_if_no_bounding_boxes):
    (ar_lo, ar_hi), (area_lo, area_hi), attempts = _check_attrs(
        aspect_ratio_range, area_range, max_attempts)
    height, width, dtype = _image_dims(image_size)
    boxes = _boxes_shape(bounding_boxes)
    min_covered = _min_covered(min_covered)
    boxes = _boxes(boxes, width, height)
    if boxes.shape[0] == 0:
        if not use_image_if_no_bounding_boxes:
            raise ValueError("No bounding boxes provided as input. One must enable "
                             "use_image_if_no_bounding_boxes if you wish to not provide any "
                             "bounding boxes.")
        boxes = np.array([[0, 0, width, height]], np.int64)
    areas = _wrap32(_wrap32(boxes[:, 2] - boxes[:, 0]) * _wrap32(boxes[:, 3] - boxes[:, 1]))
    keep = areas > 0  # boxes with no pixels never count
    boxes, areas = boxes[keep], areas[keep].astype(np.float32)

    crop = (0, 0, width, height)
    # (no attempt can win without boxes, or when no crop can be made whatever the aspect ratio:
    # the whole image, without running a hostile max_attempts of attempts for nothing)
    if len(boxes) and (area_hi > 0 and width > 0 and height > 0) and not area_lo > area_hi:
        crop = _attempts(gen, attempts, width, height, (ar_lo, ar_hi), (area_lo, area_hi),
                         boxes, areas, min_covered) or crop
    with np.errstate(all="ignore"):
        x0, y0, x1, y1 = crop
        if width < x1 or height < y1:
            raise ValueError(f"crop [{y0}:{y1}, {x0}:{x1}] exceeds the image {height}x{width}")
        begin = np.array([y0, x0, 0], np.int64).astype(dtype)
        size = np.array([_i32(y1 - y0), _i32(x1 - x0), -1], np.int64).astype(dtype)
        scale = np.array([height, width, height, width], np.float32)
        bboxes = (np.array([y0, x0, y1, x1], np.float32) / scale).reshape(1, 1, 4)
    return begin, size, bboxes


_AR = (0.75, 1.33)
_AREA = (0.05, 1.0)


@op("StatelessSampleDistortedBoundingBox")
def StatelessSampleDistortedBoundingBox(image_size, bounding_boxes, min_object_covered, seed, *,
                                        aspect_ratio_range=_AR, area_range=_AREA,
                                        max_attempts=100, use_image_if_no_bounding_boxes=False):
    """StatelessSampleDistortedBoundingBox: (begin, size, bboxes) of a random crop covering
    part of the boxes, from a 2-element seed."""
    _check_attrs(aspect_ratio_range, area_range, max_attempts)  # TF checks attributes first
    seed = np.asarray(seed)
    if seed.shape != (2,):
        raise ValueError(f"seed must have shape [2], not {list(seed.shape)}")
    return _sample(image_size, bounding_boxes, min_object_covered, px.key_counter_from_seed(seed),
                   aspect_ratio_range, area_range, max_attempts, use_image_if_no_bounding_boxes)


@op("SampleDistortedBoundingBoxV2", stateful=True)
def SampleDistortedBoundingBoxV2(image_size, bounding_boxes, min_object_covered, *, seed=0,
                                 seed2=0, aspect_ratio_range=_AR, area_range=_AREA,
                                 max_attempts=100, use_image_if_no_bounding_boxes=False):
    """SampleDistortedBoundingBoxV2: (begin, size, bboxes) of a random crop covering part of
    the boxes."""
    return _sample(image_size, bounding_boxes, min_object_covered, stateful_gen(seed, seed2),
                   aspect_ratio_range, area_range, max_attempts, use_image_if_no_bounding_boxes)


@op("SampleDistortedBoundingBox", stateful=True)
def SampleDistortedBoundingBox(image_size, bounding_boxes, *, seed=0, seed2=0,
                               min_object_covered=0.1, aspect_ratio_range=_AR, area_range=_AREA,
                               max_attempts=100, use_image_if_no_bounding_boxes=False):
    """SampleDistortedBoundingBox: as SampleDistortedBoundingBoxV2, ``min_object_covered`` an
    attribute."""
    min_covered = _min_covered(min_object_covered)
    return _sample(image_size, bounding_boxes, min_covered, stateful_gen(seed, seed2),
                   aspect_ratio_range, area_range, max_attempts, use_image_if_no_bounding_boxes)
