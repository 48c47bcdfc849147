"""Multiply-adds of a model per image, counted in its ONNX graph (or stored by distill): the
cost measure of cascade_eval, which does not depend on who else shares the CPU."""
from __future__ import annotations

import json
import logging

import numpy as np

from ..metadata import PREFIX
from ..model import Model

log = logging.getLogger("edge_cam")


def onnx_macs(path: str, input_size: tuple[int, int] | None = None) -> int | None:
    """Multiply-adds of one image through an ONNX graph: Conv, ConvTranspose, Gemm and MatMul with
    shapes from ONNX shape inference. A graph that takes any image size is counted at `input_size`
    (H, W; default: the size its edge_cam metadata gives); other dynamic axes (batch, a class
    query) count as 1. None without the onnx package (an optional extra on boards), for a
    .tflite, or when a shape cannot be inferred."""
    if not path.lower().endswith(".onnx"):
        return None
    try:
        import onnx
        from onnx import shape_inference
    except ImportError:
        return None
    model = onnx.load(path)
    if input_size is None:
        props = {p.key: p.value for p in model.metadata_props}
        if PREFIX + "input" in props:
            input_size = tuple(json.loads(props[PREFIX + "input"])["size"])
    for k, value in enumerate(model.graph.input):
        dims = value.type.tensor_type.shape.dim
        spatial = (1, 2) if len(dims) == 4 and dims[3].dim_value == 3 else (2, 3)  # NHWC or NCHW
        for i, d in enumerate(dims):
            if not d.dim_value:
                d.dim_value = input_size[spatial.index(i)] if k == 0 and len(dims) == 4 and input_size and \
                    i in spatial else 1
    try:
        model = shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:
        log.info("no MACs for %s: shape inference failed (%s)", path, e)
        return None
    g = model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(g.input) + list(g.value_info) + list(g.output)}
    shapes.update({t.name: list(t.dims) for t in g.initializer})
    total = 0
    for node in g.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        a, w, out = (shapes.get(name) for name in (node.input[0], node.input[1], node.output[0]))
        # Axes that inference leaves symbolic (0) count as 1: batch, a class query, and the spatial
        # axis of the CAM matmul, which data propagation does not resolve (0.1% of MobileNetV2's
        # total). Convolution and Gemm weights must be known: they carry nearly all the cost.
        size = lambda dims: int(np.prod([d or 1 for d in dims]))  # noqa: E731
        weighted = node.op_type != "MatMul"
        if not a or not out or not a[-1] or (weighted and (not w or 0 in w[1:])):
            log.info("no MACs for %s: the shapes of %s are unknown", path, node.name)
            return None
        w = w or []  # a MatMul's second input may be an activation of unknown shape: not needed
        if node.op_type == "Conv":  # W: (Cout, Cin/groups, kh, kw); each output element costs Cin/g·kh·kw
            total += size(out) * int(np.prod(w[1:]))
        elif node.op_type == "ConvTranspose":  # W: (Cin, Cout/groups, kh, kw); each input element fans out
            total += size(a) * int(np.prod(w[1:]))
        elif node.op_type == "Gemm":
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            total += size(out) * ((a[0] or 1) if trans_a else a[-1])
        else:
            total += size(out) * a[-1]
    return total


def model_macs(model: Model, input_size: tuple[int, int] | None = None) -> int | None:
    """A model's multiply-adds per image: from its metadata when distill stored them, else counted
    (a graph that takes any image size at `input_size`: a teacher run at 288x512 costs about three
    times what it does at its trained 224x224)."""
    stored = (model.info.source.get("distill") or {}).get("macs") or model.info.source.get("macs")
    return int(stored) if stored else onnx_macs(model.path, input_size)
