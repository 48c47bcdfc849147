"""A live preview for a board without a screen: a small web server (standard library only) beside
the capture loop.

  /               a page with the annotated stream, the latest events and the stage timings
  /stream.mjpg    the annotated stream as MJPEG (multipart/x-mixed-replace)
  /events.json    the latest events, newest first
  /status.json    counts, FPS, drops, queue, stage latencies
  /metrics        the same in Prometheus' text exposition format

The capture loop only keeps a reference to the latest result (write() never encodes, never waits on
a socket): each watching connection draws and JPEG-encodes the newest frame when it is ready for
one, and a frame encoded once is shared by every watcher. A slow browser therefore gets the latest
frame only, and nothing is encoded while nobody watches.

>>> with PreviewServer(port=0, token="s3cret") as preview:      # 127.0.0.1, a free port
...     run(cascade, sources, [preview, events])                # run() binds its stats to it
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import cv2

from ..errors import EdgeCamError
from ._preview_page import PAGE

if TYPE_CHECKING:
    from ..cascade import FrameResult
    from ..source import Source
    from ..stream import StreamStats

__all__ = ["PreviewServer", "parse_serve"]
log = logging.getLogger("edge_cam")
BOUNDARY = "edge-cam-frame"
FPS_WINDOW_S = 5.0  # the live FPS: frames written over the last few seconds


def parse_serve(spec: str) -> tuple[str, int]:
    """`--serve [HOST:]PORT` → (host, port); the host is loopback unless given."""
    host, _, port = spec.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise EdgeCamError(f"--serve takes [HOST:]PORT with a port from 0 to 65535, not {spec!r}.")
    return host, number


class PreviewServer:
    """The preview sink. `token`: when set, every request needs `?token=` or `Authorization:
    Bearer`. Any host other than loopback is an explicit choice of the caller."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 events: int = 20, quality: int = 80):
        self.token, self.quality = token or None, quality
        self._events: deque[dict] = deque(maxlen=events)
        self._cond = threading.Condition()
        self._latest: FrameResult | None = None
        self._seq = 0  # results written so far; a watcher waits for a larger one
        self._jpeg: tuple[int, bytes] | None = None  # the last frame encoded, and its seq
        self._encode_lock = threading.Lock()
        self._arrivals: deque[float] = deque()
        self.frames = self.teacher_runs = self.watchers = 0
        self._stats: StreamStats | None = None
        self._sources: Sequence[Source] = ()
        self._sinks: Sequence[object] = ()
        self._closed = False
        self._started = time.time()
        try:
            server = _Server6 if ":" in host else ThreadingHTTPServer
            self._httpd = server((host, port), _handler(self))
        except OSError as e:
            raise EdgeCamError(f"cannot serve the preview on {host}:{port} ({e.strerror}).") from None
        self._httpd.daemon_threads = True  # a watcher never keeps the process alive
        if not _loopback(host) and not self.token:
            log.warning("the preview on %s is open to the network without a token (--serve-token)", host)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="edge-cam-preview", daemon=True)
        self._thread.start()
        log.info("preview at %s", self.url)

    @property
    def url(self) -> str:
        address = self._httpd.server_address
        host, port = str(address[0]), int(address[1])  # an IP socket: (host, port, ...)
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/" + (f"?token={self.token}" if self.token else "")

    def bind(self, stats: StreamStats, sources: Sequence[Source], sinks: Sequence[object]) -> None:
        """The loop's counters (drops and skips live there, not in the results); stream.run calls it."""
        self._stats, self._sources, self._sinks = stats, sources, [s for s in sinks if s is not self]

    # --- the sink side: called from the capture loop, never blocks on a client ---
    def write(self, result: FrameResult) -> None:
        now = time.monotonic()
        event = result.to_event()
        with self._cond:
            self.frames += 1
            self.teacher_runs += result.teacher_ran
            self._arrivals.append(now)
            while self._arrivals[0] < now - FPS_WINDOW_S:
                self._arrivals.popleft()
            self._events.appendleft(event)
            if result.image is not None:
                self._latest, self._seq = result, self._seq + 1
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> PreviewServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the server side: called from the HTTP threads ---
    def next_jpeg(self, after: int, timeout: float = 1.0) -> tuple[int, bytes | None]:
        """The newest frame after seq `after` as JPEG (encoded once, shared), or (after, None) on timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > after or self._closed, timeout)
            seq, result = self._seq, self._latest
        if seq <= after or result is None or result.image is None:
            return after, None
        with self._encode_lock:  # one encoder: a second watcher waits and takes the same bytes
            if self._jpeg is None or self._jpeg[0] != seq:
                from ..tools.annotate import annotate  # drawing is a tool; only sinks that draw need it

                ok, buf = cv2.imencode(".jpg", annotate(result.image, result),
                                       [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                self._jpeg = (seq, buf.tobytes() if ok else b"")
            return self._jpeg

    def events(self) -> list[dict]:
        with self._cond:
            return list(self._events)

    def status(self) -> dict:
        stats = self._stats
        with self._cond:
            window = self._arrivals[-1] - self._arrivals[0] if len(self._arrivals) > 1 else 0.0
            fps = (len(self._arrivals) - 1) / window if window > 0 else 0.0
            frames, teacher_runs, watchers = self.frames, self.teacher_runs, self.watchers
        latency: dict = {}
        if stats is not None:
            for _ in range(3):  # the loop may add a stage while we read; try again
                try:
                    latency = stats.latency()
                    break
                except RuntimeError:
                    continue
        return {
            "frames": frames, "fps": round(fps, 2), "teacher_runs": teacher_runs,
            "dropped": sum(s.stats.dropped for s in self._sources),
            "skipped": stats.skipped if stats is not None else 0,
            "mqtt_queue": sum(getattr(s, "pending", 0) for s in self._sinks),
            "watchers": watchers, "uptime_s": round(time.time() - self._started, 1),
            "sources": [{"name": s.name, "live": s.live, "dropped": s.stats.dropped} for s in self._sources],
            "latency_ms": {k: {q: round(v, 3) for q, v in d.items()} for k, d in latency.items()},
        }

    def metrics(self) -> str:
        s = self.status()
        rows = [
            ("frames_total", "counter", "Frames through the cascade.", s["frames"]),
            ("fps", "gauge", f"Frames per second over the last {FPS_WINDOW_S:g} s.", s["fps"]),
            ("teacher_runs_total", "counter", "Frames on which the teacher ran.", s["teacher_runs"]),
            ("dropped_frames_total", "counter", "Live frames replaced by a newer one before processing.",
             s["dropped"]),
            ("skipped_frames_total", "counter", "Unreadable frames skipped.", s["skipped"]),
            ("mqtt_queue", "gauge", "Events not yet acknowledged by the MQTT broker.", s["mqtt_queue"]),
            ("preview_watchers", "gauge", "Open MJPEG connections of the preview.", s["watchers"]),
        ]
        lines = []
        for name, kind, help_, value in rows:
            lines += [f"# HELP edge_cam_{name} {help_}", f"# TYPE edge_cam_{name} {kind}", f"edge_cam_{name} {value}"]
        name = "edge_cam_stage_latency_median_seconds"
        lines += [f"# HELP {name} Median latency of each stage over the frames where it ran.",
                  f"# TYPE {name} gauge"]
        lines += [f'{name}{{stage="{k}"}} {d["median"] / 1e3:.6g}' for k, d in s["latency_ms"].items()]
        return "\n".join(lines) + "\n"

    def authorised(self, path: str, headers) -> bool:
        if not self.token:
            return True
        given = parse_qs(urlsplit(path).query).get("token", [""])[0]
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[len("Bearer "):].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6  # an IPv6 host ("::1", "::"); http.server defaults to IPv4


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _handler(preview: PreviewServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "edge-cam"

        def log_message(self, format, *args):
            line = format % args
            if preview.token:  # a request line carries ?token=: a log is no place for it
                line = line.replace(preview.token, "***")
            log.debug("preview %s: %s", self.address_string(), line)

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if not preview.authorised(self.path, self.headers):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Bearer realm="edge-cam"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            route = urlsplit(self.path).path
            try:
                if route in ("/", "/index.html"):
                    self._send(200, PAGE.encode(), "text/html; charset=utf-8")
                elif route == "/stream.mjpg":
                    self._stream()
                elif route == "/events.json":
                    self._send(200, json.dumps(preview.events()).encode(), "application/json")
                elif route == "/status.json":
                    self._send(200, json.dumps(preview.status()).encode(), "application/json")
                elif route == "/metrics":
                    self._send(200, preview.metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
                else:
                    self._send(404, b"not found\n", "text/plain")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the browser went away

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            with preview._cond:
                preview.watchers += 1
            try:
                seq = 0
                while not preview._closed:
                    seq, jpeg = preview.next_jpeg(seq)
                    if not jpeg:
                        continue
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     f"{len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                    self.wfile.flush()
            finally:
                with preview._cond:
                    preview.watchers -= 1

    return Handler
