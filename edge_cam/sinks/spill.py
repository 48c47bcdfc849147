"""Events kept on disk while the MQTT broker is away: one JSON line each, read back oldest first,
and what is still undelivered at the end kept for the next run (which sends it first)."""
from __future__ import annotations

import os

from ..errors import EdgeCamError


class SpillFile:
    """`<folder>/<topic with _ for />.jsonl`; `backlog` counts the lines not yet read back."""

    def __init__(self, folder: str, topic: str):
        self.path = os.path.join(folder, topic.replace("/", "_") + ".jsonl")
        try:
            os.makedirs(folder, exist_ok=True)
            self._w = open(self.path, "a", encoding="utf-8")
            self._r = open(self.path, encoding="utf-8")
        except OSError as e:
            raise EdgeCamError(f"cannot keep MQTT overflow in {self.path} ({e.strerror}); "
                               "pass a writable spill directory.") from None
        self.backlog = sum(1 for _ in self._r)  # left by an earlier run
        self._r.seek(0)

    def append(self, payload: str) -> None:
        self._w.write(payload + "\n")
        self._w.flush()  # a crash must not lose what we promised to keep
        self.backlog += 1

    def read(self, n: int) -> tuple[list[str], int]:
        """Up to n events, oldest first, and how many torn lines (of a run that crashed mid-write)
        were skipped."""
        lines: list[str] = []
        torn = 0
        while len(lines) < n and self.backlog:
            line = self._r.readline()
            self.backlog -= 1
            if line.endswith("\n"):
                lines.append(line[:-1])
            else:
                torn += 1
        if lines and not self.backlog:
            # All of the file is in memory now: start it afresh rather than let it grow forever.
            self._w.truncate(0)
            self._r.seek(0)
        return lines, torn

    def keep_only(self, payloads: list[str]) -> None:
        """Close, leaving exactly `payloads` in the file (none: no file)."""
        self._r.close()
        self._w.close()
        if not payloads:
            os.remove(self.path)
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(p + "\n" for p in payloads)
        os.replace(tmp, self.path)  # never a half-written spill file
