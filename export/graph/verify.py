"""What every exporter checks before it keeps a file: one Report of the graph against a reference
(the eager model, the original ONNX graph, or ONNX Runtime for a .tflite), its errors measured
the same way, on the same kind of test images.

numpy only: the ONNX surgery uses it on machines without torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Of the reference's range, per image for logits and per map for CAMs: float32 reordering stays
# far below it, a wrong layer, weight or normalisation far above.
TOLERANCE = 1e-4


@dataclass(frozen=True)
class Report:
    """One exported graph against a reference on the same images."""
    reference: str  # "the eager model", "the original graph", "ONNX Runtime"
    images: int
    batch: int  # the largest batch the graph ran on
    logit_error: float  # logits_error()
    cam_error: float | None  # maps_error(); None for a graph without CAMs
    top1_agree: bool  # its top-1 is a most probable class of the reference (exact ties either way)
    same_classes: bool | None = None  # runtime against runtime: the whole top-K, up to ties
    source: str = "synthetic images"
    tolerance: float = TOLERANCE

    @property
    def ok(self) -> bool:
        return (self.top1_agree and self.same_classes is not False and self.logit_error <= self.tolerance
                and (self.cam_error is None or self.cam_error <= self.tolerance))

    def __str__(self) -> str:
        cam = "n/a" if self.cam_error is None else f"{self.cam_error:.2e}"
        classes = "" if self.same_classes is None else f", class_ids {'the same' if self.same_classes else 'DIFFER'}"
        return (f"{self.images} {self.source} (batch {self.batch}) against {self.reference}: CAM error {cam} "
                f"of range, logits error {self.logit_error:.2e} of range (limit {self.tolerance:g}), top-1 "
                f"{'agrees' if self.top1_agree else 'DISAGREES'}{classes}")


def relative_error(values: np.ndarray, ref: np.ndarray, axes: tuple[int, ...]) -> float:
    """max |values - ref| / the range of ref, each range over `axes` (one image's logits, one map).

    Per image, not over the batch: one image with large logits must not hide another's error. A
    flat reference has its range floored, so it is compared to the largest |ref| instead. Values of
    another shape (maps of another size) are infinitely wrong: a failed check, not a crash.
    """
    ref = np.asarray(ref, np.float64)
    if np.shape(values) != ref.shape:
        return float("inf")
    err = np.abs(np.asarray(values, np.float64) - ref).max(axis=axes)
    span = ref.max(axis=axes) - ref.min(axis=axes)
    return float((err / np.maximum(span, 1e-12 + 1e-6 * np.abs(ref).max())).max())


def logits_error(logits: np.ndarray, ref: np.ndarray) -> float:
    """(B, classes): the worst image's max |logits - ref| / the range of its reference logits."""
    return relative_error(logits, ref, (1,))


def maps_error(cams: np.ndarray, ref: np.ndarray) -> float:
    """(B, K, h, w): the worst map's max |cams - ref| / the range of that reference map."""
    return relative_error(cams, ref, (2, 3))


def top1_agrees(class_ids: np.ndarray, ref_logits: np.ndarray) -> bool:
    """Each image's top-1 is a most probable class of the reference: random weights give exact
    ties in float32 softmax that either side may order differently."""
    p = np.exp(ref_logits.astype(np.float64) - ref_logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    chosen = np.take_along_axis(p, class_ids[:, :1], axis=1)[:, 0]
    return bool(np.all(chosen >= p.max(1) - 1e-6))


def agreement(outputs: dict[str, np.ndarray], ref: dict[str, np.ndarray], reference: str = "ONNX Runtime",
              tolerance: float = TOLERANCE) -> Report:
    """Two runtimes' outputs for the same images (a .tflite against its ONNX export)."""
    span = np.ptp(ref["logits"], axis=1, keepdims=True)
    # The same top-K, where a swap is allowed only between classes whose logits tie.
    picked = np.take_along_axis(ref["logits"], outputs["class_ids"], axis=1)
    expected = np.take_along_axis(ref["logits"], ref["class_ids"], axis=1)
    tied = np.abs(picked - expected) <= tolerance * np.where(span > 0, span, 1.0)
    cam_error = maps_error(outputs["cams"], ref["cams"]) if "cams" in ref else None
    if "query_cams" in ref and ref["query_cams"].size:  # the queried (baked) classes' maps too
        cam_error = max(cam_error or 0.0, maps_error(outputs["query_cams"], ref["query_cams"]))
    n = len(ref["logits"])
    return Report(reference, n, n, logits_error(outputs["logits"], ref["logits"]), cam_error,
                  top1_agree=bool(tied[:, 0].all()), same_classes=bool(tied.all()), tolerance=tolerance)


def sample_images(batch: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Deterministic uint8 RGB test images with structure (blobs on gradients) rather than pure
    noise, so the maps have hot and cold regions."""
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
