"""`edge-cam bench`: per-stage latency, FPS, memory and energy of the cascade, set up as `run` sets it up."""
from __future__ import annotations

import argparse

from ..measure.bench import BenchConfig, markdown, run_bench, write_report
from ..sinks import check_writable
from ..tools.demo import data_path
from . import options as opt
from .terminal import progress_bar


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="per-stage latency, FPS, memory and energy of the cascade")
    p.add_argument("--teacher", help="a CAM teacher (default: the bundled demo teacher, and its student)")
    p.add_argument("--source", help="frames to run on, looped (default: the bundled clip)")
    p.add_argument("--frames", type=int, default=BenchConfig.frames, help="measured frames, after --warmup")
    p.add_argument("--warmup", type=int, default=BenchConfig.warmup, help="frames run first and not measured")
    p.add_argument("--out", default="edge-cam-bench", help="folder for bench.json, bench.md, latency.png")
    opt.add_student_options(p)
    opt.add_cascade_options(p)
    opt.add_teacher_options(p)
    p.set_defaults(main=main)


def bench_config(args: argparse.Namespace) -> BenchConfig:
    """The measurement the command line asks for; the models and cascade get the same option
    groups, read by the same functions, as in `run`."""
    opt.check(args, "--frames", 1)
    opt.check(args, "--warmup", 0)
    bundled = args.teacher is None  # the bundled teacher comes with its student
    return BenchConfig(
        teacher=args.teacher or data_path("teacher.onnx"),
        student=args.student or (data_path("student.onnx") if bundled else None),
        source=args.source or data_path("demo_clip.mp4"), frames=args.frames, warmup=args.warmup,
        teacher_options=opt.model_options(args), student_options=opt.student_options(args),
        cascade_options={**opt.cascade_options(args), "max_rois": args.max_rois or 4}, rule_options=opt.rule_options(args),
        watch=opt.watch_options(args))


def main(args: argparse.Namespace) -> int:
    config = bench_config(args)
    check_writable(args.out, "the benchmark report", folder=True)
    result = run_bench(config, progress=progress_bar("benchmarking"))
    print(markdown(result))
    for path in write_report(result, args.out):
        print(f"wrote {path}")
    return 0
