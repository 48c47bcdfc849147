"""A foreign classifier seen as an edge-cam student: its description checked against its tensors,
pixels turned into what its input holds, and its scores into logits, top-K ids and scores."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from .backends import Backend, Tensor
from .errors import EdgeCamError
from .metadata import RESIZE_MODES, InputSpec, ModelInfo, read_labels


@dataclass(frozen=True)
class StudentSpec:
    """How to feed and read a foreign classifier (an ONNX or TFLite file without edge_cam metadata).

    A pixel p (0-255, in `color` order) reaches the model as (p * scale - mean) / std; a quantised
    integer input gets that value quantised with the input tensor's own (scale, zero point). `size`
    and `layout` default to what the model's input shape says. Output index i is class
    i - label_offset (1 for the 1001-class TF models whose index 0 is "background"); `softmax`
    None applies it unless the outputs already are probabilities.
    """
    size: tuple[int, int] | None = None
    color: str = "RGB"
    layout: str | None = None  # "NHWC" or "NCHW"
    scale: float = 1 / 255
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    label_offset: int = 0
    labels: tuple[str, ...] = ()
    softmax: bool | None = None
    resize: str = "stretch"
    top_k: int = 5
    output: str | None = None  # which output holds the class scores, when there are several

    @classmethod
    def from_json(cls, d: dict[str, Any], base_dir: str = ".") -> StudentSpec:
        """A dict as in a spec file; `labels` is a list or a text file (relative to base_dir)."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise EdgeCamError(f"unknown student description keys {sorted(unknown)}; use "
                               f"{', '.join(cls.__dataclass_fields__)}.")
        try:
            kw = dict(d)
            if kw.get("size") is not None:
                size = [kw["size"]] * 2 if isinstance(kw["size"], int) else kw["size"]
                kw["size"] = (int(size[0]), int(size[1]))
            for key in ("mean", "std"):
                if key in kw:
                    v = kw[key]
                    kw[key] = tuple(float(x) for x in ([v] * 3 if isinstance(v, (int, float)) else v))
                    if len(kw[key]) != 3:
                        raise ValueError(f"{key} needs 1 or 3 numbers")
            if isinstance(kw.get("labels"), str):
                kw["labels"] = read_labels(os.path.join(base_dir, kw["labels"]))
            kw["labels"] = tuple(str(x) for x in kw.get("labels") or ())
            kw["color"] = str(kw.get("color", "RGB")).upper()
            if kw.get("layout") is not None:
                kw["layout"] = str(kw["layout"]).upper()
            return cls(**kw)
        except (TypeError, ValueError, IndexError) as e:
            raise EdgeCamError(f"malformed student description ({e}); see README, \"Any student\".") from None

    def __post_init__(self) -> None:
        """A spec checks itself when built, from a file or in code."""
        bad = [(k, v) for k, v, ok in (
            ("color", self.color, self.color in ("RGB", "BGR")),
            ("layout", self.layout, self.layout in (None, "NHWC", "NCHW")),
            ("resize", self.resize, self.resize in RESIZE_MODES),
            ("scale", self.scale, self.scale > 0), ("std", self.std, min(self.std) > 0),
            ("label_offset", self.label_offset, self.label_offset >= 0), ("top_k", self.top_k, self.top_k >= 1)) if not ok]
        if bad:
            raise EdgeCamError(f"student description: {bad[0][0]} {bad[0][1]!r} is not valid; see README, "
                               "\"Any student\".")

    @classmethod
    def load(cls, spec: StudentSpec | dict | str | os.PathLike) -> StudentSpec:
        """A spec, a dict, a JSON file, or inline JSON text (starting with "{")."""
        if isinstance(spec, cls):
            return spec
        if isinstance(spec, dict):
            return cls.from_json(spec)
        text, base = str(os.fspath(spec)), "."  # type: ignore[arg-type]  # dict and spec returned above
        if not text.lstrip().startswith("{"):
            if not os.path.isfile(text):
                raise EdgeCamError(f"student description {text} does not exist; give a JSON file or inline JSON.")
            base = os.path.dirname(text)
            with open(text, encoding="utf-8") as f:
                text = f.read()
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise EdgeCamError(f"student description is not valid JSON ({e}).") from None
        if not isinstance(d, dict):
            raise EdgeCamError("student description must be a JSON object.")
        return cls.from_json(d, base)

    def model_info(self, size: tuple[int, int], where: str) -> ModelInfo:
        """The ModelInfo the rest of the runtime reads: mean/std in the 0-1 convention of
        InputSpec, so the pad colour is the pixel the model sees as zero."""
        unit = self.scale * 255
        mr, mg, mb = (m / unit for m in self.mean)
        sr, sg, sb = (s / unit for s in self.std)
        return ModelInfo(input=InputSpec(size=size, color=self.color, resize=self.resize,
                                         mean=(mr, mg, mb), std=(sr, sg, sb)),
                         labels=list(self.labels), source={"foreign": where})



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
