"""The lines the exporters show the user while they work, and the logger for everything else.

Progress goes to stderr, so stdout carries only the result (`wrote OUT`); the demo script's
report is its stdout.
"""
from __future__ import annotations

import logging
import sys

log = logging.getLogger("edge_cam")


def progress(text: str, quiet: bool = False) -> None:
    """One progress line of an export, unless `quiet`."""
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def say(text: str) -> None:
    """One line of the demo script's report."""
    print(text, flush=True)
