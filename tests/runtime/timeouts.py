"""Timeouts of the tests that wait on a subprocess, stretched where the machine is slow:
EDGE_CAM_TIMEOUT_SCALE=8 under qemu emulation (scripts/arm64-check), 1 elsewhere. Timeouts that
are the behaviour under test (a dead broker given 0.3 s) are not scaled."""
from __future__ import annotations

import os

SCALE = float(os.environ.get("EDGE_CAM_TIMEOUT_SCALE") or 1)


def scaled(seconds: float) -> float:
    return seconds * SCALE
