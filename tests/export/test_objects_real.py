"""One ROI per object and watch groups on real footage: frame 0 of bottle-detection.mp4 shows three
water bottles side by side, their centres at x ≈ 88, 316 and 540 of 640 (measured by eye)."""
import os
import sys

import cv2
import numpy as np
import pytest

from edge_cam.localize import BoxRule
from edge_cam.model import Model
from edge_cam.watch import WatchList

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))  # loc_sets: the mosaics

BOTTLES_X = (88, 316, 540)


@pytest.fixture(scope="module")
def frame0(shared_data):
    cap = cv2.VideoCapture(str(shared_data / "videos" / "bottle-detection.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (360, 640, 3)
    return frame


@pytest.fixture(scope="module")
def wide_teacher(shared_data, tmp_path_factory):
    """The real MobileNetV2 at 288×512, the whole frame stretched (16×9 map cells instead of 7×7),
    with the maps of all 1000 classes so that any watch group's members have theirs; the paper's 20%
    (ImageNet exports default to 0.56, chosen for 7×7 maps at 224: on this finer map it leaves some
    bottle boxes under 150 pixels tall, for bottles about 210 tall)."""
    from edge_cam_export import export
    path = str(tmp_path_factory.mktemp("wide") / "mnv2_288x512.onnx")
    result = export("torchvision:mobilenet_v2", path, weights=str(shared_data / "models" / "mobilenet_v2_imagenet.pt"),
                    resize="stretch", input_size=(288, 512), top_k=1000, threshold=0.2, fuse_top=1, quiet=True)
    assert all(r.ok for r in result.reports)
    return Model(path)


def one_box_per_bottle(boxes):
    centres = sorted((b.x1 + b.x2) / 2 for b in boxes)
    assert len(boxes) == 3, [(b.x1, b.x2) for b in boxes]
    assert [int(c // (640 / 3)) for c in centres] == [0, 1, 2]  # one in each third
    assert centres == pytest.approx(BOTTLES_X, abs=45)
    for b in boxes:  # each box holds exactly one bottle's centre
        assert sum(b.x1 <= x <= b.x2 for x in BOTTLES_X) == 1


def test_objects_mode_gives_one_roi_per_bottle_at_288x512(wide_teacher, frame0):
    pred = wide_teacher.predict(frame0)
    assert pred.label == "water bottle"
    heat, boxes = BoxRule.for_model(wide_teacher.info.cam, mode="objects").localize(pred)
    one_box_per_bottle(boxes)
    assert all(b.height > 150 for b in boxes)  # the bottles stand from y ≈ 105 to 315
    assert BoxRule.for_model(wide_teacher.info.cam, mode="objects", max_rois=2).localize(pred)[1] == boxes[:2]


def test_the_bottle_group_is_watched_and_localised_per_bottle(wide_teacher, frame0):
    pred = wide_teacher.predict(frame0)
    watch = WatchList.parse(["bottle", "car"], wide_teacher.info.labels)
    scores = dict(zip(watch.names, watch.scores(pred.logits)))
    p = np.exp(pred.logits - pred.logits.max())
    p /= p.sum()
    assert scores["bottle"] == pytest.approx(p[list(watch.targets[0].class_ids)].sum())
    assert scores["bottle"] > pred.score and scores["car"] < 0.01
    (bottle,) = watch.watch(pred.logits, pred.class_ids, pred.cams, min_score=0.5)  # no car
    assert (bottle.name, bottle.class_id, bottle.label) == ("bottle", 898, "water bottle")
    _, boxes = BoxRule(mode="objects").localize_cam(bottle.cam, pred.resize, bottle.class_id, bottle.name, bottle.score)
    one_box_per_bottle(boxes)
    assert all(b.label == "bottle" for b in boxes)


def test_the_224_centre_crop_sees_the_middle_bottle_only(mobilenet_v2_path, frame0):
    """Why the whole frame and a larger input: the weights' own protocol (centre crop 224) cuts the
    outer bottles off, and the 7×7 map of the stretched frame has two peaks for three bottles."""
    model = Model(mobilenet_v2_path)
    (box,) = BoxRule(mode="objects").localize(model.predict(frame0))[1]
    assert box.x1 <= BOTTLES_X[1] <= box.x2 and not box.x1 <= BOTTLES_X[0] and not BOTTLES_X[2] <= box.x2


def test_the_car_group_makes_no_roi_on_the_empty_lane(wide_teacher, shared_data):
    """car-detection.mp4 (768×432, a parking lane seen from above). Looked at: frames 0, 150 and 280
    show the empty lane (the teacher's top-1 there is "black widow"); 72, 192 and 336 show cars, 192
    two of them (a white one near (194, 72), a red one near (408, 400))."""
    cap = cv2.VideoCapture(str(shared_data / "videos" / "car-detection.mp4"))
    frames = {}
    for i in range(337):
        ok, frame = cap.read()
        assert ok
        if i in (0, 72, 150, 192, 280, 336):
            frames[i] = frame
    cap.release()
    watch = WatchList.parse(["car"], wide_teacher.info.labels)
    seen = {}
    for i, frame in frames.items():
        pred = wide_teacher.predict(frame)
        seen[i] = watch.watch(pred.logits, pred.class_ids, pred.cams, min_score=0.015)
        if i == 192:
            boxes = BoxRule(mode="objects").localize_cam(seen[i][0].cam, pred.resize)[1]
    assert [i for i, w in seen.items() if w] == [72, 192, 336]  # measured: empty ≤ 0.005, cars ≥ 0.04
    assert len(boxes) == 2
    for x, y in ((194, 72), (408, 400)):
        assert sum(b.x1 <= x <= b.x2 and b.y1 <= y <= b.y2 for b in boxes) == 1


def test_object_level_finds_the_smaller_animals_of_raccoon_mosaics_at_448(shipped_mobilenet_v2_path, shared_data,
                                                                         tmp_path):
    """2x2 mosaics of the odd-numbered raccoon photos (benchmarks/loc_sets.py's, as the localisation
    benchmark measures them: four smaller animals a frame) at --input-size 448. Measured on these 6:
    object_level 0.45 finds 0.69 of the raccoons at precision 0.78; the map-wide threshold alone 0.35
    at 0.45 (a hot raccoon sets the max and the cooler ones fall under 0.56 of it)."""
    from loc_sets import mosaics, raccoon_halves

    from edge_cam.measure.evaluate import matches
    from edge_cam.source import read_image
    model = Model(shipped_mobilenet_v2_path, input_size=(448, 448))
    found = {None: [0, 0], 0.45: [0, 0]}
    truths = 0
    for mosaic in mosaics(raccoon_halves(shared_data)[1][:24], str(tmp_path)):
        pred = model.predict(read_image(mosaic.image))
        truths += len(mosaic.boxes)
        for level, counts in found.items():
            rule = BoxRule.for_model(model.info.cam, mode="objects", max_rois=4, object_level=level)
            got = rule.localize(pred)[1]
            counts[0] += matches(got, mosaic.boxes)
            counts[1] += len(got)
    (hits, predicted), (hits0, _) = found[0.45], found[None]
    print(f"object_level 0.45: {hits} of {truths} found with {predicted} boxes; map-wide: {hits0}")
    assert hits / truths >= 0.6 and hits / predicted >= 0.65, (hits, predicted, truths)
    assert hits0 / truths < 0.45
