"""Localisation metrics on hand-made cases, and calibration stored in a model's metadata."""
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

from edge_cam.errors import EdgeCamError
from edge_cam.localize import Box
from edge_cam.measure.evaluate import IOU_LEVELS, Annotation, evaluate, hit, matches
from edge_cam.measure.labelled import load_labelled, read_labelled, read_voc, read_yolo_dir
from edge_cam.metadata import ModelInfo, rewrite_metadata
from edge_cam.model import Model
from edge_cam.preprocess import resize


def test_hit_uses_the_best_ground_truth_box():
    truth = [Box(0, 0, 10, 10), Box(20, 0, 30, 10)]
    assert hit(Box(20, 0, 30, 10), truth)
    assert not hit(Box(5, 0, 15, 10), truth)  # IoU 1/3 with both
    assert hit(Box(0, 0, 10, 12), truth)  # IoU 100/120
    assert not hit(None, truth)


def test_voc_and_yolo_readers(tmp_path):
    (tmp_path / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>100</width><height>50</height></size>"
        "<object><name>x</name><bndbox><xmin>11</xmin><ymin>6</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>"
        "</annotation>")
    a = read_voc(str(tmp_path / "a.xml"))
    assert (a.width, a.height) == (100, 50) and a.boxes[0] == Box(10, 5, 30, 40, label="x")
    (tmp_path / "y" / "images").mkdir(parents=True)
    (tmp_path / "y" / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "y" / "images" / "p.png"), np.zeros((50, 100, 3), np.uint8))
    (tmp_path / "y" / "labels" / "p.txt").write_text("3 0.5 0.5 0.2 0.4\n")
    (y,) = read_yolo_dir(str(tmp_path / "y"))
    assert y.boxes[0] == Box(40, 15, 60, 35, class_id=3)
    assert read_labelled(yolo=str(tmp_path / "y"))[0].boxes == y.boxes


class FakeModel:
    """Serves hand-made CAMs through the Model interface evaluate() uses."""
    class_query = False  # a teacher that maps its top-K only

    def __init__(self, cams):
        self.cams = iter(cams)
        from edge_cam.metadata import CamSpec, InputSpec
        self.info = ModelInfo(InputSpec((40, 40)), cam=CamSpec(threshold=0.5))

    def predict(self, image, classes=None):
        from types import SimpleNamespace
        cam = next(self.cams)
        _, r = resize(image if image.ndim == 3 else image[..., None].repeat(3, 2), (40, 40))
        return SimpleNamespace(class_ids=np.array([0]), scores=np.array([1.0]), labels=["x"], cams=cam[None],
                               resize=r)


def test_max_box_acc_on_known_maps(tmp_path):
    # Image 1: a 2-level map; a box of IoU 1.0 at thresholds in (0.25, 0.5], IoU 0.25 above.
    # Image 2: two blobs; the best-matching one (not the largest) is right at every threshold.
    img = tmp_path / "i.png"
    cv2.imwrite(str(img), np.zeros((40, 40, 3), np.uint8))
    cam1 = np.zeros((40, 40), np.float32)
    cam1[0:20, 0:20] = 0.5
    cam1[0:10, 0:10] = 1.0
    cam2 = np.zeros((40, 40), np.float32)
    cam2[0:30, 0:30] = 1.0  # large, wrong
    cam2[35:40, 35:40] = 1.0  # small, right
    anns = [Annotation(str(img), 40, 40, [Box(0, 0, 20, 20)]), Annotation(str(img), 40, 40, [Box(35, 35, 40, 40)])]
    e = evaluate(FakeModel([cam1, cam2]), anns, thresholds=np.array([0.2, 0.4, 0.6, 0.9]))
    np.testing.assert_allclose(e.best_iou[0], [1.0, 1.0, 0.25, 0.25])
    np.testing.assert_allclose(e.best_iou[1], [1.0, 1.0, 1.0, 1.0])
    assert e.max_box_acc == {0.3: 1.0, 0.5: 1.0, 0.7: 1.0}
    np.testing.assert_allclose(e.box_acc[0.5], [1.0, 1.0, 0.5, 0.5])
    assert e.max_box_acc_v2 == 1.0
    # The model's own rule (threshold 0.5, largest box) hits image 1 only.
    assert e.corloc == 0.5 and set(IOU_LEVELS) == set(e.box_acc)


def test_rewrite_metadata_replaces_and_keeps_everything_else(teacher_path, tmp_path):
    out = str(tmp_path / "t.onnx")
    rewrite_metadata(teacher_path, out, {"edge_cam.labels": json.dumps(list("abcdefghij")), "extra": "1"})
    m = Model(out)
    assert m.info.labels == list("abcdefghij")
    assert m.session.get_modelmeta().custom_metadata_map["extra"] == "1"
    a, b = Model(teacher_path), m
    frame = np.full((60, 80, 3), 90, np.uint8)
    np.testing.assert_array_equal(a.predict(frame).cams, b.predict(frame).cams)


def test_calibrate_writes_a_rule_that_localize_uses(teacher_path, demo_data, tmp_path):
    # A labelled set in YOLO layout from the demo clip's ground truth.
    with open(demo_data("demo_clip.json")) as f:
        truth = json.load(f)
    (tmp_path / "set" / "images").mkdir(parents=True)
    (tmp_path / "set" / "labels").mkdir()
    cap = cv2.VideoCapture(demo_data("demo_clip.mp4"))
    w, h = truth["width"], truth["height"]
    for g in truth["frames"][::10]:
        cap.set(cv2.CAP_PROP_POS_FRAMES, g["frame"])
        frame = cap.read()[1]
        cv2.imwrite(str(tmp_path / "set" / "images" / f"{g['frame']:04d}.png"), frame)
        x1, y1, x2, y2 = g["box"]
        (tmp_path / "set" / "labels" / f"{g['frame']:04d}.txt").write_text(
            f"{g['class_id']} {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}\n")
    out = tmp_path / "calibrated.onnx"
    proc = subprocess.run([sys.executable, "-m", "edge_cam", "calibrate", teacher_path, "--yolo",
                           tmp_path / "set", "-o", out], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    cal = Model(out).info
    stored = cal.source["calibration"]["rule"]
    assert (cal.cam.threshold, cal.cam.box_mode, cal.cam.min_area) == (stored["threshold"], stored["mode"],
                                                                       stored["min_area"])
    held = cal.source["calibration"]["held_out_half"]
    assert held["calibrated"] >= held["baseline"] - 0.05
    ev = subprocess.run([sys.executable, "-m", "edge_cam", "eval", out, "--yolo", tmp_path / "set",
                         "--plot", tmp_path / "curve.png", "--json", tmp_path / "e.json"],
                        capture_output=True, text=True)
    assert ev.returncode == 0, ev.stderr
    assert f"threshold {stored['threshold']:g}, {stored['mode']} box" in ev.stdout
    assert cv2.imread(str(tmp_path / "curve.png")).shape[:2] == (420, 640)
    assert json.loads((tmp_path / "e.json").read_text())["images"] == len(truth["frames"][::10])


def test_matches_counts_each_truth_once_hottest_box_first():
    truth = [Box(0, 0, 10, 10), Box(20, 0, 30, 10)]
    assert matches([Box(0, 0, 10, 10), Box(1, 0, 11, 10), Box(20, 0, 30, 10)], truth) == 2  # the 2nd finds no free truth
    assert matches([Box(0, 0, 30, 10)], truth) == 0  # one box over both: IoU 1/3 with each
    assert matches([], truth) == 0 and matches([Box(0, 0, 1, 1)], []) == 0


class TopModel(FakeModel):
    """FakeModel whose top-1 class is given per image, with class queries (GT-known maps)."""
    class_query = True

    def __init__(self, cams, top1):
        super().__init__(cams)
        self.top1 = iter(top1)

    def predict(self, image, classes=None):
        p = super().predict(image)
        c = next(self.top1)
        p.class_ids, p.class_id = np.array([c]), c
        p.rank_of = lambda k: 0 if k == c else None
        p.cam_of = lambda k, cam=p.cams[0]: cam  # the given class's map: the same hand-made map
        return p


def test_objects_recall_precision_and_top1_localisation_on_known_maps(tmp_path):
    img = tmp_path / "i.png"
    cv2.imwrite(str(img), np.zeros((40, 40, 3), np.uint8))
    two = np.zeros((40, 40), np.float32)  # two separate blobs, both objects
    two[2:12, 2:12] = 1.0
    two[25:38, 25:38] = 0.9
    one = np.zeros((40, 40), np.float32)
    one[0:20, 0:20] = 1.0
    anns = [Annotation(str(img), 40, 40, [Box(2, 2, 12, 12), Box(25, 25, 38, 38)]),
            Annotation(str(img), 40, 40, [Box(0, 0, 20, 20), Box(30, 30, 40, 40)])]  # the second object has no map
    e = evaluate(TopModel([two, one], [7, 3]), anns, class_id=7, thresholds=np.array([0.5]))
    assert (e.objects.found, e.objects.predicted, e.objects.truths) == (3, 3, 4)
    assert e.objects.recall == 0.75 and e.objects.precision == 1.0
    assert e.corloc == 1.0 and e.top1 == 0.5 and e.top1_loc == 0.5  # image 2: box right, class wrong
    d = e.to_dict()
    assert d["top1_loc_iou50"] == 0.5 and d["objects"]["recall_iou50"] == 0.75 and d["skipped"] == []
    assert evaluate(FakeModel([two]), anns[:1], thresholds=np.array([0.5])).top1_loc is None  # GT-unknown: n/a


def _raccoon_set(shared_data, root, n=12):
    """n real raccoon photos and their VOC annotations, copied (annotations/ + images/)."""
    src = shared_data / "raccoon"
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    names = sorted(p.stem for p in (src / "annotations").glob("*.xml"))[:n]
    for name in names:
        shutil.copy(src / "annotations" / f"{name}.xml", root / "annotations")
        shutil.copy(src / "images" / f"{name}.jpg", root / "images")
    return names


def _huge_png(path):
    """A valid PNG header claiming 60000x60000 pixels (3.6 gigapixels), with a tiny body."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_eval_and_calibrate_skip_and_name_unreadable_photos_and_annotations(teacher_path, shared_data, tmp_path):
    root = tmp_path / "set"
    names = _raccoon_set(shared_data, root)
    (root / "images" / f"{names[1]}.jpg").unlink()  # deleted
    (root / "images" / f"{names[2]}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG after all" * 20)  # corrupt
    _huge_png(root / "images" / f"{names[3]}.jpg")  # too large to decode
    xml = root / "annotations" / f"{names[4]}.xml"
    xml.write_text(xml.read_text()[:120])  # cut short: malformed XML
    cmd = [sys.executable, "-m", "edge_cam"]
    ev = subprocess.run(cmd + ["eval", teacher_path, "--voc", root, "--json", tmp_path / "e.json"],
                        capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr
    assert "4 of 12 photos unreadable:" in ev.stdout and "the other 8" in ev.stdout
    for n in names[1:5]:
        assert n in ev.stdout and n in ev.stderr
    assert "Traceback" not in ev.stderr
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["images"] == 8 and e["photos_in_set"] == 12
    assert sorted(os.path.basename(s["path"]).split(".")[0] for s in e["skipped"]) == sorted(names[1:5])
    assert all(s["reason"] for s in e["skipped"])
    assert e["objects"]["ground_truth_boxes"] >= 8 and e["top1_loc_iou50"] is None
    cal = subprocess.run(cmd + ["calibrate", teacher_path, "--voc", root, "-o", tmp_path / "c.onnx"],
                         capture_output=True, text=True, timeout=300)
    assert cal.returncode == 0, cal.stderr
    assert "4 of 12 photos unreadable:" in cal.stdout and "Traceback" not in cal.stderr
    assert "the held-out half alone would have chosen threshold" in cal.stdout
    stored = Model(tmp_path / "c.onnx").info.source["calibration"]
    assert stored["images"] == 8 and len(stored["skipped"]) == 4
    for p in (root / "images").iterdir():  # nothing readable left: an error, not figures over nothing
        p.write_bytes(b"garbage")
    for sub in ("eval", "calibrate"):
        args = [teacher_path, "--voc", root] + (["-o", tmp_path / "d.onnx"] if sub == "calibrate" else [])
        bad = subprocess.run(cmd + [sub, *args], capture_output=True, text=True, timeout=300)
        assert bad.returncode == 2 and "none of the 12 photos of the set could be read" in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr and not (tmp_path / "d.onnx").exists()


def test_yolo_set_skips_an_unreadable_image(tmp_path):
    root = tmp_path / "y"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(root / "images" / f"{name}.png"), np.zeros((50, 100, 3), np.uint8))
        (root / "labels" / f"{name}.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    (root / "images" / "b.png").write_bytes(b"garbage")
    ls = load_labelled(yolo=str(root))
    assert [os.path.basename(a.image) for a in ls.annotations] == ["a.png"]
    assert [os.path.basename(s.path) for s in ls.skipped] == ["b.png"] and "not a readable image" in ls.skipped[0].reason
    with pytest.raises(EdgeCamError, match="b.png"):
        read_yolo_dir(str(root))
