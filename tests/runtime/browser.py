"""A real headless Chromium driven over the Chrome DevTools protocol, with nothing but the standard
library (a minimal websocket client): the runtime venv has no selenium or websocket package, and
the preview test must run there too."""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """One headless browser with a fresh profile; `evaluate` runs JS in its page, `screenshot` saves it."""

    def __init__(self, profile: str, timeout: float = 60.0):
        binary = chromium_binary()
        if binary is None:
            raise FileNotFoundError("chromium")
        os.makedirs(profile, exist_ok=True)
        self._log = open(os.path.join(profile, "chromium.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
             f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1280,900",
             "about:blank"], stdout=self._log, stderr=subprocess.STDOUT)
        # With port 0 Chromium picks one and writes it into the profile.
        active, deadline = os.path.join(profile, "DevToolsActivePort"), time.time() + timeout
        while not os.path.exists(active) or not open(active).read().strip():
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                raise RuntimeError(f"chromium did not start (see {profile}/chromium.log)")
            time.sleep(0.1)
        port = int(open(active).read().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout))
        page = next(t for t in targets if t["type"] == "page")
        self._sock = _ws_connect(page["webSocketDebuggerUrl"], timeout)
        self._id = 0

    def call(self, method: str, **params) -> dict:
        self._id += 1
        _ws_send(self._sock, json.dumps({"id": self._id, "method": method, "params": params}))
        while True:  # events arrive in between; we only wait for our answer
            message = json.loads(_ws_recv(self._sock))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def navigate(self, url: str, timeout: float = 30.0) -> None:
        self.call("Page.navigate", url=url)
        deadline = time.time() + timeout
        while self.evaluate("document.readyState") != "complete":
            if time.time() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            time.sleep(0.1)

    def evaluate(self, expression: str):
        """The value of a JS expression (awaited when it is a promise)."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: str) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self) -> None:
        if getattr(self, "_sock", None) is not None:
            self._sock.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def _ws_connect(url: str, timeout: float) -> socket.socket:
    rest = url.split("://", 1)[1]
    address, _, path = rest.partition("/")
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("the DevTools websocket closed during the handshake")
        head += chunk
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise ConnectionError(f"DevTools refused the websocket: {head[:200]!r}")
    return sock


def _ws_send(sock: socket.socket, text: str) -> None:
    payload, mask = text.encode(), os.urandom(4)
    n = len(payload)
    header = struct.pack("!B", 0x81) + (struct.pack("!B", 0x80 | n) if n < 126 else
                                        struct.pack("!BH", 0x80 | 126, n) if n < 65536 else
                                        struct.pack("!BQ", 0x80 | 127, n))
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the DevTools websocket closed")
        buf += chunk
    return buf


def _ws_recv(sock: socket.socket) -> str:
    """One whole text message (fragments joined); the server's frames are not masked."""
    parts = []
    while True:
        b0, b1 = _recv_exact(sock, 2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", _recv_exact(sock, 2))[0]
        elif n == 127:
            n = struct.unpack("!Q", _recv_exact(sock, 8))[0]
        payload = _recv_exact(sock, n)
        opcode = b0 & 0x0F
        if opcode == 8:
            raise ConnectionError("the DevTools websocket closed")
        if opcode in (0, 1, 2):
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()
