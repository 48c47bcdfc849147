"""A foreign classifier seen as an edge-cam student: its description checked against its tensors,
pixels turned into what its input holds, and its scores into logits, top-K ids and scores."""
from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import numpy as np

from .backends import Backend, Tensor
from .errors import EdgeCamError
from .metadata import ModelInfo, StudentSpec


class Described(NamedTuple):
    spec: StudentSpec  # with what the shapes say filled in: size, layout, labels without the offset ones
    info: ModelInfo
    input: Tensor
    output: str  # the output holding the class scores


def describe(spec: StudentSpec, backend: Backend, where: str) -> Described:
    """Check a foreign classifier against its description and fill in what its shapes say."""
    inputs, outputs = backend.inputs, backend.outputs
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise EdgeCamError(f"{where} should take one 4-D image input to be a student.")
    x = inputs[0]
    layout = spec.layout or ("NCHW" if x.shape[1] == 3 and x.shape[3] != 3 else "NHWC")
    hw = x.shape[2:4] if layout == "NCHW" else x.shape[1:3]
    channels = x.shape[1] if layout == "NCHW" else x.shape[3]
    if channels not in (3, -1):
        raise EdgeCamError(f"{where} takes {list(x.shape)}, not a 3-channel {layout} image; fix "
                           "layout in its description.")
    size = spec.size or ((hw[0], hw[1]) if min(hw) > 0 else None)
    if size is None:
        raise EdgeCamError(f"{where} has a dynamic input size; give \"size\" in its description.")
    if any(0 < a != b for a, b in zip(hw, size)):
        raise EdgeCamError(f"{where} takes {list(x.shape)} ({layout}), not {size[0]}x{size[1]} images; "
                           "fix size in its description.")
    if x.dtype.kind not in "fiu":
        raise EdgeCamError(f"{where} takes {x.dtype} input; students take float or (quantised) integers.")
    out = [o for o in outputs if o.name == spec.output] if spec.output else outputs
    if len(out) != 1:
        raise EdgeCamError(f"{where} has outputs {[o.name for o in outputs]}; name the class scores "
                           "with \"output\" in its description.")
    n = int(np.prod(out[0].shape[1:]))
    if min(out[0].shape[1:], default=1) <= 0:  # a dynamic class axis: count on a blank image
        blank = np.zeros((1, *size, 3), np.uint8)
        n = backend.run([out[0].name], foreign_input(blank, replace(spec, layout=layout), x))[0].size
    classes = n - spec.label_offset
    if classes < 1:
        raise EdgeCamError(f"{where} has {n} outputs, too few for label_offset {spec.label_offset}.")
    labels = list(spec.labels)
    if len(labels) == n and spec.label_offset:
        labels = labels[spec.label_offset:]  # the file names the skipped outputs too (e.g. "background")
    if labels and len(labels) != classes:
        raise EdgeCamError(f"the labels of {where} have {len(spec.labels)} names for {n} outputs "
                           f"with label_offset {spec.label_offset}; give {classes} or {n} names.")
    spec = replace(spec, size=size, layout=layout, labels=tuple(labels))
    return Described(spec, spec.model_info(size, where), x, out[0].name)


def foreign_input(batch: np.ndarray, spec: StudentSpec, x: Tensor) -> np.ndarray:
    """uint8 RGB NHWC pixels → what a foreign classifier's input tensor holds."""
    if spec.color == "BGR":
        batch = batch[..., ::-1]
    if x.dtype.kind in "iu" and x.quant is None:
        out = batch.astype(x.dtype)  # an unquantised integer input takes the pixels themselves
    else:
        v = (batch.astype(np.float32) * np.float32(spec.scale) - np.asarray(spec.mean, np.float32)) \
            / np.asarray(spec.std, np.float32)
        if x.quant is not None and x.dtype.kind in "iu":
            scale, zero = x.quant  # real = (q - zero) * scale, so q = v / scale + zero
            info = np.iinfo(x.dtype)
            v = np.clip(np.rint(v / np.float32(scale) + zero), info.min, info.max)
        out = v.astype(x.dtype)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2) if spec.layout == "NCHW" else out)


def _probabilities(rows: np.ndarray) -> np.ndarray:
    """Which rows already are probabilities: non-negative with a sum of at most 1 (quantised
    softmax outputs round small values down to 0, so the sum may fall well below 1; logits of
    1000 classes are essentially never all non-negative and that small)."""
    return (rows.min(axis=1) >= 0) & (rows.sum(axis=1) <= 1.05)


def foreign_output(raw: np.ndarray, spec: StudentSpec) -> dict[str, np.ndarray]:
    """(B, N) float scores → logits (offset outputs dropped), top-K class_ids and scores.
    Rows are decided one by one, so an answer never depends on the rest of its batch."""
    logits = raw[:, spec.label_offset:].astype(np.float32)
    softmax = ~_probabilities(raw) if spec.softmax is None else np.full(len(raw), spec.softmax)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = np.where(softmax[:, None], e / e.sum(axis=1, keepdims=True), logits)
    k = min(spec.top_k, logits.shape[1])
    ids = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return {"logits": logits, "class_ids": ids.astype(np.int64),
            "scores": np.take_along_axis(probs, ids, axis=1).astype(np.float32)}
