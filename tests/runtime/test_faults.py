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
from faults import EVIL_NAME, write_corpus
from mjpeg_server import Camera

from edge_cam.cascade import Cascade
from edge_cam.errors import EdgeCamError
from edge_cam.model import Model
from edge_cam.source import Source, open_source, parse_source, read_image
from edge_cam.stream import RUN_ID, StreamStats, run, stream


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "edge_cam", *map(str, args)], capture_output=True,
                          text=True, timeout=600, **kw)


def one_sentence(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("edge-cam:")]
    return line


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
    assert stats.frames == 6 and cam.refused == 2
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
