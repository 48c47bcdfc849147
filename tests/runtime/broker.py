"""Test helpers: a real mosquitto broker on a free loopback port that can be stopped and
restarted on that port, and a subscriber whose persistent session survives the restarts."""
from __future__ import annotations

import json
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time


def mosquitto_binary() -> str | None:
    # Debian installs it in /usr/sbin, which is not on a normal user's PATH.
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


class Broker:
    """mosquitto with persistence in `workdir`, so queued QoS 1 messages survive a restart."""

    def __init__(self, workdir: pathlib.Path, binary: str):
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.log = workdir / "mosquitto.log"
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "max_queued_messages 100000\n"
            # Started as root, mosquitto would switch to the user "mosquitto", who cannot write here.
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n")
        self.proc: subprocess.Popen | None = None

    def url(self, prefix: str = "") -> str:
        return f"mqtt://127.0.0.1:{self.port}{prefix}"

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def start(self, timeout: float = 5.0) -> None:
        log = open(self.log, "a")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        if not wait_until(lambda: self.proc.poll() is not None or self._accepts(), timeout) \
                or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"mosquitto did not start on port {self.port}:\n{self.log.read_text()}")

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # mosquitto saves its persistence file on SIGTERM
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc = None


class Subscriber:
    """Collects every message on `topic` (QoS 1, persistent session, reconnects by itself)."""

    def __init__(self, port: int, topic: str, client_id: str):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=False)
        self._client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self._client.on_connect = lambda c, u, flags, rc, props: c.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda c, u, mid, rcs, props: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect_async("127.0.0.1", port, keepalive=10)
        self._client.loop_start()
        if not self._subscribed.wait(5.0):
            self.close()
            raise RuntimeError(f"the test subscriber could not subscribe on port {port}")

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append((message.topic, json.loads(message.payload)))

    def events(self) -> list[dict]:
        with self._lock:
            return [event for _, event in self.messages]

    def topics(self) -> set[str]:
        with self._lock:
            return {topic for topic, _ in self.messages}

    def unique(self) -> dict[tuple[str, int], dict]:
        """Events deduplicated by (source, frame): at-least-once delivery may repeat some."""
        return {(e["source"], e["frame"]): e for e in self.events()}

    def wait_for_frames(self, n: int, timeout: float) -> bool:
        return wait_until(lambda: len(self.unique()) >= n, timeout)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
