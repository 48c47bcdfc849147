"""Signals held back while something must finish (the MQTT spill file being written)."""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM held back for the duration (only the main thread can do this; elsewhere
    it does nothing): a third impatient signal must not interrupt writing the spill file. A
    signal that came meanwhile is delivered again on the way out, to the handler it was meant for."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    saved = {sig: signal.signal(sig, lambda signum, frame: came.append(signum))
             for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if came:
            signal.raise_signal(came[0])
