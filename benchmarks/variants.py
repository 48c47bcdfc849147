"""One teacher, every format: the real MobileNetV2 as fp32 ONNX, int8 ONNX (as `export --quantize int8`
makes it by default: blocks whose noise flips answers kept float; and the whole backbone in int8,
--min-agreement 0), fp16 ONNX, and fp32 / int8 TFLite where litert-torch is installed; and resnet18
(random weights: speed only) in fp32 and int8. Calibrated on the raccoon photos the way the export
splits them (one in three held out), measured on the held-out raccoons and the 9 shared photos:
drift against fp32, CorLoc@0.5 (held-out raccoons), graph latency and file size.

    python benchmarks/variants.py [--threads 1] [--runs 200] [--quick]
"""
from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from typing import Any

import numpy as np
from common import DATA, WEIGHTS, header, parser, teacher, write

from edge_cam.errors import EdgeCamError
from edge_cam.measure.evaluate import evaluate, read_labelled
from edge_cam.model import Model
from edge_cam.source import list_images, read_image
from edge_cam_export import export
from edge_cam_export.quantise.drift import HOLDOUT_EVERY, drift
from edge_cam_export.quantise.precision import convert_fp16, quantize_int8


def timed(models: dict[str, Model], x: np.ndarray, runs: int) -> dict[str, list[float]]:
    """Round robin after a warm-up, so that the machine's load falls on every variant alike."""
    for m in models.values():
        for _ in range(10):
            m.run(x)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(runs):
        for name, m in models.items():
            t0 = time.perf_counter()
            m.run(x)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    runs = 20 if args.quick else args.runs
    tmp = tempfile.mkdtemp()
    raccoons = str(DATA / "raccoon" / "images")
    if args.quick:  # a dozen calibration photos: the page builds, the figures mean nothing
        quick = os.path.join(tmp, "quick")
        os.makedirs(quick)
        for p in list_images([raccoons])[:12]:
            os.symlink(p, os.path.join(quick, os.path.basename(p)))
        raccoons = quick
    photos = str(DATA / "images")
    fp32_path = teacher(args, tmp)
    gate = dict(calibration=raccoons, holdout=photos)
    # ONNX variants are made from the one fp32 export, as `export --quantize/--precision` makes them
    onnx_variants: dict[str, tuple[str, dict[str, Any] | None]] = {
        "int8 ONNX (default: blocks that flip answers kept float)": ("int8.onnx", dict(gate)),
        "int8 ONNX (whole backbone, --min-agreement 0)": ("int8_all.onnx", {**gate, "min_agreement": 0.0}),
        "fp16 ONNX": ("fp16.onnx", None)}
    if args.quick:
        del onnx_variants["int8 ONNX (default: blocks that flip answers kept float)"]  # its search takes minutes
    tflite: dict[str, tuple[str, dict[str, Any]]] = {}
    if importlib.util.find_spec("litert_torch") and not args.quick:
        tflite = {"fp32 TFLite": ("fp32.tflite", dict(format="tflite")),
                  "int8 TFLite (whole, --min-agreement 0)": ("int8.tflite", dict(format="tflite", quantize="int8", **gate,
                                                                                 min_agreement=0.0))}
    models = {"fp32 ONNX": (Model(fp32_path, threads=args.threads), 0.0)}
    notes, kept = [], {}
    for name, (file, options) in {**onnx_variants, **tflite}.items():
        print(f"making {name}", flush=True)
        path = os.path.join(tmp, file)
        t0 = time.perf_counter()
        try:
            if options is None:
                d = convert_fp16(fp32_path, path)
            elif name in tflite:
                d = export("torchvision:mobilenet_v2", path, weights=str(WEIGHTS), quiet=True, **options).drift
            else:
                d = quantize_int8(fp32_path, path, quiet=True, **options)
        except EdgeCamError as e:
            notes.append(f"{name}: not made ({e})")
            print(notes[-1], flush=True)
            continue
        if d and d.get("kept_float"):
            kept[name] = (d["kept_float"], d["int8_mac_share"])
        models[name] = (Model(path, threads=args.threads), time.perf_counter() - t0)

    fp32 = models["fp32 ONNX"][0]
    labelled = read_labelled(str(DATA / "raccoon"))
    held_labelled = [a for i, a in enumerate(labelled) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    if args.quick:
        held_labelled = held_labelled[:6]
    held = [a.image for a in held_labelled] + list_images([photos])
    batches = [fp32.prepare(read_image(p))[0][None] for p in held]
    times = timed({n: m for n, (m, _) in models.items()}, batches[0], runs)
    base = float(np.median(times["fp32 ONNX"]))
    rows = ["| variant | size MB | graph ms (median, p95) | speed vs fp32 | top-1 agreement (all / clear) | "
            "fp32 top-1 in top-5 | CAM corr. | box IoU | CorLoc@0.5 | made in s |", "|---|---|---|---|---|---|---|---|---|---|"]
    d = {}
    for name, (m, seconds) in models.items():
        d = drift(fp32, m, batches)
        ev = evaluate(m, held_labelled)
        ms = float(np.median(times[name]))
        clear = f"{d['top1_agreement_clear']:.1%}" if d["top1_agreement_clear"] is not None else "–"
        rows.append(f"| {name} | {os.path.getsize(m.path) / 1e6:.1f} | {ms:.2f}, {np.percentile(times[name], 95):.2f} | "
                    f"{base / ms:.2f}× | {d['top1_agreement']:.1%} / {clear} | {d['top1_in_top5']:.0%} | "
                    f"{d['cam_correlation_median']:.4f} | {d['box_iou_median']:.3f} | {ev.corloc:.3f} | {seconds:.0f} |")
        print(rows[-1], flush=True)
    for name, (units, share) in kept.items():
        notes.append(f"{name}: {share:.0%} of the backbone's multiply-adds in int8; float: {', '.join(units)}.")

    # resnet18: random weights, so agreement says nothing; int8's speed is the question (not in a
    # quick run: one more export).
    resnet = "not measured (a quick run)"
    if not args.quick:
        res = {"fp32": os.path.join(tmp, "r18.onnx"), "int8": os.path.join(tmp, "r18_int8.onnx")}
        export("torchvision:resnet18", res["fp32"], quiet=True)
        quantize_int8(res["fp32"], res["int8"], raccoons, min_agreement=0.0, quiet=True)
        r18 = {k: Model(v, threads=args.threads) for k, v in res.items()}
        t18 = timed(r18, r18["fp32"].prepare(read_image(held[0]))[0][None], runs)
        fp, q = float(np.median(t18["fp32"])), float(np.median(t18["int8"]))
        resnet = f"fp32 {fp:.2f} ms, int8 {q:.2f} ms, {fp / q:.2f}× (medians of {runs}, round robin)"
    text = (header(f"Formats and precisions: MobileNetV2 (real ImageNet weights) at 224, calibrated on the raccoon "
                   f"photos as the export splits them, measured on {len(held)} held-out photos ({len(held_labelled)} "
                   f"raccoons, {len(held) - len(held_labelled)} shared photos), {args.threads} thread(s), batch 1, "
                   f"median of {runs} runs (round robin)") + "\n" + "\n".join(rows) + "\n\n" +
            f"'clear': photos where fp32's top-1 leads its top-2 by ≥ 0.5 logit ({d.get('clear_images')} of "
            f"{d.get('images')}); raccoon is not an ImageNet class, so many photos are near ties between badger, fox "
            "and ferret, which flip under any perturbation.\n\n"
            f"resnet18 (random weights, speed only), int8 whole backbone: {resnet}." +
            ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else ""))
    write("variants.md", text)


if __name__ == "__main__":
    main()
