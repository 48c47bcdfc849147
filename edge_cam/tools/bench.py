"""`edge-cam bench`: per-stage latency, FPS, peak memory, model load time and energy per frame of
the cascade, measured over many frames after a warm-up; JSON, a markdown table and a PNG."""
from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from . import energy
from ..cascade import Cascade
from ..model import Model
from ..stream import StreamStats, run_stream
from .plot import line_chart
from ..source import Source


@dataclass
class BenchConfig:
    teacher: str
    student: str | None
    source: str
    frames: int = 300
    warmup: int = 20
    every: int = 1
    change: float | None = None
    threads: int = 0
    providers: str | list[str] = "auto"
    student_spec: str | dict | None = None  # a foreign student's description (see StudentSpec)
    student_threads: int = 1


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20  # macOS reports bytes


def run_bench(cfg: BenchConfig, progress=None) -> dict:
    t0 = time.perf_counter()
    teacher = Model(cfg.teacher, providers=cfg.providers, threads=cfg.threads)
    t1 = time.perf_counter()
    student = Model(cfg.student, providers=cfg.providers, threads=cfg.student_threads,
                    describe=cfg.student_spec) if cfg.student else None
    t2 = time.perf_counter()
    cascade = Cascade(teacher, student, every=cfg.every, change=cfg.change)
    if cfg.warmup:
        run_stream(cascade, Source(cfg.source, loop=True), [], max_frames=cfg.warmup, status=None)
    cascade = Cascade(teacher, student, every=cfg.every, change=cfg.change)  # fresh reuse state
    meter = energy.detect()
    power = {"available": False, "reason": energy.describe_unavailable()} if meter is None else {}
    done = [0]

    def tick(frame, result):
        done[0] += 1
        if progress:
            progress(done[0], cfg.frames)

    if meter is None:
        stats = run_stream(cascade, Source(cfg.source, loop=True), [], max_frames=cfg.frames, status=None,
                           on_result=tick)
    else:
        with meter, energy.measure(meter) as m:
            stats = run_stream(cascade, Source(cfg.source, loop=True), [], max_frames=cfg.frames,
                               status=None, on_result=tick)
            m.frames = stats.frames
        power = {"available": True, "meter": meter.name, "average_w": m.average_w,
                 "mj_per_frame": m.mj_per_frame(), "samples": m.samples}
    return {
        "config": {k: v for k, v in cfg.__dict__.items()},
        "machine": {"platform": platform.platform(), "machine": platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "providers": teacher.session.get_providers()},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "frames": stats.frames, "teacher_runs": stats.teacher_runs, "fps": stats.fps,
        "latency_ms": stats.latency(), "load_ms": {"teacher": (t1 - t0) * 1e3, "student": (t2 - t1) * 1e3},
        "peak_rss_mb": _peak_rss_mb(), "energy": power,
        "per_frame_ms": _per_frame(stats),
    }


def _per_frame(stats: StreamStats) -> list[float]:
    full = [np.asarray(v) for v in stats.timings.values() if v and len(v) == stats.frames]
    return [round(float(x), 3) for x in np.sum(full, axis=0)] if full else []


def markdown(result: dict) -> str:
    c = result["config"]
    lines = [f"edge-cam bench, {result['date']}, {result['machine']['machine']} "
             f"{result['machine']['cores']} cores, providers {','.join(result['machine']['providers'])}, "
             f"threads {c['threads'] or 'default'}, teacher every {c['every']}",
             f"`edge-cam bench --teacher {c['teacher']}" + (f" --student {c['student']}" if c['student'] else "")
             + (f" --student-spec '{c['student_spec']}'" if c.get('student_spec') else "")
             + f" --source {c['source']} --frames {c['frames']} --every {c['every']}`", "",
             "| stage | median ms | p95 ms | p99 ms |", "|---|---|---|---|"]
    for stage, v in result["latency_ms"].items():
        lines.append(f"| {stage} | {v['median']:.2f} | {v['p95']:.2f} | {v['p99']:.2f} |")
    e = result["energy"]
    lines += ["", f"{result['frames']} frames, {result['fps']:.1f} FPS, teacher ran on {result['teacher_runs']}; "
              f"peak RSS {result['peak_rss_mb']:.0f} MB; load {result['load_ms']['teacher']:.0f} ms (teacher), "
              f"{result['load_ms']['student']:.0f} ms (student)",
              (f"energy: {e['average_w']:.2f} W average, {e['mj_per_frame']:.1f} mJ per frame ({e['meter']})"
               if e["available"] else f"energy: unavailable. {e['reason']}")]
    return "\n".join(lines)


def write_report(result: dict, out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, n) for n in ("bench.json", "bench.md", "latency.png")]
    with open(paths[0], "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    with open(paths[1], "w", encoding="utf-8") as f:
        f.write(markdown(result) + "\n")
    per = result["per_frame_ms"]
    if per:
        line_chart(paths[2], {"cascade": (np.arange(len(per)), per)}, "latency per frame (ms)", "frame", "ms")
    else:
        paths.pop()
    return paths
