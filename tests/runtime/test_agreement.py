"""The student checked against its teacher where the teacher runs: the rolling agreement, its alarm,
and how `run` reports them (summary, events, /metrics), on the bundled models and clip."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import cv2
import numpy as np
import pytest

from edge_cam.agreement import MIN_CHECKS, Agreement, Check, Referee
from edge_cam.cascade import Cascade, FrameResult
from edge_cam.errors import EdgeCamError
from edge_cam.model import Model
from edge_cam.sinks.collect import CollectSink
from edge_cam.sinks.preview import PreviewServer
from edge_cam.source import open_source
from edge_cam.stream import StreamStats, stream
from edge_cam.watch import WatchList


def checks(pattern: str, confident: bool = True) -> list[Check]:
    return [Check("a", "a" if c == "1" else "b", confident) for c in pattern]


def test_the_rolling_agreement_counts_confident_checks_of_its_window():
    a = Agreement(window=4)
    assert a.value is None
    for c in checks("1100"):
        assert a.add(c) is None  # no alarm level: never an alarm
    assert a.value == 0.5
    for c in checks("00", confident=False):  # the teacher unsure: the frame does not count
        a.add(c)
    assert (a.value, a.checks, a.agreed, a.seen) == (0.5, 4, 2, 6)
    for c in checks("11"):
        a.add(c)
    assert a.value == 0.5  # the window: the latest 4 confident checks, 0 0 1 1
    assert "4 of 6 confident teacher frames (66.7%; latest 4: 50.0%)" in a.summary()


def test_the_alarm_is_raised_once_when_agreement_drops_and_cleared_when_it_is_back():
    a = Agreement(window=100, alarm=0.8)
    first = [a.add(c) for c in checks("1" * (MIN_CHECKS - 5) + "0" * 4)]
    assert first == [None] * len(first)  # below 0.8 (15 of 19), but too few checks to call it a drift
    raised = a.add(checks("0")[0])  # 15 of 20
    assert raised is not None and raised.state == "raised" and raised.checks == MIN_CHECKS
    assert raised.to_dict() == {"state": "raised", "student_agreement": 0.75, "below": 0.8, "checks": MIN_CHECKS}
    # 15 of 25, then 35 of 45 (0.778): still below, no second alarm
    assert [a.add(c) for c in checks("0" * 5 + "1" * 20)] == [None] * 25
    assert [a.add(c) for c in checks("1111")] == [None] * 4  # 39 of 49
    cleared = a.add(checks("1")[0])  # 40 of 50: back at the level
    assert cleared is not None and cleared.to_dict() == {"state": "cleared", "student_agreement": 0.8, "below": 0.8,
                                                         "checks": 50}
    assert not a.raised


@pytest.mark.parametrize("window,alarm", [(0, None), (10, 0.0), (10, 1.5)])
def test_impossible_windows_and_levels_are_refused(window, alarm):
    with pytest.raises(ValueError):
        Agreement(window, alarm)


def test_the_referee_asks_the_teacher_the_students_question(teacher_path, student_path, demo_data):
    teacher, student = Model(teacher_path), Model(student_path)
    frame = next(f.image for f in open_source(demo_data("demo_clip.mp4")))
    pred = teacher.predict(frame)
    plain = Referee.between(teacher.info, student.info)
    assert plain.check(pred, pred.label) == Check(pred.label, pred.label, pred.score >= 0.5)
    assert plain.check(pred, None).student == "none" and not plain.check(pred, None).agree
    watch = WatchList.parse([pred.label], teacher.info.labels, num_classes=teacher.num_classes)
    asked = Referee.between(teacher.info, student.info, watch, min_score=0.3)
    p = float(watch.scores(pred.logits).max())
    check = asked.check(pred, None)  # no ROI with a watch list: the cascade says "other"
    assert check.teacher == (pred.label if p >= 0.3 else "other") and check.student == "other"
    assert check.confident == (p >= 0.6 or p < 0.15)


def test_the_cascade_checks_the_student_only_where_the_teacher_ran(teacher_path, student_path, demo_data):
    cascade = Cascade(Model(teacher_path), Model(student_path), every=5)
    stats = StreamStats(agreement=Agreement(alarm=0.5))
    with open_source(demo_data("demo_clip.mp4")) as source:
        results = list(stream(cascade, [source], max_frames=60, stats=stats))
    assert [r.check is not None for r in results] == [r.teacher_ran for r in results] == [i % 5 == 0 for i in range(60)]
    for r in results:
        if r.check is not None:
            assert r.check.student == r.rois[0].student.label and r.check.teacher == r.teacher.label
            event = r.to_event()
            assert event["check"] == r.check.to_dict()
        assert r.to_event()["student_agreement"] == round(r.agreement, 4)
    agreed = [r.check.agree for r in results if r.check is not None and r.check.confident]
    assert stats.agreement.value == pytest.approx(np.mean(agreed)) and stats.agreement.checks == len(agreed)
    assert Cascade(Model(teacher_path)).referee is None  # no student, nothing to check


def run_cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_cam", *map(str, argv)], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("alarm,raised", [(0.9, False), (0.99, True)])
def test_run_publishes_the_agreement_and_its_alarm(teacher_path, student_path, demo_data, tmp_path, alarm, raised):
    """The bundled student agrees with its teacher on 112 of the 114 confident teacher frames of the
    bundled clip (98.2%, every 5): an alarm at 0.99 goes off, one at 0.9 does not."""
    events = tmp_path / "events.jsonl"
    proc = run_cli("run", "--teacher", teacher_path, "--student", student_path, "--source",
                   demo_data("demo_clip.mp4"), "--every", "5", "--quiet", "--alarm", alarm, "--events", events)
    assert proc.returncode == 0, proc.stderr
    ev = [json.loads(line) for line in events.read_text().splitlines()]
    judged = [e["check"] for e in ev if "check" in e]
    assert len(judged) == sum(e["teacher"]["ran"] for e in ev) == 120
    confident = [c for c in judged if c["confident"]]
    agreed = sum(c["agree"] for c in confident)
    assert agreed / len(confident) > 0.95  # the bundled pair, on its own footage
    assert f"the student agreed with the teacher on {agreed} of {len(confident)} confident teacher frames" \
        in proc.stderr
    assert ev[-1]["student_agreement"] == round(agreed / len(confident), 4)
    alarms = [e["alarm"] for e in ev if "alarm" in e]
    assert bool(alarms) == raised and ("student agreement raised" in proc.stderr) == raised
    if raised:
        assert alarms[0]["state"] == "raised" and alarms[0]["student_agreement"] < 0.99


def test_the_preview_serves_the_agreement_as_a_metric(teacher_path, student_path, demo_data):
    cascade = Cascade(Model(teacher_path), Model(student_path), every=5)
    stats = StreamStats(agreement=Agreement(alarm=0.99))
    with PreviewServer(port=0) as preview, open_source(demo_data("demo_clip.mp4")) as source:
        preview.bind(stats, [source], [preview])
        for r in stream(cascade, [source], max_frames=200, stats=stats):
            preview.write(r)
            stats.add(r)
        text = urllib.request.urlopen(preview.url.rstrip("/") + "/metrics", timeout=10).read().decode()
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert float(lines["edge_cam_student_agreement"]) == pytest.approx(stats.agreement.value, abs=1e-4)
    assert int(lines["edge_cam_student_checks_total"]) == stats.agreement.checks > 0
    assert int(lines["edge_cam_student_alarm"]) == int(stats.agreement.raised)


def _result(frame: int, check: Check | None, image: np.ndarray | None = None) -> FrameResult:
    image = np.full((120, 160, 3), frame % 256, np.uint8) if image is None else image
    return FrameResult(frame, 1.0 + frame, "file:clip.mp4", check is not None, None, None, image=image, check=check,
                       run="0123456789abcdef", stream=1)


def test_collect_keeps_the_confident_disagreements_in_order(tmp_path):
    sink = CollectSink(str(tmp_path / "kept"))
    sink.write(_result(0, Check("car", "other", True)))
    sink.write(_result(1, None))  # the teacher did not run: nothing to compare
    sink.write(_result(2, Check("car", "car", True)))  # agreed
    sink.write(_result(3, Check("car", "other", False)))  # the teacher unsure: not a lesson
    sink.write(_result(12, Check("other", "car", True)))
    sink.close()
    files = sorted(p.name for p in (tmp_path / "kept").iterdir())
    assert files == ["01234567-1-00000000.jpg", "01234567-1-00000012.jpg", "collected.jsonl"]
    lines = [json.loads(x) for x in (tmp_path / "kept" / "collected.jsonl").read_text().splitlines()]
    assert [(e["file"], e["frame"], e["teacher"], e["student"]) for e in lines] == [
        ("01234567-1-00000000.jpg", 0, "car", "other"), ("01234567-1-00000012.jpg", 12, "other", "car")]
    assert sink.saved == 2 and sink.over_budget == 0
    back = cv2.imread(str(tmp_path / "kept" / files[1]))
    assert back.shape == (120, 160, 3) and abs(int(back.mean()) - 12) <= 1


def test_collect_stays_within_its_budget_counting_earlier_runs(tmp_path, caplog):
    folder = tmp_path / "kept"
    folder.mkdir()
    (folder / "earlier.jpg").write_bytes(b"x" * 80_000)
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), np.uint8)
    size = len(cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 95])[1])  # 23.5 kB
    sink = CollectSink(str(folder), budget_mb=(80_000 + size - 1) / 1e6)
    for i in range(5):
        sink.write(_result(i, Check("car", "other", True), noise))
    assert sink.saved == 0 and sink.over_budget == 5  # 80 kB there already: the next frame does not fit
    assert sum("no more frames are kept" in r.message for r in caplog.records) == 1
    roomy = CollectSink(str(folder), budget_mb=(80_000 + 2 * size) / 1e6)
    for i in range(5):
        roomy.write(_result(i, Check("car", "other", True), noise))
    assert (roomy.saved, roomy.over_budget, roomy.used) == (2, 3, 80_000 + 2 * size)
    with pytest.raises(EdgeCamError, match="budget must be above 0 MB"):
        CollectSink(str(folder), budget_mb=0)


def test_run_collects_what_its_events_say_the_student_got_wrong(teacher_path, student_path, demo_data, tmp_path):
    events, kept = tmp_path / "events.jsonl", tmp_path / "kept"
    proc = run_cli("run", "--teacher", teacher_path, "--student", student_path, "--source",
                   demo_data("demo_clip.mp4"), "--every", "5", "--quiet", "--events", events, "--collect", kept)
    assert proc.returncode == 0, proc.stderr
    wrong = [e["frame"] for e in map(json.loads, events.read_text().splitlines())
             if "check" in e and e["check"]["confident"] and not e["check"]["agree"]]
    assert wrong  # the bundled student errs on a few of its own clip's frames
    lines = [json.loads(x) for x in (kept / "collected.jsonl").read_text().splitlines()]
    assert [e["frame"] for e in lines] == wrong and len(list(kept.glob("*.jpg"))) == len(wrong)
    assert f"collected {len(wrong)} frames where the student disagreed into {kept}" in proc.stderr
