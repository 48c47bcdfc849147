"""`edge-cam bench`: per-stage latency, FPS, peak memory, model load time and energy per frame of
the cascade, measured over many frames after a warm-up; JSON, a markdown table and a PNG."""
from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np

from ..cascade import Cascade
from ..localize import BoxRule
from ..model import Model
from ..source import open_source
from ..stream import StreamStats, stream
from ..tools.plot import line_chart
from ..watch import WatchList
from . import energy


@dataclass
class BenchConfig:
    """One measurement: which models on which frames, and how they are set up, as keyword
    arguments of Model (teacher_options, student_options), Cascade (cascade_options: every,
    change, crop_spec) and BoxRule.for_model (rule_options: threshold, mode, ...)."""
    teacher: str
    student: str | None
    source: str
    frames: int = 300
    warmup: int = 20
    teacher_options: dict = field(default_factory=dict)
    student_options: dict = field(default_factory=dict)
    cascade_options: dict = field(default_factory=dict)
    rule_options: dict = field(default_factory=dict)
    watch: dict = field(default_factory=dict)  # WatchList.parse's entries and groups_file, and min_score


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20  # macOS reports bytes


def _measure(cascade: Cascade, source: str, frames: int,
             progress: Callable[[int, int], None] | None = None) -> StreamStats:
    """`frames` frames of the looped source through the cascade, without sinks."""
    stats = StreamStats()
    with open_source(source, loop=True) as src:
        t0 = time.perf_counter()  # after the source opened: that is not the cascade's cost
        for result in stream(cascade, [src], max_frames=frames, stats=stats):
            stats.add(result)
            if progress:
                progress(stats.frames, frames)
        stats.wall_s = time.perf_counter() - t0
    return stats


def run_bench(cfg: BenchConfig, progress: Callable[[int, int], None] | None = None) -> dict:
    t0 = time.perf_counter()
    teacher = Model(cfg.teacher, **cfg.teacher_options)
    t1 = time.perf_counter()
    student = Model(cfg.student, **cfg.student_options) if cfg.student else None
    t2 = time.perf_counter()
    watch = WatchList.parse(cfg.watch["entries"], teacher.info.labels, cfg.watch.get("groups_file"),
                            teacher.num_classes) if cfg.watch.get("entries") else None
    cascade = Cascade(teacher, student, rule=BoxRule.for_model(teacher.info.cam, **cfg.rule_options),
                      watch=watch, min_score=cfg.watch.get("min_score") or 0.0, **cfg.cascade_options)
    if cfg.warmup:
        _measure(cascade, cfg.source, cfg.warmup)
        cascade.reset()  # the measured run starts as a real one does: teacher on the first frame
    meter = energy.detect()
    power = {"available": False, "reason": energy.describe_unavailable()} if meter is None else {}
    if meter is None:
        stats = _measure(cascade, cfg.source, cfg.frames, progress)
    else:
        with meter, energy.measure(meter) as m:
            stats = _measure(cascade, cfg.source, cfg.frames, progress)
            m.frames = stats.frames
        power = {"available": True, "meter": meter.name, "average_w": m.average_w,
                 "mj_per_frame": m.mj_per_frame(), "samples": m.samples}
    total = stats.timings.get("total")
    return {
        "config": asdict(cfg),
        "machine": {"platform": platform.platform(), "machine": platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "providers": teacher.providers},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "frames": stats.frames, "teacher_runs": stats.teacher_runs, "fps": stats.fps,
        "latency_ms": stats.latency(), "load_ms": {"teacher": (t1 - t0) * 1e3, "student": (t2 - t1) * 1e3},
        "peak_rss_mb": _peak_rss_mb(), "energy": power,
        "per_frame_ms": [round(float(x), 3) for x in total.values()] if total else [],
    }


def markdown(result: dict) -> str:
    c = result["config"]
    threads, every = c["teacher_options"].get("threads"), c["cascade_options"].get("every", 1)
    spec = c["student_options"].get("describe")
    lines = [f"edge-cam bench, {result['date']}, {result['machine']['machine']} "
             f"{result['machine']['cores']} cores, providers {','.join(result['machine']['providers'])}, "
             f"threads {threads or 'default'}, teacher every {every}",
             f"`edge-cam bench --teacher {c['teacher']}" + (f" --student {c['student']}" if c['student'] else "")
             + (f" --student-spec '{spec}'" if spec else "")
             + f" --source {c['source']} --frames {c['frames']} --every {every}`", "",
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
