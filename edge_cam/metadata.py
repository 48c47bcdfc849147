"""The `edge_cam.*` metadata that makes an exported model self-describing.

Values are JSON strings in ONNX `metadata_props` (see docs/interfaces.md). The export side writes
them through `to_props`; the runtime reads them back through `ModelInfo.from_props`.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import EdgeCamError

FORMAT_VERSION = 1
PREFIX = "edge_cam."
DEFAULT_THRESHOLD = 0.2  # the CAM paper: keep the regions above 20% of the map's max (models nobody measured)
# ImageNet classifiers (`edge-cam export` of torchvision/timm ImageNet weights) get defaults measured for
# them on the letterboxed whole frame (benchmarks/localization.py): the threshold of the best MaxBoxAcc@0.5
# on a development set (half the raccoon photos and mosaics of them: one large animal, several small ones,
# weighted alike; the other half chose the same), and the top-1 box from the top-3 classes' fused maps.
IMAGENET_THRESHOLD = 0.56
IMAGENET_FUSE_TOP = 3
RESIZE_MODES = ("stretch", "letterbox", "crop")
# torchvision's ImageNet normalisation, in RGB order: the default of every export and of InputSpec
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    size: tuple[int, int]  # (H, W) the graph expects
    color: str = "RGB"  # channel order the graph expects
    resize: str = "stretch"  # "stretch", "letterbox" or "crop" (see preprocess.resize)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_json(self) -> dict[str, Any]:
        return {"size": list(self.size), "color": self.color, "resize": self.resize,
                "layout": "NHWC", "dtype": "uint8", "scale": 1 / 255,
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> InputSpec:
        """From checked JSON (check_props)."""
        size = d["size"]
        if isinstance(size, int):
            size = [size, size]
        return cls(size=(int(size[0]), int(size[1])), color=d.get("color", "RGB"), resize=d.get("resize", "stretch"),
                   mean=tuple(d.get("mean", cls.mean)), std=tuple(d.get("std", cls.std)))


@dataclass(frozen=True)
class CamSpec:
    method: str = "cam"
    feature_layer: str = ""
    classifier: str = ""
    stride: int | None = None
    feature_size: tuple[int, int] | None = None
    threshold: float = DEFAULT_THRESHOLD
    box_mode: str = "largest"  # see localize.boxes_from_heat; `edge-cam calibrate` may change both
    min_area: float = 0.01
    fuse_top: int = 1
    class_query: bool = False  # the graph takes a class_query input and returns query_cams, query_scores
    # Classes whose maps a fixed-signature graph (TFLite) returns on every run, as query_cams and
    # query_scores in this order: the watch list baked in at export (`export --classes`).
    baked_classes: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return ({"method": self.method, "feature_layer": self.feature_layer,
                 "classifier": self.classifier, "stride": self.stride,
                 "feature_size": list(self.feature_size) if self.feature_size else None,
                 "threshold": self.threshold, "box_mode": self.box_mode, "min_area": self.min_area,
                 "fuse_top": self.fuse_top, "class_query": self.class_query}
                | ({"baked_classes": list(self.baked_classes)} if self.baked_classes else {}))

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CamSpec:
        """From checked JSON (check_props)."""
        fs = d.get("feature_size")
        return cls(method=d.get("method", "cam"), feature_layer=d.get("feature_layer", ""),
                   classifier=d.get("classifier", ""), stride=d.get("stride"),
                   feature_size=(int(fs[0]), int(fs[1])) if fs else None,
                   threshold=float(d.get("threshold", DEFAULT_THRESHOLD)),
                   box_mode=d.get("box_mode", "largest"), min_area=float(d.get("min_area", 0.01)),
                   fuse_top=int(d.get("fuse_top", 1)), class_query=bool(d.get("class_query", False)),
                   baked_classes=tuple(int(c) for c in d.get("baked_classes") or ()))


@dataclass(frozen=True)
class ModelInfo:
    input: InputSpec
    labels: list[str] = field(default_factory=list)
    cam: CamSpec | None = None  # None: a plain classifier (e.g. a student)
    source: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    # A distilled student's edge_cam.cascade_spec, parsed but unchecked: spec.CascadeSpec.from_metadata checks it.
    cascade_spec: Any = None

    def label(self, class_id: int) -> str:
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    def to_props(self) -> dict[str, str]:
        props = {"format_version": self.format_version, "input": self.input.to_json(),
                 "labels": self.labels, "source": self.source}
        if self.cam is not None:
            props["cam"] = self.cam.to_json()
        if self.cascade_spec is not None:
            props["cascade_spec"] = self.cascade_spec
        return {PREFIX + k: json.dumps(v) for k, v in props.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], where: str = "the model") -> ModelInfo:
        if PREFIX + "input" not in props:
            raise EdgeCamError(
                f"{where} has no edge_cam metadata; export it with `edge-cam export` "
                "(or describe a foreign classifier's input explicitly).")
        d = {}
        for k, v in props.items():
            if k.startswith(PREFIX):
                try:
                    d[k[len(PREFIX):]] = json.loads(v)
                except (ValueError, RecursionError):
                    raise EdgeCamError(f"{where} has malformed edge_cam metadata ({k} {preview(v)} is not "
                                       "JSON); re-export it.") from None
        check_props(d, where)
        return cls(input=InputSpec.from_json(d["input"]), labels=list(d.get("labels") or []),
                   cam=CamSpec.from_json(d["cam"]) if d.get("cam") else None,
                   source=d.get("source") or {}, format_version=int(d.get("format_version", FORMAT_VERSION)),
                   cascade_spec=d.get("cascade_spec"))

    def validate(self, where: str = "the model") -> None:
        """Values that cannot work (a size of [0, -5], an unknown box mode, a threshold of 2) are
        refused with a sentence naming the field (see check_props)."""
        check_props({k[len(PREFIX):]: json.loads(v) for k, v in self.to_props().items()}, where)


# --- checking the metadata: every field by type and range, before anything uses it ---------------
# A size beyond this is no image a CAM classifier takes: 100000x100000 asked OpenCV for 52 GB.
MAX_INPUT_SIDE = 8192
MAX_STRIDE = 1024
MAX_FUSE_TOP = 1000
PREVIEW_CHARS = 60  # of a bad value in an error: a sentence, not 8 KB of it


def preview(value: Any) -> str:
    """A bad value as JSON, cut short when long, for an error sentence."""
    text = json.dumps(value)
    return text if len(text) <= PREVIEW_CHARS else f"{text[:PREVIEW_CHARS]}... ({len(text)} characters)"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v: Any, low: int, high: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _pair(v: Any, low: int, high: int) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_whole(n, low, high) for n in v)


def _three(v: Any, positive: bool) -> bool:
    return isinstance(v, list) and len(v) == 3 and all(_number(x) and (x > 0 or not positive) for x in v)


# (field, test, what it must be); only "size" is required, the rest have defaults.
_INPUT = (
    ("size", lambda v: _whole(v, 1, MAX_INPUT_SIDE) or _pair(v, 1, MAX_INPUT_SIDE),
     f"two whole numbers [H, W] from 1 to {MAX_INPUT_SIDE} (or one, for a square)"),
    ("color", lambda v: v in ("RGB", "BGR"), "RGB or BGR"),
    ("resize", lambda v: v in RESIZE_MODES, "one of " + ", ".join(RESIZE_MODES)),
    ("mean", lambda v: _three(v, False), "three finite numbers"),
    ("std", lambda v: _three(v, True), "three finite numbers above 0"),
    # What every edge-cam graph takes; written for other readers, and refused when it says otherwise.
    ("layout", lambda v: v == "NHWC", "NHWC"),
    ("dtype", lambda v: v == "uint8", "uint8"),
    ("scale", lambda v: _number(v) and abs(v * 255 - 1) < 1e-6, "1/255"),
)


def _box_modes() -> tuple[str, ...]:
    from .localize import BOX_MODES  # localize needs this module; the modes are its own
    return BOX_MODES


_CAM = (
    ("method", lambda v: v in ("cam", "gradcam"), "cam or gradcam"),
    ("feature_layer", lambda v: isinstance(v, str), "a layer name (text)"),
    ("classifier", lambda v: isinstance(v, str), "a layer name (text)"),
    ("stride", lambda v: v is None or (_number(v) and 0 < v <= MAX_STRIDE), f"null or a number above 0, at most {MAX_STRIDE}"),
    ("feature_size", lambda v: v is None or _pair(v, 1, MAX_INPUT_SIDE), f"null or two whole numbers from 1 to {MAX_INPUT_SIDE}"),
    ("threshold", lambda v: _number(v) and 0 < v <= 1, "a fraction of the map's range, above 0 and at most 1"),
    ("box_mode", lambda v: v in _box_modes(), "one of the box modes (largest, union, all, objects)"),
    ("min_area", lambda v: _number(v) and 0 <= v <= 1, "a fraction of the input from 0 to 1"),
    ("fuse_top", lambda v: _whole(v, 1, MAX_FUSE_TOP), f"a whole number from 1 to {MAX_FUSE_TOP}"),
    ("class_query", lambda v: isinstance(v, bool), "true or false"),
    ("baked_classes", lambda v: isinstance(v, list) and all(_whole(c, 0, 2**31 - 1) for c in v),
     "a list of class ids (whole numbers, 0 or more)"),
)


def check_props(d: dict[str, Any], where: str = "the model") -> None:
    """The parsed `edge_cam.*` values (keys without the prefix): each field of the right type and
    in range, or one sentence naming it (and showing a short preview of the value). What needs the
    graph itself is check_graph's."""
    def bad(key: str, value: Any, want: str) -> EdgeCamError:
        return EdgeCamError(f"{where} has edge_cam.{key} {preview(value)}, which is not valid: it must "
                            f"be {want}; re-export the model or fix its metadata.")

    version = d.get("format_version", FORMAT_VERSION)
    if not _whole(version, 1, 2**31):
        raise bad("format_version", version, "a whole number, 1 or more")
    if version > FORMAT_VERSION:
        raise EdgeCamError(f"{where} uses edge_cam metadata version {version}, newer "
                           f"than this runtime's {FORMAT_VERSION}; upgrade edge-cam.")
    for section, fields, required in (("input", _INPUT, True), ("cam", _CAM, False)):
        value = d.get(section)
        if value is None and not required:
            continue
        if not isinstance(value, dict):
            raise bad(section, value, "an object of the fields " + ", ".join(f for f, _, _ in fields))
        if required and "size" not in value:
            raise bad(f"{section} size", None, fields[0][2])
        for key, ok, want in fields:
            if key in value and not ok(value[key]):
                raise bad(f"{section} {key}", value[key], want)
    labels = d.get("labels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise bad("labels", labels, "a list of class names (strings)")
    source = d.get("source")
    if source is not None and not isinstance(source, dict):
        raise bad("source", source, "an object")


def check_graph(info: ModelInfo, input_shape: Sequence[Any], num_classes: Any, where: str = "the model") -> None:
    """The metadata against the graph it describes, for the model loader: `input_shape` is the
    image input's [B, H, W, 3] and `num_classes` the logits' last dimension, each dimension an int
    when fixed (anything else, a name or None, is dynamic and not checked). A size unlike the
    graph's fixed input, or labels that do not name every class (2 labels for 10 classes would
    label most classes with numbers and two with the wrong names), is one sentence naming the field."""
    fixed = [n if isinstance(n, int) and n > 0 else None for n in list(input_shape)[1:3]]
    if len(fixed) == 2 and any(n is not None and n != m for n, m in zip(fixed, info.input.size)):
        graph = [n if n is not None else "?" for n in fixed]
        raise EdgeCamError(f"{where} has edge_cam.input size {list(info.input.size)}, but its graph takes "
                           f"{graph[0]}x{graph[1]} images; re-export the model or fix its metadata.")
    if info.labels and isinstance(num_classes, int) and num_classes > 0 and len(info.labels) != num_classes:
        raise EdgeCamError(f"{where} has {len(info.labels)} edge_cam.labels for {num_classes} classes; "
                           "give one name per class (or none) and re-export the model or fix its metadata.")
    baked = info.cam.baked_classes if info.cam else ()
    if baked and isinstance(num_classes, int) and num_classes > 0 and max(baked) >= num_classes:
        raise EdgeCamError(f"{where} has edge_cam.cam baked_classes {preview(list(baked))}, but its graph has "
                           f"{num_classes} classes (ids 0 to {num_classes - 1}); re-export the model or fix its metadata.")


def read_labels(path: str) -> list[str]:
    """One class name a line, blank lines skipped (as `edge-cam export --labels` reads them)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except OSError as e:
        raise EdgeCamError(f"cannot read the labels file {path} ({e.strerror}).") from None


# ONNX files are protobuf ModelProto messages; metadata_props is its repeated field 14 of
# {key = 1, value = 2} string pairs. Rewriting just that field needs no onnx package on the board.
_METADATA_FIELD = 14


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _entry_key(payload: bytes) -> str | None:
    i = 0
    while i < len(payload):
        tag, i = _varint(payload, i)
        if tag & 7 != 2:
            return None
        n, i = _varint(payload, i)
        if tag >> 3 == 1:
            return payload[i:i + n].decode("utf-8", "replace")
        i += n
    return None


def rewrite_metadata(src: str, dst: str, props: dict[str, str], drop_prefix: str | None = None) -> None:
    """Copy the ONNX model `src` to `dst` with `props` set in its metadata_props. Entries with the
    same keys (or, with `drop_prefix`, any key starting with it) are replaced; the rest of the
    file is copied byte for byte."""
    with open(src, "rb") as f:
        data = f.read()
    out, i = bytearray(), 0
    try:
        while i < len(data):
            start = i
            tag, i = _varint(data, i)
            kind = tag & 7
            if kind == 0:
                _, i = _varint(data, i)
            elif kind == 1:
                i += 8
            elif kind == 5:
                i += 4
            elif kind == 2:
                n, i = _varint(data, i)
                if tag >> 3 == _METADATA_FIELD:
                    key = _entry_key(data[i:i + n])
                    if key in props or (drop_prefix and key and key.startswith(drop_prefix)):
                        i += n
                        continue
                i += n
            else:
                raise ValueError(f"wire type {kind}")
            if i > len(data):
                raise ValueError("truncated")
            out += data[start:i]
    except (IndexError, ValueError) as e:
        raise EdgeCamError(f"{src} is not a readable ONNX model ({e}).") from None
    for k, v in props.items():
        out += _field(_METADATA_FIELD, _field(1, k.encode()) + _field(2, v.encode()))
    part = dst + ".part"
    try:
        with open(part, "wb") as f:
            f.write(out)
        os.replace(part, dst)  # never leave a half-written model under the final name
    except BaseException as e:  # nor the .part file: a full disk, a folder named dst, a Ctrl-C
        with contextlib.suppress(OSError):
            os.remove(part)
        if isinstance(e, OSError):
            raise EdgeCamError(f"cannot write {dst} ({e.strerror or e}).") from None
        raise
