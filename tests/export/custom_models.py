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


class ConvHeadNet(nn.Module):
    """timm's MobileNetV3 / EfficientNet head, written out: GAP keeping dims → conv_head (1×1 Conv
    with bias on the 1×1 map) → [norm_head] → activation → Flatten → Dropout → Linear."""

    def __init__(self, num_classes: int = 4, pool: str = "module", norm_head: bool = False,
                 act: type[nn.Module] = nn.Hardswish):
        super().__init__()
        self.conv_stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.Hardswish())
        self.blocks = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.Conv2d(8, 24, 1), nn.BatchNorm2d(24), nn.Hardswish(inplace=True),
            nn.Conv2d(24, 24, 3, stride=2, padding=1), nn.BatchNorm2d(24), nn.Hardswish(inplace=True))
        self.pool = pool
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(24, 32, 1, bias=True)
        self.norm_head = nn.BatchNorm2d(32) if norm_head else nn.Identity()
        self.act2 = act(inplace=True) if act in (nn.ReLU, nn.Hardswish, nn.SiLU) else act()
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.blocks(self.conv_stem(x))
        if self.pool == "mean":
            x = x.mean((2, 3), keepdim=True)
        elif self.pool == "functional":
            x = nn.functional.adaptive_avg_pool2d(x, 1)
        else:
            x = self.global_pool(x)
        x = self.act2(self.norm_head(self.conv_head(x)))
        return self.classifier(self.dropout(self.flatten(x)))


class GroupNormHead(TinyGap):
    """A head with a GroupNorm after the Linear: no closed-form gradient is implemented for it."""

    def __init__(self, num_classes: int = 4):
        super().__init__(num_classes)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.GroupNorm(4, 16), nn.Linear(16, num_classes))


def conv_head_net(num_classes: int = 4) -> nn.Module:
    return ConvHeadNet(num_classes)


def group_norm_head(num_classes: int = 4) -> nn.Module:
    return GroupNormHead(num_classes)
