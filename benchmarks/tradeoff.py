"""Accuracy against cost of the cascade on the demo clip: (a) the teacher on every frame, (b) the
student on the whole frame, (c) the cascade for several teacher cadences; a trade-off plot.

    python benchmarks/tradeoff.py
"""
from __future__ import annotations

import os

from common import RESULTS, header, parser, write

from edge_cam.cascade import Cascade
from edge_cam.measure import energy
from edge_cam.model import Model
from edge_cam.tools.demo import data_path, load_truth, score_alone, score_cascade
from edge_cam.tools.plot import line_chart

SETTINGS = ((1, None), (5, None), (10, None), (15, None), (20, None), (50, None), (60, 12.0), (60, 20.0))


def main() -> None:
    args = parser(__doc__).parse_args()
    teacher, student = Model(data_path("teacher.onnx")), Model(data_path("student.onnx"), threads=1)
    clip, truth = data_path("demo_clip.mp4"), load_truth()
    a_acc, a_ms = score_alone(teacher, clip, truth)
    b_acc, b_ms = score_alone(student, clip, truth)
    rows = ["| configuration | top-1 accuracy | mean compute ms/frame | compute FPS | FPS vs (a) | teacher runs |",
            "|---|---|---|---|---|---|",
            f"| (a) teacher on every frame | {a_acc:.3f} | {a_ms:.2f} | {1e3 / a_ms:.0f} | 1.0 | {len(truth)} |",
            f"| (b) student on the whole frame | {b_acc:.3f} | {b_ms:.2f} | {1e3 / b_ms:.0f} | {a_ms / b_ms:.1f} | 0 |"]
    xs, ys = [], []
    for every, change in SETTINGS[:2] if args.quick else SETTINGS:
        c = score_cascade(Cascade(teacher, student, every=every, change=change), clip, truth)
        name = f"(c) cascade, teacher every {every}" + (f" or change ≥ {change:g} (frame or crop)" if change else "")
        rows.append(f"| {name} | {c['accuracy']:.3f} | {c['ms_per_frame']:.2f} | {1e3 / c['ms_per_frame']:.0f} | "
                    f"{a_ms / c['ms_per_frame']:.1f} | {c['stats'].teacher_runs} |")
        print(rows[-1], flush=True)
        xs.append(c["ms_per_frame"])
        ys.append(c["accuracy"])
    plot = os.path.join(RESULTS, "tradeoff.png")
    os.makedirs(RESULTS, exist_ok=True)
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    xs, ys = [xs[i] for i in order], [ys[i] for i in order]
    line_chart(plot, {"(c) cascade": (xs, ys), "(a) teacher": ([a_ms], [a_acc]),
                      "(b) student": ([b_ms], [b_acc])}, "accuracy against compute per frame (demo clip)",
               "mean compute ms per frame", "top-1", markers=True)
    meter = energy.detect()
    note = ("Energy per frame: unavailable. " + energy.describe_unavailable()) if meter is None else \
        "Energy per frame: see `edge-cam bench` on this board."
    write("tradeoff.md", header("Accuracy against cost of the cascade (demo clip)") + "\n" + "\n".join(rows)
          + f"\n\n![trade-off](tradeoff.png)\n\n{note}")


if __name__ == "__main__":
    main()
