"""Cut the region of interest out of the frame for the student, optionally hiding the cold part."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .localize import Box, HeatMap
from .preprocess import as_rgb, in_order

MASKS = ("none", "mean", "blur")


@dataclass(frozen=True)
class CropSpec:
    pad: float = 1.3  # box side × pad: context the student needs around the object
    square: bool = True  # students are trained on square inputs; avoid stretching the object
    mask: str = "none"  # "none", "mean" or "blur": what replaces pixels below the CAM threshold
    threshold: float = 0.2

    def __post_init__(self) -> None:
        if not 1 <= self.pad < float("inf"):  # below 1 the crop cuts into the object; nan fails too
            raise ValueError(f"pad: {self.pad} must be 1 or more (the crop is the box times pad)")
        if self.mask not in MASKS:
            raise ValueError(f"mask: unknown mask {self.mask!r}; use one of {', '.join(MASKS)}")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold: {self.threshold} must be above 0 and at most 1 (a fraction of the map's range)")


@dataclass(frozen=True)
class Crop:
    region: tuple[int, int, int, int]  # (x1, y1, x2, y2) in frame pixels, clamped
    image: np.ndarray  # (S, S, 3) uint8 RGB at the student's input size


def expand(box: Box, frame_size: tuple[int, int], pad: float, square: bool) -> tuple[int, int, int, int]:
    """Pad the box around its centre, make it square if asked, clamp it to the frame.

    A square that would cross the frame edge is shifted back inside rather than cut, so the
    object keeps its aspect ratio whenever the frame is large enough.
    """
    fh, fw = frame_size
    cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
    w, h = max(box.width, 1.0) * pad, max(box.height, 1.0) * pad
    if square:
        w = h = min(max(w, h), fw, fh)
    x1 = min(max(cx - w / 2, 0.0), fw - w) if w <= fw else 0.0
    y1 = min(max(cy - h / 2, 0.0), fh - h) if h <= fh else 0.0
    x2, y2 = min(x1 + w, fw), min(y1 + h, fh)
    ix1, iy1 = int(np.floor(x1)), int(np.floor(y1))
    return ix1, iy1, max(ix1 + 1, int(np.ceil(x2))), max(iy1 + 1, int(np.ceil(y2)))


def shrink(patch: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`patch` resized to `size` (H, W), averaging when it shrinks.

    INTER_AREA costs in proportion to the patch, more at a fractional ratio: it was the cascade's
    largest cost per frame once the teacher ran only every 30th. Above twice the size, a bilinear
    step to twice the size (a ratio under 2, where bilinear still sees every pixel's neighbourhood)
    and INTER_AREA's exact 2:1 average cost about 0.1 ms whatever the patch, and differ from
    INTER_AREA by under one grey level on average (benchmarks/crop_resize.py).
    """
    h, w = size
    if patch.shape[0] > 2 * h and patch.shape[1] > 2 * w:
        patch = cv2.resize(patch, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
    shrinking = patch.shape[0] * patch.shape[1] > h * w
    return cv2.resize(patch, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def crop(image: np.ndarray, box: Box, size: tuple[int, int], spec: CropSpec = CropSpec(),
         heat: HeatMap | None = None, fill: tuple[int, int, int] = (124, 116, 104), order: str = "RGB") -> Crop:
    """One ROI at the student's input `size` (H, W), in RGB, from a uint8 frame in `order`.

    Masking works on the small output, not on the frame: the heat map is sampled straight onto
    the crop's pixels. `fill` (RGB) is the student's mean colour, which its normalisation turns
    into zeros, so the masked area carries no signal.
    """
    x1, y1, x2, y2 = expand(box, image.shape[:2], spec.pad, spec.square)
    patch = image[y1:y2, x1:x2]
    out = shrink(patch, size)
    if spec.mask != "none" and heat is not None:
        cold = heat.region(x1, y1, x2, y2, size) < spec.threshold
        if spec.mask == "mean":
            out[cold] = in_order(fill, order)
        else:  # "blur": CropSpec admits no other mode
            k = max(3, (min(size) // 4) | 1)
            out[cold] = cv2.GaussianBlur(out, (k, k), 0)[cold]
    return Crop((x1, y1, x2, y2), as_rgb(out, order))
