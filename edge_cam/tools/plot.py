"""Line charts as PNG with OpenCV alone, so boards can draw their own results without matplotlib."""
from __future__ import annotations

import cv2
import numpy as np

COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140)]


def line_chart(path: str, series: dict[str, tuple], title: str, xlabel: str, ylabel: str,
               size: tuple[int, int] = (640, 420), markers: bool = False) -> None:
    """series: name → (xs, ys). Axes fit the data; the legend is in the top-right corner."""
    w, h = size
    left, right, top, bottom = 60, 20, 36, 46
    img = np.full((h, w, 3), 255, np.uint8)
    xs = np.concatenate([np.asarray(x, float) for x, _ in series.values()])
    ys = np.concatenate([np.asarray(y, float) for _, y in series.values()])
    x0, x1 = float(xs.min()), float(xs.max()) if xs.max() > xs.min() else float(xs.min()) + 1
    y0, y1 = min(0.0, float(ys.min())), float(ys.max()) * 1.05 if ys.max() > 0 else 1.0

    def px(x, y):
        return (int(left + (x - x0) / (x1 - x0) * (w - left - right)),
                int(h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)))

    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.rectangle(img, px(x0, y0), px(x1, y1), (0, 0, 0), 1)
    for t in np.linspace(y0, y1, 6):
        p = px(x0, t)
        cv2.line(img, p, (w - right, p[1]), (230, 230, 230), 1)
        cv2.putText(img, f"{t:.3g}", (4, p[1] + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for t in np.linspace(x0, x1, 6):
        p = px(t, y0)
        cv2.putText(img, f"{t:.3g}", (p[0] - 12, h - bottom + 16), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, title, (left, 22), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, xlabel, (w // 2 - 40, h - 8), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, ylabel, (4, top - 8), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for k, (name, (x, y)) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        pts = np.array([px(a, b) for a, b in zip(x, y)], np.int32)
        cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        if markers:
            for p in pts:
                cv2.circle(img, tuple(int(v) for v in p), 4, colour, -1, cv2.LINE_AA)
        ly = top + 14 + 18 * k
        cv2.line(img, (w - right - 150, ly - 4), (w - right - 125, ly - 4), colour, 2)
        cv2.putText(img, name, (w - right - 120, ly), font, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(path, img):
        from ..errors import EdgeCamError
        raise EdgeCamError(f"cannot write the plot {path}.")
