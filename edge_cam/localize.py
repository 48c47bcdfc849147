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

    def iou(self, other: Box) -> float:
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
    def from_cam(cls, cam: np.ndarray, resize: Resize) -> HeatMap:
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


BOX_MODES = ("largest", "union", "all", "objects")
OBJECTS_WORK_SIDE = 128  # the longer side the objects mode's peaks and watershed work at (see object_regions)


def boxes_from_heat(heat: HeatMap, threshold: float = 0.2, mode: str = "largest",
                    min_area: float = 0.01, class_id: int = -1, label: str = "",
                    score: float = 0.0, *, min_distance: float = 0.1, min_prominence: float = 0.1,
                    max_boxes: int | None = None, object_level: float | None = None) -> list[Box]:
    """Boxes of the regions where heat ≥ threshold, largest first.

    largest: the CAM paper's single box around the largest region. union: one box around every
    region of at least `min_area` (a fraction of the input), for objects the map splits in parts.
    all: one box per such region (always at least the largest). objects: one box per peak of the
    map, hottest first, touching objects split by a watershed (see object_regions; `min_distance`,
    a fraction of the input's longer side, and `min_prominence`, of the map's range, choose the
    peaks). `object_level` (objects mode only; None: `threshold`, of the map's max, for every
    object): the peaks are those at least that fraction of the map's max, and each object is boxed
    at that fraction of its own peak, so a cooler object keeps its extent when a hotter one sets the
    map's max. `max_boxes` keeps the first ones.
    """
    if mode not in BOX_MODES:
        raise ValueError(f"mode: unknown box mode {mode!r}; use one of {', '.join(BOX_MODES)}")
    mask = (heat.values >= threshold).astype(np.uint8)
    total = mask.shape[0] * mask.shape[1]
    if mode == "objects":
        regions, n = object_regions(heat.values, threshold, min_distance, min_prominence, own=object_level)
        rects = [cv2.boundingRect((regions == k).astype(np.uint8)) for k in range(1, n + 1)]
        areas = np.bincount(regions.ravel(), minlength=n + 1)[1:]
        rects = [r for r, a in zip(rects, areas) if a >= min_area * total] or rects[:1]
    else:
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if n <= 1:
            return []
        comps = sorted(range(1, n), key=lambda i: -stats[i, cv2.CC_STAT_AREA])
        if mode == "largest":
            comps = comps[:1]
        else:
            comps = [i for i in comps if stats[i, cv2.CC_STAT_AREA] >= min_area * total] or comps[:1]
        rects = [tuple(int(v) for v in stats[i, :4]) for i in comps]
    if mode == "union":
        x1, y1 = min(r[0] for r in rects), min(r[1] for r in rects)
        x2, y2 = max(r[0] + r[2] for r in rects), max(r[1] + r[3] for r in rects)
        rects = [(x1, y1, x2 - x1, y2 - y1)]
    fh, fw = heat.resize.frame_size
    boxes = []
    for x, y, w, h in rects[:max_boxes]:
        x1, y1 = heat.resize.to_frame(x, y)
        x2, y2 = heat.resize.to_frame(x + w, y + h)
        boxes.append(Box(float(np.clip(x1, 0, fw)), float(np.clip(y1, 0, fh)),
                         float(np.clip(x2, 0, fw)), float(np.clip(y2, 0, fh)), class_id, label, score))
    return boxes


def find_peaks(values: np.ndarray, threshold: float, min_distance_px: float,
               min_prominence: float) -> list[tuple[int, int]]:
    """(y, x) of the map's peaks above `threshold`, hottest first.

    A local maximum counts when it is at least `min_distance_px` from every hotter peak of the
    same region and stands out by `min_prominence`: going down from it by that much (never below
    the threshold) does not reach a hotter peak. The prominence is what separates two objects
    (a dip between them) from one object's uneven map (a shoulder on the way to its top).
    """
    v = np.ascontiguousarray(values, np.float32)
    local = (v >= cv2.dilate(v, np.ones((3, 3), np.uint8))) & (v >= threshold)
    n, plateaus = cv2.connectedComponents(local.astype(np.uint8), connectivity=8)
    if n <= 1:
        return []
    flat = plateaus.ravel()
    ids, first = np.unique(flat, return_index=True)
    first = first[ids > 0]  # one pixel of each flat top
    cands = sorted(((float(v.flat[i]), divmod(int(i), v.shape[1])) for i in first), key=lambda c: -c[0])
    _, comp = cv2.connectedComponents((v >= threshold).astype(np.uint8), connectivity=8)
    peaks: list[tuple[int, int]] = []
    for height, (y, x) in cands:
        same = [p for p in peaks if comp[p] == comp[y, x]]
        if any((py - y) ** 2 + (px - x) ** 2 < min_distance_px ** 2 for py, px in same):
            continue
        if same:
            floor = max(height - min_prominence, threshold)
            fill = np.zeros((v.shape[0] + 2, v.shape[1] + 2), np.uint8)
            cv2.floodFill(v, fill, (x, y), 0, height - floor, 1e9,
                          8 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
            if any(fill[py + 1, px + 1] for py, px in same):
                continue
        peaks.append((y, x))
    return peaks


def object_regions(values: np.ndarray, threshold: float, min_distance: float = 0.1,
                   min_prominence: float = 0.1, levels: int = 24, own: float | None = None) -> tuple[np.ndarray, int]:
    """Split the map's hot pixels (≥ threshold) into one region per peak: int32 labels 1..n in
    `values`' shape, 1 the hottest peak, and n. With `own`, the peaks are those ≥ own and each
    region keeps its pixels ≥ own × its peak's height instead (the flooding goes down to the
    lowest of those levels).

    A watershed by flooding: from the peaks down, level by level, each region grows into the hot
    pixels it touches, so two objects meet along the valley between them. (cv2.watershed floods
    by colour difference, i.e. the map's gradient, which is lowest exactly in that valley.) The
    work is done with the longer side at OBJECTS_WORK_SIDE pixels: a CAM has a few cells per side,
    bilinearly upsampled, so its peaks and valleys hold no finer detail; the regions' outer edges
    come back from the full-resolution threshold.
    """
    h, w = values.shape
    f = min(1.0, OBJECTS_WORK_SIDE / max(h, w))
    small = values if f == 1.0 else cv2.resize(values, (max(1, round(w * f)), max(1, round(h * f))),
                                               interpolation=cv2.INTER_AREA)
    peaks = find_peaks(small, threshold if own is None else own, min_distance * max(small.shape), min_prominence)[:254]
    heights = np.array([0.0] + [float(small[p]) for p in peaks], np.float32)  # 0: the unlabelled
    if own is not None and peaks:
        threshold = own * float(heights[1:].min())
    hot = (small >= threshold).astype(np.uint8)
    _, comp = cv2.connectedComponents(hot, connectivity=8)
    labels: np.ndarray = np.zeros(small.shape, np.uint8)
    owners: dict[int, list[int]] = {}
    for k, p in enumerate(peaks, 1):
        owners.setdefault(int(comp[p]), []).append(k)
        labels[p] = k
    shared = [c for c, ks in owners.items() if len(ks) > 1]
    for c, ks in owners.items():
        if len(ks) == 1:  # one peak: its whole region, no flooding needed
            labels[comp == c] = ks[0]
    if shared:  # flood only the regions with several peaks, inside their bounding rectangle
        x, y, bw, bh = cv2.boundingRect(np.isin(comp, shared).astype(np.uint8))
        sub, lab, inside = small[y:y + bh, x:x + bw], labels[y:y + bh, x:x + bw], np.isin(comp[y:y + bh, x:x + bw], shared)
        kernel = np.ones((3, 3), np.uint8)
        for level in np.linspace(float(sub[inside].max()), threshold, levels):
            _grow(lab, inside & (sub >= level), kernel)
    if f < 1.0:
        labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
        _grow(labels, values >= threshold, np.ones((3, 3), np.uint8))  # the full-resolution edge the small map rounded off
        labels[values < threshold] = 0
    if own is not None:
        labels[values < own * heights[labels]] = 0
    return labels.astype(np.int32), len(peaks)


def _grow(labels: np.ndarray, allowed: np.ndarray, kernel: np.ndarray) -> None:
    """Grow the labelled regions into the allowed unlabelled pixels they reach (geodesic dilation)."""
    while True:
        grown = cv2.dilate(labels, kernel)
        new = allowed & (labels == 0) & (grown > 0)
        if not new.any():
            return
        labels[new] = grown[new]


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
    min_distance and min_prominence choose the peaks of the "objects" mode; max_rois (None: all)
    caps the boxes of any mode.
    """
    threshold: float = 0.2
    mode: str = "largest"
    min_area: float = 0.01
    fuse_top: int = 1  # >1: fuse the top-k classes' maps (fused_cam) for the top-1 box
    min_distance: float = 0.1
    min_prominence: float = 0.1
    max_rois: int | None = None
    # objects mode: each object boxed at this fraction of its own peak (None: `threshold` of the map's max)
    object_level: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in BOX_MODES:
            raise ValueError(f"mode: unknown box mode {self.mode!r}; use one of {', '.join(BOX_MODES)}")
        if self.max_rois is not None and self.max_rois < 1:
            raise ValueError(f"max_rois: {self.max_rois} must be at least 1 (None: no cap)")

    @classmethod
    def for_model(cls, cam, threshold: float | None = None, mode: str | None = None,
                  min_area: float | None = None, fuse_top: int | None = None, **kw) -> BoxRule:
        """`cam` is the model's CamSpec (metadata); None values keep what it says. `kw`: the other
        fields (min_distance, min_prominence, max_rois); None keeps the default."""
        extra = {k: v for k, v in kw.items() if v is not None}
        return cls(cam.threshold if threshold is None else threshold, cam.box_mode if mode is None else mode,
                   cam.min_area if min_area is None else min_area, cam.fuse_top if fuse_top is None else fuse_top,
                   **extra)

    def heat(self, pred, rank: int = 0) -> HeatMap:
        """The heat map of the class at `rank` of a prediction's top-K (fused for the top-1)."""
        cam = fused_cam(pred.cams, pred.scores, self.fuse_top) if rank == 0 and self.fuse_top > 1 \
            else pred.cams[rank]
        return HeatMap.from_cam(cam, pred.resize)

    def boxes(self, heat: HeatMap, class_id: int = -1, label: str = "", score: float = 0.0) -> list[Box]:
        return boxes_from_heat(heat, self.threshold, self.mode, self.min_area, class_id, label, score,
                               min_distance=self.min_distance, min_prominence=self.min_prominence,
                               max_boxes=self.max_rois, object_level=self.object_level)

    def localize(self, pred, rank: int = 0) -> tuple[HeatMap, list[Box]]:
        heat = self.heat(pred, rank)
        return heat, self.boxes(heat, int(pred.class_ids[rank]), pred.labels[rank], float(pred.scores[rank]))

    def localize_cam(self, cam: np.ndarray, resize: Resize, class_id: int = -1, label: str = "",
                     score: float = 0.0) -> tuple[HeatMap, list[Box]]:
        """Boxes of any raw map (h, w): a class query's, or a watched group's (watch.Watched.cam)."""
        heat = HeatMap.from_cam(cam, resize)
        return heat, self.boxes(heat, class_id, label, score)

