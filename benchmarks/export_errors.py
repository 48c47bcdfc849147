"""Export one network of each supported torchvision family (random weights, eval mode) and print
the verification errors against the eager hook-based reference, as a markdown table.

    .venv/bin/python benchmarks/export_errors.py [--input-size 224] [--out benchmarks/results/export_errors.md]
"""
from __future__ import annotations

import os
import tempfile
import time

import torch
import torchvision
from common import header, parser, write

from edge_cam.model import Model
from edge_cam_export import export_module

FAMILIES = ["resnet18", "resnext50_32x4d", "wide_resnet50_2", "googlenet", "mobilenet_v2",
            "efficientnet_b0", "densenet121", "shufflenet_v2_x0_5", "mnasnet0_5", "regnet_y_400mf",
            "squeezenet1_1"]
QUICK = ["squeezenet1_1"]


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--input-size", type=int, default=224)
    args = ap.parse_args()
    families = QUICK if args.quick else FAMILIES
    rows = [header(f"Export verification per family (random weights, eval mode, input {args.input_size}, "
                   f"batches 1 and 3, torch {torch.__version__})"), "",
            "| model | feature layer | classifier | input size | CAM error / range | logits error / range | export s |",
            "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(families, 1):
            print(f"[{i}/{len(families)}] {name}", flush=True)
            torch.manual_seed(0)
            kwargs = {"init_weights": True} if name == "googlenet" else {}
            model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
            t0 = time.perf_counter()
            r = export_module(model, os.path.join(tmp, name + ".onnx"), input_size=(args.input_size,) * 2,
                              quiet=True, verify_batches=(1, 3))
            cam = max(x.cam_error for x in r.reports)
            logit = max(x.logit_error for x in r.reports)
            seconds = time.perf_counter() - t0  # the export and its checks
            size = "dynamic" if Model(r.path, providers=["cpu"]).dynamic_size else "fixed"
            rows.append(f"| {name} | {r.info.cam.feature_layer} | {r.info.cam.classifier} | {size} | {cam:.1e} | "
                        f"{logit:.1e} | {seconds:.1f} |")
    write("export_errors.md", "\n".join(rows))


if __name__ == "__main__":
    main()
