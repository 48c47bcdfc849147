"""Hardening, round two: nothing destroyed, nothing leaked, nothing that decodes to gigabytes. Each
test reproduces one case of docs/fault-matrix.md on real files, real sockets and real subprocesses
(the torch side, distill and export, is in tests/export/test_hardening_export.py)."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest
from broker import Broker, free_port, mosquitto_binary, wait_until
from faults import bomb_png, one_sentence
from mjpeg_server import Camera
from timeouts import scaled

from edge_cam.cascade import Cascade, FrameResult
from edge_cam.errors import EdgeCamError, UnreadableImage
from edge_cam.image_header import image_size
from edge_cam.metadata import ModelInfo, rewrite_metadata
from edge_cam.model import Model
from edge_cam.sinks import JsonlSink
from edge_cam.sinks.preview import PreviewServer
from edge_cam.source import Source, parse_source, read_image
from edge_cam.stream import run

SECRET = "s3cr3t-t0ken"


def cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "edge_cam", *map(str, args)], capture_output=True, text=True,
                          timeout=scaled(600), env=None if env is None else {**os.environ, **env}, **kw)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    path = tmp_path_factory.mktemp("bomb") / "zeros_30000x30000.png"
    assert bomb_png(path) < 1_000_000
    return path


@pytest.fixture(scope="module")
def raccoons(shared_data, tmp_path_factory):
    """Five real photos, one of them with its last 2 KB cut off (cv2.imread and PIL still decode it),
    and one that is not an image at all."""
    folder = tmp_path_factory.mktemp("raccoons")
    names = sorted(os.listdir(shared_data / "raccoon" / "images"))[:5]
    for name in names:
        shutil.copy(shared_data / "raccoon" / "images" / name, folder / name)
    data = (folder / names[2]).read_bytes()
    (folder / names[2]).write_bytes(data[:-2048])
    (folder / "zz_garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg " * 30)
    return folder, names, names[2]


# -- the decompression bomb --------------------------------------------------------------------------

def test_the_header_is_read_for_every_format_opencv_writes():
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), np.uint8)
    cases = {".jpg": image, ".png": image, ".bmp": image, ".tif": image, ".webp": image, ".ppm": image,
             ".pgm": image[..., 0], ".pbm": image[..., 0], ".pam": image, ".pfm": image.astype(np.float32),
             ".ras": image, ".hdr": image.astype(np.float32), ".jp2": image, ".avif": image, ".gif": image}
    tried = 0
    for ext, pixels in cases.items():
        try:
            ok, buf = cv2.imencode(ext, pixels)
        except cv2.error:
            continue  # this OpenCV has no encoder for it
        tried += 1
        assert ok and image_size(buf.tobytes()) == (53, 37), ext
    ok, progressive = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert image_size(progressive.tobytes()) == (53, 37) and tried >= 10
    assert image_size(b"not an image at all") is None and image_size(b"\x89PNG\r\n\x1a\n") is None


def test_a_bomb_is_refused_from_its_header_not_decoded(bomb):
    with pytest.raises(UnreadableImage, match=r"header claims 30000x30000 pixels, more than the limit of 100000000 "
                                              r"\(EDGE_CAM_MAX_PIXELS"):
        read_image(str(bomb))
    assert issubclass(UnreadableImage, EdgeCamError)


def _peak_rss_mb(*args, env=None) -> tuple[subprocess.CompletedProcess, float]:
    """Run edge-cam in a child of a child: the middle one reports its child's peak RSS alone."""
    code = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(p.returncode)")
    proc = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "edge_cam", *map(str, args)],
                          capture_output=True, text=True, timeout=scaled(600),
                          env=None if env is None else {**os.environ, **env})
    return proc, int(proc.stderr.strip().splitlines()[-1]) / 1024


def test_localize_and_run_skip_and_count_a_bomb_in_a_folder(bomb, teacher_path, shared_data, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(bomb, folder / "a_bomb.png")
    shutil.copy(shared_data / "images" / "owl.jpg", folder / "b_owl.jpg")
    proc, rss = _peak_rss_mb("localize", teacher_path, folder)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert lines[0]["unreadable"] and "30000x30000" in lines[0]["error"] and lines[1]["boxes"]
    assert "1 of 2 images unreadable: " in proc.stderr and ascii(str(folder / "a_bomb.png")) in proc.stderr
    assert rss < 1000, f"{rss:.0f} MB: the bomb was decoded"  # 3600 MB before the header check
    events = tmp_path / "e.jsonl"
    proc, rss = _peak_rss_mb("run", "--teacher", teacher_path, "--source", folder, "--events", events, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert len(events.read_text().splitlines()) == 1 and "1 unreadable frames skipped" in proc.stderr
    assert "30000x30000" in proc.stderr and rss < 1000


def test_the_pixel_limit_is_configurable(teacher_path, shared_data, tmp_path):
    owl = shared_data / "images" / "owl.jpg"  # 512x384
    proc = cli("localize", teacher_path, owl, env={"EDGE_CAM_MAX_PIXELS": "100000"})
    assert one_sentence(proc) == "edge-cam: none of the 1 images could be read."
    assert "512x384 pixels, more than the limit of 100000 (EDGE_CAM_MAX_PIXELS" in proc.stderr
    assert json.loads(proc.stdout)["unreadable"]
    assert cli("localize", teacher_path, owl, env={"EDGE_CAM_MAX_PIXELS": "196608"}).returncode == 0
    for bad in ("lots", "0", "-5"):
        assert "EDGE_CAM_MAX_PIXELS must be a number of pixels" in one_sentence(
            cli("localize", teacher_path, owl, env={"EDGE_CAM_MAX_PIXELS": bad}))
        assert "EDGE_CAM_MAX_PIXELS" in one_sentence(
            cli("run", "--teacher", teacher_path, "--source", owl, env={"EDGE_CAM_MAX_PIXELS": bad}))


# -- truncated and unreadable photos --------------------------------------------------------------------

def test_a_truncated_jpeg_decodes_as_imread_decodes_it(raccoons, caplog):
    folder, _, cut = raccoons
    caplog.set_level(logging.WARNING, "edge_cam")
    image = read_image(str(folder / cut))
    assert np.array_equal(image, cv2.imread(str(folder / cut)))
    assert any("truncated JPEG" in r.getMessage() for r in caplog.records)
    with pytest.raises(UnreadableImage, match="is not a readable image"):
        read_image(str(folder / "zz_garbage.jpg"))


def test_localize_on_a_folder_names_and_counts_the_unreadable_and_goes_on(raccoons, teacher_path, tmp_path):
    folder, names, cut = raccoons
    proc = cli("localize", teacher_path, folder)
    assert proc.returncode == 0, proc.stderr
    lines = {os.path.basename(x["image"]): x for x in map(json.loads, proc.stdout.splitlines())}
    assert set(lines) == {*names, "zz_garbage.jpg"}
    assert lines[cut]["boxes"] and "truncated JPEG" in proc.stderr
    assert lines["zz_garbage.jpg"]["unreadable"]
    assert f"1 of 6 images unreadable: {ascii(str(folder / 'zz_garbage.jpg'))}" in proc.stderr
    # Nothing readable at all: the lines still come, and the exit status says so.
    proc = cli("localize", teacher_path, folder / "zz_garbage.jpg")
    assert one_sentence(proc) == "edge-cam: none of the 1 images could be read."
    assert json.loads(proc.stdout)["unreadable"]


def test_run_on_a_folder_of_unreadable_images_exits_2(raccoons, teacher_path, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(b"garbage" * i)
    assert "none of the 3 frames could be read" in one_sentence(
        cli("run", "--teacher", teacher_path, "--source", folder, "--quiet"))


def test_a_fifo_named_like_an_image_is_skipped_not_waited_on(teacher_path, shared_data, tmp_path):
    shutil.copy(shared_data / "images" / "owl.jpg", tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "b.jpg")  # reading it would block forever
    proc = cli("localize", teacher_path, tmp_path)
    assert proc.returncode == 0 and "not a regular file" in proc.stderr, proc.stderr


# -- signals ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_localize_with_a_sentence_and_128_plus_its_number(sig, status, teacher_path, shared_data):
    proc = subprocess.Popen([sys.executable, "-m", "edge_cam", "localize", teacher_path,
                             shared_data / "raccoon" / "images"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline()  # working: the first photo is done
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=scaled(60))
    assert proc.returncode == status, err
    assert f"edge-cam: interrupted by {sig.name}: localize stopped before it finished." in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_sigint_still_ends_run_normally_with_exit_0(teacher_path, demo_data, tmp_path):
    events = tmp_path / "e.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "edge_cam", "run", "--teacher", teacher_path, "--source",
                             demo_data("demo_clip.mp4"), "--loop", "--events", events, "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    assert wait_until(lambda: events.exists() and len(events.read_text().splitlines()) >= 5, scaled(60))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=scaled(60))
    assert proc.returncode == 0 and re.search(r"^\d+ frames in", err, re.M) and "interrupted" not in err, err


# -- secrets in a source's address -------------------------------------------------------------------------

def test_credential_like_query_values_are_masked_in_source_names():
    assert parse_source(f"http://h/stream.mjpg?token={SECRET}").name == "http://h/stream.mjpg?token=***"
    assert parse_source("rtsp://u:pw@h:554/live?channel=1&Password=x&api_key=y&sig=z&auth=q").name == \
        "rtsp://u:***@h:554/live?channel=1&Password=***&api_key=***&sig=***&auth=***"
    assert parse_source("http://h/s?X-Amz-Signature=a&X-Amz-Credential=b&size=2").name == \
        "http://h/s?X-Amz-Signature=***&X-Amz-Credential=***&size=2"
    assert parse_source("http://h/s?fps=5").name == "http://h/s?fps=5"
    assert "[::1" not in parse_source("rtsp://u:pw@[::1/x").name  # not even parsable: nothing of it shown


def test_a_bad_mqtt_address_never_shows_its_password():
    from edge_cam.sinks.mqtt_url import parse_url
    for url in (f"mqtt://cam:{SECRET}@host:99999", f"mqtt://cam:{SECRET}@host/x?retain=1", f"mqtt://cam:{SECRET}@[::1"):
        with pytest.raises(EdgeCamError, match="cannot use the MQTT address") as e:
            parse_url(url)
        assert SECRET not in str(e.value)


def test_a_token_in_a_camera_url_never_reaches_events_preview_logs_or_summary(teacher_path, demo_data, tmp_path,
                                                                            caplog):
    caplog.set_level(logging.DEBUG)
    cap = cv2.VideoCapture(demo_data("demo_clip.mp4"))
    frame = cap.read()[1]
    cap.release()
    cam = Camera([frame] * 5, fps=60)
    url = f"{cam.url}?user=me&token={SECRET}"
    try:
        events = tmp_path / "e.jsonl"
        with PreviewServer(port=0) as preview:
            run(Cascade(Model(teacher_path)), [Source(url)], [preview, JsonlSink(str(events))], max_frames=4,
                status=None)
            served = preview.events()
        proc = cli("run", "--teacher", teacher_path, "--source", url, "--max-frames", 3, "--events", "-")
    finally:
        cam.close()
    masked = f"{cam.url}?user=me&token=***"
    assert {json.loads(x)["source"] for x in events.read_text().splitlines()} == {masked}
    assert {e["source"] for e in served} == {masked}  # /events.json; MQTT publishes the same event
    assert proc.returncode == 0 and {json.loads(x)["source"] for x in proc.stdout.splitlines()} == {masked}
    assert masked in proc.stderr  # the summary names the source, masked
    assert SECRET not in proc.stdout + proc.stderr + caplog.text + events.read_text()


# -- hostile metadata ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def teacher(teacher_path):
    return Model(teacher_path)


def _with(teacher, key: str, value) -> dict:
    props = teacher.info.to_props()
    if "." in key:
        section, field = key.split(".")
        props["edge_cam." + section] = json.dumps({**json.loads(props["edge_cam." + section]), field: value})
    else:
        props["edge_cam." + key] = json.dumps(value)
    return props


@pytest.mark.parametrize("key,value,named", [
    ("cam", [1, 2, 3], "edge_cam.cam [1, 2, 3]"),
    ("cam", "largest", "edge_cam.cam \"largest\""),
    ("input", [224, 224], "edge_cam.input [224, 224]"),
    ("input.size", [100000, 100000], "edge_cam.input size [100000, 100000]"),
    ("input.size", [224.5, 224], "edge_cam.input size"),
    ("input.size", True, "edge_cam.input size true"),
    ("input.layout", "NCHW", "edge_cam.input layout"),
    ("input.scale", 1, "edge_cam.input scale"),
    ("cam.fuse_top", 10 ** 9, "edge_cam.cam fuse_top 1000000000"),
    ("cam.stride", 0, "edge_cam.cam stride 0"),
    ("cam.feature_size", [0, 7], "edge_cam.cam feature_size"),
    ("cam.class_query", "yes", "edge_cam.cam class_query"),
    ("cam.baked_classes", [-1], "edge_cam.cam baked_classes"),
    ("cam.threshold", "0.2", "edge_cam.cam threshold"),
    ("labels", "cat,dog", "edge_cam.labels"),
    ("labels", [1, 2], "edge_cam.labels"),
    ("source", [], "edge_cam.source"),
    ("format_version", "one", "edge_cam.format_version"),
])
def test_every_metadata_field_is_checked_by_type_and_range(teacher, key, value, named):
    with pytest.raises(EdgeCamError) as e:
        ModelInfo.from_props(_with(teacher, key, value), "m.onnx")
    text = str(e.value)
    assert text.startswith(f"m.onnx has {named}") and "re-export" in text and "\n" not in text, text


def test_a_huge_bad_value_is_shown_as_a_short_preview(teacher):
    with pytest.raises(EdgeCamError) as e:
        ModelInfo.from_props(_with(teacher, "labels", list(range(3000))), "m.onnx")
    assert len(str(e.value)) < 300 and "characters)" in str(e.value)


def test_the_cli_refuses_hostile_metadata_with_exit_2(teacher, teacher_path, shared_data, tmp_path):
    owl = shared_data / "images" / "owl.jpg"

    def broken(key, value):
        bad = tmp_path / "bad.onnx"
        section = key.split(".")[0]
        rewrite_metadata(teacher_path, str(bad), {f"edge_cam.{section}": _with(teacher, key, value)[f"edge_cam.{section}"]})
        return bad

    for key, value, named in (("cam", ["a"], "edge_cam.cam"), ("input.size", [100000, 100000], "edge_cam.input size"),
                              ("cam.fuse_top", 10 ** 9, "edge_cam.cam fuse_top"), ("cam.stride", 0, "edge_cam.cam stride")):
        bad = broken(key, value)
        for args in (("info", bad), ("localize", bad, owl), ("run", "--teacher", bad, "--source", owl)):
            assert named in one_sentence(cli(*args)), (key, args)
    bad = broken("cam.baked_classes", [10 ** 6])  # a class the graph does not have
    assert "edge_cam.cam baked_classes [1000000], but its graph has 10 classes" in one_sentence(cli("info", bad))
    one_sentence(cli("localize", bad, owl))


def test_an_input_size_too_large_is_refused_before_any_allocation(teacher_path, shared_data):
    owl = shared_data / "images" / "owl.jpg"
    for size in ("100000x100000", "100000"):
        proc = cli("localize", teacher_path, owl, "--input-size", size)
        assert proc.returncode == 2 and "from 32 to 8192 pixels" in proc.stderr, proc.stderr
    with pytest.raises(EdgeCamError, match="too large"):
        Model(teacher_path, input_size=(100000, 100000))


def test_writing_metadata_over_a_folder_leaves_no_part_file(teacher_path, tmp_path):
    (tmp_path / "m.onnx").mkdir()
    with pytest.raises(EdgeCamError, match="cannot write"):
        rewrite_metadata(teacher_path, str(tmp_path / "m.onnx"), {"edge_cam.x": "1"})
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


# -- the preview's connections and watchers ----------------------------------------------------------------

def _frame(i: int) -> FrameResult:
    image = np.full((120, 160, 3), i % 256, np.uint8)
    return FrameResult(i, float(i), "fake", i % 5 == 0, None, None, image=image, timing_ms={"teacher": 1.0})


def _port(preview: PreviewServer) -> int:
    return int(preview.url.split(":")[2].split("/")[0])


def _closed_by_server(s: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it stayed open."""
    s.settimeout(within)
    got = b""
    try:
        while chunk := s.recv(4096):
            got += chunk
    except (TimeoutError, socket.timeout):
        return None
    except ConnectionResetError:
        pass
    return got


def test_silent_connections_are_capped_and_closed(caplog):
    with PreviewServer(port=0, idle_timeout=1.0, max_connections=4) as preview:
        port = _port(preview)
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
        # Four are served (a thread each), waiting for a request that never comes; six are told at once.
        answers = [_closed_by_server(s, scaled(5)) for s in silent[4:]]
        assert all(a is not None and a.startswith(b"HTTP/1.0 503") for a in answers), answers
        assert wait_until(lambda: preview.status()["refused"] == 6, scaled(5))
        # The four are closed once they have been silent for idle_timeout: nothing held forever.
        assert all(_closed_by_server(s, scaled(10)) is not None for s in silent[:4])
        assert wait_until(lambda: preview.status()["connections"] == 0, scaled(10))
        with urllib.request.urlopen(preview.url + "status.json", timeout=scaled(10)) as r:
            assert r.status == 200
        for s in silent:
            s.close()


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(10)) as s:
        s.sendall(request)
        return _closed_by_server(s, scaled(10)) or b""


def test_what_held_still_holds_header_limits_paths_and_the_token():
    with PreviewServer(port=0, token=SECRET) as preview:
        port, auth = _port(preview), f"Authorization: Bearer {SECRET}\r\n".encode()
        assert _raw(port, b"GET /status.json HTTP/1.0\r\nX: " + b"a" * 70000 + b"\r\n\r\n").startswith(b"HTTP/1.0 431")
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(150))
        assert _raw(port, b"GET /status.json HTTP/1.0\r\n" + auth + many + b"\r\n").startswith(b"HTTP/1.0 431")
        for path in (b"/../../etc/passwd", b"/%2e%2e/%2e%2e/etc/passwd", b"/status.json/../../x"):
            assert _raw(port, b"GET " + path + b" HTTP/1.0\r\n" + auth + b"\r\n").startswith(b"HTTP/1.0 404"), path
        assert _raw(port, b"GET /status.json?token=" + SECRET.encode()[:-1] + b" HTTP/1.0\r\n\r\n").startswith(
            b"HTTP/1.0 401")
        assert _raw(port, b"GET /status.json HTTP/1.0\r\n" + auth + b"\r\n").startswith(b"HTTP/1.0 200")


def test_a_watcher_that_stops_reading_is_dropped():
    with PreviewServer(port=0, idle_timeout=1.0) as preview:
        big = FrameResult(0, 0.0, "fake", True, None, None,
                          image=np.random.default_rng(0).integers(0, 256, (720, 1280, 3), np.uint8))
        s = socket.create_connection(("127.0.0.1", _port(preview)))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
        assert wait_until(lambda: preview.watchers == 1, scaled(10))
        stop = threading.Event()

        def feed():  # new noisy frames: each one a large JPEG that fills the socket's buffers
            i = 0
            while not stop.is_set():
                big.frame, i = i, i + 1
                big.image[0, 0, 0] = i % 256
                preview.write(big)
                time.sleep(0.02)

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        try:  # the watcher never reads: its sends block, and it is dropped after idle_timeout
            assert wait_until(lambda: preview.watchers == 0, scaled(30)), preview.status()
        finally:
            stop.set()
            writer.join(5)
            s.close()


def test_each_frame_is_encoded_once_for_all_watchers_at_the_capped_rate():
    with PreviewServer(port=0, max_fps=5) as preview:
        port = _port(preview)
        got: list[list[bytes]] = [[] for _ in range(6)]

        def watch(into: list[bytes]) -> None:
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
                data, deadline = b"", time.monotonic() + scaled(30)
                while len(into) < 4 and time.monotonic() < deadline:
                    data += s.recv(65536)
                    while (start := data.find(b"\xff\xd8")) >= 0 and (end := data.find(b"\xff\xd9", start)) >= 0:
                        into.append(data[start:end + 2])
                        data = data[end + 2:]

        watchers = [threading.Thread(target=watch, args=(g,), daemon=True) for g in got]
        for t in watchers:
            t.start()
        i, t0 = 0, time.monotonic()
        while any(t.is_alive() for t in watchers):
            preview.write(_frame(i))
            i += 1
            time.sleep(0.001)
        elapsed = time.monotonic() - t0
        assert all(len(g) >= 4 for g in got), [len(g) for g in got]
        distinct = {jpeg for g in got for jpeg in g}
        # Every watcher was sent frames from one shared encoding: far fewer encodings than frames
        # written (hundreds), and no more than the cap allows over the time it ran.
        assert len(distinct) <= preview.encoded <= 5 * elapsed + 2 and i > 10 * preview.encoded, (i, preview.encoded)


# -- video files that end early, vanish, or lose their events -------------------------------------------------

def test_a_truncated_video_says_so_and_counts_the_missing_frames(shared_data, teacher_path, tmp_path):
    cut = tmp_path / "car_cut.mp4"  # its index (moov) comes first: the cut loses frames, not the file
    cut.write_bytes((shared_data / "videos" / "car-detection.mp4").read_bytes()[:1_400_000])
    proc = cli("run", "--teacher", teacher_path, "--source", cut, "--quiet")
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"ended after (\d+) of the 377 frames its header promises: the file is truncated", proc.stderr)
    assert m and 0 < int(m[1]) < 377, proc.stderr
    assert f"{377 - int(m[1])} frames missing (truncated file)" in proc.stderr
    whole = cli("run", "--teacher", teacher_path, "--source", shared_data / "videos" / "car-detection.mp4", "--quiet")
    assert whole.returncode == 0 and "truncated" not in whole.stderr and "missing" not in whole.stderr


def test_a_looped_file_deleted_mid_run_is_one_plain_sentence(teacher_path, demo_data, tmp_path):
    clip = tmp_path / "clip.avi"
    cap = cv2.VideoCapture(demo_data("demo_clip.mp4"))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 10, (320, 240))
    for _ in range(20):
        writer.write(cap.read()[1])
    writer.release()
    cap.release()
    events = tmp_path / "e.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "edge_cam", "run", "--teacher", teacher_path, "--source", clip,
                             "--loop", "--events", events, "--quiet"], stderr=subprocess.PIPE, text=True)
    assert wait_until(lambda: events.exists() and len(events.read_text().splitlines()) >= 5, scaled(60))
    clip.unlink()
    _, err = proc.communicate(timeout=scaled(60))
    line = one_sentence(subprocess.CompletedProcess(proc.args, proc.returncode, "", err))
    assert line == f"edge-cam: {clip} was deleted or moved during the run, so it cannot start again (--loop).", line


@pytest.fixture
def mosquitto(paho_installed, tmp_path):
    binary = mosquitto_binary()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("mosquitto is not installed (CI must have it)")
        pytest.skip("mosquitto is not installed: apt-get install mosquitto")
    brokers: list[Broker] = []

    def start(anonymous: bool = True) -> Broker:
        workdir = tmp_path / f"broker{len(brokers)}"
        workdir.mkdir()
        b = Broker(workdir, binary)
        if not anonymous:  # no password file either: every client is refused "not authorized"
            b.config.write_text(b.config.read_text().replace("allow_anonymous true", "allow_anonymous false"))
        brokers.append(b)
        b.start()
        return b

    yield start
    for b in brokers:
        b.stop()


@pytest.fixture
def paho_installed():
    pytest.importorskip("paho.mqtt.client")


def test_mqtt_events_all_lost_exit_non_zero(paho_installed, teacher_path, demo_data):
    proc = cli("run", "--teacher", teacher_path, "--source", demo_data("demo_clip.mp4"), "--max-frames", 20,
               "--mqtt", f"mqtt://127.0.0.1:{free_port()}", "--quiet")
    line = one_sentence(proc)
    assert line.startswith("edge-cam: 20 events were lost") and "--mqtt-spill" in line, proc.stderr


def test_mqtt_refused_credentials_fail_fast_and_show_no_password(mosquitto, teacher_path, demo_data, tmp_path,
                                                                 caplog):
    broker = mosquitto(anonymous=False)
    url = f"mqtt://cam:{SECRET}@127.0.0.1:{broker.port}"
    proc = cli("run", "--teacher", teacher_path, "--source", demo_data("demo_clip.mp4"), "--loop", "--mqtt", url,
               "--quiet")  # looped forever: only the refusal can end it
    line = one_sentence(proc)
    assert "refused the credentials (not authorized)" in line and "--mqtt-retry-auth" in line, proc.stderr
    assert SECRET not in proc.stderr
    # Asked to, it keeps retrying (a password being changed on the broker) and keeps the events.
    from edge_cam.sinks.mqtt import MqttSink
    caplog.set_level(logging.WARNING, "edge_cam")
    sink = MqttSink(url, retry_auth=True, spill_dir=str(tmp_path / "spill"))
    try:
        assert wait_until(lambda: "refused the connection (Not authorized); retrying" in caplog.text, scaled(10))
        sink.write(_frame(0))  # no error: still trying
    finally:
        sink.close(timeout=0.5)
    assert sink.lost == 0 and sink.stats()["pending"] == 1  # kept in the spill file
