"""The exported graph: uint8 NHWC image → normalise → network → logits, top-K, and their CAMs."""
from __future__ import annotations

import contextlib
import io
import logging
import warnings

import torch
import torch.nn.functional as F
from torch import fx, nn

from edge_cam.errors import EdgeCamError, first_line

from .heads import CamLayers
from .onnx_passes import tidy

log = logging.getLogger("edge_cam")


def features_only(model: nn.Module, layers: CamLayers) -> fx.GraphModule:
    """A fresh trace of the model that stops at F (Grad-CAM replays the head itself). A trace of
    its own, because the head's in-place activations, traced twice over shared tensors, confuse
    the dynamo exporter, and because layers.graph must keep its head nodes for the replay."""
    from .heads import trace
    gm, _ = trace(model)
    feature = next(n for n in gm.graph.nodes if n.name == layers.feature_node.name)
    out = next(n for n in gm.graph.nodes if n.op == "output")
    out.args = ((feature, None),)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def split_outputs(layers: CamLayers) -> fx.GraphModule:
    """The traced model, made to return (F, logits) instead of logits alone."""
    gm = layers.graph
    out = next(n for n in gm.graph.nodes if n.op == "output")
    out.args = ((layers.feature_node, layers.logits_node),)
    gm.graph.lint()
    gm.recompile()
    return gm


class CamGraph(nn.Module):
    """What runs on the board. With neither `weight` nor `grad_head` it is a plain classifier.

    CAM_c(x, y) = Σ_k W[c, k] · F_k(x, y) for the top-K classes only: a gather of K rows of W and
    one batched matmul, so the CAM costs K·C·h·w multiply-adds on top of the network. With a
    `grad_head` the rows are Grad-CAM's α = ∂y_c/∂GAP(F) instead of W[c].

    Given `class_query` (int64 [Q], Q ≥ 0, the same classes for every image) it also returns
    `query_cams` [B, Q, h, w] and `query_scores` [B, Q] from the same F: a user watching a class
    gets its map whatever its rank, without a second run of the network.

    The rows are gathered with Gather (embedding, index_select), not GatherND: one node each, and
    OpenVINO reads them with a constant query too. W is the classifier's own parameter where the
    body holds it as such (a Linear), so the file stores it once.
    """
    # Buffers (register_buffer), declared for the type checker: nn.Module's attribute lookup types them loosely.
    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor  # with `weight` only

    def __init__(self, body: nn.Module, mean, std, top_k: int, weight: torch.Tensor | None = None,
                 grad_head: nn.Module | None = None):
        super().__init__()
        self.body = body
        # (x/255 - mean)/std folded into one subtract and one divide (the ONNX export then folds
        # the divide into the first convolution, see onnx_passes.fold_scale).
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.top_k = top_k
        self.with_cam = weight is not None or grad_head is not None
        self.grad_head = grad_head
        if weight is not None:
            shared = _parameter_of(body, weight)
            if shared is not None:
                self.weight = shared  # the same Parameter twice: the exporters store it once
            else:
                self.register_buffer("weight", weight.detach().to(torch.float32).clone())

    def top(self, logits: torch.Tensor):
        # Rank by logits, not probabilities: softmax saturates to exact ties in float32.
        class_ids = torch.topk(logits, self.top_k, dim=1).indices
        return class_ids, torch.gather(torch.softmax(logits, dim=1), 1, class_ids)

    def forward(self, image: torch.Tensor, class_query: torch.Tensor | None = None):
        x = (image.permute(0, 3, 1, 2).to(torch.float32) - self.mean) / self.std
        if not self.with_cam:
            logits = self.body(x)
            return (logits, *self.top(logits))
        feat, logits = self.body(x)
        b, c, h, w = feat.shape
        flat = feat.reshape(b, c, h * w)
        if self.grad_head is not None:  # Grad-CAM: α from the head's closed-form gradient
            logits, class_ids, alpha, *alpha_q = self.grad_head(feat, self.top_k, class_query)
            alpha_q = alpha_q[0] if alpha_q else None
            probs = torch.softmax(logits, dim=1)
        else:
            probs = torch.softmax(logits, dim=1)
            class_ids = torch.topk(logits, self.top_k, dim=1).indices  # as top(), sharing the softmax
            weight = self.weight
            alpha = F.embedding(class_ids, weight)  # (B, K, C)
            alpha_q = None if class_query is None else torch.index_select(weight, 0, class_query)  # (Q, C)
        scores = torch.gather(probs, 1, class_ids)
        cams = torch.matmul(alpha, flat).reshape(b, self.top_k, h, w)
        if class_query is None:
            return logits, class_ids, scores, cams
        # (Q, C) or (B, Q, C) @ (B, C, hw): Q may be 0, and then these are empty, not an error.
        query_cams = torch.matmul(alpha_q, flat).reshape(b, class_query.shape[0], h, w)
        return logits, class_ids, scores, cams, query_cams, torch.index_select(probs, 1, class_query)


def _parameter_of(body: nn.Module, weight: torch.Tensor) -> nn.Parameter | None:
    """The float32 parameter of `body` that `weight` is (same storage, shape and strides), if any."""
    for p in body.parameters():
        if (p.dtype == torch.float32 and p.data_ptr() == weight.data_ptr() and p.shape == weight.shape
                and p.stride() == weight.stride()):
            return p
    return None


@contextlib.contextmanager
def out_of_place(graph: nn.Module):
    """The graph's in-place activation modules run out of place while it is exported, then are put
    back as they were (they are the user's own modules).

    torch.export turns each in-place activation into a functional op plus a copy and then decomposes
    both: MobileNetV2's 35 ReLU6 made its export take twice as long (19-21 s against 10 s at 64x64,
    measured) for the same ONNX graph. A module is changed only where no other node reads its input,
    at every call in every traced graph, so that the mutation could not be seen and the values are
    the same."""
    safe: dict[nn.Module, bool] = {}
    for gm in graph.modules():
        if isinstance(gm, fx.GraphModule):
            for node in gm.graph.nodes:
                if node.op != "call_module":
                    continue
                module = gm.get_submodule(str(node.target))
                if getattr(module, "inplace", None) is True:
                    alone = all(len(arg.users) == 1 for arg in node.all_input_nodes)
                    safe[module] = safe.get(module, True) and alone
    changed = [m for m, ok in safe.items() if ok]
    try:
        for m in changed:
            setattr(m, "inplace", False)  # noqa: B010 (nn.Module types its attributes as tensors or modules)
        yield
    finally:
        for m in changed:
            setattr(m, "inplace", True)  # noqa: B010


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


@contextlib.contextmanager
def floor_pooling(graph: nn.Module):
    """The graph's ceil-mode max pooling runs in floor mode while it is exported at a symbolic size,
    with the same windows and values, then is put back (the modules are the user's own).

    At a symbolic size torch.export cannot reason about a ceiling's output size next to a floor's
    (GoogLeNet's inception branches concatenate both: "Expected op to be '==', got <"), so the
    whole size was fixed. With stride 1 the two modes agree. With stride s ≥ 2, no padding and a
    kernel of at least s, ceil mode's extra window starts inside the image: s - 1 pixels of -inf
    on the bottom and right give floor mode that window, with the same maximum (the ONNX graph
    then has no Pad: onnx_passes.pool_padding makes it the pool's own padding). Other pools
    (padded, dilated, with indices) are left alone."""
    floored, replaced = [], []
    for m in graph.modules():
        if not isinstance(m, nn.MaxPool2d) or not m.ceil_mode or m.return_indices or _pair(m.dilation) != (1, 1):
            continue
        kernel, stride, padding = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
        if stride == (1, 1):
            m.ceil_mode = False
            floored.append(m)
        elif padding == (0, 0) and kernel[0] >= stride[0] and kernel[1] >= stride[1]:
            def forward(x, kernel=kernel, stride=stride):
                return F.max_pool2d(F.pad(x, (0, stride[1] - 1, 0, stride[0] - 1), value=float("-inf")), kernel, stride)
            m.forward = forward  # type: ignore[method-assign]
            replaced.append(m)
    try:
        yield
    finally:
        for m in floored:
            m.ceil_mode = True
        for m in replaced:
            del m.forward


def output_names(graph: CamGraph, class_query: bool = False) -> list[str]:
    return (["logits", "class_ids", "scores"] + (["cams"] if graph.with_cam else [])
            + (["query_cams", "query_scores"] if class_query and graph.with_cam else []))


def to_onnx(graph: CamGraph, example: torch.Tensor, path: str, opset: int = 18,
            exporter: str = "dynamo", class_query: bool = True, dynamic_size: bool = True) -> bool:
    """Trace `graph` to ONNX at `path` with a dynamic batch axis; with `dynamic_size` the image's
    height and width are dynamic too (a GAP network is fully convolutional, and a finer map at a
    larger size separates objects), and with `class_query` a CAM graph takes the classes to map.

    Returns whether the size is dynamic: a network that cannot trace a symbolic size (a fixed
    pooling window, a reshape to its trained size) is exported at the example's size instead; the
    runtime reads which from the graph's input shape."""
    if dynamic_size:
        # torch logs a failed symbolic trace at ERROR level (tracebacks included) before raising;
        # here that failure is expected for some networks and has a fallback, so it stays quiet.
        previous = logging.root.manager.disable
        logging.disable(logging.ERROR)
        try:
            _export(graph, example, path, opset, exporter, class_query, True)
            return True
        except EdgeCamError as e:
            logging.disable(previous)
            log.info("exporting with a fixed input size: a dynamic one failed (%s)", e)
        finally:
            logging.disable(previous)
    _export(graph, example, path, opset, exporter, class_query, False)
    return False


SMALLEST_SIDE = 33  # the five stride-2 stages of common backbones leave a 2x2 map from here


def smallest_side(graph: CamGraph) -> int:
    """The smallest height and width, from 33 pixels, at which the network's map is at least 2x2.

    A map of 1x1 is an axis of size 1, which torch.export specialises: asked for a range that
    reaches it, it refuses, suggests the smallest size that does not and traces the whole network
    again (MobileNetV2 at min=32: two traces of about 4 s each). The five stride-2 stages of common
    backbones leave 2x2 from 33; a network that needs more (DenseNet-121: 61, its map is 1x1 below)
    is found here by running it eagerly at small sizes, a bisection since the map grows with the
    image (export_module of DenseNet-121 at 64x64: 24 s against 34 s with torch's retry, measured).
    Past 256 pixels, or for a plain classifier (no map to see), it answers 33 and leaves the rest
    to torch's own retry; an eager run that large would cost more than the retry saves."""
    if not graph.with_cam:
        return SMALLEST_SIDE

    def enough(side: int) -> bool:
        try:
            with torch.no_grad():
                feat = graph.body(torch.zeros(1, 3, side, side))[0]
        except Exception:  # too small for a fixed window: not enough either
            return False
        return min(feat.shape[2:]) >= 2

    low, high = SMALLEST_SIDE, 64
    if enough(low):
        return low
    while not enough(high):
        low, high = high, high * 2
        if high > 256:
            return SMALLEST_SIDE
    while high - low > 1:  # enough(high) and not enough(low)
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


def _export(graph: CamGraph, example: torch.Tensor, path: str, opset: int, exporter: str,
            class_query: bool, dynamic_size: bool) -> None:
    query = class_query and graph.with_cam
    names = output_names(graph, query)
    inputs = ["image"] + (["class_query"] if query else [])
    # Three ids, not 0 or 1: torch.export specialises an axis whose example has size 0 or 1.
    args = (example, torch.zeros(3, dtype=torch.int64)) if query else (example,)
    axes = {0: "batch"} | ({1: "height", 2: "width"} if dynamic_size else {})
    side = smallest_side(graph) if dynamic_size else 0
    dims = {0: torch.export.Dim("batch", min=1, max=1024)} | (
        {1: torch.export.Dim("height", min=side, max=4096), 2: torch.export.Dim("width", min=side, max=4096)}
        if dynamic_size else {})
    shapes = {"image": dims} | ({"class_query": {0: torch.export.Dim("query", min=0, max=4096)}} if query else {})
    map_axes = {0: "batch"} | ({2: "map_height", 3: "map_width"} if dynamic_size else {})
    out_axes = {n: map_axes if n == "cams" else {0: "batch"} for n in names} | (
        {"query_cams": map_axes | {1: "query"}, "query_scores": {0: "batch", 1: "query"}} if query else {})
    captured = io.StringIO()  # the exporter prints its own progress
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(captured), torch.no_grad(), out_of_place(graph), \
                floor_pooling(graph) if dynamic_size else contextlib.nullcontext():
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                torch.onnx.export(graph, args, path, input_names=inputs, output_names=names,
                                  opset_version=opset, dynamo=True, external_data=False, dynamic_shapes=shapes)
            elif exporter == "torchscript":
                torch.onnx.export(graph, args, path, input_names=inputs, output_names=names,
                                  opset_version=opset, dynamo=False,
                                  dynamic_axes={"image": axes} | ({"class_query": {0: "query"}} if query else {})
                                  | out_axes)
            else:
                raise EdgeCamError(f"unknown exporter {exporter!r}; use 'dynamo' or 'torchscript'.")
    except EdgeCamError:
        raise
    except Exception as e:
        detail = first_line(e)
        raise EdgeCamError(f"torch.onnx could not export this model ({detail}); try "
                           "--exporter torchscript or another --opset.") from None
    tidy(path)  # an optional class_query, the divide folded, the maps' sizes from F
