"""What every benchmark script shares: where results go and the line that says how they were made."""
from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def header(title: str) -> str:
    cmd = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    return (f"## {title}\n\n{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, Python "
            f"{platform.python_version()}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; `{cmd}`\n")


def write(name: str, text: str) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.rstrip() + "\n")
    print(text)
    print(f"wrote {path}", file=sys.stderr)
    return path
