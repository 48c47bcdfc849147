"""`edge-cam demo`: the whole cascade on the bundled models and clip, offline."""
from __future__ import annotations

import argparse

from ..crop import MASKS, CropSpec
from ..sinks import check_writable
from ..tools.demo import run_demo
from .options import check


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="the whole cascade on the bundled models and clip, offline")
    p.add_argument("--out", default="edge-cam-demo", help="output folder")
    p.add_argument("--every", type=int, default=None, help="teacher cadence (default: the demo's)")
    p.add_argument("--mask", choices=MASKS, default=CropSpec.mask, help="hide crop pixels below the CAM threshold")
    p.add_argument("--repeats", type=int, default=3, help="timing passes; compute times are their medians (default 3)")
    p.set_defaults(main=main)


def main(args: argparse.Namespace) -> int:
    check(args, "--every", 1)
    check(args, "--repeats", 1)
    check_writable(args.out, "the demo's outputs", folder=True)
    run_demo(args.out, every=args.every, mask=args.mask, repeats=args.repeats)
    return 0
