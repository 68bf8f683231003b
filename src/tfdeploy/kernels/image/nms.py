"""Non-max suppression kernels: NonMaxSuppression (V1-V5, WithOverlaps) and
CombinedNonMaxSuppression.

Greedy NMS is sequential by nature; these kernels loop once per *selected* box, computing
every remaining candidate's overlap with it at once (vectorised IoU, as TF's IOU computes it,
NaN corners included), dropping the hard-suppressed and keeping each other candidate's weight
until it comes to the top, as TF's priority queue does (``_nms``): the same selection and
scores as TF's, soft-NMS, negative scores and NaN overlaps included (checked on 4,500 random
problems with them), ties to the lowest index.
"""

from __future__ import annotations

import numpy as np

from tfdeploy.kernels.common import op
from tfdeploy.numerics import cpp_max, cpp_min
from tfdeploy.runtime.limits import check_array

_F32 = np.float32


def _corners(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    b = boxes.astype(_F32, copy=False)
    ymin = cpp_min(b[..., 0], b[..., 2])
    xmin = cpp_min(b[..., 1], b[..., 3])
    ymax = cpp_max(b[..., 0], b[..., 2])
    xmax = cpp_max(b[..., 1], b[..., 3])
    with np.errstate(invalid="ignore", over="ignore"):
        return ymin, xmin, ymax, xmax, (ymax - ymin) * (xmax - xmin)


def _iou_with(c: tuple[np.ndarray, ...], idx: np.ndarray, j: int) -> np.ndarray:
    """float32 IoU of the candidates ``idx`` with the selected box ``j``, as TF's IOU(i, j)
    computes it, its min and max C++'s (a NaN coordinate is skipped or kept by its place), 0
    where either box is empty."""
    ymin, xmin, ymax, xmax, area = c
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        iy = cpp_max(cpp_min(ymax[idx], ymax[j]) - cpp_max(ymin[idx], ymin[j]), _F32(0))
        ix = cpp_max(cpp_min(xmax[idx], xmax[j]) - cpp_max(xmin[idx], xmin[j]), _F32(0))
        inter = iy * ix
        iou = inter / (area[idx] + area[j] - inter)
    return np.where((area[idx] <= 0) | (area[j] <= 0), _F32(0), iou)


def _check_boxes(boxes: np.ndarray, scores: np.ndarray) -> int:
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [num_boxes, 4], got shape {boxes.shape}")
    if scores.ndim != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"scores must be [{boxes.shape[0]}], got shape {scores.shape}")
    return boxes.shape[0]


def _scalar(x, name: str, dtype=None):
    x = np.asarray(x)
    if x.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {x.shape}")
    return x.astype(dtype) if dtype is not None else x


def _nms(similarity, scores: np.ndarray, max_output_size, iou_threshold, score_threshold,
         soft_nms_sigma=0.0, nan_weight=True):
    """TF's DoNonMaxSuppressionOp; ``similarity(idx, j)`` gives the candidates' overlaps with
    the selected box ``j``.

    As in TF, a candidate's score is weighed by the boxes selected since it last came to the
    top of the queue only when it comes there again (``pend``: the product of those weights):
    if that changes its score it goes back in the queue (or is dropped, at or below the score
    threshold), else it is selected. Soft-NMS weighs by ``exp(-sim**2 / (2 sigma))``; hard NMS
    drops a candidate whose overlap is above the threshold and weighs by 0 one whose overlap
    is NaN (TF's weight is ``sim <= threshold ? 1 : 0``), which takes a score to 0 (-0, NaN
    if infinite). Weighing on the way out matters where a weight raises a score (a negative
    one) or ties it with another; for positive scores it selects what weighing every
    candidate at once would. CombinedNonMaxSuppression's loop has no weights, only ``iou >
    threshold`` (``nan_weight=False``): a NaN keeps the candidate as it is.

    Returns (selected indices, their scores), in scores' dtype."""
    t = scores.dtype
    limit = int(_scalar(max_output_size, "max_output_size"))
    if limit < 0:
        raise ValueError("max_output_size must be non-negative")
    thr = t.type(iou_threshold)
    score_thr = t.type(score_threshold)
    sigma = t.type(soft_nms_sigma)
    soft = sigma > 0
    scale = t.type(-0.5) / sigma if soft else t.type(0)
    live = np.flatnonzero(scores > score_thr)
    cur = scores[live]
    pend = np.ones(live.size, t)
    one = t.type(1)
    selected, sel_scores = [], []
    while len(selected) < limit and live.size:
        k = int(np.argmax(cur))  # first maximum: the lowest index among ties
        if not pend[k] == one:
            with np.errstate(invalid="ignore", under="ignore"):
                weighed = t.type(cur[k] * pend[k])
            pend[k] = one
            if not weighed == cur[k]:  # (back in the queue, or dropped)
                if weighed > score_thr:
                    cur[k] = weighed
                    continue
                live, cur, pend = _without(k, live, cur, pend)
                continue
        best = int(live[k])
        selected.append(best)
        sel_scores.append(cur[k])
        live, cur, pend = _without(k, live, cur, pend)
        if not live.size:
            break
        sim = similarity(live, best).astype(t)
        with np.errstate(invalid="ignore", under="ignore"):
            if soft:
                pend = (pend * np.exp(scale * sim * sim)).astype(t)
                continue
            keep = ~(sim > thr)
            if nan_weight:
                pend = np.where(np.isnan(sim), t.type(0), pend)
        live, cur, pend = live[keep], cur[keep], pend[keep]
    return (np.asarray(selected, np.int32).reshape(-1),
            np.asarray(sel_scores, t).reshape(-1))


def _without(k: int, *arrays):
    keep = np.ones(arrays[0].size, bool)
    keep[k] = False
    return tuple(a[keep] for a in arrays)


def _iou_similarity(boxes):
    c = _corners(boxes)
    return lambda idx, j: _iou_with(c, idx, j)


def _check_iou(thr, dtype) -> None:
    v = np.asarray(thr).astype(dtype)
    if not (0 <= v <= 1):
        raise ValueError(f"iou_threshold must be in [0, 1], got {float(v)}")


def _pad(sel: np.ndarray, n: int, pad: bool) -> np.ndarray:
    if not pad or sel.size >= n:
        return sel
    check_array((n,), sel.dtype, "the padded selection")  # (a hostile max_output_size)
    return np.concatenate([sel, np.zeros(n - sel.size, sel.dtype)])


@op("NonMaxSuppression")
def NonMaxSuppression(boxes, scores, max_output_size, *, iou_threshold=0.5):
    """NonMaxSuppression: greedy selection of boxes by descending score, dropping overlaps."""
    _check_boxes(boxes, scores)
    _check_iou(iou_threshold, np.float32)
    return _nms(_iou_similarity(boxes), scores, max_output_size, iou_threshold,
                np.finfo(scores.dtype).min)[0]


@op("NonMaxSuppressionV2")
def NonMaxSuppressionV2(boxes, scores, max_output_size, iou_threshold):
    """NonMaxSuppressionV2: NonMaxSuppression with the IoU threshold as an input."""
    _check_boxes(boxes, scores)
    _check_iou(iou_threshold, scores.dtype)
    return _nms(_iou_similarity(boxes), scores, max_output_size,
                _scalar(iou_threshold, "iou_threshold"), np.finfo(scores.dtype).min)[0]


@op("NonMaxSuppressionV3")
def NonMaxSuppressionV3(boxes, scores, max_output_size, iou_threshold, score_threshold):
    """NonMaxSuppressionV3: NonMaxSuppression keeping only scores above score_threshold."""
    _check_boxes(boxes, scores)
    _check_iou(iou_threshold, scores.dtype)
    return _nms(_iou_similarity(boxes), scores, max_output_size,
                _scalar(iou_threshold, "iou_threshold"),
                _scalar(score_threshold, "score_threshold"))[0]


@op("NonMaxSuppressionV4")
def NonMaxSuppressionV4(boxes, scores, max_output_size, iou_threshold, score_threshold, *,
                        pad_to_max_output_size=False):
    """NonMaxSuppressionV4: V3 plus the number of valid outputs, optionally zero-padded to
    max_output_size."""
    _check_boxes(boxes, scores)
    _check_iou(iou_threshold, scores.dtype)
    sel, _ = _nms(_iou_similarity(boxes), scores, max_output_size,
                  _scalar(iou_threshold, "iou_threshold"),
                  _scalar(score_threshold, "score_threshold"))
    n = int(max_output_size)
    return _pad(sel, n, pad_to_max_output_size), np.asarray(sel.size, np.int32)


@op("NonMaxSuppressionV5")
def NonMaxSuppressionV5(boxes, scores, max_output_size, iou_threshold, score_threshold,
                        soft_nms_sigma, *, pad_to_max_output_size=False):
    """NonMaxSuppressionV5: V4 with soft-NMS (Gaussian score decay when soft_nms_sigma > 0,
    which ignores iou_threshold as TF does) and the selected scores.

    Soft-NMS decays scores in selection order where TF multiplies newest first, so decayed
    scores can differ from TF's in the last bit."""
    _check_boxes(boxes, scores)
    _check_iou(iou_threshold, scores.dtype)
    sigma = _scalar(soft_nms_sigma, "soft_nms_sigma")
    if sigma < 0:
        raise ValueError("soft_nms_sigma must be >= 0")
    sel, sc = _nms(_iou_similarity(boxes), scores, max_output_size,
                   _scalar(iou_threshold, "iou_threshold"),
                   _scalar(score_threshold, "score_threshold"), sigma)
    n = int(max_output_size)
    return (_pad(sel, n, pad_to_max_output_size), _pad(sc, n, pad_to_max_output_size),
            np.asarray(sel.size, np.int32))


@op("NonMaxSuppressionWithOverlaps")
def NonMaxSuppressionWithOverlaps(overlaps, scores, max_output_size, overlap_threshold,
                                  score_threshold):
    """NonMaxSuppressionWithOverlaps: NMS with a given [n, n] overlap matrix instead of IoU."""
    if overlaps.ndim != 2 or overlaps.shape[0] != overlaps.shape[1]:
        raise ValueError(f"overlaps must be a square matrix, got shape {overlaps.shape}")
    if scores.ndim != 1 or scores.shape[0] != overlaps.shape[0]:
        raise ValueError(f"scores must be [{overlaps.shape[0]}], got shape {scores.shape}")
    ov = overlaps.astype(_F32, copy=False)
    return _nms(lambda idx, j: ov[idx, j], scores, max_output_size,
                _scalar(overlap_threshold, "overlap_threshold"),
                _scalar(score_threshold, "score_threshold"))[0]


@op("CombinedNonMaxSuppression")
def CombinedNonMaxSuppression(boxes, scores, max_output_size_per_class, max_total_size,
                              iou_threshold, score_threshold, *, pad_per_class=False,
                              clip_boxes=True):
    """CombinedNonMaxSuppression: per-class greedy NMS over a batch, merged by score.

    Candidates with equal scores (across classes) are ordered stably; TF's unstable sort leaves
    their order unspecified."""
    if boxes.ndim != 4 or boxes.shape[3] != 4:
        raise ValueError(f"boxes must be 4-D [batch, num_boxes, q, 4], got {boxes.shape}")
    if scores.ndim != 3:
        raise ValueError(f"scores must be 3-D [batch, num_boxes, num_classes], "
                         f"got {scores.shape}")
    batch, num_boxes, q, _ = boxes.shape
    num_classes = scores.shape[2]
    if q not in (1, num_classes) or scores.shape[:2] != (batch, num_boxes):
        raise ValueError(f"boxes {boxes.shape} and scores {scores.shape} do not match")
    per_class = int(_scalar(max_output_size_per_class, "max_output_size_per_class"))
    total = int(_scalar(max_total_size, "max_total_size"))
    if per_class <= 0 or total <= 0:
        raise ValueError("max_output_size_per_class and max_total_size must be positive")
    thr = _F32(_scalar(iou_threshold, "iou_threshold"))
    score_thr = _F32(_scalar(score_threshold, "score_threshold"))
    if not 0 <= thr <= 1:
        raise ValueError("iou_threshold must be in [0, 1]")
    size_per_class = min(per_class, num_boxes)
    out_size = min(total, per_class * num_classes) if pad_per_class else total
    check_array((batch, out_size, 4), _F32, "the boxes")  # (a hostile max_total_size)
    out_boxes = np.zeros((batch, out_size, 4), _F32)
    out_scores = np.zeros((batch, out_size), _F32)
    out_classes = np.zeros((batch, out_size), _F32)
    valid = np.zeros(batch, np.int32)
    for b in range(batch):
        idx_parts, score_parts, class_parts = [], [], []
        for c in range(num_classes):
            bx = boxes[b, :, c if q > 1 else 0].astype(_F32, copy=False)
            sc = scores[b, :, c].astype(_F32, copy=False)
            sel, ss = _nms(_iou_similarity(bx), sc, size_per_class, thr, score_thr,
                           nan_weight=False)
            idx_parts.append(sel)
            score_parts.append(ss)
            class_parts.append(np.full(sel.size, c))
        idx = np.concatenate(idx_parts)
        sc = np.concatenate(score_parts)
        cls = np.concatenate(class_parts)
        order = np.argsort(-sc, kind="stable")[:out_size]
        n = order.size
        valid[b] = n
        chosen = boxes[b, idx[order], cls[order] if q > 1 else 0].astype(_F32)
        out_boxes[b, :n] = np.clip(chosen, 0, 1) if clip_boxes else chosen
        out_scores[b, :n] = sc[order]
        out_classes[b, :n] = cls[order]
    return out_boxes, out_scores, out_classes, valid
