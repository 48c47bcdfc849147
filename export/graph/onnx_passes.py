"""Rewrites of an exported graph that keep what it computes and cut what it costs, for both
exporters (the torch tracer's output and the ONNX surgery's): onnx and numpy only.

- `optional_query`: `class_query` gets a default, so a consumer that feeds the image alone (a bare
  ONNX Runtime session, OpenVINO, Triton) runs the teacher; the runtime still feeds its own.
- `fold_scale`: the normalisation's division by std moves into the first convolution's weights.
- `lean_maps`: the CAM reshapes take their sizes from the feature map itself instead of the
  tracer's arithmetic on the input's height and width.
- `pool_padding`: a Pad of -inf before a MaxPool becomes the pool's own padding (the export's
  floor-mode stand-in for ceil-mode pooling, cam_graph.floor_pooling, would cost a copy each).

Each ONNX Runtime node costs microseconds even on a scalar: benchmarks/cam_overhead.py measures
what these save against a plain classifier.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QUERY = "class_query"
# What `class_query` holds when a consumer does not feed it. Not empty: OpenVINO reads an empty
# initializer as the scalar 0 (its "failsafe" constant), which breaks the query outputs' shapes;
# one class, 0, reads alike in every runtime. edge-cam's runtime always feeds its own query.
DEFAULT_QUERY = (0,)
MAPS = ("cams", "query_cams")
_P = "edge_cam/"


def opset_of(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def optional_query(model: onnx.ModelProto) -> bool:
    """Give the `class_query` input a default (an initializer of the same name, DEFAULT_QUERY), which
    makes it optional: ONNX Runtime lets a caller override it, with any length (the input's axis
    stays dynamic). Returns whether the graph has such an input."""
    g = model.graph
    if not any(i.name == QUERY for i in g.input):
        return False
    if not any(t.name == QUERY for t in g.initializer):
        g.initializer.append(numpy_helper.from_array(np.array(DEFAULT_QUERY, np.int64), QUERY))
    return True


def _producers(graph) -> dict:
    return {o: n for n in graph.node for o in n.output}


def _consumers(graph) -> dict[str, list]:
    out: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def _constant(graph, name: str, producers: dict) -> np.ndarray | None:
    for t in graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    node = producers.get(name)
    if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
        return numpy_helper.to_array(node.attribute[0].t)
    return None


def _attr(node, name: str, default):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def fold_scale(model: onnx.ModelProto) -> bool:
    """Fold the normalisation's `Div(x, std)` (std per channel, [1, C, 1, 1]) into the convolutions
    it feeds: conv(pad0(x / s), W) = conv(pad0(x), W / s) exactly, since zero padding is zero in both.
    Done only where each consumer is an ungrouped Conv reading it as its data, with an initializer
    weight used nowhere else; otherwise the graph is left as it is. Returns whether it folded."""
    g = model.graph
    producers, consumers = _producers(g), _consumers(g)
    outputs = {o.name for o in g.output}
    inits = {t.name: t for t in g.initializer}
    for div in g.node:
        if div.op_type != "Div" or div.output[0] in outputs:
            continue
        std = _constant(g, div.input[1], producers)
        if std is None or std.dtype != np.float32 or std.ndim not in (3, 4) or std.size == 0:
            continue
        s = std.reshape(-1)
        if std.shape[-2:] != (1, 1) or (std.ndim == 4 and std.shape[0] != 1) or not np.all(np.isfinite(s) & (s != 0)):
            continue
        users = consumers.get(div.output[0], [])
        weights = [u.input[1] if len(u.input) > 1 else "" for u in users]
        if not users or not all(
                u.op_type == "Conv" and u.input[0] == div.output[0] and _attr(u, "group", 1) == 1
                and w in inits and len(consumers.get(w, [])) == 1 and len(inits[w].dims) == 4
                and s.size in (1, inits[w].dims[1]) and inits[w].data_type == TensorProto.FLOAT
                for u, w in zip(users, weights)):
            continue
        for u, w in zip(users, weights):
            scaled = numpy_helper.to_array(inits[w]) / s.reshape(1, -1, 1, 1)
            inits[w].CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), w))
            u.input[0] = div.input[0]
        g.node.remove(div)
        _drop_value_info(g, {div.output[0], *weights})
        prune(g)
        return True
    return False


def _shape(tensor: str, start: int, end: int | None, out: str, opset: int) -> list:
    """Nodes giving Shape(tensor)[start:end]: Shape's own start/end from opset 15, a Slice before."""
    if opset >= 15:
        if end is None:
            return [helper.make_node("Shape", [tensor], [out], start=start)]
        return [helper.make_node("Shape", [tensor], [out], start=start, end=end)]
    bounds = [const_node(f"{out}/start", np.array([start], np.int64)),
              const_node(f"{out}/end", np.array([end if end is not None else 2 ** 62], np.int64))]
    return bounds + [helper.make_node("Shape", [tensor], [out + "/all"]),
                     helper.make_node("Slice", [out + "/all", f"{out}/start", f"{out}/end"], [out])]


def const_node(name: str, value: np.ndarray):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def map_nodes(alpha: str, flat: str, hw: str, out: str, opset: int) -> list:
    """out [B, K, h, w] = (α [B, K, C] or [K, C]) @ F_flat [B, C, hw], reshaped with the product's own
    leading sizes and the feature map's h, w (`hw`, a [2] int64 tensor). K may be 0: then the
    outputs are empty, not an error."""
    lead = f"{_P}{out}_bk"
    return ([helper.make_node("MatMul", [alpha, flat], [f"{_P}{out}_flat"])]
            + _shape(f"{_P}{out}_flat", 0, 2, lead, opset)
            + [helper.make_node("Concat", [lead, hw], [f"{_P}{out}_shape"], axis=0),
               helper.make_node("Reshape", [f"{_P}{out}_flat", f"{_P}{out}_shape"], [out])])


def feature_nodes(feature: str, opset: int) -> tuple[list, str, str]:
    """(nodes, F flattened to [B, C, h·w], F's [h, w]) for map_nodes."""
    flat, hw = _P + "feature_flat", _P + "feature_hw"
    return ([const_node(_P + "flat_shape", np.array([0, 0, -1], np.int64)),
             helper.make_node("Reshape", [feature, _P + "flat_shape"], [flat])]
            + _shape(feature, 2, 4, hw, opset)), flat, hw


def lean_maps(model: onnx.ModelProto) -> bool:
    """Rebuild `cams` and `query_cams` as map_nodes builds them where the tracer made them
    `Reshape(MatMul(α, Reshape(F, [b, C, h·w])), [b, K, h, w])` with b, h, w computed from the image's
    size (a dozen scalar nodes, each a few microseconds in ONNX Runtime). The MatMul stays, so the
    int8 path finds F behind it as before. Returns whether anything changed."""
    g = model.graph
    producers = _producers(g)
    found = []
    for out in MAPS:
        reshape = producers.get(out)
        if reshape is None or reshape.op_type != "Reshape":
            continue
        matmul = producers.get(reshape.input[0])
        if matmul is None or matmul.op_type != "MatMul":
            continue
        flatten = producers.get(matmul.input[1])
        if flatten is None or flatten.op_type != "Reshape":
            continue
        found.append((out, reshape, matmul, flatten))
    features = {f.input[0] for *_, f in found}
    if not found or len(features) != 1:
        return False
    opset = opset_of(model)
    feature = features.pop()
    # Before the last old reshape: F and every α are computed by then.
    at = max(list(g.node).index(r) for _, r, _, _ in found)
    nodes, flat, hw = feature_nodes(feature, opset)
    for out, reshape, matmul, _ in found:
        reshape.output[0] = _P + out + "_unused"  # the old tail is pruned below
        nodes += map_nodes(matmul.input[0], flat, hw, out, opset)
    for k, node in enumerate(nodes):
        g.node.insert(at + k, node)
    _drop_value_info(g, set(MAPS))
    prune(g)
    return True


def pool_padding(model: onnx.ModelProto) -> int:
    """Fold each constant Pad of -inf on the spatial axes into the MaxPool that alone reads it: a
    max pool ignores its padding, as it ignores -inf, so the windows and their maxima are the same.
    Only where every window still holds a real pixel (each side padded by less than the kernel), a
    2-D pool with one output, no ceil mode, dilation or auto_pad. Returns how many it folded
    (SqueezeNet 1.1 at 224, 1 thread, with three Pads before its pools: 1.15x slower, measured)."""
    g = model.graph
    producers, consumers = _producers(g), _consumers(g)
    outputs = {o.name for o in g.output}
    folded = 0
    for pool in g.node:
        pad = producers.get(pool.input[0]) if pool.op_type == "MaxPool" else None
        if (pad is None or pad.op_type != "Pad" or _attr(pad, "mode", b"constant") != b"constant"
                or len(pad.input) not in (2, 3) or pad.output[0] in outputs or len(consumers[pad.output[0]]) != 1
                or len(pool.output) != 1 or _attr(pool, "ceil_mode", 0) or _attr(pool, "auto_pad", b"NOTSET") != b"NOTSET"
                or any(d != 1 for d in _attr(pool, "dilations", [1, 1]))):
            continue
        amounts = _constant(g, pad.input[1], producers)
        value = _constant(g, pad.input[2], producers) if len(pad.input) == 3 and pad.input[2] else None
        kernel = list(_attr(pool, "kernel_shape", []))
        if amounts is None or value is None or value.size != 1 or not np.isneginf(value).all() or len(kernel) != 2:
            continue
        amounts = amounts.reshape(-1).astype(np.int64)
        if amounts.size != 8 or amounts[[0, 1, 4, 5]].any() or (amounts < 0).any():
            continue
        pads = np.asarray(_attr(pool, "pads", [0, 0, 0, 0]), np.int64) + amounts[[2, 3, 6, 7]]
        if (pads >= np.tile(kernel, 2)).any():
            continue
        for a in [a for a in pool.attribute if a.name == "pads"]:
            pool.attribute.remove(a)
        pool.attribute.append(helper.make_attribute("pads", [int(p) for p in pads]))
        pool.input[0] = pad.input[0]
        _drop_value_info(g, {pad.output[0]})
        folded += 1
    if folded:
        prune(g)
    return folded


def _drop_value_info(graph, names: set[str]) -> None:
    """Stale shape records of tensors that changed or went would mislead ONNX Runtime."""
    for v in [v for v in graph.value_info if v.name in names]:
        graph.value_info.remove(v)


def subgraphs(node):
    """The graphs a node holds (If's branches, Loop's body)."""
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield a.g
        elif a.type == onnx.AttributeProto.GRAPHS:
            yield from a.graphs


def _used_names(nodes, out: set[str]) -> set[str]:
    """Every tensor the nodes read, including outer-scope names used inside their subgraphs."""
    for node in nodes:
        out.update(node.input)
        for sub in subgraphs(node):
            _used_names(sub.node, out)
    return out


def prune(graph) -> None:
    """Drop the nodes and initializers no output needs (an initializer that is also an input stays)."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            _used_names([node], needed)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    inputs = {i.name for i in graph.input}
    inits = [t for t in graph.initializer if t.name in needed or t.name in inputs]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    live = needed | inputs
    vi = [v for v in graph.value_info if v.name in live]
    del graph.value_info[:]
    graph.value_info.extend(vi)


def tidy(path: str) -> None:
    """All four rewrites on the ONNX file at `path`, in place (the torch exporter's output)."""
    model = onnx.load(path)
    pool_padding(model)
    lean_maps(model)
    fold_scale(model)
    optional_query(model)
    onnx.save(model, path)
