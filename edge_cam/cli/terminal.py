"""What the commands show on the terminal while they work, and how they stop."""
from __future__ import annotations

import os
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


_received: list[int] = []  # the signal that interrupted the command, when it was SIGTERM


def stop_on_sigterm() -> None:
    """SIGTERM (systemd, docker stop) interrupts a command like Ctrl-C (KeyboardInterrupt), so that
    its clean-up runs: `run` then flushes and closes its sinks and exits 0; every other command
    exits with interrupted()'s status and sentence."""
    def handler(signum, frame):
        _received.append(signum)
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


def interrupted(command: str, output: str | None, started: float) -> tuple[int, str]:
    """The exit status (128 + the signal, as a shell reports it: 130 for Ctrl-C, 143 for SIGTERM)
    and the sentence of a command that a signal stopped before it finished; `output`, when the
    command has one, is said to be untouched unless it changed after `started` (a wall-clock time)."""
    signum = _received[-1] if _received else signal.SIGINT
    name = signal.Signals(signum).name
    try:
        mtime: float | None = os.stat(output).st_mtime if output is not None else None
    except OSError:
        mtime = None
    what = "" if output is None else f"; nothing was written to {output}" if mtime is None \
        else f"; {output} was left as it was" if mtime < started \
        else f"; {output} was written before the signal came, but {command} did not finish checking it"
    return 128 + signum, f"interrupted by {name}: {command} stopped before it finished{what}."
