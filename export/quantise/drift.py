"""How far a reduced-precision copy (int8, fp16) drifts from its fp32 model, on photos it was not
calibrated on, and the gate that refuses to ship one that no longer gives the same answers.

The calibration folder is split: every HOLDOUT_EVERY-th photo (sorted by name) is held out and never
seen by the calibration; an extra folder of real photos (`holdout`) joins the held-out set. A
quantiser may tune itself on the calibration photos, so only the held-out figure is evidence.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_cam.errors import EdgeCamError
from edge_cam.localize import BoxRule
from edge_cam.model import Model
from edge_cam.preprocess import Resize
from edge_cam.source import list_images, read_image

from ..common.progress import log

HOLDOUT_EVERY = 3  # one photo in three is held out of the calibration
MIN_AGREEMENT = 0.95  # default gate: top-1 agreement with fp32 on held-out photos


@dataclass
class Photos:
    """Prepared (1, H, W, 3) uint8 batches: those the calibration sees, and those it never sees."""
    calibration: list[np.ndarray]
    held_out: list[np.ndarray]


def prepared(model: Model, paths: Sequence[str]) -> list[np.ndarray]:
    """Photos onto the model's input, as its runtime prepares them; unreadable ones are skipped, logged."""
    batches = []
    for p in paths:
        try:
            batches.append(model.prepare(read_image(p))[0][None])
        except EdgeCamError as e:
            log.warning("skipped calibration image %s: %s", p, e)
    return batches


def split(model: Model, calibration: str | Sequence[np.ndarray], limit: int = 200,
          holdout: str | None = None) -> Photos:
    """A folder (or prepared batches, e.g. a student's crops) → calibration and held-out photos.
    `limit` caps the folder's photos; `holdout` is a folder of further real photos to hold out."""
    if isinstance(calibration, str):
        paths = list_images([calibration])[:limit]
        if not paths:
            raise EdgeCamError(f"{calibration} holds no calibration images.")
        batches = prepared(model, paths)
    else:
        batches = list(calibration)[:limit]
    held = [b for i, b in enumerate(batches) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    cal = [b for i, b in enumerate(batches) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
    if holdout:
        held += prepared(model, list_images([holdout]))
    if not cal or not held:
        raise EdgeCamError(f"int8 needs at least {HOLDOUT_EVERY} readable calibration images (one in "
                           f"{HOLDOUT_EVERY} is held out to check the result); give more real photos.")
    return Photos(cal, held)


def logits(model: Model, batches: Sequence[np.ndarray]) -> np.ndarray:
    """(N, classes) logits of prepared single-image batches."""
    return np.stack([model.run(x)["logits"][0] for x in batches])


def drift(fp32: Model, reduced: Model, batches: Sequence[np.ndarray]) -> dict:
    """Top-1 agreement, CAM correlation and box IoU of `reduced` against `fp32` on the same inputs.
    Agreement is also given where fp32's top-1 leads its top-2 by at least half a logit: a near tie
    flips under any perturbation, so the overall figure alone says more about the images than about
    the quantisation."""
    agree, corr, iou, margin, top5 = [], [], [], [], []
    rule = BoxRule.for_model(fp32.info.cam) if fp32.info.cam is not None else None  # a student: classes only
    size = fp32.input_size
    identity = Resize(size, size, 1.0, 1.0)
    for x in batches:
        a, b = (m.predict_batch([], prepared=[(x[0], identity)])[0] for m in (fp32, reduced))
        agree.append(a.class_id == b.class_id)
        margin.append(float(a.logits[a.class_ids[0]] - a.logits[a.class_ids[1]]) if len(a.class_ids) > 1 else np.inf)
        top5.append(a.class_id in b.class_ids[:5])
        if rule is None:
            continue
        same = np.flatnonzero(b.class_ids == a.class_id)  # the same class's map, where the copy has it
        if same.size:
            assert a.cams is not None and b.cams is not None  # a model with a box rule returns maps
            corr.append(float(np.corrcoef(a.cams[0].ravel(), b.cams[same[0]].ravel())[0, 1]))
        box_a, box_b = rule.localize(a)[1], rule.localize(b)[1]
        iou.append(box_a[0].iou(box_b[0]) if box_a and box_b else 0.0)
    clear = np.asarray(margin) >= 0.5
    return {"images": len(batches), "top1_agreement": float(np.mean(agree)),
            "top1_agreement_clear": float(np.mean(np.asarray(agree)[clear])) if clear.any() else None,
            "clear_images": int(clear.sum()), "top1_in_top5": float(np.mean(top5)),
            "cam_correlation_median": float(np.median(corr)) if corr else None,
            "box_iou_median": float(np.median(iou)) if iou else None}


def describe(d: dict) -> str:
    """One drift report as the export prints it."""
    clear = "n/a" if d["top1_agreement_clear"] is None else f"{d['top1_agreement_clear']:.1%}"
    text = (f"top-1 agreement {d['top1_agreement']:.1%} ({clear} where fp32's top-1 leads by ≥ 0.5 logit, "
            f"{d['clear_images']} images), fp32's top-1 in the top-5 {d['top1_in_top5']:.1%}")
    if d["cam_correlation_median"] is not None:
        text += f", CAM correlation (median) {d['cam_correlation_median']:.4f}"
    if d["box_iou_median"] is not None:
        text += f", box IoU (median) {d['box_iou_median']:.3f}"
    return text


def gate(held_out: dict, min_agreement: float, what: str = "int8") -> str | None:
    """The sentence refusing a copy whose held-out top-1 agreement is below `min_agreement`, or None."""
    if held_out["top1_agreement"] >= min_agreement:
        return None
    return (f"the {what} model's top-1 agreement with fp32 on {held_out['images']} held-out photos is "
            f"{held_out['top1_agreement']:.1%}, below --min-agreement {min_agreement:.0%}")
