"""The photo sets benchmarks/localization.py measures on, each as VOC-like annotations on disk.

- raccoon: the 200 shared raccoon photos (GT-unknown: ImageNet has no raccoon), in halves A
  (even-numbered in sorted order) and B (odd), as `edge-cam calibrate` splits them.
- mosaics: 2x2 mosaics of four photos of one half (each stretched to 320x240): several smaller
  animals per frame, the scenes a set of one large raccoon per photo lacks. Synthetic (the tiles
  meet at hard edges), made from real photos only.
- GT-known check: photos of ImageNet classes with known class, boxed for edge-cam
  (gt_known_boxes.json: 7 photos by eye, 27 frames of the bottle video with one to three bottles).
"""
from __future__ import annotations

import json
import os
import pathlib
from dataclasses import dataclass

import cv2
import numpy as np

from edge_cam.localize import Box
from edge_cam.measure.evaluate import Annotation, read_labelled
from edge_cam.preprocess import to_rgb8
from edge_cam.source import read_image

HERE = pathlib.Path(__file__).resolve().parent
TILE = (240, 320)  # (H, W) of each mosaic tile


def raccoon_halves(data: pathlib.Path) -> tuple[list[Annotation], list[Annotation]]:
    anns = read_labelled(str(data / "raccoon"))
    return anns[0::2], anns[1::2]


def mosaics(anns: list[Annotation], out_dir: str) -> list[Annotation]:
    """One 2x2 mosaic per four consecutive photos, written to `out_dir` as PNG."""
    os.makedirs(out_dir, exist_ok=True)
    th, tw = TILE
    out = []
    for k in range(len(anns) // 4):
        canvas = np.zeros((2 * th, 2 * tw, 3), np.uint8)
        boxes = []
        for j, a in enumerate(anns[4 * k:4 * k + 4]):
            img = cv2.cvtColor(to_rgb8(read_image(a.image)), cv2.COLOR_RGB2BGR)
            sx, sy = tw / img.shape[1], th / img.shape[0]
            ox, oy = (j % 2) * tw, (j // 2) * th
            canvas[oy:oy + th, ox:ox + tw] = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
            boxes += [Box(b.x1 * sx + ox, b.y1 * sy + oy, b.x2 * sx + ox, b.y2 * sy + oy) for b in a.boxes]
        path = os.path.join(out_dir, f"mosaic-{k:03d}.png")
        cv2.imwrite(path, canvas)
        out.append(Annotation(path, 2 * tw, 2 * th, boxes))
    return out


@dataclass(frozen=True)
class KnownGroup:
    """Photos of one known class (a label or an ImageNet group name, as --classes takes it)."""
    entry: str
    annotations: list[Annotation]


def gt_known_photos(data: pathlib.Path) -> list[KnownGroup]:
    """The hand-boxed photos of the GT-known check set, one group per class."""
    spec = json.loads((HERE / "gt_known_boxes.json").read_text())
    groups: dict[str, list[Annotation]] = {}
    for name, p in spec["photos"].items():
        path = str(data / "images" / name)
        h, w = read_image(path).shape[:2]
        groups.setdefault(p["class"], []).append(Annotation(path, w, h, [Box(*b) for b in p["boxes"]]))
    return [KnownGroup(k, v) for k, v in groups.items()]


def bottle_frames(data: pathlib.Path, out_dir: str) -> list[KnownGroup]:
    """The bottle frames of the GT-known check set (water bottle), written to `out_dir` as PNG:
    small objects (about 60x200 pixels of 640x360), one to three a frame, side by side."""
    spec = json.loads((HERE / "gt_known_boxes.json").read_text())
    groups: dict[str, list[Annotation]] = {}
    b = spec["bottle_frames"]
    frames = {int(k): v for k, v in b["frames"].items()}
    os.makedirs(out_dir, exist_ok=True)
    cap = cv2.VideoCapture(str(data / "videos" / b["video"]))
    i = 0
    try:
        while i <= max(frames):
            ok, frame = cap.read()
            if not ok:
                raise RuntimeError(f"{b['video']} ended at frame {i}")
            if i in frames:
                path = os.path.join(out_dir, f"bottle-{i:04d}.png")
                cv2.imwrite(path, frame)
                groups.setdefault(b["class"], []).append(
                    Annotation(path, frame.shape[1], frame.shape[0], [Box(*x) for x in frames[i]]))
            i += 1
    finally:
        cap.release()
    return [KnownGroup(k, v) for k, v in groups.items()]
