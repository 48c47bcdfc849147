"""Labelled photo sets: Pascal VOC and YOLO annotations, read with every unreadable file named.

A set found on disk is rarely perfect: a photo deleted, one cut short by a copy, an XML file a tool
left half-written. `load_labelled` keeps going past each and says which and why (`Skipped`);
`read_labelled` is the strict form, for sets that must be whole (the first bad file is an error).
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from ..errors import EdgeCamError, first_line
from ..localize import Box
from ..source import list_images, max_pixels, read_image


@dataclass(frozen=True)
class Annotation:
    image: str
    width: int
    height: int
    boxes: list[Box]


@dataclass(frozen=True)
class Skipped:
    """A photo or annotation file that could not be used, and the sentence that says why."""
    path: str
    reason: str

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class Labelled:
    """The annotations that could be read, and the files that could not (in the set's order)."""
    annotations: list[Annotation]
    skipped: list[Skipped] = field(default_factory=list)


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


def _voc_dir(annotations_dir: str, images_dir: str | None, strict: bool) -> Labelled:
    try:
        files = sorted(f for f in os.listdir(annotations_dir) if f.endswith(".xml"))
    except OSError as e:
        raise EdgeCamError(f"cannot list {annotations_dir} ({e.strerror}).") from None
    if not files:
        raise EdgeCamError(f"{annotations_dir} holds no VOC .xml annotations.")
    out, skipped = [], []
    for f in files:
        path = os.path.join(annotations_dir, f)
        try:
            out.append(read_voc(path, images_dir))
        except EdgeCamError as e:
            if strict:
                raise
            skipped.append(Skipped(path, str(e)))
    return Labelled(out, skipped)


def read_voc_dir(annotations_dir: str, images_dir: str | None = None) -> list[Annotation]:
    """Every VOC XML file of a folder; a malformed one is an error (see load_labelled)."""
    return _voc_dir(annotations_dir, images_dir, strict=True).annotations


def _yolo_dir(root: str, strict: bool) -> Labelled:
    """YOLO layout: root/images/*.jpg and root/labels/*.txt with `class cx cy w h` (fractions)."""
    images_dir, labels_dir = os.path.join(root, "images"), os.path.join(root, "labels")
    if not os.path.isdir(images_dir) or not os.path.isdir(labels_dir):
        raise EdgeCamError(f"{root} should hold images/ and labels/ folders (YOLO layout).")
    out, skipped = [], []
    limit = max_pixels()
    for path in list_images([images_dir]):
        label = os.path.join(labels_dir, os.path.splitext(os.path.basename(path))[0] + ".txt")
        if not os.path.isfile(label):
            continue
        try:
            h, w = read_image(path, limit).shape[:2]  # YOLO boxes are fractions of the image's size
            out.append(Annotation(path, w, h, _yolo_boxes(label, w, h)))
        except EdgeCamError as e:
            if strict:
                raise
            skipped.append(Skipped(path, str(e)))
    if not out and not skipped:
        raise EdgeCamError(f"{root} has no image with a YOLO label file.")
    return Labelled(out, skipped)


def _yolo_boxes(label: str, w: int, h: int) -> list[Box]:
    boxes = []
    try:
        with open(label, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 5:
                    continue
                c, cx, cy, bw, bh = int(parts[0]), *map(float, parts[1:5])
                boxes.append(Box((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h,
                                 class_id=c))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise EdgeCamError(f"{label} is not a readable YOLO label file ({first_line(e)}).") from None
    return boxes


def read_yolo_dir(root: str) -> list[Annotation]:
    """A YOLO folder; an unreadable image or label file is an error (see load_labelled)."""
    return _yolo_dir(root, strict=True).annotations


def load_labelled(voc: str | None = None, yolo: str | None = None, strict: bool = False) -> Labelled:
    """A VOC folder (Annotations/ + JPEGImages/, annotations/ + images/, or XML beside the
    images) or a YOLO folder (images/ + labels/). A malformed annotation, or a YOLO image that
    cannot be read, is skipped and named (strict: an error); a VOC photo is read later, by whoever
    uses it (evaluate skips and names it then)."""
    if yolo:
        return _yolo_dir(yolo, strict)
    if not voc:
        raise EdgeCamError("load_labelled needs a voc or a yolo folder.")
    for ann, img in (("Annotations", "JPEGImages"), ("annotations", "images")):
        if os.path.isdir(os.path.join(voc, ann)):
            return _voc_dir(os.path.join(voc, ann), os.path.join(voc, img), strict)
    if not os.path.isdir(voc):
        raise EdgeCamError(f"{voc} does not exist.")
    return _voc_dir(voc, None, strict)


def read_labelled(voc: str | None = None, yolo: str | None = None) -> list[Annotation]:
    """The strict load_labelled: every annotation, or an error at the first unreadable one."""
    return load_labelled(voc, yolo, strict=True).annotations
