"""Pictures of a result: heat-map overlay, boxes, labels. Each function draws one thing on a BGR image."""
from __future__ import annotations

import cv2
import numpy as np

from ..localize import Box, HeatMap

BOX_COLOUR = (0, 255, 0)
STUDENT_COLOUR = (255, 255, 0)


def overlay_heat(bgr: np.ndarray, heat: HeatMap, alpha: float = 0.45) -> np.ndarray:
    colours = cv2.applyColorMap((heat.to_frame() * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(bgr, 1 - alpha, colours, alpha, 0)


def draw_box(bgr: np.ndarray, box: Box | tuple, text: str = "", colour=BOX_COLOUR) -> np.ndarray:
    x1, y1, x2, y2 = (box.x1, box.y1, box.x2, box.y2) if isinstance(box, Box) else box
    p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)) - 1, int(round(y2)) - 1)
    thick = max(1, round(min(bgr.shape[:2]) / 240))
    cv2.rectangle(bgr, p1, p2, colour, thick)
    if text:
        scale = 0.4 * thick
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = p1[1] - 3 if p1[1] - th - base - 3 >= 0 else p1[1] + th + 3  # inside when no room above
        cv2.rectangle(bgr, (p1[0], ty - th - 2), (p1[0] + tw + 2, ty + base - 1), colour, -1)
        cv2.putText(bgr, text, (p1[0] + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return bgr


def draw_caption(bgr: np.ndarray, text: str) -> np.ndarray:
    scale = max(0.4, min(bgr.shape[:2]) / 600)
    cv2.putText(bgr, text, (4, int(16 * scale / 0.4)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(bgr, text, (4, int(16 * scale / 0.4)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)
    return bgr


def annotate(bgr: np.ndarray, result) -> np.ndarray:
    """A cascade FrameResult (or anything with .heat, .rois, .teacher, .teacher_ran) drawn on a copy."""
    from ..preprocess import to_rgb8
    out = cv2.cvtColor(to_rgb8(bgr, "BGR"), cv2.COLOR_RGB2BGR)
    if result.heat is not None:
        out = overlay_heat(out, result.heat)
    for roi in result.rois:
        if roi.crop is not None:
            draw_box(out, roi.crop.region, colour=STUDENT_COLOUR)
        text = f"{roi.box.label} {roi.box.score:.2f}"
        if roi.student:
            text += f" | student: {roi.student.label} {roi.student.score:.2f}"
        draw_box(out, roi.box, text)
    if result.teacher is not None:
        draw_caption(out, f"teacher {'ran' if result.teacher_ran else 'reused'}: "
                          f"{result.teacher.label} {result.teacher.score:.2f}")
    return out
