"""What the commands show on the terminal while they work, and how they stop."""
from __future__ import annotations

import signal
import sys
import time
from typing import Callable


def progress_bar(label: str) -> Callable[[int, int], None]:
    """A bar on stderr, redrawn at most 5 times a second; only the last state when not a terminal
    (a log file should not fill with redraws)."""
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and (now - last[0] < 0.2 or not sys.stderr.isatty()):
            return
        last[0] = now
        bar = int(30 * done / total)
        print(f"\r{label} [{'=' * bar}{' ' * (30 - bar)}] {done}/{total}", end="" if done < total else "\n",
              file=sys.stderr, flush=True)
    return show


def stop_on_sigterm() -> None:
    """SIGTERM (systemd, docker stop) ends a run like Ctrl-C: sinks are flushed and closed, exit 0."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)
