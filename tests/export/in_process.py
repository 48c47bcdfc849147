"""`edge-cam ...` inside the test's own process. A child process spends about 4 s importing torch
and torchvision again (measured: 4.6-5.5 s for `export --list-layers`) for a command that refuses its
input in milliseconds. What a user sees is kept: the exit status and what was written to stdout and
stderr; an exception escaping main fails the test, as a traceback would. Signals, and
`python -m edge_cam` itself, are tested with real processes (test_hardening_export, tests/runtime)."""
from __future__ import annotations

import contextlib
import io
import subprocess

from edge_cam import cli


def edge_cam(*args) -> subprocess.CompletedProcess:
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as e:  # argparse: a usage error (2), --help or --version (0)
            code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess(["edge-cam", *argv], code, out.getvalue(), err.getvalue())
