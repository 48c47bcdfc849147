"""Every event the runtime tests make is held to the shipped JSON Schemas (edge_cam/data/event.schema.json
and status.schema.json): the conftest wraps the three places that make a message, in the test process
and, through event_hook/sitecustomize.py, in every `python -m edge_cam` the tests start.

  FrameResult.to_event       an event: a --events line, an MQTT payload, an item of /events.json
  tools.photos._localize_each  a line of `edge-cam localize` ($defs/localize_line)
  PreviewServer.status       /status.json (and /metrics)

A FrameResult without a teacher prediction is one a test built by hand to feed a sink (the cascade
always has one): its event is not the runtime's, and is counted as skipped rather than checked.

This module imports only the standard library at the top: a child process loads it at start-up
to record what it makes (one JSON line per message, checked by the test process after the test).
"""
from __future__ import annotations

import functools
import json
import os
import threading
from typing import Any, Callable

LOG_ENV = "EDGE_CAM_TEST_EVENT_LOG"  # the folder where child processes record their messages
KINDS = ("event", "localize", "status")
Record = Callable[[str, Any], None]
_patched: set[str] = set()


def _wrap_to_event(module, record: Record, skipped: Callable[[], None]) -> None:
    original = module.FrameResult.to_event

    @functools.wraps(original)
    def to_event(self):
        event = original(self)
        if self.teacher is None:
            skipped()
        else:
            record("event", event)
        return event

    module.FrameResult.to_event = to_event


def _wrap_localize(module, record: Record) -> None:
    original = module._localize_each

    @functools.wraps(original)
    def localize_each(*args, **kwargs):
        for line in original(*args, **kwargs):
            record("localize", line)
            yield line

    module._localize_each = localize_each


def _wrap_status(module, record: Record) -> None:
    original = module.PreviewServer.status

    @functools.wraps(original)
    def status(self):
        answer = original(self)
        record("status", answer)
        return answer

    module.PreviewServer.status = status


def patch(name: str, module, record: Record, skipped: Callable[[], None] = lambda: None) -> None:
    """Wrap the message maker of the edge_cam module `name` (once per process)."""
    if name in _patched:
        return
    _patched.add(name)
    if name == "edge_cam.cascade":
        _wrap_to_event(module, record, skipped)
    elif name == "edge_cam.tools.photos":
        _wrap_localize(module, record)
    elif name == "edge_cam.sinks.preview":
        _wrap_status(module, record)


TARGETS = ("edge_cam.cascade", "edge_cam.tools.photos", "edge_cam.sinks.preview")


# --- the test process: checking -----------------------------------------------------------------

_validators: dict[str, Any] = {}


def validator(kind: str):
    """A Draft 2020-12 validator of one kind of message, from the schemas the package ships."""
    if kind not in _validators:
        from importlib import resources

        import jsonschema

        def load(name: str) -> dict:
            return json.loads(resources.files("edge_cam.data").joinpath(name).read_text(encoding="utf-8"))

        event = load("event.schema.json")
        schemas = {"event": event, "status": load("status.schema.json"),
                   "localize": {"$schema": event["$schema"], "$defs": event["$defs"],
                                "$ref": "#/$defs/localize_line"}}
        for k, schema in schemas.items():
            jsonschema.Draft202012Validator.check_schema(schema)
            _validators[k] = jsonschema.Draft202012Validator(schema)
    return _validators[kind]


def problems(kind: str, message: Any) -> list[str]:
    """What is wrong with `message` as a `kind` (empty: it is valid). It is checked as a consumer
    reads it, through strict JSON: a numpy number that json.dumps would refuse, or a NaN that a
    strict parser would, fails here too."""
    try:
        doc = json.loads(json.dumps(message, allow_nan=False))
    except (TypeError, ValueError) as e:
        return [f"not JSON: {e}"]
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in validator(kind).iter_errors(doc)]


class Checker:
    """Checks each message the test process makes as it is made, and those child processes
    recorded under `folder`; `take()` hands over what was wrong since the last take."""

    def __init__(self, folder: str | None = None):
        self.folder = folder
        self.counts = dict.fromkeys(KINDS, 0)
        self.children = 0  # of those, made in child processes
        self.skipped = 0
        self._invalid: list[str] = []
        self._lock = threading.Lock()

    def record(self, kind: str, message: Any, where: str = "") -> None:
        wrong = problems(kind, message)
        with self._lock:
            self.counts[kind] += 1
            if wrong:
                self._invalid.append(f"{kind}{where} {json.dumps(message, default=repr)[:2000]}\n    "
                                     + "\n    ".join(wrong))

    def skip(self) -> None:
        with self._lock:
            self.skipped += 1

    def read_children(self) -> None:
        """The messages child processes recorded since the last call (their files are then removed)."""
        if not self.folder:
            return
        for name in sorted(os.listdir(self.folder)):
            path = os.path.join(self.folder, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            os.remove(path)
            for line in text.splitlines(keepends=True):
                if not line.endswith("\n"):
                    continue  # a child killed mid-line; the runtime's own output is tested elsewhere
                entry = json.loads(line)
                if entry["kind"] == "skipped":
                    self.skip()
                    continue
                self.children += 1
                self.record(entry["kind"], entry["message"], f" (child process {name.split('.')[0]})")

    def take(self) -> list[str]:
        self.read_children()
        with self._lock:
            invalid, self._invalid = self._invalid, []
        return invalid

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# --- a child process: recording ------------------------------------------------------------------

def child_recorder(folder: str) -> tuple[Record, Callable[[], None]]:
    """Append each message to <folder>/<pid>.jsonl, one whole line a write (never raising: the
    check must not change what the process under test does)."""
    path = os.path.join(folder, f"{os.getpid()}.jsonl")

    def write(entry: dict) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, (json.dumps(entry, default=repr) + "\n").encode("utf-8"))
            finally:
                os.close(fd)
        except Exception:
            pass

    return (lambda kind, message: write({"kind": kind, "message": message}),
            lambda: write({"kind": "skipped"}))


class _Finder:
    """Wraps the message makers right after their modules are imported (nothing is imported early)."""

    def __init__(self, record: Record, skipped: Callable[[], None]):
        self.record, self.skipped = record, skipped

    def find_spec(self, name, path=None, target=None):
        if name not in TARGETS:
            return None
        import sys
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            try:
                patch(name, module, self.record, self.skipped)
            except Exception:
                pass

        loader.exec_module = exec_and_patch
        return spec


def install_in_child() -> None:
    """Called by event_hook/sitecustomize.py at a child's start-up when the tests asked for it."""
    folder = os.environ.get(LOG_ENV)
    if not folder or not os.path.isdir(folder):
        return
    import sys
    record, skipped = child_recorder(folder)
    sys.meta_path.insert(0, _Finder(record, skipped))
