import cv2
import numpy as np
import pytest

from edge_cam.localize import Box, BoxRule, HeatMap, boxes_from_heat
from edge_cam.preprocess import resize


def test_box_iou_of_known_overlap():
    a = Box(0, 0, 10, 10)
    assert a.iou(Box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert a.iou(Box(0, 0, 10, 10)) == 1.0
    assert a.iou(Box(20, 20, 30, 30)) == 0.0
    assert a.iou(Box(2, 2, 4, 4)) == pytest.approx(4 / 100)


def full_resolution_box(cam, frame_size, threshold=0.2):
    """The CAM paper's reference way: upsample the CAM to the whole image, then threshold."""
    h, w = frame_size
    up = cv2.resize(cam.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    up = (up - up.min()) / (up.max() - up.min())
    n, _, stats, _ = cv2.connectedComponentsWithStats((up >= threshold).astype(np.uint8), connectivity=8)
    i = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, bw, bh = stats[i, :4]
    return Box(x, y, x + bw, y + bh)


@pytest.mark.parametrize("frame_size", [(480, 640), (3000, 4000), (333, 517)])
@pytest.mark.parametrize("seed", range(5))
def test_low_resolution_box_equals_full_resolution_box(frame_size, seed):
    rng = np.random.default_rng(seed)
    cam = rng.normal(0, 0.15, (7, 7)).astype(np.float32)  # smooth-ish, as real CAMs are
    cy, cx = rng.integers(1, 6, 2)
    cam[cy - 1:cy + 2, cx - 1:cx + 2] += 3.0
    _, r = resize(np.zeros((*frame_size, 3), np.uint8), (224, 224), "stretch")
    ours = boxes_from_heat(HeatMap.from_cam(cam, r), 0.2)[0]
    ref = full_resolution_box(cam, frame_size)
    # Same box up to the discretisation of both grids: 1.5 model-input pixels, in frame pixels.
    tol_x, tol_y = 1.5 / r.scale_x + 1, 1.5 / r.scale_y + 1
    assert abs(ours.x1 - ref.x1) <= tol_x and abs(ours.x2 - ref.x2) <= tol_x
    assert abs(ours.y1 - ref.y1) <= tol_y and abs(ours.y2 - ref.y2) <= tol_y
    assert ours.iou(ref) > 0.95


def test_largest_component_and_all_components():
    cam = np.zeros((14, 14), np.float32)
    cam[1:3, 1:3] = 1.0  # small blob top-left
    cam[8:13, 7:13] = 1.0  # large blob bottom-right
    _, r = resize(np.zeros((140, 140, 3), np.uint8), (140, 140), "stretch")
    heat = HeatMap.from_cam(cam, r)
    (big,) = boxes_from_heat(heat, 0.5, "largest", class_id=3, label="x", score=0.9)
    assert big.x1 > 60 and big.y1 > 70 and big.x2 <= 140 and big.class_id == 3
    both = boxes_from_heat(heat, 0.5, "all", min_area=0.001)
    assert len(both) == 2 and both[0] == big.__class__(big.x1, big.y1, big.x2, big.y2)
    assert both[1].x2 < 40 and both[1].y2 < 40
    assert len(boxes_from_heat(heat, 0.5, "all", min_area=0.05)) == 1


def test_flat_map_boxes_the_whole_frame_without_nan():
    _, r = resize(np.zeros((50, 60, 3), np.uint8), (32, 32), "stretch")
    heat = HeatMap.from_cam(np.ones((4, 4), np.float32), r)
    assert np.isfinite(heat.values).all()
    (box,) = boxes_from_heat(heat, 0.2)
    assert (box.x1, box.y1, box.x2, box.y2) == (0, 0, 60, 50)


def test_letterbox_padding_never_becomes_a_box():
    """The map is normalised over the frame's content only and is zero on the padding, even where
    the raw CAM is hottest there (a network can light up the padding's edge): the box is the object's."""
    frame = np.zeros((100, 400, 3), np.uint8)
    _, r = resize(frame, (64, 64), "letterbox")
    assert r.content == (0, 24, 64, 40)  # CAM rows 3-4 (of 8) show the frame, the rest is padding
    cam = np.zeros((8, 8), np.float32)
    cam[0:2, :] = 5.0  # hot padding, two cells away from the content so it cannot bleed in
    cam[3:5, 5:7] = 1.0  # the object, right part of the frame
    heat = HeatMap.from_cam(cam, r)
    assert heat.values[:24].max() == 0 and heat.values[40:].max() == 0
    assert heat.values[24:40].max() == pytest.approx(1.0) and heat.values[24:40].min() == pytest.approx(0.0)
    (box,) = boxes_from_heat(heat, 0.5)
    assert 230 <= box.x1 < box.x2 <= 370 and 0 <= box.y1 < box.y2 <= 100 and box.height > 50


def test_heat_region_samples_the_right_place():
    _, r = resize(np.zeros((200, 300, 3), np.uint8), (100, 100), "stretch")
    cam = np.zeros((10, 10), np.float32)
    cam[:, 5:] = 1.0  # right half hot
    heat = HeatMap.from_cam(cam, r)
    right = heat.region(200, 0, 300, 200, (16, 16))
    left = heat.region(0, 0, 100, 200, (16, 16))
    assert right.mean() > 0.95 and left.mean() < 0.05
    assert heat.to_frame().shape == (200, 300)


def blobs(centres, heights, size=(12, 20), sigma=1.6):
    """A smooth CAM-like map with one Gaussian bump per (row, col) centre."""
    yy, xx = np.mgrid[:size[0], :size[1]]
    return sum(hgt * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
               for (cy, cx), hgt in zip(centres, heights)).astype(np.float32)


def test_objects_mode_splits_touching_objects_at_the_valley():
    _, r = resize(np.zeros((360, 640, 3), np.uint8), (360, 640), "stretch")
    heat = HeatMap.from_cam(blobs([(6, 5), (6, 10), (6, 15)], [1.0, 0.8, 0.9]), r)
    (whole,) = boxes_from_heat(heat, 0.2, "all")  # one connected region spans all three
    boxes = boxes_from_heat(heat, 0.2, "objects", class_id=7, label="x", score=0.5)
    assert len(boxes) == 3 and all((b.class_id, b.label, b.score) == (7, "x", 0.5) for b in boxes)
    centres = [(b.x1 + b.x2) / 2 / 32 - 0.5 for b in boxes]  # back in CAM cells (stride 32)
    assert centres == pytest.approx([5, 15, 10], abs=0.6)  # hottest first
    # neighbours meet at the valley between their peaks (on the peaks' row; within one CAM cell)
    row = heat.values[6 * 30 + 15]
    valleys = [176 + int(np.argmin(row[176:336])), 336 + int(np.argmin(row[336:496]))]
    left, right, middle = boxes
    assert left.x2 == pytest.approx(valleys[0], abs=32) and middle.x1 == pytest.approx(valleys[0], abs=32)
    assert middle.x2 == pytest.approx(valleys[1], abs=32) and right.x1 == pytest.approx(valleys[1], abs=32)
    assert left.x2 < middle.x2 and middle.x1 < right.x1
    assert (left.x1, right.x2) == (whole.x1, whole.x2)  # the outer edges stay the threshold's
    assert boxes_from_heat(heat, 0.2, "objects", 0.01, 7, "x", 0.5, max_boxes=2) == boxes[:2]


def test_objects_mode_keeps_one_object_with_a_shoulder_and_respects_min_distance():
    _, r = resize(np.zeros((360, 640, 3), np.uint8), (360, 640), "stretch")
    shoulder = blobs([(6, 8), (6, 11)], [1.0, 0.25], sigma=2.0)  # a bump on the way down, no real dip
    heat = HeatMap.from_cam(shoulder, r)
    assert len(boxes_from_heat(heat, 0.2, "objects", min_prominence=0.1)) == 1
    two = HeatMap.from_cam(blobs([(6, 8), (6, 12)], [1.0, 1.0], sigma=1.2), r)
    assert len(boxes_from_heat(two, 0.2, "objects")) == 2
    assert len(boxes_from_heat(two, 0.2, "objects", min_distance=0.25)) == 1  # 4 cells = 0.2 of 20


def test_objects_mode_on_single_regions_empty_flat_and_letterboxed_maps():
    _, r = resize(np.zeros((100, 400, 3), np.uint8), (64, 64), "letterbox")
    cam = np.zeros((8, 8), np.float32)
    cam[3:5, 1:3] = 1.0
    cam[3:5, 5:7] = 0.9
    heat = HeatMap.from_cam(cam, r)
    assert boxes_from_heat(heat, 0.5, "objects") == boxes_from_heat(heat, 0.5, "all")  # separate regions
    _, s = resize(np.zeros((50, 60, 3), np.uint8), (32, 32), "stretch")
    (box,) = boxes_from_heat(HeatMap.from_cam(np.ones((4, 4), np.float32), s), 0.2, "objects")
    assert (box.x1, box.y1, box.x2, box.y2) == (0, 0, 60, 50)
    assert boxes_from_heat(HeatMap(np.zeros((32, 32), np.float32), s), 0.2, "objects") == []


def test_object_level_boxes_each_object_at_its_own_peak():
    """A cool animal beside a hot one: under 0.56 of the map's max it has no box at all; with
    object_level each is boxed at that fraction of its own peak, so the two boxes are the same size."""
    _, r = resize(np.zeros((360, 640, 3), np.uint8), (360, 640), "stretch")
    heat = HeatMap.from_cam(blobs([(6, 5), (6, 15)], [1.0, 0.5], sigma=1.5), r)
    assert len(boxes_from_heat(heat, 0.56, "objects")) == 1
    hot, cool = boxes_from_heat(heat, 0.56, "objects", object_level=0.45)
    assert (hot.x1 + hot.x2) / 2 < 320 < (cool.x1 + cool.x2) / 2
    assert cool.width == pytest.approx(hot.width, abs=8) and cool.height == pytest.approx(hot.height, abs=8)
    assert len(boxes_from_heat(heat, 0.56, "objects", object_level=0.55)) == 1  # the cool peak is under 0.55
    assert BoxRule(0.56, "objects", object_level=0.45).boxes(heat) == [hot, cool]


def test_box_rule_objects_fields_and_validation():
    rule = BoxRule(0.2, "objects", 0.01, 1, max_rois=2)
    assert (rule.min_distance, rule.min_prominence) == (0.1, 0.1)
    _, r = resize(np.zeros((360, 640, 3), np.uint8), (360, 640), "stretch")
    cam = blobs([(6, 5), (6, 10), (6, 15)], [1.0, 0.8, 0.9])
    heat, boxes = rule.localize_cam(cam, r, 3, "x", 0.4)
    assert len(boxes) == 2 and boxes == boxes_from_heat(heat, 0.2, "objects", class_id=3, label="x", score=0.4)[:2]
    with pytest.raises(ValueError, match="^mode: unknown box mode 'blobs'"):
        BoxRule(mode="blobs")
    with pytest.raises(ValueError, match="^max_rois: 0"):
        BoxRule(max_rois=0)

    class Spec:
        threshold, box_mode, min_area, fuse_top = 0.3, "largest", 0.02, 1
    assert BoxRule.for_model(Spec(), mode="objects", min_distance=None, max_rois=3) == \
        BoxRule(0.3, "objects", 0.02, 1, max_rois=3)
