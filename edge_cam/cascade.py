"""The cascade: teacher (CAM) → boxes → crops → student, with the teacher's map reused between runs.

On a board the teacher is the expensive part, and an edge camera mostly watches a static scene.
So the teacher runs on the first frame, every `every` frames at the latest, and whenever a cheap
change score against the frame the teacher last saw reaches `change`; in between the last boxes
are kept and only the student runs. The score is the larger of two mean absolute differences in
grey levels: of a small thumbnail of the whole frame (a new scene), and of the student's crop of
the first ROI against that crop when the teacher ran (the object moved: a small object hardly
changes the whole frame's thumbnail, but fills its crop). The crop is made for the student anyway,
so the second score costs nothing; it is measured after the student and acts on the next frame.
Frames of several streams go through the teacher as one batch, and all their ROIs through the
student as another.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from .crop import Crop, CropSpec, crop
from .errors import EdgeCamError
from .localize import Box, BoxRule, HeatMap
from .model import Model, Prediction
from .preprocess import Resize, pad_colour, to_8bit

THUMB = (32, 24)  # scene-change thumbnail (W, H): enough to see a scene change, ~1 µs per pixel


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
    reason: str = ""  # why the teacher ran: first, every, change, resize
    change: float | None = None  # scene-change score against the teacher's last frame
    stream: int = 0

    def to_event(self) -> dict:
        """The JSON event of interfaces.md."""
        teacher = {"ran": self.teacher_ran, "topk": self.teacher.topk() if self.teacher else []}
        if self.teacher_ran:
            teacher["reason"] = self.reason
        if self.change is not None:
            teacher["change"] = round(self.change, 3)
        return {"frame": self.frame, "ts": round(self.ts, 4), "source": self.source, "stream": self.stream,
                "teacher": teacher, "rois": [r.to_dict() for r in self.rois],
                "timing_ms": {k: round(v, 3) for k, v in self.timing_ms.items()}}


@dataclass
class StreamState:
    """What the cascade remembers about one stream between frames."""
    index: int = 0
    count: int = 0
    since_teacher: int = 0
    last: tuple[Prediction, HeatMap, list[Box]] | None = None
    thumb: np.ndarray | None = None  # of the frame the teacher last saw
    roi_ref: np.ndarray | None = None  # grey student crop of the first ROI when the teacher last ran
    moved: float | None = None  # that crop's change since, on the latest frame


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A small grey picture of the whole scene, from bilinear taps: ~6 µs at any frame size, where
    area averaging costs 50 µs at 320x240 and 1.3 ms at 1080p (measured). It only has to tell a
    new scene (scores of 28+ grey levels on the demo clip) from the same one (≤ 4.5); sensor noise
    at ±3 grey levels adds about one."""
    return cv2.cvtColor(cv2.resize(image, THUMB, interpolation=cv2.INTER_LINEAR), cv2.COLOR_RGB2GRAY).astype(np.float32)


def student_answer(p: Prediction) -> dict:
    return {"class_id": p.class_id, "label": p.label, "score": round(p.score, 6)}


@dataclass
class FrameIn:
    """One frame handed to the cascade, with where it came from."""
    image: np.ndarray
    state: StreamState
    index: int | None = None
    ts: float | None = None
    source: str = ""
    read_ms: float = 0.0
    color: str = "BGR"
    stream: int = 0


class Cascade:
    """teacher every `every` frames (or when the scene changes by `change` grey levels), the
    student on every frame's ROIs. every=1: the teacher on every frame. `rule`: how maps become
    boxes (default: the teacher's metadata)."""

    def __init__(self, teacher: Model, student: Model | None = None, *, every: int = 1,
                 change: float | None = None, rule: BoxRule | None = None,
                 crop_spec: CropSpec | None = None, max_rois: int = 4):
        if not teacher.has_cam:
            raise EdgeCamError(f"{teacher.path} is a plain classifier with no CAM output; export "
                               "the teacher with `edge-cam export` (without --no-cam).")
        if every < 1:
            raise EdgeCamError(f"--every must be 1 or more, not {every}.")
        if change is not None and change <= 0:
            raise EdgeCamError(f"--change must be above 0 grey levels, not {change}.")
        self.teacher, self.student, self.every, self.change = teacher, student, every, change
        self.rule = rule or BoxRule.for_model(teacher.info.cam)
        self.max_rois = max_rois
        base = crop_spec or CropSpec()
        self.crop_spec = CropSpec(base.pad, base.square, base.mask, self.rule.threshold)
        self._fill = pad_colour(student.info.input.mean) if student else (0, 0, 0)
        self._default = StreamState()

    def _why_teacher(self, state: StreamState, image: np.ndarray, thumb: np.ndarray | None) -> tuple[str, float | None]:
        """Why the teacher must run on this frame ("" if the last map still holds), and the
        scene-change score."""
        if state.last is None:
            return "first", None
        if state.last[1].resize.frame_size != image.shape[:2]:
            return "resize", None
        score = None if thumb is None else float(np.abs(thumb - state.thumb).mean())
        if score is not None and state.moved is not None:
            score = max(score, state.moved)
        if state.since_teacher >= self.every:
            return "every", score
        if self.change is not None and score is not None and score >= self.change:
            return "change", score
        return "", score

    def process(self, frame: np.ndarray, index: int | None = None, ts: float | None = None,
                source: str = "", color: str = "BGR", read_ms: float = 0.0,
                state: StreamState | None = None) -> FrameResult:
        """One frame of one stream (the default stream unless `state` is given)."""
        return self.process_many([FrameIn(frame, state or self._default, index, ts, source, read_ms, color)])[0]

    def process_many(self, frames: list[FrameIn]) -> list[FrameResult]:
        """Frames of several streams: one teacher batch for those that need it, one student batch."""
        t0 = time.perf_counter()
        # Frames stay in their own channel order: only the small teacher input and crops are swapped.
        images = [to_8bit(f.image, f.color) for f in frames]
        thumbs = [thumbnail(im) if self.change is not None else None for im, _ in images]
        whys = [self._why_teacher(f.state, im, th) for f, (im, _), th in zip(frames, images, thumbs)]
        todo = [i for i, (why, _) in enumerate(whys) if why]
        prepared = {i: self.teacher.prepare(*images[i]) for i in todo}
        t1 = time.perf_counter()
        timings = [{"read": f.read_ms, "preprocess": (t1 - t0) * 1e3 / len(frames), "teacher": 0.0,
                    "localize": 0.0} for f in frames]
        if todo:
            preds = self.teacher.predict_batch([], prepared=[prepared[i] for i in todo])
            for i, pred in zip(todo, preds):
                t2 = time.perf_counter()
                heat, boxes = self.rule.localize(pred)
                boxes = boxes[:self.max_rois]
                st = frames[i].state
                st.last, st.thumb, st.since_teacher = (pred, heat, boxes), thumbs[i], 0
                timings[i].update(teacher=pred.timing_ms["model"] / len(todo),
                                  localize=(time.perf_counter() - t2) * 1e3)

        results = []
        for i, f in enumerate(frames):
            st = f.state
            pred, heat, boxes = st.last
            st.since_teacher += 1
            st.count += 1
            index = st.index if f.index is None else f.index
            st.index = index + 1
            why, score = whys[i]
            results.append(FrameResult(index, time.time() if f.ts is None else f.ts, f.source, bool(why),
                                       pred, heat, [Roi(b) for b in boxes], timings[i], why, score, f.stream))
        self._run_student(images, results)
        if self.change is not None:
            for f, r in zip(frames, results):
                t3 = time.perf_counter()
                self._track_roi(f.state, r)
                r.timing_ms["localize"] += (time.perf_counter() - t3) * 1e3
        return results

    @staticmethod
    def _track_roi(state: StreamState, result: FrameResult) -> None:
        """How much the first ROI's crop has changed since the teacher ran (see the module's doc)."""
        first = result.rois[0].crop if result.rois else None
        if first is None:
            state.roi_ref = state.moved = None
            return
        grey = cv2.cvtColor(first.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        if result.teacher_ran or state.roi_ref is None or state.roi_ref.shape != grey.shape:
            state.roi_ref, state.moved = grey, None
        else:
            state.moved = float(np.abs(grey - state.roi_ref).mean())

    def _run_student(self, images: list[tuple[np.ndarray, str]], results: list[FrameResult]) -> None:
        rois = [(image, r, roi) for image, r in zip(images, results) for roi in r.rois]
        if self.student is None or not rois:
            for r in results:
                r.timing_ms.update(crop=0.0, student=0.0)
            return
        t0 = time.perf_counter()
        for (image, order), r, roi in rois:
            roi.crop = crop(image, roi.box, self.student.input_size, self.crop_spec, r.heat, self._fill, order)
        t1 = time.perf_counter()
        identity = Resize(self.student.input_size, self.student.input_size, 1.0, 1.0)
        answers = self.student.predict_batch([], prepared=[(roi.crop.image, identity) for _, _, roi in rois])
        t2 = time.perf_counter()
        for (_, _, roi), a in zip(rois, answers):
            roi.student = student_answer(a)
        share = 1.0 / len(results)  # batched work is shared out evenly among the frames
        for r in results:
            r.timing_ms.update(crop=(t1 - t0) * 1e3 * share, student=(t2 - t1) * 1e3 * share)
