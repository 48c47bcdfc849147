"""`edge-cam distill`: a small student specialised to the user's footage, from the teacher's own
answers on it (workstation: needs torch, like export)."""
from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable

from ..capture import list_images
from ..errors import EdgeCamError
from ..gate import DISTILL_GATE
from . import options as opt
from .terminal import progress_bar


def add_parser(sub) -> None:
    p = sub.add_parser("distill", help="train a small student on the teacher's answers on your own footage")
    p.add_argument("--teacher", required=True, help="a CAM teacher (.onnx) from `edge-cam export`")
    opt.add_sources(p, "footage: a camera needs --max-frames; repeat for several")
    p.add_argument("--add", action="append", default=[], metavar="DIR",
                   help="frames `run --collect DIR` kept where a student disagreed with its teacher: trained on "
                   "beside the footage (repeat for several folders)")
    p.add_argument("-o", "--output", required=True, help="the student (.onnx, or .tflite)")
    what = p.add_argument_group("what the student tells apart")
    what.add_argument("--classes", nargs="+", metavar="CLASS",
                      help="watch list: labels, ids or groups (e.g. car); one student label each, and \"other\" "
                           "(default: the coarse groups - person, dog, cat, bird, animal, vehicle, bottle, ... - that "
                           "the teacher is sure of on the footage)")
    what.add_argument("--fine", action="store_true",
                      help="without --classes: the teacher's own classes instead of the coarse groups (they flicker "
                           "from frame to frame on a real camera: see docs/question.md)")
    what.add_argument("--groups", metavar="JSON", help='your own groups for --classes: {"pets": ["tabby", 207]}')
    what.add_argument("--name", help="one student label for the union of --classes")
    what.add_argument("--min-score", type=float, default=None,
                      help="with --classes: a watched class or group below this probability makes no ROI, as in "
                           "run (default 0); without: a group (--fine: class) becomes a label when it is the teacher's "
                           "answer with this probability on at least 2%% of such frames (default 0.5)")
    # The cascade the student will run in, as run sets it up: the crops it learns are the ones it will see.
    opt.add_cascade_options(p, every=10)
    opt.add_size_options(p)
    opt.add_box_rule_options(p)
    net = p.add_argument_group("the student")
    net.add_argument("--size", type=int, default=64, help="input side in pixels")
    net.add_argument("--width", type=int, default=16, help="channels of its first layer (then 2x, 4x, 8x)")
    net.add_argument("--epochs", type=int, default=15, help="passes over the training crops")
    net.add_argument("--seed", type=int, default=0, help="seeds the crops' jitter, the split and training")
    net.add_argument("--holdout", type=float, default=0.2, help="last fraction of each source kept out of "
                     "training and reported on")
    net.add_argument("--max-frames", type=int, help="frames per source (needed for a live camera)")
    net.add_argument("--sample", type=int, default=1, metavar="N",
                     help="the teacher and the crops on every Nth frame of each video only (3 on 30 fps "
                          "footage: 10 a second, about a third of the time); folders of photos are taken whole")
    net.add_argument("--threads", type=int, help="torch threads for training (default: torch's)")
    net.add_argument("--format", choices=["onnx", "tflite"], help="default: from -o's suffix")
    net.add_argument("--quantize", choices=["int8"], help="int8 (ONNX Runtime's static QDQ, calibrated on the "
                     "training crops), for CPUs")
    p.set_defaults(main=main)


def main(args: argparse.Namespace) -> int:
    distill = opt.import_exporter("edge_cam_export.distill.student", "distill").distill
    if args.size < 8 or args.width < 1 or args.epochs < 1:
        raise EdgeCamError("--width and --epochs must be at least 1, --size at least 8.")
    if args.name and not args.classes:
        raise EdgeCamError("--name labels the union of --classes; give --classes too.")
    if args.fine and args.classes:
        raise EdgeCamError("--fine chooses the teacher's own classes when no --classes are given; give one of them.")
    fmt = args.format or ("tflite" if args.output.lower().endswith(".tflite") else "onnx")
    bars: dict[str, Callable[[int, int], None]] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if total > 0:
            bars.setdefault(stage, progress_bar(stage))(done, total)

    for folder in args.add:
        if not os.path.isdir(folder):
            raise EdgeCamError(f"--add takes a folder of collected frames (run --collect DIR); {folder} is not one.")
        if not list_images([folder]):
            raise EdgeCamError(f"--add {folder}: the folder holds no images; `run --collect` puts the frames "
                               "where the student disagreed there.")
    cascade = opt.cascade_options(args, every=10, gate=DISTILL_GATE)  # checked as for run
    cut = cascade["crop_spec"]
    teacher_options = opt.teacher_overrides(args)
    r = distill(args.teacher, [*args.source, *args.add], args.output, classes=args.classes, name=args.name,
                groups_file=args.groups, min_score=args.min_score, teacher_options=teacher_options,
                rule=opt.rule_options(args), max_rois=args.max_rois or 4, every=cascade["every"], change=cascade["change"],
                motion=cascade["gate"],
                pad=cut.pad, square=cut.square, mask=cut.mask, size=args.size, width=args.width, epochs=args.epochs,
                seed=args.seed, holdout=args.holdout, max_frames=args.max_frames, sample=args.sample, format=fmt,
                quantize=args.quantize, threads=args.threads, fine=args.fine, progress=progress)
    ratio = f", {r.teacher_macs / r.macs:.0f}x fewer than the teacher" if r.teacher_macs else ""
    print(f"labels {', '.join(r.labels)}; {r.macs / 1e6:.1f} M multiply-adds{ratio}; trained on "
          f"{r.train_frames} frames ({json.dumps(r.train_crops)} crops) in {r.seconds:.0f} s")
    if r.holdout_frames:
        h = r.holdout
        print(f"held-out last {args.holdout:.0%} ({r.holdout_frames} frames): agrees with the teacher on "
              + ", ".join(f"{k} {v:.1%}" for k, v in h.items() if isinstance(v, float))
              + " of the crops")
    if r.int8:
        held = r.int8["held_out"]
        print(f"int8: agrees with the fp32 student on {held['top1_agreement']:.1%} of {held['images']} held-out crops")
    print(f"wrote {r.path} ({os.path.getsize(r.path) / 1e6:.2f} MB)")
    return 0
