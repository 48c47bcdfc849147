"""The seeded script that makes the bundled default runs, and what it writes is usable."""
import json
import shutil
import subprocess
import sys

import pytest

from edge_cam.cascade import Cascade
from edge_cam.model import Model
from edge_cam.source import read_video


def _build(out, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_cam_export.demo", "--quick", "--out", str(out), *flags],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def built(built_once):
    """One quick build for both tests, whatever the workers (it takes half a minute)."""
    def make(folder):
        proc = _build(folder)
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return built_once("demo-quick", make)


def test_quick_demo_build_writes_models_and_a_clip_with_ground_truth(built):
    teacher, student = Model(built / "teacher.onnx"), Model(built / "student.onnx")
    assert teacher.has_cam and not student.has_cam and teacher.info.labels == student.info.labels
    truth = json.loads((built / "demo_clip.json").read_text())
    frames = read_video(str(built / "demo_clip.mp4"))
    assert len(frames) == len(truth["frames"]) > 0
    assert frames[0].shape[:2] == (truth["height"], truth["width"])
    for g in truth["frames"]:
        x1, y1, x2, y2 = g["box"]
        assert 0 <= x1 < x2 <= truth["width"] and 0 <= y1 < y2 <= truth["height"]
        assert 0 <= g["class_id"] < len(truth["labels"])
    result = Cascade(teacher, student).process(frames[0])
    assert result.rois and result.rois[0].student


def test_student_only_keeps_the_teacher_and_needs_one(built, tmp_path):
    assert _build(tmp_path / "empty", "--student-only").returncode != 0
    shutil.copytree(built, tmp_path, dirs_exist_ok=True)
    teacher = (tmp_path / "teacher.onnx").read_bytes()
    proc = _build(tmp_path, "--student-only")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "keeping the teacher" in proc.stdout and (tmp_path / "teacher.onnx").read_bytes() == teacher
    assert Model(tmp_path / "student.onnx").info.labels == Model(tmp_path / "teacher.onnx").info.labels
