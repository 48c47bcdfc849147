"""`edge-cam eval`: localisation accuracy of a CAM model on a labelled set, or (--video) how well
the cascade stands in for its teacher on real footage, and at what cost."""
from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable

from ..errors import EdgeCamError
from ..measure import cascade_eval
from ..measure.evaluate import MAX_OBJECTS, evaluate
from ..model import Model
from ..sinks import check_writable
from ..tools.plot import line_chart
from . import options as opt
from .terminal import progress_bar


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="localisation accuracy on a labelled set (CorLoc, MaxBoxAccV2), or with "
                       "--video the cascade against its teacher on every frame (agreement, compute, FPS)")
    p.add_argument("model", nargs="?", help="a CAM teacher (.onnx or .tflite), for a labelled set")
    p.add_argument("--plot", help="PNG: BoxAcc against the threshold, or (--video) agreement against speed-up")
    p.add_argument("--json", help="write the figures as JSON")
    opt.add_labelled_options(p)
    opt.add_refine_option(p)
    v = p.add_argument_group("cascade on a video", "the teacher on every frame is the reference")
    v.add_argument("--video", help="footage to judge the cascade on (a video file or anything run takes)")
    v.add_argument("--teacher", help="with --video: the CAM teacher")
    v.add_argument("--student", help="with --video: the student (a distilled one brings its crop settings)")
    v.add_argument("--every", type=int, nargs="+", default=None,
                   help="teacher cadences to try, each with the same --change and motion gate (default: a "
                   "distilled student's own, else 10)")
    v.add_argument("--change", type=float, help="scene-change threshold in grey levels, as for run (default: a "
                   "distilled student's own, else none)")
    opt.add_motion_options(v)
    v.add_argument("--start", type=float, default=0.0,
                   help="first frame judged: an index, or a fraction of the video under 1 (0.6: the last 40%%)")
    opt.add_teacher_options(p)
    p.set_defaults(main=main)


def main(args: argparse.Namespace) -> int:
    for flag, path in (("--plot", args.plot), ("--json", args.json)):
        if path:
            check_writable(path, flag[2:])
    if args.video:
        return _video(args)
    if args.model is None:
        raise EdgeCamError("eval needs a MODEL with --voc/--yolo, or --video with --teacher and --student.")
    labelled = opt.labelled(args)  # before the model loads: a wrong folder is found at once
    model = opt.open_teacher(args, args.model, spinning=True)
    rule = opt.box_rule(args, model)
    watch = opt.watch_list(args, model)
    e = evaluate(model, labelled.annotations, args.class_id, rule, progress=progress_bar("evaluating"), watch=watch,
                 skipped=labelled.skipped, refine=args.refine)
    known = args.class_id is not None or watch is not None
    mode = f"class {args.class_id}, {model.info.label(args.class_id)} (GT-known)" if args.class_id is not None else \
        f"best watched of {', '.join(watch.names)} (GT-known)" if watch else "top-1 class (GT-unknown)"
    print(f"{e.images} photos, CAM of the {mode}, resize {model.info.input.resize}")
    refined = f", refined by {args.refine}" if args.refine != "none" else ""
    print(f"{'GT-known ' if known else ''}CorLoc@0.5 with threshold {rule.threshold:g}, {rule.mode} box{refined}: "
          f"{e.corloc:.3f}")
    if e.top1_loc is not None and e.top1 is not None:
        print(f"top-1 localisation (top-1 class right and IoU >= 0.5): {e.top1_loc:.3f} "
              f"(top-1 class right on {e.top1:.3f})")
    for d, v in e.max_box_acc.items():
        print(f"MaxBoxAcc@{d:.1f}: {v:.3f} at threshold {e.best_threshold(d):.2f}")
    print(f"MaxBoxAccV2: {e.max_box_acc_v2:.3f}")
    if e.objects is not None:
        o = e.objects
        print(f"one box per object (objects mode, threshold {rule.threshold:g}, at most {rule.max_rois or MAX_OBJECTS} "
              f"a photo{refined}): recall@0.5 {o.recall:.3f}, precision@0.5 {o.precision:.3f} "
              f"({o.found} of {o.truths} ground-truth boxes found by {o.predicted} boxes)")
    if e.missing_class:
        what = f"class {args.class_id}" if args.class_id is not None else "a watched class"
        print(f"{e.missing_class} photos had no map of {what} (counted as misses)")
    opt.report_skipped(e.skipped, e.total)
    if args.plot:
        line_chart(args.plot, {f"IoU {d:.1f}": (e.thresholds, a) for d, a in e.box_acc.items()},
                   "BoxAcc against the CAM threshold (best of all boxes)", "threshold", "BoxAcc")
        print(f"wrote {args.plot}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(e.to_dict(), f, indent=2)
    return 0


def _video(args: argparse.Namespace) -> int:
    if args.model or args.voc or args.yolo:
        raise EdgeCamError("--video judges a cascade: give --teacher and --student, not a MODEL or a labelled set.")
    if not (args.teacher and args.student):
        raise EdgeCamError("--video needs --teacher T and --student S.")
    for every in args.every or ():
        if every < 1:
            raise EdgeCamError(f"--every must be 1 or more, not {every}.")
    opt.check(args, "--start", 0)
    opt.model_options(args)  # checked; the student's distill metadata fills in what is not given
    teacher_options = opt.teacher_overrides(args)
    student = Model(opt.model_file(args.student), threads=1)
    start = int(args.start) if args.start >= 1 else args.start
    bars: dict[str, Callable[[int, int], None]] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if total > 0:
            bars.setdefault(stage, progress_bar(stage))(done, total)

    w = opt.watch_options(args)
    spec = opt.student_spec(student)
    change, gate = opt.schedule(args, spec)  # each flag given, else the student's own
    settings = [(e, change, gate) for e in args.every or [spec.every if spec else 10]]
    report = cascade_eval.evaluate(args.video, opt.model_file(args.teacher), student,
                                   settings, start=start, classes=w["entries"],
                                   groups_file=w["groups_file"], min_score=w["min_score"],
                                   teacher_options=teacher_options or None, rule=opt.rule_options(args),
                                   max_rois=args.max_rois, progress=progress)
    print(cascade_eval.to_markdown(report))
    if args.plot:
        cascade_eval.plot({os.path.basename(args.video): report}, args.plot)
        print(f"wrote {args.plot}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report.to_dict(), f, indent=2)
    return 0
