"""The shipped JSON Schemas (edge_cam/data/event.schema.json, status.schema.json) against what the runtime
really makes: a cascade of the bundled teacher and student with a watch list and change detection over
the demo clip and a folder of frames of another size, through run() into the JSON lines file, the
live preview (over HTTP) and MQTT; `edge-cam localize` lines; and broken messages, which must be refused.

Every message any runtime test makes is also checked by conftest.py (event_check.py); here the check is
explicit, and the run is made so that every optional field appears."""
from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import urllib.request
from importlib import resources

import cv2
import event_check
import jsonschema
import pytest
from broker import Broker, Subscriber, free_port, mosquitto_binary
from event_check import problems
from timeouts import scaled

from edge_cam.cascade import Cascade
from edge_cam.gate import MotionGate
from edge_cam.localize import BoxRule
from edge_cam.model import Model
from edge_cam.sink import PlainSink
from edge_cam.sinks import JsonlSink
from edge_cam.sinks.preview import PreviewServer
from edge_cam.source import open_source
from edge_cam.stream import run
from edge_cam.tools.photos import localize_photos
from edge_cam.watch import WatchList

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "interfaces.md"
FRAMES = 150  # of both streams together: the demo clip (600 frames, 320x240) and the folder (5)
MIN_SCORE = 0.5


class WatchingTeacher(Model):
    """The bundled teacher (no class_query input, top-3 of its 10 classes) with a watch list: a
    class at MIN_SCORE 0.5 or more is its top-1, whose map the top-K holds, so no query is needed."""

    def require_maps(self, classes) -> None:
        pass

    def predict_batch(self, frames, color="BGR", prepared=None, classes=None):
        return super().predict_batch(frames, color, prepared)


class Collect(PlainSink):
    """Every event of the run; on close (run() closes its sinks in order: this one before the
    preview) what the preview serves."""

    def __init__(self, preview: PreviewServer | None = None):
        self.events: list[dict] = []
        self.preview, self.served = preview, {}

    def write(self, result) -> None:
        self.events.append(result.to_event())

    def close(self) -> None:
        if self.preview is not None:
            base = self.preview.url
            for route in ("events.json", "status.json", "metrics"):
                with urllib.request.urlopen(base + route, timeout=scaled(10)) as r:
                    body = r.read().decode()
                self.served[route] = body if route == "metrics" else json.loads(body)


@pytest.fixture(scope="module")
def teacher(teacher_path):
    return WatchingTeacher(teacher_path, threads=1)


@pytest.fixture(scope="module")
def resized_frames(demo_data, tmp_path_factory) -> pathlib.Path:
    """Frames of the clip at three sizes: the teacher reruns for each new size (reason "resize")."""
    folder = tmp_path_factory.mktemp("sizes")
    cap = cv2.VideoCapture(demo_data("demo_clip.mp4"))
    for i, size in enumerate([(320, 240), (320, 240), (256, 256), (256, 256), (400, 200)]):
        ok, frame = cap.read()
        assert ok
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.resize(frame, size))
    cap.release()
    return folder


@pytest.fixture(scope="module")
def a_run(teacher, student_path, demo_data, resized_frames, tmp_path_factory):
    """Two streams (the clip, the folder) through the cascade into a collector, the preview and the
    events file (last, as `edge-cam run` puts it)."""
    watch = WatchList.parse(teacher.info.labels, teacher.info.labels)
    cascade = Cascade(teacher, Model(student_path, threads=1), every=8, change=6.0, watch=watch, min_score=MIN_SCORE,
                      # The clip's shapes move 0.1-0.4% of the scene a frame, and some frames none: both
                      # the gate's reason and held frames show (its cuts, 70-80%, are changes first).
                      gate=MotionGate(0.002, 2))
    events = tmp_path_factory.mktemp("run") / "events.jsonl"
    with PreviewServer(port=0) as preview:
        collect = Collect(preview)
        sources = [open_source(demo_data("demo_clip.mp4")), open_source(str(resized_frames))]
        stats = run(cascade, sources, [collect, preview, JsonlSink(str(events))], max_frames=FRAMES, status=None)
    assert stats.frames == FRAMES
    return collect, [json.loads(line) for line in events.read_text().splitlines()]


def test_every_event_of_a_real_run_matches_the_schema(a_run):
    collect, lines = a_run
    assert len(collect.events) == len(lines) == FRAMES
    for event in [*collect.events, *lines]:
        assert problems("event", event) == [], event
    served = collect.served["events.json"]
    assert 1 <= len(served) <= 20 and all(problems("event", e) == [] for e in served)
    assert problems("status", collect.served["status.json"]) == []


def test_the_run_shows_every_optional_field(a_run):
    events = a_run[1]
    reasons = {e["teacher"].get("reason") for e in events}
    assert {"first", "every", "change", "motion", "resize"} <= reasons, reasons
    assert any("change" in e["teacher"] for e in events) and any(not e["teacher"]["ran"] for e in events)
    assert any(e.get("held") for e in events)
    rois = [r for e in events for r in e["rois"]]
    assert rois and all(r["watch"] == r["label"] and "student" in r for r in rois)
    assert any(not e["rois"] for e in events)  # no watched class at 0.5: no ROI, no student
    assert {e["stream"] for e in events} == {0, 1}
    assert len({e["run"] for e in events}) == 1 and all("sink" in e["timing_ms"] for e in events)
    # The same keys as the schema's, no more: a field the code adds must be added to the schema (and the doc).
    schema = json.loads(resources.files("edge_cam.data").joinpath("event.schema.json").read_text())
    # An alarm needs a student that stops agreeing: test_agreement.py's run raises one (checked there
    # against this schema by the suite's event check).
    assert set().union(*events) == set(schema["properties"]) - {"alarm"}
    assert set().union(*(e["teacher"] for e in events)) == set(schema["$defs"]["teacher"]["properties"])
    assert set().union(*rois) == set(schema["$defs"]["roi"]["properties"])
    assert set().union(*(e["timing_ms"] for e in events)) == set(schema["$defs"]["timing_ms"]["properties"])


def test_the_preview_status_and_metrics(a_run):
    collect, _ = a_run
    status = collect.served["status.json"]
    assert status["frames"] == FRAMES and status["teacher_runs"] == sum(e["teacher"]["ran"] for e in collect.events)
    assert set(status["latency_ms"]) >= {"read", "teacher", "student", "total"}
    metrics = collect.served["metrics"]
    for name in ("frames_total", "fps", "teacher_runs_total", "dropped_frames_total", "skipped_frames_total",
                 "mqtt_queue", "preview_watchers", "preview_refused_total", "stage_latency_median_seconds"):
        assert f"\nedge_cam_{name}" in "\n" + metrics


def test_localize_lines_match_the_schema(teacher, resized_frames, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("00.png", "02.png"):
        (folder / name).write_bytes((resized_frames / name).read_bytes())
    (folder / "03.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # unreadable
    rule = BoxRule.for_model(teacher.info.cam)
    plain = list(localize_photos(Model(teacher.path), rule, [str(folder)]))
    asked = list(localize_photos(Model(teacher.path), rule, [str(folder)], class_id=9))  # outside its top-3
    watch = WatchList.parse(teacher.info.labels, teacher.info.labels)
    watched = list(localize_photos(teacher, rule, [str(folder)], watch=watch, min_score=MIN_SCORE))
    lines = plain + asked + watched
    for line in lines:
        assert problems("localize", line) == [], line
    assert plain[0]["boxes"] and plain[2]["unreadable"] is True
    assert any("error" in x and "unreadable" not in x for x in asked)
    assert any(b.get("watch") for x in watched for b in x.get("boxes", []))


@pytest.mark.skipif(importlib.util.find_spec("paho") is None or mosquitto_binary() is None,
                    reason="MQTT needs paho-mqtt and mosquitto (test_mqtt.py holds CI to them)")
def test_mqtt_payloads_match_the_schema(teacher, student_path, demo_data, tmp_path):
    from edge_cam.sinks import open_sink

    broker = Broker(tmp_path, mosquitto_binary())
    broker.start()
    sub = Subscriber(broker.port, "#", client_id=f"edge-cam-schema-{free_port()}")
    try:
        cascade = Cascade(teacher, Model(student_path, threads=1), every=5)
        run(cascade, [open_source(demo_data("demo_clip.mp4"))], [open_sink(broker.url("/site"), device="cam")],
            max_frames=30, status=None)
        assert sub.wait_for_frames(30, timeout=scaled(10))
    finally:
        sub.close()
        broker.stop()
    assert sub.topics() == {"site/cam/0/events"}
    for event in sub.events():
        assert problems("event", event) == [], event


# --- broken messages are refused -----------------------------------------------------------------------

def _set(path: str, value):
    def change(d: dict) -> None:
        *parents, key = path.split(".")
        for p in parents:
            d = d[int(p)] if isinstance(d, list) else d[p]
        d[key] = value
    return change


def _drop(path: str):
    def change(d: dict) -> None:
        *parents, key = path.split(".")
        for p in parents:
            d = d[int(p)] if isinstance(d, list) else d[p]
        del d[key]
    return change


BROKEN = [
    ("an unknown key", _set("colour", "red")),
    ("an unknown teacher key", _set("teacher.model", "t.onnx")),
    ("an unknown ROI key", _set("rois.0.area", 12.0)),
    ("an unknown student key", _set("rois.0.student.rank", 1)),
    ("an unknown stage", _set("timing_ms.decode", 1.0)),
    ("frame as text", _set("frame", "17")),
    ("a fractional frame", _set("frame", 1.5)),
    ("a negative frame", _set("frame", -1)),
    ("ts as text", _set("ts", "2024-11-24T16:50:00")),
    ("ran as a number", _set("teacher.ran", 1)),
    ("topk empty", _set("teacher.topk", [])),
    ("a score above 1", _set("rois.0.score", 1.5)),
    ("a negative coordinate", _set("rois.0.x1", -3.0)),
    ("a class id as text", _set("rois.0.class_id", "3")),
    ("an empty watch", _set("rois.0.watch", "")),
    ("a null student", _set("rois.0.student", None)),
    ("an unknown reason", _set("teacher.reason", "bored")),
    ("a reason when the teacher did not run", lambda d: d["teacher"].update(ran=False)),
    ("a change beyond 255 grey levels", _set("teacher.change", 300.0)),
    ("a NaN timing", _set("timing_ms.crop", math.nan)),
    ("no frame", _drop("frame")),
    ("no timing", _drop("timing_ms")),
    ("no student stage", _drop("timing_ms.student")),
    ("no ROI score", _drop("rois.0.score")),
    ("no reason although the teacher ran", _drop("teacher.reason")),
    ("rois not a list", _set("rois", {})),
]


@pytest.fixture(scope="module")
def a_full_event(a_run) -> dict:
    """An event of the run with a teacher run, a change score and a watched ROI with a student's answer."""
    return next(e for e in a_run[1] if e["teacher"]["ran"] and "change" in e["teacher"] and e["rois"])


@pytest.mark.parametrize("what,change", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_event_is_refused(a_full_event, what, change):
    assert problems("event", a_full_event) == []
    event = copy.deepcopy(a_full_event)
    change(event)
    assert problems("event", event), f"the schema takes an event with {what}"


@pytest.mark.parametrize("line", [
    {"image": "a.jpg", "error": "no boxes", "boxes": []},
    {"image": "a.jpg", "error": "", "unreadable": True},
    {"image": "a.jpg", "error": "cannot read", "unreadable": False},
    {"image": "a.jpg", "width": 64, "height": 48, "topk": [{"class_id": 1, "label": "x", "score": 0.5}],
     "boxes": [], "timing_ms": {"preprocess": 1.0, "model": 2.0}},
    {"image": "a.jpg", "width": 64, "height": 48, "topk": [{"class_id": 1, "label": "x", "score": 0.5}],
     "boxes": [{"class_id": 1, "label": "x", "score": 0.5, "x1": 0, "y1": 0, "x2": 9, "y2": 9, "student": {}}],
     "timing_ms": {"preprocess": 1.0, "model": 2.0, "localize": 0.1}},
])
def test_a_broken_localize_line_is_refused(line):
    assert problems("localize", line)


def test_a_broken_status_is_refused(a_run):
    status = a_run[0].served["status.json"]
    for change in (_set("gpu", 1), _set("frames", -1), _drop("uptime_s"), _set("latency_ms.decode", {"median": 1.0}),
                   _set("sources.0.live", "yes") if status["sources"] else _set("sources", [{"name": "x"}])):
        broken = copy.deepcopy(status)
        change(broken)
        assert problems("status", broken)


def test_the_check_fails_on_a_bad_event_in_this_process_and_in_a_child(tmp_path):
    """What conftest relies on: the checker reports a bad message, also one a child process made."""
    checker = event_check.Checker(str(tmp_path))
    checker.record("event", {"frame": 0})
    assert len(checker.take()) == 1 and checker.take() == []
    code = ("from edge_cam.cascade import FrameResult\n"
            "from edge_cam.model import Prediction\n"
            "import numpy as np\n"
            "from edge_cam.preprocess import Resize\n"
            "p = Prediction(np.array([3]), np.array([0.9]), ['star'], np.zeros(10), None, Resize((8, 8), (8, 8), 1.0, 1.0))\n"
            "FrameResult(4, 1.0, 'x', True, p, None, reason='bored').to_event()\n"  # an unknown reason
            "FrameResult(5, 1.0, 'x', True, None, None).to_event()\n")  # hand-made: skipped
    env = {**os.environ, event_check.LOG_ENV: str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=scaled(60))
    assert proc.returncode == 0 and proc.stdout == proc.stderr == "", proc.stderr
    invalid = checker.take()
    assert len(invalid) == 1 and "child process" in invalid[0] and "bored" in invalid[0], invalid
    assert checker.skipped == 1 and checker.children == 1


def test_the_schemas_are_shipped_valid_and_documented():
    data = resources.files("edge_cam.data")
    for name in ("event.schema.json", "status.schema.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(data.joinpath(name).read_text()))
    if not DOC.is_file():
        pytest.skip(f"{DOC} is not beside this installed copy")
    doc = DOC.read_text(encoding="utf-8")
    event = json.loads(data.joinpath("event.schema.json").read_text())
    defs = event["$defs"]
    names = {*event["properties"], *defs["teacher"]["properties"], *defs["roi"]["properties"],
             *defs["timing_ms"]["properties"], *defs["localize_line"]["oneOf"][0]["properties"],
             *json.loads(data.joinpath("status.schema.json").read_text())["properties"]}
    prose = re.sub(r"```.*?```", "", doc, flags=re.S)  # the examples do not count
    quoted = {word for span in re.findall(r"`([^`]+)`", prose) for word in re.findall(r"\w+", span)}
    missing = sorted(names - quoted)
    assert not missing, f"docs/interfaces.md does not describe {missing}"
