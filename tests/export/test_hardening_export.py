"""Hardening, round two, on the workstation side (torch): distill never writes over its inputs nor
under a wrong name, checks its output before any work and leaves no partial file; a signal stops
distill and export with a sentence and 128 + the signal, never exit 0 (docs/fault-matrix.md)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from edge_cam.errors import EdgeCamError
from edge_cam.tools.demo import data_path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "runtime"))
from faults import one_sentence, read_only_folder  # the runtime tests' helpers
from in_process import edge_cam as cli  # refusals in this process; signals below in real ones


@pytest.fixture
def teacher(tmp_path):
    """A copy of the bundled teacher, which tests may try to overwrite."""
    path = tmp_path / "t.onnx"
    path.write_bytes(open(data_path("teacher.onnx"), "rb").read())
    return path


@pytest.fixture(scope="module")
def bottle(shared_data):
    return shared_data / "videos" / "bottle-detection.mp4"


def distill_args(teacher, source, out, *extra):
    return ("distill", "--teacher", teacher, "--source", source, "--max-frames", 30, "--epochs", 1, "--size", 16,
            "--width", 2, "--threads", 1, "-o", out, *extra)


def test_distill_refuses_to_write_over_its_teacher_by_any_name(teacher, bottle, tmp_path):
    before = teacher.read_bytes()
    (tmp_path / "link.onnx").symlink_to(teacher)
    os.link(teacher, tmp_path / "hard.onnx")
    for out in (teacher, tmp_path / "link.onnx", tmp_path / "hard.onnx", tmp_path / "sub" / ".." / "t.onnx"):
        line = one_sentence(cli(*distill_args(teacher, bottle, out)))
        assert "which writing there would destroy" in line and str(teacher) in line, line
    # through a link given as the teacher, too
    assert "would destroy" in one_sentence(cli(*distill_args(tmp_path / "link.onnx", bottle, teacher)))
    assert teacher.read_bytes() == before


def test_distill_refuses_to_write_over_its_footage(teacher, bottle, tmp_path):
    clip = tmp_path / "clip.onnx"  # a video named .onnx: an input all the same
    clip.write_bytes(bottle.read_bytes())
    assert "would destroy" in one_sentence(cli(*distill_args(teacher, clip, clip)))


def test_distill_checks_its_output_before_any_work(teacher, bottle, tmp_path):
    (tmp_path / "folder.onnx").mkdir()
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cases = {tmp_path / "folder.onnx": "it is a folder; give a file name",
             blocker / "s.onnx": "is a file, not a folder",
             tmp_path / "x.txt": "a student in the onnx format is written to a .onnx file",
             tmp_path / "s.tflite.bak": "a student in the onnx format is written to a .onnx file"}
    for out, expected in cases.items():
        proc = cli(*distill_args(teacher, bottle, out))
        assert expected in one_sentence(proc), proc.stderr
        assert "teacher on" not in proc.stderr  # refused before the teacher's pass
    line = one_sentence(cli(*distill_args(teacher, bottle, tmp_path / "s.onnx", "--format", "tflite")))
    assert "a student in the tflite format is written to a .tflite file" in line
    assert sorted(os.listdir(tmp_path)) == ["a_file", "folder.onnx", "t.onnx"]  # no .part, nothing else


def test_distill_into_a_read_only_folder_is_refused_before_any_work(teacher, bottle, tmp_path):
    with read_only_folder(tmp_path / "ro") as ro:
        if ro is None:
            pytest.skip("no read-only folder can be made here")
        proc = cli(*distill_args(teacher, bottle, ro / "s.onnx"))
        line = one_sentence(proc)
        assert "Read-only file system" in line or "Permission denied" in line
        assert "--exporter" not in line and "teacher on" not in proc.stderr


def test_the_library_checks_too(teacher, bottle, tmp_path):
    from edge_cam_export.distill.student import distill
    with pytest.raises(EdgeCamError, match="would destroy"):
        distill(str(teacher), [str(bottle)], str(teacher))
    with pytest.raises(EdgeCamError, match=r"written to a \.tflite file"):
        distill(str(teacher), [str(bottle)], str(tmp_path / "s.onnx"), format="tflite")


def _interrupt(args, sig, when: str, cwd=None) -> tuple[int, str]:
    """Run edge-cam, send `sig` once a stderr line contains `when`; (exit status, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "edge_cam", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if when in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert seen.wait(600), "".join(lines)
        proc.send_signal(sig)
        proc.wait(120)
    finally:
        proc.kill()
    reader.join(10)
    return proc.returncode, "".join(lines)


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_distill_is_not_success(sig, status, teacher, bottle, tmp_path):
    """`distill ... && deploy` must not ship the old student: interrupted during training, distill
    exits 128 + the signal, says so, and leaves the old file as it was and no partial one."""
    out = tmp_path / "student.onnx"
    out.write_bytes(b"the old student")
    code, err = _interrupt(("distill", "--teacher", teacher, "--source", bottle, "--max-frames", 200,
                            "--epochs", 500, "--threads", 1, "-o", out), sig, "training crops of")
    assert code == status, err
    assert (f"edge-cam: interrupted by {sig.name}: distill stopped before it finished; {out} was left as it was."
            in err), err
    assert "Traceback" not in err and out.read_bytes() == b"the old student"
    assert sorted(os.listdir(tmp_path)) == ["student.onnx", "t.onnx"]


def test_a_signal_during_export_is_not_success(shared_data, tmp_path):
    out = tmp_path / "m.onnx"
    code, err = _interrupt(("export", "torchvision:mobilenet_v2", "--weights",
                            shared_data / "models" / "mobilenet_v2_imagenet.pt", "-o", out), signal.SIGINT,
                           "exporting to ONNX")
    assert code == 130, err
    assert f"edge-cam: interrupted by SIGINT: export stopped before it finished; nothing was written to {out}." in err
    assert os.listdir(tmp_path) == []  # no .tmp.onnx, no .part
