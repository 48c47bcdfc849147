"""Localisation against ground truth: Pascal VOC annotations and CorLoc."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Union

import numpy as np

from ..errors import EdgeCamError
from ..localize import Box, BoxRule, HeatMap, boxes_from_heat
from ..metadata import rewrite_metadata
from ..model import Prediction
from ..source import list_images, read_image
from ..watch import WatchList


@dataclass(frozen=True)
class Annotation:
    image: str
    width: int
    height: int
    boxes: list[Box]


def _number(element: ET.Element | None, tag: str, xml_path: str) -> float:
    text = None if element is None else element.findtext(tag)
    try:
        return float(text or "")
    except ValueError:
        raise EdgeCamError(f"{xml_path} is not a VOC annotation: <{tag}> is missing or not a number.") from None


def read_voc(xml_path: str, images_dir: str | None = None) -> Annotation:
    """One Pascal VOC XML file; the image is looked up beside it or in `images_dir`."""
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as e:
        raise EdgeCamError(f"{xml_path} is not a readable VOC annotation ({e}).") from None
    size = root.find("size")
    boxes = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        # VOC pixel indices are 1-based and inclusive: xmin=1 is the left edge (0.0) of the image.
        v = {k: _number(bb, k, xml_path) for k in ("xmin", "ymin", "xmax", "ymax")}
        boxes.append(Box(v["xmin"] - 1, v["ymin"] - 1, v["xmax"], v["ymax"], label=obj.findtext("name", "")))
    name = root.findtext("filename", "")
    folder = images_dir or os.path.dirname(xml_path)
    return Annotation(os.path.join(folder, name), int(_number(size, "width", xml_path)),
                      int(_number(size, "height", xml_path)), boxes)


def read_voc_dir(annotations_dir: str, images_dir: str | None = None) -> list[Annotation]:
    files = sorted(f for f in os.listdir(annotations_dir) if f.endswith(".xml"))
    if not files:
        raise EdgeCamError(f"{annotations_dir} holds no VOC .xml annotations.")
    return [read_voc(os.path.join(annotations_dir, f), images_dir) for f in files]


def hit(pred: Box | None, truth: list[Box], iou: float = 0.5) -> bool:
    """CorLoc's test: the predicted box overlaps some ground-truth box by at least `iou`."""
    return pred is not None and any(pred.iou(t) >= iou for t in truth)


def read_yolo_dir(root: str) -> list[Annotation]:
    """YOLO layout: root/images/*.jpg and root/labels/*.txt with `class cx cy w h` (fractions)."""
    images_dir, labels_dir = os.path.join(root, "images"), os.path.join(root, "labels")
    if not os.path.isdir(images_dir) or not os.path.isdir(labels_dir):
        raise EdgeCamError(f"{root} should hold images/ and labels/ folders (YOLO layout).")
    out = []
    for path in list_images([images_dir]):
        label = os.path.join(labels_dir, os.path.splitext(os.path.basename(path))[0] + ".txt")
        if not os.path.isfile(label):
            continue
        h, w = read_image(path).shape[:2]
        boxes = []
        with open(label, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 5:
                    continue
                c, cx, cy, bw, bh = int(parts[0]), *map(float, parts[1:5])
                boxes.append(Box((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h,
                                 class_id=c))
        out.append(Annotation(path, w, h, boxes))
    if not out:
        raise EdgeCamError(f"{root} has no image with a YOLO label file.")
    return out


def read_labelled(voc: str | None = None, yolo: str | None = None) -> list[Annotation]:
    """A VOC folder (Annotations/ + JPEGImages/, annotations/ + images/, or XML beside the
    images) or a YOLO folder (images/ + labels/)."""
    if yolo:
        return read_yolo_dir(yolo)
    if not voc:
        raise EdgeCamError("read_labelled needs a voc or a yolo folder.")
    for ann, img in (("Annotations", "JPEGImages"), ("annotations", "images")):
        if os.path.isdir(os.path.join(voc, ann)):
            return read_voc_dir(os.path.join(voc, ann), os.path.join(voc, img))
    if not os.path.isdir(voc):
        raise EdgeCamError(f"{voc} does not exist.")
    return read_voc_dir(voc)


IOU_LEVELS = (0.3, 0.5, 0.7)  # MaxBoxAccV2 (Choe et al., CVPR 2020)


@dataclass
class Evaluation:
    """Localisation of one model on a labelled set."""
    images: int
    rule: BoxRule
    corloc: float  # with `rule` (the model's own), IoU ≥ 0.5
    thresholds: np.ndarray
    box_acc: dict[float, np.ndarray]  # IoU level → accuracy at each threshold, best of all boxes
    missing_class: int = 0  # GT-known: images whose class was outside the exported top-K
    best_iou: np.ndarray | None = None  # (images, thresholds), for calibration

    @property
    def max_box_acc(self) -> dict[float, float]:
        return {d: float(a.max()) for d, a in self.box_acc.items()}

    @property
    def max_box_acc_v2(self) -> float:
        return float(np.mean(list(self.max_box_acc.values())))

    def to_dict(self) -> dict:
        best = {f"{d:.1f}": float(self.thresholds[int(a.argmax())]) for d, a in self.box_acc.items()}
        return {"images": self.images, "rule": self.rule.__dict__, "corloc_iou50": self.corloc,
                "max_box_acc": {f"{d:.1f}": v for d, v in self.max_box_acc.items()},
                "max_box_acc_v2": self.max_box_acc_v2, "best_threshold": best,
                "missing_class": self.missing_class}


Judged = Union[int, np.ndarray]  # a rank in the prediction's top-K, or a raw map; -1: no map


def predictions(model, annotations: list[Annotation], class_id: int | None = None, progress=None,
                watch: WatchList | None = None) -> Iterator[tuple[Annotation, Prediction, Judged]]:
    """(annotation, prediction, what to judge) per image: the top-1's rank 0 (GT-unknown), or the
    map of `class_id` (GT-known: queried in the same pass when the teacher takes class queries,
    else only within its top-K; -1 when it has none), or the best watched target's map (`watch`;
    -1 on an image where no target is watched)."""
    classes = [class_id] if class_id is not None else None if watch is None else watch.class_ids
    if not model.class_query:  # an older teacher maps its top-K only: a class outside it is a miss
        classes = None
    for n, a in enumerate(annotations):
        pred = model.predict(read_image(a.image), classes=classes)
        judged: Judged = 0
        if class_id is not None:
            rank = pred.rank_of(class_id)
            cam = pred.cam_of(class_id)
            judged = rank if rank is not None else -1 if cam is None else cam
        elif watch is not None:
            try:
                best = watch.watch(pred.logits, *pred.all_maps())
            except ValueError:  # an older teacher without some member's map here
                best = []
            judged = best[0].cam if best else -1
        yield a, pred, judged
        if progress:
            progress(n + 1, len(annotations))


def _localize(rule: BoxRule, pred: Prediction, judged: Judged) -> tuple[HeatMap, list[Box]]:
    return rule.localize(pred, judged) if isinstance(judged, int) else rule.localize_cam(judged, pred.resize)


def _missing(judged: Judged) -> bool:
    return isinstance(judged, int) and judged < 0


def evaluate(model, annotations: list[Annotation], class_id: int | None = None, rule=None,
             thresholds: np.ndarray | None = None, progress=None, watch: WatchList | None = None) -> Evaluation:
    """CorLoc@0.5 with the model's box rule, and BoxAcc for every threshold with the best of all
    boxes (one per connected component), as MaxBoxAccV2 defines it."""
    rule = rule or BoxRule.for_model(model.info.cam)
    thresholds = np.round(np.arange(0.01, 1.0, 0.01), 2) if thresholds is None else thresholds
    hits, best, missing = [], [], 0
    for a, pred, judged in predictions(model, annotations, class_id, progress, watch):
        if _missing(judged):
            missing += 1
            hits.append(False)
            best.append(np.zeros(len(thresholds)))
            continue
        boxes = _localize(rule, pred, judged)[1]
        hits.append(hit(boxes[0] if boxes else None, a.boxes))
        cam = judged if not isinstance(judged, int) else pred.cams[judged] if pred.cams is not None else None
        assert cam is not None  # a teacher's prediction has its maps
        heat = HeatMap.from_cam(cam, pred.resize)  # MaxBoxAccV2 judges the map itself
        best.append(np.array([max((b.iou(t) for b in boxes_from_heat(heat, th, "all", 0.0) for t in a.boxes),
                                  default=0.0) for th in thresholds]))
    best_iou = np.stack(best)
    return Evaluation(len(annotations), rule, float(np.mean(hits)), thresholds,
                      {d: (best_iou >= d).mean(axis=0) for d in IOU_LEVELS}, missing, best_iou)


@dataclass
class Calibration:
    rule: BoxRule  # the best rule on the tuning half
    baseline: BoxRule  # the model's rule before
    tuned: dict[str, float]  # CorLoc@0.5 on the tuning half: {"baseline": .., "calibrated": ..}
    held_out: dict[str, float]  # the same on the held-out half, which chose nothing

    def to_dict(self) -> dict:
        return {"rule": self.rule.__dict__, "baseline": self.baseline.__dict__, "tuning_half": self.tuned,
                "held_out_half": self.held_out}


def calibrate(model, annotations: list[Annotation], class_id: int | None = None, progress=None,
              thresholds=np.round(np.arange(0.05, 0.61, 0.01), 2), modes=("largest", "union"),
              min_areas=(0.005, 0.02, 0.05), fuse_tops=(1, 3, 5), watch: WatchList | None = None) -> Calibration:
    """Choose the box rule (threshold, box mode, minimum region area, top-k map fusion) with the
    best CorLoc@0.5 on every other image, and report it on the others, which played no part in
    the choice."""
    preds = list(predictions(model, annotations, class_id, progress, watch))
    if class_id is not None or watch is not None:
        fuse_tops = (1,)  # fusing is about the top-1's neighbours; a chosen class's map stands alone
    halves = (preds[0::2], preds[1::2])
    baseline = BoxRule.for_model(model.info.cam)

    def first(rule: BoxRule, pred: Prediction, judged: Judged) -> Box | None:
        boxes = _localize(rule, pred, judged)[1]
        return boxes[0] if boxes else None

    def corloc(rule, items):
        return float(np.mean([not _missing(judged) and hit(first(rule, pred, judged), a.boxes)
                              for a, pred, judged in items]))

    rules = [BoxRule(float(t), m, a, k) for k in fuse_tops for m in modes
             for a in (min_areas if m != "largest" else (0.01,)) for t in thresholds]
    scores = [corloc(r, halves[0]) for r in rules]
    best = rules[int(np.argmax(scores))]
    return Calibration(best, baseline, {"baseline": corloc(baseline, halves[0]), "calibrated": max(scores)},
                       {"baseline": corloc(baseline, halves[1]), "calibrated": corloc(best, halves[1])})


def write_calibrated(model, calibration: Calibration, out_path: str) -> None:
    """A copy of the model's file whose default box rule is the calibrated one (localize and run
    then use it without flags), with the calibration's figures kept in its source metadata."""
    r = calibration.rule
    info = replace(model.info, cam=replace(model.info.cam, threshold=r.threshold, box_mode=r.mode,
                                           min_area=r.min_area, fuse_top=r.fuse_top),
                   source={**model.info.source, "calibration": calibration.to_dict()})
    rewrite_metadata(model.path, out_path, info.to_props())
