"""Sources, the capture thread, static-scene reuse and several streams, with real files and a
real (loopback) network camera."""
import time

import cv2
import numpy as np
import pytest
from mjpeg_server import Camera

from edge_cam.cascade import Cascade
from edge_cam.errors import EdgeCamError
from edge_cam.model import Model
from edge_cam.source import Source, open_source, parse_source, read_video
from edge_cam.stream import StreamStats, run, stream


@pytest.fixture(scope="module")
def clip_frames(demo_data):
    import json
    frames = read_video(demo_data("demo_clip.mp4"))
    with open(demo_data("demo_clip.json")) as f:
        truth = json.load(f)
    return frames, truth


@pytest.fixture(scope="module")
def models(teacher_path, student_path):
    return Model(teacher_path), Model(student_path)


def write_clip(path, frames, fps=15):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return str(path)


def test_source_vocabulary():
    assert parse_source("0").kind == "camera" and parse_source("0").live
    assert parse_source("v4l2:///dev/video2").target == "/dev/video2"
    assert parse_source("csi://1").kind == "csi"
    assert parse_source("rtsp://cam/stream").kind == "rtsp"
    assert parse_source("http://cam/video.mjpg").kind == "http"
    assert parse_source("videotestsrc ! videoconvert ! appsink").kind == "gstreamer"
    assert not parse_source("file://nowhere/*.jpg").live


def test_missing_backends_and_dead_addresses_say_what_is_wrong():
    with pytest.raises(EdgeCamError, match="GStreamer"):
        Source("csi://0")
    with pytest.raises(EdgeCamError, match="GStreamer"):
        Source("videotestsrc ! appsink")
    with pytest.raises(EdgeCamError, match="cannot be opened"):
        Source("rtsp://127.0.0.1:9/none")
    with pytest.raises(EdgeCamError, match="MJPEG"):
        Source("http://127.0.0.1:9/none.mjpg")


def test_files_are_lossless_and_in_order_even_for_a_slow_consumer(clip_frames, tmp_path):
    path = write_clip(tmp_path / "c.avi", clip_frames[0][:40])
    src = Source(path)
    seen = []
    for f in src:
        time.sleep(0.005)
        seen.append(f.index)
    assert seen == list(range(40)) and src.stats.dropped == 0 and src.total == 40


def test_loop_restarts_a_file(clip_frames, tmp_path, models):
    path = write_clip(tmp_path / "c.avi", clip_frames[0][:10])
    stats = run(Cascade(models[0]), [open_source(path, loop=True)], max_frames=25, status=None)
    assert stats.frames == 25


def static_clip(frame, n, rng, noise=2.0):
    return [np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).astype(np.uint8) for _ in range(n)]


def test_static_scene_reuses_the_teacher_and_keeps_the_rois_right(clip_frames, models, tmp_path):
    frames, truth = clip_frames
    rng = np.random.default_rng(0)
    a, b = 10, 10 + len(frames) // 2  # two scenes with different objects
    assert truth["frames"][a]["class_id"] != truth["frames"][b]["class_id"]
    clip = static_clip(frames[a], 100, rng) + static_clip(frames[b], 100, rng)
    path = write_clip(tmp_path / "static.avi", clip)
    teacher, student = models
    with open_source(path) as source:
        results = list(stream(Cascade(teacher, student, every=60, change=6.0), [source]))
    runs = [r.frame for r in results if r.teacher_ran]
    print(f"static clip: teacher ran on {len(runs)} of {len(results)} frames: {runs}")
    assert len(results) == 200 and len(runs) <= 8
    assert 100 in runs and results[100].reason == "change"  # the scene change is caught at once
    gt = [truth["frames"][a], truth["frames"][b]]
    for r in results:
        g = gt[r.frame // 100]
        box = r.rois[0].box
        iou = box.iou(type(box)(*g["box"]))
        assert iou >= 0.3, (r.frame, iou)
        assert r.rois[0].student.class_id == g["class_id"]


def test_a_moving_object_brings_the_teacher_back_though_the_frame_hardly_changes(clip_frames, models):
    """A small object moving over a still background barely changes the whole frame's thumbnail;
    its crop changes, and that alone must bring the teacher back before the crop loses it."""
    from edge_cam.cascade import thumbnail
    from edge_cam.localize import Box
    frames, truth = clip_frames
    segment = frames[:30]  # one glyph drifting and turning on one background
    assert len({g["class_id"] for g in truth["frames"][:30]}) == 1
    teacher, student = models
    whole = [float(np.abs(thumbnail(f) - thumbnail(segment[0])).mean()) for f in segment]
    assert max(whole) < 10.0  # the whole-frame score alone would never fire
    cascade = Cascade(teacher, student, every=1000, change=10.0)
    results = [cascade.process(f) for f in segment]
    reruns = [r.frame for r in results[1:] if r.teacher_ran]
    assert reruns and all(results[i].reason == "change" for i in reruns)
    start = Box(*truth["frames"][0]["box"])
    assert Box(*truth["frames"][29]["box"]).iou(start) < 0.5  # it really moved
    for r, g in zip(results, truth["frames"][:30]):  # and the ROI kept up with it
        assert r.rois and r.rois[0].box.iou(Box(*g["box"])) >= 0.3, r.frame
    still = Cascade(teacher, student, every=1000, change=10.0)
    assert sum(still.process(segment[0]).teacher_ran for _ in range(30)) == 1


def test_several_streams_batch_the_teacher_and_match_single_runs(clip_frames, models, tmp_path):
    frames, _ = clip_frames
    paths = [write_clip(tmp_path / f"s{i}.avi", frames[i * 30:i * 30 + 20]) for i in range(4)]
    teacher, student = models
    calls = []
    original = teacher.predict_batch

    def spy(frames_, *a, **kw):
        out = original(frames_, *a, **kw)
        calls.append(len(out))
        return out

    teacher.predict_batch = spy
    try:
        stats = StreamStats()
        together = list(stream(Cascade(teacher, student), [open_source(p) for p in paths], stats=stats))
    finally:
        teacher.predict_batch = original
    assert len(together) == 80 and max(calls) == 4 and stats.skipped == 0
    for i, p in enumerate(paths):
        with open_source(p) as source:
            alone = list(stream(Cascade(teacher, student), [source]))
        mine = [r for r in together if r.stream == i]
        assert [r.frame for r in mine] == list(range(20))
        for x, y in zip(mine, alone):
            assert x.teacher.class_id == y.teacher.class_id
            assert x.rois[0].box.iou(y.rois[0].box) > 0.99
            assert x.rois[0].student.class_id == y.rois[0].student.class_id


def test_network_camera_drop_is_survived(clip_frames, models):
    cam = Camera(clip_frames[0][:50], fps=60, drop_after=15, down_for=1.0)
    try:
        with Source(cam.url, max_backoff=0.5) as src:
            results = list(stream(Cascade(*models, every=5), [src], max_frames=40))
    finally:
        cam.close()
    assert len(results) == 40
    assert src.stats.reconnects >= 1 and cam.connections >= 2
    assert all(r.rois and r.rois[0].student for r in results)


def test_live_source_keeps_only_the_newest_frame(clip_frames):
    cam = Camera(clip_frames[0][:50], fps=200)
    try:
        src = Source(cam.url)
        indexes = []
        for f in src:
            time.sleep(0.03)  # a consumer slower than the camera
            indexes.append(f.index)
            if len(indexes) == 15:
                break
        src.close()
    finally:
        cam.close()
    assert src.stats.dropped > 0
    assert indexes == sorted(indexes) and indexes[-1] - indexes[0] > 15
