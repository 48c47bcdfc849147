"""How each kind of source is opened and read: OpenCV captures (cameras, RTSP, video files,
GStreamer), MJPEG over HTTP, image files. `source.py` runs one of these in a capture thread.

Credentials in a URL (rtsp://user:pw@host/...) are used for the connection and never shown:
SourceSpec.name, which events, logs and errors carry, has them masked.
"""
from __future__ import annotations

import base64
import glob
import http.client
import os
import urllib.parse
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from .errors import EdgeCamError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"}
OPEN_TIMEOUT_S = 5.0


def read_image(path: str) -> np.ndarray:
    """Decode any image file OpenCV knows, keeping depth and alpha (to_rgb8 deals with them)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise EdgeCamError(f"cannot read {path} ({e.strerror}).") from None
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error as e:  # e.g. a header claiming more than OpenCV's 2^30-pixel limit
        raise EdgeCamError(f"{path} is not a readable image ({first_cv_line(e)}).") from None
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


class Reader(Protocol):
    """One open connection to a source: read() gives (ok, image or None, error text)."""

    def read(self) -> tuple[bool, np.ndarray | None, str]: ...

    def close(self) -> None: ...


class CaptureReader:
    def __init__(self, cap: cv2.VideoCapture):
        self.cap = cap

    def read(self):
        ok, image = self.cap.read()
        return ok, image if ok else None, ""

    def close(self):
        self.cap.release()


class ImageReader:
    """A list of image files; an unreadable one is a frame with an error, not the end."""

    def __init__(self, paths: list[str]):
        self.paths, self.i = paths, 0
        self.name = ""

    def read(self):
        if self.i >= len(self.paths):
            return False, None, ""
        self.name = self.paths[self.i]
        self.i += 1
        try:
            return True, read_image(self.name), ""
        except EdgeCamError as e:
            return True, None, str(e)

    def close(self):
        pass


class MjpegReader:
    """MJPEG over HTTP, as IP cameras and `motion` serve it: one JPEG per multipart part."""

    def __init__(self, url: str, timeout: float = OPEN_TIMEOUT_S):
        u = urllib.parse.urlsplit(url)
        conn_type = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        self.conn = conn_type(u.hostname or "", u.port, timeout=timeout)
        headers = {}
        if u.username is not None:  # cameras behind HTTP Basic auth take it from the URL, as browsers do
            user = urllib.parse.unquote(u.username) + ":" + urllib.parse.unquote(u.password or "")
            headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
        self.conn.request("GET", (u.path or "/") + (f"?{u.query}" if u.query else ""), headers=headers)
        self.resp = self.conn.getresponse()
        if self.resp.status != 200:
            raise OSError(f"HTTP {self.resp.status}")
        ctype = self.resp.getheader("Content-Type", "")
        if "multipart" not in ctype:
            raise OSError(f"not an MJPEG stream (Content-Type {ctype or 'missing'})")

    def _part(self) -> bytes:
        length = None
        while True:  # part headers, after the boundary line
            line = self.resp.readline(1024)
            if not line:
                raise OSError("stream ended")
            line = line.strip()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
            elif not line and length is not None:
                break
            elif line.startswith(b"\xff\xd8"):  # no headers at all: the JPEG itself
                return line + self._until_eoi()
        data = self.resp.read(length)
        if len(data) < length:
            raise OSError("stream ended inside a frame")
        return data

    def _until_eoi(self) -> bytes:
        buf = b""
        while not buf.endswith(b"\xff\xd9"):
            chunk = self.resp.read(1)
            if not chunk:
                raise OSError("stream ended inside a frame")
            buf += chunk
        return buf

    def read(self):
        try:
            data = self._part()
        except (OSError, ValueError, http.client.HTTPException):
            return False, None, ""
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return True, image, "" if image is not None else "corrupt JPEG frame"

    def close(self):
        self.conn.close()


def _has_gstreamer() -> bool:
    return any(line.strip().startswith("GStreamer:") and "YES" in line
               for line in cv2.getBuildInformation().splitlines())


def _gstreamer(pipeline: str, what: str) -> CaptureReader:
    if not _has_gstreamer():
        raise EdgeCamError(f"{what} needs OpenCV built with GStreamer, and this OpenCV is not (the "
                           "pip wheels never are); use the distribution's or JetPack's python3-opencv.")
    return CaptureReader(cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER))


def csi_pipeline(sensor: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={width},"
            f"height={height},framerate={fps}/1 ! nvvidconv ! video/x-raw,format=BGRx ! "
            "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1")


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # camera, v4l2, csi, gstreamer, rtsp, http, video, images
    target: str
    live: bool
    name: str  # as events name it: "camera:0", "file:clip.mp4", ...


def parse_source(spec: str) -> SourceSpec:
    s = spec.strip()
    if s.isdigit():
        return SourceSpec("camera", s, True, f"camera:{s}")
    if s.startswith("v4l2://"):
        return SourceSpec("v4l2", s[len("v4l2://"):], True, s)
    if s.startswith("csi://"):
        return SourceSpec("csi", s[len("csi://"):] or "0", True, s)
    if s.startswith("rtsp://") or s.startswith("rtsps://"):
        return SourceSpec("rtsp", s, True, mask_credentials(s))
    if s.startswith("http://") or s.startswith("https://"):
        return SourceSpec("http", s, True, mask_credentials(s))
    if " ! " in s:
        return SourceSpec("gstreamer", s, True, "gstreamer")
    path = s[len("file://"):] if s.startswith("file://") else s
    if os.path.isfile(path) and os.path.splitext(path)[1].lower() not in IMAGE_EXTS:
        return SourceSpec("video", path, False, f"file:{path}")
    return SourceSpec("images", path, False, f"file:{path}")


def open_reader(spec: SourceSpec) -> Reader:
    """Open the source once; raises EdgeCamError naming what is wrong."""
    if spec.kind in ("camera", "v4l2"):
        target = int(spec.target) if spec.kind == "camera" else spec.target
        cap = cv2.VideoCapture(target, cv2.CAP_V4L2 if spec.kind == "v4l2" else cv2.CAP_ANY)
        if not cap.isOpened():
            raise EdgeCamError(f"camera {spec.target} cannot be opened; check that it is plugged in and free.")
        return CaptureReader(cap)
    if spec.kind == "csi":
        reader = _gstreamer(csi_pipeline(int(spec.target)), "csi://")
    elif spec.kind == "gstreamer":
        reader = _gstreamer(spec.target, "a GStreamer pipeline")
    elif spec.kind == "rtsp":
        ms = int(OPEN_TIMEOUT_S * 1000)
        reader = CaptureReader(cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]))
    elif spec.kind == "http":
        try:
            return MjpegReader(spec.target)
        except (OSError, http.client.HTTPException) as e:
            raise EdgeCamError(f"cannot open the MJPEG stream {spec.name} ({e}).") from None
    elif spec.kind == "video":
        cap = cv2.VideoCapture(spec.target)
        if not cap.isOpened():
            raise EdgeCamError(f"{spec.target} is not a video OpenCV can open (corrupt or unsupported codec).")
        return CaptureReader(cap)
    else:
        paths = list_images([spec.target])
        if not paths:
            raise EdgeCamError(f"{spec.target} holds no images ({', '.join(sorted(IMAGE_EXTS))}).")
        return ImageReader(paths)
    if not reader.cap.isOpened():
        raise EdgeCamError(f"{spec.name} cannot be opened; check the address and that it is streaming.")
    return reader


def frame_count(spec: SourceSpec) -> int | None:
    """Frames in a file source, for a progress bar; None for live sources."""
    if spec.kind == "video":
        cap = cv2.VideoCapture(spec.target)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        return n if n > 0 else None
    if spec.kind == "images":
        return len(list_images([spec.target]))
    return None




def first_cv_line(e: cv2.error) -> str:
    """OpenCV's own message without its source-file preamble."""
    text = str(e).strip().splitlines()
    return text[-1].split(") ", 1)[-1].strip() if text else type(e).__name__


def mask_credentials(url: str) -> str:
    """The URL with its password (or lone user name) replaced by ***, for anything shown or sent on."""
    u = urllib.parse.urlsplit(url)
    if not u.username and not u.password:
        return url
    host = u.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{u.username}:***@{host}" if u.password is not None else f"***@{host}"
    if u.port:
        netloc += f":{u.port}"
    return urllib.parse.urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))
