"""`edge-cam`: export, info, localize, run, demo. Errors are one sentence on stderr, exit status 2."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import replace

import cv2

from ..tools.annotate import draw_box, overlay_heat
from ..tools.bench import BenchConfig, markdown, run_bench, write_report
from ..cascade import Cascade
from ..crop import CropSpec
from ..tools.demo import data_path, run_demo
from ..errors import EdgeCamError
from ..tools.evaluate import calibrate, evaluate, read_labelled
from ..localize import BOX_MODES, BoxRule
from ..metadata import RESIZE_MODES, ModelInfo, read_labels, rewrite_metadata
from ..model import Model, open_session
from ..stream import run_streams
from ..tools.plot import line_chart
from ..preprocess import to_rgb8
from ..sinks import JsonlSink, VideoSink
from ..source import Source, list_images, read_image

EXPORT_EXTRA = ("torch", "torchvision", "onnx", "onnxscript")


def _export_onnx(args) -> int:
    """An ONNX classifier the user already has: graph surgery, no torch (edge_cam_export.surgery)."""
    torch_only = [f for f, v in (("--weights", args.weights), ("--num-classes", args.num_classes),
                                 ("--no-cam", args.no_cam), ("--quantize", args.quantize),
                                 ("--precision fp16", args.precision == "fp16"), ("--keep-float", args.keep_float),
                                 ("--list-layers", args.list_layers), ("--feature-layer", args.feature_layer),
                                 ("--classifier", args.classifier)) if v]
    if torch_only:
        raise EdgeCamError(f"{', '.join(torch_only)} apply to torch models only; an ONNX model's CAM layers "
                           "are found in its graph.")
    if not args.output:
        raise EdgeCamError("export needs an output path: -o OUT.onnx.")
    if args.input_size is not None and len(args.input_size) not in (1, 2):
        raise EdgeCamError("--input-size takes one size S or two sizes H W.")
    from edge_cam_export.surgery import cam_from_onnx  # needs the onnx extra: imported only here
    size = args.input_size * 2 if args.input_size and len(args.input_size) == 1 else args.input_size
    result = cam_from_onnx(
        args.model, args.output, input_size=size, color=args.color, layout=args.layout, scale=args.scale,
        mean=args.mean, std=args.std, labels=read_labels(args.labels) if args.labels else None,
        top_k=args.top_k, resize_mode=args.resize, threshold=args.threshold, verify_images=args.verify_images)
    h = result.head
    print(f"found {h.kind} head: feature map {h.feature!r} {list(result.info.cam.feature_size)}, classifier "
          f"{h.classifier!r} ({h.num_classes} classes), pooled by {h.pool!r}", file=sys.stderr)
    print(f"verified on {result.verification}", file=sys.stderr)
    print(f"wrote {result.path} ({os.path.getsize(result.path) / 1e6:.1f} MB)")
    return 0


def _fraction(text: str) -> float:
    """--scale accepts 1/255 as well as 0.00392."""
    num, _, den = text.partition("/")
    try:
        return float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or a fraction like 1/255") from None


def _export(args) -> int:
    fmt = args.format or ("tflite" if (args.output or "").lower().endswith(".tflite") else "onnx")
    if fmt == "tflite" and args.model.lower().endswith(".onnx"):
        raise EdgeCamError("--format tflite converts torch models; an existing .onnx classifier exports to ONNX only.")
    if args.model.lower().endswith(".onnx"):
        return _export_onnx(args)
    try:
        import edge_cam_export.torch_export as edge_cam_export
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in EXPORT_EXTRA:
            raise EdgeCamError(f"exporting needs {e.name.split('.')[0]}, which is not installed here; "
                               "install it on a workstation with: pip install 'edge-cam[export]'.") from None
        raise
    if args.list_layers:
        print("\n".join(edge_cam_export.list_layers(args.model, args.num_classes)))
        return 0
    if not args.output:
        raise EdgeCamError("export needs an output path: -o OUT.onnx.")
    sizes = args.input_size or [224]
    size = sizes * 2 if len(sizes) == 1 else sizes
    if len(size) != 2 or min(size) < 8:
        raise EdgeCamError("--input-size takes one size S or two sizes H W, each at least 8.")
    result = edge_cam_export.export(
        args.model, args.output, weights=args.weights, num_classes=args.num_classes,
        labels_file=args.labels, input_size=tuple(size), top_k=args.top_k, cam=not args.no_cam,
        feature_layer=args.feature_layer, classifier=args.classifier, mean=tuple(args.mean),
        std=tuple(args.std), resize=args.resize, threshold=args.threshold, opset=args.opset,
        exporter=args.exporter, quantize=args.quantize, calibration=args.calibration, format=fmt,
        precision=args.precision, keep_float=tuple(args.keep_float or ()))
    print(f"wrote {result.path} ({os.path.getsize(result.path) / 1e6:.1f} MB)")
    return 0


def _info(args) -> int:
    if args.model.lower().endswith(".tflite"):
        from ..backends.litert import LiteRTSession
        sess = LiteRTSession(args.model, threads=1)
        rows = [(kind, t.name, str(t.dtype) + (" (scale %g, zero point %d)" % t.quant if t.quant else ""),
                 list(t.shape)) for kind, ts in (("input", sess.inputs), ("output", sess.outputs)) for t in ts]
        props = sess.props
    else:
        sess = open_session(args.model, ["CPUExecutionProvider"])
        rows = [(kind, v.name, v.type, v.shape)
                for kind, vs in (("input", sess.get_inputs()), ("output", sess.get_outputs())) for v in vs]
        props = sess.get_modelmeta().custom_metadata_map
    print(f"{args.model}")
    for kind, name, typ, shape in rows:
        print(f"  {kind:6s} {name:10s} {typ:16s} {shape}")
    if not any(k.startswith("edge_cam.") for k in props):
        print("  no edge_cam metadata: not an edge-cam model")
        return 0
    info = ModelInfo.from_props(props, args.model)
    print(f"  role   {'CAM teacher' if info.cam else 'classifier (student)'}")
    for k in sorted(props):
        if k.startswith("edge_cam."):
            v = json.loads(props[k])
            if k == "edge_cam.labels" and len(v) > 8:
                v = v[:5] + ["...", f"({len(v)} labels)"]
            print(f"  {k}: {json.dumps(v)}")
    return 0


def _load(args, path: str, teacher: bool = True) -> Model:
    """A model with the runtime options of the command line (resize applies to teachers)."""
    trt = {"trt_fp16_enable": args.trt_fp16, "trt_int8_enable": args.trt_int8,
           **({"trt_engine_cache_enable": True, "trt_engine_cache_path": args.trt_cache} if args.trt_cache else {})}
    return Model(path, providers=args.providers, threads=args.threads if teacher else args.student_threads,
                 resize=args.resize if teacher else None,
                 tensorrt=trt, describe=None if teacher else args.student_spec)


def _check_student_spec(args) -> None:
    if args.student_spec and not args.student:
        raise EdgeCamError("--student-spec describes the --student model; give --student too.")


def _teacher(args, path: str) -> tuple[Model, BoxRule]:
    """A CAM teacher and its box rule (the model's, with the command line's overrides)."""
    model = _load(args, path)
    if not model.has_cam:
        raise EdgeCamError(f"{path} is a plain classifier with no CAM output; export the teacher with "
                           "`edge-cam export` (without --no-cam).")
    return model, BoxRule.for_model(model.info.cam, args.threshold, args.box_mode, args.min_area, args.fuse_top)


def _localize(args) -> int:
    model, rule = _teacher(args, args.model)
    paths = list_images(args.images)
    if args.overlays:
        os.makedirs(args.overlays, exist_ok=True)
    out, failed = JsonlSink(args.jsonl), 0
    try:
        for path in paths:
            try:
                image = read_image(path)
                pred = model.predict(image)
            except EdgeCamError as e:
                failed += 1
                out.write_obj({"image": path, "error": str(e)})
                print(f"skipped {path}: {e}", file=sys.stderr)
                continue
            t0 = time.perf_counter()
            rank = 0 if args.class_id is None else pred.rank_of(args.class_id)
            if rank is None:
                failed += 1
                out.write_obj({"image": path, "error": f"class {args.class_id} is not among the model's top-"
                               f"{len(pred.class_ids)} here; export with a larger --top-k."})
                continue
            heat, boxes = rule.localize(pred, rank)
            loc_ms = (time.perf_counter() - t0) * 1e3
            h, w = image.shape[:2]
            out.write_obj({"image": path, "width": w, "height": h, "topk": pred.topk(),
                           "boxes": [b.to_dict() for b in boxes],
                           "timing_ms": {"preprocess": round(pred.timing_ms["preprocess"], 3),
                                         "model": round(pred.timing_ms["model"], 3),
                                         "localize": round(loc_ms, 3)}})
            if args.overlays:
                pic = overlay_heat(cv2.cvtColor(to_rgb8(image), cv2.COLOR_RGB2BGR), heat)
                for b in boxes:
                    draw_box(pic, b, f"{b.label} {b.score:.2f}")
                name = os.path.splitext(os.path.basename(path))[0] + ".jpg"
                cv2.imwrite(os.path.join(args.overlays, name), pic)
    finally:
        out.close()
    if failed:
        print(f"{failed} of {len(paths)} images gave no boxes (see their error lines).", file=sys.stderr)
    return 0


def _stop_on_sigterm() -> None:
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


def _numbered(path: str, i: int, n: int) -> str:
    if n == 1:
        return path
    root, ext = os.path.splitext(path)
    return f"{root}-{i}{ext}"


def _run(args) -> int:
    teacher, rule = _teacher(args, args.teacher)
    _check_student_spec(args)
    student = _load(args, args.student, teacher=False) if args.student else None
    cascade = Cascade(teacher, student, every=args.every, change=args.change, rule=rule,
                      crop_spec=CropSpec(args.pad, not args.no_square, args.mask))
    _stop_on_sigterm()
    sources, sinks = [], []
    try:
        for spec in args.source:
            sources.append(Source(spec, loop=args.loop))
        n = len(sources)
        events = JsonlSink(args.events) if args.events else None
        for i, src in enumerate(sources):
            mine = []
            if args.video_out:
                mine.append(VideoSink(_numbered(args.video_out, i, n), args.fps))
            if args.mqtt:
                from ..sinks.mqtt import MqttSink
                mine.append(MqttSink(args.mqtt, device=args.device, stream=str(i), spill_dir=args.mqtt_spill))
            if events:
                mine.append(events)
            sinks.append(mine)
    except BaseException:
        for src in sources:
            src.close()
        for sink in {id(k): k for ks in sinks for k in ks}.values():
            sink.close()
        raise
    stats = run_streams(cascade, sources, sinks, max_frames=args.max_frames,
                        status=None if args.quiet else sys.stderr)
    print(stats.summary() + "; " + ", ".join(
        f"{s.name}: {s.stats.dropped} dropped, {s.stats.reconnects} reconnects" for s in sources),
        file=sys.stderr)
    return 0


def _progress_bar(label: str):
    """A bar on stderr, redrawn at most 5 times a second; only the last state when not a terminal."""
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and (now - last[0] < 0.2 or not sys.stderr.isatty()):
            return
        last[0] = now
        bar = int(30 * done / total)
        print(f"\r{label} [{'=' * bar}{' ' * (30 - bar)}] {done}/{total}", end="" if done < total else "\n",
              file=sys.stderr, flush=True)
    return show


def _labelled(args):
    if bool(args.voc) == bool(args.yolo):
        raise EdgeCamError("give exactly one labelled set: --voc DIR or --yolo DIR.")
    return read_labelled(args.voc, args.yolo)


def _eval(args) -> int:
    model, rule = _teacher(args, args.model)
    e = evaluate(model, _labelled(args), args.class_id, rule, progress=_progress_bar("evaluating"))
    mode = "GT-known (class %d)" % args.class_id if args.class_id is not None else "top-1 class (GT-unknown)"
    print(f"{e.images} images, CAM of the {mode}, resize {model.info.input.resize}")
    print(f"CorLoc@0.5 with threshold {rule.threshold:g}, {rule.mode} box: {e.corloc:.3f}")
    for d, v in e.max_box_acc.items():
        print(f"MaxBoxAcc@{d:.1f}: {v:.3f} at threshold {e.thresholds[int(e.box_acc[d].argmax())]:.2f}")
    print(f"MaxBoxAccV2: {e.max_box_acc_v2:.3f}")
    if e.missing_class:
        print(f"{e.missing_class} images had class {args.class_id} outside the exported top-K (counted as misses)")
    if args.plot:
        line_chart(args.plot, {f"IoU {d:.1f}": (e.thresholds, a) for d, a in e.box_acc.items()},
                   "BoxAcc against the CAM threshold (best of all boxes)", "threshold", "BoxAcc")
        print(f"wrote {args.plot}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(e.to_dict(), f, indent=2)
    return 0


def _calibrate(args) -> int:
    model, _ = _teacher(args, args.model)
    c = calibrate(model, _labelled(args), args.class_id, progress=_progress_bar("calibrating"))
    r = c.rule
    print(f"best rule on the tuning half: threshold {r.threshold:g}, {r.mode} box, min area {r.min_area:g}, "
          f"top-{r.fuse_top} maps fused")
    print(f"CorLoc@0.5 tuning half: {c.tuned['baseline']:.3f} -> {c.tuned['calibrated']:.3f}; "
          f"held-out half: {c.held_out['baseline']:.3f} -> {c.held_out['calibrated']:.3f}")
    info = replace(model.info, cam=replace(model.info.cam, threshold=r.threshold, box_mode=r.mode,
                                           min_area=r.min_area, fuse_top=r.fuse_top),
                   source={**model.info.source, "calibration": c.to_dict()})
    rewrite_metadata(args.model, args.output, info.to_props())
    print(f"wrote {args.output}; localize and run now use this rule by default")
    return 0


def _bench(args) -> int:
    teacher = args.teacher or data_path("teacher.onnx")
    _check_student_spec(args)
    student = args.student if args.teacher else (args.student or data_path("student.onnx"))
    cfg = BenchConfig(teacher, student, args.source or data_path("demo_clip.mp4"), args.frames, args.warmup,
                      args.every, args.change, args.threads, args.providers, args.student_spec,
                      args.student_threads)
    result = run_bench(cfg, progress=_progress_bar("benchmarking"))
    print(markdown(result))
    for path in write_report(result, args.out):
        print(f"wrote {path}")
    return 0


def _demo(args) -> int:
    _stop_on_sigterm()
    run_demo(args.out, every=args.every, mask=args.mask)
    return 0


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--providers", default="auto", type=lambda s: s if s == "auto" else s.split(","),
                   help="auto, or a comma-separated list of cpu, xnnpack, cuda, tensorrt (or ORT provider "
                        "names); a missing one falls back to the CPU with a line saying so")
    p.add_argument("--trt-fp16", action="store_true", help="TensorRT: allow fp16 kernels")
    p.add_argument("--trt-int8", action="store_true", help="TensorRT: allow int8 kernels")
    p.add_argument("--trt-cache", help="TensorRT: folder that keeps built engines between runs")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads of the model or teacher (0: one per core)")
    p.add_argument("--threshold", type=float, default=None,
                   help="CAM threshold as a fraction of the map's range (default: the model's, 0.2)")
    p.add_argument("--box-mode", choices=BOX_MODES, default=None,
                   help="largest region (the CAM paper), a union of the regions above --min-area, or "
                        "all of them (default: the model's, set by calibrate)")
    p.add_argument("--min-area", type=float, default=None, help="with union/all: minimum region "
                   "area as a fraction of the input (default: the model's)")
    p.add_argument("--fuse-top", type=int, default=None,
                   help="fuse the top-k classes' maps for the top-1 box (default: the model's, 1)")
    p.add_argument("--resize", choices=RESIZE_MODES, default=None,
                   help="override the model's resize mode (e.g. stretch to localise in whole photos)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-cam", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="trace a GAP classifier to ONNX with its CAM in the graph")
    p.add_argument("model", help="torchvision:<builder>, package.module:callable, or an existing "
                   "classifier.onnx to CAM-ify without torch")
    p.add_argument("-o", "--output", help="output .onnx path")
    p.add_argument("--weights", help="state_dict file, or a torchvision weights name (needs internet)")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--input-size", type=int, nargs="+", metavar="S",
                   help="S or H W (default: 224, or an ONNX model's own fixed size)")
    p.add_argument("--labels", help="text file, one class name per line")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--feature-layer", help="override: the layer whose output is the CAM's feature map")
    p.add_argument("--classifier", help="override: the Linear or 1x1 Conv holding the class weights")
    p.add_argument("--no-cam", action="store_true", help="a plain classifier (for a student)")
    p.add_argument("--resize", choices=RESIZE_MODES, default="stretch",
                   help="how frames meet the input: whole frame stretched or letterboxed, or "
                        "ImageNet's centre crop")
    p.add_argument("--mean", type=float, nargs=3, default=[0.485, 0.456, 0.406])
    p.add_argument("--std", type=float, nargs=3, default=[0.229, 0.224, 0.225])
    p.add_argument("--threshold", type=float, default=0.2, help="default CAM threshold stored in the model")
    # An existing .onnx MODEL: how its float input is made from pixels (x = (pixel*scale - mean)/std).
    p.add_argument("--color", choices=["RGB", "BGR"], default="RGB",
                   help=".onnx MODEL: the channel order it expects (--mean/--std are in this order)")
    p.add_argument("--scale", type=_fraction, default=1 / 255, help=".onnx MODEL: pixel scale, e.g. 1/255")
    p.add_argument("--layout", choices=["NCHW", "NHWC"], default="NCHW", help=".onnx MODEL: its input layout")
    p.add_argument("--verify-images", help=".onnx MODEL: folder of real images to verify on (default: synthetic)")
    p.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo")
    p.add_argument("--list-layers", action="store_true", help="print the model's layer names and exit")
    p.add_argument("--quantize", choices=["int8"], help="static int8 (QDQ) for CPUs; the CAM head stays float")
    p.add_argument("--calibration", help="folder of real images for --quantize (and the drift of --precision fp16)")
    p.add_argument("--keep-float", nargs="+", metavar="LAYER",
                   help="--quantize int8: torch layers that stay float, e.g. features.14 features.15")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                   help="fp16: half precision for GPUs (TensorRT, CUDA); outputs stay float32")
    p.add_argument("--format", choices=["onnx", "tflite"],
                   help="output format (default: from -o's suffix); tflite goes through litert-torch, batch 1")
    p.set_defaults(func=_export)

    p = sub.add_parser("info", help="print a model's inputs, outputs and edge-cam metadata")
    p.add_argument("model")
    p.set_defaults(func=_info)

    p = sub.add_parser("localize", help="one JSON line per image: top-K classes and CAM boxes")
    p.add_argument("model")
    p.add_argument("images", nargs="+", help="images, folders or globs")
    p.add_argument("--class-id", type=int, help="box this class's CAM instead of the top-1's")
    p.add_argument("--jsonl", default="-", help="output file, or - for stdout")
    p.add_argument("--overlays", help="folder for heat-map overlay pictures")
    _add_runtime_options(p)
    p.set_defaults(func=_localize)

    p = sub.add_parser("run", help="the streaming cascade: teacher → CAM box → crop → student")
    p.add_argument("--teacher", required=True)
    p.add_argument("--student")
    p.add_argument("--student-threads", type=int, default=1,
                   help="intra-op threads of the student (default 1: a tiny graph loses more waking a pool than it gains)")
    p.add_argument("--student-spec", metavar="JSON", help="describe a foreign classifier (.onnx or .tflite "
                   "without edge_cam metadata) as the student: a JSON file or inline JSON (README: Any student)")
    p.add_argument("--source", required=True, action="append",
                   help="camera index, v4l2:///dev/videoN, csi://N, rtsp://..., http://... (MJPEG), a "
                        "video, an image, a folder, a glob or a GStreamer pipeline; repeat for several streams")
    p.add_argument("--loop", action="store_true", help="start files again at their end")
    p.add_argument("--every", type=int, default=1, help="run the teacher at least every N frames")
    p.add_argument("--change", type=float, default=None,
                   help="also run it when the scene changes by this many grey levels (mean absolute "
                        "difference of 32x24 thumbnails; 4-10 suits most cameras)")
    p.add_argument("--video-out", help="annotated video (.avi MJPG or .mp4 mp4v)")
    p.add_argument("--fps", type=float, default=15.0, help="frame rate of --video-out")
    p.add_argument("--events", help="JSON lines file, or - for stdout")
    p.add_argument("--mqtt", help="publish events to mqtt://host:port[/prefix] (QoS 1, queued while "
                   "the broker is away); needs edge-cam[mqtt]")
    p.add_argument("--device", help="device name in the MQTT topic (default: the host name)")
    p.add_argument("--mqtt-spill", help="folder where events wait on disk when the broker is away too "
                   "long (re-sent later); without it the oldest queued events are dropped and counted")
    p.add_argument("--max-frames", type=int)
    p.add_argument("--quiet", action="store_true", help="no status line")
    p.add_argument("--pad", type=float, default=1.3, help="crop = box × pad")
    p.add_argument("--no-square", action="store_true", help="keep the box's aspect ratio")
    p.add_argument("--mask", choices=["none", "mean", "blur"], default="none",
                   help="hide crop pixels below the CAM threshold")
    _add_runtime_options(p)
    p.set_defaults(func=_run)

    for name, func, text in (("eval", _eval, "localisation accuracy on a labelled set: CorLoc, MaxBoxAccV2"),
                             ("calibrate", _calibrate, "choose the box rule on a labelled set and store it")):
        p = sub.add_parser(name, help=text)
        p.add_argument("model")
        p.add_argument("--voc", help="Pascal VOC folder (Annotations/ + JPEGImages/ or annotations/ + images/)")
        p.add_argument("--yolo", help="YOLO folder (images/ + labels/)")
        p.add_argument("--class-id", type=int, help="GT-known: the CAM of this class (default: top-1)")
        if name == "eval":
            p.add_argument("--plot", help="PNG of BoxAcc against the threshold")
            p.add_argument("--json", help="write the figures as JSON")
        else:
            p.add_argument("-o", "--output", required=True, help="the calibrated model")
        _add_runtime_options(p)
        p.set_defaults(func=func)

    p = sub.add_parser("bench", help="per-stage latency, FPS, memory and energy of the cascade")
    p.add_argument("--teacher", help="default: the bundled demo teacher (and student)")
    p.add_argument("--student")
    p.add_argument("--student-spec", metavar="JSON", help="describe a foreign classifier (.onnx or .tflite "
                   "without edge_cam metadata) as the student: a JSON file or inline JSON (README: Any student)")
    p.add_argument("--source", help="frames to run on, looped (default: the bundled clip)")
    p.add_argument("--frames", type=int, default=300, help="measured frames, after --warmup")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--every", type=int, default=1)
    p.add_argument("--change", type=float)
    p.add_argument("--out", default="edge-cam-bench", help="folder for bench.json, bench.md, latency.png")
    p.add_argument("--providers", default="auto", type=lambda s: s if s == "auto" else s.split(","))
    p.add_argument("--threads", type=int, default=0, help="intra-op threads of the teacher (0: one per core)")
    p.add_argument("--student-threads", type=int, default=1, help="intra-op threads of the student")
    p.set_defaults(func=_bench)

    p = sub.add_parser("demo", help="the whole cascade on the bundled models and clip, offline")
    p.add_argument("--out", default="edge-cam-demo", help="output folder")
    p.add_argument("--every", type=int, default=None, help="teacher cadence (default: the demo's)")
    p.add_argument("--mask", choices=["none", "mean", "blur"], default="none")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EdgeCamError as e:
        print(f"edge-cam: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    except Exception as e:  # a bug, not bad input: one line, the traceback on request
        if os.environ.get("EDGE_CAM_DEBUG"):
            raise
        print(f"edge-cam: internal error {type(e).__name__}: {e} (set EDGE_CAM_DEBUG=1 for the "
              "traceback and please report it).", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
