"""Pictures of a result: heat-map overlay, boxes, labels. Each function draws one thing on a BGR image.

Text is laid out before anything is drawn (`layout`, a pure function of the frame size and the
texts, returning rectangles): every label sits on its own filled background, so it reads on any
picture with one text per label (no outline copy that could fail to line up); it is kept inside
the frame (shortened if wider than the frame); the caption owns a band at the top-left and a box's
label goes above the box, or inside its top when there is no room above (or the caption is there),
or wherever it first fits without covering another label. The font scale follows the frame size.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .localize import Box, HeatMap
from .preprocess import to_rgb8

BOX_COLOUR = (0, 255, 0)
STUDENT_COLOUR = (255, 255, 0)
CAPTION_BG, CAPTION_FG = (0, 0, 0), (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX
Rect = tuple[int, int, int, int]  # x1, y1, x2, y2; x2 and y2 excluded


@dataclass(frozen=True)
class Label:
    text: str  # as drawn (shortened to fit the frame's width if need be)
    rect: Rect  # the filled background
    origin: tuple[int, int]  # cv2.putText's origin (bottom-left of the text) inside rect
    scale: float
    thickness: int


def text_style(width: int, height: int) -> tuple[float, int]:
    """Font scale and stroke for a frame: Hershey simplex at 0.4 is ~9 px high, readable on 320×240;
    it grows with the smaller side (0.64 at 384, 1.8 at 1080) and the stroke with it."""
    scale = max(0.4, min(width, height) / 600)
    return scale, max(1, round(scale * 1.5))


def box_thickness(width: int, height: int) -> int:
    return max(1, round(min(width, height) / 240))


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _fit(text: str, width: int, scale: float, thick: int) -> tuple[str, int, int, int]:
    """The text (shortened with '..' until it fits `width`), its width, height and baseline."""
    pad = thick + 1
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    if tw + 2 * pad <= width:
        return text, tw, th, base
    per_char = tw / max(1, len(text))  # a first guess, then one character at a time
    shown = text[:max(1, int((width - 2 * pad) / per_char))] + ".."
    while True:
        (tw, th), base = cv2.getTextSize(shown, FONT, scale, thick)
        if tw + 2 * pad <= width or len(shown) <= 3:
            return shown, tw, th, base
        shown = shown[:-3] + ".."


def _place(fitted: tuple[str, int, int, int], x: int, y: int, size: tuple[int, int], scale: float,
           thick: int) -> Label:
    """A fitted text's label with its top-left at (x, y), moved inside the frame."""
    shown, tw, th, base = fitted
    pad = thick + 1
    w, h = size
    lw, lh = tw + 2 * pad, th + base + 2 * pad
    x = min(max(0, x), max(0, w - lw))  # clamped to the right (and left) edge
    y = min(max(0, y), max(0, h - lh))  # and to the bottom
    return Label(shown, (x, y, x + lw, y + lh), (x + pad, y + pad + th), scale, thick)


def layout(size: tuple[int, int], caption: str | None, boxes: Sequence[tuple[Rect, str]]) -> \
        tuple[Label | None, list[Label | None]]:
    """Where the caption and each box's label go on a frame of `size` (width, height): rectangles
    inside the frame that never overlap. A label that fits nowhere (a frame too small for all of
    them) is None and not drawn."""
    w, h = size
    scale, thick = text_style(w, h)
    taken: list[Rect] = []
    cap = None
    if caption:
        cap = _place(_fit(caption, w, scale, thick), 0, 0, size, scale, thick)
        taken.append(cap.rect)
    labels: list[Label | None] = []
    for (x1, y1, _, y2), text in boxes:
        if not text:
            labels.append(None)
            continue
        fitted = _fit(text, w, scale, thick)
        lh = fitted[2] + fitted[3] + 2 * (thick + 1)
        # Above the box, then inside its top, then below it, then the first free row from the top.
        placed = None
        for y in [y1 - lh, y1, y2, *range(0, h - lh + 1, max(1, lh // 2))]:
            lab = _place(fitted, x1, y, size, scale, thick)
            if lab.rect[3] <= h and not any(_overlaps(lab.rect, t) for t in taken):
                placed = lab
                break
        if placed is not None:
            taken.append(placed.rect)
        labels.append(placed)
    return cap, labels


def _draw_label(bgr: np.ndarray, label: Label, bg, fg) -> None:
    x1, y1, x2, y2 = label.rect
    cv2.rectangle(bgr, (x1, y1), (x2 - 1, y2 - 1), bg, -1)
    cv2.putText(bgr, label.text, label.origin, FONT, label.scale, fg, label.thickness, cv2.LINE_AA)


def _rect(box: Box | Sequence[float]) -> Rect:
    x1, y1, x2, y2 = (box.x1, box.y1, box.x2, box.y2) if isinstance(box, Box) else box
    return int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2))


def overlay_heat(bgr: np.ndarray, heat: HeatMap, alpha: float = 0.45) -> np.ndarray:
    colours = cv2.applyColorMap((heat.to_frame() * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(bgr, 1 - alpha, colours, alpha, 0)


def draw_rect(bgr: np.ndarray, box: Box | Sequence[float], colour=BOX_COLOUR) -> np.ndarray:
    x1, y1, x2, y2 = _rect(box)
    cv2.rectangle(bgr, (x1, y1), (x2 - 1, y2 - 1), colour, box_thickness(bgr.shape[1], bgr.shape[0]))
    return bgr


def draw_labelled(bgr: np.ndarray, boxes: Sequence[tuple[Box | Sequence[float], str]], caption: str | None = None,
                  colour=BOX_COLOUR) -> np.ndarray:
    """Boxes with their labels and a caption, laid out together so that no text covers another."""
    rects = [_rect(b) for b, _ in boxes]
    for r in rects:
        draw_rect(bgr, r, colour)
    cap, labels = layout((bgr.shape[1], bgr.shape[0]), caption, [(r, t) for r, (_, t) in zip(rects, boxes)])
    for lab in labels:
        if lab is not None:
            _draw_label(bgr, lab, colour, (0, 0, 0))
    if cap is not None:
        _draw_label(bgr, cap, CAPTION_BG, CAPTION_FG)
    return bgr


def draw_box(bgr: np.ndarray, box: Box | tuple, text: str = "", colour=BOX_COLOUR) -> np.ndarray:
    """One box and its label (several boxes: draw_labelled, which keeps their labels apart)."""
    return draw_labelled(bgr, [(box, text)], colour=colour)


def draw_caption(bgr: np.ndarray, text: str) -> np.ndarray:
    return draw_labelled(bgr, [], text)


def annotate(bgr: np.ndarray, result) -> np.ndarray:
    """A cascade FrameResult (or anything with .heat, .rois, .teacher, .teacher_ran) drawn on a copy."""
    out = cv2.cvtColor(to_rgb8(bgr, "BGR"), cv2.COLOR_RGB2BGR)
    if result.heat is not None:
        out = overlay_heat(out, result.heat)
    for roi in result.rois:
        if roi.crop is not None:
            draw_rect(out, roi.crop.region, STUDENT_COLOUR)
    labelled = []
    for roi in result.rois:
        text = f"{roi.box.label} {roi.box.score:.2f}"
        if roi.student:
            text += f" | student: {roi.student.label} {roi.student.score:.2f}"
        labelled.append((roi.box, text))
    caption = None
    if result.teacher is not None:
        caption = (f"teacher {'ran' if result.teacher_ran else 'reused'}: "
                   f"{result.teacher.label} {result.teacher.score:.2f}")
    return draw_labelled(out, labelled, caption)
