import pytest

torch = pytest.importorskip("torch", reason="export tests need the export extra (torch)")


@pytest.fixture(scope="session")
def mobilenet_v2_path(shared_data, tmp_path_factory):
    """The real MobileNetV2 teacher, exported once for every test that needs it, with export's
    defaults: for an ImageNet model the whole frame letterboxed to 224, threshold and map fusion
    measured for ImageNet classifiers (test_real_weights checks them)."""
    from edge_cam_export import export
    path = str(tmp_path_factory.mktemp("real") / "mobilenet_v2.onnx")
    result = export("torchvision:mobilenet_v2", path, weights=str(shared_data / "models" / "mobilenet_v2_imagenet.pt"),
                    quiet=True)
    assert all(r.ok for r in result.reports)
    return path
