"""The live preview (edge_cam/sinks/preview.py): a real `edge-cam run --serve` over the bundled clip,
watched by a real headless Chromium (the page loads, frames arrive, the events list fills), its
/metrics parsed as Prometheus text, and the token enforced."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from browser import Chromium, chromium_binary
from timeouts import scaled

from edge_cam.cascade import FrameResult
from edge_cam.errors import EdgeCamError
from edge_cam.sinks.preview import PreviewServer, parse_serve

IN_CI = os.environ.get("CI", "").lower() == "true"
TOKEN = "t0ken-for-tests"

# Distinct frames as the browser sees them: the <img> drawn on a canvas every 100 ms and hashed.
COUNT_FRAMES = """(async () => {
  const img = document.getElementById("video"), canvas = document.createElement("canvas");
  const seen = new Set(), t0 = performance.now();
  while (performance.now() - t0 < %d && seen.size < 3) {
    if (img.complete && img.naturalWidth) {
      canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
      const g = canvas.getContext("2d");
      g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, canvas.width, canvas.height).data;
      let h = 0;
      for (let i = 0; i < d.length; i += 13) h = (Math.imul(h, 31) + d[i]) >>> 0;
      seen.add(h);
    }
    await new Promise(r => setTimeout(r, 100));
  }
  return {distinct: seen.size, width: img.naturalWidth, height: img.naturalHeight};
})()"""


def _get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=scaled(10)) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def parse_prometheus(text: str) -> dict[str, tuple[str, list[tuple[dict, float]]]]:
    """{name: (type, [(labels, value)])}, failing on anything outside the text exposition format."""
    out: dict[str, tuple[str, list]] = {}
    for line in text.splitlines():
        if m := re.fullmatch(r"# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)", line):
            assert m[1] not in out, f"{m[1]} declared twice"
            out[m[1]] = (m[2], [])
        elif line.startswith("# HELP "):
            continue
        else:
            m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_]\w*="[^"\\]*",?)*)\})? (\S+)', line)
            assert m, f"not Prometheus text: {line!r}"
            assert m[1] in out, f"{m[1]} has no TYPE line before it"
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m[2] or ""))
            out[m[1]][1].append((labels, float(m[3])))
    return out


@pytest.fixture
def chromium_path():
    path = chromium_binary()
    if path is None:
        if IN_CI:
            pytest.fail("chromium is not installed (CI must have it: .ci/run installs it)")
        pytest.skip("chromium is not installed: apt-get install chromium")
    return path


@pytest.fixture
def served(teacher_path, student_path, demo_data):
    """`edge-cam run --serve 127.0.0.1:0 --serve-token ... --loop` on the bundled clip; yields its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "edge_cam", "run", "--teacher", teacher_path, "--student",
                             student_path, "--source", demo_data("demo_clip.mp4"), "--loop", "--every", "5",
                             "--serve", "127.0.0.1:0", "--serve-token", TOKEN, "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    found = threading.Event()
    lines: list[str] = []

    def read_stderr():  # keep draining it, or a full pipe would stall the run
        for line in proc.stderr:
            lines.append(line)
            if "preview at" in line:
                found.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    try:
        assert found.wait(scaled(60)), "no preview URL printed:\n" + "".join(lines)
        url = re.search(r"preview at (http://\S+)", "".join(lines))[1]
        # Said once, the token masked: the user gave it, and stderr ends up in logs (journald).
        assert url.startswith("http://127.0.0.1:") and url.endswith("/?token=***")
        yield url.split("?")[0]
    finally:
        proc.terminate()
        proc.wait(scaled(30))
    assert proc.returncode == 0, "".join(lines)
    err = "".join(lines)
    assert err.count("preview at") == 1 and TOKEN not in err, err


def test_the_page_shows_the_live_stream_in_a_real_browser(chromium_path, served, tmp_path, demo_data):
    cap = cv2.VideoCapture(demo_data("demo_clip.mp4"))
    clip_size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    cap.release()
    browser = Chromium(str(tmp_path / "profile"), timeout=scaled(60))
    try:
        browser.navigate(f"{served}?token={TOKEN}", timeout=scaled(30))
        frames = browser.evaluate(COUNT_FRAMES % scaled(30000))
        assert frames["distinct"] >= 2, f"the stream did not move in the browser: {frames}"
        assert (frames["width"], frames["height"]) == clip_size
        deadline = time.time() + scaled(20)
        while browser.evaluate("document.querySelectorAll('#events tbody tr').length") < 5:
            assert time.time() < deadline, "the events list never filled"
            time.sleep(0.2)
        first_row = browser.evaluate("document.querySelector('#events tbody tr').innerText")
        assert re.match(r"\d+\s+0\s+(ran|reused) ", first_row), first_row
        stages = browser.evaluate("document.querySelector('#stages').innerText")
        assert "teacher" in stages and "student" in stages, stages
        summary = browser.evaluate("document.getElementById('summary').innerText")
        assert re.match(r"\d+ frames \| [\d.]+ FPS", summary), summary
        browser.screenshot(str(tmp_path / "preview.png"))
    finally:
        browser.close()
    shutil.copy(tmp_path / "preview.png", "/tmp/preview.png")  # to look at by hand


def test_metrics_status_and_token(served):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("", "metrics", "events.json", "status.json", "stream.mjpg"):
        assert _get(served + path)[0] == 401
        assert _get(f"{served}{path}?token=wrong")[0] == 401
        assert _get(served + path, {"Authorization": "Bearer wrong"})[0] == 401
    code, page = _get(f"{served}?token={TOKEN}")
    assert code == 200 and b"<img" in page
    assert not re.search(rb"""(src|href)\s*=\s*["']?(https?:)?//|url\(|@import""", page)  # nothing from outside

    # The server is up before the first frame is through (models load, the teacher runs): wait for it.
    deadline = time.time() + scaled(60)
    while json.loads(_get(served + "status.json", bearer)[1])["frames"] == 0:
        assert time.time() < deadline, "no frame reached the preview"
        time.sleep(0.2)
    first = parse_prometheus(_get(served + "metrics", bearer)[1].decode())
    time.sleep(scaled(1.5))
    second = parse_prometheus(_get(served + "metrics", bearer)[1].decode())
    kinds = {name: kind for name, (kind, _) in second.items()}
    assert kinds == {"edge_cam_frames_total": "counter", "edge_cam_fps": "gauge",
                     "edge_cam_teacher_runs_total": "counter", "edge_cam_dropped_frames_total": "counter",
                     "edge_cam_skipped_frames_total": "counter", "edge_cam_mqtt_queue": "gauge",
                     "edge_cam_preview_watchers": "gauge", "edge_cam_preview_refused_total": "counter",
                     "edge_cam_stage_latency_median_seconds": "gauge", "edge_cam_student_agreement": "gauge",
                     "edge_cam_student_checks_total": "counter", "edge_cam_student_alarm": "gauge"}
    value = {name: samples[0][1] for name, (_, samples) in second.items() if len(samples) == 1}
    assert value["edge_cam_frames_total"] > first["edge_cam_frames_total"][1][0][1] > 0
    assert value["edge_cam_fps"] > 0 and value["edge_cam_teacher_runs_total"] >= 1
    stages = {labels["stage"]: v for labels, v in second["edge_cam_stage_latency_median_seconds"][1]}
    assert {"teacher", "student", "total"} <= set(stages) and stages["teacher"] > 0

    status = json.loads(_get(served + "status.json", bearer)[1])
    assert status["frames"] >= value["edge_cam_frames_total"] and status["sources"][0]["live"] is False
    events = json.loads(_get(served + "events.json", bearer)[1])
    assert 1 <= len(events) <= 20 and events[0]["frame"] >= events[-1]["frame"]


def _result(i: int) -> FrameResult:
    image = np.full((48, 64, 3), i % 256, np.uint8)
    return FrameResult(i, float(i), "fake", i % 5 == 0, None, None, image=image, timing_ms={"teacher": 1.0})


def test_write_never_waits_for_a_watcher_and_a_watcher_gets_the_latest_frame():
    with PreviewServer(port=0) as preview:
        assert preview.url.startswith("http://127.0.0.1:")
        for i in range(500):  # nobody watches: nothing is encoded
            preview.write(_result(i))
        assert preview._jpeg is None
        seq, jpeg = preview.next_jpeg(0)
        assert seq == 500 and jpeg[:2] == b"\xff\xd8"  # the newest frame, not the first unseen one
        assert preview.next_jpeg(seq, timeout=0.05) == (seq, None)
        assert [e["frame"] for e in preview.events()] == list(range(499, 479, -1))
        assert preview.status()["teacher_runs"] == 100


def test_the_token_stays_out_of_the_request_log(caplog):
    caplog.set_level(logging.DEBUG, logger="edge_cam")
    with PreviewServer(port=0, token=TOKEN) as preview:
        base = preview.url.split("?")[0]
        assert _get(f"{base}status.json?token={TOKEN}")[0] == 200
        assert _get(f"{base}metrics?token=wrong")[0] == 401
    requests = [r.getMessage() for r in caplog.records if r.getMessage().startswith("preview 127.0.0.1")]
    assert any("status.json?token=***" in m for m in requests) and any("token=wrong" in m for m in requests)
    assert not any(TOKEN in r.getMessage() for r in caplog.records)  # the "preview at URL" line neither


def test_serve_addresses():
    assert parse_serve("8080") == ("127.0.0.1", 8080)
    assert parse_serve("0") == ("127.0.0.1", 0)
    assert parse_serve("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_serve("[::1]:9000") == ("::1", 9000)
    for bad in ("", "http", "70000", "host:"):
        with pytest.raises(EdgeCamError, match="--serve"):
            parse_serve(bad)
