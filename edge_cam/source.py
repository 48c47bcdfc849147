"""Where frames come from: an image, a folder or glob of images, a video file, a camera index."""
from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from .errors import EdgeCamError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"}


@dataclass
class Frame:
    index: int
    image: np.ndarray | None  # BGR(A)/grey as OpenCV decodes it; None when unreadable
    ts: float
    source: str
    name: str = ""  # the file, for image sources
    read_ms: float = 0.0
    error: str = ""  # why `image` is None


def read_image(path: str) -> np.ndarray:
    """Decode any image file OpenCV knows, keeping depth and alpha (to_rgb8 deals with them)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise EdgeCamError(f"cannot read {path} ({e.strerror}).") from None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None or image.size == 0:
        raise EdgeCamError(f"{path} is not a readable image (corrupt or unsupported format).")
    return image


def list_images(paths: list[str]) -> list[str]:
    """Files, folders (sorted, not recursive) and globs → image paths; missing inputs are errors."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(os.path.join(p, f) for f in os.listdir(p)
                          if os.path.splitext(f)[1].lower() in IMAGE_EXTS)
        elif os.path.isfile(p):
            out.append(p)
        elif glob.has_magic(p):
            out += sorted(f for f in glob.glob(p) if os.path.isfile(f))
        else:
            raise EdgeCamError(f"{p} does not exist.")
    return out


def _images(paths: list[str], name: str) -> Iterator[Frame]:
    for i, path in enumerate(paths):
        t0 = time.perf_counter()
        try:
            image, error = read_image(path), ""
        except EdgeCamError as e:
            image, error = None, str(e)
        yield Frame(i, image, time.time(), name, path, (time.perf_counter() - t0) * 1e3, error)


def _capture(cap: cv2.VideoCapture, name: str) -> Iterator[Frame]:
    try:
        i = 0
        while True:
            t0 = time.perf_counter()
            ok, image = cap.read()
            if not ok:
                return
            yield Frame(i, image, time.time(), name, read_ms=(time.perf_counter() - t0) * 1e3)
            i += 1
    finally:
        cap.release()


def open_source(spec: str) -> Iterator[Frame]:
    """A camera index ("0"), a video file, an image, a folder of images or a glob."""
    if spec.isdigit():
        cap = cv2.VideoCapture(int(spec))
        if not cap.isOpened():
            raise EdgeCamError(f"camera {spec} cannot be opened; check that it is plugged in and free.")
        return _capture(cap, f"camera:{spec}")
    path = spec[len("file://"):] if spec.startswith("file://") else spec
    if os.path.isfile(path) and os.path.splitext(path)[1].lower() not in IMAGE_EXTS:
        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            raise EdgeCamError(f"{path} is not a video OpenCV can open (corrupt or unsupported codec).")
        return _capture(cap, f"file:{path}")
    paths = list_images([path])
    if not paths:
        raise EdgeCamError(f"{path} holds no images ({', '.join(sorted(IMAGE_EXTS))}).")
    return _images(paths, f"file:{path}")
