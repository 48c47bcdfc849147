"""Tracing a torch classifier → a self-describing ONNX graph with its CAM folded in (torch).

Workstation only: torch is imported here and in the modules beside it, never by edge_cam.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import torch
from torch import nn

from edge_cam.errors import EdgeCamError
from edge_cam.metadata import (
    DEFAULT_THRESHOLD,
    IMAGENET_FUSE_TOP,
    IMAGENET_MEAN,
    IMAGENET_STD,
    IMAGENET_THRESHOLD,
    PREFIX,
    CamSpec,
    InputSpec,
    ModelInfo,
    read_labels,
    rewrite_metadata,
)
from edge_cam.model import Model
from edge_cam.watch import WatchList

from .common.progress import progress
from .graph.cam_graph import CamGraph, features_only, split_outputs, to_onnx
from .graph.checks import extra_reports
from .graph.eager import compare
from .graph.gradcam import GradHead
from .graph.heads import CamLayers, find_cam_layers, trace
from .graph.models import build_model, imagenet_labels, load_weights
from .graph.verify import Report, sample_images
from .quantise.drift import MIN_AGREEMENT, describe
from .tflite.convert import TfliteCheck, export_tflite, litert_torch  # litert-torch itself: only when converting


@dataclass
class ExportResult:
    path: str
    info: ModelInfo
    reports: list[Report]
    layers: CamLayers | None
    drift: dict | None = None  # int8 against fp32, when quantised
    tflite: TfliteCheck | None = None  # a .tflite export against eager and ONNX Runtime


def _progress(step: int, total: int, text: str, quiet: bool) -> None:
    progress(f"[{step}/{total}] {text}", quiet)


def export_module(model: nn.Module, out: str, *, input_size: tuple[int, int] = (224, 224),
                  labels: list[str] | None = None, top_k: int = 5, cam: bool = True,
                  feature_layer: str | None = None, classifier: str | None = None,
                  mean=IMAGENET_MEAN, std=IMAGENET_STD, resize: str = "stretch",
                  threshold: float = DEFAULT_THRESHOLD, fuse_top: int = 1, opset: int = 18, exporter: str = "dynamo",
                  source: dict | None = None, verify_batches: tuple[int, ...] = (2,),
                  quiet: bool = False, format: str = "onnx", class_query: bool = True,
                  dynamic_size: bool = True, classes: Sequence[str | int] = (),
                  groups_file: str | None = None) -> ExportResult:
    """Export an nn.Module (any GAP classifier) and verify it; the Python API behind the CLI.

    class_query: a CAM teacher takes an int64 `class_query` input and returns the maps and scores
    of those classes too (query_cams, query_scores), from the same forward pass. dynamic_size: the
    image's height and width are dynamic (input_size stays the default), where the network allows.

    format "tflite" converts the same graph with litert-torch after the ONNX export, which stays
    as the reference the .tflite is checked against (and is then removed). A TFLite graph has one
    fixed signature, so it takes no class query: `classes` (a watch list: labels, ids or groups, as
    `run --classes` takes them; `groups_file` for the user's own groups) bakes those classes' maps
    into it instead, returned on every run."""
    if format not in ("onnx", "tflite"):
        raise EdgeCamError(f"unknown export format {format!r}; use onnx or tflite.")
    if classes and format != "tflite":
        raise EdgeCamError("classes: baking a watch list is for TFLite teachers; an ONNX teacher maps any "
                           "class at run time (its class_query input), so export it without classes.")
    if classes and not cam:
        raise EdgeCamError("classes: a plain classifier (no CAM) has no maps to bake; export a teacher.")
    if format == "tflite":
        litert_torch()  # a missing extra fails now, not after the ONNX export
        # LiteRT's shapes are fixed: one size, no query input. The ONNX reference takes queries
        # only to check the baked classes' maps against.
        class_query, dynamic_size = bool(classes), False
    model = model.eval()
    steps = 4 if format == "onnx" else 6
    onnx_out = out if format == "onnx" else out + ".reference.onnx"
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
                expected = "a 4-D map" if layers.weight is None else f"{layers.weight.shape[1]} channels in a 4-D map"
                raise EdgeCamError(
                    f"the feature layer gives shape {tuple(feat.shape)}, but the classifier expects "
                    f"{expected}; check --feature-layer.")
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
    baked = WatchList.parse(list(classes), labels, groups_file, num_classes).class_ids if classes else None
    k = max(1, min(top_k, num_classes))
    grad_head = None
    if layers is not None and layers.method == "gradcam":
        assert layers.gap is not None and layers.head is not None  # what makes their method Grad-CAM
        grad_head = GradHead(layers.graph, layers.feature_node, layers.gap, layers.head)
    graph = CamGraph(body, mean, std, k, layers.weight if layers is not None else None, grad_head).eval()

    cam_spec = None
    if layers is not None:
        fh, fw = feat.shape[2:]
        stride = input_size[0] / fh
        stride = int(stride) if stride.is_integer() and input_size[1] == fw * stride else round(stride, 3)
        cam_spec = CamSpec(method=layers.method, feature_layer=layers.feature_layer, classifier=layers.classifier,
                           stride=stride, feature_size=(int(fh), int(fw)), threshold=threshold,
                           fuse_top=max(1, min(fuse_top, k)), class_query=class_query)
    src = {"torch": torch.__version__, "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           **(source or {})}
    info = ModelInfo(InputSpec((input_size[0], input_size[1]), "RGB", resize, tuple(mean), tuple(std)), labels, cam_spec, src)

    _progress(2, steps, f"exporting to ONNX ({exporter}, opset {opset}, top-{k}"
              f"{', ' + layers.method + ' of ' + layers.feature_layer if layers else ', no CAM'})", quiet)
    t0 = time.perf_counter()
    tmp = onnx_out + ".tmp.onnx"
    os.makedirs(os.path.dirname(os.path.abspath(onnx_out)), exist_ok=True)
    try:
        dynamic = to_onnx(graph, torch.from_numpy(sample_images(2, input_size)), tmp, opset, exporter,
                          class_query, dynamic_size)
        _progress(3, steps, f"writing metadata ({time.perf_counter() - t0:.1f} s to export, "
                  f"input size {'dynamic' if dynamic else 'fixed'})", quiet)
        rewrite_metadata(tmp, onnx_out, info.to_props(), drop_prefix=PREFIX)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _progress(4, steps, "verifying ONNX Runtime against the eager model", quiet)
    try:
        runtime, reports = _verify_onnx(onnx_out, model, layers, input_size, mean, std, verify_batches, quiet)
        if format == "onnx":
            return ExportResult(out, info, reports, layers)
        _progress(5, steps, "converting to TFLite with litert-torch (batch 1)", quiet)
        if baked is not None and info.cam is not None:
            info = replace(info, cam=replace(info.cam, class_query=False, baked_classes=tuple(baked.tolist())))
            progress(f"      baking the maps of {len(baked)} classes: "
                     f"{', '.join(info.label(int(c)) for c in baked[:6])}{', ...' if len(baked) > 6 else ''}", quiet)
        check = export_tflite(graph, info, out, model=model, layers=layers, onnx_model=runtime,
                              verify_batches=verify_batches, quiet=quiet,
                              log=lambda text: _progress(6, steps, text, quiet))
        return ExportResult(out, info, check.eager, layers, tflite=check)
    finally:
        if format == "tflite":  # the ONNX file was only the reference
            if os.path.exists(onnx_out):
                os.remove(onnx_out)


def _verify_onnx(path, model, layers, input_size, mean, std, verify_batches, quiet) -> tuple[Model, list[Report]]:
    runtime = Model(path, providers=["CPUExecutionProvider"], spinning=False)
    reports = []
    for i, b in enumerate(verify_batches):
        images = sample_images(b, input_size, seed=100 + i)
        reports.append(compare(model, layers, runtime.run(images), images, mean, std))
    reports += extra_reports(model, layers, runtime, input_size, mean, std)  # class queries, another size
    for r in reports:
        progress(f"      {r}", quiet)
    if not all(r.ok for r in reports):
        os.replace(path, path + ".failed.onnx")
        raise EdgeCamError(f"the exported graph disagrees with the eager model ({reports[-1]}); "
                           f"kept it as {path}.failed.onnx for inspection.")
    return runtime, reports


def export(spec: str, out: str, *, weights: str | None = None, num_classes: int | None = None,
           labels_file: str | None = None, quantize: str | None = None, calibration: str | None = None,
           precision: str = "fp32", keep_float: tuple[str, ...] = (), min_agreement: float = MIN_AGREEMENT,
           force: bool = False, holdout: str | None = None, **kwargs) -> ExportResult:
    """`edge-cam export MODEL -o OUT`: build, load weights, export, verify (and quantise or halve).
    int8 is checked on held-out photos (one in three of `calibration`, and `holdout`) and refused
    below `min_agreement` top-1 agreement with fp32, unless `force`."""
    if quantize or precision != "fp32":
        return _reduced(spec, out, quantize, precision, calibration, keep_float,
                        dict(weights=weights, num_classes=num_classes, labels_file=labels_file, **kwargs),
                        dict(min_agreement=min_agreement, force=force, holdout=holdout))
    model = build_model(spec, num_classes)
    if weights:
        load_weights(model, weights, spec)
    labels = read_labels(labels_file) if labels_file else None
    imagenet = spec.startswith(("torchvision:", "timm:")) and (num_classes or 1000) == 1000
    if labels is None and imagenet:
        labels = imagenet_labels()
    defaulted = kwargs.get("resize") is None or kwargs.get("threshold") is None
    if kwargs.get("resize") is None:
        # Localisation needs the whole frame: the ImageNet centre crop (shorter side to 256, 224 out of
        # the middle) hides the edges, where objects often are. Letterbox keeps the aspect the weights
        # were trained with (stretched, hot_dog.jpg reads "burrito"; letterboxed, "hotdog").
        kwargs["resize"] = "letterbox" if imagenet else "stretch"
    if imagenet:  # measured for ImageNet classifiers (edge_cam.metadata); others keep the paper's rule
        kwargs["threshold"] = IMAGENET_THRESHOLD if kwargs.get("threshold") is None else kwargs["threshold"]
        kwargs.setdefault("fuse_top", IMAGENET_FUSE_TOP)
        if defaulted:  # defaults that differ from other exports' deserve a word
            progress(f"resize {kwargs['resize']}, CAM threshold {kwargs['threshold']:g}, top-{kwargs['fuse_top']} "
                     "maps fused: the defaults measured for ImageNet classifiers (--resize crop for the weights' own "
                     "centre crop, --threshold to change it)", kwargs.get("quiet", False))
    elif kwargs.get("threshold") is None:
        kwargs["threshold"] = DEFAULT_THRESHOLD
    source = {"model": spec, "weights": os.path.basename(weights) if weights else None}
    return export_module(model, out, labels=labels, source=source, **kwargs)


def _reduced(spec: str, out: str, quantize: str | None, precision: str, calibration: str | None,
             keep_float: tuple[str, ...], options: dict, int8: dict) -> ExportResult:
    """Export in fp32 next to `out`, then quantise it to int8 or halve it to fp16 into `out`; the
    drift against fp32 is printed and kept in the result. `int8`: quantize_int8's gate options
    (min_agreement, force, holdout)."""
    if quantize not in (None, "int8"):
        raise EdgeCamError(f"--quantize {quantize} is not supported; use int8.")
    if precision not in ("fp32", "fp16"):
        raise EdgeCamError(f"--precision {precision} is not supported; use fp32 or fp16.")
    if quantize and precision == "fp16":
        raise EdgeCamError("choose one of --quantize int8 and --precision fp16.")
    if quantize and not calibration:
        raise EdgeCamError("--quantize int8 needs --calibration DIR: real images like those it will see.")
    tflite = options.get("format") == "tflite"
    if tflite and precision == "fp16":
        raise EdgeCamError("--precision fp16 is for ONNX (TensorRT, CUDA); export TFLite in fp32 or int8.")
    if tflite and keep_float:
        raise EdgeCamError("--keep-float applies to ONNX int8 exports only.")
    quiet = bool(options.get("quiet"))
    fp32 = out + (".fp32.tflite" if tflite else ".fp32.onnx")
    result = export(spec, fp32, **options)
    from .quantise.precision import convert_fp16, quantize_int8
    try:
        if quantize:
            assert calibration  # checked above: int8 needs it
            progress(("[7/7] int8: static quantisation with ai-edge-quantizer" if tflite
                      else "[5/5] int8: static QDQ quantisation") + " (the CAM head stays float)", quiet)
            result.drift = quantize_int8(fp32, out, calibration, keep_float=list(keep_float), quiet=quiet, **int8)
        else:
            progress("[5/5] fp16: weights and activations in half precision", quiet)
            result.drift = convert_fp16(fp32, out, calibration)
            progress(f"      fp16 against fp32 on {result.drift['images']} images: {describe(result.drift)}", quiet)
    finally:
        os.remove(fp32)
    result.path = out
    return result


def list_layers(spec: str, num_classes: int | None = None) -> list[str]:
    gm, names = trace(build_model(spec, num_classes))
    return [names.get(n, n.name) for n in gm.graph.nodes if n.op not in ("placeholder", "output")]


__all__ = ["export", "export_module", "list_layers", "ExportResult", "find_cam_layers"]

