"""Reduced precision for an exported teacher, with ONNX Runtime's own tooling.

int8: static QDQ quantisation of the backbone on real calibration images; the CAM head stays float:
everything from the feature map on (pooling, classifier, top-K, the CAM gather and matmul), and any
node sharing a weight with it (the classifier's W feeds both the logits and the CAM gather, and a
per-channel QDQ over a shared initializer breaks the graph). Layers the user names stay float too,
and so do the blocks whose int8 noise would change the answers (mixed_precision.py). It is checked
on photos the calibration never saw, and not written when it disagrees with fp32 (drift.py).

fp16: every weight and activation in half precision for GPUs (TensorRT, CUDA), with float32 kept at
the graph's outputs so the interface does not change.

A .tflite goes to ai-edge-quantizer instead (tflite.py), through the same quantize_int8.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edge_cam.backends.onnxruntime import OPTIONAL_NOISE
from edge_cam.backends.stderr import filtered
from edge_cam.errors import EdgeCamError
from edge_cam.metadata import rewrite_metadata
from edge_cam.model import Model
from edge_cam.source import list_images

from ..common.progress import progress
from .drift import MIN_AGREEMENT, describe, drift, gate, logits, prepared, split
from .mixed_precision import activation_ranges, macs, search, units

# The search keeps agreement on the calibration photos this far above the gate, so that the held-out
# photos, which it never saw, still clear it.
MARGIN = 0.03


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


def quantize_int8(src: str, dst: str, calibration: str | Sequence[np.ndarray], limit: int = 200,
                  keep_float: Sequence[str] = (), min_agreement: float = MIN_AGREEMENT, force: bool = False,
                  holdout: str | None = None, quiet: bool = False) -> dict:
    """Quantise `src` (.onnx or .tflite) into `dst`, keeping its answers.

    calibration: a folder, or (ONNX) prepared uint8 batches such as a student's crops; one in
    HOLDOUT_EVERY is held out (drift.split), plus the photos of `holdout`. The whole backbone is
    quantised first; if its top-1 agreement with fp32 on the calibration photos is below
    min_agreement + MARGIN, only the blocks the answers survive are (mixed_precision.search). The
    held-out agreement is the gate: below `min_agreement` nothing is written (EdgeCamError), unless
    `force`. `keep_float`: torch layer names (prefixes) whose nodes stay float (ONNX).
    Returns the drift on the calibration and the held-out photos and what was kept float."""
    if not 0 <= min_agreement <= 1:
        raise EdgeCamError(f"--min-agreement is a fraction from 0 to 1, not {min_agreement}.")
    if src.lower().endswith(".tflite"):
        if keep_float:
            raise EdgeCamError("--keep-float applies to ONNX int8 exports only.")
        from .tflite import quantize_tflite
        if not isinstance(calibration, str):
            raise EdgeCamError("a .tflite is calibrated on a folder of images.")
        return quantize_tflite(src, dst, calibration, limit, min_agreement=min_agreement, force=force,
                               holdout=holdout)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = Model(src, providers=["CPUExecutionProvider"], spinning=False)
    photos = split(fp32, calibration, limit, holdout)
    target = min(1.0, min_agreement + MARGIN)
    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        with filtered(OPTIONAL_NOISE):  # its optimising session warns of the optional class_query too
            quant_pre_process(src, pre, skip_symbolic_shape=True)
        model = onnx.load(pre)
        full_size_normalisation(model, fp32.input_size)
        onnx.save(model, pre)
        source = onnx.load(src)
        float_nodes = set(head_nodes(model) if fp32.info.cam is not None else [])  # a student's head is quantised too
        float_nodes |= set(layer_nodes(source, list(keep_float)) if keep_float else [])
        candidates = {n.name for n in model.graph.node} - float_nodes
        full = os.path.join(tmp, "full.onnx")
        progress(f"      calibrating on {len(photos.calibration)} photos ({len(photos.held_out)} held out)", quiet)
        _quantise(pre, full, candidates, photos.calibration, fp32)

        def load(path: str) -> Model:
            return Model(path, providers=["CPUExecutionProvider"], spinning=False)

        best, plan = full, None
        whole = float((logits(load(full), photos.calibration).argmax(1)
                       == logits(fp32, photos.calibration).argmax(1)).mean())
        progress(f"      whole backbone in int8: top-1 agreement {whole:.1%} on the calibration photos", quiet)
        if whole < target:
            overrides = activation_ranges(onnx.load(full))
            groups = units(source, candidates)
            plan, searched = search(
                groups, macs(model, groups),
                lambda nodes, path: _quantise(pre, path, nodes, photos.calibration[:1], fp32, overrides),
                load, fp32, photos.calibration, target, tmp, lambda text: progress(f"      {text}", quiet))
            if searched is None:
                if not force:
                    raise EdgeCamError(f"no block of this network can be int8 with top-1 agreement at "
                                       f"{target:.0%} on the calibration photos (the whole backbone gives "
                                       f"{whole:.1%}); nothing written (lower --min-agreement, or --force "
                                       "to write the whole backbone in int8).")
                plan = None
            else:
                best = searched
        int8 = load(best)
        result: dict[str, Any] = {"calibration": drift(fp32, int8, photos.calibration),
                                  "held_out": drift(fp32, int8, photos.held_out),
                                  "kept_float": plan.float if plan else [],
                                  "int8_units": plan.quantised if plan else None,
                                  "int8_mac_share": plan.mac_share if plan else 1.0,
                                  "whole_backbone_agreement": whole}
        if plan is not None:
            progress(f"      int8 blocks: {len(plan.quantised)} of {len(plan.quantised) + len(plan.float)} "
                     f"({plan.mac_share:.0%} of the backbone's multiply-adds); float: {', '.join(plan.float)}", quiet)
        for name in ("calibration", "held_out"):
            d = result[name]
            progress(f"      int8 against fp32 on {d['images']} {name.replace('_', '-')} photos: {describe(d)}", quiet)
        refusal = gate(result["held_out"], min_agreement)
        if refusal and not force:
            raise EdgeCamError(f"{refusal}; nothing written (calibrate on more photos like those it will see, "
                               "or --force to write it anyway).")
        # the fp32 session already holds the metadata: no second parse of the whole model
        rewrite_metadata(best, dst, dict(fp32.session.props))
    return result


def _quantise(pre: str, out: str, nodes: set[str], batches: Sequence[np.ndarray], fp32: Model,
              overrides: dict | None = None) -> None:
    """ORT's static QDQ of `nodes` of the prepared graph `pre`: weights int8 per channel, activations
    uint8 per tensor (percentile-calibrated on `batches`, or the given `overrides`' ranges)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            x = next(self.it, None)
            # One queried class: the query nodes stay float, but ORT's calibration needs every input.
            query = {"class_query": np.zeros(1, np.int64)} if fp32.class_query else {}
            return None if x is None else {fp32.input_name: x, **query}

    exclude = [n.name for n in onnx.load(pre).graph.node if n.name not in nodes]
    extra: dict[str, Any] = {"CalibPercentile": 99.99}
    if overrides:
        extra["TensorQuantOverrides"] = overrides
    # ORT prints its calibration's settings, and warns at each session of the optional class_query
    with contextlib.redirect_stdout(io.StringIO()), filtered(OPTIONAL_NOISE):
        quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        nodes_to_exclude=exclude, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.Percentile, extra_options=extra)


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
        batches = prepared(fp32, list_images([calibration])[:limit])
    else:
        from ..graph.verify import sample_images
        batches = list(sample_images(16, fp32.input_size, seed=7)[:, None])
    return drift(fp32, Model(dst, providers=["CPUExecutionProvider"], spinning=False), batches)
