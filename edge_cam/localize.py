"""CAM → normalised heat map → threshold → connected components → boxes in frame pixels.

The CAM paper's rule: keep the pixels above 20% of the map's maximum and box the largest
connected component. The map is upsampled only to the model's input resolution (e.g.
224×224), never to the frame: the boxes are the same up to one input pixel, mapped back
exactly through the `Resize`, and a 4000×3000 photo costs no more than a VGA frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .preprocess import Resize


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in frame pixels (continuous edges: x2 is the right edge)."""
    x1: float
    y1: float
    x2: float
    y2: float
    class_id: int = -1
    label: str = ""
    score: float = 0.0

    @property
    def width(self) -> float:
        return max(0.0, self.x2 - self.x1)

    @property
    def height(self) -> float:
        return max(0.0, self.y2 - self.y1)

    @property
    def area(self) -> float:
        return self.width * self.height

    def iou(self, other: "Box") -> float:
        iw = max(0.0, min(self.x2, other.x2) - max(self.x1, other.x1))
        ih = max(0.0, min(self.y2, other.y2) - max(self.y1, other.y1))
        inter = iw * ih
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def to_dict(self) -> dict:
        return {"class_id": self.class_id, "label": self.label, "score": round(self.score, 6),
                "x1": round(self.x1, 2), "y1": round(self.y1, 2),
                "x2": round(self.x2, 2), "y2": round(self.y2, 2)}


@dataclass(frozen=True)
class HeatMap:
    """A CAM normalised to [0, 1] at the model's input resolution, with the way back to the frame."""
    values: np.ndarray  # (H_in, W_in) float32
    resize: Resize

    @classmethod
    def from_cam(cls, cam: np.ndarray, resize: Resize) -> "HeatMap":
        """Bilinear upsampling with half-pixel centres (each CAM cell covers one stride of input),
        then min-max normalisation as the paper's reference code does."""
        h, w = resize.input_size
        up = cv2.resize(np.ascontiguousarray(cam, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        x1, y1, x2, y2 = resize.content
        if (x1, y1, x2, y2) != (0, 0, w, h):  # letterbox: padding is not part of the scene
            inside = up[y1:y2, x1:x2]
            lo, hi = float(inside.min()), float(inside.max())
            out = np.zeros_like(up)
            out[y1:y2, x1:x2] = (inside - lo) / (hi - lo) if hi > lo else 1.0
            return cls(out, resize)
        lo, hi = float(up.min()), float(up.max())
        # A flat map (a 1x1 photo, a blank wall) is equally hot everywhere: all of it is "≥ 20% of the max".
        return cls((up - lo) / (hi - lo) if hi > lo else np.ones_like(up), resize)

    def region(self, x1: float, y1: float, x2: float, y2: float, size: tuple[int, int]) -> np.ndarray:
        """The map over a frame region (x1, y1, x2, y2), sampled at `size` (H, W)."""
        r = self.resize
        oh, ow = size
        sx, sy = (x2 - x1) / ow * r.scale_x, (y2 - y1) / oh * r.scale_y
        # output pixel centre (u + 0.5) → frame → input pixel centre coordinates (- 0.5)
        m = np.array([[sx, 0, (x1 * r.scale_x + r.pad_x) + 0.5 * sx - 0.5],
                      [0, sy, (y1 * r.scale_y + r.pad_y) + 0.5 * sy - 0.5]], np.float32)
        return cv2.warpAffine(self.values, m, (ow, oh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)

    def to_frame(self) -> np.ndarray:
        """The map over the whole frame, for overlays."""
        h, w = self.resize.frame_size
        return self.region(0, 0, w, h, (h, w))


BOX_MODES = ("largest", "union", "all")


def boxes_from_heat(heat: HeatMap, threshold: float = 0.2, mode: str = "largest",
                    min_area: float = 0.01, class_id: int = -1, label: str = "",
                    score: float = 0.0) -> list[Box]:
    """Boxes of the regions where heat ≥ threshold, largest first.

    largest: the CAM paper's single box around the largest region. union: one box around every
    region of at least `min_area` (a fraction of the input), for objects the map splits in parts.
    all: one box per such region (always at least the largest).
    """
    if mode not in BOX_MODES:
        raise ValueError(f"unknown box mode {mode!r}; use one of {', '.join(BOX_MODES)}")
    mask = (heat.values >= threshold).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return []
    comps = sorted(range(1, n), key=lambda i: -stats[i, cv2.CC_STAT_AREA])
    if mode == "largest":
        comps = comps[:1]
    else:
        total = mask.shape[0] * mask.shape[1]
        comps = [i for i in comps if stats[i, cv2.CC_STAT_AREA] >= min_area * total] or comps[:1]
    rects = [tuple(int(v) for v in stats[i, :4]) for i in comps]
    if mode == "union":
        x1, y1 = min(r[0] for r in rects), min(r[1] for r in rects)
        x2, y2 = max(r[0] + r[2] for r in rects), max(r[1] + r[3] for r in rects)
        rects = [(x1, y1, x2 - x1, y2 - y1)]
    fh, fw = heat.resize.frame_size
    boxes = []
    for x, y, w, h in rects:
        x1, y1 = heat.resize.to_frame(x, y)
        x2, y2 = heat.resize.to_frame(x + w, y + h)
        boxes.append(Box(float(np.clip(x1, 0, fw)), float(np.clip(y1, 0, fh)),
                         float(np.clip(x2, 0, fw)), float(np.clip(y2, 0, fh)), class_id, label, score))
    return boxes


def fused_cam(cams: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """The top-k CAMs, each min-max normalised, averaged with the classes' probabilities as weights.

    ImageNet spreads one object over neighbouring classes (raccoon → badger, grey fox, ...); their
    maps light up different parts of it, and together cover it better than the top-1 map alone.
    """
    k = max(1, min(k, len(cams)))
    w = np.asarray(scores[:k], np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(k, 1.0 / k)
    out = np.zeros(cams.shape[1:], np.float64)
    for c, wi in zip(cams[:k], w):
        lo, hi = float(c.min()), float(c.max())
        if hi > lo:
            out += wi * (c - lo) / (hi - lo)
    return out.astype(np.float32)


@dataclass(frozen=True)
class BoxRule:
    """How a prediction's CAMs become boxes: the model's calibrated defaults, overridable per call.

    The defaults are the CAM paper's: the top-1 map alone, 20% of its range, the largest region.
    """
    threshold: float = 0.2
    mode: str = "largest"
    min_area: float = 0.01
    fuse_top: int = 1  # >1: fuse the top-k classes' maps (fused_cam) for the top-1 box

    @classmethod
    def for_model(cls, cam, threshold: float | None = None, mode: str | None = None,
                  min_area: float | None = None, fuse_top: int | None = None) -> "BoxRule":
        """`cam` is the model's CamSpec (metadata); None values keep what it says."""
        return cls(cam.threshold if threshold is None else threshold, cam.box_mode if mode is None else mode,
                   cam.min_area if min_area is None else min_area, cam.fuse_top if fuse_top is None else fuse_top)

    def heat(self, pred, rank: int = 0) -> HeatMap:
        """The heat map of the class at `rank` of a prediction's top-K (fused for the top-1)."""
        cam = fused_cam(pred.cams, pred.scores, self.fuse_top) if rank == 0 and self.fuse_top > 1 \
            else pred.cams[rank]
        return HeatMap.from_cam(cam, pred.resize)

    def boxes(self, heat: HeatMap, class_id: int = -1, label: str = "", score: float = 0.0) -> list[Box]:
        return boxes_from_heat(heat, self.threshold, self.mode, self.min_area, class_id, label, score)

    def localize(self, pred, rank: int = 0) -> tuple[HeatMap, list[Box]]:
        heat = self.heat(pred, rank)
        return heat, self.boxes(heat, int(pred.class_ids[rank]), pred.labels[rank], float(pred.scores[rank]))
