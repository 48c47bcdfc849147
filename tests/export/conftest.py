import os

import pytest

torch = pytest.importorskip("torch", reason="export tests need the export extra (torch)")

# What `edge-cam export` wrote for ImageNet models before its localisation defaults were measured:
# the weights' own centre crop, the paper's 20%, the top-1 map alone. The distill, cascade, int8,
# student and class-query tests were written for this teacher, and keep it.
CENTRE_CROP = {"resize": "crop", "threshold": 0.2, "fuse_top": 1}


def _export(shared_data, tmp_path_factory, name: str, **options) -> str:
    """Exported once per test run: under pytest-xdist the workers share it (the first one to ask
    exports it while the others wait on the lock), so both cores go to the tests themselves."""
    from filelock import FileLock

    from edge_cam_export import export
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this run's folder, above each worker's own
    path = root / "real-teachers" / name
    path.parent.mkdir(exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            partial = path.parent / f"partial-{name}" / name  # the model's own name, renamed whole
            partial.parent.mkdir(exist_ok=True)
            result = export("torchvision:mobilenet_v2", str(partial), quiet=True,
                            weights=str(shared_data / "models" / "mobilenet_v2_imagenet.pt"), **options)
            assert all(r.ok for r in result.reports)
            os.replace(partial, path)
    return str(path)


@pytest.fixture(scope="session")
def mobilenet_v2_path(shared_data, tmp_path_factory):
    """The real MobileNetV2 teacher, exported once for every test that needs it, the centre crop's
    way (CENTRE_CROP)."""
    return _export(shared_data, tmp_path_factory, "mobilenet_v2.onnx", **CENTRE_CROP)


@pytest.fixture(scope="session")
def shipped_mobilenet_v2_path(shared_data, tmp_path_factory):
    """The real MobileNetV2 teacher with export's own defaults: for an ImageNet model the whole frame
    letterboxed, threshold and map fusion measured for ImageNet classifiers (test_real_weights and
    test_localization_quality check them)."""
    return _export(shared_data, tmp_path_factory, "mobilenet_v2_shipped.onnx")
