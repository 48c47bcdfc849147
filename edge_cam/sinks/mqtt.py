"""MQTT event sink: each frame's event, delivered at least once (QoS 1), through broker outages.

The video loop only appends to an in-memory queue; a feeder thread hands events to paho and
paho's network thread talks to the broker, so `write()` never waits on the network.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from ..errors import EdgeCamError
from ..sink import PlainSink
from .mqtt_url import mask_url, parse_url, topic_for
from .signals import signals_deferred
from .spill import SpillFile

log = logging.getLogger("edge_cam")

if TYPE_CHECKING:
    from ..cascade import FrameResult

# paho holds at most this many un-acknowledged events (and re-sends them itself on reconnect);
# the rest stay in our queue, the only place where they can be bounded, spilled or dropped.
WINDOW = 100
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.5, 30.0
KEEPALIVE_S = 30
# CONNACK reason codes that say the credentials are wrong (MQTT 5 numbering, which paho 2 gives for
# 3.1.1's 4 and 5 too): retrying the same password cannot help, so the sink stops, unless asked.
REFUSED_CREDENTIALS = {134: "bad user name or password", 135: "not authorized"}


def _log(message: str) -> None:
    log.warning("mqtt: %s", message)


class MqttSink(PlainSink):
    """Publishes `json.dumps(result.to_event())` to `<prefix>/<device>/<stream>/events`.

    Every event stays queued until the broker acknowledges it. While the broker is away events
    pile up, at most `max_queue` waiting plus `WINDOW` already sent; beyond that the oldest is
    appended to `<spill_dir>/<topic>.jsonl` (and re-sent, oldest first, once the broker is back,
    also by a later sink with the same spill_dir and topic) or, without spill_dir, dropped,
    counted and logged once per burst (when it starts, and its count when the broker is back or
    the sink closes). A broker that re-sends may deliver an event twice, and a spill replayed by
    a later run keeps its own run id: consumers dedupe by (run, source, frame).

    close() keeps (with spill_dir) or counts every event still pending, even when a second
    Ctrl-C or SIGTERM interrupts its wait for the broker.

    A broker that refuses the credentials (bad user name or password, not authorized) is not
    retried: the next write() raises EdgeCamError saying so, unless `retry_auth` (a password
    being changed on the broker) keeps retrying as for any other refusal.

    Counters: published (events given to write), acknowledged, pending (not yet acknowledged,
    in memory or spilled), dropped, spilled (events ever written to the spill file), reconnects;
    `lost` is dropped (events neither delivered nor kept on disk).
    """

    def __init__(self, url: str, device: str | None = None, stream: str = "0", qos: int = 1,
                 max_queue: int = 10000, spill_dir: str | None = None, client_id: str | None = None,
                 retry_auth: bool = False):
        host, port, prefix, user, password = parse_url(url)
        if qos not in (1, 2):
            raise EdgeCamError(f"MQTT qos must be 1 or 2 (events are delivered at least once), not {qos}.")
        if max_queue < 1:
            raise EdgeCamError(f"the MQTT queue must hold at least one event, not {max_queue}.")
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise EdgeCamError("publishing events to MQTT needs paho-mqtt 2: "
                               "pip install 'edge-cam[mqtt]'.") from None
        self.url, self.qos, self.max_queue, self.retry_auth = mask_url(url), qos, max_queue, retry_auth
        self.address = f"{host}:{port}"
        self.topic = topic_for(prefix, device or socket.gethostname(), stream)
        self.published = self.acknowledged = self.dropped = self.spilled = self.reconnects = 0

        self._lock = threading.Lock()  # guards everything below; never held while calling paho
        self._queue: deque[tuple[int, str]] = deque()  # (frame, payload) not yet handed to paho
        self._inflight: dict[int, str] = {}  # mid → payload, handed to paho, awaiting PUBACK
        self._early_acks: set[int] = set()  # PUBACKs that beat the registration of their mid
        self._sending = 0  # taken from the queue, inside client.publish() right now
        self._connected = self._ever_connected = self._outage_logged = False
        self._burst: list[int] = []  # drops of the current burst: [count, first frame, last frame]
        self._stop = False
        self._refused: str | None = None  # why the broker refused our credentials, once it has
        self._wake = threading.Event()

        self._spill = SpillFile(spill_dir, self.topic) if spill_dir else None
        self.spill_path = self._spill.path if self._spill else None
        if self._spill and self._spill.backlog:
            _log(f"{self._spill.backlog} undelivered events from an earlier run in {self.spill_path} will be sent first")

        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "")
        if user is not None:
            self._client.username_pw_set(user, password)
        self._client.max_inflight_messages_set(0)  # WINDOW bounds it; paho must never hold back
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)  # type: ignore[arg-type]
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.connect_async(host, port, KEEPALIVE_S)
        self._client.loop_start()  # paho's thread connects, retries with back-off, reads PUBACKs
        self._feeder = threading.Thread(target=self._feed_loop, name="edge-cam-mqtt", daemon=True)
        self._feeder.start()

    # -- the video loop's side -----------------------------------------------------------------

    def write(self, result: FrameResult) -> None:
        if self._refused is not None:
            raise EdgeCamError(f"the MQTT broker at {self.address} refused the credentials ({self._refused}); "
                               "check the user and password in --mqtt (or pass --mqtt-retry-auth to keep trying).")
        payload = json.dumps(result.to_event())
        with self._lock:
            self.published += 1
            dropped = self._evict_oldest() if len(self._queue) >= self.max_queue else None
            self._queue.append((result.frame, payload))
            first_of_burst = dropped is not None and not self._burst
            if dropped is not None:
                self._burst = [self._burst[0] + 1, self._burst[1], dropped] if self._burst else [1, dropped, dropped]
        self._wake.set()
        if first_of_burst:  # one line now, the count when the burst ends: not a line per frame
            _log(f"queue full ({self.max_queue} events, broker {self.address} unreachable): dropping "
                 "the oldest events until it is back; pass a spill directory to keep overflow on disk")

    def _end_burst(self) -> None:
        with self._lock:
            burst, self._burst = self._burst, []
        if burst:
            n, first, last = burst
            _log(f"dropped {n} event{'s' if n > 1 else ''} (frames {first} to {last}) while the broker "
                 f"at {self.address} was away")

    def _evict_oldest(self) -> int | None:
        """Spill the oldest queued event, or drop it and return its frame (lock held)."""
        frame, payload = self._queue.popleft()
        if self._spill is not None:
            try:
                self._spill.append(payload)
                self.spilled += 1
                return None
            except OSError:
                pass
        self.dropped += 1
        return frame

    @property
    def lost(self) -> int:
        return self.dropped

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending()

    def _pending(self) -> int:
        return len(self._queue) + len(self._inflight) + self._sending + (self._spill.backlog if self._spill else 0)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"published": self.published, "acknowledged": self.acknowledged,
                    "pending": self._pending(), "dropped": self.dropped, "spilled": self.spilled,
                    "reconnects": self.reconnects}

    # -- the feeder thread: hands events to paho while connected --------------------------------

    def _feed_loop(self) -> None:
        while not self._stop:
            self._wake.wait(0.5)
            self._wake.clear()
            self._feed()

    def _feed(self) -> None:
        while not self._stop:
            with self._lock:
                room = WINDOW - len(self._inflight) - self._sending if self._connected else 0
                batch = self._read_spill(room)  # spilled events are the oldest: they go first
                while len(batch) < room and self._queue:
                    batch.append(self._queue.popleft()[1])
                self._sending += len(batch)
            if not batch:
                return
            for payload in batch:
                # Sent now or, if the connection just dropped, kept by paho for the next one.
                mid = self._client.publish(self.topic, payload, self.qos).mid
                with self._lock:
                    self._sending -= 1
                    if mid in self._early_acks:
                        self._early_acks.discard(mid)
                        self.acknowledged += 1
                    else:
                        self._inflight[mid] = payload

    def _read_spill(self, n: int) -> list[str]:
        if self._spill is None:
            return []
        lines, torn = self._spill.read(n)
        self.dropped += torn
        return lines

    # -- paho's network thread ------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            if reason_code.value in REFUSED_CREDENTIALS and not self.retry_auth:
                self._refused = REFUSED_CREDENTIALS[reason_code.value]
                _log(f"broker {self.address} refused the credentials ({reason_code}); not retrying")
                client.disconnect()  # paho's loop then ends instead of reconnecting
                return
            _log(f"broker {self.address} refused the connection ({reason_code}); retrying")
            return
        with self._lock:
            self._connected, self._outage_logged = True, False
            if self._ever_connected:
                self.reconnects += 1
            self._ever_connected = True
            pending = self._pending()
        self._end_burst()
        _log(f"connected to {self.address}, publishing to {self.topic} ({pending} events pending)")
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        if not self._outage_logged:  # once per outage, not once per retry
            self._outage_logged = True
            _log(f"cannot reach the broker at {self.address}; events queue up while retrying "
                 f"(back-off up to {RECONNECT_MAX_S:.0f} s)")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            was_connected, self._connected = self._connected, False
            pending = self._pending()
        if was_connected and not self._stop:
            _log(f"lost the broker at {self.address} ({reason_code}); {pending} events pending, "
                 "reconnecting")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            if self._inflight.pop(mid, None) is None:
                self._early_acks.add(mid)
            else:
                self.acknowledged += 1
        self._wake.set()  # room in the window

    # -- shutdown -------------------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """Wait up to `timeout` s for the broker to acknowledge everything, then disconnect and
        say what stayed undelivered (and, with a spill directory, keep it for the next run)."""
        if self._stop:
            return
        interrupted: KeyboardInterrupt | None = None
        deadline = time.monotonic() + timeout
        try:
            self._wake.set()
            while self.pending and time.monotonic() < deadline and self._refused is None:
                time.sleep(0.01)
        except KeyboardInterrupt as e:  # a second Ctrl-C/SIGTERM: stop waiting, not keeping
            interrupted, deadline = e, time.monotonic()
            _log(f"interrupted while waiting for the broker at {self.address}; "
                 + ("spilling" if self.spill_path else "counting") + " what is still pending")
        with signals_deferred():
            self._shutdown(deadline)
        if interrupted is not None:
            raise interrupted

    def _shutdown(self, deadline: float) -> None:
        self._stop = True
        self._wake.set()
        self._feeder.join(1.0)
        self._client.disconnect()
        # A connect attempt to an unreachable host holds paho's thread for its connect timeout:
        # give it a moment, but do not hold up the caller's shutdown for it (the thread is a daemon).
        stopper = threading.Thread(target=self._client.loop_stop, daemon=True)
        stopper.start()
        stopper.join(max(1.0, deadline - time.monotonic()))

        with self._lock:
            undelivered = list(self._inflight.values())
            if self._spill is not None:
                undelivered += self._read_spill(self._spill.backlog)
            undelivered += [payload for _, payload in self._queue]
            self._inflight.clear()
            self._queue.clear()
            if self._spill is None:
                self.dropped += len(undelivered)
            else:
                self._spill.backlog = len(undelivered)  # still pending, on disk now
        self._end_burst()
        summary = (f"{self.published} events for {self.topic}: {self.acknowledged} acknowledged, "
                   f"{self.reconnects} reconnects, {len(undelivered)} undelivered")
        if self._spill is None:
            _log(summary + (" and lost (pass a spill directory to keep them)" if undelivered else "")
                 + f", {self.dropped} dropped in all")
            return
        self._spill.keep_only(undelivered)
        _log(f"{summary}, kept in {self.spill_path} for the next run to send; {self.dropped} dropped" if undelivered
             else f"{summary}, {self.dropped} dropped")
