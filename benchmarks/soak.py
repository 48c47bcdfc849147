"""Soak: resident memory (RSS) of one long run with every output on, events to a file, the annotated
video and MQTT to a local mosquitto this script starts, on the bundled models and the demo clip
looped. The run's state must stay bounded: the goal is under 2% RSS growth from 10k frames (warm:
caches, pools and the latency windows full) to the end.

    python benchmarks/soak.py [--frames 100000] [--every 5] [--out DIR]

Needs mosquitto (apt-get install mosquitto) and paho-mqtt (edge-cam[mqtt]); --no-mqtt runs without.
The video takes about 20 kB a frame (2 GB for 100k): --out should be on a disk with room.
"""
from __future__ import annotations

import argparse
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from common import header, parser, write

from edge_cam.cascade import Cascade
from edge_cam.model import Model
from edge_cam.sink import PlainSink
from edge_cam.sinks import open_sink
from edge_cam.source import open_source
from edge_cam.stream import run
from edge_cam.tools.demo import data_path


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


class RssProbe(PlainSink):
    """A sink that notes the RSS every `every` frames (it holds nothing else)."""

    def __init__(self, every: int):
        self.every, self.frames = every, 0
        self.samples: dict[int, int] = {}  # frames → RSS in KiB
        self.t0 = time.perf_counter()

    def write(self, result) -> None:
        self.frames += 1
        if self.frames % self.every == 0:
            self.samples[self.frames] = rss_kb()
            print(f"{self.frames:>7} frames  RSS {self.samples[self.frames] / 1024:7.1f} MiB  "
                  f"{self.frames / (time.perf_counter() - self.t0):6.1f} FPS", flush=True)

    def close(self) -> None:
        pass


def start_mosquitto(workdir: str) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = os.path.join(workdir, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {pwd.getpwuid(os.getuid()).pw_name}\n")
    proc = subprocess.Popen([binary, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"mosquitto did not start on port {port}")


def main() -> None:
    ap = parser(__doc__)
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--warm", type=int, default=10_000, help="the reference point of the growth")
    ap.add_argument("--every", type=int, default=5, help="teacher cadence")
    ap.add_argument("--out", help="folder for the events and the video (default: a temporary one, removed)")
    ap.add_argument("--no-mqtt", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.frames, args.warm = 2000, 500
    out = args.out or tempfile.mkdtemp(prefix="edge-cam-soak-")
    os.makedirs(out, exist_ok=True)
    broker = None
    try:
        teacher, student = Model(data_path("teacher.onnx")), Model(data_path("student.onnx"), threads=1)
        cascade = Cascade(teacher, student, every=args.every)
        source = open_source(data_path("demo_clip.mp4"), loop=True)
        probe = RssProbe(args.warm)
        sinks = [probe, open_sink(os.path.join(out, "soak.avi"), fps=15)]
        if not args.no_mqtt:
            broker, port = start_mosquitto(out)
            sinks.append(open_sink(f"mqtt://127.0.0.1:{port}/soak", device="soak"))
        sinks.append(open_sink(os.path.join(out, "events.jsonl")))  # last: it times the sinks before it
        print(f"RSS at start {rss_kb() / 1024:.1f} MiB; {args.frames} frames, outputs in {out}", flush=True)
        stats = run(cascade, [source], sinks, max_frames=args.frames, status=None)
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    s = probe.samples
    last = max(s)
    growth = 100 * (s[last] - s[args.warm]) / s[args.warm]
    rows = ["| frames | RSS (MiB) |", "|---|---|"] + [f"| {n} | {kb / 1024:.1f} |" for n, kb in sorted(s.items())]
    verdict = "under" if growth < 2 else "OVER"
    text = (header("Soak: RSS over a long run with events, video and MQTT on") + "\n" + "\n".join(rows)
            + f"\n\nGrowth from {args.warm} to {last} frames: {growth:+.2f}% ({verdict} the 2% goal); "
            f"{stats.summary()}; outputs: events file, MJPG video"
            + ("" if args.no_mqtt else ", MQTT QoS 1 to a local mosquitto") + f"; teacher every {args.every}.")
    write("soak.md", text)
    sys.exit(0 if growth < 2 or args.quick else 1)  # a quick run is too short to judge growth


if __name__ == "__main__":
    main()
