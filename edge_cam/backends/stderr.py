"""What native libraries write to the process's stderr on their own (file descriptor 2, below any
Python logging): caught while they run, and every line but the known noise passed on, so a board's
log shows our lines and nothing another thread wrote is lost."""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def filtered(noise: re.Pattern) -> Iterator[None]:
    """Catch file descriptor 2 while the block runs, then write back every line `noise` does not match."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().splitlines(keepends=True)
                    if not noise.match(line.decode(errors="replace"))]
            if kept:
                os.write(2, b"".join(kept))
