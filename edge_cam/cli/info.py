"""`edge-cam info`: a model's inputs, outputs and edge-cam metadata."""
from __future__ import annotations

import argparse
import json

from ..backends import open_backend
from ..metadata import ModelInfo, check_graph
from .options import model_file

MAX_LABELS = 8  # a 1000-class label list would bury the rest: show its head and its length


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="print a model's inputs, outputs and edge-cam metadata")
    p.add_argument("model", help="an .onnx or .tflite model")
    p.set_defaults(main=main)


def main(args: argparse.Namespace) -> int:
    backend = open_backend(model_file(args.model), providers=["cpu"], threads=1)
    print(args.model)
    for kind, tensors in (("input", backend.inputs), ("output", backend.outputs)):
        for t in tensors:
            typ = str(t.dtype) + (f" (scale {t.quant[0]:g}, zero point {t.quant[1]:d})" if t.quant else "")
            print(f"  {kind:6s} {t.name:10s} {typ:16s} {list(t.shape)}{'  optional (has a default)' if t.optional else ''}")
    props = backend.props
    if not any(k.startswith("edge_cam.") for k in props):
        print("  no edge_cam metadata: not an edge-cam model")
        return 0
    info = ModelInfo.from_props(props, args.model)
    logits = next((t for t in backend.outputs if t.name == "logits"), None)  # what the loader checks, too
    check_graph(info, backend.inputs[0].shape, logits.shape[-1] if logits is not None else None, args.model)
    print(f"  role   {'CAM teacher' if info.cam else 'classifier (student)'}")
    for k in sorted(props):
        if k.startswith("edge_cam."):
            v = json.loads(props[k])
            if k == "edge_cam.labels" and len(v) > MAX_LABELS:
                v = v[:5] + ["...", f"({len(v)} labels)"]
            print(f"  {k}: {json.dumps(v)}")
    return 0
