"""edge-cam export: a torch classifier → a self-describing ONNX graph with its CAM folded in.

Workstation only: this is the one part of edge-cam that imports torch.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import torch
from torch import nn

from edge_cam.errors import EdgeCamError
from edge_cam.metadata import DEFAULT_THRESHOLD, CamSpec, InputSpec, ModelInfo
from edge_cam.model import Model

from .gradcam import GradHead
from .graph import CamGraph, features_only, split_outputs, to_onnx, write_metadata
from .heads import CamLayers, find_cam_layers, trace
from .models import build_model, imagenet_labels, load_weights
from .verify import Report, compare, sample_images

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ExportResult:
    path: str
    info: ModelInfo
    reports: list[Report]
    layers: CamLayers | None
    drift: dict | None = None  # int8 against fp32, when quantised


def _progress(step: int, total: int, text: str, quiet: bool) -> None:
    if not quiet:
        print(f"[{step}/{total}] {text}", file=sys.stderr, flush=True)


def read_labels(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except OSError as e:
        raise EdgeCamError(f"cannot read labels file {path} ({e.strerror}).") from None


def export_module(model: nn.Module, out: str, *, input_size: tuple[int, int] = (224, 224),
                  labels: list[str] | None = None, top_k: int = 5, cam: bool = True,
                  feature_layer: str | None = None, classifier: str | None = None,
                  mean=IMAGENET_MEAN, std=IMAGENET_STD, resize: str = "stretch",
                  threshold: float = DEFAULT_THRESHOLD, opset: int = 18, exporter: str = "dynamo",
                  source: dict | None = None, verify_batches: tuple[int, ...] = (2,),
                  quiet: bool = False) -> ExportResult:
    """Export an nn.Module (any GAP classifier) and verify it; the Python API behind the CLI."""
    model = model.eval()
    steps = 4
    _progress(1, steps, f"tracing {type(model).__name__} and locating the CAM layers", quiet)
    layers = find_cam_layers(model, feature_layer, classifier) if cam else None
    with torch.no_grad():
        probe = torch.zeros(1, 3, *input_size)
        if layers is not None:
            body = split_outputs(layers)
            feat, logits = body(probe)
            if layers.method == "gradcam":
                body = features_only(model, layers)
            if feat.dim() != 4 or (layers.weight is not None and feat.shape[1] != layers.weight.shape[1]):
                raise EdgeCamError(
                    f"the feature layer gives shape {tuple(feat.shape)}, but the classifier expects "
                    f"{layers.weight.shape[1]} channels in a 4-D map; check --feature-layer.")
        else:
            body, _ = trace(model)
            logits = body(probe)
    if logits.dim() != 2:
        raise EdgeCamError(f"the model's output has shape {tuple(logits.shape)}; a classifier "
                           "must return logits of shape (batch, classes).")
    num_classes = logits.shape[1]
    labels = list(labels or [])
    if labels and len(labels) != num_classes:
        raise EdgeCamError(f"{len(labels)} labels were given for a model with {num_classes} classes.")
    k = max(1, min(top_k, num_classes))
    grad_head = GradHead(layers.graph, layers.feature_node, layers.gap, layers.head) \
        if layers is not None and layers.method == "gradcam" else None
    graph = CamGraph(body, mean, std, k, layers.weight if layers is not None else None, grad_head).eval()

    cam_spec = None
    if layers is not None:
        fh, fw = feat.shape[2:]
        stride = input_size[0] / fh
        stride = int(stride) if stride.is_integer() and input_size[1] == fw * stride else round(stride, 3)
        cam_spec = CamSpec(method=layers.method, feature_layer=layers.feature_layer, classifier=layers.classifier,
                           stride=stride, feature_size=(int(fh), int(fw)), threshold=threshold)
    src = {"torch": torch.__version__, "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           **(source or {})}
    info = ModelInfo(InputSpec(tuple(input_size), "RGB", resize, tuple(mean), tuple(std)), labels, cam_spec, src)

    if layers is not None and layers.method == "gradcam" and exporter == "dynamo":
        # The dynamo exporter mistranslates the replayed MobileNetV3 head (its Grad-CAM is off by
        # the map's whole range, while TorchScript's matches autograd to 1e-6): until that is found,
        # Grad-CAM graphs go through TorchScript, and verification below guards either way.
        exporter = "torchscript"
    _progress(2, steps, f"exporting to ONNX ({exporter}, opset {opset}, top-{k}"
              f"{', ' + layers.method + ' of ' + layers.feature_layer if layers else ', no CAM'})", quiet)
    t0 = time.perf_counter()
    tmp = out + ".tmp.onnx"
    try:
        to_onnx(graph, torch.from_numpy(sample_images(2, input_size)), tmp, opset, exporter)
        _progress(3, steps, f"writing metadata ({time.perf_counter() - t0:.1f} s to export)", quiet)
        write_metadata(tmp, info.to_props(), out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)

    _progress(4, steps, "verifying ONNX Runtime against the eager model", quiet)
    runtime = Model(out, providers=["CPUExecutionProvider"], spinning=False)
    reports = []
    for i, b in enumerate(verify_batches):
        images = sample_images(b, input_size, seed=100 + i)
        reports.append(compare(model, layers, runtime.run(images), images, mean, std))
    for r in reports:
        if not quiet:
            print(f"      {r}", file=sys.stderr)
    if not all(r.ok for r in reports):
        os.replace(out, out + ".failed.onnx")
        raise EdgeCamError(f"the exported graph disagrees with the eager model ({reports[-1]}); "
                           f"kept it as {out}.failed.onnx for inspection.")
    return ExportResult(out, info, reports, layers)


def export(spec: str, out: str, *, weights: str | None = None, num_classes: int | None = None,
           labels_file: str | None = None, quantize: str | None = None, calibration: str | None = None,
           **kwargs) -> ExportResult:
    """`edge-cam export MODEL -o OUT`: build, load weights, export, verify (and quantise)."""
    if quantize:
        if quantize != "int8":
            raise EdgeCamError(f"--quantize {quantize} is not supported; use int8.")
        if not calibration:
            raise EdgeCamError("--quantize int8 needs --calibration DIR: real images like those it will see.")
        fp32 = out + ".fp32.onnx"
        result = export(spec, fp32, weights=weights, num_classes=num_classes, labels_file=labels_file, **kwargs)
        from .quantize import quantize_int8
        if not kwargs.get("quiet"):
            print(f"[5/5] int8: static QDQ quantisation on {calibration} (the CAM head stays float)",
                  file=sys.stderr, flush=True)
        try:
            result.drift = quantize_int8(fp32, out, calibration)
        finally:
            os.remove(fp32)
        if not kwargs.get("quiet"):
            d = result.drift
            print(f"      int8 against fp32 on {d['images']} images: top-1 agreement {d['top1_agreement']:.1%}, "
                  f"CAM correlation (median) {d['cam_correlation_median']:.4f}, box IoU (median) "
                  f"{d['box_iou_median']:.3f}", file=sys.stderr)
        result.path = out
        return result
    model = build_model(spec, num_classes)
    if weights:
        load_weights(model, weights, spec)
    labels = read_labels(labels_file) if labels_file else None
    if labels is None and spec.startswith("torchvision:") and (num_classes or 1000) == 1000:
        labels = imagenet_labels()
    source = {"model": spec, "weights": os.path.basename(weights) if weights else None}
    return export_module(model, out, labels=labels, source=source, **kwargs)


def list_layers(spec: str, num_classes: int | None = None) -> list[str]:
    gm, names = trace(build_model(spec, num_classes))
    return [names.get(n, n.name) for n in gm.graph.nodes if n.op not in ("placeholder", "output")]


__all__ = ["export", "export_module", "list_layers", "ExportResult", "find_cam_layers"]
