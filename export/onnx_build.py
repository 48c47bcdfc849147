"""Build the CAM graph from the original: a uint8 NHWC RGB `image` input normalised inside the graph,
the original network, and the CAM head appended (logits, class_ids, scores, cams, and the maps and
scores of the classes fed to `class_query`), as `edge-cam export` builds it from torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_cam.errors import EdgeCamError
from edge_cam.metadata import PREFIX, ModelInfo

from .onnx_head import Head

if TYPE_CHECKING:
    from .surgery import SourceInput

OUTPUTS = ("image", "class_query", "logits", "class_ids", "scores", "cams", "query_cams", "query_scores")  # reserved


def graph_input(model):
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


def input_geometry(model, layout: str, input_size) -> tuple[tuple[int, int], bool]:
    """(H, W) the result takes, and whether its batch can be dynamic."""
    inp = graph_input(model)
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
        looks_other = (dims[3] if layout == "NCHW" else dims[1]) == 3
        hint = f" (its shape {dims} looks {other}: pass --layout {other})" if looks_other else ""
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


def build(model, head: Head, pre: SourceInput, size: tuple[int, int], batch, k: int,
           feature_size: tuple[int, int], info: ModelInfo):
    """The original graph wrapped in the uint8 contract, with the CAM head appended."""
    g = model.graph
    reserved = set(OUTPUTS)
    names = {n for node in g.node for n in (*node.input, *node.output)} | {v.name for v in g.input}
    for name in reserved & names:
        _rename(g, name, f"src/{name}")
    x_name = graph_input(model).name
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
    # The queried classes: (Q, C) rows @ (B, C, hw) broadcasts to (B, Q, hw). Q may be 0; Reshape's
    # 0 then copies the input's own 0, so an empty query gives empty outputs, not an error.
    tail += [helper.make_node("Gather", [p + "weight", "class_query"], [p + "query_weight"], axis=0),
             helper.make_node("MatMul", [p + "query_weight", p + "feature_flat"], [p + "query_flat"]),
             _const_node(p + "zero", np.array([0], np.int64)),
             _const_node(p + "one", np.array([1], np.int64)),
             helper.make_node("Slice", [p + "bk", p + "zero", p + "one"], [p + "b"]),  # Shape's end: opset 15
             helper.make_node("Shape", ["class_query"], [p + "q"]),
             helper.make_node("Concat", [p + "b", p + "q", p + "hw"], [p + "query_shape"], axis=0),
             helper.make_node("Reshape", [p + "query_flat", p + "query_shape"], ["query_cams"]),
             helper.make_node("Gather", [p + "probs", "class_query"], ["query_scores"], axis=1)]

    old = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old + tail)
    kept = [i for i in g.input if i.name != x_name]
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("image", TensorProto.UINT8, [batch, *size, 3]),
                    helper.make_tensor_value_info("class_query", TensorProto.INT64, ["query"])] + kept)
    del g.output[:]
    n, (fh, fw) = head.num_classes, feature_size
    g.output.extend([helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, n]),
                     helper.make_tensor_value_info("class_ids", TensorProto.INT64, [batch, k]),
                     helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, k]),
                     helper.make_tensor_value_info("cams", TensorProto.FLOAT, [batch, k, fh, fw]),
                     helper.make_tensor_value_info("query_cams", TensorProto.FLOAT, [batch, "query", fh, fw]),
                     helper.make_tensor_value_info("query_scores", TensorProto.FLOAT, [batch, "query"])])
    # value_info of the renamed input or of tensors now computed differently would mislead ORT.
    vi = [v for v in g.value_info if v.name not in (x_name, *OUTPUTS)]
    del g.value_info[:]
    g.value_info.extend(vi)
    _prune(g)
    kept_props = {m.key: m.value for m in model.metadata_props if not m.key.startswith(PREFIX)}
    helper.set_model_props(model, {**kept_props, **info.to_props()})
    return model
