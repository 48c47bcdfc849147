"""The demo clip: segments of one glyph drifting on a static background, with its ground truth."""
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from .scenes import CLASS_NAMES, FRAME_H, FRAME_W, draw_glyph, pick_colour, render_background

FPS = 15


def render_clip(path: str, rng: np.random.Generator, cycles: int, segment_frames: int) -> dict:
    """Segments of one glyph drifting, turning and growing slowly on a static background; every
    class appears once per cycle, in a shuffled order. Returns the ground truth written beside it."""
    writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"mp4v"), FPS, (FRAME_W, FRAME_H))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write mp4v video to {path}")
    truth: list[dict[str, Any]] = []
    classes = [int(c) for _ in range(cycles) for c in rng.permutation(len(CLASS_NAMES))]
    for class_id in classes:
        background = render_background(rng)
        d0 = rng.uniform(0.13, 0.22) * FRAME_H
        d1 = d0 * rng.uniform(0.85, 1.15)
        a0 = rng.uniform(0, 2 * np.pi)
        a1 = a0 + rng.choice([-1, 1]) * rng.uniform(0.2, 0.6)
        # ≤ 30 px per 2 s: with the teacher run every 5th frame, the crop's padding keeps up.
        margin = max(d0, d1) / 2 + 4
        p0 = rng.uniform((margin, margin), (FRAME_W - margin, FRAME_H - margin))
        heading = rng.uniform(0, 2 * np.pi)
        p1 = np.clip(p0 + rng.uniform(15, 30) * np.array([math.cos(heading), math.sin(heading)]),
                     (margin, margin), (FRAME_W - margin, FRAME_H - margin))
        x0, y0 = np.floor(np.minimum(p0, p1) - margin).astype(int).clip(0)
        x1, y1 = np.ceil(np.maximum(p0, p1) + margin).astype(int)
        colour = pick_colour(rng, background[y0:y1, x0:x1])
        for f in range(segment_frames):
            t = (1 - math.cos(math.pi * f / (segment_frames - 1))) / 2  # ease in and out
            frame = background.copy()
            box = draw_glyph(frame, class_id, tuple(p0 + (p1 - p0) * t), d0 + (d1 - d0) * t,
                             a0 + (a1 - a0) * t, colour)
            writer.write(frame)
            truth.append({"frame": len(truth), "class_id": class_id, "box": list(box)})
    writer.release()
    return {"fps": FPS, "width": FRAME_W, "height": FRAME_H, "labels": CLASS_NAMES, "frames": truth}
