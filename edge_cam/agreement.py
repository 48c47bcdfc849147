"""Does the student still answer as its teacher would? The question the cascade asks on every frame
where the teacher runs, and `eval --video` asks of a whole video.

A deployed student meets scenes its training footage never showed (a new shelf, night, a moved
camera); its answers then drift from the teacher's without any error. On a frame where the teacher
runs anyway, the student's answer costs one small crop more than it would have, so the cascade
checks it there and keeps a rolling agreement: the figure tells the user when to collect footage
and distil again.

The teacher's answer, in the student's terms: without a watch list its top-1 class mapped into the
student's labels (a distilled student's CascadeSpec says which teacher classes make each label;
otherwise a teacher label the student also has stays itself), anything else "other"; the frame is
confident when the teacher's probability of that answer is ≥ CONFIDENT, summed over the label's
classes (for "other", over every class that is not the student's). Summed, because a coarse label
("person", "dog") is many fine classes the teacher spreads its belief over: it may be sure of "dog"
and of no breed. (Not simply the most probable label: with two labels that is always ≥ 0.5, and
every frame would count.) With a watch list it is the most probable
target if P(target) ≥ min score, else "other", confident when far from that threshold (≥ 2·S or
< S/2): near S the teacher's own answer flips between frames of a still scene. The student's
answer is its label on the first ROI; a frame without ROI answers "other" with a watch list (the
cascade says "nothing of interest") and "none" without one. Only confident frames count.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .metadata import ModelInfo
from .model import Prediction
from .spec import OTHER, CascadeSpec, watch_from_targets
from .watch import WatchList

CONFIDENT = 0.5  # teacher top-1 probability from which a frame counts (no watch list)
NONE = "none"  # the cascade's answer on a frame without ROI (no watch list)
WINDOW = 200  # checks the rolling agreement covers by default (about 7 minutes at every 10, 5 FPS)
MIN_CHECKS = 20  # an alarm needs this many checks in the window: one early miss is not a drift


def confident(score: np.ndarray | float, min_score: float | None = None, top1: float = CONFIDENT) -> np.ndarray:
    """Which frames the teacher is sure about (see the module's doc): without a watch list
    (min_score None) `score` is the top-1 probability, ≥ top1; with one it is the best target's
    P, ≥ 2·min_score or < min_score/2."""
    s = np.asarray(score, np.float64)
    if min_score is None:
        return s >= top1
    return (s >= 2 * min_score) | (s < min_score / 2)


def watch_answer(watch: WatchList, logits: np.ndarray, min_score: float, other: str = OTHER) -> tuple[str, float]:
    """The teacher's answer to a watch list on one frame: the most probable target's name if it
    reaches min_score, else `other`; and that target's probability."""
    p = watch.scores(logits)
    best = int(np.argmax(p))
    return (watch.names[best] if p[best] >= min_score else other), float(p[best])


def target_map(teacher: ModelInfo, student: ModelInfo, spec: CascadeSpec | None = None) -> Callable[[int], str]:
    """Teacher class id → the student's label for it, or "other": by the distilled student's
    targets (`spec`, default: its metadata's), else by name."""
    return Referee.between(teacher, student, spec=spec).label_of


@dataclass(frozen=True)
class Check:
    """The student against the teacher on one frame where both answered."""
    teacher: str  # the teacher's answer in the student's labels
    student: str
    confident: bool  # the teacher was sure: the frame counts

    @property
    def agree(self) -> bool:
        return self.teacher == self.student

    def to_dict(self) -> dict:
        return {"teacher": self.teacher, "student": self.student, "confident": self.confident, "agree": self.agree}


class Referee:
    """The teacher's answer to the student's question, how sure it is of it, and a Check of the
    student's answer against it (see the module's doc).

    targets: the student's labels → the teacher classes behind each (disjoint); a class in none of
    them is `other`. Without a watch list the teacher's answer is its top-1 class's label, and its
    certainty the probability of that label (the sum over its classes, or for `other` one minus the
    sum over every target): on footage the student never saw, the teacher is sure that it is
    "other" even when its own top-1 is a coin toss between two unrelated classes. distill labels
    its training frames with this same answer.
    """

    def __init__(self, targets: Mapping[str, Sequence[int]], teacher_labels: Sequence[str], num_classes: int,
                 other: str = OTHER, watch: WatchList | None = None, min_score: float = 0.0):
        self.watch, self.min_score, self.other = watch, min_score, other
        self._lookup = {int(c): str(label) for label, ids in targets.items() for c in ids}
        self._labels = watch_from_targets(targets, teacher_labels, num_classes) if targets else None

    @classmethod
    def between(cls, teacher: ModelInfo, student: ModelInfo, watch: WatchList | None = None,
                min_score: float = 0.0, spec: CascadeSpec | None = None) -> Referee:
        """For a student of this teacher: a distilled student's targets (`spec`, default: its
        metadata's), else the teacher's classes whose label the student also has."""
        spec = spec if spec is not None else CascadeSpec.from_metadata(student)
        if spec is not None:
            targets: Mapping[str, Sequence[int]] = spec.targets
        else:
            names, by_name = set(student.labels), dict[str, list[int]]()
            for i, label in enumerate(teacher.labels):
                if label in names:
                    by_name.setdefault(label, []).append(i)
            targets = by_name
        return cls(targets, teacher.labels, len(teacher.labels), spec.other if spec is not None else OTHER,
                   watch, min_score)

    def label_of(self, class_id: int) -> str:
        return self._lookup.get(int(class_id), self.other)

    def answer(self, logits: np.ndarray) -> tuple[str, float]:
        """The teacher's answer on one frame (its logits) and its probability."""
        if self.watch is not None:
            return watch_answer(self.watch, logits, self.min_score, self.other)
        if self._labels is None:
            return self.other, 1.0  # the student shares no class with the teacher: every answer is "other"
        label = self.label_of(int(np.argmax(logits)))
        p = self._labels.scores(logits)
        return label, float(p[self._labels.names.index(label)] if label != self.other else max(0.0, 1 - p.sum()))

    def confident(self, score: np.ndarray | float, top1: float = CONFIDENT) -> np.ndarray:
        """Which of these answers' probabilities (`answer`'s second value) the teacher is sure of."""
        return confident(score, self.min_score if self.watch is not None else None, top1)

    def check(self, pred: Prediction, student_label: str | None) -> Check:
        """`student_label`: the student's answer on the first ROI, None when the frame has none."""
        answer, p = self.answer(pred.logits)
        empty = NONE if self.watch is None else self.other
        return Check(answer, student_label or empty, bool(self.confident(p)))


@dataclass(frozen=True)
class Alarm:
    """The rolling agreement crossed the alarm level: "raised" going below it, "cleared" back at or above."""
    state: str
    agreement: float
    below: float
    checks: int  # in the window

    def to_dict(self) -> dict:
        return {"state": self.state, "student_agreement": round(self.agreement, 4), "below": self.below,
                "checks": self.checks}


class Agreement:
    """The rolling agreement over the latest `window` confident checks, and an alarm when it drops
    below `alarm` (once it has MIN_CHECKS, or the whole window if smaller); it clears when the
    agreement is back at or above that level."""

    def __init__(self, window: int = WINDOW, alarm: float | None = None):
        if window < 1:
            raise ValueError(f"the agreement window must be 1 check or more, not {window}.")
        if alarm is not None and not 0 < alarm <= 1:
            raise ValueError(f"the alarm level is an agreement above 0 and at most 1, not {alarm}.")
        self.window, self.alarm = window, alarm
        self._recent: deque[bool] = deque(maxlen=window)
        self.seen = 0  # checks ever, confident or not
        self.checks = self.agreed = 0  # confident checks ever, and how many agreed
        self.raised = False

    @property
    def value(self) -> float | None:
        """The share of the latest window's checks that agreed (None before the first)."""
        return sum(self._recent) / len(self._recent) if self._recent else None

    def add(self, check: Check) -> Alarm | None:
        """Counts a confident check; an Alarm when this one crosses the alarm level."""
        self.seen += 1
        if not check.confident:
            return None
        self._recent.append(check.agree)
        self.checks += 1
        self.agreed += check.agree
        value = self.value
        if self.alarm is None or value is None or len(self._recent) < min(MIN_CHECKS, self.window):
            return None
        if not self.raised and value < self.alarm:
            self.raised = True
            return Alarm("raised", value, self.alarm, len(self._recent))
        if self.raised and value >= self.alarm:
            self.raised = False
            return Alarm("cleared", value, self.alarm, len(self._recent))
        return None

    def summary(self) -> str:
        if not self.checks:
            return f"the student was checked on {self.seen} teacher frames, none confident"
        return (f"the student agreed with the teacher on {self.agreed} of {self.checks} confident teacher frames "
                f"({self.agreed / self.checks:.1%}; latest {len(self._recent)}: {self.value:.1%})")

