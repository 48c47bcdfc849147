"""Localisation against ground truth: CorLoc, top-1 localisation, MaxBoxAccV2, one box per object.

A photo that cannot be read, or an annotation that cannot be parsed, is skipped and named in the
result (`skipped`); the figures are over the photos that could be read.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Union

import numpy as np

from ..errors import EdgeCamError, UnreadableImage
from ..localize import Box, BoxRule, HeatMap, boxes_from_heat
from ..metadata import rewrite_metadata
from ..model import Prediction
from ..refine import refine_boxes
from ..source import max_pixels, read_image
from ..watch import WatchList
from .labelled import Annotation, Skipped, read_labelled, read_voc_dir

# The readers lived here before labelled.py: benchmarks and tests still import two of them from here.
__all__ = ["IOU_LEVELS", "MAX_OBJECTS", "Annotation", "Calibration", "Evaluation", "Objects", "Seen", "Skipped",
           "calibrate", "evaluate", "hit", "matches", "predictions", "read_labelled", "read_voc_dir",
           "write_calibrated"]

IOU_LEVELS = (0.3, 0.5, 0.7)  # MaxBoxAccV2 (Choe et al., CVPR 2020)
MAX_OBJECTS = 4  # per-object figures keep at most this many boxes a photo, as `run`'s --max-rois does


def hit(pred: Box | None, truth: list[Box], iou: float = 0.5) -> bool:
    """CorLoc's test: the predicted box overlaps some ground-truth box by at least `iou`."""
    return pred is not None and any(pred.iou(t) >= iou for t in truth)


def matches(preds: Sequence[Box], truth: Sequence[Box], iou: float = 0.5) -> int:
    """How many predicted boxes find a ground-truth box of their own (IoU ≥ `iou`), each truth
    taken once, the predictions in their order (hottest first) each taking its best free truth:
    the matching of detection benchmarks, for per-object recall and precision."""
    free, found = list(truth), 0
    for p in preds:
        best = max(range(len(free)), key=lambda i: p.iou(free[i]), default=None)
        if best is not None and p.iou(free[best]) >= iou:
            free.pop(best)
            found += 1
    return found


@dataclass(frozen=True)
class Objects:
    """One box per object (`--box-mode objects`) against every ground-truth box, at IoU 0.5."""
    found: int  # predicted boxes that matched a ground-truth box of their own
    predicted: int
    truths: int

    @property
    def recall(self) -> float:
        return self.found / self.truths if self.truths else 0.0

    @property
    def precision(self) -> float:
        return self.found / self.predicted if self.predicted else 0.0

    def to_dict(self) -> dict:
        return {"recall_iou50": self.recall, "precision_iou50": self.precision, "matched": self.found,
                "boxes": self.predicted, "ground_truth_boxes": self.truths}


@dataclass
class Evaluation:
    """Localisation of one model on a labelled set."""
    images: int  # photos evaluated (read and annotated)
    rule: BoxRule
    corloc: float  # with `rule` (the model's own), IoU ≥ 0.5: GT-known when a class was given
    thresholds: np.ndarray
    box_acc: dict[float, np.ndarray]  # IoU level → accuracy at each threshold, best of all boxes
    missing_class: int = 0  # GT-known: images whose class the teacher could not map
    best_iou: np.ndarray | None = None  # (images, thresholds), for calibration
    objects: Objects | None = None  # the "objects" box mode at the rule's threshold
    top1: float | None = None  # class given: the top-1 class is it (classification accuracy)
    top1_loc: float | None = None  # class given: top-1 right and the box at IoU ≥ 0.5
    skipped: list[Skipped] = field(default_factory=list)  # photos and annotations that could not be read
    refine: str = "none"
    hits: np.ndarray | None = None  # (images,) bool: CorLoc's test per evaluated photo, in the set's order

    @property
    def total(self) -> int:
        """Photos in the set: evaluated and skipped."""
        return self.images + len(self.skipped)

    @property
    def max_box_acc(self) -> dict[float, float]:
        return {d: float(a.max()) for d, a in self.box_acc.items()}

    @property
    def max_box_acc_v2(self) -> float:
        return float(np.mean(list(self.max_box_acc.values())))

    def best_threshold(self, iou: float = 0.5) -> float:
        """The threshold of the best BoxAcc at `iou`: what `calibrate` would look at first."""
        return float(self.thresholds[int(self.box_acc[iou].argmax())])

    def to_dict(self) -> dict:
        return {"images": self.images, "photos_in_set": self.total, "rule": self.rule.__dict__,
                "refine": self.refine, "corloc_iou50": self.corloc, "top1_accuracy": self.top1,
                "top1_loc_iou50": self.top1_loc,
                "max_box_acc": {f"{d:.1f}": v for d, v in self.max_box_acc.items()},
                "max_box_acc_v2": self.max_box_acc_v2,
                "best_threshold": {f"{d:.1f}": self.best_threshold(d) for d in self.box_acc},
                "objects": self.objects.to_dict() if self.objects else None,
                "missing_class": self.missing_class,
                "skipped": [s.to_dict() for s in self.skipped]}


Judged = Union[int, np.ndarray]  # a rank in the prediction's top-K, or a raw map; -1: no map


@dataclass(frozen=True)
class Seen:
    """One readable photo of the set: its annotation, the image, the teacher's answer, what to judge."""
    annotation: Annotation
    image: np.ndarray | None  # None once no longer needed (calibrate keeps every Seen)
    pred: Prediction
    judged: Judged
    class_right: bool | None  # a class given: whether the top-1 is it (a watch list: one of its members)

    @property
    def missing(self) -> bool:
        return isinstance(self.judged, int) and self.judged < 0

    def rule_heat(self, rule: BoxRule) -> HeatMap:
        """The map `rule` boxes: the judged rank's (the top-1's fused as the rule says), or the judged map."""
        j = self.judged
        return rule.heat(self.pred, j) if isinstance(j, int) else HeatMap.from_cam(j, self.pred.resize)

    def localize(self, rule: BoxRule, refine: str = "none") -> tuple[HeatMap, list[Box]]:
        j = self.judged
        heat, boxes = rule.localize(self.pred, j) if isinstance(j, int) else rule.localize_cam(j, self.pred.resize)
        if refine == "none" or self.image is None:
            return heat, boxes
        return heat, refine_boxes(self.image, heat, boxes, rule.threshold, refine)

    def heat(self) -> HeatMap:
        """The judged map alone, never fused: MaxBoxAccV2 judges the map itself."""
        j = self.judged
        cam = j if not isinstance(j, int) else self.pred.cams[j] if self.pred.cams is not None else None
        assert cam is not None  # a teacher's prediction has its maps
        return HeatMap.from_cam(cam, self.pred.resize)


def predictions(model, annotations: Sequence[Annotation], class_id: int | None = None, progress=None,
                watch: WatchList | None = None, skipped: list[Skipped] | None = None) -> Iterator[Seen]:
    """Each readable photo with the teacher's answer and what to judge: the top-1's rank 0
    (GT-unknown), or the map of `class_id` alone (GT-known: queried in the same pass when the
    teacher takes class queries, else only within its top-K; -1 when it has none), or the best watched
    target's map (`watch`; -1 on an image where no target is watched). A photo that cannot be read
    is appended to `skipped` (which must then be given) and left out."""
    classes = [class_id] if class_id is not None else None if watch is None else watch.class_ids
    if not model.class_query:  # an older teacher maps its top-K only: a class outside it is a miss
        classes = None
    members = set(watch.class_ids.tolist()) if watch is not None else None
    limit = max_pixels()  # a bad EDGE_CAM_MAX_PIXELS is one error now, not a skip per photo
    for n, a in enumerate(annotations):
        try:
            image = read_image(a.image, limit)
        except UnreadableImage as e:
            if skipped is None:
                raise
            skipped.append(Skipped(a.image, str(e)))
            continue
        finally:
            if progress:
                progress(n + 1, len(annotations))
        pred = model.predict(image, classes=classes)
        judged: Judged = 0
        right = None
        if class_id is not None:  # the class's own map, never fused with its neighbours' (fuse_top is the top-1's)
            cam = pred.cam_of(class_id)
            judged = -1 if cam is None else cam
            right = pred.class_id == class_id
        elif watch is not None:
            try:
                best = watch.watch(pred.logits, *pred.all_maps())
            except ValueError:  # an older teacher without some member's map here
                best = []
            judged = best[0].cam if best else -1
            right = members is not None and pred.class_id in members
        yield Seen(a, image, pred, judged, right)


def _nothing_read(skipped: list[Skipped]) -> EdgeCamError:
    names = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
    return EdgeCamError(f"none of the {len(skipped)} photos of the set could be read"
                        + (f" ({names}{'; ...' if len(skipped) > 3 else ''})." if names else "."))


def evaluate(model, annotations: Sequence[Annotation], class_id: int | None = None, rule=None,
             thresholds: np.ndarray | None = None, progress=None, watch: WatchList | None = None,
             skipped: Sequence[Skipped] = (), refine: str = "none") -> Evaluation:
    """CorLoc@0.5 with the model's box rule (optionally refined), top-1 localisation when a class
    is given, BoxAcc for every threshold with the best of all boxes (one per connected component)
    as MaxBoxAccV2 defines it, and per-object recall and precision of the "objects" box mode at
    the rule's threshold. `skipped`: files the loader could not use (load_labelled), reported with
    the photos that cannot be read here; an error only when no photo at all could be."""
    rule = rule or BoxRule.for_model(model.info.cam)
    objects_rule = replace(rule, mode="objects", max_rois=rule.max_rois or MAX_OBJECTS)
    thresholds = np.round(np.arange(0.01, 1.0, 0.01), 2) if thresholds is None else thresholds
    skips = list(skipped)
    hits, top1, best, missing = [], [], [], 0
    found = predicted = truths = 0
    for s in predictions(model, annotations, class_id, progress, watch, skips):
        truths += len(s.annotation.boxes)
        if s.class_right is not None:
            top1.append(s.class_right)
        if s.missing:
            missing += 1
            hits.append(False)
            best.append(np.zeros(len(thresholds)))
            continue
        boxes = s.localize(rule, refine)[1]
        hits.append(hit(boxes[0] if boxes else None, s.annotation.boxes))
        per_object = s.localize(objects_rule, refine)[1]
        found += matches(per_object, s.annotation.boxes)
        predicted += len(per_object)
        heat = s.heat()
        best.append(np.array([max((b.iou(t) for b in boxes_from_heat(heat, th, "all", 0.0) for t in s.annotation.boxes),
                                  default=0.0) for th in thresholds]))
    if not hits:
        raise _nothing_read(skips)
    best_iou = np.stack(best)
    right = np.array(top1, bool)
    return Evaluation(len(hits), rule, float(np.mean(hits)), thresholds,
                      {d: (best_iou >= d).mean(axis=0) for d in IOU_LEVELS}, missing, best_iou,
                      Objects(found, predicted, truths),
                      float(right.mean()) if top1 else None,
                      float((right & np.array(hits, bool)).mean()) if top1 else None, skips, refine,
                      np.array(hits, bool))


@dataclass
class Calibration:
    rule: BoxRule  # the best rule on the tuning half
    baseline: BoxRule  # the model's rule before
    tuned: dict[str, float]  # CorLoc@0.5 on the tuning half: {"baseline": .., "calibrated": ..}
    held_out: dict[str, float]  # the same on the held-out half, which chose nothing
    held_out_rule: BoxRule | None = None  # what the held-out half would have chosen: how far the choice moves
    skipped: list[Skipped] = field(default_factory=list)
    images: int = 0

    def to_dict(self) -> dict:
        return {"rule": self.rule.__dict__, "baseline": self.baseline.__dict__, "tuning_half": self.tuned,
                "held_out_half": self.held_out,
                "held_out_best_rule": self.held_out_rule.__dict__ if self.held_out_rule else None,
                "images": self.images, "skipped": [s.to_dict() for s in self.skipped]}


def calibrate(model, annotations: Sequence[Annotation], class_id: int | None = None, progress=None,
              thresholds=np.round(np.arange(0.05, 0.91, 0.01), 2), modes=("largest", "union"),
              min_areas=(0.005, 0.02, 0.05), fuse_tops=(1, 3, 5), watch: WatchList | None = None,
              skipped: Sequence[Skipped] = ()) -> Calibration:
    """Choose the box rule (threshold, box mode, minimum region area, top-k map fusion) with the
    best CorLoc@0.5 on every other readable photo, and report it on the others, which played no
    part in the choice; the rule those others would have chosen is kept too, to show how far the
    choice moves between two halves of one set. Unreadable photos are skipped and named."""
    skips = list(skipped)
    # kept for the whole search, so without the photos: only GrabCut needs them, and it is not searched
    seen = [replace(s, image=None) for s in predictions(model, annotations, class_id, progress, watch, skips)]
    if not seen:
        raise _nothing_read(skips)
    if class_id is not None or watch is not None:
        fuse_tops = (1,)  # fusing is about the top-1's neighbours; a chosen class's map stands alone
    halves = (seen[0::2], seen[1::2])
    baseline = BoxRule.for_model(model.info.cam)

    # Each photo's map for each fusion, made once: the rules differ in how they box it only.
    heats = {k: [None if s.missing else s.rule_heat(BoxRule(fuse_top=k)) for s in seen] for k in fuse_tops}

    def corloc(rule: BoxRule, half: int) -> float:
        items = list(zip(seen, heats[rule.fuse_top]))[half::2]
        if not items:
            return 0.0
        firsts = [[] if h is None else rule.boxes(h)[:1] for _, h in items]
        return float(np.mean([bool(f) and hit(f[0], s.annotation.boxes) for (s, _), f in zip(items, firsts)]))

    rules = [BoxRule(float(t), m, a, k) for k in fuse_tops for m in modes
             for a in (min_areas if m != "largest" else (0.01,)) for t in thresholds]
    tuning = [corloc(r, 0) for r in rules]
    other = [corloc(r, 1) for r in rules] if halves[1] else tuning
    best = rules[int(np.argmax(tuning))]
    heats.setdefault(baseline.fuse_top, [None if s.missing else s.rule_heat(baseline) for s in seen])
    return Calibration(best, baseline, {"baseline": corloc(baseline, 0), "calibrated": max(tuning)},
                       {"baseline": corloc(baseline, 1), "calibrated": corloc(best, 1)},
                       rules[int(np.argmax(other))], skips, len(seen))


def write_calibrated(model, calibration: Calibration, out_path: str) -> None:
    """A copy of the model's file whose default box rule is the calibrated one (localize and run
    then use it without flags), with the calibration's figures kept in its source metadata."""
    r = calibration.rule
    info = replace(model.info, cam=replace(model.info.cam, threshold=r.threshold, box_mode=r.mode,
                                           min_area=r.min_area, fuse_top=r.fuse_top),
                   source={**model.info.source, "calibration": calibration.to_dict()})
    rewrite_metadata(model.path, out_path, info.to_props())
