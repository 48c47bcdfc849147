"""What `stream.run` hands results to. Every method is required (a sink with nothing to do there
has a no-op), so the loop calls them plainly and a sink that lacks one is a type error, not a
method silently skipped.

  bind(stats, sources, sinks)  before the first frame: the loop's own counters (the preview's /metrics)
  write(result)                every result, on the capture loop's thread: must not block
  pending                      events taken but not yet delivered (MQTT's queue), for the status line
  close()                      once, however the run ends
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .cascade import FrameResult
    from .source import Source
    from .stream_stats import StreamStats

__all__ = ["PlainSink", "Sink"]


class Sink(Protocol):
    def bind(self, stats: StreamStats, sources: Sequence[Source], sinks: Sequence[Sink]) -> None: ...

    def write(self, result: FrameResult) -> None: ...

    @property
    def pending(self) -> int: ...

    def close(self) -> None: ...


class PlainSink:
    """The no-op `bind` and `pending` of a sink that reports none of the loop's counters and delivers
    each result before write() returns; a sink class adds write and close (and overrides either)."""

    def bind(self, stats: StreamStats, sources: Sequence[Source], sinks: Sequence[Sink]) -> None:
        pass

    @property
    def pending(self) -> int:
        return 0
