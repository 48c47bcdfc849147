"""`edge-cam localize`: one JSON line per image (docs/interfaces.md), error lines for unreadable ones."""
from __future__ import annotations

import argparse
import sys

from ..errors import EdgeCamError
from ..sinks import JsonlSink, check_writable
from ..source import IMAGE_EXTS, list_images
from ..stream import printable
from ..tools.photos import localize_photos
from . import options as opt


def add_parser(sub) -> None:
    p = sub.add_parser("localize", help="one JSON line per image: top-K classes and CAM boxes")
    p.add_argument("model", help="a CAM teacher (.onnx or .tflite)")
    p.add_argument("images", nargs="+", help="images, folders or globs")
    p.add_argument("--class-id", type=int, help="box this class's CAM instead of the top-1's")
    p.add_argument("--jsonl", default="-", help="output file, or - for stdout")
    p.add_argument("--overlays", help="folder for heat-map overlay pictures")
    opt.add_refine_option(p)
    opt.add_teacher_options(p)
    p.set_defaults(main=main)


def main(args: argparse.Namespace) -> int:
    for path in args.images:  # an empty folder or a glob matching nothing is a mistake, not 0 lines
        if not list_images([path]):
            raise EdgeCamError(f"{path} holds no images ({', '.join(sorted(IMAGE_EXTS))}).")
    if args.overlays:  # found now, not after the model loaded and the first image ran
        check_writable(args.overlays, "overlays", folder=True)
    model = opt.open_teacher(args, args.model, spinning=True)
    if args.class_id is not None and args.classes:
        raise EdgeCamError("give either --class-id or --classes, not both.")
    lines = localize_photos(model, opt.box_rule(args, model), args.images, args.class_id, args.overlays,
                            opt.watch_list(args, model), args.min_score or 0.0, args.refine)
    out, total, failed, unreadable = JsonlSink(args.jsonl), 0, 0, []
    try:
        for line in lines:
            out.write_obj(line)
            total += 1
            if "error" in line:
                print(f"skipped {ascii(line['image'])}: {printable(line['error'])}", file=sys.stderr)
                if line.get("unreadable"):
                    unreadable.append(line["image"])
                else:
                    failed += 1
    finally:
        out.close()
    if unreadable:
        print(opt.unreadable_line(unreadable, total), file=sys.stderr)
    if failed:
        print(f"{failed} of {total} images gave no boxes (see their error lines).", file=sys.stderr)
    if unreadable and len(unreadable) == total:
        raise EdgeCamError(f"none of the {total} images could be read.")
    return 0
