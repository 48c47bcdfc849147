"""How well the cascade stands in for its teacher on a video, and at what cost (torch-free).

The teacher run on every frame is the reference: no ground truth is needed, only footage.

Without a watch list its answer for a frame is its top-1 class mapped into the student's label
space (a distilled student's metadata says which teacher classes make each of its labels;
otherwise a teacher label that the student also has stays itself), and anything else is "other".
The cascade's answer is its first ROI's student label ("none" when it has no ROI). A frame is
confident when the teacher's probability of its answer is ≥ `confident` (0.5 by default, the level
at which the shared MobileNetV2 agrees with its int8 original on 93% of real photos): the sum over
the label's classes, for "other" one minus the sum over all the student's (agreement.Referee, the
same question `run` asks where the teacher runs).

With a watch list (as `run --classes ... --min-score S`) the question is the cascade's: is a
watched target here, and which? The reference is the most probable target if its probability
P(any member) is ≥ S, else "other"; the cascade runs with the same watch list and min score, and
its answer is its first ROI's student label, or "other" on a frame without ROI (the cascade says
"nothing of interest", as the teacher does when no target reaches S). The decision is a threshold
on a probability, so a frame is confident when that probability is far from the threshold: the
best target's P ≥ 2·S, or every target's P < S/2. Near S the teacher's own answer flips between
neighbouring frames of a still scene (P(car) moves by tens of percent with sensor noise), so no
stand-in can be held to it there; top-1 ≥ 0.5 would be meaningless (P(car) is rarely 0.5 on a
lane camera even with a car in view).

A distilled student's metadata brings what it was trained for: the watch list, min score, the
teacher's resize and input size, the box rule and the crop; arguments left at None take those.

Cost is counted in multiply-adds (macs.py), which do not depend on who else shares the CPU:
teacher MACs (at the size it ran at) × teacher runs + student MACs × student crops, per frame,
against the teacher on every frame (the speed-up). Wall-clock FPS is reported beside it.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..agreement import CONFIDENT, NONE, Referee, confident, target_map, watch_answer
from ..cascade import Cascade
from ..crop import CropSpec
from ..gate import MotionGate
from ..localize import BoxRule
from ..model import Model
from ..source import open_source
from ..spec import DEFAULT_MAX_ROIS, OTHER, CascadeSpec, watch_from_targets
from ..watch import WatchList
from .cascade_report import Report, Score, describe, plot, to_markdown
from .macs import model_macs, onnx_macs

__all__ = ["Report", "Score", "Setting", "evaluate", "model_macs", "onnx_macs", "plot", "to_markdown", "confident",
           "watch_answer", "watch_from_targets", "make_rule", "target_map", "crop_spec_for", "answer_label"]

log = logging.getLogger("edge_cam")

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def answer_label(answer) -> str:
    """A ROI's student answer, whether a dict (older runtimes) or a Verdict."""
    return answer["label"] if isinstance(answer, dict) else answer.label


def crop_spec_for(student: Model) -> CropSpec:
    """The crops a distilled student was trained on (its metadata), else the runtime's defaults."""
    spec = CascadeSpec.from_metadata(student.info, student.path)
    return spec.crop if spec is not None else CropSpec()


def _teacher(teacher: Model | str, wanted: dict[str, Any]) -> Model:
    """The teacher with `wanted`'s resize and input size: a Model that has them is used as it is,
    one that does not is reopened (same threads) with them."""
    if isinstance(teacher, str):
        return Model(teacher, **wanted)
    size = getattr(teacher, "_size", None)
    have_size = None if size is None else (size.long_side if size.long_side is not None else size.size)
    same_resize = wanted.get("resize") in (None, teacher.info.input.resize)
    want_size = wanted.get("input_size")
    same_size = want_size is None or have_size == (want_size if isinstance(want_size, int) else tuple(want_size))
    if same_resize and same_size:
        return teacher
    log.info("reopening the teacher with %s, as the student was distilled", wanted)
    return Model(teacher.path, threads=teacher.threads, **wanted)


def make_rule(teacher: Model, stored: BoxRule | None, rule: BoxRule | Mapping[str, Any] | None) -> BoxRule:
    """A BoxRule as given; or the stored one (the student's metadata, else the teacher's), with a
    mapping's non-None values (the command line's overrides) on top."""
    if isinstance(rule, BoxRule):
        return rule
    names = {f.name for f in dataclasses.fields(BoxRule)}
    base = stored or BoxRule.for_model(teacher.info.cam)
    return dataclasses.replace(base, **{k: v for k, v in (rule or {}).items() if v is not None and k in names})


def _frames(video: str, start: int, stop: int | None):
    with open_source(video) as source:
        for f in source:
            if f.image is None or f.index is None or f.index < start:
                continue
            if stop is not None and f.index >= stop:
                break
            yield f.image


@dataclass
class Reference:
    """The teacher on every frame."""
    labels: list[str]  # mapped into the student's label space, or the watch list's answer
    scores: np.ndarray  # the probability of that answer, or the best target's
    ms: float  # wall-clock per frame (preprocess + model)
    decode_ms: float = 0.0  # reading and decoding a frame


def reference(teacher: Model, video: str, referee: Referee, start: int = 0, stop: int | None = None,
              progress: Progress | None = None, total: int = 0) -> Reference:
    """The teacher on every frame, answering the student's question as `referee` asks it."""
    labels, scores, spent, decoding = [], [], 0.0, 0.0
    classes = None if referee.watch is None else referee.watch.class_ids
    frames = _frames(video, start, stop)
    while True:
        t0 = time.perf_counter()
        image = next(frames, None)
        t1 = time.perf_counter()
        if image is None:
            break
        p = teacher.predict(image, classes=classes)
        spent += time.perf_counter() - t1
        decoding += t1 - t0
        label, score = referee.answer(p.logits)
        labels.append(label)
        scores.append(score)
        if progress:
            progress("teacher on every frame", len(labels), total)
    n = max(1, len(labels))
    return Reference(labels, np.asarray(scores, np.float32), spent * 1e3 / n, decoding * 1e3 / n)


def run_cascade(cascade: Cascade, video: str, start: int = 0, stop: int | None = None,
                progress: Progress | None = None, total: int = 0, stage: str = "cascade",
                empty: str = NONE) -> tuple[list[str], int, int, int, float]:
    """The cascade's answer on each frame (`empty` without ROI), teacher runs, student runs (crops
    the student saw; a held frame's answers are not run again), held frames and ms per frame."""
    answers, teacher_runs, student_runs, held, spent = [], 0, 0, 0, 0.0
    for image in _frames(video, start, stop):
        t0 = time.perf_counter()
        r = cascade.process(image)
        spent += time.perf_counter() - t0
        teacher_runs += r.teacher_ran
        held += r.held
        asked = [roi for roi in r.rois if roi.student is not None]
        student_runs += 0 if r.held else len(asked)
        answers.append(answer_label(asked[0].student) if asked else empty)
        if progress:
            progress(stage, len(answers), total)
    return answers, teacher_runs, student_runs, held, spent * 1e3 / max(1, len(answers))


Setting = tuple[int, float | None] | tuple[int, float | None, MotionGate | None]  # every, change[, gate]


def evaluate(video: str, teacher: Model | str, student: Model | str,
             settings: Sequence[Setting] | None = None, *, start: int | float = 0,
             stop: int | None = None, classes: Sequence[str | int] | WatchList | None = None,
             groups_file: str | None = None, min_score: float | None = None,
             teacher_options: Mapping[str, Any] | None = None, rule: BoxRule | Mapping[str, Any] | None = None,
             max_rois: int | None = None, crop_spec: CropSpec | None = None, confident_top1: float = CONFIDENT,
             progress: Progress | None = None) -> Report:
    """The teacher on every frame of `video` from `start` (a frame index, or a fraction of the
    video under 1) to `stop`, then the cascade for each (every, change) or (every, change, motion
    gate) in `settings` (None: the distilled student's own, else every 10 without change detection).

    classes (groups_file), min_score: the watch list (entries as `run --classes` takes them, or a
    WatchList); teacher_options: Model keywords for the teacher (resize, input_size; None values
    and missing keys take the student's); rule: a BoxRule, or overrides of the stored one;
    max_rois, crop_spec: the cascade's. Left at None, each comes from a distilled student's
    metadata (the watch list only when it was distilled with one), else the runtime's defaults.
    """
    student = student if isinstance(student, Model) else Model(student, threads=1)
    spec = CascadeSpec.from_metadata(student.info, student.path)
    wanted = {k: v for k, v in {**(spec.teacher_options() if spec else {}), **(teacher_options or {})}.items()
              if v is not None}
    if isinstance(wanted.get("input_size"), list):
        wanted["input_size"] = tuple(wanted["input_size"])
    teacher = _teacher(teacher, wanted)
    watch: WatchList | None
    if isinstance(classes, WatchList) or classes is None:
        watch = classes
        if watch is None and spec is not None:
            watch = spec.watch_list(teacher.info.labels, teacher.num_classes)
    else:
        watch = WatchList.parse(list(classes), teacher.info.labels, groups_file, teacher.num_classes)
    score = min_score if min_score is not None else (spec.min_score if spec else 0.0) if watch else 0.0
    other = spec.other if spec else OTHER
    if settings is None:
        settings = [(spec.every, spec.change, spec.motion)] if spec else [(10, None)]
    with open_source(video) as source:
        count = source.total or 0
    if isinstance(start, float) and 0 < start < 1:
        start = int(round(start * count))
    start = int(start)
    total = max(0, (stop or count) - start)
    referee = Referee.between(teacher.info, student.info, watch, score, spec)
    ref = reference(teacher, video, referee, start, stop, progress, total)
    ok = referee.confident(ref.scores, confident_top1)
    t_macs = model_macs(teacher, teacher.input_size if teacher.dynamic_size else None)
    s_macs = model_macs(student)
    labels, counts = np.asarray(ref.labels), dict[str, int]()
    for lab in ref.labels:
        counts[lab] = counts.get(lab, 0) + 1
    if watch is not None and not set(counts) <= set(student.info.labels):
        log.warning("the teacher answers %s, which the student's labels %s do not all include",
                    sorted(counts), student.info.labels)
    common = max(counts, key=lambda k: counts[k]) if counts else NONE
    report = Report(os.path.basename(video), start, len(ref.labels), confident_top1, t_macs, s_macs,
                    1e3 / ref.ms if ref.ms else 0.0, counts, float(np.mean(labels == common)) if len(labels) else 0.0,
                    float(np.mean(labels[ok] == common)) if ok.any() else None,
                    watch=None if watch is None else watch.names, min_score=score if watch else None,
                    teacher_input=list(teacher.input_size), teacher_resize=teacher.info.input.resize,
                    decode_ms=ref.decode_ms)
    cuts = crop_spec or (spec.crop if spec else CropSpec())
    box_rule = make_rule(teacher, spec.rule if spec else None, rule)
    cap = int(max_rois if max_rois is not None else spec.max_rois if spec else DEFAULT_MAX_ROIS)
    fill = spec.fill if spec else None
    for setting in settings:
        every, change = setting[0], setting[1]
        gate = setting[2] if len(setting) > 2 else None
        cascade = Cascade(teacher, student, every=every, change=change, crop_spec=cuts, rule=box_rule,
                          max_rois=cap, watch=watch, min_score=score, fill=fill, gate=gate)
        motion = gate.to_json() if gate is not None else None
        stage = "cascade " + describe(every, change, motion)
        answers, t_runs, s_runs, held, ms = run_cascade(cascade, video, start, stop, progress, total, stage,
                                                        NONE if watch is None else other)
        same = np.asarray(answers) == labels
        confusion: dict[str, dict[str, int]] = {}
        for want, got in zip(ref.labels, answers):
            confusion.setdefault(want, {}).setdefault(got, 0)
            confusion[want][got] += 1
        macs = None if t_macs is None or s_macs is None else (t_macs * t_runs + s_macs * s_runs) / max(1, len(same))
        report.scores.append(Score(
            every, change, len(same), float(same.mean()) if len(same) else 0.0, int(ok.sum()),
            float(same[ok].mean()) if ok.any() else None, t_runs, s_runs, macs,
            t_macs / macs if macs and t_macs else None, 1e3 / ms if ms else 0.0, ms, confusion,
            ref.ms / ms if ms else None, motion, held))
        log.info("%s: agreement %.3f, confident %s, teacher runs %d, speed-up %s", stage,
                 report.scores[-1].agreement, report.scores[-1].agreement_confident, t_runs,
                 report.scores[-1].speedup)
    return report
