"""The exported graph: uint8 NHWC image → normalise → network → logits, top-K, and their CAMs."""
from __future__ import annotations

import contextlib
import io
import warnings

import torch
from torch import fx, nn

from edge_cam.errors import EdgeCamError, first_line

from .heads import CamLayers


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
    """

    def __init__(self, body: nn.Module, mean, std, top_k: int, weight: torch.Tensor | None = None,
                 grad_head: nn.Module | None = None):
        super().__init__()
        self.body = body
        # (x/255 - mean)/std folded into one subtract and one divide.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.top_k = top_k
        self.with_cam = weight is not None or grad_head is not None
        self.grad_head = grad_head
        if weight is not None:
            self.register_buffer("weight", weight.detach().to(torch.float32).clone())

    def top(self, logits: torch.Tensor):
        # Rank by logits, not probabilities: softmax saturates to exact ties in float32.
        class_ids = torch.topk(logits, self.top_k, dim=1).indices
        return class_ids, torch.gather(torch.softmax(logits, dim=1), 1, class_ids)

    def forward(self, image: torch.Tensor):
        x = (image.permute(0, 3, 1, 2).to(torch.float32) - self.mean) / self.std
        if not self.with_cam:
            logits = self.body(x)
            return (logits, *self.top(logits))
        feat, logits = self.body(x)
        b, c, h, w = feat.shape
        if self.grad_head is not None:  # Grad-CAM: α from the head's closed-form gradient
            logits, class_ids, alpha = self.grad_head(feat, self.top_k)
            scores = torch.gather(torch.softmax(logits, dim=1), 1, class_ids)
        else:
            class_ids, scores = self.top(logits)
            alpha = self.weight[class_ids]
        cams = torch.matmul(alpha, feat.reshape(b, c, h * w))
        return logits, class_ids, scores, cams.reshape(b, self.top_k, h, w)


def to_onnx(graph: CamGraph, example: torch.Tensor, path: str, opset: int = 18,
            exporter: str = "dynamo") -> None:
    """Trace `graph` to ONNX at `path` with a dynamic batch axis."""
    names = ["logits", "class_ids", "scores"] + (["cams"] if graph.with_cam else [])
    log = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), torch.no_grad():
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                torch.onnx.export(graph, (example,), path, input_names=["image"], output_names=names,
                                  opset_version=opset, dynamo=True, external_data=False,
                                  dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1, max=1024)}})
            elif exporter == "torchscript":
                torch.onnx.export(graph, (example,), path, input_names=["image"], output_names=names,
                                  opset_version=opset, dynamo=False,
                                  dynamic_axes={"image": {0: "batch"}, **{n: {0: "batch"} for n in names}})
            else:
                raise EdgeCamError(f"unknown exporter {exporter!r}; use 'dynamo' or 'torchscript'.")
    except EdgeCamError:
        raise
    except Exception as e:
        detail = first_line(e)
        raise EdgeCamError(f"torch.onnx could not export this model ({detail}); try "
                           "--exporter torchscript or another --opset.") from None
