"""Shared fixtures. ../shared/data holds real weights and photos made by others (see its README).

Tests that need it fail loudly in CI (CI=true) when it is missing, and skip elsewhere.
"""
from __future__ import annotations

import os
import pathlib
import signal

import pytest

# A shell starts background jobs with SIGINT ignored, and Python then leaves it ignored: the tests that
# send Ctrl-C (in-process, and to the edge-cam processes they start, which inherit it) need it live.
signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = pathlib.Path(os.environ.get("EDGE_CAM_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    if not (SHARED_DATA / "README.md").is_file():
        message = f"the shared test data folder {SHARED_DATA} is missing"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI must have it)")
        pytest.skip(message)
    return SHARED_DATA
