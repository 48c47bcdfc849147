"""Which question can a student learn? The teacher's own steadiness on real fixed-camera footage,
asked its fine ImageNet classes and asked the coarse groups (edge_cam/data/imagenet_coarse.json).

    python benchmarks/question.py [--teacher mnv2.onnx] [--step 10]

A student is taught the teacher's answers; where the teacher itself changes its answer between
frames of an unchanged scene, there is nothing steady to learn. For each shared video the teacher
(export's defaults) runs on every `step`-th frame (10: a third of a second at 30 fps, the cascade's
default cadence); each question's answer is the most probable of its labels (Referee.answer: a
group's probability summed over its classes, "other" everything else), confident at ≥ 0.5.
Needs ../shared/data. Writes results/question.md.
"""
from __future__ import annotations

import sys
import tempfile

import numpy as np
from common import DATA, header, parser, teacher, write

from edge_cam.agreement import CONFIDENT, Referee
from edge_cam.model import Model
from edge_cam.source import open_source
from edge_cam.watch import coarse_groups

VIDEOS = {"bottles on a table": "bottle-detection.mp4", "parking lane": "car-detection.mp4",
          "people in an office": "one-by-one-person-detection.mp4"}


def logits_of(model: Model, video: str, step: int, limit: int | None) -> np.ndarray:
    out, batch = [], []
    with open_source(video) as source:
        for f in source:
            if f.image is None or (f.index or 0) % step:
                continue
            batch.append(f.image)
            if len(batch) == 8:
                out += [p.logits for p in model.predict_batch(batch)]
                batch = []
            if limit and len(out) + len(batch) >= limit:
                break
    if batch:
        out += [p.logits for p in model.predict_batch(batch)]
    return np.stack(out)


def steadiness(referee: Referee, logits: np.ndarray) -> dict:
    """The question's answers on consecutive samples: how often confident, how often the same as
    the sample before (all pairs, and pairs where both are confident), how many different answers
    when confident, and the constant answer's share of the confident samples (a student's floor)."""
    answers = [referee.answer(z) for z in logits]
    label = np.array([a for a, _ in answers])
    sure = np.array([p >= CONFIDENT for _, p in answers])
    same = label[1:] == label[:-1]
    both = sure[1:] & sure[:-1]
    kinds, counts = np.unique(label[sure], return_counts=True)
    top = sorted(zip(counts.tolist(), kinds.tolist()), reverse=True)
    return {"confident": float(sure.mean()), "same": float(same.mean()),
            "same_confident": float(same[both].mean()) if both.any() else None, "answers": len(kinds),
            "floor": top[0][0] / sure.sum() if top else None, "top": [f"{k} {c}" for c, k in top[:4]]}


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--step", type=int, default=10, help="every this many frames (default 10)")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="question-")
    model = Model(teacher(args, work))
    labels = model.info.labels
    groups = coarse_groups(model.num_classes)
    if groups is None:
        raise SystemExit("the teacher is not a 1000-class ImageNet model: it has no coarse groups")
    questions = {"fine (the teacher's classes)": Referee({lab: [i] for i, lab in enumerate(labels)}, labels, len(labels)),
                 "coarse (the shipped groups)": Referee(groups, labels, len(labels))}
    rows = []
    for name, video in VIDEOS.items():
        print(f"teacher on {video}", file=sys.stderr, flush=True)
        z = logits_of(model, str(DATA / "videos" / video), args.step, 12 if args.quick else None)
        for q, referee in questions.items():
            s = steadiness(referee, z)
            rows.append(f"| {name} ({len(z)} samples) | {q} | {pct(s['confident'])} | {pct(s['same'])} | "
                        f"{pct(s['same_confident'])} | {s['answers']} | {pct(s['floor'])} | {', '.join(s['top'])} |")
    text = (header("The camera's question: the teacher's steadiness, fine classes against coarse groups")
            + f"\nThe teacher ({model.info.input.resize} {model.input_size[0]}×{model.input_size[1]}) on every "
            f"{args.step}th frame of each shared video. Confident: the answer's probability ≥ {CONFIDENT}. Same: the "
            "answer equals the previous sample's (all pairs; pairs where both are confident). Floor: the commonest "
            "confident answer's share, what a student that always says it scores.\n\n"
            "| video | question | confident | same as before | same (both confident) | answers (confident) | floor | "
            "commonest confident answers |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    write("question.md", text)


if __name__ == "__main__":
    main()
