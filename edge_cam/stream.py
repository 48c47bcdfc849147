"""The capture loop: sources → cascade → sinks, with counts, per-stage timings and a status line."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence, TextIO

import numpy as np

from .cascade import Cascade, FrameIn, FrameResult, StreamState
from .source import Frame, Source

STAGES = ("read", "preprocess", "teacher", "localize", "crop", "student", "sink")
LIVE_WAIT_S = 0.02  # how long one round waits for a live source's next frame


@dataclass
class StreamStats:
    frames: int = 0
    skipped: int = 0  # unreadable frames, counted and logged
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
        """Median, p95 and p99 per stage and for the whole frame, in ms."""
        out = {}
        full = [np.asarray(v) for v in self.timings.values() if v and len(v) == self.frames]
        series = {k: np.asarray(v) for k, v in self.timings.items() if v}
        if full:
            series["total"] = np.sum(full, axis=0)
        for k, a in series.items():
            out[k] = {"median": float(np.median(a)), "p95": float(np.percentile(a, 95)),
                      "p99": float(np.percentile(a, 99))}
        return out

    def summary(self) -> str:
        return (f"{self.frames} frames in {self.wall_s:.1f} s ({self.fps:.1f} FPS), teacher ran on "
                f"{self.teacher_runs}, {self.skipped} unreadable frames skipped")


def _status_line(stats: StreamStats, sources: Sequence[Source], sinks: list) -> str:
    dropped = sum(s.stats.dropped for s in sources)
    depth = sum(s.depth for s in sources) + sum(getattr(k, "pending", 0) for k in sinks)
    line = (f"{stats.frames} frames {stats.fps:5.1f} FPS | teacher {stats.teacher_runs} | dropped "
            f"{dropped} | skipped {stats.skipped} | queued {depth}")
    totals = [s.total for s in sources]
    if all(totals):
        done, total = stats.frames + stats.skipped, sum(totals)
        bar = int(20 * min(done, total) / total)
        line = f"[{'=' * bar}{' ' * (20 - bar)}] {done}/{total} " + line
    return line


def run_streams(cascade: Cascade, sources: Sequence[Source], sinks: Sequence[Sequence] | Sequence = (),
                max_frames: int | None = None, status: TextIO | None = sys.stderr,
                on_result: Callable[[Frame, FrameResult], None] | None = None) -> StreamStats:
    """Every readable frame of every source goes through the cascade into its sinks; unreadable
    ones are counted and logged. `sinks` is one list for all streams or one list per stream.
    Sinks are closed however the loop ends (EOF, Ctrl-C, SIGTERM, an error)."""
    per_stream = [list(s) for s in sinks] if sinks and isinstance(sinks[0], (list, tuple)) else \
        [list(sinks)] * len(sources)
    states = [StreamState() for _ in sources]
    stats = StreamStats()
    active = list(range(len(sources)))
    t_start = last_status = time.perf_counter()
    try:
        while active and (max_frames is None or stats.frames < max_frames):
            batch: list[tuple[int, Frame]] = []
            for i in list(active):
                src = sources[i]
                frame = src.get(timeout=LIVE_WAIT_S if src.live else None)
                if frame is None:
                    if src.finished:
                        active.remove(i)
                    continue
                if frame.image is None:
                    stats.skipped += 1
                    print(f"\nskipped frame {frame.index} of {src.name} {frame.name}: {frame.error}",
                          file=sys.stderr)
                    continue
                batch.append((i, frame))
            if max_frames is not None:
                batch = batch[:max_frames - stats.frames]
            if not batch:
                continue
            results = cascade.process_many([FrameIn(f.image, states[i], f.index, f.ts, sources[i].name,
                                                    f.read_ms, stream=i) for i, f in batch])
            for (i, frame), result in zip(batch, results):
                t0 = time.perf_counter()
                for sink in per_stream[i]:
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
                print("\r" + _status_line(stats, sources, [k for ks in per_stream for k in ks]), end="",
                      file=status, flush=True)
                last_status = now
    finally:
        stats.wall_s = time.perf_counter() - t_start
        for src in sources:
            src.close()
        closed = set()
        for sink in (k for ks in per_stream for k in ks):
            if id(sink) not in closed:
                closed.add(id(sink))
                sink.close()
        if status is not None and stats.frames:
            print(file=status)
    return stats


def run_stream(cascade: Cascade, source: Source, sinks: Sequence = (), **kw) -> StreamStats:
    """One source; see run_streams."""
    return run_streams(cascade, [source], [list(sinks)], **kw)
