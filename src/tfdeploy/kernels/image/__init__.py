"""Image kernels: colour, resizing, bounding boxes, non-max suppression."""

from tfdeploy.kernels.image import (  # noqa: F401
    bbox,
    color,
    nms,
    resize,
)
