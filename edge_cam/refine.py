"""Boxes fitted to the object by its colours: GrabCut seeded by the CAM (`--refine grabcut`).

A CAM is coarse (one cell per 32 input pixels): its boxes spill past a small object and stop short
of a large one's edges. GrabCut (Rother et al., 2004) segments by colour, from seeds the map
gives: the hottest pixels are the object, the coldest background. Measured with the real
MobileNetV2 (benchmarks/README.md, localisation): on the raccoon photos it lowers CorLoc@0.5 from
0.750 to 0.710 at about ten times the cost a photo, so it is an option (`--refine grabcut` on
localize and eval), never a default.
"""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from .localize import Box, HeatMap
from .preprocess import to_8bit

REFINES = ("none", "grabcut")
GRABCUT_SIDE = 160  # the longer side GrabCut works at: its colour models need no more, and it costs O(pixels)


def grabcut_box(image: np.ndarray, heat: HeatMap, box: Box, threshold: float, *, hot: float = 0.8,
                cold: float = 0.1, iterations: int = 2) -> Box:
    """`box` fitted to the object's colours by OpenCV's GrabCut, seeded by the map: pixels at
    `hot` or above are the object for sure, those below `cold` background for sure, the rest
    probably one or the other by `threshold`. The box becomes the segment that holds the box's
    hottest pixel; one that GrabCut cannot improve (no segment there, a flat map) stays as it was.
    Works on the frame shrunk to GRABCUT_SIDE, in `image`'s own colour order (BGR or RGB alike)."""
    frame, _ = to_8bit(image)
    fh, fw = frame.shape[:2]
    s = min(1.0, GRABCUT_SIDE / max(fh, fw))
    sw, sh = max(1, round(fw * s)), max(1, round(fh * s))
    small = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA)
    v = heat.region(0, 0, fw, fh, (sh, sw))
    mask = np.where(v >= threshold, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    mask[v >= hot] = cv2.GC_FGD
    mask[v < cold] = cv2.GC_BGD
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))
    if fg.all() or not fg.any() or min(sh, sw) < 2:  # nothing to tell apart
        return box
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(small, mask, (0, 0, 0, 0), models[0], models[1], iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # a colour model that cannot be fitted (too few pixels of one kind)
        return box
    seg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(seg, connectivity=8)
    x1, y1 = int(box.x1 * s), int(box.y1 * s)
    x2, y2 = max(x1 + 1, int(np.ceil(box.x2 * s))), max(y1 + 1, int(np.ceil(box.y2 * s)))
    inside = np.where(seg[y1:y2, x1:x2] > 0, v[y1:y2, x1:x2], -1.0)
    if n <= 1 or inside.size == 0 or inside.max() < 0:
        return box
    py, px = np.unravel_index(int(np.argmax(inside)), inside.shape)
    x, y, w, h = stats[labels[y1 + py, x1 + px], :4]
    return replace(box, x1=float(min(fw, x / s)), y1=float(min(fh, y / s)),
                   x2=float(min(fw, (x + w) / s)), y2=float(min(fh, (y + h) / s)))


def refine_boxes(image: np.ndarray, heat: HeatMap, boxes: list[Box], threshold: float,
                 refine: str = "none") -> list[Box]:
    """The boxes refined by `refine` ("none": as they are; "grabcut": see grabcut_box)."""
    if refine not in REFINES:
        raise ValueError(f"refine: unknown refinement {refine!r}; use one of {', '.join(REFINES)}")
    if refine == "none":
        return boxes
    return [grabcut_box(image, heat, b, threshold) for b in boxes]
