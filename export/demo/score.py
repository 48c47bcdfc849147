"""Scoring the demo's exported models through the runtime: edge_cam's own resize, CAM box and crop."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_cam.crop import crop
from edge_cam.localize import Box, HeatMap, boxes_from_heat
from edge_cam.model import Model
from edge_cam.preprocess import to_rgb8


def cam_box(teacher: Model, pred, frame_size: tuple[int, int]) -> Box:
    """The runtime's box for the teacher's top-1 CAM (the whole frame when the map is flat)."""
    assert teacher.info.cam is not None, "the demo's teacher is exported with its CAM"
    found = boxes_from_heat(HeatMap.from_cam(pred.cams[0], pred.resize), teacher.info.cam.threshold)
    return found[0] if found else Box(0, 0, frame_size[1], frame_size[0])


@dataclass
class Scores:
    teacher: float  # teacher top-1 on the whole frame
    student_whole: float  # student top-1 on the whole frame, resized to its input
    student_gt_crop: float  # student top-1 on the crop around the ground-truth box
    student_cam_crop: float  # student top-1 on the crop around the teacher's CAM box
    cam_iou: float  # mean IoU of the CAM box with the ground truth
    corloc: float  # fraction of CAM boxes with IoU ≥ 0.5


def score(teacher_path: str, student_path: str, frames: list[np.ndarray], labels: np.ndarray,
          boxes: np.ndarray) -> Scores:
    teacher = Model(teacher_path, providers=["CPUExecutionProvider"])
    student = Model(student_path, providers=["CPUExecutionProvider"])
    size = student.input_size
    hits: dict[str, list[int]] = {"teacher": [], "whole": [], "gt": [], "cam": []}
    ious: list[float] = []
    for start in range(0, len(frames), 50):
        chunk, chunk_boxes = frames[start:start + 50], boxes[start:start + 50]
        preds = teacher.predict_batch(chunk)
        hits["teacher"] += [p.class_id for p in preds]
        hits["whole"] += [p.class_id for p in student.predict_batch(chunk)]
        gt_crops, at_cam = [], []
        for frame, pred, gt in zip(chunk, preds, chunk_boxes):
            rgb = to_rgb8(frame)
            box = cam_box(teacher, pred, frame.shape[:2])
            ious.append(box.iou(Box(*gt)))
            gt_crops.append(crop(rgb, Box(*gt), size).image)
            at_cam.append(crop(rgb, box, size).image)
        hits["gt"] += list(student.run(np.stack(gt_crops))["class_ids"][:, 0])
        hits["cam"] += list(student.run(np.stack(at_cam))["class_ids"][:, 0])
    top1 = {k: float(np.mean(np.array(v) == labels)) for k, v in hits.items()}
    iou = np.array(ious)
    return Scores(top1["teacher"], top1["whole"], top1["gt"], top1["cam"], float(iou.mean()),
                  float(np.mean(iou >= 0.5)))
