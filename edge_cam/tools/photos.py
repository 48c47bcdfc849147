"""Localisation in still photos: one JSON-ready line per image (docs/interfaces.md), heat-map overlays.

>>> for line in localize_photos(model, BoxRule.for_model(model.info.cam), ["photos/"]):
...     print(line["image"], line.get("boxes") or line["error"])
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence

import cv2

from ..cascade import find_rois
from ..draw import draw_box, overlay_heat
from ..errors import EdgeCamError, UnreadableImage
from ..localize import Box, BoxRule
from ..model import Model
from ..preprocess import to_rgb8
from ..refine import REFINES, refine_boxes
from ..source import list_images, max_pixels, read_image
from ..watch import WatchList


def localize_photos(model: Model, rule: BoxRule, paths: Sequence[str], class_id: int | None = None,
                    overlays: str | None = None, watch: WatchList | None = None,
                    min_score: float = 0.0, refine: str = "none") -> Iterator[dict]:
    """Every image under `paths` (images, folders or globs), in order: its top-K and the boxes of
    the top-1 class (or of `class_id`), or {"image", "error"} when `class_id` is not among its top-K,
    or {"image", "error", "unreadable": True} when it cannot be read (corrupt, truncated before any
    pixel, over the pixel limit); one bad image never ends the run. With `overlays`, a heat-map picture
    of each localised image is written to that folder under the image's name. `refine`: "grabcut"
    fits each box to the object's colours (edge_cam.refine)."""
    images = list_images(list(paths))  # now, not at the first line: a missing path fails before any output
    if overlays:
        os.makedirs(overlays, exist_ok=True)
    if refine not in REFINES:  # now, not at the first line
        raise EdgeCamError(f"refine: unknown refinement {refine!r}; use one of {', '.join(REFINES)}.")
    limit = max_pixels()  # a bad EDGE_CAM_MAX_PIXELS fails now, not once per image
    return _localize_each(model, rule, images, class_id, overlays, watch, min_score, refine, limit)


def _localize_each(model: Model, rule: BoxRule, images: list[str], class_id: int | None, overlays: str | None,
                   watch: WatchList | None, min_score: float, refine: str, limit: int) -> Iterator[dict]:
    for path in images:
        try:
            image = read_image(path, limit)
        except UnreadableImage as e:
            yield {"image": path, "error": str(e), "unreadable": True}
            continue
        try:
            # A class to map is queried in the same pass: a teacher exported with class queries maps
            # it whatever its rank; an older one only within its top-K (else the error line says so).
            classes = [class_id] if class_id is not None else None if watch is None else watch.class_ids
            pred = model.predict(image, classes=classes)
        except EdgeCamError as e:
            yield {"image": path, "error": str(e)}
            continue
        t0 = time.perf_counter()
        rank = 0 if class_id is None else pred.rank_of(class_id)
        watched: list[str] = []
        if watch is not None:
            rois = find_rois(pred, rule, watch, min_score)
            heat, watched = rois[0].heat if rois else None, [r.watch for r in rois]
            boxes = [refine_boxes(image, r.heat, [r.box], rule.threshold, refine)[0] if r.heat is not None else r.box
                     for r in rois]
        else:
            if class_id is None:
                mapped, boxes = rule.localize(pred)
            else:  # the class's own map (never fused), from the top-K or queried (predict raised if it cannot be)
                cam = pred.cam_of(class_id)
                assert cam is not None
                score = pred.scores[rank] if rank is not None else pred.query_scores[0] if pred.query_scores is not None \
                    else 0.0
                mapped, boxes = rule.localize_cam(cam, pred.resize, class_id, model.info.label(class_id), float(score))
            heat, boxes = mapped, refine_boxes(image, mapped, boxes, rule.threshold, refine)
        loc_ms = (time.perf_counter() - t0) * 1e3
        if overlays:  # before the line is handed out: a consumer may stop after any line
            pic = cv2.cvtColor(to_rgb8(image), cv2.COLOR_RGB2BGR)
            pic = overlay_heat(pic, heat) if heat is not None else pic
            for b in boxes:
                draw_box(pic, b, f"{b.label} {b.score:.2f}")
            cv2.imwrite(os.path.join(overlays, os.path.splitext(os.path.basename(path))[0] + ".jpg"), pic)
        h, w = image.shape[:2]
        lines = [_box(b, n) for b, n in zip(boxes, watched or [""] * len(boxes))]
        yield {"image": path, "width": w, "height": h, "topk": pred.topk(), "boxes": lines,
               "timing_ms": {"preprocess": round(pred.timing_ms["preprocess"], 3),
                             "model": round(pred.timing_ms["model"], 3), "localize": round(loc_ms, 3)}}


def _box(box: Box, watched: str) -> dict:
    """A box's line, naming the watched class or group that made it (with --classes)."""
    return {**box.to_dict(), "watch": watched} if watched else box.to_dict()
