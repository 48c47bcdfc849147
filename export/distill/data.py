"""The student's training set: the crops `run` would hand it, cut from the user's own footage.

For every frame the teacher runs, and its box and map give crops cut by the runtime's own Cascade
(its box rule, ROIs and `Cascade.cut`: same pad, square, mask, fill colour), so training and
running see the same pixels. Four kinds per frame, all labelled with what the teacher says about *this* frame:

  exact       the crop around this frame's box, as the cascade cuts it when the teacher ran;
  jitter      that box grown, shrunk and shifted (boxes move a little from run to run);
  stale       this frame cut at the box (and map) of a frame up to `every` - 1 earlier: between
              teacher runs the cascade reuses the last box, so most crops the student sees are
              these, and it must notice when the object has gone or changed;
  background  a box away from the CAM box, where the map is cold: what the scene looks like
              with nothing of interest in the crop, labelled "other".

With a watch list (as `run --classes ... --min-score S`) the teacher is asked for the watched
classes' maps in the same pass, and the ROIs are the cascade's own (cascade.find_rois: each
watched target at S or above, one ROI per object in box mode "objects"), each labelled with its
target's name. A frame with no ROI runs no student in the cascade, but the boxes of earlier frames
may still be in use, and then the car may have left: such stale crops, and a few random boxes,
are labelled "other". A stale crop on a frame that has targets is labelled with the first target
whose map is hot (≥ the box threshold) inside it, else "other": the student answers about the
pixels it is shown.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edge_cam.cascade import Cascade, find_rois, thumbnail
from edge_cam.crop import CropSpec
from edge_cam.localize import Box, BoxRule, HeatMap
from edge_cam.model import Model
from edge_cam.preprocess import to_8bit
from edge_cam.source import open_source
from edge_cam.watch import WatchList

EXACT, JITTER, STALE, BACKGROUND = 0, 1, 2, 3
BATCH = 8  # frames per teacher call


@dataclass
class Footage:
    """What the teacher said on every frame read, and the crops cut from them."""
    source: np.ndarray  # (F,) which source each frame came from
    index: np.ndarray  # (F,) the frame's index in its source
    logits: np.ndarray  # (F, classes) the teacher's, for its answer to whatever question the student is taught
    crops: np.ndarray  # (N, S, S, 3) uint8 RGB
    frame: np.ndarray  # (N,) the row in the per-frame arrays each crop belongs to
    kind: np.ndarray  # (N,) EXACT, JITTER, STALE or BACKGROUND
    # With a watch list: per frame the best target at min_score or above (its index in the watch
    # list, -1 for none) and the best target's probability; per crop its label (target index, -1 "other").
    target: np.ndarray | None = None  # (F,)
    target_score: np.ndarray | None = None  # (F,)
    crop_target: np.ndarray | None = None  # (N,)

    def holdout(self, fraction: float) -> np.ndarray:
        """(F,) True for the last `fraction` of each source's frames."""
        out = np.zeros(len(self.index), bool)
        for s in np.unique(self.source):
            rows = np.flatnonzero(self.source == s)
            out[rows[int(math.floor((1 - fraction) * len(rows))):]] = True
        return out


def jittered(rng: np.random.Generator, box: Box, frame_size: tuple[int, int], amount: float = 0.15) -> Box:
    """The box scaled by up to ±amount (log scale), its aspect changed by half that, its centre
    moved by a normal amount/2 of its size: about how much CAM boxes move between frames of one
    object under a static camera."""
    fh, fw = frame_size
    s, a = math.exp(rng.uniform(-amount, amount)), math.exp(rng.uniform(-amount / 2, amount / 2))
    w, h = max(box.width, 2.0) * s * a, max(box.height, 2.0) * s / a
    cx = (box.x1 + box.x2) / 2 + rng.normal(0, amount / 2) * box.width
    cy = (box.y1 + box.y2) / 2 + rng.normal(0, amount / 2) * box.height
    return Box(max(0.0, cx - w / 2), max(0.0, cy - h / 2), min(fw, cx + w / 2), min(fh, cy + h / 2))


def away(rng: np.random.Generator, boxes: Sequence[Box], heats: Sequence[HeatMap], threshold: float,
         tries: int = 10) -> Box | None:
    """A box about the first box's size that overlaps every box by IoU < 0.1 and where every map
    stays below the box threshold: the teacher saw nothing it was asked about there (None if none fits)."""
    box, frame_size = boxes[0], heats[0].resize.frame_size
    fh, fw = frame_size
    side = math.sqrt(max(box.area, 16.0))
    for _ in range(tries):
        w, h = (min(side * rng.uniform(0.6, 1.3), fw), min(side * rng.uniform(0.6, 1.3), fh))
        x, y = rng.uniform(0, fw - w), rng.uniform(0, fh - h)
        cand = Box(x, y, x + w, y + h)
        if all(cand.iou(b) < 0.1 for b in boxes) and \
                all(hm.region(x, y, x + w, y + h, (8, 8)).max() < threshold for hm in heats):
            return cand
    return None


def anywhere(rng: np.random.Generator, frame_size: tuple[int, int], like: Sequence[Box]) -> Box:
    """A random box on a frame where the teacher saw no watched target: the size of one of the
    boxes the cascade has been cutting lately (`like`), else 15-50% of the frame's short side."""
    fh, fw = frame_size
    if like:
        b = like[int(rng.integers(len(like)))]
        w, h = min(max(b.width, 8.0), fw), min(max(b.height, 8.0), fh)
    else:
        w = h = min(fh, fw) * rng.uniform(0.15, 0.5)
    x, y = rng.uniform(0, fw - w), rng.uniform(0, fh - h)
    return Box(x, y, x + w, y + h)


def _batches(source, max_frames: int | None, sample: int = 1):
    """The source's decodable frames, every `sample`-th of them, BATCH at a time, each with its
    position among the decodable frames, up to max_frames read; and how many were read."""
    pending, n = [], 0
    for frame in source:
        if frame.image is None:
            continue
        if n % sample == 0:
            pending.append((n, frame))
        n += 1
        if len(pending) == BATCH or (n == max_frames and pending):
            yield pending, n
            pending = []
        if n == max_frames:
            return
    if pending:
        yield pending, n


def collect(teacher: Model, sources: Sequence[str], size: int, spec: CropSpec, fill: tuple[int, int, int], *,
            every: int, change: float | None, rng: np.random.Generator, jitter: int = 2, stale: int = 2,
            background: int = 1, watch: WatchList | None = None, min_score: float = 0.0, rule: BoxRule | None = None,
            max_rois: int = 4, max_frames: int | None = None, sample: int = 1,
            progress: Callable[[str, int, int], None] | None = None) -> Footage:
    """Run the teacher over every `sample`-th frame of every video (on every photo) and cut the crops (see
    the module's doc). watch, min_score, rule, max_rois: as the Cascade will be given them."""
    # The cascade the student will run in: its box rule, ROIs and crops are the training set's.
    cascade = Cascade(teacher, every=every, change=change, rule=rule, crop_spec=spec, max_rois=max_rois,
                      watch=watch, min_score=min_score, fill=fill)
    rule = cascade.rule
    shape = (size, size)
    classes = None if watch is None else watch.class_ids
    names = {} if watch is None else {n: i for i, n in enumerate(watch.names)}
    per_frame: dict[str, list] = {"source": [], "index": [], "logits": [], "target": [], "target_score": []}
    crops, frame_of, kinds, labels = [], [], [], []

    def cut(image, box, heat, kind, row, label=-1):
        crops.append(cascade.cut(image, box, heat, shape).image)
        frame_of.append(row)
        kinds.append(kind)
        labels.append(label)

    def hot_target(hot: list[tuple[int, HeatMap]], box: Box) -> int:
        """The first target (best first) whose map reaches the box threshold inside `box`, or -1."""
        return next((t for t, hm in hot if hm.region(box.x1, box.y1, box.x2, box.y2, (8, 8)).max() >= rule.threshold), -1)

    def frame_crops(frame, pred, row, recent) -> None:
        image = to_8bit(frame, "BGR")[0]  # once, as the cascade converts each frame
        found = find_rois(pred, rule, watch, min_score)  # all of them: a stale box is judged by every hot map
        rois, frame_size = cascade.localize(pred), image.shape[:2]
        hot = list({names[r.watch]: r.heat for r in found if r.heat is not None}.items()) if watch else []
        thumb = thumbnail(image) if change is not None else None
        if watch is None and not rois:  # no ROI: the cascade answers "none" and the student is not asked
            return
        for r in rois:
            label = names[r.watch] if watch else -1
            cut(image, r.box, r.heat, EXACT, row, label)
            for _ in range(jitter):
                cut(image, jittered(rng, r.box, frame_size), r.heat, JITTER, row, label)
        # With change detection on, the cascade keeps a box only while the scene stays within
        # `change` grey levels of the frame the teacher saw: older boxes on a changed scene never occur.
        usable = [rs for rs, t in recent
                  if rs and (change is None or thumb is None or float(np.abs(thumb - t).mean()) < change)]
        for _ in range(stale if usable else 0):
            old = usable[int(rng.integers(len(usable)))]
            old_box, old_heat = old[int(rng.integers(len(old)))]
            moved = jittered(rng, old_box, frame_size, 0.05)
            cut(image, moved, old_heat, STALE, row, hot_target(hot, moved) if watch else -1)
        for _ in range(background):
            if rois:
                b = away(rng, [r.box for r in rois], [r.heat for r in rois if r.heat is not None], rule.threshold)
            else:  # nothing watched here: any box shows "other"
                b = anywhere(rng, frame_size, [bx for rs in usable for bx, _ in rs])
            if b is not None:
                cut(image, b, rois[0].heat if rois else None, BACKGROUND, row)
        if every > 1:  # every=1: the teacher runs on every frame and no box is ever reused
            recent.append(([(r.box, r.heat) for r in rois], thumb))

    for s, name in enumerate(sources):
        with open_source(name) as source:
            # Footage is thinned; photos are not: `run --collect` kept each of them for a reason.
            step = 1 if source.info.kind == "images" else sample
            # Boxes the cascade may still be reusing: those of the frames up to every - 1 earlier.
            recent: deque = deque(maxlen=max(1, (every - 1) // step))
            total = min(source.total or 0, max_frames or 10**9)
            for batch, done in _batches(source, max_frames, step):
                for (n, f), pred in zip(batch, teacher.predict_batch([f.image for _, f in batch], classes=classes)):
                    row = len(per_frame["index"])
                    best, best_score = -1, float("nan")
                    if watch is not None:
                        p = watch.scores(pred.logits)
                        best_score = float(p.max())
                        best = int(p.argmax()) if best_score >= min_score else -1
                    for key, value in (("source", s), ("index", n if f.index is None else f.index),
                                       ("logits", pred.logits), ("target", best), ("target_score", best_score)):
                        per_frame[key].append(value)
                    frame_crops(f.image, pred, row, recent)
                if progress:
                    progress(f"teacher on {source.name}", done, total)
    arrays = {k: np.asarray(v) for k, v in per_frame.items()}
    return Footage(arrays["source"].astype(np.int64), arrays["index"].astype(np.int64),
                   arrays["logits"].astype(np.float32).reshape(len(arrays["index"]), -1),
                   np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
                   np.asarray(frame_of, np.int64), np.asarray(kinds, np.int8),
                   arrays["target"].astype(np.int64) if watch else None,
                   arrays["target_score"].astype(np.float32) if watch else None,
                   np.asarray(labels, np.int64) if watch else None)
