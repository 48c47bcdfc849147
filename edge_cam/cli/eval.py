"""`edge-cam eval`: localisation accuracy of a CAM model on a labelled set."""
from __future__ import annotations

import argparse
import json

from ..sinks import check_writable
from ..tools.evaluate import evaluate
from ..tools.plot import line_chart
from .options import (
    add_box_rule_options,
    add_labelled_options,
    add_runtime_options,
    add_size_options,
    add_watch_options,
    box_rule,
    labelled,
    open_teacher,
    watch_list,
)
from .terminal import progress_bar


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="localisation accuracy on a labelled set: CorLoc, MaxBoxAccV2")
    p.add_argument("model", help="a CAM teacher (.onnx or .tflite)")
    p.add_argument("--plot", help="PNG of BoxAcc against the threshold")
    p.add_argument("--json", help="write the figures as JSON")
    add_labelled_options(p)
    add_watch_options(p)
    add_size_options(p)
    add_box_rule_options(p)
    add_runtime_options(p)
    p.set_defaults(main=main)


def main(args: argparse.Namespace) -> int:
    for flag, path in (("--plot", args.plot), ("--json", args.json)):
        if path:
            check_writable(path, flag[2:])
    model = open_teacher(args, args.model, spinning=True)
    rule = box_rule(args, model)
    watch = watch_list(args, model)
    e = evaluate(model, labelled(args), args.class_id, rule, progress=progress_bar("evaluating"), watch=watch)
    mode = f"GT-known (class {args.class_id})" if args.class_id is not None else \
        f"best watched of {', '.join(watch.names)}" if watch else "top-1 class (GT-unknown)"
    print(f"{e.images} images, CAM of the {mode}, resize {model.info.input.resize}")
    print(f"CorLoc@0.5 with threshold {rule.threshold:g}, {rule.mode} box: {e.corloc:.3f}")
    for d, v in e.max_box_acc.items():
        print(f"MaxBoxAcc@{d:.1f}: {v:.3f} at threshold {e.thresholds[int(e.box_acc[d].argmax())]:.2f}")
    print(f"MaxBoxAccV2: {e.max_box_acc_v2:.3f}")
    if e.missing_class:
        what = f"class {args.class_id}" if args.class_id is not None else "a watched class"
        print(f"{e.missing_class} images had no map of {what} (counted as misses)")
    if args.plot:
        line_chart(args.plot, {f"IoU {d:.1f}": (e.thresholds, a) for d, a in e.box_acc.items()},
                   "BoxAcc against the CAM threshold (best of all boxes)", "threshold", "BoxAcc")
        print(f"wrote {args.plot}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(e.to_dict(), f, indent=2)
    return 0
