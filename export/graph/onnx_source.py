"""What the original graph expects as its float input (colour order, layout, scale, mean, std):
shared by the graph builder (onnx_build), which normalises inside the graph, and the surgery, which
checks the result against this in numpy. Its own module so that neither imports the other for it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_cam.metadata import IMAGENET_MEAN, IMAGENET_STD, InputSpec


@dataclass(frozen=True)
class SourceInput:
    """What the original graph expects as its float input; mean/std are in its channel order."""
    color: str = "RGB"
    layout: str = "NCHW"
    scale: float = 1 / 255
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_float(self, batch: np.ndarray) -> np.ndarray:
        """uint8 RGB NHWC → the original's float input, in numpy (the reference for the graph)."""
        x = batch.astype(np.float32)
        if self.color == "BGR":
            x = x[..., ::-1]
        shape = (1, 1, 1, 3)
        if self.layout == "NCHW":
            x, shape = x.transpose(0, 3, 1, 2), (1, 3, 1, 1)
        mean = np.asarray(self.mean, np.float32).reshape(shape)
        std = np.asarray(self.std, np.float32).reshape(shape)
        return np.ascontiguousarray((x * np.float32(self.scale) - mean) / std)

    def metadata_spec(self, size: tuple[int, int], resize_mode: str) -> InputSpec:
        # The metadata's convention is RGB with scale 1/255: (x/255 - m')/s' == (x*scale - m)/s
        # with m' = m/(255*scale); that keeps the letterbox pad colour at the model's zero.
        k = 255.0 * self.scale
        mean, std = (self.mean[::-1], self.std[::-1]) if self.color == "BGR" else (self.mean, self.std)
        return InputSpec(size=size, color="RGB", resize=resize_mode,
                         mean=(float(mean[0] / k), float(mean[1] / k), float(mean[2] / k)),
                         std=(float(std[0] / k), float(std[1] / k), float(std[2] / k)))
