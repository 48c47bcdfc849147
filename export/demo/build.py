"""Build the bundled default for `edge-cam demo`: a CAM teacher, a small student, and a clip.

Regenerate with

    python -m edge_cam_export.demo --out edge_cam/data

It takes 10–20 minutes on 2 CPU cores (no GPU, no downloads) and holds ~0.8 GB of scenes in
memory. Everything is seeded: the same seed, torch build and thread count give the same weights
and the same clip. `--quick` makes a tiny, useless set in ~10 s, for smoke tests;
`--student-only` keeps OUT/teacher.onnx and retrains the student alone (~6 minutes).

The data are procedural scenes: one small glyph (10 classes, 10–25% of the frame's shorter side)
at a random place, scale, rotation and colour on a cluttered background. The teacher sees the
whole 320x240 frame stretched to 128x128 and has a GAP → Linear head, so its CAM is exact; the
student is 45x cheaper and only ever sees tight crops around the object, which is what makes the
cascade (teacher CAM box → crop → student) worth running. Half of the student's training crops are
cut around the exported teacher's own CAM boxes, the crops it will get at run time.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

import edge_cam
from edge_cam.source import read_video

from ..common.macs import count_macs
from ..common.progress import say
from ..torch_export import export_module
from .clip import FPS, render_clip
from .nets import MEAN, STD, Student, Teacher
from .scenes import CLASS_NAMES, STUDENT_SIZE, TEACHER_SIZE, make_scenes, render_test_scenes
from .score import score
from .train import cam_crops, train_student, train_teacher

CROPS_PER_SCENE = 4  # student crops cut from each training scene


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_cam_export.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(edge_cam.__file__), "data"),
                        help="output folder (default: the data folder of the installed edge_cam)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=6,
                        help="passes over the training scenes (the teacher's window stage makes 3 per epoch)")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke-test run (< 1 min); useless models")
    parser.add_argument("--student-only", action="store_true",
                        help="keep OUT/teacher.onnx and retrain only the student (on its CAM crops)")
    args = parser.parse_args(argv)

    if args.quick:
        n_train, n_val, n_test, n_student, epochs, cycles, segment_frames = 320, 100, 100, 100, 1, 1, 8
    else:
        n_train, n_val, n_test, n_student, epochs, cycles, segment_frames = 12000, 500, 500, 12000, args.epochs, 2, 2 * FPS
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    # The student's streams are its own, so --student-only trains the same student as a full build.
    data_rng, val_rng, test_rng, clip_rng, train_rng, crop_rng, student_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(args.seed).spawn(7))
    os.makedirs(args.out, exist_ok=True)
    teacher_path, student_path = os.path.join(args.out, "teacher.onnx"), os.path.join(args.out, "student.onnx")
    if args.student_only and not os.path.isfile(teacher_path):
        raise SystemExit(f"--student-only needs the teacher {teacher_path}; build everything first.")
    t_start = time.perf_counter()
    timings = {}
    weights = f"trained by export/demo/build.py, seed {args.seed}" + (" (--quick)" if args.quick else "")

    say("[1/5] rendering scenes")
    train = make_scenes(data_rng, n_train, CROPS_PER_SCENE, "train")
    val = make_scenes(val_rng, n_val, 1, "val")
    timings["scenes"] = time.perf_counter() - t_start

    teacher = Teacher()
    if args.student_only:
        say(f"[2/5] keeping the teacher {teacher_path}")
    else:
        say(f"[2/5] training the teacher ({count_macs(Teacher(), TEACHER_SIZE) / 1e6:.1f} M multiply-adds)")
        t0 = time.perf_counter()
        teacher = train_teacher(train, val, epochs, train_rng)
        export_module(teacher, teacher_path, input_size=TEACHER_SIZE, labels=CLASS_NAMES, top_k=3, cam=True,
                      mean=MEAN, std=STD, source={"model": "edge_cam_export.demo.nets:Teacher", "weights": weights})
        timings["teacher"] = time.perf_counter() - t0
    say(f"[3/5] training the student ({count_macs(Student(), STUDENT_SIZE) / 1e6:.1f} M multiply-adds) on "
        "jittered ground-truth crops and on crops around the teacher's own CAM boxes")
    t0 = time.perf_counter()
    at_cam, at_cam_labels = cam_crops(crop_rng, teacher_path, n_student, 2)
    crops = np.concatenate([train.crops[::2], at_cam])
    labels = np.concatenate([train.crop_labels[::2], at_cam_labels])
    del train, at_cam  # ~0.8 GB
    torch.manual_seed(args.seed)
    student = train_student(crops, labels, val.crops, val.crop_labels, epochs, student_rng)
    timings["student"] = time.perf_counter() - t0
    del val, crops

    say("[4/5] exporting the student")
    t0 = time.perf_counter()
    export_module(student, student_path, input_size=STUDENT_SIZE, labels=CLASS_NAMES, top_k=3, cam=False,
                  mean=MEAN, std=STD, source={"model": "edge_cam_export.demo.nets:Student", "weights": weights})
    timings["export"] = time.perf_counter() - t0

    say("[5/5] rendering the demo clip")
    t0 = time.perf_counter()
    clip_path = os.path.join(args.out, "demo_clip.mp4")
    truth = render_clip(clip_path, clip_rng, cycles, segment_frames)
    with open(os.path.join(args.out, "demo_clip.json"), "w", encoding="utf-8") as f:
        json.dump(truth, f)
    decoded = read_video(clip_path)
    if len(decoded) != len(truth["frames"]):
        raise RuntimeError(f"{clip_path} decodes to {len(decoded)} frames, but {len(truth['frames'])} were written")
    say(f"  {len(decoded)} frames ({len(decoded) / FPS:.0f} s), {cycles * len(CLASS_NAMES)} segments")
    timings["clip"] = time.perf_counter() - t0

    say(f"scoring the exported models on {n_test} fresh scenes and on the decoded clip")
    t0 = time.perf_counter()
    test = score(teacher_path, student_path, *render_test_scenes(test_rng, n_test))
    clip = score(teacher_path, student_path, decoded, np.array([g["class_id"] for g in truth["frames"]]),
                 np.array([g["box"] for g in truth["frames"]]))
    timings["scoring"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start

    t_macs, s_macs = count_macs(teacher, TEACHER_SIZE), count_macs(student, STUDENT_SIZE)
    sizes = {name: os.path.getsize(os.path.join(args.out, name)) / 1e6
             for name in ("teacher.onnx", "student.onnx", "demo_clip.mp4", "demo_clip.json")}
    say("")
    say(f"summary (ONNX Runtime, with edge_cam's own resize, CAM box and crop)  {n_test} scenes   clip")
    for label, key in (("teacher top-1, whole frame", "teacher"),
                       ("student top-1, whole frame", "student_whole"),
                       ("student top-1, crop of the GT box", "student_gt_crop"),
                       ("student top-1, crop of the teacher's CAM box", "student_cam_crop"),
                       ("CAM box CorLoc (IoU >= 0.5)", "corloc")):
        say(f"  {label:46s} {getattr(test, key):6.1%}   {getattr(clip, key):6.1%}")
    say(f"  {'CAM box mean IoU':46s} {test.cam_iou:6.2f}   {clip.cam_iou:6.2f}")
    say(f"teacher: {t_macs / 1e6:.1f} M multiply-adds, {sum(p.numel() for p in teacher.parameters()) / 1e3:.0f} k "
        f"parameters; student: {s_macs / 1e6:.1f} M multiply-adds ({t_macs / s_macs:.0f}x fewer), "
        f"{sum(p.numel() for p in student.parameters()) / 1e3:.0f} k parameters")
    say("files: " + ", ".join(f"{name} {mb:.2f} MB" for name, mb in sizes.items()) + f" in {args.out}")
    say("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
