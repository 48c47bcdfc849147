"""The capture loop: sources → cascade → results (a generator), and `run` which hands each result to
the sinks with counts, bounded per-stage statistics and a status line.

>>> with open_source("clip.mp4") as source:
...     for result in stream(cascade, [source]):
...         print(result.frame, [roi.student for roi in result.rois])
"""
from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import TextIO

from .cascade import Cascade, FrameResult
from .sink import Sink
from .source import Frame, Source
from .stream_stats import StreamStats

LIVE_WAIT_S = 0.02  # how long one round waits for a live source's next frame
STATUS_EVERY_S = (0.5, 30.0)  # status refresh: a terminal, a log file
log = logging.getLogger("edge_cam")
# One id per process run, in every event: frame numbers start again at 0 with each run, so
# (source, frame) alone repeats across restarts and spill replays; (run, source, frame) does not.
RUN_ID = uuid.uuid4().hex


def printable(text: str) -> str:
    """`text` with control characters (newlines, terminal escapes) written as escapes, for logs."""
    return text if text.isprintable() else "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def stream(cascade: Cascade, sources: Sequence[Source], *, max_frames: int | None = None,
           stats: StreamStats | None = None, run_id: str = RUN_ID) -> Iterator[FrameResult]:
    """Every readable frame of every source through the cascade, as results in arrival order; a
    frame of source i is stream i. Unreadable frames are counted in `stats` and logged, never the
    end of the run. Frames of several sources that arrive together go through the teacher as one
    batch. Each result carries `run_id` (default: this process's RUN_ID)."""
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"max_frames must be 0 or more, not {max_frames}.")
    stats = stats if stats is not None else StreamStats()
    active = [s.start() for s in sources]
    done = 0
    while active and (max_frames is None or done < max_frames):
        batch: list[Frame] = []
        for i, src in enumerate(sources):
            if src not in active:
                continue
            frame = src.get(timeout=LIVE_WAIT_S if src.live else None)
            if frame is None:
                if src.finished:
                    active.remove(src)
                continue
            frame.stream = i
            if frame.image is None:
                stats.skipped += 1
                # File names can hold newlines and escape codes: never let them forge log lines.
                log.warning("skipped frame %s of %s %s: %s", frame.index, printable(src.name),
                            ascii(frame.name) if frame.name else "", printable(frame.error))
                continue
            batch.append(frame)
        if max_frames is not None:
            batch = batch[:max_frames - done]
        if batch:
            done += len(batch)
            for result in cascade.process_many(batch):
                result.run = run_id
                stats.judge(result)
                if result.alarm is not None:
                    a = result.alarm
                    log.warning("student agreement %s: %.1f%% of the latest %d confident teacher frames, alarm "
                                "below %.1f%%", a.state, 100 * a.agreement, a.checks, 100 * a.below)
                yield result


def _status_line(stats: StreamStats, sources: Sequence[Source], sinks: Sequence[Sink]) -> str:
    dropped = sum(s.stats.dropped for s in sources)
    depth = sum(s.depth for s in sources) + sum(k.pending for k in sinks)
    line = (f"{stats.frames} frames {stats.fps:5.1f} FPS | teacher {stats.teacher_runs} | dropped "
            f"{dropped} | skipped {stats.skipped} | queued {depth}")
    totals = [s.total for s in sources]
    if all(totals):
        done, total = stats.frames + stats.skipped, sum(t or 0 for t in totals)
        bar = int(20 * min(done, total) / total)
        line = f"[{'=' * bar}{' ' * (20 - bar)}] {done}/{total} " + line
    return line


def run(cascade: Cascade, sources: Sequence[Source], sinks: Sequence[Sink] = (), *,
        max_frames: int | None = None, status: TextIO | None = sys.stderr,
        stats: StreamStats | None = None, run_id: str = RUN_ID) -> StreamStats:
    """`stream` into the sinks (each gets every result; an event sink reports the time spent in the
    sinks before it, so list it last). Sources and sinks are closed however the loop ends (EOF,
    Ctrl-C, SIGTERM, an error), all of them even when a second signal interrupts a close. The
    status line redraws in place on a terminal; elsewhere (a log file) it is a plain line every
    30 s. Pass `stats` to still have the counts when the run ends in an exception (a signal)."""
    stats = stats if stats is not None else StreamStats()
    for sink in sinks:  # the loop's own counters, for a sink that reports them (the preview's /metrics)
        sink.bind(stats, sources, sinks)
    tty = status is not None and status.isatty()
    every = STATUS_EVERY_S[0] if tty else STATUS_EVERY_S[1]
    t_start = last_status = time.perf_counter()
    try:
        for result in stream(cascade, sources, max_frames=max_frames, stats=stats, run_id=run_id):
            t0 = time.perf_counter()
            for sink in sinks:
                result.timing_ms["sink"] = (time.perf_counter() - t0) * 1e3
                sink.write(result)
            result.timing_ms["sink"] = (time.perf_counter() - t0) * 1e3
            stats.add(result)
            now = time.perf_counter()
            if status is not None and now - last_status > every:
                stats.wall_s = now - t_start
                line = _status_line(stats, sources, sinks)
                print("\r" + line if tty else line, end="" if tty else "\n", file=status, flush=True)
                last_status = now
    finally:
        stats.wall_s = time.perf_counter() - t_start
        errors: list[BaseException] = []
        closables: list[Source | Sink] = [*sources, *sinks]
        for closable in closables:
            try:
                closable.close()
            # Close them all, and report the first failure after: a second Ctrl-C or SIGTERM
            # (KeyboardInterrupt) while one closes must not leave the next sinks unflushed.
            except BaseException as e:
                errors.append(e)
        if tty and stats.frames:
            print(file=status)
        if errors and sys.exc_info()[0] is None:
            raise errors[0]
    return stats
