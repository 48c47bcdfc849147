"""Where frames come from, in the words jetson-inference users know:

  0, v4l2:///dev/video0        a camera (OpenCV; V4L2 on Linux)
  csi://0                      a Jetson CSI camera (GStreamer nvarguscamerasrc)
  rtsp://host/path             a network camera (FFmpeg)
  http://host/stream.mjpg      an MJPEG-over-HTTP camera (multipart/x-mixed-replace)
  file://clip.mp4, clip.mp4    a video file;  a.jpg, folder/, 'shots/*.png'  images
  "v4l2src ! ... ! appsink"    a raw GStreamer pipeline

A capture thread reads ahead. Live sources keep only the newest frame (the stale ones are
dropped and counted: a late answer about an old frame is worth less than a fresh one); files are
read losslessly and in order through a bounded queue. A live source that drops is reopened with
back-off while the process keeps running.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .capture import IMAGE_EXTS, Reader, frame_count, list_images, max_pixels, open_reader, parse_source, read_image
from .errors import EdgeCamError, first_line

__all__ = ["IMAGE_EXTS", "Frame", "Source", "SourceStats", "list_images", "max_pixels", "open_source",
           "read_image", "read_video"]
log = logging.getLogger("edge_cam")


@dataclass
class Frame:
    """One frame on its way through the cascade, with where it came from."""
    index: int | None  # None: the cascade numbers the stream's frames itself
    image: np.ndarray | None  # BGR(A)/grey as OpenCV decodes it; None when unreadable
    ts: float
    source: str  # as events name it, credentials masked
    name: str = ""  # the file, for image sources
    read_ms: float = 0.0
    error: str = ""  # why `image` is None
    stream: int = 0  # which of several sources
    color: str = "BGR"  # channel order of `image`


@dataclass
class SourceStats:
    frames: int = 0  # frames read from the device or file
    dropped: int = 0  # live frames replaced by a newer one before they were processed
    corrupt: int = 0  # frames that could not be decoded
    reconnects: int = 0
    missing: int = 0  # frames a video file's header promised that never came (a truncated file)


_END = object()


class Source:
    """Frames from one source, read ahead by a capture thread.

    Opening happens at construction (a source that cannot open fails at once, with a sentence);
    the thread starts on first use or on `start()`. Use it as a context manager or close() it.

    >>> with open_source("clip.mp4") as source:
    ...     for frame in source:
    ...         print(frame.index, frame.image.shape)
    """

    def __init__(self, spec: str, loop: bool = False, queue_size: int = 8, max_backoff: float = 10.0,
                 stream: int = 0):
        self.spec, self.loop, self.max_backoff, self.stream = spec, loop, max_backoff, stream
        self.stats = SourceStats()
        self.info = parse_source(spec)
        self.name = self.info.name
        self.expected = frame_count(self.info)  # per pass, as the file's header says
        self.total = None if loop else self.expected
        self._reader: Reader | None = open_reader(self.info)
        self.finished = False
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=1 if self.info.live else queue_size)
        self._thread = threading.Thread(target=self._run, name=f"capture {self.name}", daemon=True)

    def start(self) -> Source:
        if self._thread.ident is None and not self._stop.is_set():
            self._thread.start()
        return self

    def __enter__(self) -> Source:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def live(self) -> bool:
        return self.info.live

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def _put(self, item) -> None:
        if not self.info.live or item is _END:
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue
            return
        try:  # latest frame wins
            self._queue.get_nowait()
            self.stats.dropped += 1
        except queue.Empty:
            pass
        self._queue.put_nowait(item)

    def _check_pass(self, frames: int) -> None:
        """A video file that ends well short of the frames its header promised is truncated or
        damaged: say so, and count what is missing (a frame count can be an estimate: a frame or
        1% short is not worth a warning)."""
        if self.info.kind != "video" or not self.expected:
            return
        short = self.expected - frames
        if short > max(1, self.expected // 100):
            self.stats.missing += short
            log.warning("%s ended after %d of the %d frames its header promises: the file is truncated or "
                        "damaged", self.name, frames, self.expected)

    def _reopen(self):
        """A file source again from its start (--loop); it may have gone meanwhile."""
        if self.info.kind == "video" and not os.path.exists(self.info.target):
            raise EdgeCamError(f"{self.info.target} was deleted or moved during the run, so it cannot "
                               "start again (--loop).")
        return open_reader(self.info)

    def _run(self) -> None:
        index, backoff, reader = 0, 0.5, self._reader
        start = 0  # index of this pass's first frame
        try:
            while not self._stop.is_set():
                if reader is None:
                    if self._stop.wait(backoff):
                        break
                    backoff = min(backoff * 2, self.max_backoff)
                    try:
                        reader = open_reader(self.info)
                        self.stats.reconnects += 1
                        log.warning("%s: reconnected", self.name)
                    except EdgeCamError:
                        continue
                t0 = time.perf_counter()
                ok, image, error = reader.read()
                read_ms = (time.perf_counter() - t0) * 1e3
                if not ok:
                    reader.close()
                    reader = None
                    if self.info.live:
                        log.warning("%s: lost, reopening (back-off up to %g s)", self.name, self.max_backoff)
                        continue
                    self._check_pass(index - start)
                    if self.loop and index > start:
                        reader, start = self._reopen(), index
                        continue
                    break
                backoff = 0.5
                self.stats.frames += 1
                if image is None:
                    self.stats.corrupt += 1
                self._put(Frame(index, image, time.time(), self.name, getattr(reader, "name", ""), read_ms,
                                error or ("" if image is not None else "undecodable frame"), self.stream))
                index += 1
        except EdgeCamError as e:  # the loop must learn why its source stopped
            self._put(e)
        except Exception as e:
            self._put(EdgeCamError(f"{self.name} failed while reading ({first_line(e)})."))
        finally:
            if reader is not None:
                reader.close()
            self._put(_END)

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or None when none came within `timeout` or the source has ended
        (then `finished` is True)."""
        if self.finished:
            return None
        self.start()
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _END:
            self.finished = True
            return None
        if isinstance(item, Exception):
            raise item
        return item

    def __iter__(self) -> Iterator[Frame]:
        while not self.finished:
            frame = self.get(timeout=0.5)
            if frame is not None:
                yield frame

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        elif self._reader is not None and not self._thread.ident:  # never started: close what it opened
            self._reader.close()


def open_source(spec: str, loop: bool = False, stream: int = 0) -> Source:
    """A started Source: a camera index, v4l2:///dev/videoN, csi://N, rtsp://..., http://... (MJPEG),
    a video file, an image, a folder, a glob or a GStreamer pipeline (see the module's doc)."""
    return Source(spec, loop=loop, stream=stream).start()


def read_video(path: str) -> list[np.ndarray]:
    """Every decodable frame of a video file, in order (for short clips: it holds them all)."""
    with open_source(path) as source:
        return [f.image for f in source if f.image is not None]
