"""CAM-ify an ONNX classifier you already have, without torch: graph surgery with the `onnx` package.

The head is found by walking back from the model's output (onnx_head.py). The result takes the
same uint8 NHWC RGB `image` as `edge-cam export`'s graphs, normalises it inside the graph, and
returns logits, class_ids, scores and cams (CAM_c = W[c] · F, no bias, as the paper defines it)
(onnx_build.py). It is verified in ONNX Runtime against the original graph before it is written.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from edge_cam.backends.onnxruntime import open_session
from edge_cam.errors import EdgeCamError, first_line
from edge_cam.metadata import DEFAULT_THRESHOLD, IMAGENET_MEAN, IMAGENET_STD, RESIZE_MODES, CamSpec, InputSpec, ModelInfo
from edge_cam.preprocess import pad_colour, resize, to_rgb8
from edge_cam.source import list_images, read_image

from .onnx_source import SourceInput
from .verify import TOLERANCE, Report, logits_error, maps_error, sample_images, top1_agrees

try:  # an optional extra: the board runtime imports this module without it
    import onnx
    from onnx import TensorProto, helper

    from .onnx_build import build, graph_input, input_geometry
    from .onnx_head import Head, find_head
    _HAVE_ONNX = True
except ModuleNotFoundError as e:  # pragma: no cover - depends on the environment
    if e.name is None or e.name.split(".")[0] != "onnx":
        raise
    _HAVE_ONNX = False

MIN_OPSET = 11  # TopK with largest/sorted, GatherElements, Slice with inputs


@dataclass(frozen=True)
class SurgeryResult:
    path: str
    info: ModelInfo
    head: Head
    verification: Report  # against the original graph, CAMs against numpy's W·F of its feature map
    opset: int
    dynamic_batch: bool


def _need_onnx() -> None:
    if not _HAVE_ONNX:
        raise EdgeCamError("CAM-ifying an ONNX model needs the onnx package, which is not installed here; "
                           "install it with: pip install 'edge-cam[onnx]'.")


def load(path: str) -> onnx.ModelProto:
    _need_onnx()
    if not os.path.isfile(path):
        raise EdgeCamError(f"model file {path} does not exist; check the path.")
    try:
        model = onnx.load(path)
    except Exception as e:  # protobuf's DecodeError, external-data OSErrors, ...
        raise EdgeCamError(f"{path} is not a readable ONNX model ({type(e).__name__}); check the file.") from None
    if not model.graph.node or not model.graph.output:
        raise EdgeCamError(f"{path} is not a readable ONNX model (it has no nodes or no outputs); check the file.")
    return model


# --- verification -----------------------------------------------------------------------------

def _session(model, src: str):
    """The runtime's own ORT session, on a copy of `model` written to a temporary file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, os.path.basename(src))
        onnx.save(model, path)
        try:
            return open_session(path, ["CPUExecutionProvider"], threads=0, spinning=False)
        except EdgeCamError as e:  # its sentence names the temporary copy, not the user's file
            raise EdgeCamError(str(e).replace(path, src)) from None


def _reference(model, head: Head, pre: SourceInput, images: np.ndarray, src: str) -> tuple[np.ndarray, np.ndarray]:
    """The original graph's logits and feature map (as NCHW), one image at a time so a fixed
    batch of 1 works too."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for name in (head.logits, head.feature):
        if name not in have:
            probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    sess = _session(probe, src)
    x_name = graph_input(model).name
    outs = [sess.run([head.logits, head.feature], {x_name: pre.to_float(images[i:i + 1])})
            for i in range(len(images))]
    logits = np.concatenate([o[0] for o in outs])
    feats = np.concatenate([o[1] for o in outs])
    if logits.ndim != 2:
        raise EdgeCamError(f"the logits {head.logits!r} have shape {logits.shape[1:]} per image; a "
                           "classifier gives one vector of class scores.")
    if head.feature_layout == "NHWC":
        feats = feats.transpose(0, 3, 1, 2)
    if feats.ndim != 4 or feats.shape[1] != head.weight.shape[1] or logits.shape[1] != head.num_classes:
        raise EdgeCamError(f"the feature map {head.feature!r} has shape {feats.shape[1:]} and the "
                           f"classifier weights {head.weight.shape}; they do not fit together.")
    return logits, feats


def _verify_batch(spec: InputSpec, verify_images: str | None, max_images: int) -> tuple[np.ndarray, str]:
    if verify_images is None:
        return sample_images(4, spec.size), "synthetic images"
    paths = list_images([verify_images])[:max_images]
    if not paths:
        raise EdgeCamError(f"{verify_images} holds no images to verify with.")
    pad = pad_colour(spec.mean)  # the way edge_cam.model.Model prepares frames
    return np.stack([resize(to_rgb8(read_image(p)), spec.size, spec.resize, pad)[0] for p in paths]), \
        f"images from {verify_images}"


def verify(path: str, head: Head, images: np.ndarray, ref_logits: np.ndarray, feats: np.ndarray,
           source: str, dynamic_batch: bool, tolerance: float = TOLERANCE) -> Report:
    """Run the CAM graph at `path` on the pixels the original saw (as floats) and compare."""
    from edge_cam.model import Model  # the runtime's own loader: the result must pass its checks
    runtime = Model(path, providers=["CPUExecutionProvider"], spinning=False)
    # Classes queried at random, most outside the top-K: their maps are checked with the top-K's.
    classes = np.random.default_rng(0).choice(head.num_classes, min(6, head.num_classes), replace=False)
    out = runtime.run(images, classes=classes)  # a batch fixed at 1 runs image by image inside Model
    ids = out["class_ids"]
    w, f = head.weight.astype(np.float64), feats.astype(np.float64)
    ref_cams = np.einsum("bkc,bchw->bkhw", w[ids], f)
    ref_query = np.einsum("qc,bchw->bqhw", w[classes], f)
    p = np.exp(ref_logits - ref_logits.max(1, keepdims=True))
    score_error = float(np.abs(out["query_scores"] - (p / p.sum(1, keepdims=True))[:, classes]).max())
    if score_error > tolerance:
        raise EdgeCamError(f"the CAM graph's query_scores differ from the original's softmax by {score_error:.2e} "
                           f"(limit {tolerance:g}); nothing was written.")
    return Report("the original graph", len(images), len(images) if dynamic_batch else 1,
                  logits_error(out["logits"], ref_logits),
                  max(maps_error(out["cams"], ref_cams), maps_error(out["query_cams"], ref_query)),
                  top1_agrees(ids, ref_logits), source=source + f", top-K and {len(classes)} queried maps",
                  tolerance=tolerance)


# --- the API ----------------------------------------------------------------------------------

_BAD_NORMALISATION = "--scale and --std must be positive, and --mean/--std take three values each."


def _three(values: Sequence[float]) -> tuple[float, float, float]:
    """--mean or --std as SourceInput holds it."""
    if len(values) != 3:
        raise EdgeCamError(_BAD_NORMALISATION)
    return float(values[0]), float(values[1]), float(values[2])


def _check_args(pre: SourceInput, top_k: int, resize_mode: str, threshold: float) -> None:
    if pre.color not in ("RGB", "BGR"):
        raise EdgeCamError(f"unknown colour order {pre.color!r}; use RGB or BGR.")
    if pre.layout not in ("NCHW", "NHWC"):
        raise EdgeCamError(f"unknown layout {pre.layout!r}; use NCHW or NHWC.")
    if not pre.scale > 0 or min(pre.std) <= 0:
        raise EdgeCamError(_BAD_NORMALISATION)
    if top_k < 1:
        raise EdgeCamError("--top-k must be at least 1.")
    if resize_mode not in RESIZE_MODES:
        raise EdgeCamError(f"unknown resize mode {resize_mode!r}; use one of {', '.join(RESIZE_MODES)}.")
    if not 0 < threshold < 1:
        raise EdgeCamError("--threshold is a fraction of the map's range, between 0 and 1.")


def cam_from_onnx(src: str, dst: str, *, input_size: Sequence[int] | None = None, color: str = "RGB",
                  layout: str = "NCHW", scale: float = 1 / 255, mean: Sequence[float] = IMAGENET_MEAN,
                  std: Sequence[float] = IMAGENET_STD, labels: Sequence[str] | None = None, top_k: int = 5,
                  resize_mode: str = "stretch", threshold: float = DEFAULT_THRESHOLD,
                  verify_images: str | None = None, max_images: int = 8,
                  tolerance: float = TOLERANCE) -> SurgeryResult:
    """Read the ONNX classifier `src`, fold its CAM in, verify it, and write `dst`.

    color/layout/scale/mean/std describe the float input `src` expects: x = (pixel*scale - mean)/std
    with mean/std in its channel order. The result takes uint8 RGB NHWC at `input_size` (default:
    the model's static size). `dst` is only written once verification passes.
    """
    pre = SourceInput(color.upper(), layout.upper(), float(scale), _three(mean), _three(std))
    _check_args(pre, top_k, resize_mode, threshold)
    model = load(src)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise EdgeCamError(f"{src} declares no default ONNX opset; it is not a standard ONNX model.")
    if opset < MIN_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, MIN_OPSET)
        except Exception as e:
            raise EdgeCamError(f"{src} uses opset {opset}, and upgrading it to {MIN_OPSET} for TopK "
                               f"failed ({first_line(e, 160)}).") from None
        opset = MIN_OPSET
    head = find_head(model)
    size, dynamic = input_geometry(model, pre.layout, input_size)
    labels = list(labels or [])
    if labels and len(labels) != head.num_classes:
        raise EdgeCamError(f"{len(labels)} labels were given for a model with {head.num_classes} classes.")
    k = min(top_k, head.num_classes)

    spec = pre.metadata_spec(size, resize_mode)
    images, source = _verify_batch(spec, verify_images, max_images)
    ref_logits, feats = _reference(model, head, pre, images, src)
    fh, fw = feats.shape[2:]
    stride = size[0] / fh
    if size[1] != fw * stride:  # e.g. PaddleOCR's text classifier keeps width: feature_size tells
        stride = None
    else:
        stride = int(stride) if stride.is_integer() else round(stride, 3)
    cam = CamSpec(method="cam", feature_layer=head.feature, classifier=head.classifier, stride=stride,
                  feature_size=(int(fh), int(fw)), threshold=threshold, class_query=True)
    info = ModelInfo(spec, labels, cam, {
        "model": os.path.basename(src), "converted": "edge_cam_export.graph.surgery", "producer":
        f"{model.producer_name} {model.producer_version}".strip(), "opset": opset,
        "original_input": {"color": pre.color, "layout": pre.layout, "scale": pre.scale,
                           "mean": list(pre.mean), "std": list(pre.std)},
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    cam_model = build(model, head, pre, size, "batch" if dynamic else 1, k, (int(fh), int(fw)), info)
    try:
        onnx.checker.check_model(cam_model)
    except onnx.checker.ValidationError as e:
        raise EdgeCamError(f"the CAM graph built from {src} is not valid ONNX "
                           f"({first_line(e, 160)}); please report it.") from None
    part = dst + ".part"
    onnx.save(cam_model, part)
    try:
        report = verify(part, head, images, ref_logits, feats, source, dynamic, tolerance)
        if not report.ok:
            raise EdgeCamError(f"the CAM graph disagrees with the original ({report}); nothing was written.")
        os.replace(part, dst)
    finally:
        if os.path.exists(part):
            os.remove(part)
    return SurgeryResult(dst, info, head, report, opset, dynamic)
