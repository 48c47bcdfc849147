"""The demo's data: procedural scenes of one small glyph (10 classes) on a cluttered background,
and the data sets cut from them as the runtime would (the teacher's whole frame, the student's crops).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cv2
import numpy as np

from edge_cam.crop import CropSpec, crop
from edge_cam.localize import Box
from edge_cam.preprocess import resize, to_rgb8

from ..common.progress import say

CLASS_NAMES = ["circle", "square", "triangle", "star", "cross", "ring", "arrow", "crescent", "heart",
               "letter L"]
FRAME_W, FRAME_H = 320, 240
TEACHER_SIZE = (128, 128)
STUDENT_SIZE = (32, 32)
_SHIFT = 4  # sub-pixel bits for cv2 drawing, so small glyphs keep their exact geometry


def _star() -> np.ndarray:
    a = np.arange(10) * np.pi / 5 - np.pi / 2
    r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y + 2.5], 1)
    return pts / np.abs(pts).max()


# Outlines in a unit frame (the glyph spans about [-1, 1]); y points down, as in images.
_POLYGONS = {
    "square": np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * 0.75,
    "triangle": np.array([[0, -1], [0.866, 0.5], [-0.866, 0.5]]) + [0, 0.2],
    "star": _star(),
    "cross": np.array([[-0.3, -1], [0.3, -1], [0.3, -0.3], [1, -0.3], [1, 0.3], [0.3, 0.3], [0.3, 1],
                       [-0.3, 1], [-0.3, 0.3], [-1, 0.3], [-1, -0.3], [-0.3, -0.3]]),
    "arrow": np.array([[-1, -0.2], [0.15, -0.2], [0.15, -0.6], [1, 0], [0.15, 0.6], [0.15, 0.2],
                       [-1, 0.2]]),
    "heart": _heart(),
    "letter L": np.array([[-0.65, -1], [-0.2, -1], [-0.2, 0.55], [0.65, 0.55], [0.65, 1], [-0.65, 1]]),
}


def _fixed(v) -> np.ndarray:
    return np.round(np.asarray(v, np.float64) * (1 << _SHIFT)).astype(np.int32)


def _point(xy: tuple[float, float]) -> tuple[int, int]:
    x, y = _fixed(xy)
    return int(x), int(y)


def glyph_mask(class_id: int, diameter: float, angle: float, centre: tuple[float, float],
               shape: tuple[int, int]) -> np.ndarray:
    """The glyph's anti-aliased coverage (uint8, 0..255) on an image of `shape` (H, W)."""
    mask = np.zeros(shape, np.uint8)
    name = CLASS_NAMES[class_id]
    r = diameter / 2
    if name in _POLYGONS:
        c, s = math.cos(angle), math.sin(angle)
        pts = _POLYGONS[name] @ np.array([[c, s], [-s, c]]) * r + centre
        cv2.fillPoly(mask, [_fixed(pts)], 255, cv2.LINE_AA, _SHIFT)
        return mask
    cv2.circle(mask, _point(centre), int(_fixed(r)), 255, -1, cv2.LINE_AA, _SHIFT)
    if name == "ring":
        cv2.circle(mask, _point(centre), int(_fixed(0.58 * r)), 0, -1, cv2.LINE_AA, _SHIFT)
    elif name == "crescent":
        bite = (centre[0] + 0.45 * r * math.cos(angle), centre[1] + 0.45 * r * math.sin(angle))
        cv2.circle(mask, _point(bite), int(_fixed(0.85 * r)), 0, -1, cv2.LINE_AA, _SHIFT)
    return mask


def render_background(rng: np.random.Generator, width: int = FRAME_W, height: int = FRAME_H) -> np.ndarray:
    """A cluttered BGR background: gradient, soft blobs, cloudy texture, thin lines and scribbles.

    Nothing here is a filled, crisp-edged glyph, so the only such thing in a scene is the object.
    """
    # Built at quarter resolution and upscaled, so gradients and blobs come out soft.
    lw, lh = width // 4, height // 4
    yy, xx = np.mgrid[0:lh, 0:lw].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    t = xx * math.cos(theta) + yy * math.sin(theta)
    t = (t - t.min()) / (t.max() - t.min())
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    low = (c1 + (c2 - c1) * t[..., None]).astype(np.float32)
    for _ in range(rng.integers(2, 8)):
        centre = (int(rng.uniform(0, lw)), int(rng.uniform(0, lh)))
        axes = (int(rng.uniform(3, lw / 3)), int(rng.uniform(3, lh / 3)))
        cv2.ellipse(low, centre, axes, rng.uniform(0, 180), 0, 360, rng.uniform(0, 255, 3).tolist(), -1)
    low = cv2.GaussianBlur(low, (0, 0), rng.uniform(1.0, 2.5))
    cloud = rng.standard_normal((lh // 4, lw // 4, 3), dtype=np.float32)
    low += cv2.resize(cloud, (lw, lh), interpolation=cv2.INTER_CUBIC) * rng.uniform(5, 35)
    image = cv2.resize(np.clip(low, 0, 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)

    for _ in range(rng.integers(3, 12)):
        p1 = (int(rng.uniform(-20, width + 20)), int(rng.uniform(-20, height + 20)))
        p2 = (int(rng.uniform(-20, width + 20)), int(rng.uniform(-20, height + 20)))
        cv2.line(image, p1, p2, rng.uniform(0, 255, 3).tolist(), int(rng.integers(1, 3)), cv2.LINE_AA)
    for _ in range(rng.integers(1, 5)):
        steps = rng.normal(0, 12, (int(rng.integers(4, 12)), 2))
        walk = np.cumsum(steps, 0) + rng.uniform((0, 0), (width, height))
        cv2.polylines(image, [walk.astype(np.int32)], False, rng.uniform(0, 255, 3).tolist(), 1, cv2.LINE_AA)
    return image


def _luma(bgr) -> float:
    b, g, r = bgr
    return 0.114 * b + 0.587 * g + 0.299 * r


def pick_colour(rng: np.random.Generator, region: np.ndarray) -> tuple[float, float, float]:
    """A random BGR colour whose brightness stands out from the mean of `region`."""
    under = _luma(region.reshape(-1, 3).mean(0))
    for _ in range(50):
        colour = rng.uniform(0, 255, 3)
        if abs(_luma(colour) - under) >= 70:
            return tuple(colour)
    return (0.0, 0.0, 0.0) if under > 128 else (255.0, 255.0, 255.0)


def draw_glyph(image: np.ndarray, class_id: int, centre: tuple[float, float], diameter: float,
               angle: float, colour) -> tuple[float, float, float, float]:
    """Blend the glyph into `image` (in place); returns its tight box (x1, y1, x2, y2) in pixels."""
    # Drawn in a patch around the glyph only: the rest of the frame is untouched.
    h, w = image.shape[:2]
    half = int(diameter / 2) + 3
    x0, y0 = max(0, int(centre[0]) - half), max(0, int(centre[1]) - half)
    x1, y1 = min(w, int(centre[0]) + half + 1), min(h, int(centre[1]) + half + 1)
    mask = glyph_mask(class_id, diameter, angle, (centre[0] - x0, centre[1] - y0), (y1 - y0, x1 - x0))
    alpha = mask[..., None].astype(np.float32) / 255.0
    patch = image[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] = (patch * (1 - alpha) + np.float32(colour) * alpha + 0.5).astype(np.uint8)
    ys, xs = np.nonzero(mask >= 128)
    return float(x0 + xs.min()), float(y0 + ys.min()), float(x0 + xs.max() + 1), float(y0 + ys.max() + 1)


def render_scene(rng: np.random.Generator, class_id: int, width: int = FRAME_W, height: int = FRAME_H,
                 size: tuple[float, float] = (0.11, 0.27)) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """One BGR scene with a single glyph of `class_id`, and the glyph's box (x1, y1, x2, y2).

    size: the range of the glyph's nominal diameter, as a fraction of the frame's shorter side.
    """
    image = render_background(rng, width, height)
    diameter = rng.uniform(*size) * min(width, height)
    margin = diameter / 2 + 2
    centre = (rng.uniform(margin, width - margin), rng.uniform(margin, height - margin))
    r = int(diameter / 2)
    cx, cy = int(centre[0]), int(centre[1])
    colour = pick_colour(rng, image[max(0, cy - r):cy + r + 1, max(0, cx - r):cx + r + 1])
    box = draw_glyph(image, class_id, centre, diameter, rng.uniform(0, 2 * np.pi), colour)
    amplitude = int(rng.integers(0, 13))
    if amplitude:  # sensor noise on most scenes, none on some (the clip has none)
        noise = rng.integers(-amplitude, amplitude + 1, image.shape, dtype=np.int16)
        image = np.clip(image + noise, 0, 255).astype(np.uint8)
    return image, box


@dataclass
class Scenes:
    teacher_x: np.ndarray  # (N, 128, 128, 3) uint8 RGB: whole frames as the teacher sees them
    labels: np.ndarray  # (N,) int64
    boxes: np.ndarray  # (N, 4) float: (x1, y1, x2, y2) in frame pixels
    crops: np.ndarray  # (N * k, 32, 32, 3) uint8 RGB: k student crops per scene
    crop_labels: np.ndarray  # (N * k,) int64


def jittered_box(rng: np.random.Generator, box) -> Box:
    """The GT box grown, shrunk and shifted about as much as the teacher's CAM boxes differ from it
    (measured: median 1.3x wider, 1.2x taller, centre off by ~10% of the size)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    grow = math.exp(rng.uniform(math.log(0.95), math.log(1.8)))
    jw, jh = w * grow * math.exp(rng.uniform(-0.1, 0.1)), h * grow * math.exp(rng.uniform(-0.1, 0.1))
    cx, cy = (x1 + x2) / 2 + rng.normal(0, 0.1) * w, (y1 + y2) / 2 + rng.normal(0, 0.1) * h
    return Box(cx - jw / 2, cy - jh / 2, cx + jw / 2, cy + jh / 2)


def make_scenes(rng: np.random.Generator, count: int, crops_per_scene: int, name: str) -> Scenes:
    """`count` scenes, classes balanced; the crops are cut by edge_cam's own crop() from the full frame."""
    labels = rng.permutation(np.arange(count) % len(CLASS_NAMES)).astype(np.int64)
    teacher_x = np.empty((count, *TEACHER_SIZE, 3), np.uint8)
    crops = np.empty((count * crops_per_scene, *STUDENT_SIZE, 3), np.uint8)
    boxes = np.empty((count, 4))
    t0 = time.perf_counter()
    for i, class_id in enumerate(labels):
        frame, boxes[i] = render_scene(rng, int(class_id))
        rgb = to_rgb8(frame)
        teacher_x[i] = resize(rgb, TEACHER_SIZE)[0]
        for j in range(crops_per_scene):
            spec = CropSpec(pad=rng.uniform(1.1, 1.5), square=bool(rng.random() < 0.75))
            crops[i * crops_per_scene + j] = crop(rgb, jittered_box(rng, boxes[i]), STUDENT_SIZE, spec).image
    say(f"  {name}: {count} scenes, {len(crops)} student crops ({time.perf_counter() - t0:.1f} s)")
    return Scenes(teacher_x, labels, boxes, crops, np.repeat(labels, crops_per_scene))


def render_test_scenes(rng: np.random.Generator, count: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Full BGR frames, labels and boxes, for scoring the exported models through the runtime."""
    labels = np.arange(count) % len(CLASS_NAMES)
    scenes = [render_scene(rng, int(c)) for c in labels]
    return [s[0] for s in scenes], labels, np.array([s[1] for s in scenes])
