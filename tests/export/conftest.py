import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="export tests need the export extra (torch)")

# What `edge-cam export` wrote for ImageNet models before its localisation defaults were measured:
# the weights' own centre crop, the paper's 20%, the top-1 map alone. The distill, cascade, int8,
# student and class-query tests were written for this teacher, and keep it.
CENTRE_CROP = {"resize": "crop", "threshold": 0.2, "fuse_top": 1}


def build_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """The folder `name`, filled by make(folder) once per test run. Under pytest-xdist the workers
    share it: the first one to ask builds it while the others wait on the lock, so both cores go to
    the tests themselves instead of building the same real model twice."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this run's folder, above each worker's own
    path = root / "built-once" / name
    path.parent.mkdir(exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            partial = path.parent / f"partial-{name}"  # renamed whole, so nobody sees half of it
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            make(partial)
            os.replace(partial, path)
    return path


@pytest.fixture(scope="session")
def built_once(tmp_path_factory):
    """build_once for the test modules: built_once(name, make) -> the folder make filled."""
    return lambda name, make: build_once(tmp_path_factory, name, make)


def _export(shared_data, tmp_path_factory, name: str, **options) -> str:
    def make(folder: Path) -> None:
        from edge_cam_export import export
        result = export("torchvision:mobilenet_v2", str(folder / name), quiet=True,
                        weights=str(shared_data / "models" / "mobilenet_v2_imagenet.pt"), **options)
        assert all(r.ok for r in result.reports)
        if result.tflite is not None:  # what the tests read of the conversion's check travels beside it
            (folder / "tflite_check.json").write_text(json.dumps(
                {"ok": result.tflite.ok, "cam_error_vs_onnx": [a.cam_error for a in result.tflite.onnx]}))
    return str(build_once(tmp_path_factory, name, make) / name)


@pytest.fixture(scope="session")
def mobilenet_v2_path(shared_data, tmp_path_factory):
    """The real MobileNetV2 teacher, exported once for every test that needs it, the centre crop's
    way (CENTRE_CROP)."""
    return _export(shared_data, tmp_path_factory, "mobilenet_v2.onnx", **CENTRE_CROP)


@pytest.fixture(scope="session")
def mobilenet_v2_tflite_path(shared_data, tmp_path_factory):
    """The same teacher (CENTRE_CROP) converted by litert-torch, once: export checked it against the
    eager model and against ONNX Runtime (those CAM errors in tflite_check.json beside it)."""
    pytest.importorskip("litert_torch", reason="TFLite export needs the tflite-export extra")
    return _export(shared_data, tmp_path_factory, "mobilenet_v2.tflite", format="tflite", **CENTRE_CROP)


@pytest.fixture(scope="session")
def shipped_mobilenet_v2_path(shared_data, tmp_path_factory):
    """The real MobileNetV2 teacher with export's own defaults: for an ImageNet model the whole frame
    letterboxed, threshold and map fusion measured for ImageNet classifiers (test_real_weights and
    test_localization_quality check them)."""
    return _export(shared_data, tmp_path_factory, "mobilenet_v2_shipped.onnx")
