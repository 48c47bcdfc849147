"""What every benchmark script shares: where results go, the line that says how they were made
(machine, load, commit, command), the --quick and --teacher options, and the real teacher.

EDGE_CAM_BENCH_RESULTS moves the results folder (`make bench QUICK=1` writes into a scratch one,
so a quick run never replaces the figures the pages quote).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import subprocess
import sys
from datetime import datetime, timezone

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = os.environ.get("EDGE_CAM_BENCH_RESULTS") or str(HERE / "results")
DATA = pathlib.Path(os.environ.get("EDGE_CAM_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
WEIGHTS = DATA / "models" / "mobilenet_v2_imagenet.pt"
_LOAD_AT_START = os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def commit() -> str:
    """The commit the figures were made at (with "+changes" when the tree differs from it)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def header(title: str) -> str:
    cmd = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    load = "" if _LOAD_AT_START is None else f", load {_LOAD_AT_START:.1f} at start"
    return (f"## {title}\n\n{platform.machine()}, {os.cpu_count()} cores{load}, {platform.platform()}, Python "
            f"{platform.python_version()}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; commit {commit()}; "
            f"`{cmd}`\n")


def write(name: str, text: str) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.rstrip() + "\n")
    print(text)
    print(f"wrote {path}", file=sys.stderr)
    return path


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A script's argument parser with the options every script takes: --quick (a small run that
    proves the page still builds; its figures mean nothing) and --teacher (an exported MobileNetV2
    to use instead of exporting one: run_all.py exports it once for every script)."""
    ap = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    ap.add_argument("--quick", action="store_true", help="a small run that only proves the page builds")
    ap.add_argument("--teacher", help="the real MobileNetV2 exported by edge-cam (default: export it now)")
    return ap


def teacher(args: argparse.Namespace, folder: str, **options) -> str:
    """args.teacher, or the shared MobileNetV2 exported into `folder` with `options` (export's keywords)."""
    if args.teacher and not options:
        return args.teacher
    from edge_cam_export import export
    path = os.path.join(folder, "mobilenet_v2" + "".join(f"_{k}-{v}" for k, v in sorted(options.items())) + ".onnx")
    if not os.path.exists(path):
        print(f"exporting MobileNetV2 {options or ''}".rstrip(), file=sys.stderr, flush=True)
        export("torchvision:mobilenet_v2", path, weights=str(WEIGHTS), quiet=True, **options)
    return path
