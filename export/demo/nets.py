"""The demo's networks: plain conv-BN-ReLU stacks, FX-traceable; the teacher's head is GAP → Linear,
so its CAM is exact."""
from __future__ import annotations

import torch
from torch import nn

from .scenes import CLASS_NAMES

# The normalisation both nets are trained with and exported with (the graph folds it in).
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


def _conv(cin: int, cout: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Teacher(nn.Module):
    """128x128 → 256 maps of 16x16 (stride 8) → GAP → Linear.

    Downsampling uses even kernels (4, then 2) at stride 2: with a 3x3 kernel each stride-2 layer
    centres its outputs half an input pixel off, and three of them shift the CAM by ~9 frame pixels.
    A receptive field of 22 input pixels, about the largest glyph, keeps the CAM close to the object.
    """

    def __init__(self, num_classes: int = len(CLASS_NAMES)):
        super().__init__()
        self.features = nn.Sequential(_conv(3, 32, 4, 2, 1), _conv(32, 64, 4, 2, 1), _conv(64, 128, 3, 1, 1),
                                      _conv(128, 192, 2, 2, 0), _conv(192, 256, 1, 1, 0))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class Student(nn.Module):
    """32x32 crop → 64 maps of 4x4 → GAP → Linear; about 1/45 of the teacher's multiply-adds."""

    def __init__(self, num_classes: int = len(CLASS_NAMES)):
        super().__init__()
        self.features = nn.Sequential(_conv(3, 16, 3, 1, 1), _conv(16, 32, 3, 2, 1), _conv(32, 64, 3, 2, 1),
                                      _conv(64, 64, 3, 2, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))

