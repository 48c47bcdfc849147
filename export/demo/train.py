"""Training the demo's teacher (windows, then whole frames with a CAM-leak penalty) and its student
(on ground-truth crops and on crops around the exported teacher's own CAM boxes)."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from edge_cam.crop import CropSpec, crop
from edge_cam.model import Model
from edge_cam.preprocess import to_rgb8

from ..common.progress import say
from .nets import MEAN, STD, Student, Teacher
from .scenes import CLASS_NAMES, FRAME_H, FRAME_W, STUDENT_SIZE, TEACHER_SIZE, Scenes, render_scene
from .score import cam_box

BATCH = 64
WINDOW = 48  # side of the teacher's first-stage training windows, in its input pixels
CAM_LEAK_WEIGHT = 1.0  # weight of the CAM mass outside the GT box in the teacher's frame loss


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 RGB NHWC → the normalised float NCHW that the exported graph computes from the same bytes."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255.0
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 250) -> float:
    model.eval()
    with torch.no_grad():
        predicted = np.concatenate([model(to_tensor(images[i:i + batch_size])).argmax(1).numpy()
                                    for i in range(0, len(images), batch_size)])
    return float(np.mean(predicted == labels))


def fit(model: Teacher | Student, name: str, rng: np.random.Generator, count: int, passes: int, lr: float,
        loss_fn: Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        validate: Callable[[], str] = lambda: "", nonnegative_head: bool = False) -> None:
    """`passes` shuffled passes over `count` examples; loss_fn(indices) → (loss, logits, targets)."""
    steps_per_pass = count // BATCH
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=passes * steps_per_pass,
                                                   pct_start=0.15)
    model.to(memory_format=torch.channels_last)
    for p in range(passes):
        t0 = time.perf_counter()
        order = rng.permutation(count)
        loss_sum, correct = 0.0, 0
        model.train()
        for step in range(steps_per_pass):
            loss, logits, targets = loss_fn(np.sort(order[step * BATCH:(step + 1) * BATCH]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if nonnegative_head:
                # W ≥ 0 on top of ReLU features keeps every CAM ≥ 0 with the background at 0, so the
                # runtime's min-max normalisation cannot lift the background over the threshold.
                with torch.no_grad():
                    model.fc.weight.clamp_(min=0)
            loss_sum += loss.item()
            correct += int((logits.argmax(1) == targets).sum())
        say(f"  {name} {p + 1}/{passes}: loss {loss_sum / steps_per_pass:.3f}, train top-1 "
            f"{correct / (steps_per_pass * BATCH):.1%}{validate()} ({time.perf_counter() - t0:.0f} s)")
    model.eval()


def train_teacher(train: Scenes, val: Scenes, epochs: int, rng: np.random.Generator) -> Teacher:
    """Two stages. Whole frames alone train slowly: the glyph is ~2% of the image and global average
    pooling drowns it in background. So the network first learns the glyphs on 48x48 windows of
    the teacher's input around them (same scale, 7x cheaper), then learns whole frames."""
    teacher = Teacher()
    targets = torch.from_numpy(train.labels)
    scale = np.array([TEACHER_SIZE[1] / FRAME_W, TEACHER_SIZE[0] / FRAME_H] * 2)
    boxes = train.boxes * scale  # in the teacher's input pixels
    centres = np.stack([boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]], 1) / 2

    def window_loss(idx: np.ndarray):
        w = WINDOW
        x = np.empty((len(idx), w, w, 3), np.uint8)
        for j, i in enumerate(idx):
            cx, cy = centres[i] + rng.uniform(-w / 4, w / 4, 2)
            x0 = int(np.clip(cx - w / 2, 0, TEACHER_SIZE[1] - w))
            y0 = int(np.clip(cy - w / 2, 0, TEACHER_SIZE[0] - w))
            x[j] = train.teacher_x[i, y0:y0 + w, x0:x0 + w]
        logits = teacher(to_tensor(x))
        return nn.functional.cross_entropy(logits, targets[idx]), logits, targets[idx]

    def frame_loss(idx: np.ndarray):
        features = teacher.features(to_tensor(train.teacher_x[idx]))
        logits = teacher.fc(torch.flatten(teacher.pool(features), 1))
        y = targets[idx]
        # The scenes come with boxes, so the CAM is also taught where the object ends: without this
        # term it covers the glyph plus the receptive field around it (boxes ~1.8x too wide).
        cams = torch.einsum("bchw,bc->bhw", features, teacher.fc.weight[y])
        outside = torch.from_numpy(outside_cells(boxes[idx], features.shape[2:]))
        leak = (cams * outside).sum((1, 2)) / (cams.sum((1, 2)) + 1e-6)
        return nn.functional.cross_entropy(logits, y) + CAM_LEAK_WEIGHT * leak.mean(), logits, y

    def validate() -> str:
        return f", val top-1 {accuracy(teacher, val.teacher_x, val.labels):.1%}"

    fit(teacher, "teacher on windows, pass", rng, len(train.labels), 3 * epochs, 3e-3, window_loss,
        nonnegative_head=True)
    fit(teacher, "teacher on frames, pass", rng, len(train.labels), epochs, 2e-3, frame_loss, validate,
        nonnegative_head=True)
    return teacher


def outside_cells(boxes: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(B, h, w) float: 1 where a feature cell's centre lies outside the box (input pixels)."""
    h, w = grid
    ys = (np.arange(h) + 0.5) * TEACHER_SIZE[0] / h
    xs = (np.arange(w) + 0.5) * TEACHER_SIZE[1] / w
    inside_x = (xs >= boxes[:, 0:1]) & (xs <= boxes[:, 2:3])  # (B, w)
    inside_y = (ys >= boxes[:, 1:2]) & (ys <= boxes[:, 3:4])  # (B, h)
    return (~(inside_y[:, :, None] & inside_x[:, None, :])).astype(np.float32)


def cam_crops(rng: np.random.Generator, teacher_path: str, count: int, per_scene: int) -> tuple[np.ndarray, np.ndarray]:
    """Student crops cut around the exported teacher's own CAM boxes on `count` fresh scenes.

    At run time the student sees exactly these crops, with the CAM box's errors (too wide, off
    centre, a piece of clutter) rather than a jittered ground truth: training on them as well
    lifted the student on the clip's CAM crops from 92-93% to 95% (measured).
    """
    teacher = Model(teacher_path, providers=["CPUExecutionProvider"], spinning=False)
    labels = rng.permutation(np.arange(count) % len(CLASS_NAMES)).astype(np.int64)
    crops = np.empty((count * per_scene, *STUDENT_SIZE, 3), np.uint8)
    t0 = time.perf_counter()
    for start in range(0, count, 200):  # 200 frames at a time: the scenes themselves are not kept
        rgbs = [to_rgb8(render_scene(rng, int(c))[0]) for c in labels[start:start + 200]]
        for i, (rgb, pred) in enumerate(zip(rgbs, teacher.predict_batch(rgbs, "RGB")), start):
            box = cam_box(teacher, pred, rgb.shape[:2])
            for j in range(per_scene):
                spec = CropSpec(pad=rng.uniform(1.1, 1.6), square=bool(rng.random() < 0.75))
                crops[i * per_scene + j] = crop(rgb, box, STUDENT_SIZE, spec).image
    say(f"  {count} scenes, {len(crops)} crops around the teacher's CAM boxes ({time.perf_counter() - t0:.1f} s)")
    return crops, np.repeat(labels, per_scene)


def train_student(crops: np.ndarray, labels: np.ndarray, val_crops: np.ndarray, val_labels: np.ndarray,
                  epochs: int, rng: np.random.Generator) -> Student:
    student = Student()
    targets = torch.from_numpy(labels)

    def loss(idx: np.ndarray):
        logits = student(to_tensor(crops[idx]))
        return nn.functional.cross_entropy(logits, targets[idx]), logits, targets[idx]

    def validate() -> str:
        return f", val top-1 {accuracy(student, val_crops, val_labels):.1%}"

    fit(student, "student on crops, pass", rng, len(labels), epochs, 3e-3, loss, validate)
    return student
