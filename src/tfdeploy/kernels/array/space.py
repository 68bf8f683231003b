"""Space/batch/depth rearrangements: SpaceToBatchND, BatchToSpaceND, DepthToSpace..."""

from __future__ import annotations

import math

import numpy as np

from tfdeploy.kernels.common import op
from tfdeploy.runtime.limits import check_array


def _ints(v, what: str) -> list[int]:
    a = np.asarray(v)
    return [int(x) for x in a.reshape(-1)]


@op("SpaceToBatchND")
def SpaceToBatchND(input, block_shape, paddings):
    """SpaceToBatchND: zero-pad the spatial dims, then move blocks of them into the batch."""
    block = _ints(block_shape, "block_shape")
    m = len(block)
    pads = np.asarray(paddings).reshape(m, 2).tolist() if m else []
    if input.ndim < m + 1 or any(b < 1 for b in block):
        raise ValueError(f"SpaceToBatchND: bad block_shape {block} for input shape "
                         f"{list(input.shape)}")
    if any(p < 0 for row in pads for p in row):
        raise ValueError(f"SpaceToBatchND: paddings must be non-negative, got {pads}")
    n, spatial, rest = input.shape[0], input.shape[1:m + 1], input.shape[m + 1:]
    padded = [s + lo + hi for s, (lo, hi) in zip(spatial, pads)]
    if any(p % b for p, b in zip(padded, block)):
        raise ValueError(f"SpaceToBatchND: padded spatial shape {padded} must be divisible by "
                         f"block_shape {block}")
    check_array((n, *padded, *rest), input.dtype, "the padded input")  # (hostile paddings)
    x = input
    if any(lo or hi for lo, hi in pads):
        x = np.zeros((n, *padded, *rest), dtype=input.dtype)
        x[(slice(None),) + tuple(slice(lo, lo + s) for s, (lo, _) in zip(spatial, pads))] = input
    # [n, p1/b1, b1, ..., rest] -> [b1, ..., n, p1/b1, ..., rest]
    split = [n]
    for p, b in zip(padded, block):
        split += [p // b, b]
    x = x.reshape(split + list(rest))
    order = [2 + 2 * i for i in range(m)] + [0] + [1 + 2 * i for i in range(m)]
    order += list(range(1 + 2 * m, x.ndim))
    x = x.transpose(order)
    return x.reshape([n * math.prod(block)]
                     + [p // b for p, b in zip(padded, block)] + list(rest))


@op("BatchToSpaceND")
def BatchToSpaceND(input, block_shape, crops):
    """BatchToSpaceND: move blocks of the batch back into the spatial dims, then crop."""
    block = _ints(block_shape, "block_shape")
    m = len(block)
    cr = np.asarray(crops).reshape(m, 2).tolist() if m else []
    nb = math.prod(block)
    if input.ndim < m + 1 or any(b < 1 for b in block) or input.shape[0] % nb:
        raise ValueError(f"BatchToSpaceND: the batch {input.shape[0]} must be divisible by the "
                         f"product of block_shape {block}")
    n = input.shape[0] // nb
    spatial, rest = input.shape[1:m + 1], input.shape[m + 1:]
    # (the input's size unless it is empty: then a hostile block makes dims numpy cannot index)
    check_array([n] + [s * b for s, b in zip(spatial, block)] + list(rest), input.dtype,
                "the result")
    x = input.reshape(block + [n] + list(spatial) + list(rest))
    # [b1, ..., n, s1, ..., rest] -> [n, s1, b1, s2, b2, ..., rest]
    order = [m]
    for i in range(m):
        order += [m + 1 + i, i]
    order += list(range(2 * m + 1, x.ndim))
    x = x.transpose(order).reshape([n] + [s * b for s, b in zip(spatial, block)] + list(rest))
    full = x.shape[1:m + 1]
    if any(lo < 0 or hi < 0 or lo + hi > f for (lo, hi), f in zip(cr, full)):
        raise ValueError(f"BatchToSpaceND: bad crops {cr} for a block-expanded shape "
                         f"{list(full)}")
    return x[(slice(None),) + tuple(slice(lo, f - hi) for (lo, hi), f in zip(cr, full))]


@op("SpaceToBatch")
def SpaceToBatch(input, paddings, *, block_size):
    """SpaceToBatch: SpaceToBatchND over the two spatial dims of an NHWC tensor."""
    return SpaceToBatchND(input, [block_size, block_size], paddings)


@op("BatchToSpace")
def BatchToSpace(input, crops, *, block_size):
    """BatchToSpace: BatchToSpaceND over the two spatial dims of an NHWC tensor."""
    return BatchToSpaceND(input, [block_size, block_size], crops)


def _check_format(data_format, input, what):
    if data_format not in ("NHWC", "NCHW"):
        raise ValueError(f"{what}: unsupported data_format {data_format!r}")
    if input.ndim != 4:
        raise ValueError(f"{what}: expected a rank-4 input, got shape {list(input.shape)}")


@op("DepthToSpace")
def DepthToSpace(input, *, block_size, data_format="NHWC"):
    """DepthToSpace: blocks of channels moved into ``block_size`` x ``block_size`` pixels."""
    _check_format(data_format, input, "DepthToSpace")
    b = block_size
    if data_format == "NHWC":
        n, h, w, c = input.shape
        if c % (b * b):
            raise ValueError(f"DepthToSpace: depth {c} is not divisible by {b * b}")
        x = input.reshape(n, h, w, b, b, c // (b * b)).transpose(0, 1, 3, 2, 4, 5)
        return x.reshape(n, h * b, w * b, c // (b * b))
    n, c, h, w = input.shape
    if c % (b * b):
        raise ValueError(f"DepthToSpace: depth {c} is not divisible by {b * b}")
    x = input.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    return x.reshape(n, c // (b * b), h * b, w * b)


@op("SpaceToDepth")
def SpaceToDepth(input, *, block_size, data_format="NHWC"):
    """SpaceToDepth: ``block_size`` x ``block_size`` pixel blocks moved into the channels."""
    _check_format(data_format, input, "SpaceToDepth")
    b = block_size
    if data_format == "NHWC":
        n, h, w, c = input.shape
        if h % b or w % b:
            raise ValueError(f"SpaceToDepth: height {h} and width {w} must be divisible by {b}")
        x = input.reshape(n, h // b, b, w // b, b, c).transpose(0, 1, 3, 2, 4, 5)
        return x.reshape(n, h // b, w // b, c * b * b)
    n, c, h, w = input.shape
    if h % b or w % b:
        raise ValueError(f"SpaceToDepth: height {h} and width {w} must be divisible by {b}")
    x = input.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return x.reshape(n, c * b * b, h // b, w // b)
