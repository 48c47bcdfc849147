"""`edge-cam demo`: the cascade on the bundled clip, scored against its ground truth.

Three ways to name the object in each frame, on the same frames:
  (a) the teacher on every frame,
  (b) the student on the whole frame,
  (c) the cascade: the teacher every N frames, the student on the CAM crop every frame.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from importlib import resources
from typing import TextIO

import numpy as np

from ..cascade import Cascade, FrameResult
from ..crop import CropSpec
from ..errors import EdgeCamError
from ..localize import Box
from ..model import Model
from ..sink import PlainSink, Sink
from ..sinks import open_sink
from ..source import open_source, read_video
from ..stream import StreamStats, run

DEMO_EVERY = 5  # teacher cadence on the demo clip: objects move slowly, the crop's padding keeps up


def data_path(name: str) -> str:
    return str(resources.files("edge_cam") / "data" / name)


def load_truth(path: str | None = None) -> dict[int, dict]:
    with open(path or data_path("demo_clip.json"), encoding="utf-8") as f:
        return {g["frame"]: g for g in json.load(f)["frames"]}


def accuracy(answers: dict[int, int], truth: dict[int, dict]) -> float:
    return float(np.mean([answers.get(i, -1) == truth[i]["class_id"] for i in truth]))


COMPUTE = ("preprocess", "teacher", "localize", "crop", "student")  # what the board computes per frame


def score_cascade(cascade: Cascade, clip: str, truth: dict[int, dict], sinks: Sequence[Sink] = (),
                  status: TextIO | None = None) -> dict:
    """The cascade on a clip: the student's accuracy on the CAM crops, CorLoc of the boxes, compute
    ms per frame (mean: reused frames are cheap, teacher frames are not) and the stream stats."""
    answers, ious = {}, []
    per_frame = []

    class Score(PlainSink):
        def write(self, result: FrameResult) -> None:
            per_frame.append(sum(result.timing_ms[k] for k in COMPUTE))
            g = truth.get(result.frame)
            if g is None or not result.rois or result.rois[0].student is None:
                return
            answers[result.frame] = result.rois[0].student.class_id
            ious.append(result.rois[0].box.iou(Box(*g["box"])))

        def close(self) -> None:
            pass

    stats = run(cascade, [open_source(clip)], [Score(), *sinks], status=status)
    return {"accuracy": accuracy(answers, truth), "corloc_iou50": float(np.mean(np.asarray(ious) >= 0.5)) if ious else 0.0,
            "ms_per_frame": float(np.mean(per_frame)), "stats": stats}


def score_alone(model: Model, clip: str, truth: dict[int, dict]) -> tuple[float, float]:
    """One model on every whole frame: accuracy and mean ms per frame."""
    answers, times = {}, []
    for i, image in enumerate(read_video(clip)):
        t0 = time.perf_counter()
        answers[i] = model.predict(image).class_id
        times.append((time.perf_counter() - t0) * 1e3)
    return accuracy(answers, truth), float(np.mean(times))


def run_demo(out_dir: str = "edge-cam-demo", every: int | None = None, mask: str = "none",
             quiet: bool = False, repeats: int = 3) -> dict:
    """The demo; compute times are medians over `repeats` passes of each (one pass is noisy on a
    shared machine), and the cascade's saving is the median of the passes' ratios."""
    every = every or DEMO_EVERY
    if repeats < 1:
        raise EdgeCamError(f"repeats must be 1 or more, not {repeats}.")
    teacher, student = Model(data_path("teacher.onnx")), Model(data_path("student.onnx"), threads=1)
    clip, truth = data_path("demo_clip.mp4"), load_truth()
    os.makedirs(out_dir, exist_ok=True)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))

    say(f"[1/3] cascade: teacher every {every} frames, student on the CAM crop of every frame")
    video, events = os.path.join(out_dir, "annotated.mp4"), os.path.join(out_dir, "events.jsonl")
    sinks = [open_sink(video), open_sink(events)]
    cascade = Cascade(teacher, student, every=every, crop_spec=CropSpec(mask=mask))
    c = score_cascade(cascade, clip, truth, sinks, status=None if quiet else sys.stderr)
    stats: StreamStats = c["stats"]
    say("[2/3] teacher alone on every frame")
    teacher_acc, teacher_ms = score_alone(teacher, clip, truth)
    say("[3/3] student alone on the whole frame")
    student_acc, student_ms = score_alone(student, clip, truth)
    rounds = [(teacher_ms, student_ms, c["ms_per_frame"])]
    for r in range(1, repeats):
        say(f"timing pass {r + 1}/{repeats}: cascade, teacher alone, student alone")
        cascade.reset()
        rounds.append((score_alone(teacher, clip, truth)[1], score_alone(student, clip, truth)[1],
                       score_cascade(cascade, clip, truth)["ms_per_frame"]))
    ms = np.median(np.asarray(rounds), axis=0)
    saving = [t / m for t, _, m in rounds]
    summary = {
        "frames": stats.frames, "every": every, "teacher_runs": stats.teacher_runs,
        "accuracy": {"teacher_every_frame": teacher_acc, "student_whole_frame": student_acc,
                     "cascade_student_on_cam_crop": c["accuracy"]},
        "corloc_iou50": c["corloc_iou50"],
        "ms_per_frame": {"teacher_every_frame": float(ms[0]), "student_whole_frame": float(ms[1]),
                         "cascade": float(ms[2])},
        "timing_passes": len(rounds), "cascade_saving": {"median": float(np.median(saving)), "min": min(saving),
                                                         "max": max(saving)},
        "cascade_fps": stats.fps, "latency_ms": stats.latency(),
        "outputs": {"video": video, "events": events},
    }
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    if not quiet:
        print(format_summary(summary))
    return summary


def format_summary(s: dict) -> str:
    a, ms = s["accuracy"], s["ms_per_frame"]
    lines = [f"edge-cam demo: {s['frames']} frames, teacher ran on {s['teacher_runs']} (every {s['every']})",
             "", "stage        median ms    p95 ms"]
    for stage, v in s["latency_ms"].items():
        lines.append(f"  {stage:10s} {v['median']:9.2f} {v['p95']:9.2f}")
    sv, n = s["cascade_saving"], s["timing_passes"]
    lines += [f"cascade throughput: {s['cascade_fps']:.1f} FPS (with decoding and writing the video)", "",
              f"accuracy against the clip's ground truth      top-1   compute ms/frame (median of {n})",
              f"  (a) teacher on every frame                  {a['teacher_every_frame']:6.1%}  {ms['teacher_every_frame']:8.2f}",
              f"  (b) student on the whole frame              {a['student_whole_frame']:6.1%}  {ms['student_whole_frame']:8.2f}",
              f"  (c) cascade: student on the CAM crop        {a['cascade_student_on_cam_crop']:6.1%}  {ms['cascade']:8.2f}",
              f"the cascade computes {sv['median']:.1f}x less than the teacher on every frame (median of {n} passes, "
              f"{sv['min']:.1f}-{sv['max']:.1f}x)",
              f"CAM box CorLoc@0.5 on the clip: {s['corloc_iou50']:.1%}",
              f"wrote {s['outputs']['video']} and {s['outputs']['events']}"]
    return "\n".join(lines)
