"""Where results go: `open_sink(uri)` mirrors `open_source(spec)`.

  events.jsonl, -             one JSON event per line (a file, or stdout)
  out.avi, out.mp4, ...       the annotated video (one file per stream when there are several)
  mqtt://host:port[/prefix]   each event published with QoS 1 (sinks/mqtt.py, edge-cam[mqtt])

Every sink has the methods of the `Sink` protocol (edge_cam/sink.py): bind, write, pending and close,
no-ops where a sink needs none. `bind(stats, sources, sinks)` hands the loop's counters to the live
preview (sinks/preview.py: `PreviewServer(host, port, token)`, a web page and /metrics).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2

from ..draw import annotate
from ..errors import EdgeCamError
from ..sink import PlainSink, Sink

if TYPE_CHECKING:
    from ..cascade import FrameResult
    from ..source import Source
    from ..stream_stats import StreamStats

__all__ = ["FOURCC", "ByStream", "JsonlSink", "Sink", "VideoSink", "check_not_an_input", "check_writable", "open_sink"]
log = logging.getLogger("edge_cam")


def _blocking_file(path: str) -> str | None:
    """The regular file (or other non-folder) on the way to `path`'s folder, if there is one."""
    folder = os.path.dirname(os.path.abspath(path))
    while folder and not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    return folder if folder and not os.path.isdir(folder) else None


def _parent_folder(path: str, what: str = "") -> None:
    blocker = _blocking_file(path)
    if blocker is not None:
        raise EdgeCamError(f"cannot write {what or path} to {path}: {blocker} is a file, not a folder.")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as e:
        raise EdgeCamError(f"cannot create the folder of {path} ({e.strerror}).") from None


def check_writable(path: str, what: str, folder: bool = False) -> None:
    """Fail now, with one sentence, if `path` (a file, or with `folder` a folder to write into)
    cannot be written: its folder is read-only, or it lies under a regular file. Commands call this
    before their work starts, not after it. The check really creates (and removes) a file, since
    permission bits say nothing about a read-only mount or, for root, a read-only folder. Missing
    folders are created, as writing would."""
    probe_in = path if folder else os.path.dirname(os.path.abspath(path))
    if folder and os.path.lexists(path) and not os.path.isdir(path):
        raise EdgeCamError(f"cannot write {what} into {path}: it is a file, not a folder.")
    _parent_folder(os.path.join(probe_in, "x"), what)
    if not folder and os.path.isdir(path):
        raise EdgeCamError(f"cannot write {what} to {path}: it is a folder; give a file name.")
    probe = os.path.join(probe_in, f".edge-cam-probe-{os.getpid()}")
    try:
        with open(probe, "wb"):
            pass
        os.remove(probe)
        if not folder and os.path.exists(path):
            with open(path, "r+b"):  # an existing file we may not overwrite
                pass
    except OSError as e:
        raise EdgeCamError(f"cannot write {what} to {path} ({e.strerror}).") from None


def check_not_an_input(path: str, inputs: Sequence[str | None], what: str) -> None:
    """Refuse to write `what` over one of the command's own inputs: the same file, also through a
    symbolic or hard link (`distill --teacher t.onnx -o t.onnx` replaced the teacher with the
    student). Inputs that are not files (a camera, a URL, None) are skipped."""
    for source in inputs:
        if not source or not os.path.isfile(source):
            continue
        same = os.path.realpath(path) == os.path.realpath(source)
        try:
            same = same or os.path.samefile(path, source)
        except OSError:  # `path` does not exist yet
            pass
        if same:
            raise EdgeCamError(f"cannot write {what} to {path}: it is the input {source}, which writing there "
                               "would destroy; choose another output path.")


class JsonlSink(PlainSink):
    """One JSON object per line, each line one write() of the whole line on an unbuffered file, so a
    consumer tailing the file sees it at once and never half a line. A full disk or an I/O error
    ends the run with a sentence saying how many events the file holds, the torn line cut off."""

    def __init__(self, path: str):
        self.path, self.written = path, 0
        self._size = 0  # bytes of whole lines in the file
        if path == "-":
            self._f = sys.stdout
            self._fd = None
        else:
            _parent_folder(path, "events")
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            except OSError as e:
                raise EdgeCamError(f"cannot write events to {path} ({e.strerror}).") from None

    def write_obj(self, obj: dict) -> None:
        line = json.dumps(obj) + "\n"
        if self._fd is None:
            self._f.write(line)
            self._f.flush()  # a BrokenPipeError (stdout closed early) is the caller's to end quietly
        else:
            data = line.encode("utf-8")
            try:
                done = 0
                while done < len(data):  # a regular file takes it in one write; a pipe may not
                    done += os.write(self._fd, data[done:])
            except OSError as e:
                self._fail(e)
            self._size += len(data)
        self.written += 1

    def _fail(self, e: OSError) -> None:
        try:  # no torn last line: whatever part of this line got out is cut off again
            if self._fd is not None:
                os.ftruncate(self._fd, self._size)
        except OSError:
            pass  # not a regular file (/dev/full, a FIFO): nothing to cut
        cause = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else e.strerror
        raise EdgeCamError(f"cannot write more events to {self.path} ({cause}): stopped after "
                           f"{self.written} events, which the file holds as whole lines.") from None

    def write(self, result: FrameResult) -> None:
        self.write_obj(result.to_event())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


FOURCC = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "MJPG"}
# cv2.VideoWriter.write reports nothing: on a full disk frames vanish and the file ends without its
# index. So before each frame the free space must hold the largest frame so far (a raw frame's
# bytes before the first one) plus room for the index and trailer the writer adds at release
# (AVI's idx1 takes 16 bytes a frame, MP4's moov tables about as much: 32 leaves a margin).
VIDEO_RESERVE, VIDEO_INDEX_BYTES = 64 << 10, 32


def free_bytes(path: str) -> int:
    st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    return st.f_bavail * st.f_frsize


class VideoSink(PlainSink):
    """Annotated video; codecs the headless OpenCV wheel can write (MJPG in .avi, mp4v in .mp4).
    When the disk is about to fill, the video is finalised with the frames so far and the run ends
    with a sentence saying how many that is (OpenCV itself would lose frames silently)."""

    def __init__(self, path: str, fps: float = 15.0):
        ext = os.path.splitext(path)[1].lower()
        if ext not in FOURCC:
            raise EdgeCamError(f"cannot write video {path}: use one of {', '.join(sorted(FOURCC))}.")
        check_writable(path, "the video")
        self.path, self.fps, self._fourcc = path, fps if fps and fps > 0 else 15.0, FOURCC[ext]
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.written = 0
        self._frame_bytes = 0  # the most the file grew by one frame, measured when it was flushed
        self._file_size = 0

    def write(self, result: FrameResult) -> None:
        if result.image is None:
            return
        out = annotate(result.image, result)
        size = (out.shape[1], out.shape[0])
        if self._writer is None:
            self._writer = cv2.VideoWriter(self.path, cv2.VideoWriter.fourcc(*self._fourcc), self.fps, size)
            if not self._writer.isOpened():
                raise EdgeCamError(f"OpenCV cannot write {self.path} with codec {self._fourcc}.")
            self._size = size
        if size != self._size:  # a video has one size: later frames are fitted to the first
            out = cv2.resize(out, self._size)
        self._check_room(out.nbytes)
        self._writer.write(out)
        self.written += 1

    def _check_room(self, raw_bytes: int) -> None:
        try:
            grown = os.path.getsize(self.path) - self._file_size
            self._file_size += grown
            free = free_bytes(self.path)
        except OSError:
            return  # not a local file system we can ask: write as OpenCV does
        self._frame_bytes = max(self._frame_bytes, grown)
        need = (self._frame_bytes or raw_bytes) * 2 + VIDEO_RESERVE + VIDEO_INDEX_BYTES * self.written
        if free < need:
            self.close()  # the index and trailer still fit: the frames so far stay playable
            raise EdgeCamError(f"the disk holding {self.path} is full ({free // 1024} kB free): stopped "
                               f"after {self.written} frames of video, which the file holds.")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class ByStream:
    """One sink per stream (a video file each, an MQTT topic each), chosen by `result.stream`."""

    def __init__(self, sinks: Sequence[Sink]):
        self.sinks = list(sinks)

    def bind(self, stats: StreamStats, sources: Sequence[Source], sinks: Sequence[Sink]) -> None:
        for s in self.sinks:
            s.bind(stats, sources, sinks)

    def write(self, result: FrameResult) -> None:
        self.sinks[result.stream].write(result)

    @property
    def pending(self) -> int:
        return sum(s.pending for s in self.sinks)

    @property
    def lost(self) -> int:
        return sum(getattr(s, "lost", 0) for s in self.sinks)

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
              spill_dir: str | None = None, retry_auth: bool = False) -> Sink:
    """A sink for `uri`: "-" or a .jsonl/.json/.ndjson path (events), a video path (.avi, .mp4, .mkv,
    .mov, .m4v), or mqtt://host:port[/prefix]. `streams`: how many sources feed it (videos and
    MQTT topics are per stream; the events file is shared, each event naming its stream).
    `retry_auth`: MQTT keeps retrying a broker that refuses the credentials (see MqttSink).

    >>> sinks = [open_sink("out.mp4"), open_sink("events.jsonl")]
    """
    if streams < 1:
        raise EdgeCamError(f"streams must be 1 or more, not {streams}.")
    if uri.startswith("mqtt://"):
        from .mqtt import MqttSink  # paho is an optional extra

        made: list[Sink] = []
        try:
            for i in range(streams):
                made.append(MqttSink(uri, device=device, stream=str(i), spill_dir=spill_dir, retry_auth=retry_auth))
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
