"""The cascade: teacher (CAM) → boxes → crops → student, with the teacher's map reused between runs."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .crop import Crop, CropSpec, crop
from .errors import EdgeCamError
from .localize import Box, HeatMap, boxes_from_heat
from .model import Model, Prediction
from .preprocess import Resize, pad_colour, to_rgb8


@dataclass
class Roi:
    box: Box  # the teacher's box (its class and score)
    crop: Crop | None = None
    student: dict | None = None  # {"class_id", "label", "score"}

    def to_dict(self) -> dict:
        d = {"x1": round(self.box.x1, 2), "y1": round(self.box.y1, 2), "x2": round(self.box.x2, 2),
             "y2": round(self.box.y2, 2), "class_id": self.box.class_id, "label": self.box.label,
             "score": round(self.box.score, 6)}
        if self.student is not None:
            d["student"] = self.student
        return d


@dataclass
class FrameResult:
    frame: int
    ts: float
    source: str
    teacher_ran: bool
    teacher: Prediction | None  # the teacher's latest prediction (reused when it did not run)
    heat: HeatMap | None
    rois: list[Roi] = field(default_factory=list)
    timing_ms: dict[str, float] = field(default_factory=dict)

    def to_event(self) -> dict:
        """The JSON event of interfaces.md."""
        return {"frame": self.frame, "ts": round(self.ts, 4), "source": self.source,
                "teacher": {"ran": self.teacher_ran, "topk": self.teacher.topk() if self.teacher else []},
                "rois": [r.to_dict() for r in self.rois],
                "timing_ms": {k: round(v, 3) for k, v in self.timing_ms.items()}}


def student_answer(p: Prediction) -> dict:
    return {"class_id": p.class_id, "label": p.label, "score": round(p.score, 6)}


class Cascade:
    """Runs the teacher every `every` frames, and the student on every frame's ROIs.

    Between teacher runs the last boxes are kept, which is right while the scene is static —
    the case edge cameras mostly see.
    """

    def __init__(self, teacher: Model, student: Model | None = None, *, every: int = 1,
                 threshold: float | None = None, box_mode: str = "largest", min_area: float = 0.01,
                 crop_spec: CropSpec | None = None, max_rois: int = 4):
        if not teacher.has_cam:
            raise EdgeCamError(f"{teacher.path} is a plain classifier with no CAM output; export "
                               "the teacher with `edge-cam export` (without --no-cam).")
        if every < 1:
            raise EdgeCamError(f"--every must be 1 or more, not {every}.")
        self.teacher, self.student, self.every = teacher, student, every
        self.threshold = teacher.info.cam.threshold if threshold is None else threshold
        self.box_mode, self.min_area, self.max_rois = box_mode, min_area, max_rois
        base = crop_spec or CropSpec()
        self.crop_spec = CropSpec(base.pad, base.square, base.mask, self.threshold)
        self._fill = pad_colour(student.info.input.mean) if student else (0, 0, 0)
        self._count = 0
        self._last: tuple[Prediction, HeatMap, list[Box]] | None = None

    def localize(self, pred: Prediction, class_rank: int = 0) -> tuple[HeatMap, list[Box]]:
        """Heat map and boxes of the top-K class at `class_rank` of a teacher prediction."""
        heat = HeatMap.from_cam(pred.cams[class_rank], pred.resize)
        boxes = boxes_from_heat(heat, self.threshold, self.box_mode, self.min_area,
                                int(pred.class_ids[class_rank]), pred.labels[class_rank],
                                float(pred.scores[class_rank]))
        return heat, boxes[:self.max_rois]

    def process(self, frame: np.ndarray, index: int | None = None, ts: float | None = None,
                source: str = "", color: str = "BGR", read_ms: float = 0.0) -> FrameResult:
        index = self._count if index is None else index
        timing = {"read": read_ms}
        t0 = time.perf_counter()
        rgb = to_rgb8(frame, color)
        run_teacher = self._last is None or self._count % self.every == 0 or \
            self._last[1].resize.frame_size != rgb.shape[:2]
        self._count += 1
        if run_teacher:
            prepared = self.teacher.prepare(rgb, "RGB")
            timing["preprocess"] = (time.perf_counter() - t0) * 1e3
            pred = self.teacher.predict_batch([], prepared=[prepared])[0]
            timing["teacher"] = pred.timing_ms["model"]
            t1 = time.perf_counter()
            heat, boxes = self.localize(pred)
            timing["localize"] = (time.perf_counter() - t1) * 1e3
            self._last = (pred, heat, boxes)
        else:
            timing.update(preprocess=(time.perf_counter() - t0) * 1e3, teacher=0.0, localize=0.0)
        pred, heat, boxes = self._last
        rois = [Roi(b) for b in boxes]
        if self.student is not None and rois:
            t2 = time.perf_counter()
            for r in rois:
                r.crop = crop(rgb, r.box, self.student.input_size, self.crop_spec, heat, self._fill)
            t3 = time.perf_counter()
            identity = Resize(self.student.input_size, self.student.input_size, 1.0, 1.0)
            answers = self.student.predict_batch([], prepared=[(r.crop.image, identity) for r in rois])
            for r, a in zip(rois, answers):
                r.student = student_answer(a)
            timing.update(crop=(t3 - t2) * 1e3, student=(time.perf_counter() - t3) * 1e3)
        else:
            timing.update(crop=0.0, student=0.0)
        return FrameResult(index, time.time() if ts is None else ts, source, run_teacher, pred, heat,
                           rois, timing)
