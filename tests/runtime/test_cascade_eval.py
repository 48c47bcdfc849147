"""Cascade evaluation against the teacher on every frame: MACs from the graph, the label space,
and an end-to-end run on the bundled clip (torch-free)."""
import json
import math
import sys
from types import SimpleNamespace

import pytest

from edge_cam.metadata import ModelInfo, rewrite_metadata
from edge_cam.model import Model
from edge_cam.tools.cascade_eval import answer_label, evaluate, model_macs, onnx_macs, plot, target_map, to_markdown

onnx = pytest.importorskip("onnx", reason="MACs are counted with the onnx package (the onnx extra)")


def test_macs_of_the_demo_student_by_hand(student_path, teacher_path):
    # 32x32 → conv 3→16 (s1), 16→32, 32→64, 64→64 (s2, s2, s2), all 3x3 → GAP → Linear 64→10
    by_hand = 16 * 27 * 32 * 32 + 32 * 144 * 16 * 16 + 64 * 288 * 8 * 8 + 64 * 576 * 4 * 4 + 64 * 10
    assert onnx_macs(student_path) == by_hand
    assert onnx_macs(teacher_path) > 20 * by_hand


def test_macs_unknown_without_onnx_or_for_tflite(student_path, monkeypatch):
    assert onnx_macs("model.tflite") is None
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    assert onnx_macs(student_path) is None


def test_metadata_macs_win(student_path, tmp_path):
    source = {**Model(student_path).info.source, "role": "student", "distill": {"macs": 1234}}
    path = str(tmp_path / "s.onnx")
    rewrite_metadata(student_path, path, {"edge_cam.source": json.dumps(source)})
    assert model_macs(Model(path)) == 1234


def test_label_space():
    teacher = ModelInfo(input=None, labels=["cab", "jeep", "geyser", "water bottle"])
    distilled = ModelInfo(input=None, labels=["car", "other"], source={"distill": {"targets": {"car": [0, 1]}}})
    to_student = target_map(teacher, distilled)
    assert [to_student(i) for i in range(4)] == ["car", "car", "other", "other"]
    foreign = ModelInfo(input=None, labels=["water bottle", "cab"])  # no distill metadata: by name
    to_student = target_map(teacher, foreign)
    assert [to_student(i) for i in range(4)] == ["cab", "other", "other", "water bottle"]


def test_answer_label_takes_dicts_and_verdicts():
    assert answer_label({"class_id": 1, "label": "car", "score": 0.9}) == "car"
    assert answer_label(SimpleNamespace(class_id=1, label="car", score=0.9)) == "car"


def test_evaluate_on_the_demo_clip(teacher_path, student_path, demo_data, tmp_path):
    clip = demo_data("demo_clip.mp4")
    report = evaluate(clip, teacher_path, student_path, [(1, None), (10, None), (60, 12.0)], start=20, stop=80)
    assert report.frames == 60 and report.start == 20
    one, ten, changed = report.scores
    assert one.teacher_runs == 60 and ten.teacher_runs == 6 and 1 <= changed.teacher_runs < 60
    assert one.student_runs >= 55  # one ROI per frame, barring a frame without a box
    t, s = report.teacher_macs, report.student_macs
    assert one.macs_per_frame == pytest.approx((60 * t + one.student_runs * s) / 60)
    assert one.speedup < 1 < 5 < ten.speedup
    for sc in report.scores:
        assert 0 <= sc.agreement <= 1 and sc.confident_frames <= 60
        assert sum(sum(row.values()) for row in sc.confusion.values()) == 60
        assert not math.isnan(sc.fps)
    # The demo student names the same ten glyphs as the teacher: on the clip it agrees mostly.
    assert one.agreement > 0.8
    text = to_markdown(report)
    assert text.count("\n| ") == 1 + len(report.scores) and "demo_clip.mp4" in text
    plot({"demo": report}, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_start_as_a_fraction(teacher_path, student_path, demo_data):
    seen = []
    report = evaluate(demo_data("demo_clip.mp4"), teacher_path, student_path, [(30, None)], start=0.9,
                      progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert report.start == 540 and report.frames == 60
    assert seen[-1] == ("cascade every 30", 60, 60) and ("teacher on every frame", 60, 60) in seen
