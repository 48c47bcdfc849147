"""The checks of a teacher's two run-time choices, against the eager model like its top-K maps:
classes queried by id (query_cams, query_scores) and an input size other than the trained one.
"""
from __future__ import annotations

import numpy as np

from edge_cam.errors import EdgeCamError
from edge_cam.model import Model

from .eager import compare, reference
from .verify import TOLERANCE, Report, logits_error, maps_error, sample_images, top1_agrees

QUERIED = 6  # random classes per check: most fall outside the top-K, which is the point


def other_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """A second size to check a dynamic graph at: taller by a stride or two and about twice as wide
    (224 → 256x448), so neither side of the map is the trained one."""
    step = max(int(stride), 1)
    return size[0] + step * max(1, round(32 / step)), max(32, (2 * size[1] // step) * step)


def query_report(model, layers, runtime: Model, size: tuple[int, int], mean, std, seed: int = 300) -> Report:
    """query_cams and query_scores for random class ids against the eager W_c · F (or autograd's
    Grad-CAM) and softmax."""
    n = runtime.session.outputs[[t.name for t in runtime.session.outputs].index("logits")].shape[-1]
    rng = np.random.default_rng(seed)
    classes = rng.choice(n, size=min(QUERIED, n), replace=False).astype(np.int64)
    images = sample_images(2, size, seed=seed)
    return queried(model, layers, runtime.run(images, classes=classes), images, classes, mean, std)


def queried(model, layers, out: dict[str, np.ndarray], images: np.ndarray, classes: np.ndarray, mean, std) -> Report:
    """A graph's query_cams and query_scores of `classes` on `images` against the eager model's
    maps and softmax; the scores must agree within TOLERANCE (they are probabilities)."""
    logits, cams = reference(model, layers, images, mean, std, np.tile(classes, (len(images), 1)))
    p = np.exp(logits.astype(np.float64) - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    score_error = float(np.abs(out["query_scores"] - p[:, classes]).max())
    if score_error > TOLERANCE:
        raise EdgeCamError(f"the exported graph's query_scores differ from the eager softmax by {score_error:.2e} "
                           f"(limit {TOLERANCE:g}).")
    return Report("the eager model", len(images), len(images), logits_error(out["logits"], logits),
                  maps_error(out["query_cams"], cams), top1_agrees(out["class_ids"], logits),
                  source=f"synthetic images, {len(classes)} queried classes")


def size_report(model, layers, runtime: Model, size: tuple[int, int], mean, std, seed: int = 400) -> Report:
    """The dynamic graph at another input size against the eager model at that size."""
    images = sample_images(1, size, seed=seed)
    r = compare(model, layers, runtime.run(images), images, mean, std)
    return Report(r.reference, r.images, r.batch, r.logit_error, r.cam_error, r.top1_agree,
                  source=f"synthetic image at {size[0]}x{size[1]}")


def extra_reports(model, layers, runtime: Model, input_size: tuple[int, int], mean, std) -> list[Report]:
    """What the teacher offers beyond the top-K at its trained size, each checked once."""
    reports = []
    if runtime.class_query:
        reports.append(query_report(model, layers, runtime, input_size, mean, std))
    if runtime.dynamic_size:
        stride = runtime.info.cam.stride if runtime.info.cam else None
        reports.append(size_report(model, layers, runtime, other_size(input_size, stride or 32), mean, std))
    return reports
