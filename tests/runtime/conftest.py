"""Runtime tests run twice: in the full environment, and in the torch-free board environment
(EDGE_CAM_TORCH_FREE=1), where torch must be neither installed nor imported."""
from __future__ import annotations

import importlib.util
import os
import sys

import pytest

TORCH_FREE = os.environ.get("EDGE_CAM_TORCH_FREE") == "1"


def pytest_sessionstart(session):
    if TORCH_FREE and importlib.util.find_spec("torch") is not None:
        raise pytest.UsageError("EDGE_CAM_TORCH_FREE=1 but torch is installed in this environment")


@pytest.fixture(autouse=True, scope="session")
def _no_torch_imported():
    yield
    if TORCH_FREE:
        assert "torch" not in sys.modules, "the runtime imported torch"


@pytest.fixture(scope="session")
def demo_data():
    from edge_cam.tools.demo import data_path
    return data_path


@pytest.fixture(scope="session")
def teacher_path(demo_data):
    return demo_data("teacher.onnx")


@pytest.fixture(scope="session")
def student_path(demo_data):
    return demo_data("student.onnx")
