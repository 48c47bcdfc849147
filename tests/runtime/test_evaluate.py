"""Localisation metrics on hand-made cases, and calibration stored in a model's metadata."""
import json
import subprocess
import sys

import cv2
import numpy as np

from edge_cam.localize import Box
from edge_cam.metadata import ModelInfo, rewrite_metadata
from edge_cam.model import Model
from edge_cam.preprocess import resize
from edge_cam.tools.evaluate import IOU_LEVELS, Annotation, evaluate, hit, read_labelled, read_voc, read_yolo_dir


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
