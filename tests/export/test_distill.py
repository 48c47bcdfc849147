"""distill end to end on a short piece of real footage: the real MobileNetV2 teacher over the first
150 frames of the shared bottle video → a tiny student → an ONNX that Model loads without a
description → the cascade runs with it → cascade_eval reports sane numbers."""
import os

import numpy as np
import pytest
import torch

from edge_cam.cascade import Cascade
from edge_cam.crop import CropSpec
from edge_cam.errors import EdgeCamError
from edge_cam.gate import DISTILL_GATE
from edge_cam.localize import BoxRule
from edge_cam.measure.cascade_eval import crop_spec_for, evaluate, target_map, watch_from_targets
from edge_cam.model import Model
from edge_cam.preprocess import pad_colour
from edge_cam.source import open_source
from edge_cam.spec import CascadeSpec
from edge_cam.watch import WatchList, coarse_groups
from edge_cam_export.distill.data import EXACT, collect
from edge_cam_export.distill.net import MEAN
from edge_cam_export.distill.student import choose_targets, distill

FRAMES = 150
BOTTLES = [440, 720, 737, 898, 899, 901, 907]  # the coarse bottle group: beer, pill, pop, water, ...


@pytest.fixture(scope="module")
def bottle(shared_data):
    return str(shared_data / "videos" / "bottle-detection.mp4")


@pytest.fixture(scope="module")
def distilled(mobilenet_v2_path, bottle, tmp_path_factory):
    seen = []
    path = str(tmp_path_factory.mktemp("distill") / "student.onnx")
    result = distill(mobilenet_v2_path, [bottle], path, max_frames=FRAMES, epochs=1, size=32, width=4,
                     mask="mean", every=10, threads=1, seed=0,
                     progress=lambda stage, done, total: seen.append((stage, done, total)))
    return result, seen


def test_distilled_student_is_self_describing(distilled, mobilenet_v2_path):
    result, seen = distilled
    # The default question is the coarse groups: the bottle group is the teacher's only confident one here.
    assert result.labels == ["bottle", "other"]
    assert result.targets == {"bottle": BOTTLES}
    assert result.train_frames == 120 and result.holdout_frames == 30  # the last 20% held out
    assert result.train_crops["other"] > 0  # cold background boxes
    assert result.macs * 20 <= result.teacher_macs
    assert 0 <= result.holdout["fresh"] <= 1 and result.holdout["crops"] > 30
    assert any(s.startswith("teacher on") and d == t == FRAMES for s, d, t in seen)
    assert ("training the student", 1, 1) in seen and ("exporting the student", 1, 1) in seen

    student = Model(result.path)  # no description needed
    assert student.info.cam is None and student.input_size == (32, 32)
    assert student.info.labels == result.labels
    meta = student.info.source["distill"]
    assert student.info.source["role"] == "student"
    spec = CascadeSpec.from_metadata(student.info, student.path)  # edge_cam.cascade_spec, checked
    assert spec is not None and spec.crop == CropSpec(1.3, True, "mean") and spec.every == 10 and spec.change is None
    assert spec.targets == {"bottle": tuple(BOTTLES)} and spec.labels == tuple(result.labels) and not spec.watch
    assert spec.input_size == (32, 32) and spec.fill == pad_colour(MEAN) and spec.max_rois == 4
    assert meta["macs"] == result.macs and "targets" not in meta  # provenance only; the contract is the spec
    assert meta["question"] == "coarse"
    assert crop_spec_for(student) == CropSpec(1.3, True, "mean")
    to_student = target_map(Model(mobilenet_v2_path).info, student.info)
    assert to_student(898) == to_student(440) == "bottle" and to_student(0) == "other"


def test_training_crops_are_the_cascades(distilled, mobilenet_v2_path, bottle):
    """The exact-box crops distill trains on are, byte for byte, what the cascade hands the student."""
    result, _ = distilled
    teacher, student = Model(mobilenet_v2_path), Model(result.path)
    spec = crop_spec_for(student)
    footage = collect(teacher, [bottle], 32, spec, pad_colour(MEAN), every=1, change=None,
                      rng=np.random.default_rng(0), jitter=0, stale=0, background=0, max_frames=5)
    assert (footage.kind == EXACT).all() and len(footage.crops) == 5
    cascade = Cascade(teacher, student, every=1, crop_spec=spec)
    with open_source(bottle) as source:
        for frame, want in zip(source, footage.crops):
            got = cascade.process(frame.image).rois[0].crop.image
            np.testing.assert_array_equal(got, want)


def test_cascade_and_its_evaluation_with_the_student(distilled, mobilenet_v2_path, bottle):
    result, _ = distilled
    teacher, student = Model(mobilenet_v2_path), Model(result.path, threads=1)
    cascade = Cascade(teacher, student, every=10, crop_spec=crop_spec_for(student))
    with open_source(bottle) as source:
        for frame, _ in zip(source, range(12)):
            r = cascade.process(frame.image)
            label = r.rois[0].student["label"] if isinstance(r.rois[0].student, dict) else r.rois[0].student.label
            assert label in result.labels
    report = evaluate(bottle, teacher, student, [(1, None), (10, None)], start=100, stop=FRAMES)
    every1, every10 = report.scores
    assert report.frames == 50 and every1.teacher_runs == 50 and every10.teacher_runs == 5
    assert report.student_macs == result.macs  # from the metadata
    assert every10.speedup > 5 and every1.speedup < 1
    assert every10.confident_frames > 40  # the teacher is sure of the bottle here
    assert 0 <= every10.agreement <= 1 and every10.agreement_confident is not None


def test_the_same_seed_cuts_the_same_crops(mobilenet_v2_path, bottle, tmp_path):
    teacher = Model(mobilenet_v2_path)

    def run(seed):
        return collect(teacher, [bottle], 24, CropSpec(), pad_colour(MEAN), every=5, change=None,
                       rng=np.random.default_rng(seed), max_frames=12)

    a, b = run(3), run(3)
    np.testing.assert_array_equal(a.crops, b.crops)
    assert set(np.unique(a.kind)) >= {0, 1, 2}  # exact, jittered and reused (stale) boxes
    assert a.holdout(0.25).tolist() == [False] * 9 + [True] * 3
    # --sample 3: the teacher on frames 0, 3, 6, 9 of the 12 read; the crops of those frames are the
    # same pixels (each cut from its own frame), and a box is reused only from frames up to every - 1 back.
    third = collect(teacher, [bottle], 24, CropSpec(), pad_colour(MEAN), every=5, change=None,
                    rng=np.random.default_rng(3), max_frames=12, sample=3)
    assert third.index.tolist() == [0, 3, 6, 9]
    np.testing.assert_array_equal(third.logits, a.logits[::3])
    assert set(np.unique(third.kind)) >= {0, 1, 2}
    # A folder (run --collect's frames, each kept for a reason) is taken whole, the video beside it thinned.
    import cv2
    folder = tmp_path / "kept"
    folder.mkdir()
    with open_source(bottle) as source:
        for f in source:
            if f.index is not None and f.index < 5:
                cv2.imwrite(str(folder / f"frame-{f.index:03d}.png"), f.image)
    both = collect(teacher, [bottle, str(folder)], 24, CropSpec(), pad_colour(MEAN), every=5, change=None,
                   rng=np.random.default_rng(3), max_frames=12, sample=3)
    assert both.source.tolist() == [0] * 4 + [1] * 5


def test_targets():
    labels = ["cab", "jeep", "geyser", "water bottle"]
    none = np.zeros((0, 4))
    assert choose_targets(["Cab", 1, "3"], None, labels, none, 0.5) == \
        {"cab": [0], "jeep": [1], "water bottle": [3]}  # a watch list: one label per entry
    with pytest.raises(EdgeCamError):
        choose_targets(["bus"], None, labels, none, 0.5)
    with pytest.raises(EdgeCamError):
        choose_targets([7], None, labels, none, 0.5)
    assert choose_targets(["cab", "jeep"], "car", labels, none, 0.5) == {"car": [0, 1]}
    assert choose_targets("water bottle", None, labels, none, 0.5) == {"water bottle": [3]}
    assert choose_targets({"car": ["cab", 1], "bottle": [3]}, None, labels, none, 0.5) == \
        {"car": [0, 1], "bottle": [3]}
    unsure = np.log([[0.3, 0.3, 0.35, 0.05]] * 50)  # geyser is top-1, never confident
    bottle = np.log([[0.04, 0.01, 0.05, 0.9]] * 48)
    cab = np.log([[0.9, 0.01, 0.04, 0.05]] * 2)
    # cab is confident on 2 of 50 confident frames, under max(3, 2%); no coarse groups for 4 classes
    assert choose_targets(None, None, labels, np.concatenate([unsure, bottle, cab]), 0.5) == {"water bottle": [3]}
    with pytest.raises(EdgeCamError, match="reaches"):
        choose_targets(None, None, labels, unsure, 0.5)


def test_the_coarse_question_is_what_the_teacher_is_sure_of():
    """Four dog breeds at 0.2 each: sure of no breed, sure of a dog. The default question (the
    coarse groups) teaches "dog"; --fine finds nothing the teacher is sure of."""
    labels = [f"class {i}" for i in range(1000)]
    groups = coarse_groups(1000)
    assert groups is not None and coarse_groups(10) is None
    every = [i for ids in groups.values() for i in ids]
    assert len(every) == len(set(every))  # disjoint: one answer per class
    p = np.full((30, 1000), 0.2 / 996)
    p[:, groups["dog"][:4]] = 0.2
    assert choose_targets(None, None, labels, np.log(p), 0.5) == {"dog": groups["dog"]}
    with pytest.raises(EdgeCamError, match="reaches"):
        choose_targets(None, None, labels, np.log(p), 0.5, fine=True)


def test_the_imagenet_car_group(mobilenet_v2_path):
    labels = Model(mobilenet_v2_path).info.labels
    (name, ids), = choose_targets(["car"], None, labels, np.array([]), np.array([]), 0.5).items()
    assert name == "car" and {labels[i] for i in ids} >= {"sports car", "cab", "jeep", "minivan"}


def test_a_tflite_student_describes_itself(mobilenet_v2_path, bottle, tmp_path):
    pytest.importorskip("litert_torch", reason="--format tflite needs the tflite-export extra")
    r = distill(mobilenet_v2_path, bottle, str(tmp_path / "s.tflite"), max_frames=24, epochs=1, size=32,
                width=4, threads=1, format="tflite")
    student = Model(r.path)
    assert student.backend == "litert" and student.info.labels == r.labels
    assert student.info.source["distill"]["macs"] == r.macs
    spec = CascadeSpec.from_metadata(student.info, student.path)
    assert spec is not None and spec.labels == tuple(r.labels) and spec.input_size == (32, 32)
    assert student.predict(np.zeros((50, 80, 3), np.uint8)).label in r.labels


CAR_FRAMES = 100  # the lane is empty at frame 0 and has a car at 72 (test_watch's real-footage check)
WHOLE_FRAME = {"resize": "stretch", "input_size": (288, 512)}


@pytest.fixture(scope="module")
def car_student(mobilenet_v2_path, shared_data, tmp_path_factory):
    video = str(shared_data / "videos" / "car-detection.mp4")
    path = str(tmp_path_factory.mktemp("distill") / "car.onnx")
    result = distill(mobilenet_v2_path, video, path, classes=["car"], min_score=0.015, teacher_options=WHOLE_FRAME,
                     rule={"mode": "objects"}, max_frames=CAR_FRAMES, epochs=2, size=32, width=4, every=10,
                     threads=1, seed=0)
    return video, result


def test_a_watch_group_student_learns_the_cascades_question(car_student, mobilenet_v2_path):
    video, result = car_student
    assert result.labels == ["car", "other"]  # the group's name, then "other"
    assert result.train_crops["car"] > 0 and result.train_crops["other"] > 0
    meta = Model(result.path).info.source["distill"]
    spec = CascadeSpec.from_metadata(Model(result.path).info)
    assert spec is not None and spec.watch and spec.min_score == 0.015 and meta["watch"] == ["car"]
    assert spec.teacher_options() == {"resize": "stretch", "input_size": (288, 512)}
    assert meta["teacher_input"] == [288, 512] and spec.rule.mode == "objects"
    labels = Model(mobilenet_v2_path).info.labels
    assert set(spec.targets) == {"car"} and {labels[i] for i in spec.targets["car"]} >= {"cab", "sports car"}
    assert result.teacher_macs > 2.5 * Model(result.path).info.source["distill"]["macs"] * 20  # at 288x512


def test_watch_crops_are_the_cascades_rois(car_student, mobilenet_v2_path):
    """Every ROI the watching cascade cuts on these frames is a training crop, byte for byte, labelled
    with its target, and a frame without ROI gives none: the crops come from the watched map."""
    video, result = car_student
    teacher, student = Model(mobilenet_v2_path, **WHOLE_FRAME), Model(result.path)
    watch = WatchList.parse(["car"], teacher.info.labels)
    rule = BoxRule.for_model(teacher.info.cam, mode="objects")
    spec = crop_spec_for(student)
    frames = 80
    footage = collect(teacher, [video], 32, spec, pad_colour(MEAN), every=1, change=None, watch=watch,
                      min_score=0.015, rule=rule, rng=np.random.default_rng(0), jitter=0, stale=0, background=0,
                      max_frames=frames)
    cascade = Cascade(teacher, student, every=1, crop_spec=spec, watch=watch, min_score=0.015, rule=rule)
    got, with_roi = [], 0
    with open_source(video) as source:
        for frame, _ in zip(source, range(frames)):
            rois = cascade.process(frame.image).rois
            with_roi += bool(rois)
            got += [(r.crop.image, r.watch) for r in rois]
    assert 0 < with_roi < frames  # an empty lane at first, then a car
    assert len(got) == len(footage.crops) and (footage.kind == EXACT).all()
    for (image, name), want, target in zip(got, footage.crops, footage.crop_target):
        np.testing.assert_array_equal(image, want)
        assert name == "car" and target == 0
    # The frames' reference answer: the group at 0.015 or above, else none (-1).
    assert ((footage.target >= 0) == (footage.target_score >= 0.015)).all()


def test_evaluate_takes_the_watch_from_the_student(car_student, mobilenet_v2_path):
    video, result = car_student
    report = evaluate(video, mobilenet_v2_path, result.path, [(1, None), (10, None)], start=60, stop=CAR_FRAMES)
    assert report.watch == ["car"] and report.min_score == 0.015  # no flags: the student's metadata
    assert report.teacher_input == [288, 512] and report.teacher_resize == "stretch"
    assert set(report.reference_counts) <= {"car", "other"} and report.frames == 40
    every1, every10 = report.scores
    assert every1.teacher_runs == 40 and every10.teacher_runs == 4
    assert every10.speedup > 5 and report.teacher_macs > 800e6
    for sc in report.scores:
        assert 0 <= sc.agreement <= 1 and sc.confident_frames <= 40
        assert {a for row in sc.confusion.values() for a in row} <= {"car", "other"}
        assert sum(sum(row.values()) for row in sc.confusion.values()) == 40
    # an explicit watch list and teacher options win over the metadata
    w = watch_from_targets({"car": result.targets["car"]}, Model(mobilenet_v2_path).info.labels, 1000)
    other = evaluate(video, mobilenet_v2_path, result.path, [(10, None)], start=90, stop=CAR_FRAMES, classes=w,
                     min_score=0.5, teacher_options={"input_size": (224, 384)})
    assert other.min_score == 0.5 and other.teacher_input == [224, 384]


def test_an_int8_student(mobilenet_v2_path, bottle, tmp_path):
    """--quantize int8: ONNX Runtime's static QDQ, calibrated on the training crops; the student
    keeps its metadata and answers as the fp32 one does on nearly every crop."""
    import onnx
    path = str(tmp_path / "s8.onnx")
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # anything but the one thread distill trains on
    try:
        r = distill(mobilenet_v2_path, bottle, path, max_frames=40, epochs=1, size=32, width=4, threads=1,
                    quantize="int8")
        assert torch.get_num_threads() == 3  # the caller's own count, given back
    finally:
        torch.set_num_threads(before)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and not os.path.exists(path + ".fp32.onnx")
    held = r.int8["held_out"]
    assert held["images"] > 15 and held["top1_agreement"] >= 0.95 and held["cam_correlation_median"] is None
    student = Model(path)
    assert student.info.labels == r.labels and student.info.source["distill"]["macs"] == r.macs
    assert CascadeSpec.from_metadata(student.info) is not None  # written after quantising
    result = Cascade(Model(mobilenet_v2_path), student).process(next(iter(open_source(bottle))).image)
    assert result.rois and result.rois[0].student.label in r.labels
    with pytest.raises(EdgeCamError, match="int8 makes ONNX students"):
        distill(mobilenet_v2_path, bottle, str(tmp_path / "s8.tflite"), format="tflite", quantize="int8")


def test_the_command_line_distills_then_runs_and_judges_the_cascade(mobilenet_v2_path, bottle, tmp_path):
    """The README's quick start on real footage, as commands: distill, run with the student and no
    spec, eval --video (JSON and plot)."""
    import json
    import subprocess
    import sys

    student, events, report, plot = (str(tmp_path / n) for n in ("s.onnx", "e.jsonl", "r.json", "r.png"))

    def cli(*argv):
        proc = subprocess.run([sys.executable, "-m", "edge_cam", *argv], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr
        return proc

    out = cli("distill", "--teacher", mobilenet_v2_path, "--source", bottle, "-o", student, "--max-frames", "60",
              "--epochs", "1", "--size", "32", "--width", "4", "--threads", "1", "--fine").stdout
    assert "labels water bottle, other" in out and "fewer than the teacher" in out
    assert CascadeSpec.from_metadata(Model(student).info, student).motion == DISTILL_GATE  # the gate by default
    cli("run", "--teacher", mobilenet_v2_path, "--student", student, "--source", bottle, "--max-frames", "20",
        "--every", "10", "--events", events, "--quiet")
    lines = [json.loads(x) for x in open(events)]
    assert len(lines) == 20 and sum(e["teacher"]["ran"] for e in lines) == 2
    assert all(e["rois"] and e["rois"][0]["student"]["label"] in ("water bottle", "other") for e in lines)
    cli("eval", "--video", bottle, "--teacher", mobilenet_v2_path, "--student", student, "--every", "5", "20",
        "--start", "0.95", "--json", report, "--plot", plot)
    r = json.load(open(report))
    assert [s["every"] for s in r["scores"]] == [5, 20] and r["frames"] > 50
    assert all(0 <= s["agreement"] <= 1 and s["speedup"] > 1 for s in r["scores"])
    assert r["scores"][1]["teacher_runs"] < r["scores"][0]["teacher_runs"]
    assert os.path.getsize(plot) > 1000
