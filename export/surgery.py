"""CAM-ify an ONNX classifier you already have, without torch: graph surgery with the `onnx` package.

The head GAP → (Flatten/Reshape) → Gemm | MatMul(+Add) | 1×1 Conv (or a 1×1 Conv before the
pooling, SqueezeNet style) is found by walking back from the model's output, so the global
poolings inside squeeze-and-excitation blocks are never mistaken for it. The result takes the
same uint8 NHWC RGB `image` as `edge-cam export`'s graphs, normalises it inside the graph, and
returns logits, class_ids, scores and cams (CAM_c = W[c] · F, no bias, as the paper defines it).
It is verified in ONNX Runtime against the original graph before it is written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

import cv2
import numpy as np
import onnxruntime as ort

from edge_cam.errors import EdgeCamError, first_line
from edge_cam.metadata import (DEFAULT_THRESHOLD, IMAGENET_MEAN, IMAGENET_STD, PREFIX, RESIZE_MODES, CamSpec,
                               InputSpec, ModelInfo)
from edge_cam.preprocess import pad_colour, resize, to_rgb8
from edge_cam.source import list_images, read_image

try:  # an optional extra: the board runtime imports this module without it
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ModuleNotFoundError:  # pragma: no cover - depends on the environment
    onnx = None

TOLERANCE = 1e-4  # of the range of each reference map (and of the reference logits), as export/verify.py
MIN_OPSET = 11  # TopK with largest/sorted, GatherElements, Slice with inputs
OUTPUTS = ("image", "logits", "class_ids", "scores", "cams")  # names the contract reserves
_PASS = {"Identity", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Dropout"}
_ELEMENTWISE = {"Relu", "LeakyRelu", "Clip", "Identity", "Dropout"}
_EXPECTED = "no GlobalAveragePool/ReduceMean over H,W feeding a Gemm/MatMul/1×1 Conv was found"


@dataclass(frozen=True)
class SourceInput:
    """What the original graph expects as its float input; mean/std are in its channel order."""
    color: str = "RGB"
    layout: str = "NCHW"
    scale: float = 1 / 255
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_float(self, batch: np.ndarray) -> np.ndarray:
        """uint8 RGB NHWC → the original's float input, in numpy (the reference for the graph)."""
        x = batch.astype(np.float32)
        if self.color == "BGR":
            x = x[..., ::-1]
        shape = (1, 1, 1, 3)
        if self.layout == "NCHW":
            x, shape = x.transpose(0, 3, 1, 2), (1, 3, 1, 1)
        mean = np.asarray(self.mean, np.float32).reshape(shape)
        std = np.asarray(self.std, np.float32).reshape(shape)
        return np.ascontiguousarray((x * np.float32(self.scale) - mean) / std)

    def metadata_spec(self, size: tuple[int, int], resize_mode: str) -> InputSpec:
        # The metadata's convention is RGB with scale 1/255: (x/255 - m')/s' == (x*scale - m)/s
        # with m' = m/(255*scale); that keeps the letterbox pad colour at the model's zero.
        k = 255.0 * self.scale
        order = slice(None, None, -1) if self.color == "BGR" else slice(None)
        return InputSpec(size=size, color="RGB", resize=resize_mode,
                         mean=tuple(float(m / k) for m in self.mean[order]),
                         std=tuple(float(s / k) for s in self.std[order]))


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


@dataclass(frozen=True)
class Verification:
    images: int
    source: str  # where the images came from
    batch: int  # largest batch the CAM graph ran on
    logit_error: float  # max |CAM graph - original| / range of the original's logits
    cam_error: float  # max |CAM graph - numpy W·F| / range of the reference map
    top1_agree: bool
    tolerance: float = TOLERANCE

    @property
    def ok(self) -> bool:
        return self.top1_agree and self.logit_error <= self.tolerance and self.cam_error <= self.tolerance

    def __str__(self) -> str:
        return (f"{self.images} {self.source} (batch {self.batch}): logits error {self.logit_error:.2e} of "
                f"range, CAM error {self.cam_error:.2e} of range (limit {self.tolerance:g}), top-1 "
                f"{'agrees' if self.top1_agree else 'DISAGREES'}")


@dataclass(frozen=True)
class SurgeryResult:
    path: str
    info: ModelInfo
    head: Head
    verification: Verification
    opset: int
    dynamic_batch: bool


def _need_onnx() -> None:
    if onnx is None:
        raise EdgeCamError("CAM-ifying an ONNX model needs the onnx package, which is not installed here; "
                           "install it with: pip install 'edge-cam[onnx]'.")


def load(path: str) -> "onnx.ModelProto":
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


# --- finding the head -------------------------------------------------------------------------

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
        consts = [self.const(i) for i in node.input[:2]]
        if len(node.input) == 2 and (consts[0] is None) != (consts[1] is None):
            return (node.input[0], consts[1]) if consts[1] is not None else (node.input[1], consts[0])
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
        elif op == "Add" and affine is None and not biased and g.data_input(node) is not None:
            t, biased = g.data_input(node)[0], True
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
    if conv is not None and conv.op_type == "Add" and g.data_input(conv) is not None:
        conv = g.producer.get(_strip(g, g.data_input(conv)[0], _ELEMENTWISE))
    if conv is None or conv.op_type != "Conv" or layout != "NCHW":
        found = _what(conv) if conv is not None else "the graph input"
        raise EdgeCamError(f"{_EXPECTED}: the global pooling {_what(pool)} gives the logits directly "
                           f"and is fed by {found}, not by a 1×1 Conv classifier.")
    feature, weight, _ = _affine(g, conv)
    return Head(feature, layout, logits, weight, conv.name or conv.output[0], pool.name or pool.output[0],
                "conv-before-pool")


# --- the input ----------------------------------------------------------------------------------

def _graph_input(model):
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise EdgeCamError(f"the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                           "only single-image classifiers can be CAM-ified.")
    return inputs[0]


def _dims(value_info) -> list[int | None]:
    """Static dims as ints, dynamic ones (symbolic, unset, or Paddle's -1) as None."""
    t = value_info.type.tensor_type
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]


def _input_geometry(model, layout: str, input_size) -> tuple[tuple[int, int], bool]:
    """(H, W) the result takes, and whether its batch can be dynamic."""
    inp = _graph_input(model)
    if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
        name = TensorProto.DataType.Name(inp.type.tensor_type.elem_type)
        raise EdgeCamError(f"the model's input {inp.name!r} is {name}; only float32 inputs are supported.")
    dims = _dims(inp)
    if len(dims) != 4:
        raise EdgeCamError(f"the model's input {inp.name!r} has {len(dims)} dimensions; an image "
                           "classifier takes 4 (batch, channels and H, W).")
    c, h, w = (dims[1], dims[2], dims[3]) if layout == "NCHW" else (dims[3], dims[1], dims[2])
    if c not in (None, 3):
        other = "NHWC" if layout == "NCHW" else "NCHW"
        hint = f" (its shape {dims} looks {other}: pass --layout {other})" if (dims[3] if layout == "NCHW" else dims[1]) == 3 else ""
        raise EdgeCamError(f"the model's input takes {c} channels in {layout} layout; only 3-channel "
                           f"colour models are supported{hint}.")
    if input_size is not None:
        size = (int(input_size[0]), int(input_size[1]))
        if (h is not None and h != size[0]) or (w is not None and w != size[1]):
            raise EdgeCamError(f"--input-size {size[0]} {size[1]} contradicts the model's fixed input "
                               f"size {h} {w}; leave it out or give the model's.")
    elif h is None or w is None:
        raise EdgeCamError("the model's input size is dynamic; give it with --input-size H W.")
    else:
        size = (h, w)
    if min(size) < 8:
        raise EdgeCamError("the input size must be at least 8 pixels on each side.")
    return size, dims[0] is None


# --- building the CAM graph -------------------------------------------------------------------

def _subgraphs(node):
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield a.g
        elif a.type == onnx.AttributeProto.GRAPHS:
            yield from a.graphs


def _rename(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if i == old else i for i in node.input]
        node.output[:] = [new if o == old else o for o in node.output]
        for sub in _subgraphs(node):
            _rename(sub, old, new)
    for coll in (graph.input, graph.output, graph.value_info, graph.initializer):
        for v in coll:
            if v.name == old:
                v.name = new


def _used_names(nodes, out: set[str]) -> set[str]:
    """Every tensor the nodes read, including outer-scope names used inside their subgraphs."""
    for node in nodes:
        out.update(node.input)
        for sub in _subgraphs(node):
            _used_names(sub.node, out)
    return out


def _prune(graph) -> None:
    """Drop the nodes the new outputs no longer need (the old Softmax, old outputs' tails)."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            _used_names([node], needed)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def _const_node(name: str, value: np.ndarray):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def _build(model, head: Head, pre: SourceInput, size: tuple[int, int], batch, k: int,
           feature_size: tuple[int, int], info: ModelInfo):
    """The original graph wrapped in the uint8 contract, with the CAM head appended."""
    g = model.graph
    reserved = set(OUTPUTS)
    names = {n for node in g.node for n in (*node.input, *node.output)} | {v.name for v in g.input}
    for name in reserved & names:
        _rename(g, name, f"src/{name}")
    x_name = _graph_input(model).name
    feature = f"src/{head.feature}" if head.feature in reserved else head.feature
    logits = f"src/{head.logits}" if head.logits in reserved else head.logits
    p = "edge_cam/"
    nodes = [helper.make_node("Cast", ["image"], [p + "float"], to=TensorProto.FLOAT)]
    x = p + "float"
    if pre.color == "BGR":
        nodes += [_const_node(p + "bgr", np.array([2, 1, 0], np.int64)),
                  helper.make_node("Gather", [x, p + "bgr"], [p + "swapped"], axis=3)]
        x = p + "swapped"
    shape = (1, 1, 1, 3)
    if pre.layout == "NCHW":
        nodes.append(helper.make_node("Transpose", [x], [p + "nchw"], perm=[0, 3, 1, 2]))
        x, shape = p + "nchw", (1, 3, 1, 1)
    nodes += [_const_node(p + "scale", np.array(pre.scale, np.float32)),
              _const_node(p + "mean", np.asarray(pre.mean, np.float32).reshape(shape)),
              _const_node(p + "std", np.asarray(pre.std, np.float32).reshape(shape)),
              helper.make_node("Mul", [x, p + "scale"], [p + "scaled"]),
              helper.make_node("Sub", [p + "scaled", p + "mean"], [p + "centred"]),
              helper.make_node("Div", [p + "centred", p + "std"], [x_name])]

    tail = [helper.make_node("Identity", [logits], ["logits"]),
            _const_node(p + "k", np.array([k], np.int64)),
            helper.make_node("TopK", ["logits", p + "k"], [p + "top_logits", "class_ids"], axis=-1,
                             largest=1, sorted=1),
            helper.make_node("Softmax", ["logits"], [p + "probs"], axis=1),
            helper.make_node("GatherElements", [p + "probs", "class_ids"], ["scores"], axis=1)]
    f = feature
    if head.feature_layout == "NHWC":
        tail.append(helper.make_node("Transpose", [f], [p + "feature_nchw"], perm=[0, 3, 1, 2]))
        f = p + "feature_nchw"
    # CAM = W[top-K] · F as a batched MatMul over the flattened map: no Einsum, so opset 11 will do.
    tail += [_const_node(p + "weight", head.weight.astype(np.float32)),
             helper.make_node("Gather", [p + "weight", "class_ids"], [p + "top_weight"], axis=0),
             _const_node(p + "flat", np.array([0, 0, -1], np.int64)),
             helper.make_node("Reshape", [f, p + "flat"], [p + "feature_flat"]),
             helper.make_node("MatMul", [p + "top_weight", p + "feature_flat"], [p + "cams_flat"]),
             helper.make_node("Shape", ["class_ids"], [p + "bk"]),
             helper.make_node("Shape", [f], [p + "fshape"]),
             _const_node(p + "two", np.array([2], np.int64)),
             _const_node(p + "four", np.array([4], np.int64)),
             helper.make_node("Slice", [p + "fshape", p + "two", p + "four"], [p + "hw"]),
             helper.make_node("Concat", [p + "bk", p + "hw"], [p + "cam_shape"], axis=0),
             helper.make_node("Reshape", [p + "cams_flat", p + "cam_shape"], ["cams"])]

    old = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old + tail)
    kept = [i for i in g.input if i.name != x_name]
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("image", TensorProto.UINT8, [batch, *size, 3])] + kept)
    del g.output[:]
    n, (fh, fw) = head.num_classes, feature_size
    g.output.extend([helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, n]),
                     helper.make_tensor_value_info("class_ids", TensorProto.INT64, [batch, k]),
                     helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, k]),
                     helper.make_tensor_value_info("cams", TensorProto.FLOAT, [batch, k, fh, fw])])
    # value_info of the renamed input or of tensors now computed differently would mislead ORT.
    vi = [v for v in g.value_info if v.name not in (x_name, *OUTPUTS)]
    del g.value_info[:]
    g.value_info.extend(vi)
    _prune(g)
    kept_props = {m.key: m.value for m in model.metadata_props if not m.key.startswith(PREFIX)}
    helper.set_model_props(model, {**kept_props, **info.to_props()})
    return model


# --- verification -----------------------------------------------------------------------------

def _session(model) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(model.SerializeToString(), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise EdgeCamError(f"ONNX Runtime cannot run the model ({first[:200]}).") from None


def _reference(model, head: Head, pre: SourceInput, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The original graph's logits and feature map (as NCHW), one image at a time so a fixed
    batch of 1 works too."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for name in (head.logits, head.feature):
        if name not in have:
            probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    sess = _session(probe)
    x_name = _graph_input(model).name
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


def synthetic_images(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Deterministic smooth colour fields with sharp-edged rectangles, so maps have structure."""
    rng = np.random.default_rng(seed)
    h, w = size
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        img = cv2.resize(rng.uniform(0, 255, (4, 4, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        for _ in range(3):
            x1, y1 = rng.integers(0, w - 4), rng.integers(0, h - 4)
            x2, y2 = rng.integers(x1 + 2, w + 1), rng.integers(y1 + 2, h + 1)
            img[y1:y2, x1:x2] = rng.uniform(0, 255, 3)
        out[i] = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    return out


def _verify_batch(spec: InputSpec, verify_images: str | None, max_images: int) -> tuple[np.ndarray, str]:
    if verify_images is None:
        return synthetic_images(4, spec.size), "synthetic images"
    paths = list_images([verify_images])[:max_images]
    if not paths:
        raise EdgeCamError(f"{verify_images} holds no images to verify with.")
    pad = pad_colour(spec.mean)  # the way edge_cam.model.Model prepares frames
    return np.stack([resize(to_rgb8(read_image(p)), spec.size, spec.resize, pad)[0] for p in paths]), \
        f"images from {verify_images}"


def _relative(a: np.ndarray, ref: np.ndarray, axes: tuple[int, ...]) -> float:
    span = ref.max(axis=axes) - ref.min(axis=axes)
    err = np.abs(a.astype(np.float64) - ref).max(axis=axes)
    return float((err / np.where(span > 0, span, 1.0)).max())


def verify(path: str, head: Head, images: np.ndarray, ref_logits: np.ndarray, feats: np.ndarray,
           source: str, dynamic_batch: bool, tolerance: float = TOLERANCE) -> Verification:
    """Run the CAM graph at `path` on the pixels the original saw (as floats) and compare."""
    from edge_cam.model import Model  # the runtime's own loader: the result must pass its checks
    runtime = Model(path, providers=["CPUExecutionProvider"], spinning=False)
    out = runtime.run(images)  # a batch fixed at 1 runs image by image inside Model
    ids = out["class_ids"]
    w = head.weight.astype(np.float64)
    ref_cams = np.einsum("bkc,bchw->bkhw", w[ids], feats.astype(np.float64))
    return Verification(images=len(images), source=source, batch=len(images) if dynamic_batch else 1,
                        logit_error=_relative(out["logits"], ref_logits.astype(np.float64), (1,)),
                        cam_error=_relative(out["cams"], ref_cams, (2, 3)),
                        top1_agree=bool((ids[:, 0] == ref_logits.argmax(1)).all()), tolerance=tolerance)


# --- the API ----------------------------------------------------------------------------------

def _check_args(pre: SourceInput, top_k: int, resize_mode: str, threshold: float) -> None:
    if pre.color not in ("RGB", "BGR"):
        raise EdgeCamError(f"unknown colour order {pre.color!r}; use RGB or BGR.")
    if pre.layout not in ("NCHW", "NHWC"):
        raise EdgeCamError(f"unknown layout {pre.layout!r}; use NCHW or NHWC.")
    if not pre.scale > 0 or len(pre.mean) != 3 or len(pre.std) != 3 or min(pre.std) <= 0:
        raise EdgeCamError("--scale and --std must be positive, and --mean/--std take three values each.")
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
    pre = SourceInput(color.upper(), layout.upper(), float(scale), tuple(map(float, mean)), tuple(map(float, std)))
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
    size, dynamic = _input_geometry(model, pre.layout, input_size)
    labels = list(labels or [])
    if labels and len(labels) != head.num_classes:
        raise EdgeCamError(f"{len(labels)} labels were given for a model with {head.num_classes} classes.")
    k = min(top_k, head.num_classes)

    spec = pre.metadata_spec(size, resize_mode)
    images, source = _verify_batch(spec, verify_images, max_images)
    ref_logits, feats = _reference(model, head, pre, images)
    fh, fw = feats.shape[2:]
    stride = size[0] / fh
    if size[1] != fw * stride:  # e.g. PaddleOCR's text classifier keeps width: feature_size tells
        stride = None
    else:
        stride = int(stride) if stride.is_integer() else round(stride, 3)
    cam = CamSpec(method="cam", feature_layer=head.feature, classifier=head.classifier, stride=stride,
                  feature_size=(int(fh), int(fw)), threshold=threshold)
    info = ModelInfo(spec, labels, cam, {
        "model": os.path.basename(src), "converted": "edge_cam_export.surgery", "producer":
        f"{model.producer_name} {model.producer_version}".strip(), "opset": opset,
        "original_input": {"color": pre.color, "layout": pre.layout, "scale": pre.scale,
                           "mean": list(pre.mean), "std": list(pre.std)},
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    cam_model = _build(model, head, pre, size, "batch" if dynamic else 1, k, (int(fh), int(fw)), info)
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
