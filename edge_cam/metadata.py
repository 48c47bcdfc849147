"""The `edge_cam.*` metadata that makes an exported model self-describing.

Values are JSON strings in ONNX `metadata_props` (see interfaces.md). The export side writes
them through `to_props`; the runtime reads them back through `ModelInfo.from_props`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import EdgeCamError

FORMAT_VERSION = 1
PREFIX = "edge_cam."
DEFAULT_THRESHOLD = 0.2
RESIZE_MODES = ("stretch", "letterbox", "crop")  # the CAM paper: keep the regions above 20% of the map's max


@dataclass(frozen=True)
class InputSpec:
    size: tuple[int, int]  # (H, W) the graph expects
    color: str = "RGB"  # channel order the graph expects
    resize: str = "stretch"  # "stretch", "letterbox" or "crop" (see preprocess.resize)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def to_json(self) -> dict[str, Any]:
        return {"size": list(self.size), "color": self.color, "resize": self.resize,
                "layout": "NHWC", "dtype": "uint8", "scale": 1 / 255,
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "InputSpec":
        size = d["size"]
        if isinstance(size, int):
            size = [size, size]
        resize = d.get("resize", "stretch")
        if resize not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {resize!r}")
        return cls(size=(int(size[0]), int(size[1])), color=d.get("color", "RGB"), resize=resize,
                   mean=tuple(d.get("mean", cls.mean)), std=tuple(d.get("std", cls.std)))


@dataclass(frozen=True)
class CamSpec:
    method: str = "cam"
    feature_layer: str = ""
    classifier: str = ""
    stride: int | None = None
    feature_size: tuple[int, int] | None = None
    threshold: float = DEFAULT_THRESHOLD

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "feature_layer": self.feature_layer,
                "classifier": self.classifier, "stride": self.stride,
                "feature_size": list(self.feature_size) if self.feature_size else None,
                "threshold": self.threshold}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "CamSpec":
        fs = d.get("feature_size")
        return cls(method=d.get("method", "cam"), feature_layer=d.get("feature_layer", ""),
                   classifier=d.get("classifier", ""), stride=d.get("stride"),
                   feature_size=tuple(fs) if fs else None,
                   threshold=float(d.get("threshold", DEFAULT_THRESHOLD)))


@dataclass(frozen=True)
class ModelInfo:
    input: InputSpec
    labels: list[str] = field(default_factory=list)
    cam: CamSpec | None = None  # None: a plain classifier (e.g. a student)
    source: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def label(self, class_id: int) -> str:
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    def to_props(self) -> dict[str, str]:
        props = {"format_version": self.format_version, "input": self.input.to_json(),
                 "labels": self.labels, "source": self.source}
        if self.cam is not None:
            props["cam"] = self.cam.to_json()
        return {PREFIX + k: json.dumps(v) for k, v in props.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], where: str = "the model") -> "ModelInfo":
        if PREFIX + "input" not in props:
            raise EdgeCamError(
                f"{where} has no edge_cam metadata; export it with `edge-cam export` "
                "(or describe a foreign classifier's input explicitly).")
        try:
            d = {k[len(PREFIX):]: json.loads(v) for k, v in props.items() if k.startswith(PREFIX)}
            version = int(d.get("format_version", FORMAT_VERSION))
            if version > FORMAT_VERSION:
                raise EdgeCamError(f"{where} uses edge_cam metadata version {version}, newer "
                                   f"than this runtime's {FORMAT_VERSION}; upgrade edge-cam.")
            return cls(input=InputSpec.from_json(d["input"]), labels=list(d.get("labels") or []),
                       cam=CamSpec.from_json(d["cam"]) if d.get("cam") else None,
                       source=d.get("source") or {}, format_version=version)
        except (ValueError, KeyError, TypeError) as e:
            raise EdgeCamError(f"{where} has malformed edge_cam metadata ({e}); re-export it.") from e
