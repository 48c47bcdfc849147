"""The runtime commands end to end, through the real console entry point, on real files."""
import json
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from timeouts import scaled

from edge_cam.cli import main


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "edge_cam", *map(str, args)], capture_output=True,
                          text=True, timeout=scaled(600), **kw)


def one_sentence(proc):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("edge-cam:")]
    return line


@pytest.fixture(scope="module")
def awkward_images(tmp_path_factory, demo_data):
    """A folder of every kind of image users throw at it, one of them corrupt."""
    d = tmp_path_factory.mktemp("images")
    cap = cv2.VideoCapture(demo_data("demo_clip.mp4"))
    frame = cap.read()[1]
    cap.release()
    cv2.imwrite(str(d / "a_colour.jpg"), frame)
    cv2.imwrite(str(d / "b_grey.png"), cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(d / "c_rgba.png"), cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(d / "d_deep.png"), frame.astype(np.uint16) * 257)
    cv2.imwrite(str(d / "e_tiny.png"), frame[:1, :1])
    cv2.imwrite(str(d / "f_huge.jpg"), cv2.resize(frame, (4000, 3000)))
    (d / "g_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 20)
    good = (d / "a_colour.jpg").read_bytes()
    (d / "h_truncated.jpg").write_bytes(good[:200])
    (d / "notes.txt").write_text("not an image, not listed")
    return d


def test_localize_goes_on_past_bad_images(teacher_path, awkward_images, tmp_path):
    out = tmp_path / "boxes.jsonl"
    proc = cli("localize", teacher_path, awkward_images, "--jsonl", out, "--overlays", tmp_path / "ov")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [p["image"].rsplit("/", 1)[1] for p in lines] == sorted(
        f.name for f in awkward_images.iterdir() if f.suffix != ".txt")
    errors = {p["image"].rsplit("/", 1)[1]: p["error"] for p in lines if "error" in p}
    assert "g_corrupt.jpg" in errors and "not a readable image" in errors["g_corrupt.jpg"]
    assert set(errors) == {"g_corrupt.jpg", "h_truncated.jpg"} and all(p.get("unreadable") for p in lines if "error" in p)
    assert f"2 of {len(lines)} images unreadable: " in proc.stderr and "gave no boxes" not in proc.stderr
    for p in lines:
        if "error" in p:
            continue
        assert p["topk"] and p["boxes"] and set(p["timing_ms"]) == {"preprocess", "model", "localize"}
        b = p["boxes"][0]
        assert 0 <= b["x1"] < b["x2"] <= p["width"] and 0 <= b["y1"] < b["y2"] <= p["height"]
        assert b["class_id"] == p["topk"][0]["class_id"]
    sizes = {p["image"].rsplit("/", 1)[1]: (p["width"], p["height"]) for p in lines if "error" not in p}
    assert sizes["e_tiny.png"] == (1, 1) and sizes["f_huge.jpg"] == (4000, 3000)
    assert len(list((tmp_path / "ov").iterdir())) == len(sizes)


def box_area(b):
    return (b["x2"] - b["x1"]) * (b["y2"] - b["y1"])


def test_localize_class_id_and_thresholds(teacher_path, awkward_images):
    proc = cli("localize", teacher_path, awkward_images / "a_colour.jpg", "--threshold", "0.5")
    first = json.loads(proc.stdout)
    second_class = first["topk"][1]["class_id"]
    proc = cli("localize", teacher_path, awkward_images / "a_colour.jpg", "--class-id", second_class)
    assert json.loads(proc.stdout)["boxes"][0]["class_id"] == second_class
    low = json.loads(cli("localize", teacher_path, awkward_images / "a_colour.jpg", "--threshold", "0.05").stdout)
    assert box_area(low["boxes"][0]) >= box_area(first["boxes"][0])
    proc = cli("localize", teacher_path, awkward_images / "a_colour.jpg", "--class-id", 999)
    assert proc.returncode == 0 and "999 is not a class of" in json.loads(proc.stdout)["error"]


def test_missing_inputs_exit_2(teacher_path, tmp_path):
    assert "does not exist" in one_sentence(cli("localize", teacher_path, tmp_path / "nope.jpg"))
    assert "does not exist" in one_sentence(cli("run", "--teacher", tmp_path / "t.onnx", "--source", "x.mp4"))
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"\x00" * 1000)
    assert "not a video" in one_sentence(cli("run", "--teacher", teacher_path, "--source", bad_video))
    assert "cannot be opened" in one_sentence(cli("run", "--teacher", teacher_path, "--source", "57"))


def write_clip(path, frames, fourcc="MJPG", fps=10):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()


def test_run_on_a_video_writes_every_event_and_an_annotated_video(teacher_path, student_path, demo_data, tmp_path):
    cap = cv2.VideoCapture(demo_data("demo_clip.mp4"))
    frames = [cap.read()[1] for _ in range(24)]
    cap.release()
    clip = tmp_path / "clip.avi"
    write_clip(clip, frames)
    events, video = tmp_path / "events.jsonl", tmp_path / "annotated.avi"
    proc = cli("run", "--teacher", teacher_path, "--student", student_path, "--source", clip, "--every", "4",
               "--events", events, "--video-out", video, "--mask", "mean")
    assert proc.returncode == 0, proc.stderr
    ev = [json.loads(x) for x in events.read_text().splitlines()]
    assert [e["frame"] for e in ev] == list(range(24))
    assert [e["teacher"]["ran"] for e in ev] == [i % 4 == 0 for i in range(24)]
    for e in ev:
        assert e["source"] == f"file:{clip}" and e["teacher"]["topk"]
        assert set(e["timing_ms"]) == {"read", "preprocess", "teacher", "localize", "crop", "student", "sink"}
        (roi,) = e["rois"]
        assert 0 <= roi["x1"] < roi["x2"] <= 320 and set(roi["student"]) == {"class_id", "label", "score"}
    out = cv2.VideoCapture(str(video))
    n = 0
    while out.read()[0]:
        n += 1
    assert n == 24
    assert "24 frames" in proc.stderr and "teacher ran on 6" in proc.stderr


def test_run_skips_corrupt_images_in_a_folder(teacher_path, awkward_images, tmp_path):
    events = tmp_path / "e.jsonl"
    proc = cli("run", "--teacher", teacher_path, "--source", awkward_images, "--events", events)
    assert proc.returncode == 0, proc.stderr
    # g_corrupt is garbage; h_truncated stops 200 bytes in, before any pixel data.
    assert len(events.read_text().splitlines()) == 6 and "2 unreadable frames skipped" in proc.stderr
    assert "g_corrupt.jpg" in proc.stderr and "h_truncated.jpg" in proc.stderr


def test_sigterm_flushes_the_sinks_and_exits_0(teacher_path, student_path, demo_data, tmp_path):
    events, video = tmp_path / "e.jsonl", tmp_path / "v.avi"
    proc = subprocess.Popen([sys.executable, "-m", "edge_cam", "run", "--teacher", teacher_path,
                             "--student", student_path, "--source", demo_data("demo_clip.mp4"),
                             "--events", events, "--video-out", video],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + scaled(60)
    while time.time() < deadline and (not events.exists() or len(events.read_text().splitlines()) < 5):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=scaled(60))
    assert proc.returncode == 0, err
    lines = events.read_text().splitlines()
    assert len(lines) >= 5 and all(json.loads(x)["frame"] == i for i, x in enumerate(lines))
    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n >= 5  # the video was finalised, not left without its index


def test_info_on_bundled_models(teacher_path, student_path):
    t = cli("info", teacher_path)
    assert t.returncode == 0 and "cams" in t.stdout and "CAM teacher" in t.stdout
    s = cli("info", student_path)
    assert s.returncode == 0 and "classifier (student)" in s.stdout and "cams" not in s.stdout


def test_version_through_the_console_entry_point():
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == "edge-cam 0.1.0"


# One argument or command in an argparse help page: 2 spaces (arguments) or 4 (commands), its
# name (an option's invocation, or a single word), then its help on the line or the next ones.
ENTRY = re.compile(r"^( {2}| {4})(-\S*(?: \S+)*|[\w{][^ ]*)(?: {2,}(\S.*))?$")


def help_entries(text):
    """{name: help} of every entry of a help page; help is "" where there is none."""
    lines = text.splitlines()
    out = {}
    for i, line in enumerate(lines):
        m = ENTRY.match(line)
        if m:
            follows = lines[i + 1] if i + 1 < len(lines) else ""
            out[m.group(2)] = m.group(3) or (follows.strip() if re.match(r"^ {6,}\S", follows) else "")
    return out


def help_page(capsys, *argv):
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def test_every_command_is_listed_with_a_help_line(capsys):
    entries = help_entries(help_page(capsys))
    (choices,) = [name for name in entries if name.startswith("{")]
    commands = choices.strip("{}").split(",")
    assert {"export", "info", "localize", "run", "eval", "calibrate", "bench", "demo"} <= set(commands)
    assert all(entries.get(c) for c in commands), {c: entries.get(c) for c in commands}
    assert entries["--version"]


@pytest.mark.parametrize("command", ["export", "info", "localize", "run", "eval", "calibrate", "bench", "demo"])
def test_every_flag_has_a_help_line(capsys, command):
    entries = help_entries(help_page(capsys, command))
    assert len(entries) > 1 and "-h, --help" in entries
    assert not [name for name, text in entries.items() if not text], entries


def test_torch_only_flags_are_refused_for_an_onnx_model_by_name(capsys):
    argv = ["export", "classifier.onnx", "-o", "cam.onnx", "--precision", "fp32", "--exporter", "dynamo"]
    assert main([*argv, "--weights", "w.pt", "--num-classes", "3", "--opset", "17", "--precision", "fp16"]) == 2
    assert capsys.readouterr().err == ("edge-cam: --weights, --num-classes, --opset, --precision apply to torch "
                                       "models only; an ONNX model's CAM layers are found in its graph.\n")
    assert main([*argv, "--list-layers"]) == 2  # flags left at their defaults above are not named
    assert "edge-cam: --list-layers applies to torch models only" in capsys.readouterr().err


RUN = ["run", "--teacher", "t.onnx", "--source", "x.mp4"]  # none of these exist: refused before


@pytest.mark.parametrize("argv,sentence", [
    ([*RUN, "--every", "0"], "--every must be 1 or more, not 0."),
    ([*RUN, "--change", "0"],
     "--change must be above 0 grey levels, not 0."),
    ([*RUN, "--pad", "-1"], "--pad must be "),
    ([*RUN, "--motion", "0"], "--motion must be above 0 and at most 1, not 0."),
    ([*RUN, "--motion", "0.01", "--motion-every", "0"], "--motion-every must be 1 or more, not 0."),
    ([*RUN, "--motion-every", "3"], "--motion-every needs --motion FRACTION (the motion gate it paces)."),
    ([*RUN, "--student-spec", "{}"],
     "--student-spec describes the --student model; give --student too."),
    ([*RUN, "--video-out", "v.jsonl"],
     "--video-out takes a video file (.avi, .m4v, .mkv, .mov, .mp4), not v.jsonl."),
    ([*RUN, "--events", "mqtt://broker"],
     "--events takes - or a JSON lines file, not mqtt://broker."),
    ([*RUN, "--alarm", "0.8"],
     "--alarm watches the student's agreement with the teacher; give a --student."),
    ([*RUN, "--student", "s.onnx", "--alarm", "1.5"],
     "--alarm must be above 0 and at most 1, not 1.5."),
    ([*RUN, "--collect", "kept"],
     "--collect watches the student's agreement with the teacher; give a --student."),
    ([*RUN, "--collect-budget", "0"],
     "--collect-budget must be above 0 MB, not 0."),
    ([*RUN, "--agreement-window", "0"],
     "--agreement-window must be 1 or more, not 0."),
    (["bench", "--frames", "0"], "--frames must be 1 or more, not 0."),
    (["bench", "--every", "0"], "--every must be 1 or more, not 0."),
    (["demo", "--every", "-2"], "--every must be 1 or more, not -2."),
])
def test_bad_numbers_and_outputs_are_named_by_their_flag(capsys, argv, sentence):
    assert main(argv) == 2  # before any model is opened: t.onnx does not exist
    err = capsys.readouterr().err
    assert err.startswith(f"edge-cam: {sentence}") and err.count("\n") == 1, err


def test_box_rule_numbers_are_checked(capsys, teacher_path, awkward_images):
    image = str(awkward_images / "a_colour.jpg")
    assert main(["localize", teacher_path, image, "--threshold", "2"]) == 2
    assert capsys.readouterr().err.startswith("edge-cam: --threshold is a fraction of the map's range")
    assert main(["localize", teacher_path, image, "--fuse-top", "0"]) == 2
    assert capsys.readouterr().err == "edge-cam: --fuse-top must be 1 or more, not 0.\n"
