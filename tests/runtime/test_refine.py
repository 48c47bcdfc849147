"""GrabCut refinement (`--refine grabcut`): boxes fitted to the object's colours, seeded by the map."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge_cam.localize import Box, HeatMap, boxes_from_heat
from edge_cam.preprocess import resize
from edge_cam.refine import grabcut_box, refine_boxes


def scene(noise_seed=0):
    """A red square (x 200-330, y 120-250) on a textured grey background, 480x640 BGR."""
    rng = np.random.default_rng(noise_seed)
    img = rng.integers(90, 150, (480, 640, 3)).astype(np.uint8)
    img[120:250, 200:330] = (40, 40, 220)
    return img


def coarse_heat(img, centre=(265, 185), sigma=90.0):
    """A blurry 7x7-like map around the square, too wide, as a CAM at stride 32 is."""
    _, r = resize(img, (224, 224), "stretch")
    ys, xs = np.mgrid[0:7, 0:7]
    cx, cy = centre[0] * 7 / 640, centre[1] * 7 / 480
    cam = np.exp(-((xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2) / (2 * (sigma / 91) ** 2)).astype(np.float32)
    return HeatMap.from_cam(cam, r)


def test_grabcut_fits_the_box_to_the_object():
    img = scene()
    heat = coarse_heat(img)
    (box,) = boxes_from_heat(heat, 0.3)
    truth = Box(200, 120, 330, 250)
    assert box.iou(truth) < 0.6  # the map alone spills well past the square
    refined = grabcut_box(img, heat, box, 0.3)
    assert refined.iou(truth) > 0.85, refined
    assert (refined.class_id, refined.label, refined.score) == (box.class_id, box.label, box.score)
    assert refine_boxes(img, heat, [box], 0.3, "none") == [box]
    with pytest.raises(ValueError, match="^refine: unknown refinement 'snake'"):
        refine_boxes(img, heat, [box], 0.3, "snake")


def test_grabcut_keeps_the_box_when_there_is_nothing_to_tell_apart():
    img = scene()
    _, r = resize(img, (224, 224), "stretch")
    flat = HeatMap.from_cam(np.ones((7, 7), np.float32), r)  # every pixel "hot": no background seed
    box = Box(0, 0, 640, 480)
    assert grabcut_box(img, flat, box, 0.5) == box
    grey = np.full((1, 1, 3), 128, np.uint8)  # a 1x1 frame
    _, r1 = resize(grey, (224, 224), "stretch")
    tiny = HeatMap.from_cam(np.eye(7, dtype=np.float32), r1)
    assert grabcut_box(grey, tiny, Box(0, 0, 1, 1), 0.5) == Box(0, 0, 1, 1)


def test_localize_and_eval_take_refine_grabcut(teacher_path, tmp_path):
    img = tmp_path / "s.png"
    cv2.imwrite(str(img), scene())
    cmd = [sys.executable, "-m", "edge_cam"]
    out = subprocess.run(cmd + ["localize", teacher_path, str(img), "--refine", "grabcut"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = json.loads(out.stdout.splitlines()[0])
    assert line["boxes"] and all(0 <= b["x1"] < b["x2"] <= 640 for b in line["boxes"])
    bad = subprocess.run(cmd + ["localize", teacher_path, str(img), "--refine", "snake"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    (tmp_path / "s.xml").write_text(
        "<annotation><filename>s.png</filename><size><width>640</width><height>480</height></size><object>"
        "<name>square</name><bndbox><xmin>201</xmin><ymin>121</ymin><xmax>330</xmax><ymax>250</ymax></bndbox>"
        "</object></annotation>")
    ev = subprocess.run(cmd + ["eval", teacher_path, "--voc", str(tmp_path), "--refine", "grabcut", "--json",
                               str(tmp_path / "e.json")], capture_output=True, text=True, timeout=120)
    assert ev.returncode == 0, ev.stderr
    assert "refined by grabcut" in ev.stdout
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["refine"] == "grabcut" and e["images"] == 1
