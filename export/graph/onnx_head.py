"""Find the CAM head in an ONNX classifier: walk back from its output to the global average pooling.

Walking back from the output, not searching for poolings, means the global poolings inside
squeeze-and-excitation blocks are never mistaken for the head. Accepted: GAP → (Flatten/Reshape)
→ Gemm | MatMul(+Add) | 1×1 Conv, or a 1×1 Conv before the pooling (SqueezeNet).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import helper, numpy_helper

from edge_cam.errors import EdgeCamError

_PASS = {"Identity", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Dropout"}
_ELEMENTWISE = {"Relu", "LeakyRelu", "Clip", "Identity", "Dropout"}
_EXPECTED = "no GlobalAveragePool/ReduceMean over H,W feeding a Gemm/MatMul/1×1 Conv was found"


@dataclass(frozen=True)
class Head:
    """The CAM layers found in the graph."""
    feature: str  # tensor name of the feature map F
    feature_layout: str  # "NCHW" or "NHWC" (a ReduceMean over axes 1,2)
    logits: str  # tensor name of the logits (before any Softmax)
    weight: np.ndarray  # (num_classes, channels) float32
    classifier: str  # the node holding the weights
    pool: str  # the pooling node
    kind: str  # "gemm", "matmul", "conv-after-pool" or "conv-before-pool"

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])


class _Graph:
    """Look-ups over one graph: who produces a tensor, and which tensors are constants."""

    def __init__(self, graph):
        self.graph = graph
        self.producer = {o: n for n in graph.node for o in n.output}
        self.inits = {t.name: t for t in graph.initializer}

    def const(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Identity":
            return self.const(node.input[0])
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name.startswith("value_"):
                    return np.asarray(helper.get_attribute_value(a))
        return None

    def data_input(self, node) -> tuple[str, np.ndarray] | None:
        """(the non-constant input, the constant) of a binary node with exactly one constant input."""
        if len(node.input) != 2:
            return None
        first, second = (self.const(i) for i in node.input)
        if first is None and second is not None:
            return node.input[0], second
        if second is None and first is not None:
            return node.input[1], first
        return None


def _attr(node, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _what(node) -> str:
    return f"{node.op_type} {node.name or node.output[0]!r}"


def _pool_layout(g: _Graph, node) -> str | None:
    """'NCHW' / 'NHWC' for a global average pooling over H,W, None for another reduction."""
    if node.op_type == "GlobalAveragePool":
        return "NCHW"
    axes = _attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = g.const(node.input[1])
    if axes is None:
        return None
    axes = sorted(int(a) for a in np.ravel(axes))
    return {(2, 3): "NCHW", (-2, -1): "NCHW", (1, 2): "NHWC", (-3, -2): "NHWC"}.get(tuple(axes))


def _affine(g: _Graph, node) -> tuple[str, np.ndarray, str]:
    """(data input, W as (classes, channels), kind) of a Gemm, MatMul or 1×1 Conv classifier."""
    op = node.op_type
    w = g.const(node.input[1]) if len(node.input) > 1 else None
    if w is None or w.ndim not in (2, 4):
        raise EdgeCamError(f"{_EXPECTED}: the logits come from {_what(node)}, whose weights are not a "
                           "constant matrix, so there are no class weights for a CAM.")
    w = w.astype(np.float32)
    if op == "Gemm":
        if _attr(node, "transA", 0):
            raise EdgeCamError(f"{_EXPECTED}: {_what(node)} transposes its input (transA=1), which a "
                               "classifier head does not do.")
        w = w if _attr(node, "transB", 0) else w.T
        return node.input[0], w * np.float32(_attr(node, "alpha", 1.0)), "gemm"
    if op == "MatMul":
        if w.ndim != 2 or g.const(node.input[0]) is not None:
            raise EdgeCamError(f"{_EXPECTED}: {_what(node)} is not features @ constant matrix.")
        return node.input[0], np.ascontiguousarray(w.T), "matmul"
    if w.ndim != 4 or w.shape[2:] != (1, 1) or _attr(node, "group", 1) != 1:
        raise EdgeCamError(f"{_EXPECTED}: the classifier {_what(node)} has a {w.shape[2:]} kernel "
                           f"and {_attr(node, 'group', 1)} groups, not a 1×1 ungrouped one.")
    return node.input[0], np.ascontiguousarray(w[:, :, 0, 0]), "conv"


def _strip(g: _Graph, name: str, ops: set[str]) -> str:
    node = g.producer.get(name)
    while node is not None and node.op_type in ops:
        name = node.input[0]
        node = g.producer.get(name)
    return name


def find_head(model) -> Head:
    """Walk back from the first output: Softmax and pass-through ops, at most one bias Add and one
    affine layer, down to the global average pooling."""
    g = _Graph(model.graph)
    t = _strip(g, model.graph.output[0].name, {"Identity"})
    node = g.producer.get(t)
    if node is not None and node.op_type in ("Softmax", "LogSoftmax"):
        t = _strip(g, node.input[0], {"Identity"})
    logits, affine, biased = t, None, False
    while True:
        node = g.producer.get(t)
        if node is None:
            raise EdgeCamError(f"{_EXPECTED}: the logits {logits!r} are computed from the graph input "
                               "without one, so this model has no class activation map.")
        op = node.op_type
        if op in _PASS:
            t = node.input[0]
        elif op == "Add" and affine is None and not biased and (data := g.data_input(node)) is not None:
            t, biased = data[0], True
        elif op in ("Gemm", "MatMul", "Conv") and affine is None:
            t, weight, kind = _affine(g, node)
            affine = (node, weight, kind)
        elif op in ("GlobalAveragePool", "ReduceMean"):
            layout = _pool_layout(g, node)
            if layout is None:
                raise EdgeCamError(f"{_EXPECTED}: {_what(node)} averages over axes {_attr(node, 'axes')}, "
                                   "not over H,W.")
            break
        else:
            where = f"before {_what(affine[0])}" if affine else f"to give the logits {logits!r}"
            raise EdgeCamError(f"{_EXPECTED}: {_what(node)} comes {where}, so this model has no class "
                               "activation map (a VGG-like head or a non-affine classifier).")
    pool = node
    if affine is not None:
        cls, weight, kind = affine
        kind = "conv-after-pool" if kind == "conv" else kind
        return Head(pool.input[0], layout, logits, weight, cls.name or cls.output[0], pool.name or pool.output[0], kind)
    # SqueezeNet: the pooling gives the logits; the classifier is a 1×1 Conv before it, and the
    # CAM is that conv's class channel without its bias, as the torch export computes it.
    t = _strip(g, pool.input[0], _ELEMENTWISE)
    conv = g.producer.get(t)
    if conv is not None and conv.op_type == "Add" and (data := g.data_input(conv)) is not None:
        conv = g.producer.get(_strip(g, data[0], _ELEMENTWISE))
    if conv is None or conv.op_type != "Conv" or layout != "NCHW":
        found = _what(conv) if conv is not None else "the graph input"
        raise EdgeCamError(f"{_EXPECTED}: the global pooling {_what(pool)} gives the logits directly "
                           f"and is fed by {found}, not by a 1×1 Conv classifier.")
    feature, weight, _ = _affine(g, conv)
    return Head(feature, layout, logits, weight, conv.name or conv.output[0], pool.name or pool.output[0],
                "conv-before-pool")
