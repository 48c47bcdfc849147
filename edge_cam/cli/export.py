"""`edge-cam export`: a torch model traced, or an ONNX classifier edited, into a CAM teacher."""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import EdgeCamError
from ..metadata import DEFAULT_THRESHOLD, IMAGENET_MEAN, IMAGENET_STD, IMAGENET_THRESHOLD, RESIZE_MODES, read_labels
from . import options as opt


def _fraction(text: str) -> float:
    """--scale accepts 1/255 as well as 0.00392."""
    num, _, den = text.partition("/")
    try:
        return float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or a fraction like 1/255") from None


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="trace a GAP classifier to ONNX with its CAM in the graph")
    p.add_argument("model", help="torchvision:<builder>, package.module:callable, or an existing "
                   "classifier.onnx to CAM-ify without torch")
    p.add_argument("-o", "--output", help="output .onnx or .tflite path")
    p.add_argument("--input-size", type=int, nargs="+", metavar="S",
                   help="S or H W (default: 224, or an ONNX model's own fixed size)")
    p.add_argument("--labels", help="text file, one class name per line")
    p.add_argument("--top-k", type=int, default=5, help="classes (and CAMs) the graph returns per image")
    p.add_argument("--resize", choices=RESIZE_MODES, default=None,
                   help="how frames meet the input: whole frame stretched or letterboxed, or ImageNet's centre "
                        "crop, which hides the frame's edges (default: letterbox for torchvision/timm ImageNet "
                        "models, stretch otherwise)")
    p.add_argument("--mean", type=float, nargs=3, default=list(IMAGENET_MEAN),
                   help="normalisation: x = (pixel*scale - mean) / std, per channel")
    p.add_argument("--std", type=float, nargs=3, default=list(IMAGENET_STD),
                   help="normalisation: see --mean")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"default CAM threshold stored in the model (default: {IMAGENET_THRESHOLD:g} for torchvision/timm "
                        f"ImageNet models, measured for them; {DEFAULT_THRESHOLD:g}, the CAM paper's, otherwise)")
    p.add_argument("--format", choices=["onnx", "tflite"],
                   help="output format (default: from -o's suffix); tflite goes through litert-torch, batch 1")

    torch = p.add_argument_group("torch models only")
    torch_only = [
        torch.add_argument("--weights", help="state_dict file, or a torchvision weights name (needs internet)"),
        torch.add_argument("--num-classes", type=int, help="classes of the model's head, when the builder takes it"),
        torch.add_argument("--feature-layer", help="override: the layer whose output is the CAM's feature map"),
        torch.add_argument("--classifier", help="override: the Linear or 1x1 Conv holding the class weights"),
        torch.add_argument("--list-layers", action="store_true", help="print the model's layer names and exit"),
        torch.add_argument("--no-cam", action="store_true", help="a plain classifier (for a student)"),
        torch.add_argument("--opset", type=int, default=18, help="ONNX opset of the traced graph"),
        torch.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo",
                           help="torch's ONNX exporter (torchscript for models dynamo cannot trace)"),
        torch.add_argument("--quantize", choices=["int8"],
                           help="static int8 (QDQ) for CPUs; the CAM head stays float"),
        torch.add_argument("--calibration", help="folder of real images for --quantize (and the drift of "
                           "--precision fp16)"),
        torch.add_argument("--keep-float", nargs="+", metavar="LAYER",
                           help="--quantize int8: torch layers that stay float, e.g. features.14 features.15"),
        torch.add_argument("--min-agreement", type=float, default=0.95, metavar="A",
                           help="--quantize int8: the least top-1 agreement with fp32 on held-out photos (one in "
                                "three of --calibration, and --held-out); blocks that would lower it stay float, "
                                "and below it nothing is written (default 0.95)"),
        torch.add_argument("--held-out", metavar="DIR",
                           help="--quantize int8: more real photos to check the int8 model on (never calibrated on)"),
        torch.add_argument("--force", action="store_true",
                           help="--quantize int8: write the model even below --min-agreement"),
        torch.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                           help="fp16: half precision for GPUs (TensorRT, CUDA); outputs stay float32"),
        torch.add_argument("--classes", nargs="+", metavar="CLASS",
                           help="--format tflite: bake these classes' maps into the graph, returned on every run "
                                "(labels, ids or groups, as `run --classes` takes them; an ONNX teacher maps any "
                                "class at run time)"),
        torch.add_argument("--groups", metavar="JSON", help="your own groups for --classes (as `run --groups`)"),
    ]

    # How an existing .onnx classifier's float input is made from pixels: x = (pixel*scale - mean)/std.
    onnx = p.add_argument_group(".onnx models only")
    onnx.add_argument("--color", choices=["RGB", "BGR"], default="RGB",
                      help="the channel order it expects (--mean/--std are in this order)")
    onnx.add_argument("--scale", type=_fraction, default=1 / 255, help="pixel scale, e.g. 1/255")
    onnx.add_argument("--layout", choices=["NCHW", "NHWC"], default="NCHW", help="its input layout")
    onnx.add_argument("--verify-images", help="folder of real images to verify on (default: synthetic)")
    p.set_defaults(main=main, torch_only=torch_only)


def _square(sizes: list[int]) -> list[int]:
    return sizes * 2 if len(sizes) == 1 else sizes


def main(args: argparse.Namespace) -> int:
    fmt = args.format or ("tflite" if (args.output or "").lower().endswith(".tflite") else "onnx")
    from_onnx = args.model.lower().endswith(".onnx")
    if fmt == "tflite" and from_onnx:
        raise EdgeCamError("--format tflite converts torch models; an existing .onnx classifier exports to ONNX only.")
    if from_onnx:
        return _export_onnx(args)
    torch_export = opt.import_exporter("edge_cam_export.torch_export", "exporting")
    if args.list_layers:
        print("\n".join(torch_export.list_layers(args.model, args.num_classes)))
        return 0
    if not args.output:
        raise EdgeCamError("export needs an output path: -o OUT.onnx.")
    size = _square(args.input_size or [224])
    if len(size) != 2 or min(size) < 8:
        raise EdgeCamError("--input-size takes one size S or two sizes H W, each at least 8.")
    opt.groups_need_classes(args)
    with opt.watch_flags():
        result = torch_export.export(
            args.model, args.output, weights=args.weights, num_classes=args.num_classes,
            labels_file=args.labels, input_size=tuple(size), top_k=args.top_k, cam=not args.no_cam,
            feature_layer=args.feature_layer, classifier=args.classifier, mean=tuple(args.mean),
            std=tuple(args.std), resize=args.resize, threshold=args.threshold, opset=args.opset,
            exporter=args.exporter, quantize=args.quantize, calibration=args.calibration, format=fmt,
            precision=args.precision, keep_float=tuple(args.keep_float or ()), classes=tuple(args.classes or ()),
            groups_file=args.groups, min_agreement=args.min_agreement, force=args.force, holdout=args.held_out)
    print(f"wrote {result.path} ({os.path.getsize(result.path) / 1e6:.1f} MB)")
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    """An ONNX classifier the user already has: graph surgery, no torch (edge_cam_export.graph.surgery)."""
    given = [a.option_strings[-1] for a in args.torch_only if getattr(args, a.dest) != a.default]
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise EdgeCamError(f"{', '.join(given)} {verb} to torch models only; an ONNX model's CAM layers are "
                           "found in its graph.")
    if not args.output:
        raise EdgeCamError("export needs an output path: -o OUT.onnx.")
    if args.input_size is not None and len(args.input_size) not in (1, 2):
        raise EdgeCamError("--input-size takes one size S or two sizes H W.")
    from edge_cam_export.graph.surgery import cam_from_onnx  # needs the onnx extra: imported only here
    result = cam_from_onnx(
        args.model, args.output, input_size=args.input_size and _square(args.input_size), color=args.color,
        layout=args.layout, scale=args.scale, mean=args.mean, std=args.std,
        labels=read_labels(args.labels) if args.labels else None, top_k=args.top_k, resize_mode=args.resize or "stretch",
        threshold=DEFAULT_THRESHOLD if args.threshold is None else args.threshold, verify_images=args.verify_images)
    h, cam = result.head, result.info.cam
    assert cam is not None and cam.feature_size is not None  # surgery always writes a CAM with its map's size
    print(f"found {h.kind} head: feature map {h.feature!r} {list(cam.feature_size)}, classifier "
          f"{h.classifier!r} ({h.num_classes} classes), pooled by {h.pool!r}", file=sys.stderr)
    print(f"verified on {result.verification}", file=sys.stderr)
    print(f"wrote {result.path} ({os.path.getsize(result.path) / 1e6:.1f} MB)")
    return 0
