"""One teacher, every format: the real MobileNetV2 as fp32 ONNX, int8 ONNX (all of the backbone,
and with its last stage kept float), fp16 ONNX, and fp32 / int8 TFLite where litert-torch is
installed. Calibrated on the even raccoon photos, measured on the odd ones (never seen in
calibration): drift against fp32, CorLoc@0.5, graph latency and file size.

    python benchmarks/variants.py [--threads 2] [--runs 200]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import tempfile
import time

import numpy as np
from common import header, write

from edge_cam.errors import EdgeCamError
from edge_cam.model import Model
from edge_cam.source import read_image
from edge_cam.tools.evaluate import evaluate, read_labelled
from edge_cam_export import export
from edge_cam_export.drift import drift

DATA = pathlib.Path(os.environ.get("EDGE_CAM_SHARED_DATA", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))
LATE_STAGE = ("features.14", "features.15", "features.16")  # MobileNetV2's 160-channel stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    weights = str(DATA / "models" / "mobilenet_v2_imagenet.pt")
    anns = read_labelled(str(DATA / "raccoon"))
    calib, held = anns[0::2], anns[1::2]
    tmp = tempfile.mkdtemp()
    cal = os.path.join(tmp, "calibration")
    os.makedirs(cal)
    for a in calib:
        os.symlink(a.image, os.path.join(cal, os.path.basename(a.image)))
    common = dict(weights=weights, quiet=True)
    variants = {"fp32 ONNX": ("fp32.onnx", {}),
                "int8 ONNX (backbone)": ("int8.onnx", dict(quantize="int8", calibration=cal)),
                f"int8 ONNX ({', '.join(LATE_STAGE)} float)": ("int8_late.onnx", dict(
                    quantize="int8", calibration=cal, keep_float=LATE_STAGE)),
                "fp16 ONNX": ("fp16.onnx", dict(precision="fp16"))}
    if importlib.util.find_spec("litert_torch"):
        variants["fp32 TFLite"] = ("fp32.tflite", dict(format="tflite"))
        variants["int8 TFLite"] = ("int8.tflite", dict(format="tflite", quantize="int8", calibration=cal))
    models, notes = {}, []
    for name, (file, options) in variants.items():
        print(f"exporting {name}", flush=True)
        t0 = time.perf_counter()
        try:
            export("torchvision:mobilenet_v2", os.path.join(tmp, file), **common, **options)
        except EdgeCamError as e:
            notes.append(f"{name}: not made ({e})")
            print(notes[-1], flush=True)
            continue
        models[name] = (Model(os.path.join(tmp, file), threads=args.threads), time.perf_counter() - t0)

    fp32 = models["fp32 ONNX"][0]
    batches = [fp32.prepare(read_image(a.image))[0][None] for a in held]
    x = batches[0]
    for m, _ in models.values():  # warm-up
        for _ in range(10):
            m.run(x)
    times = {name: [] for name in models}
    for _ in range(args.runs):  # round robin, so load on the machine falls on every variant alike
        for name, (m, _) in models.items():
            t0 = time.perf_counter()
            m.run(x)
            times[name].append((time.perf_counter() - t0) * 1e3)
    base = float(np.median(times["fp32 ONNX"]))
    rows = ["| variant | size MB | graph ms (median, p95) | speed vs fp32 | top-1 agreement (all / clear) | "
            "fp32 top-1 in top-5 | CAM corr. | box IoU | CorLoc@0.5 | export s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, (m, seconds) in models.items():
        d = drift(fp32, m, batches)
        e = evaluate(m, held)
        ms = float(np.median(times[name]))
        clear = f"{d['top1_agreement_clear']:.0%}" if d["top1_agreement_clear"] is not None else "–"
        rows.append(f"| {name} | {os.path.getsize(m.path) / 1e6:.1f} | {ms:.2f}, {np.percentile(times[name], 95):.2f} | "
                    f"{base / ms:.2f}× | {d['top1_agreement']:.0%} / {clear} | {d['top1_in_top5']:.0%} | "
                    f"{d['cam_correlation_median']:.4f} | {d['box_iou_median']:.3f} | {e.corloc:.3f} | {seconds:.0f} |")
        print(rows[-1], flush=True)
    text = (header(f"Formats and precisions: MobileNetV2 (real ImageNet weights) at 224, calibrated on the "
                   f"{len(calib)} even raccoon photos, measured on the {len(held)} odd ones, "
                   f"{args.threads} threads, batch 1, median of {args.runs} runs (round robin)") + "\n" +
            "\n".join(rows) + "\n\n" + f"'clear': images where fp32's top-1 leads its top-2 by ≥ 0.5 logit "
            f"({d['clear_images']} of {d['images']}); raccoon is not an ImageNet class, so many photos are near "
            "ties between badger, fox and ferret, which flip under any perturbation." +
            ("\n\n" + "\n".join(notes) if notes else ""))
    write("variants.md", text)


if __name__ == "__main__":
    main()
