"""The cascade: teacher (CAM) → boxes → crops → student, with the teacher's map reused between runs.

On a board the teacher is the expensive part, and an edge camera mostly watches a static scene.
So the teacher runs on the first frame, every `every` frames at the latest, and whenever a cheap
change score against the frame the teacher last saw reaches `change`; in between the last boxes
are kept and only the student runs. The score is the larger of two mean absolute differences in
grey levels: of a small thumbnail of the whole frame (a new scene), and of the student's crop of
the first ROI against that crop when the teacher ran (the object moved: a small object hardly
changes the whole frame's thumbnail, but fills its crop). The crop is made for the student anyway,
so the second score costs nothing; it is measured after the student and acts on the next frame.
With a motion gate (gate.py) the teacher also runs when the scene moves, and a frame where
nothing moves is held: the previous frame's ROIs and student answers are its answer, with no crop
cut and no model run. Frames of several streams go through the teacher as one batch, and all their
ROIs through the student as another.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from .agreement import Alarm, Check, Referee
from .crop import Crop, CropSpec, crop
from .errors import EdgeCamError
from .gate import MotionGate, grey_thumbnail, motion
from .localize import Box, BoxRule, HeatMap
from .model import Model, Prediction
from .preprocess import Resize, pad_colour, to_8bit
from .source import Frame
from .watch import WatchList

THUMB = (32, 24)  # scene-change thumbnail (W, H): enough to see a scene change, ~1 µs per pixel


def require_cam(model: Model) -> Model:
    """The model itself if it has a CAM output; a plain classifier cannot be a teacher."""
    if not model.has_cam:
        raise EdgeCamError(f"{model.path} is a plain classifier with no CAM output; export the teacher with "
                           "`edge-cam export` (without --no-cam).")
    return model


@dataclass(frozen=True)
class Verdict:
    """The student's answer about one ROI."""
    class_id: int
    label: str
    score: float

    @classmethod
    def of(cls, p: Prediction) -> Verdict:
        return cls(p.class_id, p.label, p.score)

    def to_dict(self) -> dict:
        return {"class_id": self.class_id, "label": self.label, "score": round(self.score, 6)}


@dataclass
class Roi:
    box: Box  # the teacher's box (its class and score)
    heat: HeatMap | None = None  # the map the box came from (the crop's mask)
    watch: str = ""  # the watched class or group that made it ("" without a watch list)
    crop: Crop | None = None
    student: Verdict | None = None

    def to_dict(self) -> dict:
        d: dict = {"x1": round(self.box.x1, 2), "y1": round(self.box.y1, 2), "x2": round(self.box.x2, 2),
                   "y2": round(self.box.y2, 2), "class_id": self.box.class_id, "label": self.box.label,
                   "score": round(self.box.score, 6)}
        if self.watch:
            d["watch"] = self.watch
        if self.student is not None:
            d["student"] = self.student.to_dict()
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
    reason: str = ""  # why the teacher ran: first, every, change, motion, settled, resize
    change: float | None = None  # scene-change score against the teacher's last frame
    motion: float | None = None  # with a motion gate: the fraction of the scene that moved since the last frame
    held: bool = False  # nothing moved: the previous frame's ROIs and student answers, nothing run
    stream: int = 0
    image: np.ndarray | None = field(default=None, repr=False)  # the frame itself, for sinks that draw
    # The process run that made it (stream.RUN_ID, set by stream()): frame numbers restart with every
    # run, so consumers dedupe by (run, source, frame) across restarts and spill replays.
    run: str = ""
    check: Check | None = None  # the student against the teacher, where the teacher ran (agreement.py)
    agreement: float | None = None  # the rolling agreement so far (set by stream())
    alarm: Alarm | None = None  # set by stream() on the frame where the agreement crossed --alarm

    def to_event(self) -> dict:
        """The JSON event of docs/interfaces.md (schema: edge_cam/data/event.schema.json)."""
        teacher: dict = {"ran": self.teacher_ran, "topk": self.teacher.topk() if self.teacher else []}
        if self.teacher_ran:
            teacher["reason"] = self.reason
        if self.change is not None:
            teacher["change"] = round(self.change, 3)
        if self.motion is not None:
            teacher["motion"] = round(self.motion, 4)
        event = {"frame": self.frame, "ts": round(self.ts, 4), "source": self.source, "stream": self.stream}
        if self.run:
            event["run"] = self.run
        if self.held:
            event["held"] = True
        event = {**event, "teacher": teacher, "rois": [r.to_dict() for r in self.rois],
                 "timing_ms": {k: round(v, 3) for k, v in self.timing_ms.items()}}
        if self.check is not None:
            event["check"] = self.check.to_dict()
        if self.agreement is not None:
            event["student_agreement"] = round(self.agreement, 4)
        if self.alarm is not None:
            event["alarm"] = self.alarm.to_dict()
        return event


@dataclass
class StreamState:
    """What the cascade remembers about one stream between frames."""
    index: int = 0
    since_teacher: int = 0
    last: tuple[Prediction, list[Roi]] | None = None  # the teacher's latest answer and ROIs
    thumb: np.ndarray | None = None  # of the frame the teacher last saw
    roi_ref: np.ndarray | None = None  # grey student crop of the first ROI when the teacher last ran
    moved: float | None = None  # that crop's change since, on the latest frame
    still: np.ndarray | None = None  # the motion gate's thumbnail of the latest frame
    shown: list[Roi] | None = None  # the latest frame's ROIs with their student answers (what a held frame repeats)
    unseen: bool = False  # the scene moved on frames where nothing looked (no teacher run, no student)


def rerun_reason(state: StreamState, frame_size: tuple[int, int], thumb: np.ndarray | None, every: int,
                 change: float | None, moving: bool = False, motion_every: int = 1,
                 settled: bool = False) -> tuple[str, float | None]:
    """Why the teacher must run on this frame ("" if the last map still holds), and the scene-change
    score (None when change detection is off or there is nothing to compare with). `moving`: the
    motion gate saw the scene move, which runs the teacher once `motion_every` frames have passed;
    `settled`: the scene came to rest after moving that nothing looked at."""
    if state.last is None:
        return "first", None
    if state.last[0].resize.frame_size != frame_size:
        return "resize", None
    score = None if thumb is None or state.thumb is None else float(np.abs(thumb - state.thumb).mean())
    if score is not None and state.moved is not None:
        score = max(score, state.moved)
    if state.since_teacher >= every:
        return "every", score
    if change is not None and score is not None and score >= change:
        return "change", score
    if moving and state.since_teacher >= motion_every:
        return "motion", score
    if settled:
        return "settled", score
    return "", score


def find_rois(pred: Prediction, rule: BoxRule, watch: WatchList | None = None, min_score: float = 0.0) -> list[Roi]:
    """A teacher's prediction → ROIs, best first: the top-1 class's boxes, or with a watch list each
    watched target's at `min_score` or above, from its own map (none when no target is)."""
    if watch is None:
        heat, boxes = rule.localize(pred)
        return [Roi(b, heat) for b in boxes]
    rois = []
    for w in watch.watch(pred.logits, *pred.all_maps(), min_score):
        heat, boxes = rule.localize_cam(w.cam, pred.resize, w.class_id, w.label or w.name, w.score)
        rois += [Roi(b, heat, w.name) for b in boxes]
    return rois


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A small grey picture of the whole scene, from bilinear taps: ~6 µs at any frame size, where
    area averaging costs 50 µs at 320x240 and 1.3 ms at 1080p (measured). It only has to tell a
    new scene (scores of 28+ grey levels on the demo clip) from the same one (≤ 4.5); sensor noise
    at ±3 grey levels adds about one."""
    return grey_thumbnail(image, THUMB).astype(np.float32)


class Cascade:
    """The teacher every `every` frames (or when the scene changes by `change` grey levels), the
    student on every frame's ROIs. every=1: the teacher on every frame. `gate`: a motion gate
    (gate.py) that also runs the teacher when the scene moves and holds the last answer on frames
    where nothing moves. `rule`: how maps become
    boxes (default: the teacher's metadata). `fill`: the RGB of masked crop pixels (default: the
    student's mean colour). `watch`: the classes or groups that matter; each
    watched target at `min_score` or above gives its own ROIs from its own map, and a frame where
    none does has no ROI and runs no student (without a watch list: the top-1 class's boxes).
    The cascade owns each stream's state (keyed by `Frame.stream`); `reset()` forgets it.

    >>> cascade = Cascade(Model("teacher.onnx"), Model("student.onnx"), every=5)
    >>> result = cascade.process(frame_bgr)          # a FrameResult: .rois, .teacher, .to_event()
    """

    def __init__(self, teacher: Model, student: Model | None = None, *, every: int = 1,
                 change: float | None = None, rule: BoxRule | None = None,
                 crop_spec: CropSpec | None = None, max_rois: int = 4, watch: WatchList | None = None,
                 min_score: float = 0.0, fill: tuple[int, int, int] | None = None, gate: MotionGate | None = None):
        require_cam(teacher)
        if every < 1:
            raise EdgeCamError(f"every must be 1 or more, not {every}.")
        if change is not None and not change > 0:
            raise EdgeCamError(f"change must be above 0 grey levels, not {change}.")
        if max_rois < 1:
            raise EdgeCamError(f"max_rois must be 1 or more, not {max_rois}.")
        if not 0 <= min_score <= 1:
            raise EdgeCamError(f"min_score must be a probability from 0 to 1, not {min_score}.")
        if watch is not None and isinstance(teacher, Model):
            teacher.require_maps(watch.class_ids)  # now, not at the first frame where one ranks low
        self.watch, self.min_score = watch, min_score
        self.teacher, self.student, self.every, self.change, self.gate = teacher, student, every, change, gate
        self.rule = rule or BoxRule.for_model(teacher.info.cam)
        self.max_rois = max_rois
        base = crop_spec or CropSpec()
        self.crop_spec = CropSpec(base.pad, base.square, base.mask, self.rule.threshold)
        # Masked crop pixels (RGB): as the student was trained (its CascadeSpec), else its mean colour.
        self._fill = fill if fill is not None else pad_colour(student.info.input.mean) if student else (0, 0, 0)
        self._streams: dict[int, StreamState] = {}
        # Where the teacher runs anyway, the student's answer there says whether it still agrees.
        self.referee = Referee.between(teacher.info, student.info, watch, min_score) if student is not None else None

    def reset(self) -> None:
        """Forget every stream: the next frame of each runs the teacher."""
        self._streams.clear()

    def process(self, frame: np.ndarray | Frame, index: int | None = None, ts: float | None = None,
                source: str = "", color: str = "BGR", stream: int = 0) -> FrameResult:
        """One frame (an image, BGR unless `color` says otherwise, or a source's Frame)."""
        if not isinstance(frame, Frame):
            frame = Frame(index, frame, time.time() if ts is None else ts, source, color=color, stream=stream)
        return self.process_many([frame])[0]

    def process_many(self, frames: Sequence[Frame]) -> list[FrameResult]:
        """Frames of several streams: one teacher batch for those that need it, one student batch."""
        t0 = time.perf_counter()
        # Frames stay in their own channel order: only the small teacher input and crops are swapped.
        images = [to_8bit(_pixels(f), f.color) for f in frames]
        states = [self._streams.setdefault(f.stream, StreamState()) for f in frames]
        thumbs = [thumbnail(im) if self.change is not None else None for im, _ in images]
        gate = self.gate
        moved = [self._motion(st, im) for st, (im, _) in zip(states, images)]
        moving = [gate is not None and m is not None and m >= gate.level for m in moved]
        # Without a student nothing looks at the frames between the teacher's runs: the scene at rest
        # after moving, which held frames will repeat, must be the teacher's (with one, the student
        # looked at the last moving frame's ROIs; a teacher run there too cost 20% more on the
        # bottle video for no agreement, benchmarks/motion_gate.py).
        whys = [rerun_reason(st, im.shape[:2], th, self.every, self.change, mv, gate.every if gate else 1,
                             st.unseen and not mv)
                for st, (im, _), th, mv in zip(states, images, thumbs, moving)]
        for st, (why, _), mv in zip(states, whys, moving):
            st.unseen = self.student is None and mv and not why
        todo = [i for i, (why, _) in enumerate(whys) if why]
        prepared = [self.teacher.prepare(*images[i]) for i in todo]
        t1 = time.perf_counter()
        timings = [{"read": f.read_ms, "preprocess": (t1 - t0) * 1e3 / len(frames), "teacher": 0.0,
                    "localize": 0.0} for f in frames]
        classes = None if self.watch is None else self.watch.class_ids
        for i, pred in zip(todo, self.teacher.predict_batch([], prepared=prepared, classes=classes) if todo else []):
            t2 = time.perf_counter()
            states[i].last, states[i].thumb, states[i].since_teacher = (pred, self.localize(pred)), thumbs[i], 0
            timings[i].update(teacher=pred.timing_ms["model"] / len(todo), localize=(time.perf_counter() - t2) * 1e3)

        results = []
        for f, st, (why, score), timing, m, mv in zip(frames, states, whys, timings, moved, moving):
            assert st.last is not None  # the teacher ran on this stream's first frame
            pred, rois = st.last
            st.since_teacher += 1
            index = st.index if f.index is None else f.index
            st.index = index + 1
            # Nothing moved and the teacher is not due: the previous frame's answer stands as it was.
            held = not why and not mv and m is not None and st.shown is not None
            shown = (st.shown or []) if held else rois
            heat = shown[0].heat if shown else None
            results.append(FrameResult(index, f.ts, f.source, bool(why), pred, heat,
                                       [Roi(r.box, r.heat, r.watch, r.crop if held else None, r.student if held else None)
                                        for r in shown], timing, why, score, m, held, f.stream, f.image))
        fresh = [(image, r) for image, r in zip(images, results) if not r.held]
        self._run_student([image for image, _ in fresh], [r for _, r in fresh])
        for r in results:
            if r.held:
                r.timing_ms.update(crop=0.0, student=0.0)
        for st, r in zip(states, results):
            st.shown = r.rois
        if self.referee is not None:
            for r in results:
                if r.teacher_ran and r.teacher is not None:
                    first = r.rois[0].student if r.rois else None
                    r.check = self.referee.check(r.teacher, first.label if first is not None else None)
        if self.change is not None:
            for st, r in zip(states, results):
                if r.held:  # its crop is the previous frame's: nothing new to compare
                    continue
                t3 = time.perf_counter()
                _track_roi(st, r)
                r.timing_ms["localize"] += (time.perf_counter() - t3) * 1e3
        return results

    def _motion(self, state: StreamState, image: np.ndarray) -> float | None:
        """With a gate: the fraction of the scene that moved since the stream's previous frame
        (None on its first frame, or without a gate)."""
        if self.gate is None:
            return None
        still, state.still = state.still, grey_thumbnail(image)
        return None if still is None else motion(still, state.still)

    def localize(self, pred: Prediction) -> list[Roi]:
        """The teacher's answer → ROIs (boxes with their maps), at most max_rois, best first."""
        return find_rois(pred, self.rule, self.watch, self.min_score)[:self.max_rois]

    def cut(self, image: np.ndarray, box: Box, heat: HeatMap | None, size: tuple[int, int],
            order: str = "BGR") -> Crop:
        """The crop the student is handed for `box` on an 8-bit frame: padded, squared, masked by
        `heat` and filled as this cascade cuts every crop (distill cuts its training crops here too)."""
        return crop(image, box, size, self.crop_spec, heat, self._fill, order)

    def _run_student(self, images: list[tuple[np.ndarray, str]], results: list[FrameResult]) -> None:
        rois = [(image, r, roi) for image, r in zip(images, results) for roi in r.rois]
        if self.student is None or not rois:
            for r in results:
                r.timing_ms.update(crop=0.0, student=0.0)
            return
        t0 = time.perf_counter()
        size = self.student.input_size
        crops = [self.cut(image, roi.box, roi.heat, size, order) for (image, order), r, roi in rois]
        t1 = time.perf_counter()
        identity = Resize(self.student.input_size, self.student.input_size, 1.0, 1.0)
        answers = self.student.predict_batch([], prepared=[(c.image, identity) for c in crops])
        t2 = time.perf_counter()
        for (_, _, roi), c, a in zip(rois, crops, answers):
            roi.crop, roi.student = c, Verdict.of(a)
        share = 1.0 / len(results)  # batched work is shared out evenly among the frames
        for r in results:
            r.timing_ms.update(crop=(t1 - t0) * 1e3 * share, student=(t2 - t1) * 1e3 * share)


def _pixels(frame: Frame) -> np.ndarray:
    if frame.image is None:  # stream() skips these; a caller of process_many must too
        raise ValueError(f"frames: frame {frame.index} of {frame.source} has no image ({frame.error})")
    return frame.image


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
