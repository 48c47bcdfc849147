"""Check an exported graph against the eager model, the way the CAM paper's code computes CAMs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .heads import CamLayers, eager_features

CAM_TOLERANCE = 1e-4  # of each map's range
LOGIT_TOLERANCE = 1e-4  # of the logits' range


@dataclass
class Report:
    cam_error: float | None  # max |ORT - eager| / range of the eager map, over all maps
    logit_error: float  # max |ORT - eager| / range of the eager logits
    top1_agree: bool
    batch: int

    @property
    def ok(self) -> bool:
        return (self.logit_error <= LOGIT_TOLERANCE and self.top1_agree
                and (self.cam_error is None or self.cam_error <= CAM_TOLERANCE))

    def __str__(self) -> str:
        cam = "n/a" if self.cam_error is None else f"{self.cam_error:.2e}"
        return (f"batch {self.batch}: CAM error {cam} of range (limit {CAM_TOLERANCE:g}), logits error "
                f"{self.logit_error:.2e} of range (limit {LOGIT_TOLERANCE:g}), top-1 "
                f"{'agrees' if self.top1_agree else 'DISAGREES'}")


def logits_error(logits: np.ndarray, ref: np.ndarray) -> float:
    """max |logits - ref| / the range of ref."""
    return float(np.abs(logits - ref).max()) / (float(np.ptp(ref)) or 1.0)


def maps_error(cams: np.ndarray, ref: np.ndarray) -> float:
    """max over the (B, K) maps of max |cams - ref| / that reference map's range (a flat map's
    range is floored, so it is compared to the largest map instead of divided by zero)."""
    flat = ref.reshape(*ref.shape[:2], -1)
    ranges = np.maximum(np.ptp(flat, axis=2), 1e-12 + 1e-6 * np.abs(ref).max())
    return float((np.abs(cams.reshape(flat.shape) - flat).max(axis=2) / ranges).max())


def sample_images(batch: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Deterministic test images with structure (blobs on gradients) rather than pure noise, so
    the maps have hot and cold regions."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((batch, h, w, 3), np.uint8)
    for i in range(batch):
        img = rng.uniform(0, 255, 3) * (xx / w)[..., None] * 0.5 + rng.uniform(0, 128, 3)
        for _ in range(3):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.3) * min(h, w)
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
            img = img * (1 - blob) + rng.uniform(0, 255, 3) * blob
        img += rng.normal(0, 8, img.shape)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


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
    logits_ref, cams_ref = reference(model, layers, images, mean, std, outputs["class_ids"])
    logit_error = logits_error(outputs["logits"], logits_ref)
    # ORT's top-1 must be a most probable class of the eager model; random weights give exact
    # ties in float32 softmax that either side may order differently.
    p = np.exp(logits_ref.astype(np.float64) - logits_ref.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    chosen = np.take_along_axis(p, outputs["class_ids"][:, :1], axis=1)[:, 0]
    agree = bool(np.all(chosen >= p.max(1) - 1e-6))
    cam_error = None if cams_ref is None else maps_error(outputs["cams"], cams_ref)
    return Report(cam_error, logit_error, agree, images.shape[0])
