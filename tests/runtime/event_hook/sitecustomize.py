"""Loaded at the start of every Python process the runtime tests start (conftest puts this folder
first on PYTHONPATH): with EDGE_CAM_TEST_EVENT_LOG set, the child records each event, localize line
and preview status it makes, for the tests to check against the shipped schemas (../event_check.py).
Standard library only, nothing imported early, nothing printed: the child behaves as it would without.
A sitecustomize this one shadows (a distribution's) still runs, after it."""
import importlib.util
import os
import sys


def _load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_here = os.path.dirname(os.path.abspath(__file__))
if os.environ.get("EDGE_CAM_TEST_EVENT_LOG"):
    try:
        _load("_edge_cam_event_check", os.path.join(os.path.dirname(_here), "event_check.py")).install_in_child()
    except Exception:
        pass
for _entry in sys.path:
    _other = os.path.join(os.path.abspath(_entry or os.curdir), "sitecustomize.py")
    if os.path.dirname(_other) != _here and os.path.isfile(_other):
        _load("_sitecustomize_shadowed", _other)
        break
