import json

from edge_cam.tools.demo import run_demo


def test_demo_runs_end_to_end_and_the_crop_beats_the_whole_frame(tmp_path):
    s = run_demo(str(tmp_path / "demo"), quiet=True)
    a = s["accuracy"]
    assert s["frames"] >= 200 and s["teacher_runs"] < s["frames"]
    assert a["cascade_student_on_cam_crop"] >= a["student_whole_frame"] + 0.2
    assert a["teacher_every_frame"] >= 0.9
    events = (tmp_path / "demo" / "events.jsonl").read_text().splitlines()
    assert len(events) == s["frames"] and json.loads(events[0])["frame"] == 0
    assert (tmp_path / "demo" / "annotated.mp4").stat().st_size > 10_000
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["frames"] == s["frames"]
    # The teacher's median is over the frames where it ran (not 0 from the frames that reused its map),
    # and compute figures are medians of repeated passes.
    assert s["latency_ms"]["teacher"]["median"] > s["latency_ms"]["student"]["median"] > 0
    saving = s["cascade_saving"]
    assert s["timing_passes"] == 3 and saving["min"] <= saving["median"] <= saving["max"] and saving["median"] > 1
