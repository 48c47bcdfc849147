"""The distilled student: a small conv net for the cascade's crops, and how it is trained (torch)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from edge_cam.metadata import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger("edge_cam")

MEAN, STD = IMAGENET_MEAN, IMAGENET_STD  # the teacher's: the student's pad colour is then the teacher's too


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Student(nn.Module):
    """Six 3x3 conv-BN-ReLU layers (four of stride 2) → GAP → Linear: a plain graph that every
    runtime runs well and `export_module(cam=False)` traces. Width w gives w, 2w, 2w, 4w, 4w, 8w
    channels; at 64x64 and w=16 about 8.7 M multiply-adds, 1/35 of MobileNetV2 at 224."""

    def __init__(self, num_classes: int, width: int = 16):
        super().__init__()
        w = width
        plan = [(3, w, 2), (w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2), (4 * w, 4 * w, 1), (4 * w, 8 * w, 2)]
        self.features = nn.Sequential(*[_conv(ci, co, s) for ci, co, s in plan])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 RGB NHWC → the normalised float NCHW that the exported graph computes from the same bytes."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255.0
    return (x - mean) / std


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirror half the crops and vary gain and offset a little: a fixed camera still sees the day
    change, and a mirrored scene keeps its classes. Geometry jitter is done on the boxes instead,
    where the runtime's own crop code makes it (see data.py)."""
    x = images.astype(np.float32)
    flip = rng.random(len(x)) < 0.5
    x[flip] = x[flip, :, ::-1]
    gain = rng.uniform(0.8, 1.2, (len(x), 1, 1, 1)).astype(np.float32)
    offset = rng.uniform(-20, 20, (len(x), 1, 1, 1)).astype(np.float32)
    return np.clip(x * gain + offset, 0, 255).astype(np.uint8)


def predict(model: nn.Module, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """The class index the model gives each crop."""
    model.eval()
    with torch.no_grad():
        out = [model(to_tensor(images[i:i + batch])).argmax(1).numpy() for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def train(model: Student, crops: np.ndarray, labels: np.ndarray, *, epochs: int, rng: np.random.Generator,
          lr: float = 3e-3, batch: int = 64, balance: float = 0.5,
          progress: Callable[[str, int, int], None] | None = None) -> list[dict]:
    """AdamW with a one-cycle schedule; classes weighted by frequency^-balance (0.5: a rare answer of
    the teacher, such as the object taken away, is not drowned by the common one, which still
    counts more, as it does in frame agreement; 0: as frequent as in the footage). Returns the
    loss and accuracy per epoch."""
    counts = np.bincount(labels, minlength=model.fc.out_features).astype(np.float64)
    weight = np.where(counts > 0, np.maximum(counts, 1) ** -balance, 0.0)
    weight *= counts.sum() / max(1e-9, (weight * counts).sum())
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=torch.float32), label_smoothing=0.05)
    steps = max(1, len(crops) // batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps, pct_start=0.2)
    targets = torch.from_numpy(labels.astype(np.int64))
    history = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(len(crops))
        loss_sum, correct, seen = 0.0, 0, 0
        for step in range(steps):
            idx = np.sort(order[step * batch:(step + 1) * batch])
            logits = model(to_tensor(augment(crops[idx], rng)))
            loss = loss_fn(logits, targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == targets[idx]).sum())
            seen += len(idx)
        history.append({"epoch": epoch + 1, "loss": loss_sum / seen, "train_accuracy": correct / seen,
                        "seconds": time.perf_counter() - t0})
        log.info("student epoch %d/%d: loss %.3f, train accuracy %.1f%% (%.0f s)", epoch + 1, epochs,
                 history[-1]["loss"], 100 * history[-1]["train_accuracy"], history[-1]["seconds"])
        if progress:
            progress("training the student", epoch + 1, epochs)
    model.eval()
    return history
