"""The capture loop's counters: frames, skips, teacher runs and bounded per-stage latencies (the
latest WINDOW frames in ring buffers). Below both `stream` (which fills them) and the sinks (the
preview reports them), so neither has to import the other for them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .agreement import Agreement

if TYPE_CHECKING:
    from .cascade import FrameResult

STAGES = ("read", "preprocess", "teacher", "localize", "crop", "student", "sink")
WINDOW = 8192  # frames whose timings the latency figures cover: memory stays flat however long a run is


class Window:
    """The latest WINDOW values of one series, in a fixed ring buffer."""

    def __init__(self, size: int = WINDOW):
        self._buf = np.zeros(size, np.float64)
        self.count = 0  # values ever added

    def add(self, value: float) -> None:
        self._buf[self.count % len(self._buf)] = value
        self.count += 1

    def values(self) -> np.ndarray:
        """The kept values, oldest first."""
        n = len(self._buf)
        if self.count <= n:
            return self._buf[:self.count].copy()
        i = self.count % n
        return np.concatenate([self._buf[i:], self._buf[:i]])


# Stages that run only on some frames: their latency is taken over the frames where they ran
# (a median over frames that reused the teacher's map would say the teacher costs nothing).
_RAN = {"teacher": lambda r: r.teacher_ran, "localize": lambda r: r.teacher_ran,
        "crop": lambda r: bool(r.rois), "student": lambda r: bool(r.rois)}


@dataclass
class StreamStats:
    frames: int = 0
    skipped: int = 0  # unreadable frames, counted and logged
    teacher_runs: int = 0
    wall_s: float = 0.0
    timings: dict[str, Window] = field(default_factory=dict)
    # The student against the teacher where it ran (filled by stream(), which sets each result's
    # rolling figure and alarm before the sinks see it).
    agreement: Agreement = field(default_factory=Agreement)

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        self.teacher_runs += result.teacher_ran
        for k, v in result.timing_ms.items():
            if _RAN.get(k, bool)(result):
                self.timings.setdefault(k, Window()).add(v)
        self.timings.setdefault("total", Window()).add(sum(result.timing_ms.values()))

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def latency(self) -> dict[str, dict[str, float]]:
        """Median, p95 and p99 per stage (over the frames where it ran) and for the whole frame, in
        ms, over the latest WINDOW frames. Safe to call from another thread while the loop adds: it
        reads a copy of the stage table (one C-level copy, whole under the GIL)."""
        out = {}
        timings = dict(self.timings)
        for k in [*STAGES, *sorted(set(timings) - set(STAGES) - {"total"}), "total"]:
            a = timings[k].values() if k in timings else np.zeros(0)
            if a.size:
                out[k] = {"median": float(np.median(a)), "p95": float(np.percentile(a, 95)),
                          "p99": float(np.percentile(a, 99))}
        return out

    def summary(self) -> str:
        checked = f", {self.agreement.summary()}" if self.agreement.seen else ""
        return (f"{self.frames} frames in {self.wall_s:.1f} s ({self.fps:.1f} FPS), teacher ran on "
                f"{self.teacher_runs}, {self.skipped} unreadable frames skipped{checked}")

    def judge(self, result: FrameResult) -> None:
        """The result's check into the rolling agreement; the figure (and an alarm where it crossed) onto the result."""
        if result.check is not None:
            result.alarm = self.agreement.add(result.check)
        if self.agreement.seen:
            result.agreement = self.agreement.value
