"""Cascade evaluation against the teacher on every frame: MACs from the graph, the label space,
and an end-to-end run on the bundled clip (torch-free)."""
import json
import math
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from edge_cam.agreement import Referee
from edge_cam.localize import BoxRule
from edge_cam.measure import cascade_eval
from edge_cam.measure.cascade_eval import (
    answer_label,
    confident,
    evaluate,
    make_rule,
    model_macs,
    onnx_macs,
    plot,
    reference,
    target_map,
    to_markdown,
    watch_answer,
    watch_from_targets,
)
from edge_cam.metadata import InputSpec, ModelInfo, rewrite_metadata
from edge_cam.model import Model
from edge_cam.watch import WatchList

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
    distilled = ModelInfo(input=InputSpec((64, 64)), labels=["car", "other"], source={"distill": {"targets": {"car": [0, 1]}}})
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


LABELS = ["cab", "jeep", "geyser", "water bottle"]


def logits_for(p):
    """Logits whose softmax is p (up to a constant)."""
    return np.log(np.asarray(p, np.float64))


def test_confidence_without_and_with_a_watch_list():
    assert confident(np.array([0.5, 0.49, 0.9])).tolist() == [True, False, True]  # top-1 ≥ 0.5
    # With a watch list: far from the min score, a factor 2 either way.
    p = np.array([0.03, 0.0299, 0.0075, 0.0074, 0.3, 0.015])
    assert confident(p, 0.015).tolist() == [True, False, False, True, True, False]


def test_the_watch_reference_is_the_best_target_at_min_score():
    watch = watch_from_targets({"car": [0, 1], "water bottle": [3]}, LABELS, 4)
    assert watch.names == ["car", "water bottle"]
    assert watch_answer(watch, logits_for([0.1, 0.15, 0.7, 0.05]), 0.2) == ("car", pytest.approx(0.25))
    assert watch_answer(watch, logits_for([0.05, 0.05, 0.5, 0.4]), 0.2) == ("water bottle", pytest.approx(0.4))
    name, p = watch_answer(watch, logits_for([0.05, 0.05, 0.85, 0.05]), 0.2, other="rest")
    assert name == "rest" and p == pytest.approx(0.1)  # the best target is under min score


def test_a_watch_list_from_stored_targets_is_the_parsed_one():
    parsed = WatchList.parse(["cab", 3], LABELS)
    rebuilt = watch_from_targets({t.name: list(t.class_ids) for t in parsed.targets}, LABELS, 4)
    z = logits_for([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(rebuilt.scores(z), parsed.scores(z))
    assert rebuilt.class_ids.tolist() == parsed.class_ids.tolist() == [0, 3]


def test_reference_with_a_fake_teacher(monkeypatch):
    frames = [np.zeros((4, 4, 3), np.uint8)] * 4
    probs = [[0.1, 0.1, 0.8, 0.0], [0.005, 0.001, 0.99, 0.004], [0.01, 0.01, 0.97, 0.01], [0.6, 0.3, 0.05, 0.05]]
    asked = []

    class Teacher:
        def predict(self, image, classes=None):
            asked.append(None if classes is None else list(classes))
            p = probs[len(asked) - 1]
            return SimpleNamespace(logits=logits_for(np.maximum(p, 1e-9)), class_id=int(np.argmax(p)),
                                   score=float(max(p)))

    monkeypatch.setattr(cascade_eval, "_frames", lambda video, start, stop: iter(frames))
    watch = watch_from_targets({"car": [0, 1]}, LABELS, 4)
    ref = reference(Teacher(), "v.mp4", Referee({"car": [0, 1]}, LABELS, 4, watch=watch, min_score=0.015))
    assert asked == [[0, 1]] * 4  # the teacher is asked for the watched classes' maps
    assert ref.labels == ["car", "other", "car", "car"]
    np.testing.assert_allclose(ref.scores, [0.2, 0.006, 0.02, 0.9], atol=1e-6)
    assert confident(ref.scores, 0.015).tolist() == [True, True, False, True]
    asked.clear()
    # No watch list: the mapped top-1, with the probability of the student's label (its classes'
    # sum; for "other", all but the student's classes).
    top1 = reference(Teacher(), "v.mp4", Referee({"geyser": [2], "cab": [0]}, LABELS, 4))
    assert top1.labels == ["geyser", "geyser", "geyser", "cab"] and asked == [None] * 4
    np.testing.assert_allclose(top1.scores, [0.8, 0.99, 0.97, 0.6], atol=1e-6)
    asked.clear()
    other = reference(Teacher(), "v.mp4", Referee({"cab": [0]}, LABELS, 4))  # the geyser is not the student's
    assert other.labels == ["other", "other", "other", "cab"]
    np.testing.assert_allclose(other.scores, [0.9, 0.995, 0.99, 0.6], atol=1e-6)


def test_the_box_rule_stored_and_overridden(teacher_path):
    teacher = Model(teacher_path)
    stored = BoxRule(0.3, "objects", 0.02)  # a distilled student's (its CascadeSpec)
    assert make_rule(teacher, stored, None) == BoxRule(0.3, "objects", 0.02)
    assert make_rule(teacher, stored, {"mode": "largest", "threshold": None}).mode == "largest"
    assert make_rule(teacher, None, None) == BoxRule.for_model(teacher.info.cam)
    mine = BoxRule(0.5)
    assert make_rule(teacher, stored, mine) is mine
