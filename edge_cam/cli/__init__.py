"""`edge-cam`: export, info, localize, run, eval, calibrate, bench, demo.

Errors are one sentence on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from .. import __version__
from ..errors import EdgeCamError
from . import bench, calibrate, demo, distill, export, info, localize, run
from . import eval as eval_
from .terminal import interrupted, stop_on_sigterm

COMMANDS = (export, info, localize, run, eval_, calibrate, bench, distill, demo)  # in the order help lists them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-cam", description="Class Activation Mapping inside the "
                                     "exported graph, and a torch-free CAM cascade for edge boards.")
    parser.add_argument("--version", action="version", version=f"edge-cam {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


class _Plain(logging.StreamHandler):
    """The library's log lines as plain lines on stderr, looked up at each line so that a
    redirected or captured stderr gets them."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _log_to_stderr() -> None:
    log = logging.getLogger("edge_cam")
    if not any(isinstance(h, _Plain) for h in log.handlers):
        log.addHandler(_Plain())
    log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _log_to_stderr()
    started = time.time()
    try:
        stop_on_sigterm()  # clean-up (temporary files, sinks) runs on SIGTERM as on Ctrl-C
        return args.main(args)
    except EdgeCamError as e:
        print(f"edge-cam: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # `run` ends on a signal by itself, with exit 0; this is any other command
        status, sentence = interrupted(args.command, getattr(args, "output", None), started)
        print(("\n" if sys.stderr.isatty() else "") + f"edge-cam: {sentence}", file=sys.stderr)  # after a bar
        return status
    except BrokenPipeError:  # stdout closed early (`... | head -1`): done, quietly, like coreutils
        # Python would complain again when it flushes stdout at exit: point stdout at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # a bug, not bad input: one line, the traceback on request
        if os.environ.get("EDGE_CAM_DEBUG"):
            raise
        print(f"edge-cam: internal error {type(e).__name__}: {e} (set EDGE_CAM_DEBUG=1 for the "
              "traceback and please report it).", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
