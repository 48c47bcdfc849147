"""Where results go: `open_sink(uri)` mirrors `open_source(spec)`.

  events.jsonl, -             one JSON event per line (a file, or stdout)
  out.avi, out.mp4, ...       the annotated video (one file per stream when there are several)
  mqtt://host:port[/prefix]   each event published with QoS 1 (sinks/mqtt.py, edge-cam[mqtt])

Every sink has write(result) and close(); `pending` (events not yet delivered) is optional.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import cv2

from ..errors import EdgeCamError

if TYPE_CHECKING:
    from ..cascade import FrameResult

__all__ = ["FOURCC", "ByStream", "JsonlSink", "Sink", "VideoSink", "open_sink"]


class Sink(Protocol):
    def write(self, result: FrameResult) -> None: ...

    def close(self) -> None: ...


def _parent_folder(path: str) -> None:
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as e:
        raise EdgeCamError(f"cannot create the folder of {path} ({e.strerror}).") from None


class JsonlSink:
    """One JSON object per line, flushed per line so a consumer tailing the file sees it at once."""

    def __init__(self, path: str):
        self.path = path
        if path == "-":
            self._f = sys.stdout
        else:
            _parent_folder(path)
            try:
                self._f = open(path, "w", encoding="utf-8")
            except OSError as e:
                raise EdgeCamError(f"cannot write events to {path} ({e.strerror}).") from None

    def write_obj(self, obj: dict) -> None:
        self._f.write(json.dumps(obj) + "\n")
        self._f.flush()

    def write(self, result: FrameResult) -> None:
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
        _parent_folder(path)
        self.path, self.fps, self._fourcc = path, fps if fps and fps > 0 else 15.0, FOURCC[ext]
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, result: FrameResult) -> None:
        from ..tools.annotate import annotate  # drawing is a tool; only this sink needs it

        if result.image is None:
            return
        out = annotate(result.image, result)
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


class ByStream:
    """One sink per stream (a video file each, an MQTT topic each), chosen by `result.stream`."""

    def __init__(self, sinks: Sequence[Sink]):
        self.sinks = list(sinks)

    def write(self, result: FrameResult) -> None:
        self.sinks[result.stream].write(result)

    @property
    def pending(self) -> int:
        return sum(getattr(s, "pending", 0) for s in self.sinks)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


def numbered(path: str, i: int, n: int) -> str:
    """`out.mp4` for one stream; out-0.mp4, out-1.mp4, ... for several."""
    if n == 1:
        return path
    root, ext = os.path.splitext(path)
    return f"{root}-{i}{ext}"


def open_sink(uri: str, *, streams: int = 1, fps: float = 15.0, device: str | None = None,
              spill_dir: str | None = None) -> Sink:
    """A sink for `uri`: "-" or a .jsonl/.json/.ndjson path (events), a video path (.avi, .mp4, .mkv,
    .mov, .m4v), or mqtt://host:port[/prefix]. `streams`: how many sources feed it (videos and
    MQTT topics are per stream; the events file is shared, each event naming its stream).

    >>> sinks = [open_sink("out.mp4"), open_sink("events.jsonl")]
    """
    if streams < 1:
        raise EdgeCamError(f"streams must be 1 or more, not {streams}.")
    if uri.startswith("mqtt://"):
        from .mqtt import MqttSink  # paho is an optional extra

        made: list[Sink] = []
        try:
            for i in range(streams):
                made.append(MqttSink(uri, device=device, stream=str(i), spill_dir=spill_dir))
        except BaseException:
            ByStream(made).close()
            raise
        return made[0] if streams == 1 else ByStream(made)
    ext = os.path.splitext(uri)[1].lower()
    if uri == "-" or ext in (".jsonl", ".json", ".ndjson", ".txt", ".log", ""):
        return JsonlSink(uri)
    if ext in FOURCC:
        videos = [VideoSink(numbered(uri, i, streams), fps) for i in range(streams)]
        return videos[0] if streams == 1 else ByStream(videos)
    raise EdgeCamError(f"cannot tell what to write to {uri}: use - or a .jsonl file for events, a video "
                       f"({', '.join(sorted(FOURCC))}) or mqtt://host:port[/prefix].")
