"""Distil a specialised student from the user's own footage (torch, workstation).

NoScope (Kang et al., VLDB 2017): a tiny model specialised to one camera, trained on the reference
model's own answers, stands in for it at a fraction of the cost. Here the reference is the CAM
teacher, and the student sees only what the cascade will show it: the crop around the teacher's
box (data.py), or with a watch list the cascade's own ROIs of the watched classes or
groups. Its labels are the teacher's classes that matter on this footage (or the watched targets'
names) and "other"; the last `holdout` of every source is kept out of training
and reported on. The result is a self-describing ONNX (or TFLite) that `run --student` takes
without a description, with what it was distilled from in `edge_cam.source["distill"]`.

    >>> r = distill("teacher.onnx", ["lane.mp4"], "student.onnx", classes=["car"], min_score=0.015,
    ...             teacher_options={"resize": "stretch", "input_size": (288, 512)}, rule={"mode": "objects"})
"""
from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

import numpy as np
import torch

from edge_cam.agreement import Referee
from edge_cam.crop import CropSpec
from edge_cam.errors import EdgeCamError
from edge_cam.gate import MotionGate
from edge_cam.localize import BoxRule
from edge_cam.measure.cascade_eval import confident, make_rule, model_macs
from edge_cam.metadata import rewrite_metadata
from edge_cam.model import Model
from edge_cam.preprocess import pad_colour
from edge_cam.sinks import check_not_an_input, check_writable
from edge_cam.spec import OTHER, CascadeSpec, watch_from_targets
from edge_cam.watch import WatchList, coarse_groups

from ..common.macs import count_macs
from .data import BACKGROUND, EXACT, STALE, Footage, collect
from .net import MEAN, STD, Student, predict, train

log = logging.getLogger("edge_cam")
P = ParamSpec("P")
R = TypeVar("R")

TOP1_SCORE = 0.5  # without a watch list: the teacher's answer counts from this probability
MIN_SHARE = 0.02  # a teacher class needs this share of the confident training frames to be a label
MAX_LABELS = 8  # at most this many of them (plus "other")
MIN_RATIO = 20  # the default student has at least this many times fewer multiply-adds than the teacher
INT8_CALIBRATION = 200  # crops that calibrate an int8 student's activation ranges

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class DistillResult:
    path: str
    labels: list[str]  # the student's, "other" last
    targets: dict[str, list[int]]  # student label → the teacher classes it stands for
    macs: int
    teacher_macs: int | None
    train_frames: int
    holdout_frames: int
    train_crops: dict[str, int]  # per label
    holdout: dict[str, float | int | None] = field(default_factory=dict)  # agreement on held-out crops
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    int8: dict | None = None  # its drift against the fp32 student, on training crops, with --quantize int8


def resolve(entries: Sequence[int | str], labels: list[str]) -> list[tuple[str, list[int]]]:
    """Watch-list entries (labels, ids, group names) → (name, teacher class ids) per target, as
    `run --classes` reads them (edge_cam.watch; the shipped ImageNet groups for 1000 classes)."""
    return [(t.name, list(t.class_ids)) for t in WatchList.parse(list(entries), labels).targets]


def choose_targets(classes, name: str | None, labels: list[str], logits: np.ndarray, min_score: float,
                   fine: bool = False) -> dict[str, list[int]]:
    """The student's labels and the teacher classes behind each.

    classes None: the coarse groups (edge_cam.watch.coarse_groups: person, dog, vehicle, ...) or,
    with `fine` or a teacher that is not a 1000-class ImageNet model, the teacher's own classes,
    that are the teacher's answer (Referee.answer) with probability ≥ min_score on at least
    MIN_SHARE of those frames of `logits` (at most MAX_LABELS). A watch list (labels, ids, group
    names such as "car"): one label per entry, or one label `name` for the union of all of them. A
    dict: name → entries, one label per key for the union of its entries.
    """
    if classes is None:
        groups = None if fine else coarse_groups(len(labels))
        candidates = groups or {label: [i] for i, label in enumerate(labels)}
        referee = Referee(candidates, labels, len(labels))
        answers = [referee.answer(z) for z in logits]
        sure = [a for a, p in answers if p >= min_score]
        if not sure:
            raise EdgeCamError(f"the teacher's answer reaches {min_score:g} on no training frame; lower "
                               "--min-score or name the classes to watch with --classes.")
        names, counts = np.unique([a for a in sure if a != OTHER] or [OTHER], return_counts=True)
        keep = [str(n) for n, c in sorted(zip(names, counts), key=lambda nc: -nc[1])
                if n != OTHER and c >= max(3, MIN_SHARE * len(sure))][:MAX_LABELS]
        return {n: list(candidates[n]) for n in keep}
    if isinstance(classes, dict):
        return {str(k): sorted({c for _, ids in resolve(v, labels) for c in ids}) for k, v in classes.items()}
    targets = resolve([classes] if isinstance(classes, (str, int)) else list(classes), labels)
    if name is not None:
        return {name: sorted({c for _, ids in targets for c in ids})}
    return dict(targets)


def watch_list(classes, name: str | None, labels: Sequence[str], num_classes: int,
               groups_file: str | None = None) -> WatchList:
    """The watch list the cascade will be given: `classes` as `run --classes` reads them (labels, ids,
    group names), one target each; with `name`, one target for the union of them all; a dict
    name → entries, one target per key for the union of its entries. A union's score is P(any
    member) and its map the members' combined CAM, exactly as for a group (edge_cam.watch)."""
    if isinstance(classes, WatchList):
        return classes
    if isinstance(classes, dict):
        union = {str(k): WatchList.parse([v] if isinstance(v, (str, int)) else list(v), labels, groups_file,
                                         num_classes).class_ids.tolist() for k, v in classes.items()}
        return watch_from_targets(union, labels, num_classes)
    parsed = WatchList.parse([classes] if isinstance(classes, (str, int)) else list(classes), labels, groups_file,
                             num_classes)
    return parsed if name is None else watch_from_targets({name: parsed.class_ids.tolist()}, labels, num_classes)


def _keeps_torch_threads(fn: Callable[P, R]) -> Callable[P, R]:
    """distill sets torch's intra-op threads for its own training (threads=...); the caller's process
    gets its own count back, whatever happens (a notebook or a test run would otherwise carry on with
    one thread)."""
    @functools.wraps(fn)
    def kept(*args: P.args, **kwargs: P.kwargs) -> R:
        before = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)
    return kept


@_keeps_torch_threads
def distill(teacher_path: str, sources: Sequence[str] | str, out_path: str, *, classes=None,
            name: str | None = None, groups_file: str | None = None, min_score: float | None = None,
            teacher_options: dict | None = None, rule: BoxRule | dict | None = None, max_rois: int = 4,
            every: int = 10, change: float | None = None, motion: MotionGate | None = None,
            pad: float = 1.3, square: bool = True, mask: str = "none", size: int = 64, width: int = 16,
            epochs: int = 15, seed: int = 0, holdout: float = 0.2, max_frames: int | None = None, sample: int = 1,
            balance: float = 0.0, format: str = "onnx", quantize: str | None = None, threads: int | None = None,
            fine: bool = False, progress: Progress | None = None) -> DistillResult:
    """Teacher over the footage → crops as `run` cuts them → a small student → a self-describing file.

    classes (name, groups_file): a watch list, as `run --classes ... --min-score min_score` takes
    it: the teacher is asked for the watched maps, the crops are the cascade's ROIs (find_rois),
    labelled with their target's name, and "other" (data.py). Without classes the student
    answers the coarse groups (person, dog, vehicle, ...: the teacher holds them steady on a real
    camera, where its fine classes flicker), or with `fine` the teacher's own classes; each frame is
    labelled with the teacher's answer to that question (agreement.Referee). min_score: with classes the
    watch threshold (default 0, as run's); without, a group (class) becomes a label when it is the
    teacher's answer with this probability on MIN_SHARE of such frames (default 0.5). teacher_options: Model
    keywords for the teacher (resize, input_size), e.g. {"resize": "stretch", "input_size": (288, 512)}
    to see whole frames. rule, max_rois: the cascade's box rule (a BoxRule, or overrides of the
    teacher's, e.g. {"mode": "objects"}) and ROI cap. All of these go into the student's metadata,
    so that eval and run can reproduce them.
    every/change/pad/square/mask: the cascade settings the student will run under (stale-box crops
    for up to every-1 frames; with change, only while the scene stays within it). motion: the motion
    gate the student will run under (recorded in its spec; the stale crops are the same). size, width: the
    student's input side and channel width. balance: class weights ∝ frequency^-balance; 0 (none)
    because agreement counts frames as they come (measured: on the car video 1/sqrt weighting made
    the student say "car" where the teacher did not, 96.7% against 98.0%; the bottle video alike).
    holdout: the last fraction of each source, never trained on. max_frames: per source (a live
    camera needs it). sample: the teacher and the crops on every sample-th frame of a video only (neighbouring
    frames of a fixed camera are near copies: 3 on 30 fps footage keeps 10 a second and cuts
    distill's time about threefold, see docs/question.md). threads: torch's intra-op threads for
    training (None: torch's default; 1 is ten times faster on a 2-core machine that is busy with
    something else, measured).
    """
    t_start = time.perf_counter()
    sources = [sources] if isinstance(sources, str) else list(sources)
    if not sources:
        raise EdgeCamError("distill needs at least one --source.")
    if not (isinstance(sample, int) and sample >= 1):
        raise EdgeCamError(f"--sample takes every Nth frame; N is 1 or more, not {sample}.")
    if not 0 <= holdout < 1:
        raise EdgeCamError(f"--holdout is a fraction of the footage in [0, 1), not {holdout}.")
    if quantize not in (None, "int8"):
        raise EdgeCamError(f"--quantize {quantize} is not supported; use int8.")
    if quantize and format == "tflite":
        raise EdgeCamError("--quantize int8 makes ONNX students (ONNX Runtime's static QDQ); export TFLite in fp32.")
    if format not in ("onnx", "tflite"):
        raise EdgeCamError(f"unknown format {format!r}; use onnx or tflite.")
    if mask not in ("none", "mean", "blur"):
        raise EdgeCamError(f"unknown mask mode {mask!r}; use none, mean or blur.")
    if min_score is not None and not 0 <= min_score <= 1:
        raise EdgeCamError(f"--min-score is a probability from 0 to 1, not {min_score}.")
    # The output, before any work (the teacher's pass and training take minutes): a name that says
    # what it holds, a place it can be written to, and none of the inputs.
    if os.path.splitext(out_path)[1].lower() != f".{format}":
        raise EdgeCamError(f"cannot write the student to {out_path}: a student in the {format} format is "
                           f"written to a .{format} file; name it so.")
    check_writable(out_path, "the student")
    check_not_an_input(out_path, [teacher_path, *sources, groups_file], "the student")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    options = dict(teacher_options or {})
    teacher = Model(teacher_path, **options)
    if not teacher.has_cam:
        raise EdgeCamError(f"{teacher_path} has no CAM output; distil from a teacher made by `edge-cam export`.")
    if not teacher.info.labels:
        raise EdgeCamError(f"{teacher_path} has no labels; re-export it with --labels.")
    watch = None if classes is None else watch_list(classes, name, teacher.info.labels, teacher.num_classes,
                                                    groups_file)
    question = "watch" if watch else "fine" if fine or coarse_groups(teacher.num_classes) is None else "coarse"
    if question == "fine" and not fine:
        log.info("no coarse groups for a %d-class teacher: the student learns its classes", teacher.num_classes)
    score = (0.0 if watch else TOP1_SCORE) if min_score is None else min_score
    rule = make_rule(teacher, None, rule)
    crop_spec = CropSpec(pad, square, mask)
    footage = collect(teacher, sources, size, crop_spec, pad_colour(MEAN), every=every, change=change, rng=rng,
                      watch=watch, min_score=score, rule=rule, max_rois=max_rois, max_frames=max_frames, sample=sample,
                      progress=progress)
    if not len(footage.crops):
        raise EdgeCamError("the sources gave no frames with a CAM box; check them with `edge-cam run`.")
    held = footage.holdout(holdout)
    sure_p = footage.target_score
    if watch is not None:
        assert footage.crop_target is not None
        targets = {t.name: list(t.class_ids) for t in watch.targets}
        y = np.where(footage.crop_target < 0, len(targets), footage.crop_target)
    else:  # every frame labelled with the teacher's answer to the student's question, as run checks it
        targets = choose_targets(None, None, teacher.info.labels, footage.logits[~held], score, question == "fine")
        if not targets:
            raise EdgeCamError(f"on the training footage the teacher's answer is none of "
                               f"{'its classes' if question == 'fine' else 'the coarse groups'} often enough to "
                               "teach (each under 2% of its confident frames); name the classes to watch with "
                               "--classes" + ("." if question == "fine" else " or try --fine."))
        referee = Referee(targets, teacher.info.labels, teacher.num_classes)
        order = {label: i for i, label in enumerate([*targets, OTHER])}
        answers = [referee.answer(z) for z in footage.logits]
        frame_label = np.array([order[a] for a, _ in answers], np.int64)
        sure_p = np.array([p for _, p in answers], np.float32)
        y = np.where(footage.kind == BACKGROUND, len(targets), frame_label[footage.frame])
    labels = list(targets) + [OTHER]
    train_rows = ~held[footage.frame]
    if len(np.unique(y[train_rows])) < 2:
        raise EdgeCamError(f"on the training footage every crop is {labels[int(y[train_rows][0])]!r}; a "
                           "student needs at least two answers to tell apart (more footage, or other --classes"
                           + (" or --min-score)." if watch else ")."))
    model = Student(len(labels), width)
    macs = count_macs(model, (size, size))
    # The teacher at the size it ran at (a dynamic graph's cost grows with its input).
    t_macs = model_macs(teacher, teacher.input_size if teacher.dynamic_size else None)
    if t_macs and macs * MIN_RATIO > t_macs:
        log.warning("the student has %.1f M multiply-adds, more than 1/%d of the teacher's %.1f M; lower "
                    "--width or --size for a cheaper cascade", macs / 1e6, MIN_RATIO, t_macs / 1e6)
    log.info("%d training crops of %d frames, labels %s", int(train_rows.sum()), int((~held).sum()), labels)
    history = train(model, footage.crops[train_rows], y[train_rows], epochs=epochs, rng=rng, balance=balance,
                    progress=progress)
    assert sure_p is not None
    report = _holdout_report(model, footage, y, held[footage.frame], sure_p, score if watch else None)
    spec = CascadeSpec(tuple(labels), {k: tuple(v) for k, v in targets.items()}, watch is not None, OTHER, score,
                       (size, size), MEAN, STD, CropSpec(pad, square, mask), pad_colour(MEAN), "stretch", every, change,
                       teacher.info.input.resize, _size_option(options.get("input_size")), rule, max_rois, motion)
    # Provenance only: what the cascade must reproduce is the spec (edge_cam.cascade_spec).
    meta = {"teacher": os.path.basename(teacher_path), "teacher_macs": t_macs, "macs": macs,
            "watch": _entries(classes), "name": name,
            "question": question, "teacher_input": list(teacher.input_size), "width": width,
            "seed": seed, "holdout": holdout, "sample": sample, "sources": [os.path.basename(s) for s in sources],
            "frames": {"train": int((~held).sum()), "holdout": int(held.sum())}, "holdout_agreement": report}
    if progress:
        progress("exporting the student", 0, 1)
    from ..torch_export import export_module  # its import pulls in the exporters; only needed now
    fp32_path = out_path + ".fp32.onnx" if quantize else out_path
    int8 = None
    try:
        export_module(model, fp32_path, input_size=(size, size), labels=labels, cam=False, mean=MEAN, std=STD,
                      resize="stretch", source={"role": "student", "distill": meta}, quiet=True, format=format)
        if quantize:  # calibrated on the crops it was trained on, which are the crops it will see
            from ..quantise.precision import quantize_int8
            crops = footage.crops[train_rows]
            pick = np.linspace(0, len(crops) - 1, min(INT8_CALIBRATION, len(crops))).astype(int)
            int8 = quantize_int8(fp32_path, out_path, [c[None] for c in crops[pick]], quiet=True)
    finally:  # the fp32 intermediate never outlives the call (an error, a Ctrl-C)
        if quantize and os.path.exists(fp32_path):
            os.remove(fp32_path)
    write_spec(out_path, spec, format)
    if int8 is not None:
        log.info("int8 student against fp32 on %d held-out crops: top-1 agreement %.3f",
                 int8["held_out"]["images"], int8["held_out"]["top1_agreement"])
    if progress:
        progress("exporting the student", 1, 1)
    counts = np.bincount(y[train_rows], minlength=len(labels))
    return DistillResult(out_path, labels, targets, macs, t_macs, int((~held).sum()), int(held.sum()),
                         {lab: int(c) for lab, c in zip(labels, counts)}, report, history,
                         time.perf_counter() - t_start, int8)


def _size_option(size) -> int | tuple[int, int] | None:
    """The teacher's input_size option as the spec keeps it (an int: the long side; or (H, W))."""
    return None if size is None else int(size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def write_spec(path: str, spec: CascadeSpec, format: str) -> None:
    """The spec into the student's metadata, beside what the exporter wrote."""
    if format == "tflite":
        from edge_cam.backends.litert import read_metadata, write_metadata
        write_metadata(path, path, {**read_metadata(path), **spec.to_props()})
    else:
        rewrite_metadata(path, path, spec.to_props())


def _entries(classes) -> list | dict | None:
    """The watch list as given, for the metadata (JSON: ids stay ints, everything else text)."""
    if classes is None or isinstance(classes, WatchList):
        return None if classes is None else classes.names
    if isinstance(classes, dict):
        return {str(k): _entries(v) for k, v in classes.items()}
    items = [classes] if isinstance(classes, (str, int)) else list(classes)
    return [c if isinstance(c, int) else str(c) for c in items]


def _holdout_report(model, footage: Footage, y: np.ndarray, rows: np.ndarray, answer_p: np.ndarray,
                    min_score: float | None) -> dict:
    """The student against the teacher's answer on held-out crops: fresh boxes, reused (stale)
    boxes, and fresh boxes on frames where the teacher is confident of its answer (`answer_p`, per
    frame: agreement.confident)."""
    if not rows.any():
        return {"crops": 0}
    right = predict(model, footage.crops[rows]) == y[rows]
    kind = footage.kind[rows]
    sure = confident(answer_p, min_score)[footage.frame[rows]]
    rate = lambda m: float(right[m].mean()) if m.any() else None  # noqa: E731
    return {"crops": int(rows.sum()), "fresh": rate(kind == EXACT), "stale": rate(kind == STALE),
            "fresh_confident": rate((kind == EXACT) & sure), "all": rate(np.ones_like(right))}
