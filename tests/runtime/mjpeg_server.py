"""A network camera on loopback: MJPEG over HTTP (multipart/x-mixed-replace), as IP cameras and
`motion` serve it, that can drop its connection mid-stream and come back, and that may require
HTTP Basic auth as most IP cameras do."""
from __future__ import annotations

import base64
import http.server
import threading
import time

import cv2


class Camera:
    def __init__(self, frames, fps: float = 30.0, drop_after: int | None = None, down_for: float = 1.0,
                 auth: tuple[str, str] | None = None):
        self.jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
        self.fps, self.drop_after, self.down_for = fps, drop_after, down_for
        self.connections = 0
        self.down_until = 0.0
        self.sent = 0
        self.refused = 0  # requests without the right credentials
        expected = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() if auth else None
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if expected is not None and self.headers.get("Authorization") != expected:
                    camera.refused += 1
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if time.time() < camera.down_until:
                    self.send_error(503, "camera rebooting")
                    return
                camera.connections += 1
                first = camera.connections == 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not camera.stopped:
                        jpeg = camera.jpegs[camera.sent % len(camera.jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        camera.sent += 1
                        i += 1
                        if first and camera.drop_after is not None and i >= camera.drop_after:
                            camera.down_until = time.time() + camera.down_for
                            self.wfile.write(b"--frame\r\nContent-Length: 50000\r\n\r\n" + jpeg[:100])
                            return  # cut mid-frame, as an unplugged camera does
                        time.sleep(1.0 / camera.fps)
                except (BrokenPipeError, ConnectionResetError):
                    return

        self.stopped = False
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.stopped = True
        self.server.shutdown()
        self.server.server_close()
