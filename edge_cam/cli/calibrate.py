"""`edge-cam calibrate`: choose a CAM model's box rule on a labelled set and store it in a copy."""
from __future__ import annotations

import argparse

from ..measure.evaluate import calibrate, write_calibrated
from ..sinks import check_writable
from . import options as opt
from .terminal import progress_bar


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="choose the box rule on a labelled set and store it in the model")
    p.add_argument("model", help="a CAM teacher (.onnx)")
    p.add_argument("-o", "--output", required=True, help="the calibrated model")
    opt.add_labelled_options(p)
    opt.add_teacher_options(p, rule=False)
    p.set_defaults(main=main)


def main(args: argparse.Namespace) -> int:
    check_writable(args.output, "the calibrated model")  # before the minutes of calibration, not after
    labelled = opt.labelled(args)  # before the model loads: a wrong folder is found at once
    model = opt.open_teacher(args, args.model, spinning=True)
    c = calibrate(model, labelled.annotations, args.class_id, progress=progress_bar("calibrating"),
                  watch=opt.watch_list(args, model), skipped=labelled.skipped)
    r = c.rule
    print(f"best rule on the tuning half: threshold {r.threshold:g}, {r.mode} box, min area {r.min_area:g}, "
          f"top-{r.fuse_top} maps fused")
    print(f"CorLoc@0.5 tuning half: {c.tuned['baseline']:.3f} -> {c.tuned['calibrated']:.3f}; "
          f"held-out half: {c.held_out['baseline']:.3f} -> {c.held_out['calibrated']:.3f}")
    if c.held_out_rule is not None:
        h = c.held_out_rule
        print(f"the held-out half alone would have chosen threshold {h.threshold:g}, {h.mode} box, "
              f"top-{h.fuse_top} maps fused ({abs(h.threshold - r.threshold):.2f} apart)")
    opt.report_skipped(c.skipped, c.images + len(c.skipped))
    write_calibrated(model, c, args.output)
    print(f"wrote {args.output}; localize and run now use this rule by default")
    return 0
