"""The camera's question, as a new user meets it: on each shared video, `edge-cam distill` with its
defaults on the first 60%, then `edge-cam eval --video` on the last 40% with the student's own
settings plus `--every 30` (and `--no-motion`, and `--every 10`, beside it).

    python benchmarks/camera_question.py [--teacher mnv2.onnx] [--quick]

The commands run as a user types them (edge_cam.cli.main), one after another, so the timings share
nothing. Needs torch (distill) and ../shared/data. Writes results/camera_question.md.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

import cv2
from common import DATA, header, parser, teacher, write

from edge_cam.cli import main as cli

VIDEOS = [("bottles", "bottle-detection.mp4"), ("parking lane", "car-detection.mp4"),
          ("office", "one-by-one-person-detection.mp4")]
GOAL_AGREEMENT, GOAL_WALL = 0.95, 10.0  # the bar, at every 30
SCHEDULES = [("every 30 (the student's gate)", ["--every", "30"]), ("every 30, --no-motion", ["--every", "30", "--no-motion"]),
             ("every 10 (the student's gate)", ["--every", "10"])]


def footage_minutes(video: str, share: float) -> float:
    cap = cv2.VideoCapture(video)
    try:
        return cap.get(cv2.CAP_PROP_FRAME_COUNT) * share / (cap.get(cv2.CAP_PROP_FPS) or 30.0) / 60
    finally:
        cap.release()


def pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def run(argv: list[str]) -> float:
    t0 = time.perf_counter()
    if cli(argv) != 0:
        raise SystemExit(f"edge-cam {' '.join(argv)} failed")
    return time.perf_counter() - t0


def measure(name: str, video: str, t: str, work: str, quick: bool) -> list[str]:
    student, out = os.path.join(work, f"{name}.onnx"), os.path.join(work, f"{name}.json")
    seconds = run(["distill", "--teacher", t, "--source", video, "--holdout", "0.4", "-o", student,
                   *(["--epochs", "1"] if quick else [])])
    minutes = footage_minutes(video, 0.6)
    rows: list[str] = []
    for label, flags in SCHEDULES[:1] if quick else SCHEDULES:
        run(["eval", "--video", video, "--teacher", t, "--student", student, "--start", "0.6", "--json", out, *flags])
        with open(out, encoding="utf-8") as f:
            report = json.load(f)
        s = report["scores"][0]
        agree = s["agreement_confident"]
        floor = report.get("majority_confident")
        met = "" if not label.startswith("every 30 (") else (
            "**met**" if agree is not None and agree >= GOAL_AGREEMENT and (s["wall_speedup"] or 0) >= GOAL_WALL
            and floor is not None and agree > floor else "not met")
        distilled = f"{seconds:.0f} s ({seconds / 60 / minutes:.1f} min a minute)" if not rows else ""
        rows.append(f"| {'' if rows else name} | {label} | {pct(agree)} | {pct(floor)} | {s['confident_frames']} | "
                    f"{s['wall_speedup']:.1f}× | {s['speedup']:.1f}× | {s['wall_speedup'] / s['speedup']:.0%} | "
                    f"{s['teacher_runs']} / {s['student_runs']} ({s.get('held', 0)} held) | {distilled} | {met} |")
    return rows


def main() -> None:
    args = parser(__doc__).parse_args()
    with tempfile.TemporaryDirectory() as work:
        t = teacher(args, work)
        rows = []
        for name, file in VIDEOS[1:2] if args.quick else VIDEOS:
            print(f"{name}: distill, then eval", flush=True)
            rows += measure(name, str(DATA / "videos" / file), t, work, args.quick)
    table = ("| video (last 40%) | schedule | agreement, confident frames | floor | confident frames | wall clock | "
             "MACs | wall / MACs | teacher / student runs | distill (first 60%) | the issue's bar |\n"
             "|---|---|---|---|---|---|---|---|---|---|---|\n"
             + "\n".join(rows))
    write("camera_question.md", header("The camera's question: distill and eval with defaults on each shared video")
          + "\n" + table + "\n\nThe floor is the share of the teacher's commonest confident answer: what a student "
          "that always gives it scores. Wall clock: the teacher on every frame against the cascade, decoding "
          "excluded from both, resizing and cropping included (one run each, on a machine that may be loaded: a "
          "ratio, not a speed). The issue's bar, at every 30: agreement ≥ 95%, above the floor, wall clock ≥ 10×.")


if __name__ == "__main__":
    main()
