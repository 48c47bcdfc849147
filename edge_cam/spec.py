"""CascadeSpec: what a distilled student was trained under, so that the cascade serving it agrees.

`distill` writes it into the student's metadata as versioned JSON under one key, `edge_cam.cascade_spec`
(its JSON Schema ships as edge_cam/data/cascade_spec.schema.json); `run` and `eval` read it back
through `CascadeSpec.from_metadata`, which refuses an unknown version, a missing or unknown field
or a wrong type with one sentence naming the field. The board has no jsonschema: the check is
plain Python, and tests hold it to the shipped schema. Students distilled before the key existed
carry the same facts as loose keys of `edge_cam.source["distill"]`; `_from_old_keys` is the one
place that reads them.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .crop import MASKS, CropSpec
from .errors import EdgeCamError
from .gate import MotionGate
from .localize import BOX_MODES, BoxRule
from .metadata import MAX_INPUT_SIDE, PREFIX, RESIZE_MODES, ModelInfo, _number, _pair, _three, _whole, preview
from .preprocess import pad_colour
from .watch import Target, WatchList

SPEC_KEY = PREFIX + "cascade_spec"
SPEC_VERSION = 1
OTHER = "other"
DEFAULT_MAX_ROIS = 4
CROP_RESIZE = ("stretch",)  # crop.crop: the padded (square) region resized to the student's input


def watch_from_targets(targets: Mapping[str, Sequence[int]], labels: Sequence[str], num_classes: int) -> WatchList:
    """A watch list from name → member class ids (a distilled student's targets): the same scores
    and maps as the entries it was parsed from (a one-member target is that class's CAM)."""
    return WatchList(tuple(Target(str(name), tuple(sorted(int(c) for c in ids)), len(ids) > 1)
                           for name, ids in targets.items()), tuple(labels), int(num_classes))


@dataclass(frozen=True)
class CascadeSpec:
    """Everything the cascade must reproduce of the student's training."""
    # What the student answers: its labels ("other" last), the teacher classes behind each label,
    # whether those were a watch list (the cascade then asks the teacher for their maps and makes
    # ROIs only for targets at min_score or above), and the label for "nothing of interest".
    labels: tuple[str, ...]
    targets: Mapping[str, tuple[int, ...]]
    watch: bool
    other: str = OTHER
    min_score: float = 0.0
    # The student's input: its size (H, W) and normalisation (RGB mean and std of x / 255).
    input_size: tuple[int, int] = (64, 64)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # The crop rule (crop.crop): pad, square and mask (its threshold is the box rule's), the colour of
    # masked pixels (RGB: the student's mean), and how the region becomes the student's input.
    crop: CropSpec = CropSpec()
    fill: tuple[int, int, int] = (124, 116, 104)
    crop_resize: str = "stretch"
    # The teacher's schedule and how it sees the frame and makes boxes.
    every: int = 10
    change: float | None = None
    teacher_resize: str | None = None
    teacher_input_size: int | tuple[int, int] | None = None
    rule: BoxRule = field(default_factory=BoxRule)
    max_rois: int = DEFAULT_MAX_ROIS
    motion: MotionGate | None = None  # the motion gate (gate.py); None: off

    def crop_spec(self) -> CropSpec:
        """The crop rule as the Cascade takes it (the mask threshold is the box rule's)."""
        return CropSpec(self.crop.pad, self.crop.square, self.crop.mask, self.rule.threshold)

    def teacher_options(self) -> dict[str, Any]:
        """Model keywords for the teacher: its resize mode and input size as distilled (only those set)."""
        return {k: v for k, v in (("resize", self.teacher_resize), ("input_size", self.teacher_input_size))
                if v is not None}

    def watch_list(self, labels: Sequence[str], num_classes: int, where: str = "the student") -> WatchList | None:
        """The watch list the student was trained on, over the teacher's classes (None: trained without)."""
        if not self.watch:
            return None
        beyond = sorted(c for ids in self.targets.values() for c in ids if c >= num_classes)
        if beyond:
            raise EdgeCamError(f"{where} has {SPEC_KEY} student.targets with class {beyond[0]}, but the teacher has "
                               f"{num_classes} classes (ids 0 to {num_classes - 1}); use the teacher it was distilled from.")
        return watch_from_targets(self.targets, labels, num_classes)

    def to_json(self) -> dict[str, Any]:
        size = self.teacher_input_size
        return {
            "version": SPEC_VERSION,
            "student": {"labels": list(self.labels), "targets": {k: list(v) for k, v in self.targets.items()},
                        "watch": self.watch, "other": self.other, "min_score": self.min_score,
                        "input_size": list(self.input_size), "mean": list(self.mean), "std": list(self.std)},
            "crop": {"pad": self.crop.pad, "square": self.crop.square, "mask": self.crop.mask,
                     "fill": list(self.fill), "resize": self.crop_resize},
            "teacher": {"every": self.every, "change": self.change, "resize": self.teacher_resize,
                        "input_size": list(size) if isinstance(size, tuple) else size,
                        "max_rois": self.max_rois, "rule": _rule_json(self.rule),
                        # Written only when set: a spec without it stays readable by runtimes before the gate.
                        **({"motion": self.motion.to_json()} if self.motion is not None else {})},
        }

    def to_props(self) -> dict[str, str]:
        """The metadata entry distill writes."""
        return {SPEC_KEY: json.dumps(self.to_json())}

    @classmethod
    def from_json(cls, d: Any, where: str = "the student") -> CascadeSpec:
        """From the JSON of `to_json`, checked field by field (see the module's doc)."""
        check(d, where)
        s, c, t = d["student"], d["crop"], d["teacher"]
        size = t["input_size"]
        return cls(labels=tuple(s["labels"]), targets={k: tuple(v) for k, v in s["targets"].items()},
                   watch=s["watch"], other=s["other"], min_score=float(s["min_score"]),
                   input_size=(s["input_size"][0], s["input_size"][1]), mean=_floats3(s["mean"]),
                   std=_floats3(s["std"]), crop=CropSpec(float(c["pad"]), c["square"], c["mask"]),
                   fill=(c["fill"][0], c["fill"][1], c["fill"][2]), crop_resize=c["resize"], every=t["every"],
                   change=None if t["change"] is None else float(t["change"]), teacher_resize=t["resize"],
                   teacher_input_size=tuple(size) if isinstance(size, list) else size,
                   rule=BoxRule(**t["rule"]), max_rois=t["max_rois"],
                   motion=None if t.get("motion") is None else MotionGate(float(t["motion"]["level"]), t["motion"]["every"]))

    @classmethod
    def from_metadata(cls, info: ModelInfo, where: str = "the student") -> CascadeSpec | None:
        """The spec of a student's metadata: its `edge_cam.cascade_spec`, else (distilled before
        that key) its old distill keys; None for a student that was not distilled (the demo's, a
        foreign classifier), which runs under the command line's settings alone."""
        if info.cascade_spec is not None:
            spec = cls.from_json(info.cascade_spec, where)
        else:
            old = info.source.get("distill") if isinstance(info.source, dict) else None
            if not (isinstance(old, dict) and "targets" in old):
                return None
            spec = cls.from_json(_from_old_keys(old, info), where)
        # The spec describes this very student: its labels and input are the model's own.
        same: list[tuple[str, list[Any], list[Any]]] = [
            ("labels", list(spec.labels), list(info.labels)), ("input_size", list(spec.input_size), list(info.input.size)),
            ("mean", list(spec.mean), list(info.input.mean)), ("std", list(spec.std), list(info.input.std))]
        for name, said, has in same:
            if len(said) != len(has) or not all(
                    math.isclose(a, b) if isinstance(a, float) else a == b for a, b in zip(said, has)):
                raise EdgeCamError(f"{where} has {SPEC_KEY} student.{name} {preview(said)}, but the student's own "
                                   f"metadata says {preview(has)}; re-distil the student or fix its metadata.")
        return spec


def _floats3(v: list) -> tuple[float, float, float]:
    return float(v[0]), float(v[1]), float(v[2])


def _rule_json(rule: BoxRule) -> dict[str, Any]:
    """The rule's fields, object_level only when set: a spec without it stays readable by runtimes before it."""
    d = asdict(rule)
    if d["object_level"] is None:
        del d["object_level"]
    return d


def _from_old_keys(old: dict[str, Any], info: ModelInfo) -> dict[str, Any]:
    """The spec's JSON from the loose keys distill wrote before the spec (every default here is
    what those students were trained and evaluated with); checked afterwards like any other."""
    crop = old.get("crop") or {}
    options = old.get("teacher_options") or {}
    base, rule = CropSpec(), BoxRule()
    size = old.get("size")
    return {
        "version": SPEC_VERSION,
        "student": {"labels": list(info.labels), "targets": old.get("targets"), "watch": old.get("watch") is not None,
                    "other": old.get("other", OTHER), "min_score": old.get("min_score", 0.0),
                    "input_size": [size, size] if size is not None else list(info.input.size),
                    "mean": list(info.input.mean), "std": list(info.input.std)},
        "crop": {"pad": crop.get("pad", base.pad), "square": crop.get("square", base.square),
                 "mask": crop.get("mask", base.mask), "fill": list(pad_colour(info.input.mean)), "resize": "stretch"},
        "teacher": {"every": old.get("every", 10), "change": old.get("change"), "resize": options.get("resize"),
                    "input_size": options.get("input_size"), "max_rois": old.get("max_rois", DEFAULT_MAX_ROIS),
                    "rule": {**_rule_json(rule), **(old.get("rule") or {})}},
    }


# --- the check: every field by type and range; the shipped JSON Schema says the same -----------------

MAX_ID = 2**31 - 1  # of a class id, a cadence, a cap: what the schema allows


def _fraction(v: Any) -> bool:
    return _number(v) and 0 <= v <= 1


def _side_pair(v: Any) -> bool:
    return _pair(v, 1, MAX_INPUT_SIDE)


def _texts(v: Any) -> bool:
    return isinstance(v, list) and len(v) >= 1 and all(isinstance(x, str) for x in v)


def _motion(v: Any) -> bool:
    return v is None or (isinstance(v, dict) and set(v) == {"level", "every"} and _number(v["level"])
                         and 0 < v["level"] <= 1 and _whole(v["every"], 1, MAX_ID))


def _targets(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(ids, list) and len(ids) >= 1 and all(_whole(c, 0, MAX_ID) for c in ids)
                                       for ids in v.values())


Check = Callable[[Any], bool]
# section → (field, test, what it must be); every field is required, no other is allowed.
FIELDS: dict[str, tuple[tuple[str, Check, str], ...]] = {
    "student": (
        ("labels", _texts, "a list of one or more label names (text)"),
        ("targets", _targets, "an object of label → a list of one or more teacher class ids"),
        ("watch", lambda v: isinstance(v, bool), "true or false"),
        ("other", lambda v: isinstance(v, str), "a label name (text)"),
        ("min_score", _fraction, "a probability from 0 to 1"),
        ("input_size", _side_pair, f"two whole numbers [H, W] from 1 to {MAX_INPUT_SIDE}"),
        ("mean", lambda v: _three(v, False), "three finite numbers"),
        ("std", lambda v: _three(v, True), "three finite numbers above 0"),
    ),
    "crop": (
        ("pad", lambda v: _number(v) and v >= 1, "a number, 1 or more"),
        ("square", lambda v: isinstance(v, bool), "true or false"),
        ("mask", lambda v: v in MASKS, "one of " + ", ".join(MASKS)),
        ("fill", lambda v: isinstance(v, list) and len(v) == 3 and all(_whole(x, 0, 255) for x in v),
         "three whole numbers from 0 to 255 (RGB)"),
        ("resize", lambda v: v in CROP_RESIZE, "one of " + ", ".join(CROP_RESIZE)),
    ),
    "teacher": (
        ("every", lambda v: _whole(v, 1, MAX_ID), "a whole number, 1 or more"),
        ("change", lambda v: v is None or (_number(v) and v > 0), "null or a number of grey levels above 0"),
        ("resize", lambda v: v is None or v in RESIZE_MODES, "null or one of " + ", ".join(RESIZE_MODES)),
        ("input_size", lambda v: v is None or _whole(v, 1, MAX_INPUT_SIDE) or _side_pair(v),
         f"null, a whole number or [H, W], from 1 to {MAX_INPUT_SIDE}"),
        ("max_rois", lambda v: _whole(v, 1, MAX_ID), "a whole number, 1 or more"),
        ("rule", lambda v: isinstance(v, dict), "an object"),
        ("motion", _motion, "null or an object of level (a fraction above 0, at most 1) and every (a whole number, "
                            "1 or more)"),
    ),
    "rule": (
        ("threshold", lambda v: _number(v) and 0 < v <= 1, "a fraction of the map's range, above 0 and at most 1"),
        ("mode", lambda v: v in BOX_MODES, "one of " + ", ".join(BOX_MODES)),
        ("min_area", _fraction, "a fraction of the input from 0 to 1"),
        ("fuse_top", lambda v: _whole(v, 1, MAX_ID), "a whole number, 1 or more"),
        ("min_distance", _fraction, "a fraction from 0 to 1"),
        ("min_prominence", _fraction, "a fraction from 0 to 1"),
        ("max_rois", lambda v: v is None or _whole(v, 1, MAX_ID), "null or a whole number, 1 or more"),
        ("object_level", lambda v: v is None or (_number(v) and 0 < v <= 1), "null or a fraction above 0, at most 1"),
    ),
}
SECTIONS = ("student", "crop", "teacher")
# added after version 1 shipped: a spec without motion is one without the gate, without object_level
# one whose objects are all boxed at the threshold of the map's max
OPTIONAL = {"teacher.motion", "teacher.rule.object_level"}


def check(d: Any, where: str = "the student") -> None:
    """The spec's JSON, or one EdgeCamError sentence naming the first field that is wrong."""
    fix = "re-distil the student or fix its metadata"
    if not isinstance(d, dict):
        raise EdgeCamError(f"{where} has {SPEC_KEY} {preview(d)}, which is not valid: it must be an object "
                           f"of version, {', '.join(SECTIONS)}; {fix}.")
    version = d.get("version")
    if version != SPEC_VERSION or isinstance(version, bool):
        if "version" not in d:
            raise EdgeCamError(f"{where} has a {SPEC_KEY} without its field version; {fix}.")
        raise EdgeCamError(f"{where} has {SPEC_KEY} version {preview(version)}, which this edge-cam does not "
                           f"know (it reads version {SPEC_VERSION}); upgrade edge-cam or re-distil the student.")

    def walk(value: Any, section: str, fields: Sequence[tuple[str, Check, str]]) -> None:
        for key, ok, want in fields:
            name = f"{section}.{key}" if section else key
            if key not in value and name in OPTIONAL:
                continue
            if key not in value:
                raise EdgeCamError(f"{where} has a {SPEC_KEY} without its field {name} ({want}); {fix}.")
            if not ok(value[key]):
                raise EdgeCamError(f"{where} has {SPEC_KEY} {name} {preview(value[key])}, which is not valid: "
                                   f"it must be {want}; {fix}.")
        unknown = sorted(set(value) - {f for f, _, _ in fields})
        if unknown:
            name = f"{section}.{unknown[0]}" if section else unknown[0]
            raise EdgeCamError(f"{where} has {SPEC_KEY} {name}, a field this edge-cam does not know (it knows "
                               f"{', '.join(f for f, _, _ in fields)}); {fix}.")

    walk(d, "", [("version", lambda v: True, f"{SPEC_VERSION}")]
         + [(s, lambda v: isinstance(v, dict), f"an object of {', '.join(f for f, _, _ in FIELDS[s])}")
            for s in SECTIONS])
    for section in SECTIONS:
        walk(d[section], section, FIELDS[section])
    walk(d["teacher"]["rule"], "teacher.rule", FIELDS["rule"])
    student = d["student"]
    if list(student["targets"]) != student["labels"][:len(student["targets"])] or \
            len(student["labels"]) != len(student["targets"]) + 1 or student["labels"][-1] != student["other"]:
        raise EdgeCamError(f"{where} has {SPEC_KEY} student.labels {preview(student['labels'])}, which is not valid: "
                           f"it must be the targets' names {preview(list(student['targets']))} then other "
                           f"{preview(student['other'])}; {fix}.")
