"""Where results go: JSON lines and annotated video. Each sink has write(frame, result) and close()."""
from __future__ import annotations

import json
import os
import sys

import cv2
import numpy as np

from ..tools.annotate import annotate
from ..errors import EdgeCamError


class JsonlSink:
    """One JSON object per line, flushed per line so a consumer tailing the file sees it at once."""

    def __init__(self, path: str):
        self.path = path
        if path == "-":
            self._f = sys.stdout
        else:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            try:
                self._f = open(path, "w", encoding="utf-8")
            except OSError as e:
                raise EdgeCamError(f"cannot write events to {path} ({e.strerror}).") from None

    def write_obj(self, obj: dict) -> None:
        self._f.write(json.dumps(obj) + "\n")
        self._f.flush()

    def write(self, frame: np.ndarray, result) -> None:
        self.write_obj(result.to_event())

    def close(self) -> None:
        if self._f is not sys.stdout:
            self._f.close()


FOURCC = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "MJPG"}


class VideoSink:
    """Annotated video; codecs the headless OpenCV wheel can write (MJPG in .avi, mp4v in .mp4)."""

    def __init__(self, path: str, fps: float = 15.0):
        ext = os.path.splitext(path)[1].lower()
        if ext not in FOURCC:
            raise EdgeCamError(f"cannot write video {path}: use one of {', '.join(sorted(FOURCC))}.")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path, self.fps, self._fourcc = path, fps if fps and fps > 0 else 15.0, FOURCC[ext]
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray, result) -> None:
        out = annotate(frame, result)
        size = (out.shape[1], out.shape[0])
        if self._writer is None:
            self._writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*self._fourcc), self.fps, size)
            if not self._writer.isOpened():
                raise EdgeCamError(f"OpenCV cannot write {self.path} with codec {self._fourcc}.")
            self._size = size
        if size != self._size:  # a video has one size: later frames are fitted to the first
            out = cv2.resize(out, self._size)
        self._writer.write(out)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
