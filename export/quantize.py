"""Reduced precision for an exported teacher, with ONNX Runtime's own tooling.

int8: static QDQ quantisation of the backbone on real calibration images; the CAM head stays float:
everything from the feature map on (pooling, classifier, top-K, the CAM gather and matmul), and any
node sharing a weight with it (the classifier's W feeds both the logits and the CAM gather, and a
per-channel QDQ over a shared initializer breaks the graph). Layers the user names stay float too.

fp16: every weight and activation in half precision for GPUs (TensorRT, CUDA), with float32 kept at
the graph's outputs so the interface does not change.

A .tflite goes to ai-edge-quantizer instead (tflite_int8.py), through the same quantize_int8.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from edge_cam.errors import EdgeCamError
from edge_cam.localize import BoxRule
from edge_cam.metadata import rewrite_metadata
from edge_cam.model import Model
from edge_cam.preprocess import Resize
from edge_cam.source import list_images, read_image

from .progress import log


def feature_tensor(model: onnx.ModelProto) -> str:
    """The feature map F: the matmul that makes `cams` multiplies gathered W rows by F reshaped."""
    producer = {o: n for n in model.graph.node for o in n.output}
    node = producer.get("cams")
    while node is not None and node.op_type != "MatMul":
        node = producer.get(node.input[0])
    if node is None:
        raise EdgeCamError("this model has no `cams` output to keep in float; int8 needs a CAM teacher.")
    name = node.input[1]
    while name in producer and producer[name].op_type in ("Reshape", "Flatten"):
        name = producer[name].input[0]
    return name


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that stay float: downstream of F, and those sharing their weights."""
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    keep, stack = set(), [feature_tensor(model)]
    while stack:
        for n in consumers.get(stack.pop(), []):
            if n.name not in keep:
                keep.add(n.name)
                stack.extend(n.output)
    weights = {i.name for i in model.graph.initializer}
    shared = {i for n in model.graph.node if n.name in keep for i in n.input if i in weights}
    keep |= {n.name for n in model.graph.node if any(i in shared for i in n.input)}
    return sorted(keep)


def layer_nodes(model: onnx.ModelProto, layers: list[str]) -> list[str]:
    """Names of the nodes that come from the torch layers `layers` (prefixes such as
    "features.16"), read from the exporter's scope records: the dynamo exporter's name_scopes
    metadata, or the scope in TorchScript's node names ("/body/features.16/conv/...")."""
    def scope(n) -> str:
        record = [p.value for p in n.metadata_props if p.key == "pkg.torch.onnx.name_scopes"]
        return (record[0] if record else n.name).replace("'", ".").replace("/", ".") + "."

    found = {layer: [n.name for n in model.graph.node if f"body.{layer}." in scope(n)] for layer in layers}
    missing = [layer for layer, names in found.items() if not names]
    if missing:
        raise EdgeCamError(f"no node of the graph comes from the layer(s) {', '.join(missing)}; name torch "
                           "layers as `edge-cam export MODEL --list-layers` prints them.")
    keep = {name for names in found.values() for name in names}
    # A residual Add has no module of its own: it stays float with the block that feeds it, else
    # the quantised residual stream (where MobileNetV2's outliers live) undoes the point.
    outputs = {o for n in model.graph.node if n.name in keep for o in n.output}
    keep |= {n.name for n in model.graph.node if n.op_type == "Add" and outputs.intersection(n.input)}
    return sorted(keep)


def full_size_normalisation(model: onnx.ModelProto, size: tuple[int, int]) -> None:
    """Broadcast the graph's per-channel mean and std ([1, 3, 1, 1]) to the whole input.

    ORT runs int8 convolutions channels-last and moves the input Transpose behind the
    normalisation, where broadcasting a 3-vector over the last axis costs 0.7 ms at 224x224 —
    an eighth of the whole int8 MobileNetV2 (ORT profiler). Same-shape operands take 0.17 ms.
    The constants then fix the input's size, so a dynamic height and width become `size` too
    (the runtime then refuses another size in one sentence instead of failing in ORT).
    """
    image = model.graph.input[0].type.tensor_type.shape.dim
    for axis, n in ((1, size[0]), (2, size[1])):
        image[axis].Clear()
        image[axis].dim_value = n
    consumers = {i for n in model.graph.node if n.op_type in ("Sub", "Div") for i in n.input}
    done = set()
    for k, init in enumerate(model.graph.initializer):
        if init.name in consumers and list(init.dims) == [1, 3, 1, 1]:
            a = numpy_helper.to_array(init)
            full = np.ascontiguousarray(np.broadcast_to(a, (1, 3, *size)))
            model.graph.initializer[k].CopyFrom(numpy_helper.from_array(full, init.name))
            done.add(init.name)
    for info in (model.graph.value_info, model.graph.input):  # stale shape records of the old constants
        for v in [v for v in info if v.name in done]:
            info.remove(v)


def calibration_batches(model: Model, folder: str, limit: int = 200) -> list[np.ndarray]:
    paths = list_images([folder])[:limit]
    if not paths:
        raise EdgeCamError(f"{folder} holds no calibration images.")
    batches = []
    for p in paths:
        try:
            batches.append(model.prepare(read_image(p))[0][None])
        except EdgeCamError as e:
            log.warning("skipped calibration image %s: %s", p, e)
    return batches


def quantize_int8(src: str, dst: str, calibration: str | Sequence[np.ndarray], limit: int = 200,
                  keep_float: Sequence[str] = ()) -> dict:
    """Quantise `src` (.onnx or .tflite) into `dst`; returns the drift against float on the
    calibration images: a folder, or (ONNX) prepared uint8 batches such as a student's crops.
    `keep_float`: torch layer names (prefixes) whose nodes stay float (ONNX)."""
    if src.lower().endswith(".tflite"):
        if keep_float:
            raise EdgeCamError("--keep-float applies to ONNX int8 exports only.")
        from .tflite_int8 import quantize_tflite
        if not isinstance(calibration, str):
            raise EdgeCamError("a .tflite is calibrated on a folder of images.")
        return quantize_tflite(src, dst, calibration, limit)
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = Model(src, providers=["CPUExecutionProvider"], spinning=False)
    batches = calibration_batches(fp32, calibration, limit) if isinstance(calibration, str) else list(calibration)[:limit]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            x = next(self.it, None)
            # One queried class: the query nodes stay float, but ORT's calibration needs every input.
            query = {"class_query": np.zeros(1, np.int64)} if fp32.class_query else {}
            return None if x is None else {fp32.input_name: x, **query}

    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        model = onnx.load(pre)
        full_size_normalisation(model, fp32.input_size)
        onnx.save(model, pre)
        head = head_nodes(model) if fp32.info.cam is not None else []  # a student's head is quantised too
        keep = head + (layer_nodes(onnx.load(src), list(keep_float)) if keep_float else [])
        quantize_static(pre, os.path.join(tmp, "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, nodes_to_exclude=keep, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Percentile,
                        extra_options={"CalibPercentile": 99.99})
        # the fp32 session already holds the metadata: no second parse of the whole model
        rewrite_metadata(os.path.join(tmp, "q.onnx"), dst, dict(fp32.session.get_modelmeta().custom_metadata_map))
    return drift(fp32, Model(dst, providers=["CPUExecutionProvider"], spinning=False), batches)


def convert_fp16(src: str, dst: str, calibration: str | None = None, limit: int = 200) -> dict:
    """Half precision everywhere but the outputs; returns the drift against float on the images
    of `calibration` (synthetic ones without it)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # TopK and the softmax stay float32: ranks and probabilities of near-equal logits must not
    # change because of rounding to 11 bits of mantissa.
    half = convert_float_to_float16(onnx.load(src), keep_io_types=True, op_block_list=["TopK", "Softmax"])
    onnx.save(half, dst + ".part")  # the converter keeps the metadata
    os.replace(dst + ".part", dst)
    fp32 = Model(src, providers=["CPUExecutionProvider"], spinning=False)
    if calibration:
        batches = calibration_batches(fp32, calibration, limit)
    else:
        from .verify import sample_images
        batches = list(sample_images(16, fp32.input_size, seed=7)[:, None])
    return drift(fp32, Model(dst, providers=["CPUExecutionProvider"], spinning=False), batches)


def drift(fp32: Model, int8: Model, batches: list[np.ndarray]) -> dict:
    """Top-1 agreement, CAM correlation and box IoU of `int8` (or any reduced-precision copy)
    against `fp32` on the same inputs. Agreement is also given where fp32's top-1 leads its
    top-2 by at least half a logit: a near tie flips under any perturbation, so the overall figure
    alone says more about the images than about the quantisation."""
    agree, corr, iou, margin, top5 = [], [], [], [], []
    rule = BoxRule.for_model(fp32.info.cam) if fp32.info.cam is not None else None  # a student: classes only
    size = fp32.input_size
    identity = Resize(size, size, 1.0, 1.0)
    for x in batches:
        a, b = (m.predict_batch([], prepared=[(x[0], identity)])[0] for m in (fp32, int8))
        agree.append(a.class_id == b.class_id)
        margin.append(float(a.logits[a.class_ids[0]] - a.logits[a.class_ids[1]]) if len(a.class_ids) > 1 else np.inf)
        top5.append(a.class_id in b.class_ids[:5])
        if rule is None:
            continue
        same = np.flatnonzero(b.class_ids == a.class_id)  # the same class's map, where int8 has it
        if same.size:
            corr.append(float(np.corrcoef(a.cams[0].ravel(), b.cams[same[0]].ravel())[0, 1]))
        box_a, box_b = rule.localize(a)[1], rule.localize(b)[1]
        iou.append(box_a[0].iou(box_b[0]) if box_a and box_b else 0.0)
    clear = np.asarray(margin) >= 0.5
    return {"images": len(batches), "top1_agreement": float(np.mean(agree)),
            "top1_agreement_clear": float(np.mean(np.asarray(agree)[clear])) if clear.any() else None,
            "clear_images": int(clear.sum()), "top1_in_top5": float(np.mean(top5)),
            "cam_correlation_median": float(np.median(corr)) if corr else None,
            "box_iou_median": float(np.median(iou)) if iou else None}
