"""What MJPEG watchers of the live preview cost the capture loop: `edge-cam run --serve` with the
bundled models on a looped video (the bundled clip, or --source; teacher every 5, student on every
frame), with 0 and with N watchers reading /stream.mjpg over real loopback sockets, runs
interleaved. Per run, once every watcher has its first frame, over --seconds: the loop's FPS and the
CPU time the edge-cam process spends per frame (user + system, from /proc; on a machine loaded by
other jobs the CPU per frame is the steadier figure: FPS also measures the neighbours).

    python benchmarks/preview_watchers.py [--watchers 50] [--seconds 10] [--pairs 5] [--source VIDEO]

The watchers are one selector loop in this process reading and discarding what the server sends
(a browser does the same, on another machine).
"""
from __future__ import annotations

import json
import os
import re
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

from common import header, parser, write

from edge_cam.tools.demo import data_path

TICK_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK_S  # utime, stime


def status(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=30) as r:
        return json.loads(r.read())


def watch(port: int, n: int, stop: threading.Event, ready: threading.Event, received: list[int]) -> None:
    """n connections on one selector; `ready` once each has had bytes of a frame."""
    sel, buf = selectors.DefaultSelector(), bytearray(1 << 16)
    counts: dict[socket.socket, int] = {}
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        counts[s] = 0
    while not stop.is_set():
        for key, _ in sel.select(0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)  # only sockets are registered
            got = sock.recv_into(buf)
            if not got:
                sel.unregister(sock)
                continue
            counts[sock] += got
        if not ready.is_set() and all(c > 1000 for c in counts.values()):
            ready.set()
    received.extend(counts.values())
    for s in counts:
        s.close()


def one_run(watchers: int, source: str, seconds: float) -> tuple[float, float, float]:
    """FPS, CPU ms per frame of the edge-cam process, MB/s per watcher."""
    proc = subprocess.Popen([sys.executable, "-m", "edge_cam", "run", "--teacher", data_path("teacher.onnx"),
                             "--student", data_path("student.onnx"), "--source", source,
                             "--loop", "--every", "5", "--serve", "127.0.0.1:0", "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines: list[str] = []
    port = None
    for line in proc.stderr:
        lines.append(line)
        m = re.search(r"preview at http://127\.0\.0\.1:(\d+)/", line)
        if m:
            port = int(m[1])
            break
    assert port is not None, "".join(lines)
    threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True).start()
    stop, ready = threading.Event(), threading.Event()
    received: list[int] = []
    watcher = threading.Thread(target=watch, args=(port, watchers, stop, ready, received), daemon=True)
    while status(port)["frames"] == 0:
        time.sleep(0.2)
    if watchers:
        watcher.start()
        assert ready.wait(120), "the watchers got no frames"
    time.sleep(2)
    f0, c0, t0 = status(port)["frames"], cpu_seconds(proc.pid), time.monotonic()
    time.sleep(seconds)
    f1, c1, t1 = status(port)["frames"], cpu_seconds(proc.pid), time.monotonic()
    stop.set()
    if watchers:
        watcher.join(10)
    proc.terminate()
    proc.wait(30)
    per_watcher = statistics.median(received) / 1e6 / (t1 - t0 + 2) if received else 0.0
    return (f1 - f0) / (t1 - t0), (c1 - c0) * 1e3 / max(1, f1 - f0), per_watcher


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--watchers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10, help="the measured span of each run")
    ap.add_argument("--pairs", type=int, default=5, help="interleaved pairs of runs (0, then N watchers)")
    ap.add_argument("--source", default=data_path("demo_clip.mp4"), help="a video (looped)")
    args = ap.parse_args()
    if args.quick:
        args.watchers, args.seconds, args.pairs = 5, 2.0, 1
    fps: dict[int, list[float]] = {0: [], args.watchers: []}
    cpu: dict[int, list[float]] = {0: [], args.watchers: []}
    rate: list[float] = []
    for i in range(args.pairs):
        for n in (0, args.watchers) if i % 2 == 0 else (args.watchers, 0):
            f, c, mb = one_run(n, args.source, args.seconds)
            fps[n].append(f)
            cpu[n].append(c)
            if n:
                rate.append(mb)
            print(f"pair {i}: {n} watchers: {f:.1f} FPS, {c:.3f} ms CPU per frame"
                  + (f", {mb:.2f} MB/s per watcher" if n else ""), flush=True)
    w = args.watchers
    fps_ratio = statistics.median(b / a for a, b in zip(fps[0], fps[w]))
    cpu_ratio = statistics.median(b / a for a, b in zip(cpu[0], cpu[w]))
    rows = ["| watchers | loop FPS (median) | CPU ms per frame (median) |", "|---|---|---|",
            f"| 0 | {statistics.median(fps[0]):.1f} | {statistics.median(cpu[0]):.3f} |",
            f"| {w} | {statistics.median(fps[w]):.1f} | {statistics.median(cpu[w]):.3f} |"]
    write("preview.md", header(f"Live preview: what {w} MJPEG watchers cost the capture loop") + "\n" + "\n".join(rows)
          + f"\n\n{args.pairs} interleaved pairs of {args.seconds:g} s runs (`edge-cam run --serve`, bundled models, "
          f"teacher every 5); pairwise ratios, {w} watchers against none: FPS {fps_ratio:.2f}, CPU per frame "
          f"{cpu_ratio:.2f}; {statistics.median(rate):.2f} MB/s per watcher. On a machine loaded by other jobs the CPU "
          "per frame is the steadier figure.")


if __name__ == "__main__":
    main()
