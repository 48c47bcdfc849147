"""Build the CAM graph from the original: a uint8 NHWC RGB `image` input normalised inside the graph,
the original network, and the CAM head appended (logits, class_ids, scores, cams, and the maps and
scores of the classes fed to `class_query`), as `edge-cam export` builds it from torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from edge_cam.errors import EdgeCamError
from edge_cam.metadata import PREFIX, ModelInfo

from .onnx_head import Head
from .onnx_passes import QUERY, const_node, feature_nodes, fold_scale, map_nodes, opset_of, optional_query, prune, subgraphs

if TYPE_CHECKING:
    from .onnx_source import SourceInput

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


def _rename(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if i == old else i for i in node.input]
        node.output[:] = [new if o == old else o for o in node.output]
        for sub in subgraphs(node):
            _rename(sub, old, new)
    for coll in (graph.input, graph.output, graph.value_info, graph.initializer):
        for v in coll:
            if v.name == old:
                v.name = new


def _stored(graph, weight: np.ndarray) -> str | None:
    """The initializer holding exactly `weight` (a Gemm's transB=1 matrix, a MatMul's after its
    transposition is not one), so the CAM gathers the classifier's own copy."""
    raw = weight.astype(np.float32).tobytes()
    for t in graph.initializer:
        if (t.data_type == TensorProto.FLOAT and list(t.dims) == list(weight.shape)
                and numpy_helper.to_array(t).tobytes() == raw):
            return t.name
    return None


def build(model, head: Head, pre: SourceInput, size: tuple[int, int], batch, k: int,
          feature_size: tuple[int, int], info: ModelInfo):
    """The original graph wrapped in the uint8 contract, with the CAM head appended."""
    g = model.graph
    opset = opset_of(model)
    reserved = set(OUTPUTS)
    names = {n for node in g.node for n in (*node.input, *node.output)} | {v.name for v in g.input}
    for name in reserved & names:
        _rename(g, name, f"src/{name}")
    x_name = graph_input(model).name
    feature = f"src/{head.feature}" if head.feature in reserved else head.feature
    logits = f"src/{head.logits}" if head.logits in reserved else head.logits
    p = "edge_cam/"
    # Layout and colour order first, on uint8: a quarter of the bytes a float Transpose moves.
    nodes, x, shape, axis = [], "image", (1, 1, 1, 3), 3
    if pre.layout == "NCHW":
        nodes.append(helper.make_node("Transpose", [x], [p + "nchw"], perm=[0, 3, 1, 2]))
        x, shape, axis = p + "nchw", (1, 3, 1, 1), 1
    if pre.color == "BGR":
        nodes += [const_node(p + "bgr", np.array([2, 1, 0], np.int64)),
                  helper.make_node("Gather", [x, p + "bgr"], [p + "swapped"], axis=axis)]
        x = p + "swapped"
    # (x·scale - mean)/std = (x - mean/scale) / (std/scale): no multiply, and the divide then folds
    # into the first convolution where it can (onnx_passes.fold_scale).
    scale = np.float64(pre.scale)
    nodes += [helper.make_node("Cast", [x], [p + "float"], to=TensorProto.FLOAT),
              const_node(p + "mean", (np.asarray(pre.mean, np.float64) / scale).astype(np.float32).reshape(shape)),
              const_node(p + "std", (np.asarray(pre.std, np.float64) / scale).astype(np.float32).reshape(shape)),
              helper.make_node("Sub", [p + "float", p + "mean"], [p + "centred"]),
              helper.make_node("Div", [p + "centred", p + "std"], [x_name])]

    tail = [helper.make_node("Identity", [logits], ["logits"]),
            const_node(p + "k", np.array([k], np.int64)),
            helper.make_node("TopK", ["logits", p + "k"], [p + "top_logits", "class_ids"], axis=-1,
                             largest=1, sorted=1),
            helper.make_node("Softmax", ["logits"], [p + "probs"], axis=1),
            helper.make_node("GatherElements", [p + "probs", "class_ids"], ["scores"], axis=1)]
    f = feature
    if head.feature_layout == "NHWC":
        tail.append(helper.make_node("Transpose", [f], [p + "feature_nchw"], perm=[0, 3, 1, 2]))
        f = p + "feature_nchw"
    weight = _stored(g, head.weight)
    if weight is None:
        weight = p + "weight"
        g.initializer.append(numpy_helper.from_array(head.weight.astype(np.float32), weight))
    # CAM = W[top-K] · F as a batched MatMul over the flattened map: no Einsum, so opset 11 will do.
    # The queried classes: (Q, C) rows @ (B, C, hw) broadcasts to (B, Q, hw); Q may be 0.
    feature_ops, flat, hw = feature_nodes(f, opset)
    tail += feature_ops
    tail += [helper.make_node("Gather", [weight, "class_ids"], [p + "top_weight"], axis=0)]
    tail += map_nodes(p + "top_weight", flat, hw, "cams", opset)
    tail += [helper.make_node("Gather", [weight, QUERY], [p + "query_weight"], axis=0)]
    tail += map_nodes(p + "query_weight", flat, hw, "query_cams", opset)
    tail += [helper.make_node("Gather", [p + "probs", QUERY], ["query_scores"], axis=1)]

    old = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old + tail)
    kept = [i for i in g.input if i.name != x_name]
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("image", TensorProto.UINT8, [batch, *size, 3]),
                    helper.make_tensor_value_info(QUERY, TensorProto.INT64, ["query"])] + kept)
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
    optional_query(model)
    prune(g)
    fold_scale(model)
    kept_props = {m.key: m.value for m in model.metadata_props if not m.key.startswith(PREFIX)}
    helper.set_model_props(model, {**kept_props, **info.to_props()})
    return model
