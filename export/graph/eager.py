"""The eager reference an exported graph is checked against, computed the way the CAM paper's code
computes CAMs (a forward hook on the feature layer), or with autograd for Grad-CAM."""
from __future__ import annotations

import numpy as np
import torch
from torch import fx, nn

from .gradcam import target_name
from .heads import CamLayers
from .verify import Report, logits_error, maps_error, top1_agrees


def eager_features(model: nn.Module, layers: CamLayers, x: torch.Tensor,
                   grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: run the eager model with a forward hook on the feature layer, as the CAM
    paper's code does, and return (logits, F); with `grad`, both stay in autograd's graph."""
    captured = []
    handle = model.get_submodule(layers.hook_module).register_forward_hook(
        lambda _m, _i, out: captured.append(out))
    try:
        with torch.set_grad_enabled(grad):
            logits = model(x)
    finally:
        handle.remove()
    feat = captured[-1]
    with torch.set_grad_enabled(grad):
        feat = _replay(model, layers.post_ops, feat)
    return logits, feat


def _replay(model: nn.Module, post_ops: list[fx.Node], feat: torch.Tensor) -> torch.Tensor:
    """The hooked module's output → F: a hook only reaches module outputs, and F may be an
    elementwise op (a functional ReLU) after the last module."""
    for node in post_ops:
        args = [feat if a is node.all_input_nodes[0] else a for a in node.args]
        if node.op == "call_module":
            feat = model.get_submodule(target_name(node))(*args, **node.kwargs)
        elif node.op == "call_method":
            feat = getattr(args[0], target_name(node))(*args[1:], **node.kwargs)
        else:
            assert callable(node.target), f"{node.op} node {node.name} with a target that is not a function"
            feat = node.target(*args, **node.kwargs)
    return feat


def reference(model: torch.nn.Module, layers: CamLayers | None, images: np.ndarray, mean, std,
              class_ids: np.ndarray | None = None):
    """Eager logits and (when layers and class_ids are given) CAMs of those classes."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    if layers is None:
        with torch.no_grad():
            return model(x).numpy(), None
    if layers.method == "gradcam":
        return gradcam_reference(model, layers, x, class_ids)
    logits, feat = eager_features(model, layers, x)
    cams = None
    if class_ids is not None:
        assert layers.weight is not None  # a CAM model's layers hold W (only Grad-CAM's have none)
        w = layers.weight[torch.from_numpy(class_ids)]  # (B, K, C)
        cams = torch.einsum("bkc,bchw->bkhw", w, feat).numpy()
    return logits.numpy(), cams


def gradcam_reference(model, layers: CamLayers, x: torch.Tensor, class_ids: np.ndarray | None):
    """Grad-CAM with autograd: α = h·w · mean over x, y of ∂y_c/∂F (h·w undoes the pooling's 1/hw,
    so α = ∂y_c/∂GAP(F) exactly and the maps compare without a scale)."""
    logits, feat = eager_features(model, layers, x, grad=True)
    cams = None
    if class_ids is not None:
        h, w = feat.shape[2:]
        cams = np.empty((*class_ids.shape, h, w), np.float32)
        for b in range(class_ids.shape[0]):
            for k, c in enumerate(class_ids[b]):
                g = torch.autograd.grad(logits[b, int(c)], feat, retain_graph=True)[0][b]
                alpha = g.sum((1, 2))
                cams[b, k] = torch.einsum("c,chw->hw", alpha, feat[b]).detach().numpy()
    return logits.detach().numpy(), cams


def compare(model, layers, outputs: dict[str, np.ndarray], images: np.ndarray, mean, std) -> Report:
    """A runtime's `outputs` for `images` against the eager model."""
    logits_ref, cams_ref = reference(model, layers, images, mean, std, outputs["class_ids"])
    n = images.shape[0]
    return Report("the eager model", n, n, logits_error(outputs["logits"], logits_ref),
                  None if cams_ref is None else maps_error(outputs["cams"], cams_ref),
                  top1_agrees(outputs["class_ids"], logits_ref))
