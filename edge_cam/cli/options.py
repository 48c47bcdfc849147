"""Option groups that several commands share, and the library settings their values become.

Each group is declared once here, so a flag means the same, with the same default and help, in
every command that has it. Numbers are checked here and errors name the flag: the library names
its parameters instead.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import sys

from ..cascade import require_cam
from ..crop import MASKS, CropSpec
from ..errors import EdgeCamError
from ..gate import DEFAULT_EVERY, NOISE, MotionGate
from ..localize import BOX_MODES, BoxRule
from ..measure.cascade_eval import make_rule
from ..measure.labelled import Labelled, load_labelled
from ..metadata import MAX_INPUT_SIDE, RESIZE_MODES
from ..model import Model
from ..refine import REFINES
from ..sizing import MIN_SIDE
from ..spec import CascadeSpec
from ..stream import printable
from ..watch import WatchList

EXPORT_EXTRA = ("torch", "torchvision", "onnx", "onnxscript")  # what the torch exporters need
MAX_THREADS = 256  # more is a typo: ORT would try to start them all (100000 hung, deaf to Ctrl-C)
MAX_PAD = 10.0  # a crop ten times the box is the whole frame already


def _providers(text: str) -> str | list[str]:
    return text if text == "auto" else text.split(",")


def add_runtime_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime")
    g.add_argument("--providers", default="auto", type=_providers,
                   help="auto, or a comma-separated list of cpu, xnnpack, cuda, tensorrt (or ORT provider "
                        "names); a missing one falls back to the CPU with a line saying so")
    g.add_argument("--threads", type=int, default=0, help="intra-op threads of the model or teacher (0: one per core)")
    g.add_argument("--trt-fp16", action="store_true", help="TensorRT: allow fp16 kernels")
    g.add_argument("--trt-int8", action="store_true", help="TensorRT: allow int8 kernels")
    g.add_argument("--trt-cache", help="TensorRT: folder that keeps built engines between runs")


def add_box_rule_options(p: argparse.ArgumentParser, rule: bool = True) -> None:
    """rule=False: only --resize, for calibrate, which chooses the rule itself."""
    g = p.add_argument_group("box rule", "how CAMs become boxes; the defaults are the model's own (see calibrate)")
    if rule:
        g.add_argument("--threshold", type=float, default=None,
                       help="CAM threshold as a fraction of the map's range (default: the model's, 0.2)")
        g.add_argument("--box-mode", choices=BOX_MODES, default=None,
                       help="largest region (the CAM paper), a union of the regions above --min-area, "
                            "all of them, or one box per peak of the map (objects; touching objects split) "
                            "(default: the model's, set by calibrate)")
        g.add_argument("--min-area", type=float, default=None, help="with union/all: minimum region "
                       "area as a fraction of the input (default: the model's)")
        g.add_argument("--object-level", type=float, default=None,
                       help="with objects: box each object at this fraction of its own peak, peaks down to it "
                            "of the map's max (default: every object at --threshold of the map's max)")
        g.add_argument("--fuse-top", type=int, default=None,
                       help="fuse the top-k classes' maps for the top-1 box (default: the model's, 1)")
    g.add_argument("--resize", choices=RESIZE_MODES, default=None,
                   help="override the model's resize mode (e.g. stretch to localise in whole photos)")


def add_watch_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("watch list", "the classes or groups that matter; each gets its own map (any "
                             "class, in the same pass as the top-K) and its own ROIs")
    g.add_argument("--classes", nargs="+", metavar="CLASS",
                   help="class labels, class ids or group names (the ImageNet groups shipped with edge-cam for "
                        "1000-class models: dog, cat, bird, car, vehicle, bottle, ...; or --groups)")
    g.add_argument("--groups", metavar="JSON", help='your own groups: {"pets": ["tabby", 207, ...], ...}')
    g.add_argument("--min-score", type=float, default=None,
                   help="a watched class or group below this probability makes no ROI; a frame with none "
                        "has no ROI and runs no student (default 0)")


def add_size_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("teacher input")
    g.add_argument("--input-size", metavar="S or HxW", type=_size,
                   help="the teacher's input size when its graph takes any (exports are dynamic): HxW, or one "
                        "number, the long side, keeping the frame's aspect; a larger input gives a finer CAM "
                        "(default: the size it was trained at)")
    g.add_argument("--max-rois", type=int, default=None, help="at most this many ROIs per frame (default 4)")


def _size(text: str) -> int | tuple[int, int]:
    try:
        if "x" in text.lower():
            h, w = text.lower().split("x")
            size: int | tuple[int, int] = int(h), int(w)
        else:
            size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a size like 448x256 or 512") from None
    if not all(MIN_SIDE <= n <= MAX_INPUT_SIDE for n in (size if isinstance(size, tuple) else (size,))):
        raise argparse.ArgumentTypeError(f"{text!r}: each side must be from {MIN_SIDE} to {MAX_INPUT_SIDE} pixels")
    return size


def add_student_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("student")
    g.add_argument("--student", help="a classifier (.onnx or .tflite) that labels the teacher's crops")
    g.add_argument("--student-spec", metavar="JSON", help="describe a foreign classifier (.onnx or .tflite "
                   "without edge_cam metadata) as the student: a JSON file or inline JSON (README: Any student)")
    g.add_argument("--student-threads", type=int, default=1, help="intra-op threads of the student (default 1: "
                   "a tiny graph loses more waking a pool than it gains)")


def add_cascade_options(p: argparse.ArgumentParser, every: int = 1) -> None:
    """Left out, each takes a distilled student's own (its CascadeSpec; see cascade_options), else the default."""
    g = p.add_argument_group("cascade", "left out, a distilled --student's own settings apply (else the defaults)")
    g.add_argument("--every", type=int, default=None, help=f"run the teacher at least every N frames (default {every})")
    g.add_argument("--change", type=float, default=None,
                   help="also run it when the scene changes by this many grey levels (mean absolute "
                        "difference of 32x24 thumbnails; 4-10 suits most cameras)")
    add_motion_options(g)
    g.add_argument("--pad", type=float, default=None, help=f"crop = box × pad (default {CropSpec.pad})")
    g.add_argument("--square", action=argparse.BooleanOptionalAction, default=None,
                   help="square crops (default); --no-square keeps the box's aspect ratio")
    g.add_argument("--mask", choices=MASKS, default=None,
                   help=f"hide crop pixels below the CAM threshold (default {CropSpec.mask})")


def add_teacher_options(p: argparse.ArgumentParser, rule: bool = True) -> None:
    """Everything about the CAM teacher: watch list, input size, box rule (rule=False: --resize only)
    and runtime."""
    add_watch_options(p)
    add_size_options(p)
    add_box_rule_options(p, rule)
    add_runtime_options(p)


def import_exporter(module: str, what: str):
    """An edge_cam_export module that needs torch, or one sentence on how to get it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in EXPORT_EXTRA:
            raise EdgeCamError(f"{what} needs {e.name.split('.')[0]}, which is not installed here; "
                               "install it on a workstation with: pip install 'edge-cam[export]'.") from None
        raise


def add_sources(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument("--source", required=True, action="append",
                   help="camera index, v4l2:///dev/videoN, csi://N, rtsp://..., http://... (MJPEG), a video, an image, "
                        f"a folder, a glob or a GStreamer pipeline; {text}")


def add_labelled_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("labelled set", "give exactly one of --voc and --yolo")
    g.add_argument("--voc", help="Pascal VOC folder (Annotations/ + JPEGImages/ or annotations/ + images/)")
    g.add_argument("--yolo", help="YOLO folder (images/ + labels/)")
    g.add_argument("--class-id", type=int, help="GT-known: the CAM of this class (default: top-1)")


def check(args: argparse.Namespace, flag: str, low: float, *, above: bool = False, unit: str = "",
          high: float | None = None) -> None:
    """`flag`'s value must be `low` or more (above `low` with `above`) and, with `high`, at most
    `high`; not given passes. Written so that nan fails every comparison, and so the check."""
    value = getattr(args, flag.lstrip("-").replace("-", "_"), None)  # None: not a flag of this command
    if value is None:
        return
    if not ((value > low if above else value >= low) and (high is None or value <= high)) or math.isinf(value):
        bound = f"above {low:g}" if above else f"{low:g}"
        bound = f"{bound} and at most {high:g}{unit}" if above and high is not None else \
            f"from {bound} to {high:g}{unit}" if high is not None else \
            f"{bound}{unit}" if above else f"{bound}{unit} or more"
        raise EdgeCamError(f"{flag} must be {bound}, not {value:g}.")


def model_file(path: str) -> str:
    """The path itself, when it can be a model file (the backends would say "does not exist")."""
    if os.path.isdir(path):
        raise EdgeCamError(f"{path} is a folder, not a model file (.onnx or .tflite).")
    return path


def model_options(args: argparse.Namespace) -> dict:
    """Model keyword arguments of the runtime group (and the teacher's input size), for a teacher or
    a single model."""
    trt = {"trt_fp16_enable": args.trt_fp16, "trt_int8_enable": args.trt_int8,
           **({"trt_engine_cache_enable": True, "trt_engine_cache_path": args.trt_cache} if args.trt_cache else {})}
    check(args, "--threads", 0, high=MAX_THREADS)
    return {"providers": args.providers, "threads": args.threads, "tensorrt": trt, "resize": args.resize,
            **({"input_size": args.input_size} if getattr(args, "input_size", None) is not None else {})}


def teacher_overrides(args: argparse.Namespace) -> dict:
    """The teacher's resize and input size, only where given: the rest comes from a distilled student's
    metadata (distill records it, eval --video reads it back)."""
    return {k: v for k, v in (("resize", args.resize), ("input_size", args.input_size)) if v is not None}


def student_options(args: argparse.Namespace) -> dict:
    """Model keyword arguments of the student: the runtime group with the student's own threads,
    and no resize override (that one is about the teacher's CAM)."""
    if args.student_spec and not args.student:
        raise EdgeCamError("--student-spec describes the --student model; give --student too.")
    check(args, "--student-threads", 0, high=MAX_THREADS)
    options = {**model_options(args), "threads": args.student_threads, "resize": None,
               "describe": args.student_spec}
    options.pop("input_size", None)  # the student's input is the crop, at its own size
    return options


def rule_options(args: argparse.Namespace) -> dict:
    """BoxRule.for_model overrides of the box-rule group (None keeps the model's own)."""
    check(args, "--fuse-top", 1)
    check(args, "--min-area", 0, high=1)
    # 0 keeps every pixel (a whole-image box), above 1 none: neither is a threshold (nan neither)
    if args.threshold is not None and not 0 < args.threshold <= 1:
        raise EdgeCamError(f"--threshold is a fraction of the map's range, above 0 and at most 1, "
                           f"not {args.threshold:g}.")
    check(args, "--max-rois", 1)
    check(args, "--object-level", 0, above=True, high=1)
    return {"threshold": args.threshold, "mode": args.box_mode, "min_area": args.min_area,
            "fuse_top": args.fuse_top, "max_rois": getattr(args, "max_rois", None),
            "object_level": getattr(args, "object_level", None)}


def add_motion_options(g) -> None:
    g.add_argument("--motion", type=float, default=None, metavar="FRACTION",
                   help="motion gate: also run it when this fraction of the scene moves between two frames "
                        f"(thumbnail pixels past {NOISE} grey levels; 0.005 on the shared videos), and hold the "
                        "last answer, running nothing, on frames where nothing moves (a distilled student "
                        "brings its own)")
    g.add_argument("--motion-every", type=int, default=None, metavar="K",
                   help=f"while the scene moves, the teacher at most once in K frames (default: the gate's own, "
                        f"else {DEFAULT_EVERY})")
    g.add_argument("--no-motion", action="store_true", help="no motion gate, whatever the student brings")


def cascade_options(args: argparse.Namespace, spec: CascadeSpec | None = None, every: int = 1,
                    gate: MotionGate | None = None) -> dict:
    """Cascade keyword arguments of the cascade group (the rule comes from the teacher, see box_rule):
    each flag given, else the distilled student's `spec`, else the default (`every`, `gate`, CropSpec's)."""
    check(args, "--every", 1)
    check(args, "--pad", 1, high=MAX_PAD)
    base = spec.crop if spec is not None else CropSpec()
    change, gate = schedule(args, spec, gate)
    return {"every": args.every if args.every is not None else spec.every if spec else every,
            "change": change, "gate": gate,
            "crop_spec": CropSpec(base.pad if args.pad is None else args.pad,
                                  base.square if args.square is None else args.square,
                                  base.mask if args.mask is None else args.mask)}


def schedule(args: argparse.Namespace, spec: CascadeSpec | None,
             gate: MotionGate | None = None) -> tuple[float | None, MotionGate | None]:
    """--change and the motion gate, checked: each flag given wins over the distilled student's
    `spec` (else `gate`) one setting at a time, so `--every 30` keeps a student's gate and `--motion`
    alone keeps its pace; --no-motion turns a gate off."""
    check(args, "--change", 0, above=True, unit=" grey levels")
    check(args, "--motion", 0, above=True, high=1)
    check(args, "--motion-every", 1)
    own = spec.motion if spec is not None else gate
    if args.no_motion:
        if args.motion is not None or args.motion_every is not None:
            raise EdgeCamError("--no-motion turns the motion gate off; leave out --motion and --motion-every.")
        own = None
    elif args.motion is not None:
        own = MotionGate(args.motion, args.motion_every if args.motion_every is not None
                         else own.every if own is not None else DEFAULT_EVERY)
    elif args.motion_every is not None:
        if own is None:
            raise EdgeCamError("--motion-every needs --motion FRACTION (the motion gate it paces).")
        own = MotionGate(own.level, args.motion_every)
    return (args.change if args.change is not None else spec.change if spec is not None else None), own


def student_spec(student: Model | None) -> CascadeSpec | None:
    """What a distilled student was trained under (None for any other student, or none)."""
    return None if student is None else CascadeSpec.from_metadata(student.info, student.path)


def open_teacher(args: argparse.Namespace, path: str, spec: CascadeSpec | None = None, **model_kw) -> Model:
    """A CAM model with the runtime options (a plain classifier is refused); the resize mode and
    input size not given take a distilled student's `spec`."""
    options = model_options(args)
    for key, value in (spec.teacher_options() if spec else {}).items():
        if options.get(key) is None:
            options[key] = value
    return require_cam(Model(model_file(path), **options, **model_kw))


def box_rule(args: argparse.Namespace, model: Model, spec: CascadeSpec | None = None) -> BoxRule:
    """The model's box rule (a distilled student's `spec`'s, when given) with the command line's overrides."""
    kw = rule_options(args)
    top_k = model.top_k
    if kw["fuse_top"] is not None and top_k is not None and kw["fuse_top"] > top_k:
        raise EdgeCamError(f"--fuse-top must be at most {top_k}, the top-K of {model.path}, not {kw['fuse_top']}.")
    return make_rule(model, spec.rule if spec else None, kw)


def groups_need_classes(args: argparse.Namespace) -> None:
    if args.groups and not args.classes:
        raise EdgeCamError("--groups names groups for --classes; give --classes too.")


def watch_options(args: argparse.Namespace) -> dict:
    """The watch-list group's values, checked: WatchList.parse's entries and groups_file, and min_score."""
    groups_need_classes(args)
    check(args, "--min-score", 0, high=1)
    if not args.classes and args.min_score is not None:
        raise EdgeCamError("--min-score applies to the watched classes; give --classes too.")
    return {"entries": args.classes, "groups_file": args.groups, "min_score": args.min_score}


def watch_list(args: argparse.Namespace, model: Model, spec: CascadeSpec | None = None) -> WatchList | None:
    """The --classes watch list of `model`'s classes; without --classes, the one a distilled student
    was trained on (`spec`), else None."""
    w = watch_options(args)
    if not w["entries"]:
        watch = spec.watch_list(model.info.labels, model.num_classes) if spec else None
    else:
        with watch_flags():
            watch = WatchList.parse(w["entries"], model.info.labels, w["groups_file"], model.num_classes)
    if watch is not None:
        model.require_maps(watch.class_ids)
    return watch


def min_score(args: argparse.Namespace, spec: CascadeSpec | None) -> float:
    """--min-score, else a distilled student's, else 0."""
    return args.min_score if args.min_score is not None else spec.min_score if spec else 0.0


@contextlib.contextmanager
def watch_flags():
    """The library names its parameters (classes, groups_file); the command line, its flags."""
    try:
        yield
    except EdgeCamError as e:
        text = str(e)
        if text.startswith(("classes:", "groups_file:")):
            raise EdgeCamError(text.replace("classes:", "--classes:", 1).replace("groups_file", "--groups")) from None
        raise


def labelled(args: argparse.Namespace) -> Labelled:
    """The --voc or --yolo set, every annotation that can be read (the others skipped and named)."""
    if bool(args.voc) == bool(args.yolo):
        raise EdgeCamError("give exactly one labelled set: --voc DIR or --yolo DIR.")
    return load_labelled(args.voc, args.yolo)


def add_refine_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--refine", choices=REFINES, default="none",
                   help="fit each box to the object's colours: grabcut (OpenCV GrabCut seeded by the map's hot "
                        "and cold parts; tens of ms a box, see benchmarks/README.md) (default: none)")


SHOWN = 5  # unreadable files named in a summary (each has its own line above it)


def unreadable_line(paths: list[str], total: int, what: str = "images") -> str:
    """"2 of 164 images unreadable: 'a.jpg', 'b.jpg'": the summary of what was skipped (escaped:
    a file name cannot forge lines)."""
    names = ", ".join(ascii(p) for p in paths[:SHOWN]) + (", ..." if len(paths) > SHOWN else "")
    return f"{len(paths)} of {total} {what} unreadable: {names}"


def report_skipped(skipped: list, total: int) -> None:
    """Each unreadable photo or annotation of a labelled set named on stderr, then the count on
    stdout with the figures: "1 of 164 photos unreadable: ..."."""
    if not skipped:
        return
    for s in skipped:
        print(f"skipped {ascii(s.path)}: {printable(s.reason)}", file=sys.stderr)
    print(unreadable_line([os.path.basename(s.path) for s in skipped], total, "photos")
          + f" (skipped; the figures are over the other {total - len(skipped)})")
