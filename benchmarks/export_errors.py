"""Export one network of each supported torchvision family (random weights, eval mode) and print
the verification errors against the eager hook-based reference, as a markdown table.

    .venv/bin/python benchmarks/export_errors.py [--input-size 224] [--out benchmarks/results/export_errors.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import date

import torch
import torchvision

from edge_cam_export import export_module

FAMILIES = ["resnet18", "resnext50_32x4d", "wide_resnet50_2", "googlenet", "mobilenet_v2",
            "efficientnet_b0", "densenet121", "shufflenet_v2_x0_5", "mnasnet0_5", "regnet_y_400mf",
            "squeezenet1_1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "export_errors.md"))
    args = ap.parse_args()
    rows = [f"Export verification, random weights, eval mode, input {args.input_size}x{args.input_size}, "
            f"batches 1 and 3; {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{date.today()}; `python benchmarks/export_errors.py --input-size {args.input_size}`", "",
            "| model | feature layer | classifier | CAM error / range | logits error / range | export s |",
            "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(FAMILIES, 1):
            print(f"[{i}/{len(FAMILIES)}] {name}", flush=True)
            torch.manual_seed(0)
            kwargs = {"init_weights": True} if name == "googlenet" else {}
            model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
            t0 = time.perf_counter()
            r = export_module(model, os.path.join(tmp, name + ".onnx"), input_size=(args.input_size,) * 2,
                              quiet=True, verify_batches=(1, 3))
            cam = max(x.cam_error for x in r.reports)
            logit = max(x.logit_error for x in r.reports)
            rows.append(f"| {name} | {r.info.cam.feature_layer} | {r.info.cam.classifier} | {cam:.1e} | "
                        f"{logit:.1e} | {time.perf_counter() - t0:.1f} |")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
