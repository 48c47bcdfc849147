"""The motion gate: run the teacher when the scene moves, keep the last answer while it does not.

An edge camera mostly watches a still scene, and while nothing moves the answer cannot change:
the cheapest frame is the one not processed at all (NoScope's difference detector). Each frame is
shrunk to a grey thumbnail by bilinear taps (15 µs at 720p, measured: benchmarks/motion_gate.py)
and compared with the previous frame's. The score is the fraction of thumbnail pixels whose grey
level moved by more than NOISE, not the mean difference: a car entering a lane camera's view moves
a few percent of the pixels a lot, which a mean over the whole frame dilutes to below the flicker
of compression and sensor noise; counting pixels past a noise level ignores that flicker however
large the frame. Against the previous frame, not the frame the teacher last saw: what matters is
whether something moves now. A scene that drifts slowly (daylight) moves no pixel past the noise
level between two frames, and the teacher's `every` cadence catches it.

What the cascade does with the score (cascade.py): at or above `level` the frame is moving, and
the teacher runs if it has not run in the last `every` frames (objects arriving or leaving are when
the answer changes), else the student runs on the last ROIs; below it the frame is held: the last
frame's ROIs and student answers are reused without cutting a crop or running anything.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import EdgeCamError

THUMB = (64, 36)  # W, H: a 16:9 frame's pixels stay square; a car 1/20 of the frame wide spans 3 pixels
# Grey levels a thumbnail pixel must move by to count: bilinear taps average only 4 pixels, so
# sensor noise (±3) and compression flicker pass through nearly whole; 12 stays clear of both on the
# shared videos (a still lane moves no pixel past it) and below any object entering (measured).
NOISE = 12
DEFAULT_EVERY = 5  # while the scene moves: measured best on the shared videos (benchmarks/motion_gate.py)


@dataclass(frozen=True)
class MotionGate:
    """`level`: the fraction of the scene (0-1) that must move between two frames for a frame to
    count as moving; `every`: while it moves, the teacher runs at most once in this many frames."""
    level: float
    every: int = DEFAULT_EVERY

    def __post_init__(self) -> None:
        if not (isinstance(self.level, (int, float)) and math.isfinite(self.level) and 0 < self.level <= 1):
            raise EdgeCamError(f"motion must be a fraction of the scene above 0 and at most 1, not {self.level}.")
        if not (isinstance(self.every, int) and self.every >= 1):
            raise EdgeCamError(f"motion every must be 1 or more, not {self.every}.")

    def to_json(self) -> dict:
        return {"level": self.level, "every": self.every}


def grey_thumbnail(image: np.ndarray, size: tuple[int, int] = THUMB) -> np.ndarray:
    """A small grey view of a frame by bilinear taps, `size` (W, H): the gate's by default (any
    channel order: grey weights differ by a few levels at most, the same for both frames compared)."""
    small = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def motion(previous: np.ndarray, current: np.ndarray, noise: int = NOISE) -> float:
    """The fraction of thumbnail pixels whose grey level moved by more than `noise` (0-1)."""
    return float(np.count_nonzero(cv2.absdiff(previous, current) > noise)) / current.size


# What `distill` gives a student unless told otherwise: hold the last answer while nothing moves
# (0.005 of the scene: the shared videos' level, benchmarks/motion_gate.py). Pacing motion at 30, no
# faster than the cascade's own cadence, adds no teacher run: on fixed cameras the answer hardly
# changes while things move (the bottle video needs more runs gated at 10 than at a fixed 30), so
# the gate's gain is the frames it skips, not earlier looks.
DISTILL_GATE = MotionGate(0.005, 30)
