"""A live preview for a board without a screen: a small web server (standard library only) beside
the capture loop.

  /               a page with the annotated stream, the latest events and the stage timings
  /stream.mjpg    the annotated stream as MJPEG (multipart/x-mixed-replace)
  /events.json    the latest events, newest first
  /status.json    counts, FPS, drops, queue, stage latencies
  /metrics        the same in Prometheus' text exposition format

The capture loop only keeps a reference to the latest result (write() never encodes, never waits on
a socket). One encoder thread draws and JPEG-encodes the newest frame, at most `max_fps` times a
second and only while someone watches, and every watcher is sent those same bytes: the cost of
watching grows with the preview's frame rate, not with the number of watchers times the loop's.
A slow browser gets the latest frame only. A connection must send its request within
`idle_timeout` seconds (and a watcher take each frame within it), and at most `max_connections`
are served at once; one more is answered 503 at once, without a thread.

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

from ..capture import mask_credentials
from ..draw import annotate
from ..errors import EdgeCamError
from ..sink import PlainSink, Sink
from ._preview_page import PAGE

if TYPE_CHECKING:
    from ..cascade import FrameResult
    from ..source import Source
    from ..stream_stats import StreamStats

__all__ = ["PreviewServer", "parse_serve"]
log = logging.getLogger("edge_cam")
BOUNDARY = "edge-cam-frame"
FPS_WINDOW_S = 5.0  # the live FPS: frames written over the last few seconds
MAX_FPS = 10.0  # the stream's frame rate at most: enough to watch by, and a bounded cost to the loop
IDLE_TIMEOUT_S = 10.0  # a silent connection is closed after this long, a stalled watcher too
MAX_CONNECTIONS = 64  # connections served at once (each is a thread); more are refused with 503
BUSY = b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


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


class PreviewServer(PlainSink):
    """The preview sink. `token`: when set, every request needs `?token=` or `Authorization:
    Bearer`. Any host other than loopback is an explicit choice of the caller."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 events: int = 20, quality: int = 80, max_fps: float = MAX_FPS,
                 idle_timeout: float = IDLE_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS):
        if not max_fps > 0 or not idle_timeout > 0 or max_connections < 1:
            raise EdgeCamError("the preview needs max_fps and idle_timeout above 0 and max_connections of 1 or more.")
        self.token, self.quality, self.max_fps = token or None, quality, max_fps
        self._events: deque[dict] = deque(maxlen=events)
        self._lock = threading.Lock()  # guards everything below that the threads share
        self._new_frame = threading.Condition(self._lock)  # the encoder waits here: a newer frame, a watcher
        self._new_jpeg = threading.Condition(self._lock)  # the watchers wait here: a newer encoded frame
        self._latest: FrameResult | None = None
        self._seq = 0  # results written so far
        self._jpeg: bytes | None = None  # the last frame encoded ...
        self._jseq = 0  # ... and its seq; a watcher waits for a larger one
        self._waiting = 0  # watchers waiting for a frame: the encoder works only for them
        self._arrivals: deque[float] = deque()
        self.frames = self.teacher_runs = self.watchers = self.encoded = 0
        self._stats: StreamStats | None = None
        self._sources: Sequence[Source] = ()
        self._sinks: Sequence[Sink] = ()
        self._closed = False
        self._started = time.time()
        try:
            server = _Server6 if ":" in host else _Server
            self._httpd = server((host, port), _handler(self, idle_timeout), max_connections)
        except OSError as e:
            raise EdgeCamError(f"cannot serve the preview on {host}:{port} ({e.strerror}).") from None
        if not _loopback(host) and not self.token:
            log.warning("the preview on %s is open to the network without a token (--serve-token)", host)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="edge-cam-preview", daemon=True)
        self._thread.start()
        self._encoder = threading.Thread(target=self._encode_loop, name="edge-cam-preview-jpeg", daemon=True)
        self._encoder.start()
        log.info("preview at %s", mask_credentials(self.url))  # the token stays out of logs

    @property
    def url(self) -> str:
        address = self._httpd.server_address
        host, port = str(address[0]), int(address[1])  # an IP socket: (host, port, ...)
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/" + (f"?token={self.token}" if self.token else "")

    def bind(self, stats: StreamStats, sources: Sequence[Source], sinks: Sequence[Sink]) -> None:
        """The loop's counters (drops and skips live there, not in the results); stream.run calls it."""
        self._stats, self._sources, self._sinks = stats, sources, [s for s in sinks if s is not self]

    # --- the sink side: called from the capture loop, never blocks on a client ---
    def write(self, result: FrameResult) -> None:
        now = time.monotonic()
        event = result.to_event()
        with self._lock:
            self.frames += 1
            self.teacher_runs += result.teacher_ran
            self._arrivals.append(now)
            while self._arrivals[0] < now - FPS_WINDOW_S:
                self._arrivals.popleft()
            self._events.appendleft(event)
            if result.image is not None:
                self._latest, self._seq = result, self._seq + 1
                if self._waiting:  # unwatched, the encoder sleeps on: no wake-up per frame
                    self._new_frame.notify()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._new_frame.notify_all()
            self._new_jpeg.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._encoder.join(5)

    def __enter__(self) -> PreviewServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the encoder thread: the newest frame, at most max_fps times a second, while watched ---
    def _encode_loop(self) -> None:
        last = -1e9
        while (newest := self._take_newest(last)) is not None:
            seq, result = newest
            last = time.monotonic()
            try:
                assert result.image is not None
                ok, buf = cv2.imencode(".jpg", annotate(result.image, result), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                jpeg = buf.tobytes() if ok else b""
            except Exception as e:  # a frame that cannot be drawn must not end the preview
                log.warning("preview: cannot draw frame %s (%s)", result.frame, e)
                jpeg = b""
            with self._lock:
                self._jseq, self._jpeg = seq, jpeg
                self.encoded += 1
                self._new_jpeg.notify_all()

    def _take_newest(self, last: float) -> tuple[int, FrameResult] | None:
        """The newest frame and its seq, once a watcher waits for one not yet encoded and 1/max_fps
        has passed since the encode that began at `last`; None once the preview is closed."""
        def wanted() -> bool:
            return self._closed or (self._waiting > 0 and self._latest is not None and self._seq != self._jseq)

        with self._lock:
            while True:
                self._new_frame.wait_for(wanted)
                if self._closed:
                    return None
                pause = last + 1.0 / self.max_fps - time.monotonic()
                if pause <= 0:
                    assert self._latest is not None
                    return self._seq, self._latest
                # The frame rate's pause, on the condition: close() ends it at once, and what
                # comes after it is the newest frame then, not the one that woke us.
                self._new_frame.wait_for(lambda: self._closed, pause)

    # --- the server side: called from the HTTP threads ---
    def next_jpeg(self, after: int, timeout: float | None = 1.0) -> tuple[int, bytes | None]:
        """The newest frame encoded after seq `after` (the same bytes for every watcher), or
        (after, None) when none came within `timeout` (None: wait until one comes or the preview
        closes)."""
        with self._lock:
            self._waiting += 1
            self._new_frame.notify()  # a new watcher: the frame already there may be its first
            try:
                self._new_jpeg.wait_for(lambda: self._jseq > after or self._closed, timeout)
            finally:
                self._waiting -= 1
            if self._jseq > after:
                return self._jseq, self._jpeg
            return after, None

    def events(self) -> list[dict]:
        with self._lock:
            return list(self._events)

    def status(self) -> dict:
        stats = self._stats
        with self._lock:
            window = self._arrivals[-1] - self._arrivals[0] if len(self._arrivals) > 1 else 0.0
            fps = (len(self._arrivals) - 1) / window if window > 0 else 0.0
            frames, teacher_runs, watchers = self.frames, self.teacher_runs, self.watchers
        latency = stats.latency() if stats is not None else {}
        return {
            "frames": frames, "fps": round(fps, 2), "teacher_runs": teacher_runs,
            "dropped": sum(s.stats.dropped for s in self._sources),
            "skipped": stats.skipped if stats is not None else 0,
            "mqtt_queue": sum(s.pending for s in self._sinks),
            "watchers": watchers, "connections": self._httpd.active, "refused": self._httpd.refused,
            "uptime_s": round(time.time() - self._started, 1),
            "sources": [{"name": s.name, "live": s.live, "dropped": s.stats.dropped} for s in self._sources],
            "latency_ms": {k: {q: round(v, 3) for q, v in d.items()} for k, d in latency.items()},
        } | self._agreement(stats)

    @staticmethod
    def _agreement(stats) -> dict:
        """The student against the teacher (only where a student is checked): the rolling figure,
        the confident checks it rests on, and whether the alarm is raised."""
        a = stats.agreement if stats is not None else None
        if a is None or not a.seen:
            return {}
        return {"student_agreement": None if a.value is None else round(a.value, 4), "student_checks": a.checks,
                "student_alarm": a.raised}

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
            ("preview_refused_total", "counter", "Preview connections refused: too many at once.", s["refused"]),
        ]
        if s.get("student_agreement") is not None:
            rows += [("student_agreement", "gauge", "Share of the latest confident teacher frames where the student "
                      "gave the teacher's answer.", s["student_agreement"]),
                     ("student_checks_total", "counter", "Confident teacher frames the student was checked on.",
                      s["student_checks"]),
                     ("student_alarm", "gauge", "1 while the student agreement is below --alarm.",
                      int(s["student_alarm"]))]
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


class _Server(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` of them: one more is answered 503 and
    closed at once (300 silent sockets were 300 threads, held forever)."""

    daemon_threads = True  # a watcher never keeps the process alive
    # A burst of connections (several browsers, each with its stream and polls) waits in the kernel's
    # queue: with http.server's 5, connecting 80 sockets at once took 12 s of SYN retries here.
    request_queue_size = MAX_CONNECTIONS

    def __init__(self, address, handler, max_connections: int):
        self.max_connections, self.active, self.refused = max_connections, 0, 0
        self._count = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        with self._count:
            busy = self.active >= self.max_connections
            if not busy:
                self.active += 1
            else:
                self.refused += 1
        if not busy:
            super().process_request(request, client_address)
            return
        try:
            request.settimeout(0.5)
            request.sendall(BUSY)
        except OSError:
            pass
        self.shutdown_request(request)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._count:
                self.active -= 1


class _Server6(_Server):
    address_family = socket.AF_INET6  # an IPv6 host ("::1", "::"); http.server defaults to IPv4


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _handler(preview: PreviewServer, idle_timeout: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "edge-cam"
        timeout = idle_timeout  # on every read and write of the connection's socket

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
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                self.close_connection = True  # the browser went away, or stopped reading

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            with preview._lock:
                preview.watchers += 1
            try:
                seq = 0
                while True:
                    seq, jpeg = preview.next_jpeg(seq, timeout=None)
                    if jpeg is None:  # closed
                        return
                    if not jpeg:  # a frame that could not be drawn
                        continue
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     f"{len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                    self.wfile.flush()
            finally:
                with preview._lock:
                    preview.watchers -= 1

    return Handler
