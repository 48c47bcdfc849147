"""How each kind of source is opened and read: OpenCV captures (cameras, RTSP, MJPEG over HTTP,
video files, GStreamer) and image files. `source.py` runs one of these in a capture thread.

MJPEG over HTTP goes through OpenCV's FFmpeg backend, as RTSP does. It replaced a hand-written
multipart reader, measured against it on a loopback camera at 30 FPS (640x360): the same open
time (4-7 ms) and frame rate, less CPU (1.4 against 1.6 ms a frame), and FFmpeg also reads
cameras whose parts carry no Content-Length, on which the old reader decoded no frame at 14 ms of
CPU each. What FFmpeg lacks is a reason when it cannot open a stream (OpenCV only prints "can't
be used to capture by name"): why_not_mjpeg asks the camera once, so a wrong password still reads
"HTTP 401". FFmpeg sends Basic auth after the camera's challenge, as browsers do: one refused
request per connection in the camera's log.

Credentials in a URL (rtsp://user:pw@host/..., ?token=...) are used for the connection and never
shown: SourceSpec.name, which events, logs and errors carry, has them masked.
"""
from __future__ import annotations

import base64
import glob
import http.client
import logging
import os
import re
import stat
import urllib.parse
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from .errors import EdgeCamError, UnreadableImage, first_line
from .image_header import image_size

log = logging.getLogger("edge_cam")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"}
OPEN_TIMEOUT_S = 5.0
MAX_PIXELS_ENV = "EDGE_CAM_MAX_PIXELS"
# The default pixel limit, for a 4 GB board. Measured peak RSS of `localize` on one 120 MP photo
# (12600x9500): 0.83 GB as an 8-bit JPEG (1.78 GB with --overlays), 2.47 GB as a 16-bit RGBA PNG;
# about 140 MB on a small photo. At 100 MP the worst of those stays near 2 GB.
DEFAULT_MAX_PIXELS = 100_000_000


def max_pixels() -> int:
    """The most pixels an image may claim before it is decoded: EDGE_CAM_MAX_PIXELS, or
    DEFAULT_MAX_PIXELS."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text))
    except (ValueError, OverflowError):
        value = 0
    if value < 1:
        raise EdgeCamError(f"{MAX_PIXELS_ENV} must be a number of pixels, 1 or more, not {text[:40]!r}.")
    return value


def read_image(path: str, limit: int | None = None) -> np.ndarray:
    """Decode any image file OpenCV knows, keeping depth and alpha (to_rgb8 deals with them).

    The header's size is checked before decoding: an image of more than `limit` pixels (default
    max_pixels()) is refused, never decoded. A JPEG whose last bytes are missing decodes as
    cv2.imread decodes it (what it holds; the rest grey), with a warning. Anything unreadable
    raises UnreadableImage (an EdgeCamError) with one sentence naming the file."""
    limit = max_pixels() if limit is None else limit
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block, /dev/zero never end
            raise UnreadableImage(f"{path} is not a readable image (not a regular file).")
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise UnreadableImage(f"cannot read {path} ({e.strerror}).") from None
    size = image_size(data.data)
    if size is not None and size[0] * size[1] > limit:
        raise UnreadableImage(f"{path} is not a readable image here: its header claims {size[0]}x{size[1]} "
                              f"pixels, more than the limit of {limit} ({MAX_PIXELS_ENV} raises it).")
    image = _decode(path, data)
    if image is None and data[:2].tobytes() == b"\xff\xd8" and data[-2:].tobytes() != b"\xff\xd9":
        # A JPEG cut short: imread's file reader ends it with an EOI marker and decodes the rest;
        # imdecode's memory reader gives up instead. The same marker makes both agree.
        image = _decode(path, np.concatenate([data, np.frombuffer(b"\xff\xd9", np.uint8)]))
        if image is not None:
            log.warning("%s is a truncated JPEG (its last bytes are missing); decoded what it holds", path)
    if image is None:
        raise UnreadableImage(f"{path} is not a readable image (corrupt or unsupported format).")
    return image


def _decode(path: str, data: np.ndarray) -> np.ndarray | None:
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error as e:  # e.g. a header over OpenCV's own 2^30-pixel limit, in a format not read above
        raise UnreadableImage(f"{path} is not a readable image ({first_cv_line(e)}).") from None
    return image if image is not None and image.size else None


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
        self.limit = max_pixels()  # a bad EDGE_CAM_MAX_PIXELS fails now, not once per image

    def read(self):
        if self.i >= len(self.paths):
            return False, None, ""
        self.name = self.paths[self.i]
        self.i += 1
        try:
            return True, read_image(self.name, self.limit), ""
        except UnreadableImage as e:
            return True, None, str(e)

    def close(self):
        pass


def _ffmpeg(url: str) -> CaptureReader:
    """An RTSP stream or MJPEG over HTTP(S), through OpenCV's FFmpeg backend, which gives up on a
    dead address or a stalled stream after OPEN_TIMEOUT_S."""
    ms = int(OPEN_TIMEOUT_S * 1000)
    return CaptureReader(cv2.VideoCapture(url, cv2.CAP_FFMPEG, [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]))


def why_not_mjpeg(url: str, timeout: float = OPEN_TIMEOUT_S) -> str:
    """Why an MJPEG-over-HTTP address does not open, from one plain request: FFmpeg reads these
    streams well but, when it cannot open one, says nothing of why (HTTP 401, a web page instead of a
    stream); this says it. Basic auth from the URL, as FFmpeg and browsers send it."""
    u = urllib.parse.urlsplit(url)
    conn_type = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    headers = {}
    if u.username is not None:
        user = urllib.parse.unquote(u.username) + ":" + urllib.parse.unquote(u.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
    conn = conn_type(u.hostname or "", u.port, timeout=timeout)
    try:
        conn.request("GET", (u.path or "/") + (f"?{u.query}" if u.query else ""), headers=headers)
        resp = conn.getresponse()
        ctype = resp.getheader("Content-Type", "")
    except (OSError, http.client.HTTPException, ValueError) as e:
        return getattr(e, "strerror", None) or first_line(e)
    finally:
        conn.close()
    if resp.status != 200:
        return f"HTTP {resp.status}"
    if "multipart" not in ctype:
        return f"not an MJPEG stream (Content-Type {ctype or 'missing'})"
    return "FFmpeg cannot read it"


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
        reader = _ffmpeg(spec.target)
    elif spec.kind == "http":
        reader = _ffmpeg(spec.target)
        if not reader.cap.isOpened():
            raise EdgeCamError(f"cannot open the MJPEG stream {spec.name} ({why_not_mjpeg(spec.target)}).")
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


# Query keys whose values are secrets: ?token=, ?api_key=, ?pwd=, ?password=, ?auth=, ?sig=,
# AWS's X-Amz-Signature and X-Amz-Credential, ?session_id=, ... (a substring of the key, any case).
SECRET_KEY = re.compile(r"token|key|pass|pwd|auth|sig|secret|session|credential|cookie", re.IGNORECASE)


def mask_credentials(url: str) -> str:
    """The URL with its password (or lone user name) and the values of credential-like query keys
    replaced by ***, for anything shown or sent on (events, logs, errors, the summary)."""
    try:
        u = urllib.parse.urlsplit(url)
        _ = u.port  # parsed lazily: an unclosed [ or a bad port raises here
    except ValueError:  # not a URL we can take apart: show none of what follows the scheme
        return url.split("://", 1)[0] + "://(an address that cannot be parsed)"
    netloc, query = u.netloc, _mask_query(u.query)
    if u.username or u.password:
        host = u.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{u.username}:***@{host}" if u.password is not None else f"***@{host}"
        if u.port:
            netloc += f":{u.port}"
    if (netloc, query) == (u.netloc, u.query):
        return url
    return urllib.parse.urlunsplit((u.scheme, netloc, u.path, query, u.fragment))


def _mask_query(query: str) -> str:
    parts = []
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        parts.append(f"{key}=***" if eq and value and SECRET_KEY.search(urllib.parse.unquote_plus(key)) else part)
    return "&".join(parts)
