"""Watch lists: the classes, or groups of classes, that matter, with a score and a map per frame.

An entry of a watch list (`--classes`) is a class label of the model (case-insensitive, exact;
"_" and " " alike), a class id, or a group: one of the user's groups file
(JSON `{"group": [class ids or labels]}`), or for a 1000-class model one of the ImageNet groups
shipped in `edge_cam/data/imagenet_groups.json` (made from WordNet by scripts/imagenet_groups.py).

Each frame, `WatchList.watch` takes the logits and the raw CAMs of the member classes, from
wherever the caller got them (the graph's top-K maps, or the maps of a class query), and gives
per target its score and one combined map:

- score = P(any member) = Σ_m softmax(z)_m, the probability that the object is one of the group.
- map = Σ_m q_m · CAM_m with q = the softmax of the members' logits alone (q_m = p_m / Σ p).
  Why: the group's own logit is z_G = log Σ_m exp(z_m) (softmax over {G, the other classes}
  gives back P(G) = Σ p_m), and its gradient with respect to the pooled features is Σ_m q_m W_m
  for a linear head z = W·GAP(F) + b. So the map is exactly the CAM of z_G: the CAM of the
  members' expected class, on the same scale as each member's raw CAM (a one-member group is
  its class's CAM). The chain rule makes the same identity exact for a folded Grad-CAM head
  (∇z_G = Σ q_m ∇z_m). Raw maps share one scale (all are W_m·F), so none is normalised first:
  a member the network barely believes in contributes in proportion to its probability, not as
  much as the winner (which min-max normalising each map, as `fused_cam` does, would give it).
"""
from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .errors import EdgeCamError, first_line

log = logging.getLogger(__name__)

IMAGENET_CLASSES = 1000
BUILTIN_GROUPS = "imagenet_groups.json"
BUILTIN_COARSE = "imagenet_coarse.json"


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).lower()


@dataclass(frozen=True)
class Target:
    """One watched thing: a class (one member) or a group."""
    name: str  # the class's label (or its id as text when the model has no labels), or the group's name
    class_ids: tuple[int, ...]  # sorted member class ids
    group: bool


@dataclass(frozen=True)
class Watched:
    """A target on one frame."""
    target: Target
    score: float  # probability that the frame shows any member
    class_id: int  # the most probable member
    label: str  # that member's label ("" when the model has none)
    cam: np.ndarray  # (h, w) float32 raw combined map (see the module's docstring)

    @property
    def name(self) -> str:
        return self.target.name


def coarse_groups(num_classes: int) -> dict[str, list[int]] | None:
    """The coarse question a distilled student answers by default (person, dog, cat, bird, animal,
    vehicle, ...; disjoint, made from WordNet by scripts/imagenet_groups.py) for a 1000-class
    ImageNet model; None for any other model."""
    if num_classes != IMAGENET_CLASSES:
        return None
    return {str(k): [int(i) for i in v] for k, v in
            json.loads(resources.files("edge_cam.data").joinpath(BUILTIN_COARSE).read_text()).items()}


def load_groups(path: str | None = None) -> dict[str, list]:
    """A groups file (`path`) or, without one, the shipped ImageNet groups: name → members."""
    try:
        if path is None:
            text = resources.files("edge_cam.data").joinpath(BUILTIN_GROUPS).read_text()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        groups = json.loads(text)
    except (OSError, ValueError) as e:
        raise EdgeCamError(f"groups_file: cannot read {path or BUILTIN_GROUPS} ({first_line(e)}).") from e
    if not isinstance(groups, dict) or not all(isinstance(v, list) and v for v in groups.values()):
        raise EdgeCamError(f"groups_file: {path} must hold one JSON object mapping each group name "
                           'to a non-empty list of class ids or labels, e.g. {"pets": ["tabby", 207]}.')
    return groups


@dataclass(frozen=True)
class WatchList:
    targets: tuple[Target, ...]
    labels: tuple[str, ...]  # the model's labels (may be empty)
    num_classes: int

    @classmethod
    def parse(cls, entries: Sequence[str | int], labels: Sequence[str], groups_file: str | None = None,
              num_classes: int | None = None) -> WatchList:
        """Resolve `entries` (labels, ids or group names) against a model's `labels`.

        `num_classes` defaults to len(labels) (give it for a model without labels). The shipped
        ImageNet groups apply to 1000-class models; a `groups_file`'s groups come first. A name
        that is both a label and a group is refused: the file's group should be renamed.
        """
        n = len(labels) if num_classes is None else int(num_classes)
        if n <= 0:
            raise EdgeCamError("num_classes: the model's number of classes is unknown; give num_classes.")
        if labels and len(labels) != n:
            raise EdgeCamError(f"labels: {len(labels)} labels for a model of {n} classes.")
        by_label: dict[str, list[int]] = {}
        for i, lab in enumerate(labels):
            by_label.setdefault(_norm(lab), []).append(i)
        builtin = load_groups() if n == IMAGENET_CLASSES else {}
        user = load_groups(groups_file) if groups_file else {}
        groups = {_norm(k): (k, v, BUILTIN_GROUPS) for k, v in builtin.items()}
        groups.update({_norm(k): (k, v, str(groups_file)) for k, v in user.items()})
        if not entries:
            raise EdgeCamError("classes: the watch list is empty; give class labels, ids or group names.")

        def class_of(entry: str | int, where: str) -> int:
            text = str(entry).strip()
            if text.lstrip("-").isdigit():
                cid = int(text)
                if not 0 <= cid < n:
                    raise EdgeCamError(f"{where}: class id {cid} is outside this model's classes 0-{n - 1}.")
                return cid
            ids = by_label.get(_norm(text), [])
            if len(ids) > 1:
                raise EdgeCamError(f"{where}: {text!r} names classes {' and '.join(map(str, ids))}; give the id.")
            if not ids:
                close = difflib.get_close_matches(_norm(text), list(by_label) + list(groups), n=3, cutoff=0.6)
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else \
                    " (the labels are in `edge-cam info MODEL`)."
                raise EdgeCamError(f"{where}: {text!r} is not a class label, class id or group of this model{hint}")
            return ids[0]

        targets: dict[str, Target] = {}
        for entry in entries:
            key = _norm(str(entry))
            if key in groups and key in by_label:
                raise EdgeCamError(f"classes: {entry!r} is both a class label and a group of "
                                   f"{groups[key][2]}; rename the group.")
            if key in groups:
                name, members, source = groups[key]
                ids = tuple(sorted({class_of(m, f"group {name!r} of {source}") for m in members}))
                target = Target(name, ids, True)
            else:
                cid = class_of(entry, "classes")
                target = Target(labels[cid] if labels else str(cid), (cid,), False)
            if target.name in targets:
                log.info("watch list: %r is listed twice; watching it once", target.name)
            targets.setdefault(target.name, target)
        return cls(tuple(targets.values()), tuple(labels), n)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.targets]

    @property
    def class_ids(self) -> np.ndarray:
        """Every member class once, sorted (int64): the classes whose maps `watch` needs, e.g. the
        teacher graph's class query."""
        return np.array(sorted({c for t in self.targets for c in t.class_ids}), np.int64)

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """(targets,) P(any member) per target, from one frame's logits (num_classes,)."""
        z = self._logits(logits)
        lse = _logsumexp(z)
        return np.array([np.exp(_logsumexp(z[list(t.class_ids)]) - lse) for t in self.targets])

    def watch(self, logits: np.ndarray, class_ids: Sequence[int] | np.ndarray, cams: np.ndarray,
              min_score: float = 0.0) -> list[Watched]:
        """The targets with score ≥ `min_score` on one frame, most probable first.

        `logits`: (num_classes,); `cams[i]` (h, w) is the raw CAM of class `class_ids[i]`, for (at
        least) every member of a target that reaches min_score: e.g. the graph's query maps for
        `self.class_ids`, or its top-K maps; repeats are fine. Maps are combined in float64 and
        returned as float32.
        """
        z = self._logits(logits)
        cams = np.asarray(cams)
        ids = np.asarray(class_ids, np.int64).reshape(-1)
        if cams.ndim != 3 or len(cams) != len(ids):
            raise ValueError(f"cams: expected ({len(ids)}, h, w) maps for class_ids, got shape {cams.shape}")
        where = {int(c): i for i, c in reversed(list(enumerate(ids)))}  # the first map of a repeated id
        lse = _logsumexp(z)
        out = []
        for t in self.targets:
            members = np.array(t.class_ids)
            zt = z[members]
            lt = _logsumexp(zt)
            score = float(np.exp(lt - lse))
            if score < min_score:
                continue  # its maps are not needed, and not looked for
            missing = [int(c) for c in members if int(c) not in where]
            if missing:
                raise ValueError(f"class_ids: no map for class {missing[0]} of {t.name!r}; "
                                 "give the maps of every member (WatchList.class_ids)")
            q = np.exp(zt - lt)
            cam = np.tensordot(q, cams[[where[int(c)] for c in members]].astype(np.float64), axes=1)
            best = int(members[int(np.argmax(zt))])
            out.append(Watched(t, score, best, self.labels[best] if self.labels else "", cam.astype(np.float32)))
        return sorted(out, key=lambda w: -w.score)

    def _logits(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, np.float64).reshape(-1)
        if z.shape[0] != self.num_classes:
            raise ValueError(f"logits: expected {self.num_classes} class logits, got {z.shape[0]}")
        return z


def _logsumexp(z: np.ndarray) -> float:
    m = float(z.max())
    return m + float(np.log(np.exp(z - m).sum()))
