"""The fault matrix (issue 12): every bad input or failing output ends in a sentence or a counted
skip, with nothing lost and nothing leaked. Real files, real file systems, real subprocesses."""
from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
from faults import EVIL_NAME, mounted_tmpfs, one_sentence, read_only_folder, write_corpus
from mjpeg_server import Camera

from edge_cam.cascade import Cascade
from edge_cam.errors import EdgeCamError
from edge_cam.model import Model
from edge_cam.source import Source, open_source, parse_source, read_image
from edge_cam.stream import RUN_ID, StreamStats, run, stream


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "edge_cam", *map(str, args)], capture_output=True,
                          text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def frame(demo_data):
    cap = cv2.VideoCapture(demo_data("demo_clip.mp4"))
    ok, image = cap.read()
    cap.release()
    assert ok
    return image


@pytest.fixture(scope="module")
def teacher(teacher_path):
    return Model(teacher_path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, frame):
    folder = tmp_path_factory.mktemp("corpus")
    bad, good = write_corpus(folder, frame)
    return folder, bad, good


# -- bad images -----------------------------------------------------------------------------------

def test_read_image_refuses_each_bad_file_with_a_sentence(corpus):
    folder, bad, good = corpus
    for name in bad:
        with pytest.raises(EdgeCamError, match="is not a readable image") as e:
            read_image(str(folder / name))
        assert "\n" not in str(e.value).replace(EVIL_NAME, "")
    with pytest.raises(EdgeCamError, match="CV_IO_MAX_IMAGE_PIXELS|pixels"):
        read_image(str(folder / "a_forged_50000x50000.png"))  # cv2.error, not a crash
    for name, shape in good.items():
        image = read_image(str(folder / name))
        assert image.shape == shape, name
    assert read_image(str(folder / "d_16bit.png")).dtype == np.uint16


def test_run_over_a_folder_skips_counts_and_logs_each_bad_image_once(corpus, teacher, tmp_path, caplog):
    folder, bad, good = corpus
    caplog.set_level(logging.WARNING, "edge_cam")
    stats = StreamStats()
    with open_source(str(folder)) as source:
        names = [r.frame for r in stream(Cascade(teacher), [source], stats=stats)]
    assert len(names) == len(good) and stats.skipped == len(bad)
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped frame")]
    assert len(skipped) == len(bad)
    for name in bad:
        assert sum(ascii(str(folder / name)) in line for line in skipped) == 1, name
    assert all("\n" not in line and "\x1b" not in line for line in skipped)  # no log injection


def test_cli_run_over_the_corpus_goes_on_to_the_later_good_images(corpus, teacher_path, tmp_path):
    folder, bad, good = corpus
    events = tmp_path / "e.jsonl"
    proc = cli("run", "--teacher", teacher_path, "--source", folder, "--events", events)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "\x1b" not in proc.stderr
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    assert len(lines) == len(good) and f"{len(bad)} unreadable frames skipped" in proc.stderr
    # Frames are numbered in file order, bad ones included: the last event is the last (good) file.
    assert lines[-1]["frame"] == len(good) + len(bad) - 1
    for name in bad:
        assert proc.stderr.count(ascii(str(folder / name))) == 1, name
    assert "FAKE LOG LINE" not in "".join(x for x in proc.stderr.splitlines() if not x.startswith("skipped"))


# -- credentials ------------------------------------------------------------------------------------

def test_credentials_are_masked_in_source_names():
    assert parse_source("rtsp://admin:s3cret@10.0.0.5:554/live").name == "rtsp://admin:***@10.0.0.5:554/live"
    assert parse_source("http://admin:pw@cam.local/video.mjpg").name == "http://admin:***@cam.local/video.mjpg"
    assert parse_source("http://token@cam.local/v.mjpg").name == "http://***@cam.local/v.mjpg"
    assert parse_source("rtsp://10.0.0.5/live").name == "rtsp://10.0.0.5/live"


def test_basic_auth_camera_is_reached_and_events_and_logs_show_no_password(frame, teacher, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    cam = Camera([frame] * 5, fps=60, auth=("admin", "pa:ss w0rd"))
    secret_url = cam.url.replace("http://", "http://admin:pa%3Ass%20w0rd@")
    try:
        with pytest.raises(EdgeCamError) as refused:  # without credentials: 401, a sentence
            Source(cam.url)
        assert "401" in str(refused.value)
        with pytest.raises(EdgeCamError) as wrong:
            Source(cam.url.replace("http://", "http://admin:wrong@"))
        assert "wrong" not in str(wrong.value) and "admin:***@" in str(wrong.value)
        from edge_cam.sinks import JsonlSink
        events = tmp_path / "e.jsonl"
        stats = run(Cascade(teacher), [Source(secret_url)], [JsonlSink(str(events))], max_frames=6, status=None)
    finally:
        cam.close()
    # FFmpeg sends a connection's first request without credentials and answers the camera's
    # challenge (as browsers do), so the camera counts refusals beyond the two made above.
    assert stats.frames == 6 and cam.refused >= 2
    ev = [json.loads(x) for x in events.read_text().splitlines()]
    assert {e["source"] for e in ev} == {f"http://admin:***@127.0.0.1:{cam.port}/stream.mjpg"}
    text = events.read_text() + caplog.text + str(refused.value) + str(wrong.value)
    assert "pa:ss" not in text and "w0rd" not in text and "pa%3Ass" not in text


# -- run id -------------------------------------------------------------------------------------------

def test_every_event_of_a_run_carries_its_run_id(corpus, teacher):
    folder, _, good = corpus
    assert re.fullmatch(r"[0-9a-f]{32}", RUN_ID)
    with open_source(str(folder)) as source:
        events = [r.to_event() for r in stream(Cascade(teacher), [source])]
    assert len(events) == len(good) and {e["run"] for e in events} == {RUN_ID}
    with open_source(str(folder)) as source:
        assert {r.run for r in stream(Cascade(teacher), [source], run_id="replay-1")} == {"replay-1"}


def test_two_runs_have_different_ids_though_their_frames_repeat(teacher_path, frame, tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), frame)
    runs = []
    for i in range(2):
        events = tmp_path / f"e{i}.jsonl"
        proc = cli("run", "--teacher", teacher_path, "--source", tmp_path / "a.jpg", "--events", events, "--quiet")
        assert proc.returncode == 0, proc.stderr
        (event,) = [json.loads(x) for x in events.read_text().splitlines()]
        runs.append((event["run"], event["source"], event["frame"]))
    assert runs[0][1:] == runs[1][1:] and runs[0][0] != runs[1][0]


# -- full disks and outputs that cannot be written -------------------------------------------------

def fake_result(i: int):
    from edge_cam.cascade import FrameResult
    return FrameResult(frame=i, ts=1732467000.0 + i, source="file:x.mp4", teacher_ran=True, teacher=None,
                       heat=None, timing_ms={"read": 0.5}, run="r")


def test_events_on_dev_full_end_with_a_sentence():
    from edge_cam.sinks import JsonlSink
    sink = JsonlSink("/dev/full")  # every write: ENOSPC, a real disk-full error
    with pytest.raises(EdgeCamError, match=r"/dev/full \(the disk is full\): stopped after 0 events"):
        sink.write(fake_result(0))
    sink.close()


def test_events_on_a_disk_that_fills_keep_whole_lines_and_say_how_many(tmp_path):
    from edge_cam.sinks import JsonlSink
    with mounted_tmpfs(tmp_path / "small", "64k") as disk:
        if disk is None:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        sink = JsonlSink(str(disk / "events.jsonl"))
        with pytest.raises(EdgeCamError) as e:
            for i in range(100000):
                sink.write(fake_result(i))
        sink.close()
        text = (disk / "events.jsonl").read_text()
    n = int(re.search(r"stopped after (\d+) events", str(e.value)).group(1))
    assert "the disk is full" in str(e.value) and n > 100
    assert text.endswith("\n") and [json.loads(x)["frame"] for x in text.splitlines()] == list(range(n))


def count_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


@pytest.mark.parametrize("ext", [".avi", ".mp4"])
def test_video_on_a_disk_that_fills_is_finalised_and_says_how_many_frames(tmp_path, frame, ext):
    from edge_cam.sinks import VideoSink
    noisy = np.random.default_rng(0).integers(0, 256, frame.shape, np.uint8)  # compresses badly: fills fast
    with mounted_tmpfs(tmp_path / "small", "3m") as disk:
        if disk is None:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        sink = VideoSink(str(disk / f"v{ext}"), fps=10)
        with pytest.raises(EdgeCamError) as e:
            for i in range(2000):
                r = fake_result(i)
                r.image = noisy if i % 2 else frame
                sink.write(r)
        sink.close()
        n = int(re.search(r"stopped after (\d+) frames of video", str(e.value)).group(1))
        assert n > 5 and "is full" in str(e.value)
        assert count_frames(disk / f"v{ext}") == n  # playable, every frame it says


def test_outputs_that_cannot_be_written_are_refused_at_open(tmp_path):
    from edge_cam.sinks import check_writable, open_sink
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for uri in ("events.jsonl", "out.avi", "out.mp4"):
        with pytest.raises(EdgeCamError, match=f"{blocker} is a file, not a folder"):
            open_sink(str(blocker / "sub" / uri))
    for uri in ("x.avi", "e.jsonl"):
        (tmp_path / uri).mkdir()
        with pytest.raises(EdgeCamError, match="is a folder|Is a directory"):
            open_sink(str(tmp_path / uri))
    with pytest.raises(EdgeCamError, match="it is a file, not a folder"):
        check_writable(str(blocker), "overlays", folder=True)
    with read_only_folder(tmp_path / "ro") as ro:
        if ro is None:
            pytest.skip("no read-only folder can be made here")
        for uri in ("events.jsonl", "out.avi", "sub/out.mp4"):
            with pytest.raises(EdgeCamError, match="Read-only file system|Permission denied") as e:
                open_sink(str(ro / uri))
            assert str(ro) in str(e.value)
        with pytest.raises(EdgeCamError, match="Read-only file system|Permission denied"):
            check_writable(str(ro / "overlays"), "overlays", folder=True)
    check_writable(str(tmp_path / "new" / "deeper"), "overlays", folder=True)  # made, as writing would
    assert (tmp_path / "new" / "deeper").is_dir() and not list((tmp_path / "new" / "deeper").iterdir())


def test_cli_run_on_a_full_disk_exits_2_with_whole_lines(tmp_path, teacher_path, student_path, demo_data):
    with mounted_tmpfs(tmp_path / "small", "256k") as disk:
        if disk is None:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        events = disk / "e.jsonl"
        proc = cli("run", "--teacher", teacher_path, "--student", student_path, "--source",
                   demo_data("demo_clip.mp4"), "--loop", "--max-frames", 3000, "--events", events, "--quiet")
        line = one_sentence(proc)
        n = int(re.search(r"stopped after (\d+) events", line).group(1))
        assert [json.loads(x)["frame"] for x in events.read_text().splitlines()] == list(range(n))
    with mounted_tmpfs(tmp_path / "small2", "1m") as disk:
        video = disk / "v.avi"
        proc = cli("run", "--teacher", teacher_path, "--source", demo_data("demo_clip.mp4"), "--loop",
                   "--max-frames", 3000, "--video-out", video, "--quiet")
        line = one_sentence(proc)
        n = int(re.search(r"stopped after (\d+) frames of video", line).group(1))
        assert n > 10 and count_frames(video) == n


# -- inconsistent metadata -------------------------------------------------------------------------

def broken(teacher, key: str, **changes) -> dict:
    props = teacher.info.to_props()
    d = json.loads(props["edge_cam." + key]) if key != "labels" else None
    props["edge_cam." + key] = json.dumps(changes["value"] if d is None else {**d, **changes})
    return props


@pytest.mark.parametrize("key,changes,field", [
    ("input", {"size": [0, -5]}, "input size"),
    ("input", {"color": "YUV"}, "input color"),
    ("input", {"std": [0.2, 0.0, 0.2]}, "input std"),
    ("input", {"mean": [0.5, 0.5]}, "input mean"),
    ("cam", {"box_mode": "biggest"}, "cam box_mode"),
    ("cam", {"threshold": 2}, "cam threshold"),
    ("cam", {"threshold": float("nan")}, "cam threshold"),
    ("cam", {"min_area": -1}, "cam min_area"),
    ("cam", {"fuse_top": 0}, "cam fuse_top"),
    ("cam", {"method": "gradcam++"}, "cam method"),
])
def test_metadata_that_cannot_work_is_one_sentence_naming_the_field(teacher, key, changes, field):
    from edge_cam.metadata import ModelInfo
    with pytest.raises(EdgeCamError, match=f"m.onnx has edge_cam.{field} .*re-export") as e:
        ModelInfo.from_props(broken(teacher, key, **changes), "m.onnx")
    assert "\n" not in str(e.value)


def test_metadata_against_the_graph(teacher):
    from edge_cam.metadata import ModelInfo, check_graph
    info = teacher.info
    h, w = info.input.size
    check_graph(info, ["batch", h, w, 3], len(info.labels), "m.onnx")  # consistent
    check_graph(info, [None, None, None, 3], None, "m.onnx")  # dynamic: nothing to compare
    with pytest.raises(EdgeCamError, match=rf"edge_cam.input size \[{h}, {w}\], but its graph takes 96x96"):
        check_graph(info, [1, 96, 96, 3], len(info.labels), "m.onnx")
    two = ModelInfo.from_props(broken(teacher, "labels", value=["a", "b"]), "m.onnx")
    with pytest.raises(EdgeCamError, match="m.onnx has 2 edge_cam.labels for 10 classes"):
        check_graph(two, [1, h, w, 3], 10, "m.onnx")
    check_graph(ModelInfo.from_props(broken(teacher, "labels", value=[]), "m.onnx"), [1, h, w, 3], 10)


def test_cli_refuses_a_model_with_broken_metadata_with_exit_2(teacher, teacher_path, frame, tmp_path):
    from edge_cam.metadata import rewrite_metadata
    bad = tmp_path / "bad.onnx"
    rewrite_metadata(teacher_path, str(bad), {"edge_cam.input": broken(teacher, "input", size=[0, -5])["edge_cam.input"]})
    cv2.imwrite(str(tmp_path / "a.jpg"), frame)
    for args in (("info", bad), ("localize", bad, tmp_path / "a.jpg")):
        assert "edge_cam.input size [0, -5]" in one_sentence(cli(*args))


# -- command-line validation (real subprocesses) ---------------------------------------------------

@pytest.fixture(scope="module")
def one_image(tmp_path_factory, frame):
    path = tmp_path_factory.mktemp("one") / "a.jpg"
    cv2.imwrite(str(path), frame)
    return path


@pytest.mark.parametrize("flags,named", [
    (["--threshold", "2"], "--threshold"), (["--threshold", "nan"], "--threshold"),
    (["--threshold", "-1"], "--threshold"), (["--threshold", "0"], "--threshold"),
    (["--pad", "0"], "--pad"), (["--pad", "-1"], "--pad"), (["--pad", "1e9"], "--pad"), (["--pad", "nan"], "--pad"),
    (["--pad", "inf"], "--pad"),
    (["--threads", "-1"], "--threads"), (["--threads", "100000"], "--threads"),
    (["--student-threads", "100000"], "--student-threads"),
    (["--max-frames", "-1"], "--max-frames"),
    (["--min-area", "-1"], "--min-area"), (["--min-area", "2"], "--min-area"), (["--min-area", "nan"], "--min-area"),
    (["--fuse-top", "0"], "--fuse-top"), (["--fuse-top", "100"], "--fuse-top"),
    (["--change", "nan"], "--change"), (["--change", "0"], "--change"), (["--change", "-3"], "--change"),
    (["--every", "0"], "--every"), (["--fps", "nan"], "--fps"),
])
def test_bad_run_flags_are_one_sentence_naming_the_flag(teacher_path, student_path, one_image, flags, named):
    line = one_sentence(cli("run", "--teacher", teacher_path, "--student", student_path, "--source", one_image,
                            "--quiet", *flags))
    assert named in line, line


@pytest.mark.parametrize("flags", [["--threshold", "nan"], ["--fuse-top", "100"], ["--threads", "-1"]])
def test_bad_localize_flags_too(teacher_path, one_image, flags):
    assert flags[0] in one_sentence(cli("localize", teacher_path, one_image, *flags))


def test_empty_inputs_and_folders_as_models(teacher_path, student_path, one_image, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    for target in (empty, tmp_path / "nothing-*.jpg"):
        assert "holds no images" in one_sentence(cli("localize", teacher_path, target))
        assert "holds no images" in one_sentence(cli("run", "--teacher", teacher_path, "--source", target))
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    expected = f"{folder} is a folder, not a model file"
    assert expected in one_sentence(cli("localize", folder, one_image))
    assert expected in one_sentence(cli("info", folder))
    assert expected in one_sentence(cli("run", "--teacher", folder, "--source", one_image))
    assert expected in one_sentence(cli("run", "--teacher", teacher_path, "--student", folder, "--source", one_image))


@pytest.mark.parametrize("command", ["localize", "run"])
def test_stdout_closed_early_ends_quietly(teacher_path, corpus, command):
    folder = corpus[0]
    args = [teacher_path, folder] if command == "localize" else \
        ["--teacher", teacher_path, "--source", folder, "--events", "-", "--loop", "--max-frames", 2000, "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "edge_cam", command, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert json.loads(proc.stdout.readline())  # `| head -1`
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert "internal error" not in err and "Traceback" not in err and "Exception ignored" not in err, err


def test_outputs_that_cannot_be_written_are_refused_before_the_work(teacher_path, one_image, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    under = f"{blocker} is a file, not a folder"
    run_ = ("run", "--teacher", teacher_path, "--source", one_image)
    assert under in one_sentence(cli(*run_, "--video-out", blocker / "v.avi"))
    assert under in one_sentence(cli(*run_, "--events", blocker / "sub" / "e.jsonl"))
    assert under in one_sentence(cli(*run_, "--mqtt", "mqtt://127.0.0.1:1", "--mqtt-spill", blocker / "spill"))
    assert "it is a file, not a folder" in one_sentence(cli("localize", teacher_path, one_image, "--overlays", blocker))
    assert under in one_sentence(cli("localize", teacher_path, one_image, "--jsonl", blocker / "x.jsonl"))
    assert "it is a file, not a folder" in one_sentence(cli("demo", "--out", blocker))
    with read_only_folder(tmp_path / "ro") as ro:
        if ro is None:
            pytest.skip("no read-only folder can be made here")
        ro_error = re.compile("Read-only file system|Permission denied")
        assert ro_error.search(one_sentence(cli(*run_, "--video-out", ro / "v.mp4")))
        assert ro_error.search(one_sentence(cli(*run_, "--events", ro / "e.jsonl")))
        assert ro_error.search(one_sentence(cli("localize", teacher_path, one_image, "--overlays", ro / "ov")))
        assert ro_error.search(one_sentence(cli("demo", "--out", ro / "demo")))
        line = one_sentence(cli("calibrate", teacher_path, "-o", ro / "calibrated.onnx", "--yolo", tmp_path))
        assert ro_error.search(line) and "calibrated model" in line


# -- a second signal during shutdown -----------------------------------------------------------------

def test_second_sigint_during_mqtt_shutdown_still_spills_every_event_and_prints_the_summary(
        teacher_path, demo_data, tmp_path):
    import signal
    import time

    from broker import free_port
    pytest.importorskip("paho.mqtt.client")
    spill = tmp_path / "spill"
    proc = subprocess.Popen([sys.executable, "-m", "edge_cam", "run", "--teacher", teacher_path, "--source",
                             demo_data("demo_clip.mp4"), "--loop", "--mqtt", f"mqtt://127.0.0.1:{free_port()}",
                             "--mqtt-spill", spill, "--device", "cam", "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = __import__("threading").Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    time.sleep(6)  # frames pile up in the queue: the broker's port is closed
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)  # now close() waits (up to 10 s) for the broker ...
    proc.send_signal(signal.SIGINT)  # ... and the impatient second Ctrl-C comes
    try:
        assert proc.wait(timeout=60) == 0, "".join(lines)
    finally:
        proc.kill()  # a run that did not stop must not outlive the test (it loops its clip)
    reader.join(10)
    err = "".join(lines)
    assert "Traceback" not in err and "internal error" not in err, err
    assert "interrupted while waiting for the broker" in err  # the second signal came during close()
    summary = re.search(r"(\d+) events for edge-cam/cam/0/events: 0 acknowledged, 0 reconnects, (\d+) undelivered, "
                        r"kept in (\S+) for the next run", err)
    assert summary, err
    published, undelivered = int(summary.group(1)), int(summary.group(2))
    frames = int(re.search(r"^(\d+) frames in", err, re.M).group(1))  # the run's summary, after the signal
    assert published == undelivered >= frames > 0
    kept = [json.loads(x) for x in open(summary.group(3)).read().splitlines()]
    assert len(kept) == published and len({(e["run"], e["frame"]) for e in kept}) == published
