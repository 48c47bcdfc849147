"""Build the bundled default for `edge-cam demo`: a CAM teacher, a small student, and a clip.

Regenerate with

    python -m edge_cam_export.demo --out edge_cam/data

It takes about 5 minutes on 2 CPU cores, with no GPU and no downloads. Everything is seeded, so the
same seed, torch build and thread count give the same weights and the same clip.

The data are procedural scenes: one small glyph (10 classes, 10–25% of the frame's shorter side)
at a random place, scale, rotation and colour on a cluttered background. The teacher sees the
whole 320x240 frame stretched to 128x128 and has a GAP → Linear head, so its CAM is exact; the
student is ~25x cheaper and only ever sees tight crops around the object, which is what makes the
cascade (teacher CAM box → crop → student) worth running.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import cv2
import numpy as np
import torch
from torch import nn

from edge_cam.crop import CropSpec, crop
from edge_cam.localize import Box, HeatMap, boxes_from_heat
from edge_cam.model import Model
from edge_cam.preprocess import resize, to_rgb8

from . import export_module

CLASS_NAMES = ["circle", "square", "triangle", "star", "cross", "ring", "arrow", "crescent", "heart",
               "letter L"]
FRAME_W, FRAME_H = 320, 240
TEACHER_SIZE = (128, 128)
STUDENT_SIZE = (32, 32)
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
FPS = 15

_SHIFT = 4  # sub-pixel bits for cv2 drawing, so small glyphs keep their exact geometry


# ---------------------------------------------------------------------------------------------
# Scenes


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
    cv2.circle(mask, _fixed(centre), int(_fixed(r)), 255, -1, cv2.LINE_AA, _SHIFT)
    if name == "ring":
        cv2.circle(mask, _fixed(centre), int(_fixed(0.58 * r)), 0, -1, cv2.LINE_AA, _SHIFT)
    elif name == "crescent":
        bite = (centre[0] + 0.45 * r * math.cos(angle), centre[1] + 0.45 * r * math.sin(angle))
        cv2.circle(mask, _fixed(bite), int(_fixed(0.85 * r)), 0, -1, cv2.LINE_AA, _SHIFT)
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


# ---------------------------------------------------------------------------------------------
# Data sets: the teacher's whole-frame input and the student's crops, as the runtime makes them


def student_crops(rng: np.random.Generator, rgb: np.ndarray, box, count: int) -> list[np.ndarray]:
    """`count` crops cut the way the cascade cuts them, around boxes jittered like imprecise CAM boxes."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    crops = []
    for _ in range(count):
        cx = (x1 + x2) / 2 + rng.uniform(-0.15, 0.15) * w
        cy = (y1 + y2) / 2 + rng.uniform(-0.15, 0.15) * h
        jw, jh = w * math.exp(rng.uniform(-0.25, 0.4)), h * math.exp(rng.uniform(-0.25, 0.4))
        spec = CropSpec(pad=rng.uniform(1.1, 1.6), square=bool(rng.random() < 0.75))
        crops.append(crop(rgb, Box(cx - jw / 2, cy - jh / 2, cx + jw / 2, cy + jh / 2), STUDENT_SIZE, spec).image)
    return crops


def make_training_set(rng: np.random.Generator, count: int, crops_per_scene: int = 2,
                      name: str = "train") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(teacher inputs, labels, student crops, crop labels), all uint8 RGB NHWC, classes balanced."""
    labels = rng.permutation(np.arange(count) % len(CLASS_NAMES))
    teacher_x = np.empty((count, *TEACHER_SIZE, 3), np.uint8)
    student_x = np.empty((count * crops_per_scene, *STUDENT_SIZE, 3), np.uint8)
    t0 = time.perf_counter()
    for i, class_id in enumerate(labels):
        frame, box = render_scene(rng, int(class_id))
        rgb = to_rgb8(frame)
        teacher_x[i] = resize(rgb, TEACHER_SIZE)[0]
        student_x[i * crops_per_scene:(i + 1) * crops_per_scene] = student_crops(rng, rgb, box, crops_per_scene)
    say(f"  {name}: {count} scenes, {len(student_x)} crops in {time.perf_counter() - t0:.1f} s")
    return teacher_x, labels, student_x, np.repeat(labels, crops_per_scene)


# ---------------------------------------------------------------------------------------------
# Models: plain conv-BN-ReLU stacks; FX-traceable, and the teacher's head is GAP → Linear


def _conv(cin: int, cout: int, stride: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Teacher(nn.Module):
    """128x128 → 96 maps of 16x16 (stride 8, fine enough for CAM boxes on small objects) → GAP → Linear."""

    def __init__(self, num_classes: int = len(CLASS_NAMES)):
        super().__init__()
        # The dilated last block widens the receptive field (to ~63 px) for the largest glyphs
        # without shrinking the map.
        self.features = nn.Sequential(_conv(3, 16, 2), _conv(16, 32, 2), _conv(32, 64, 2),
                                      _conv(64, 96, 1), _conv(96, 96, 1, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(96, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class Student(nn.Module):
    """32x32 crop → 64 maps of 4x4 → GAP → Linear."""

    def __init__(self, num_classes: int = len(CLASS_NAMES)):
        super().__init__()
        self.features = nn.Sequential(_conv(3, 16, 1), _conv(16, 32, 2), _conv(32, 64, 2), _conv(64, 64, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def count_macs(model: nn.Module, size: tuple[int, int]) -> int:
    """Multiply-adds of one forward pass (convolutions and linear layers)."""
    total = 0

    def hook(module, _inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        else:
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, *size))
    for handle in handles:
        handle.remove()
    return total


# ---------------------------------------------------------------------------------------------
# Training


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 RGB NHWC → the normalised float NCHW the exported graph computes from the same bytes."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255.0
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    model.eval()
    with torch.no_grad():
        predicted = np.concatenate([model(to_tensor(images[i:i + batch_size])).argmax(1).numpy()
                                    for i in range(0, len(images), batch_size)])
    return float(np.mean(predicted == labels))


def train(model: nn.Module, images: np.ndarray, labels: np.ndarray, val_images: np.ndarray,
          val_labels: np.ndarray, *, epochs: int, batch_size: int, lr: float, seed: int, name: str) -> None:
    model.to(memory_format=torch.channels_last)
    order_rng = np.random.default_rng(seed)
    steps_per_epoch = len(images) // batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                   pct_start=0.15)
    targets = torch.from_numpy(labels.astype(np.int64))
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        order = order_rng.permutation(len(images))
        loss_sum, correct = 0.0, 0
        for step in range(steps_per_epoch):
            idx = np.sort(order[step * batch_size:(step + 1) * batch_size])
            logits = model(to_tensor(images[idx]))
            y = targets[idx]
            loss = nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.item()
            correct += int((logits.argmax(1) == y).sum())
        seen = steps_per_epoch * batch_size
        say(f"  {name} epoch {epoch + 1}/{epochs}: loss {loss_sum / steps_per_epoch:.3f}, train top-1 "
            f"{correct / seen:.1%}, val top-1 {accuracy(model, val_images, val_labels):.1%} "
            f"({time.perf_counter() - t0:.0f} s)")
    model.eval()


def say(text: str) -> None:
    print(text, flush=True)
