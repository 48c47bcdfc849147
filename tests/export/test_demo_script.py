"""The seeded script that makes the bundled default runs, and what it writes is usable."""
import json
import subprocess
import sys

from edge_cam.cascade import Cascade
from edge_cam.model import Model
from edge_cam.source import read_video


def test_quick_demo_build_writes_models_and_a_clip_with_ground_truth(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edge_cam_export.demo", "--quick", "--out", tmp_path],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    teacher, student = Model(tmp_path / "teacher.onnx"), Model(tmp_path / "student.onnx")
    assert teacher.has_cam and not student.has_cam and teacher.info.labels == student.info.labels
    truth = json.loads((tmp_path / "demo_clip.json").read_text())
    frames = read_video(str(tmp_path / "demo_clip.mp4"))
    assert len(frames) == len(truth["frames"]) > 0
    assert frames[0].shape[:2] == (truth["height"], truth["width"])
    for g in truth["frames"]:
        x1, y1, x2, y2 = g["box"]
        assert 0 <= x1 < x2 <= truth["width"] and 0 <= y1 < y2 <= truth["height"]
        assert 0 <= g["class_id"] < len(truth["labels"])
    result = Cascade(teacher, student).process(frames[0])
    assert result.rois and result.rois[0].student


def test_student_only_keeps_the_teacher_and_needs_one(tmp_path):
    build = [sys.executable, "-m", "edge_cam_export.demo", "--quick", "--out", tmp_path]
    assert subprocess.run(build + ["--student-only"], capture_output=True, text=True, timeout=300).returncode != 0
    assert subprocess.run(build, capture_output=True, timeout=300).returncode == 0
    teacher = (tmp_path / "teacher.onnx").read_bytes()
    proc = subprocess.run(build + ["--student-only"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "keeping the teacher" in proc.stdout and (tmp_path / "teacher.onnx").read_bytes() == teacher
    assert Model(tmp_path / "student.onnx").info.labels == Model(tmp_path / "teacher.onnx").info.labels
