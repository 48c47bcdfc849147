"""`edge-cam run`: the streaming cascade from sources to sinks until the sources end or a signal."""
from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack

from ..agreement import WINDOW, Agreement
from ..cascade import Cascade
from ..errors import EdgeCamError
from ..model import Model
from ..sinks import FOURCC, check_writable, open_sink
from ..sinks.collect import CollectSink
from ..sinks.preview import PreviewServer, parse_serve
from ..source import Source, open_source
from ..stream import StreamStats, run
from . import options as opt


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="the streaming cascade: teacher → CAM box → crop → student")
    p.add_argument("--teacher", required=True, help="a CAM teacher (.onnx or .tflite)")
    opt.add_sources(p, "repeat for several streams")
    p.add_argument("--loop", action="store_true", help="start files again at their end")
    p.add_argument("--max-frames", type=int, help="stop after this many frames (all streams together)")
    p.add_argument("--quiet", action="store_true", help="no status line")
    out = p.add_argument_group("outputs")
    out.add_argument("--video-out", help="annotated video (.avi MJPG or .mp4 mp4v); numbered per stream")
    out.add_argument("--fps", type=float, default=15.0, help="frame rate of --video-out")
    out.add_argument("--events", help="JSON lines file, or - for stdout")
    out.add_argument("--mqtt", help="publish events to mqtt://host:port[/prefix] (QoS 1, queued while "
                     "the broker is away); needs edge-cam[mqtt]")
    out.add_argument("--device", help="device name in the MQTT topic (default: the host name)")
    out.add_argument("--mqtt-spill", help="folder where events wait on disk when the broker is away too "
                     "long (re-sent later); without it the oldest queued events are dropped and counted")
    out.add_argument("--mqtt-retry-auth", action="store_true",
                     help="keep retrying a broker that refuses the credentials (default: stop with exit 2)")
    out.add_argument("--serve", metavar="[HOST:]PORT",
                     help="a live preview page (annotated stream, events, stage timings) and /metrics on "
                          "127.0.0.1:PORT, or on HOST when given; port 0 picks a free one; the URL is printed")
    out.add_argument("--serve-token", metavar="TOKEN",
                     help="require this token (?token= or Authorization: Bearer) on every preview request")
    opt.add_student_options(p)
    check = p.add_argument_group("the student checked where the teacher runs")
    check.add_argument("--agreement-window", type=int, default=WINDOW, metavar="N",
                       help=f"the rolling agreement covers the latest N confident teacher frames (default {WINDOW})")
    check.add_argument("--alarm", type=float, metavar="BELOW",
                       help="a warning (log line, and an event with an \"alarm\" field) when the rolling agreement "
                       "drops below BELOW (0-1), and again when it is back")
    check.add_argument("--collect", metavar="DIR", help="keep the frames where the student disagreed with a "
                       "confident teacher in DIR (JPEG, and collected.jsonl with both answers), for `distill --add DIR`")
    check.add_argument("--collect-budget", type=float, default=500.0, metavar="MB",
                       help="at most this many MB of frames in DIR, earlier runs' included (default 500)")
    opt.add_cascade_options(p)
    opt.add_teacher_options(p)
    p.set_defaults(main=main)


# open_sink tells outputs apart by their form; each flag takes only its own kind.
OUTPUTS = (("--video-out", "a video file (" + ", ".join(sorted(FOURCC)) + ")"),
           ("--mqtt", "an mqtt://host:port[/prefix] URL"), ("--events", "- or a JSON lines file"))


def _kind(uri: str) -> str:
    return "--mqtt" if uri.startswith("mqtt://") else \
        "--video-out" if os.path.splitext(uri)[1].lower() in FOURCC else "--events"


def _outputs(args: argparse.Namespace) -> list[str]:
    """The outputs asked for, the event file last: an event's "sink" time then covers the sinks before it."""
    uris = []
    for flag, what in OUTPUTS:
        uri = getattr(args, flag[2:].replace("-", "_"))
        if uri is not None:
            if _kind(uri) != flag:
                raise EdgeCamError(f"{flag} takes {what}, not {uri}.")
            uris.append(uri)
    return uris


def main(args: argparse.Namespace) -> int:
    opt.check(args, "--max-frames", 0)
    opt.check(args, "--fps", 0, above=True)
    opt.check(args, "--agreement-window", 1)
    opt.check(args, "--alarm", 0, above=True, high=1)
    opt.check(args, "--collect-budget", 0, above=True, unit=" MB")
    for flag in ("--alarm", "--collect"):
        if getattr(args, flag[2:]) is not None and not args.student:
            raise EdgeCamError(f"{flag} watches the student's agreement with the teacher; give a --student.")
    if args.collect:
        check_writable(args.collect, "collected frames", folder=True)
    outputs = _outputs(args)
    if args.serve_token and args.serve is None:
        raise EdgeCamError("--serve-token needs --serve [HOST:]PORT.")
    serve = parse_serve(args.serve) if args.serve is not None else None
    student_kw = opt.student_options(args)
    opt.cascade_options(args)  # checked before the models load
    for uri in outputs:  # an output that cannot be written is found now, not after the models load
        if uri != "-" and not uri.startswith("mqtt://"):
            check_writable(uri, "events" if _kind(uri) == "--events" else "the video")
    if args.mqtt_spill:
        check_writable(args.mqtt_spill, "MQTT overflow", folder=True)
    # The student first: a distilled one says how the cascade must run (flags given still win).
    student = Model(opt.model_file(args.student), **student_kw) if args.student else None
    spec = opt.student_spec(student)
    teacher = opt.open_teacher(args, args.teacher, spec)
    watch = opt.watch_list(args, teacher, spec)
    cascade = Cascade(teacher, student, rule=opt.box_rule(args, teacher, spec), watch=watch,
                      min_score=opt.min_score(args, spec) if watch else 0.0,
                      max_rois=args.max_rois or (spec.max_rois if spec else 4), fill=spec.fill if spec else None,
                      **opt.cascade_options(args, spec))
    with ExitStack() as opened:
        sources = [opened.enter_context(open_source(spec, loop=args.loop)) for spec in args.source]
        sinks = []
        for uri in outputs:
            sinks.append(open_sink(uri, streams=len(sources), fps=args.fps, device=args.device,
                                   spill_dir=args.mqtt_spill, retry_auth=args.mqtt_retry_auth))
            opened.callback(sinks[-1].close)
        collect = CollectSink(args.collect, args.collect_budget) if args.collect else None
        if collect is not None:
            sinks.insert(0, collect)
        if serve is not None:  # first: the events' "sink" time then covers it too
            preview = PreviewServer(*serve, token=args.serve_token)  # it says where, once, token masked
            sinks.insert(0, preview)
            opened.callback(preview.close)
        opened.pop_all()  # opened them all: from here run() closes them, however it ends
    # Ours, so that the summary survives a Ctrl-C or SIGTERM.
    stats = StreamStats(agreement=Agreement(args.agreement_window, args.alarm))
    try:
        run(cascade, sources, sinks, max_frames=args.max_frames, status=None if args.quiet else sys.stderr,
            stats=stats)
    except KeyboardInterrupt:
        pass  # a signal ends a run like the end of its sources: sinks closed by run(), summary, exit 0
    finally:  # also after an error: say how far the run got (the error's sentence comes after)
        print(stats.summary() + "; " + ", ".join(_source_summary(s) for s in sources), file=sys.stderr)
        if collect is not None:
            over = f", {collect.over_budget} more left out (budget full)" if collect.over_budget else ""
            print(f"collected {collect.saved} frames where the student disagreed into {collect.folder}{over}",
                  file=sys.stderr)
    if stats.skipped and not stats.frames:
        raise EdgeCamError(f"none of the {stats.skipped} frames could be read (see the lines above).")
    lost = sum(getattr(sink, "lost", 0) for sink in sinks)
    if lost:
        raise EdgeCamError(f"{lost} events were lost: the MQTT broker never acknowledged them (see the mqtt "
                           "lines above; --mqtt-spill DIR keeps such events on disk for the next run).")
    return 0


def _source_summary(source: Source) -> str:
    s = source.stats
    missing = f", {s.missing} frames missing (truncated file)" if s.missing else ""
    return f"{source.name}: {s.dropped} dropped, {s.reconnects} reconnects{missing}"
