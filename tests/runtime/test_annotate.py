"""Overlay text (edge_cam/draw.py): at every frame size the caption and the box labels
are inside the frame and never cover one another, and the text grows with the frame."""
from __future__ import annotations

import itertools
import shutil

import cv2
import numpy as np
import pytest

from edge_cam.draw import draw_labelled, layout, text_style

SIZES = [(512, 384), (320, 240), (1920, 1080)]
CAPTION = "teacher reused: arrow 0.86"
LABEL = "arrow 0.86 | student: arrow 0.94"


def boxes_near_every_edge(w: int, h: int) -> list[tuple[tuple[int, int, int, int], str]]:
    """Boxes in the corners, along each edge, under the caption, and one as wide as the frame."""
    bw, bh = w // 5, h // 5
    spots = [(0, 0), (w - bw, 0), (0, h - bh), (w - bw, h - bh), (w // 2 - bw // 2, 0), (w // 2, h // 2),
             (w - bw // 2, h // 3), (2, 2)]
    boxes = [((x, y, min(w, x + bw), min(h, y + bh)), LABEL) for x, y in spots]
    boxes.append(((0, h // 3, w, h // 3 + bh), "a label far longer than the frame is wide " * 8))
    return boxes


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("count", [1, 2, 4])
def test_labels_stay_inside_and_apart(size, count):
    w, h = size
    for boxes in itertools.combinations(boxes_near_every_edge(w, h), count):
        cap, labels = layout(size, CAPTION, boxes)
        rects = [cap.rect] + [lab.rect for lab in labels if lab is not None]
        assert len(rects) == count + 1, f"a label found no place on {w}x{h}: {boxes}"
        for x1, y1, x2, y2 in rects:
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, (size, boxes, rects)
        for a, b in itertools.combinations(rects, 2):
            assert not overlaps(a, b), (size, boxes, a, b)
        for lab in [cap, *labels]:  # the text itself is within its background
            (tw, th), base = cv2.getTextSize(lab.text, cv2.FONT_HERSHEY_SIMPLEX, lab.scale, lab.thickness)
            x, y = lab.origin
            r = lab.rect
            assert r[0] <= x and x + tw <= r[2] and r[1] <= y - th and y + base <= r[3], (lab, tw, th, base)


def test_a_label_with_room_above_its_box_goes_above_and_one_at_the_top_goes_inside():
    cap, (above, top) = layout((512, 384), CAPTION, [((200, 200, 300, 300), LABEL), ((300, 0, 400, 80), "x 0.9")])
    assert above.rect[3] <= 200 and above.rect[0] == 200
    assert top.rect[1] >= 0 and top.rect[1] < 80 and not overlaps(top.rect, cap.rect)


def test_text_scales_with_the_frame():
    scales = [text_style(w, h) for w, h in sorted(SIZES)]
    assert scales[0][0] >= 0.4 and scales[-1][0] > 2 * scales[0][0] and scales[-1][1] > scales[0][1]


def test_picture(tmp_path):
    """A picture to look at: every label of the layout test at 512x384, drawn."""
    w, h = 512, 384
    rng = np.random.default_rng(0)
    picture = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 8)
    boxes = boxes_near_every_edge(w, h)
    draw_labelled(picture, [boxes[i] for i in (0, 1, 3, 8)], CAPTION)
    out = tmp_path / "labels.png"
    cv2.imwrite(str(out), picture)
    shutil.copy(out, "/tmp/annotate-labels.png")
