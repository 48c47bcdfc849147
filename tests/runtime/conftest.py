"""Runtime tests run twice: in the full environment, and in the torch-free board environment
(EDGE_CAM_TORCH_FREE=1), where torch must be neither installed nor imported.

Every event, localize line and preview status the tests make, in this process or in an edge-cam
process a test starts, is checked against the shipped JSON Schemas (event_check.py): a test whose
run made an invalid one fails, naming the message and what is wrong with it."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import event_check
import pytest

TORCH_FREE = os.environ.get("EDGE_CAM_TORCH_FREE") == "1"


def pytest_sessionstart(session):
    if TORCH_FREE and importlib.util.find_spec("torch") is not None:
        raise pytest.UsageError("EDGE_CAM_TORCH_FREE=1 but torch is installed in this environment")


HOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "event_hook")  # its sitecustomize.py
CHECKER = event_check.Checker()


def pytest_configure(config):
    event_check.validator("event")  # the schemas are valid JSON Schemas, or nothing runs
    for name in event_check.TARGETS:
        event_check.patch(name, importlib.import_module(name), CHECKER.record, CHECKER.skip)


@pytest.fixture(autouse=True, scope="session")
def _children_record_their_events(tmp_path_factory):
    """Child processes (python -m edge_cam ...) record their messages in a folder, checked after each test."""
    folder = str(tmp_path_factory.mktemp("events-of-children"))
    saved = {k: os.environ.get(k) for k in (event_check.LOG_ENV, "PYTHONPATH")}
    os.environ[event_check.LOG_ENV] = folder
    os.environ["PYTHONPATH"] = os.pathsep.join([HOOK, *filter(None, [saved["PYTHONPATH"]])])
    CHECKER.folder = folder
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """The test, then every message made since the last test (its set-up's too) held to the schemas."""
    try:
        result = yield
    except BaseException:
        invalid = CHECKER.take()
        if invalid:  # the test failed anyway: its report shows these too
            item.add_report_section("call", "JSON Schema", "\n".join(invalid))
        raise
    invalid = CHECKER.take()
    if invalid:
        pytest.fail(f"{len(invalid)} messages do not match the shipped JSON Schema:\n" + "\n".join(invalid[:5]),
                    pytrace=False)
    return result


def pytest_sessionfinish(session):
    invalid = CHECKER.take()  # made after the last test's call: in its teardown, or by a straggler
    if invalid:
        print(f"\n{len(invalid)} messages made after the last test do not match the shipped JSON Schema:\n"
              + "\n".join(invalid[:5]), file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if hasattr(session.config, "workeroutput"):  # a pytest-xdist worker: the controller prints the sums
        session.config.workeroutput["schema_checks"] = {**CHECKER.counts, "children": CHECKER.children,
                                                        "skipped": CHECKER.skipped}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """Under pytest-xdist (make test runs the suite on both cores) each worker checks its own tests'
    messages; the summary adds up what they checked."""
    got = getattr(node, "workeroutput", {}).get("schema_checks")
    if got:
        for kind in CHECKER.counts:
            CHECKER.counts[kind] += got[kind]
        CHECKER.children += got["children"]
        CHECKER.skipped += got["skipped"]


def pytest_terminal_summary(terminalreporter):
    CHECKER.read_children()
    c = CHECKER.counts
    terminalreporter.write_line(
        f"JSON Schema: {c['event']} events, {c['localize']} localize lines, {c['status']} preview statuses "
        f"checked ({CHECKER.children} from child processes); {CHECKER.skipped} events of hand-made results skipped")


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
