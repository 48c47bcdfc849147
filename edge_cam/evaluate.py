"""Localisation against ground truth: Pascal VOC annotations and CorLoc."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from .errors import EdgeCamError
from .localize import Box


@dataclass(frozen=True)
class Annotation:
    image: str
    width: int
    height: int
    boxes: list[Box]


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
        v = {k: float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")}
        boxes.append(Box(v["xmin"] - 1, v["ymin"] - 1, v["xmax"], v["ymax"], label=obj.findtext("name", "")))
    name = root.findtext("filename", "")
    folder = images_dir or os.path.dirname(xml_path)
    return Annotation(os.path.join(folder, name), int(size.findtext("width")), int(size.findtext("height")), boxes)


def read_voc_dir(annotations_dir: str, images_dir: str | None = None) -> list[Annotation]:
    files = sorted(f for f in os.listdir(annotations_dir) if f.endswith(".xml"))
    if not files:
        raise EdgeCamError(f"{annotations_dir} holds no VOC .xml annotations.")
    return [read_voc(os.path.join(annotations_dir, f), images_dir) for f in files]


def hit(pred: Box | None, truth: list[Box], iou: float = 0.5) -> bool:
    """CorLoc's test: the predicted box overlaps some ground-truth box by at least `iou`."""
    return pred is not None and any(pred.iou(t) >= iou for t in truth)
