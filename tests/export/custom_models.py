"""A user's own modules, as `package.module:callable` names them (this folder on PYTHONPATH)."""
from torch import nn


class TinyGap(nn.Module):
    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(16, num_classes))

    def forward(self, x):
        return self.head(self.pool(self.body(x)))


class TwoLayerHead(TinyGap):
    def __init__(self, num_classes: int = 4):
        super().__init__(num_classes)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, num_classes))


class NormHead(TinyGap):
    """A head with a BatchNorm1d after the Linear: no closed-form gradient is implemented for it."""

    def __init__(self, num_classes: int = 4):
        super().__init__(num_classes)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.BatchNorm1d(16), nn.Linear(16, num_classes))


def norm_head(num_classes: int = 4) -> nn.Module:
    return NormHead(num_classes)


def tiny_gap(num_classes: int = 4) -> nn.Module:
    return TinyGap(num_classes)


def two_layer_head(num_classes: int = 4) -> nn.Module:
    return TwoLayerHead(num_classes)
