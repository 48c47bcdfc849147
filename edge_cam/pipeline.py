"""The capture loop: source → cascade → sinks, with counts, per-stage timings and a status line."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Iterable, TextIO

import numpy as np

from .cascade import Cascade, FrameResult
from .source import Frame

STAGES = ("read", "preprocess", "teacher", "localize", "crop", "student", "sink")


@dataclass
class StreamStats:
    frames: int = 0
    skipped: int = 0
    teacher_runs: int = 0
    wall_s: float = 0.0
    timings: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        self.teacher_runs += result.teacher_ran
        for k, v in result.timing_ms.items():
            self.timings.setdefault(k, []).append(v)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def latency(self) -> dict[str, dict[str, float]]:
        """Median and p95 per stage, in ms, over all frames (0 where a stage was skipped)."""
        out = {}
        for k, v in self.timings.items():
            if v:
                a = np.asarray(v)
                out[k] = {"median": float(np.median(a)), "p95": float(np.percentile(a, 95))}
        per_frame = np.sum([np.asarray(v) for v in self.timings.values() if len(v) == self.frames], axis=0) \
            if self.frames else np.zeros(1)
        out["total"] = {"median": float(np.median(per_frame)), "p95": float(np.percentile(per_frame, 95))}
        return out

    def summary(self) -> str:
        return (f"{self.frames} frames in {self.wall_s:.1f} s ({self.fps:.1f} FPS), teacher ran on "
                f"{self.teacher_runs}, {self.skipped} unreadable frames skipped")


def run_stream(cascade: Cascade, frames: Iterable[Frame], sinks: list, max_frames: int | None = None,
               status: TextIO | None = sys.stderr, on_result=None) -> StreamStats:
    """Every readable frame goes through the cascade into every sink; unreadable ones are counted
    and logged. Sinks are closed however the loop ends (EOF, Ctrl-C, SIGTERM, an error)."""
    stats = StreamStats()
    t_start = last_status = time.perf_counter()
    try:
        for frame in frames:
            if max_frames is not None and stats.frames >= max_frames:
                break
            if frame.image is None:
                stats.skipped += 1
                print(f"skipped frame {frame.index} ({frame.name}): {frame.error}", file=sys.stderr)
                continue
            result = cascade.process(frame.image, frame.index, frame.ts, frame.source, read_ms=frame.read_ms)
            t0 = time.perf_counter()
            for sink in sinks:
                # An event sink reports the time spent in the sinks before it (list it last).
                result.timing_ms["sink"] = (time.perf_counter() - t0) * 1e3
                sink.write(frame.image, result)
            result.timing_ms["sink"] = (time.perf_counter() - t0) * 1e3
            stats.add(result)
            if on_result is not None:
                on_result(frame, result)
            now = time.perf_counter()
            if status is not None and now - last_status > 0.5:
                stats.wall_s = now - t_start
                print(f"\r{stats.frames} frames, {stats.fps:.1f} FPS, teacher {stats.teacher_runs}, "
                      f"skipped {stats.skipped}", end="", file=status, flush=True)
                last_status = now
    finally:
        stats.wall_s = time.perf_counter() - t_start
        for sink in sinks:
            sink.close()
        if status is not None and stats.frames:
            print("\r", end="", file=status)
    return stats
