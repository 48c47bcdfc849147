"""Frames of any size and type → the model's uint8 RGB input, and boxes back to the frame."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import EdgeCamError


def to_8bit(image: np.ndarray, color: str = "BGR") -> tuple[np.ndarray, str]:
    """Any image OpenCV can hold (grey, BGR(A)/RGB(A), 8/16-bit, float in [0,1]) → HxWx3 uint8
    in its own channel order, and that order ("BGR" or "RGB").

    The channels are not swapped here: resizing and cropping treat channels alike, so the swap
    waits until the image is the model's small input, not the whole camera frame.
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise EdgeCamError(f"expected an HxW or HxWxC image array, got "
                           f"{getattr(image, 'shape', type(image).__name__)}.")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype.kind == "f":
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise EdgeCamError(f"unsupported pixel type {image.dtype}; use uint8, uint16 or float.")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB), "RGB"
    channels = image.shape[2]
    if channels not in (3, 4):
        raise EdgeCamError(f"unsupported channel count {channels}; use 1, 3 or 4 channels.")
    order = "BGR" if color.upper() == "BGR" else "RGB"
    return (np.ascontiguousarray(image[:, :, :3]) if channels == 4 else image), order


def as_rgb(image: np.ndarray, order: str) -> np.ndarray:
    """An HxWx3 uint8 image in `order` → contiguous RGB."""
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if order == "BGR" else np.ascontiguousarray(image)


def in_order(rgb: tuple[int, int, int], order: str) -> tuple[int, int, int]:
    """An RGB colour in the channel order of an image."""
    r, g, b = rgb
    return (b, g, r) if order == "BGR" else (r, g, b)


def to_rgb8(image: np.ndarray, color: str = "BGR") -> np.ndarray:
    """Any image OpenCV can hold → HxWx3 uint8 RGB."""
    return as_rgb(*to_8bit(image, color))


@dataclass(frozen=True)
class Resize:
    """How a frame was mapped onto the model's input: x_model = x_frame * scale + pad.

    Coordinates are continuous pixel edges (0 = left edge of the first pixel), so a box maps
    back exactly, with no half-pixel drift.
    """
    frame_size: tuple[int, int]  # (H, W) of the original frame
    input_size: tuple[int, int]  # (H, W) of the model input
    scale_x: float
    scale_y: float
    pad_x: float = 0.0
    pad_y: float = 0.0

    def to_frame(self, x: np.ndarray | float, y: np.ndarray | float):
        return (x - self.pad_x) / self.scale_x, (y - self.pad_y) / self.scale_y

    def to_input(self, x: np.ndarray | float, y: np.ndarray | float):
        return x * self.scale_x + self.pad_x, y * self.scale_y + self.pad_y

    @property
    def content(self) -> tuple[int, int, int, int]:
        """The part of the model input that shows the frame (x1, y1, x2, y2); the rest is padding."""
        h, w = self.frame_size
        ih, iw = self.input_size
        return (max(0, int(round(self.pad_x))), max(0, int(round(self.pad_y))),
                min(iw, int(round(self.pad_x + w * self.scale_x))),
                min(ih, int(round(self.pad_y + h * self.scale_y))))


def _interp(src: tuple[int, int], dst: tuple[int, int]) -> int:
    # INTER_AREA averages when shrinking (no aliasing from 4000x3000 photos); linear when growing.
    return cv2.INTER_AREA if dst[0] * dst[1] < src[0] * src[1] else cv2.INTER_LINEAR


def resize(rgb: np.ndarray, size: tuple[int, int], mode: str = "stretch",
           pad_value: tuple[int, int, int] = (124, 116, 104)) -> tuple[np.ndarray, Resize]:
    """Resize an RGB uint8 frame to `size` (H, W).

    stretch: the whole frame, aspect ratio not kept (what localisation wants: nothing is cut).
    letterbox: the whole frame, aspect kept, padded.
    crop: ImageNet's evaluation protocol, the shorter side to size/0.875 (224 → 256) and the
    centre cut out; best for classification, but objects near the edges are not seen.
    Letterbox padding is the ImageNet mean colour, which the graph's normalisation turns into
    zeros, so the padding carries no signal into the CAM.
    """
    fh, fw = rgb.shape[:2]
    th, tw = size
    if mode == "stretch":
        out = cv2.resize(rgb, (tw, th), interpolation=_interp((fh, fw), (th, tw)))
        return out, Resize((fh, fw), (th, tw), tw / fw, th / fh)
    if mode == "crop":
        s = max(tw / fw, th / fh) / 0.875
        nw, nh = max(tw, round(fw * s)), max(th, round(fh * s))
        px, py = (nw - tw) // 2, (nh - th) // 2
        big = cv2.resize(rgb, (nw, nh), interpolation=_interp((fh, fw), (nh, nw)))
        return (np.ascontiguousarray(big[py:py + th, px:px + tw]),
                Resize((fh, fw), (th, tw), nw / fw, nh / fh, float(-px), float(-py)))
    if mode != "letterbox":
        raise EdgeCamError(f"unknown resize mode {mode!r}; use 'stretch', 'letterbox' or 'crop'.")
    s = min(tw / fw, th / fh)
    nw, nh = max(1, min(tw, round(fw * s))), max(1, min(th, round(fh * s)))
    px, py = (tw - nw) // 2, (th - nh) // 2
    out = np.empty((th, tw, 3), np.uint8)
    out[:] = pad_value
    out[py:py + nh, px:px + nw] = cv2.resize(rgb, (nw, nh), interpolation=_interp((fh, fw), (nh, nw)))
    return out, Resize((fh, fw), (th, tw), nw / fw, nh / fh, float(px), float(py))


def pad_colour(mean: tuple[float, float, float]) -> tuple[int, int, int]:
    r, g, b = (int(round(m * 255)) for m in mean)
    return r, g, b
