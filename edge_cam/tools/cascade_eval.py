"""How well the cascade stands in for its teacher on a video, and at what cost (torch-free).

The teacher run on every frame is the reference: no ground truth is needed, only footage. Its
answer for a frame is its top-1 class mapped into the student's label space (a distilled
student's metadata says which teacher classes make each of its labels; otherwise a teacher label
that the student also has stays itself), and anything else is "other". The cascade's answer is
its first ROI's student label ("none" when it has no ROI). Agreement is counted on all frames and
on the frames where the teacher is confident: top-1 probability ≥ `confident` (0.5 by default,
the level at which the shared MobileNetV2 agrees with its int8 original on 93% of real photos).

Cost is counted in multiply-adds, which do not depend on who else shares the CPU: teacher MACs ×
teacher runs + student MACs × student crops, per frame, against the teacher on every frame (the
speed-up). Wall-clock FPS is reported beside it.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..cascade import Cascade
from ..crop import CropSpec
from ..metadata import PREFIX, ModelInfo
from ..model import Model
from ..source import open_source

log = logging.getLogger("edge_cam")

CONFIDENT = 0.5  # teacher top-1 probability from which a frame counts as "confident"
OTHER = "other"
NONE = "none"  # the cascade's answer on a frame without ROI

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def onnx_macs(path: str, input_size: tuple[int, int] | None = None) -> int | None:
    """Multiply-adds of one image through an ONNX graph: Conv, ConvTranspose, Gemm and MatMul with
    shapes from ONNX shape inference. A graph that takes any image size is counted at `input_size`
    (H, W; default: the size its edge_cam metadata gives); other dynamic axes (batch, a class
    query) count as 1. None without the onnx package (an optional extra on boards), for a
    .tflite, or when a shape cannot be inferred."""
    if not path.lower().endswith(".onnx"):
        return None
    try:
        import onnx
        from onnx import shape_inference
    except ImportError:
        return None
    model = onnx.load(path)
    if input_size is None:
        props = {p.key: p.value for p in model.metadata_props}
        if PREFIX + "input" in props:
            input_size = tuple(json.loads(props[PREFIX + "input"])["size"])
    for k, value in enumerate(model.graph.input):
        dims = value.type.tensor_type.shape.dim
        spatial = (1, 2) if len(dims) == 4 and dims[3].dim_value == 3 else (2, 3)  # NHWC or NCHW
        for i, d in enumerate(dims):
            if not d.dim_value:
                d.dim_value = input_size[spatial.index(i)] if k == 0 and len(dims) == 4 and input_size and \
                    i in spatial else 1
    try:
        model = shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:
        log.info("no MACs for %s: shape inference failed (%s)", path, e)
        return None
    g = model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(g.input) + list(g.value_info) + list(g.output)}
    shapes.update({t.name: list(t.dims) for t in g.initializer})
    total = 0
    for node in g.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        a, w, out = (shapes.get(name) for name in (node.input[0], node.input[1], node.output[0]))
        # Axes that inference leaves symbolic (0) count as 1: batch, a class query, and the spatial
        # axis of the CAM matmul, which data propagation does not resolve (0.1% of MobileNetV2's
        # total). Convolution and Gemm weights must be known: they carry nearly all the cost.
        size = lambda dims: int(np.prod([d or 1 for d in dims]))  # noqa: E731
        weighted = node.op_type != "MatMul"
        if not a or not out or not a[-1] or (weighted and (not w or 0 in w[1:])):
            log.info("no MACs for %s: the shapes of %s are unknown", path, node.name)
            return None
        if node.op_type == "Conv":  # W: (Cout, Cin/groups, kh, kw); each output element costs Cin/g·kh·kw
            total += size(out) * int(np.prod(w[1:]))
        elif node.op_type == "ConvTranspose":  # W: (Cin, Cout/groups, kh, kw); each input element fans out
            total += size(a) * int(np.prod(w[1:]))
        elif node.op_type == "Gemm":
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            total += size(out) * ((a[0] or 1) if trans_a else a[-1])
        else:
            total += size(out) * a[-1]
    return total


def model_macs(model: Model) -> int | None:
    """A model's multiply-adds per image: from its metadata when distill stored them, else counted."""
    stored = (model.info.source.get("distill") or {}).get("macs") or model.info.source.get("macs")
    return int(stored) if stored else onnx_macs(model.path)


def target_map(teacher: ModelInfo, student: ModelInfo) -> Callable[[int], str]:
    """Teacher class id → the student's label for it, or "other"."""
    distilled = student.source.get("distill") or {}
    groups = distilled.get("targets")  # {student label: [teacher class ids]}
    if groups:
        lookup = {int(c): label for label, ids in groups.items() for c in ids}
    else:
        names = set(student.labels)
        lookup = {i: lab for i, lab in enumerate(teacher.labels) if lab in names}
    other = distilled.get("other", OTHER)
    return lambda class_id: lookup.get(int(class_id), other)


def answer_label(answer) -> str:
    """A ROI's student answer, whether a dict (older runtimes) or a Verdict."""
    return answer["label"] if isinstance(answer, dict) else answer.label


def crop_spec_for(student: Model) -> CropSpec:
    """The crops a distilled student was trained on (its metadata), else the runtime's defaults."""
    c, base = (student.info.source.get("distill") or {}).get("crop") or {}, CropSpec()
    return CropSpec(float(c.get("pad", base.pad)), bool(c.get("square", base.square)), c.get("mask", base.mask))


@dataclass
class Reference:
    """The teacher on every frame."""
    labels: list[str]  # mapped into the student's label space
    scores: np.ndarray  # top-1 probability
    ms: float  # wall-clock per frame (preprocess + model)


@dataclass
class Score:
    every: int
    change: float | None
    frames: int
    agreement: float
    confident_frames: int
    agreement_confident: float | None  # None when no frame is confident
    teacher_runs: int
    student_runs: int
    macs_per_frame: float | None
    speedup: float | None  # teacher-on-every-frame MACs / the cascade's
    fps: float
    ms_per_frame: float
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)  # reference → cascade answer → frames


@dataclass
class Report:
    video: str
    start: int
    frames: int
    confident: float
    teacher_macs: int | None
    student_macs: int | None
    teacher_fps: float
    reference_counts: dict[str, int]
    # What a student that always gives the commonest reference answer would score: the floor that
    # agreement has to be read against on footage where one answer dominates.
    majority: float = 0.0
    majority_confident: float | None = None
    scores: list[Score] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _frames(video: str, start: int, stop: int | None):
    with open_source(video) as source:
        for f in source:
            if f.image is None or f.index is None or f.index < start:
                continue
            if stop is not None and f.index >= stop:
                break
            yield f.image


def reference(teacher: Model, video: str, mapping: Callable[[int], str], start: int = 0, stop: int | None = None,
              progress: Progress | None = None, total: int = 0) -> Reference:
    labels, scores, spent = [], [], 0.0
    for image in _frames(video, start, stop):
        t0 = time.perf_counter()
        p = teacher.predict(image)
        spent += time.perf_counter() - t0
        labels.append(mapping(p.class_id))
        scores.append(p.score)
        if progress:
            progress("teacher on every frame", len(labels), total)
    return Reference(labels, np.asarray(scores, np.float32), spent * 1e3 / max(1, len(labels)))


def run_cascade(cascade: Cascade, video: str, start: int = 0, stop: int | None = None,
                progress: Progress | None = None, total: int = 0, stage: str = "cascade") -> tuple[list[str], int, int, float]:
    """The cascade's answer on each frame, teacher runs, student runs and ms per frame."""
    answers, teacher_runs, student_runs, spent = [], 0, 0, 0.0
    for image in _frames(video, start, stop):
        t0 = time.perf_counter()
        r = cascade.process(image)
        spent += time.perf_counter() - t0
        teacher_runs += r.teacher_ran
        asked = [roi for roi in r.rois if roi.student is not None]
        student_runs += len(asked)
        answers.append(answer_label(asked[0].student) if asked else NONE)
        if progress:
            progress(stage, len(answers), total)
    return answers, teacher_runs, student_runs, spent * 1e3 / max(1, len(answers))


def evaluate(video: str, teacher: Model | str, student: Model | str,
             settings: Sequence[tuple[int, float | None]] = ((10, None),), *, start: int | float = 0,
             stop: int | None = None, crop_spec: CropSpec | None = None, confident: float = CONFIDENT,
             progress: Progress | None = None) -> Report:
    """The teacher on every frame of `video` from `start` (a frame index, or a fraction of the
    video under 1) to `stop`, then the cascade for each (every, change) in `settings`."""
    teacher = teacher if isinstance(teacher, Model) else Model(teacher)
    student = student if isinstance(student, Model) else Model(student, threads=1)
    with open_source(video) as source:
        count = source.total or 0
    if isinstance(start, float) and 0 < start < 1:
        start = int(round(start * count))
    start = int(start)
    total = max(0, (stop or count) - start)
    mapping = target_map(teacher.info, student.info)
    ref = reference(teacher, video, mapping, start, stop, progress, total)
    ok = ref.scores >= confident
    t_macs, s_macs = model_macs(teacher), model_macs(student)
    labels, counts = np.asarray(ref.labels), {}
    for lab in ref.labels:
        counts[lab] = counts.get(lab, 0) + 1
    common = max(counts, key=counts.get) if counts else NONE
    report = Report(os.path.basename(video), start, len(ref.labels), confident, t_macs, s_macs,
                    1e3 / ref.ms if ref.ms else 0.0, counts, float(np.mean(labels == common)) if len(labels) else 0.0,
                    float(np.mean(labels[ok] == common)) if ok.any() else None)
    spec = crop_spec or crop_spec_for(student)
    for every, change in settings:
        cascade = Cascade(teacher, student, every=every, change=change, crop_spec=spec)
        answers, t_runs, s_runs, ms = run_cascade(cascade, video, start, stop, progress, total,
                                                  f"cascade every {every}" + (f", change {change:g}" if change else ""))
        same = np.asarray(answers) == labels
        confusion: dict[str, dict[str, int]] = {}
        for want, got in zip(ref.labels, answers):
            confusion.setdefault(want, {}).setdefault(got, 0)
            confusion[want][got] += 1
        macs = None if t_macs is None or s_macs is None else (t_macs * t_runs + s_macs * s_runs) / max(1, len(same))
        report.scores.append(Score(
            every, change, len(same), float(same.mean()) if len(same) else 0.0, int(ok.sum()),
            float(same[ok].mean()) if ok.any() else None, t_runs, s_runs, macs,
            t_macs / macs if macs else None, 1e3 / ms if ms else 0.0, ms, confusion))
        log.info("every %d change %s: agreement %.3f, confident %s, teacher runs %d, speed-up %s", every,
                 change, report.scores[-1].agreement, report.scores[-1].agreement_confident, t_runs,
                 report.scores[-1].speedup)
    return report


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def to_markdown(report: Report) -> str:
    """A table: one row per cascade setting, after a line about the reference."""
    macs = lambda v: "unknown" if v is None else f"{v / 1e6:.1f} M"  # noqa: E731
    head = (f"{report.video}, frames {report.start}–{report.start + report.frames - 1} ({report.frames}); "
            f"teacher {macs(report.teacher_macs)} MACs, student {macs(report.student_macs)} MACs; teacher on "
            f"every frame {report.teacher_fps:.0f} FPS; confident: teacher top-1 ≥ {report.confident:g} on "
            f"{report.scores[0].confident_frames if report.scores else 0} frames; reference answers "
            + ", ".join(f"{k} {v}" for k, v in sorted(report.reference_counts.items(), key=lambda kv: -kv[1]))
            + f"; always answering the commonest: {_pct(report.majority)} ({_pct(report.majority_confident)} confident)")
    rows = ["| every | change | agreement | agreement (confident) | teacher runs | MACs/frame | speed-up | FPS |",
            "|---|---|---|---|---|---|---|---|"]
    for s in report.scores:
        rows.append(f"| {s.every} | {'-' if s.change is None else f'{s.change:g}'} | {_pct(s.agreement)} | "
                    f"{_pct(s.agreement_confident)} | {s.teacher_runs} | {macs(s.macs_per_frame)} | "
                    f"{'n/a' if s.speedup is None else f'{s.speedup:.1f}×'} | {s.fps:.0f} |")
    return head + "\n\n" + "\n".join(rows)


def plot(reports: dict[str, Report], path: str) -> None:
    """Agreement against speed-up, two lines per report (e.g. per video): on all frames, and on
    confident frames when there are any; points in speed-up order."""
    from .plot import line_chart
    series = {}
    for name, rep in reports.items():
        for suffix, pick in (("all", lambda s: s.agreement), ("confident", lambda s: s.agreement_confident)):
            pts = sorted((s.speedup, pick(s)) for s in rep.scores if s.speedup and pick(s) is not None)
            if pts:
                series[f"{name} ({suffix})"] = ([p[0] for p in pts], [100 * p[1] for p in pts])
    if series:
        line_chart(path, series, "cascade against the teacher on every frame", "speed-up in multiply-adds",
                   "agreement %", markers=True)
