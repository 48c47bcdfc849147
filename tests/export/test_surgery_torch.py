"""`edge-cam export x.onnx` on a plain ONNX file from torch.onnx, against the eager CAM reference."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="export tests need the export extra (torch)")
torchvision = pytest.importorskip("torchvision")

from edge_cam.cli import main  # noqa: E402
from edge_cam.metadata import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from edge_cam.model import Model  # noqa: E402
from edge_cam_export.graph.eager import eager_features  # noqa: E402
from edge_cam_export.graph.heads import find_cam_layers  # noqa: E402

MEAN, STD = IMAGENET_MEAN, IMAGENET_STD


def test_resnet18_onnx_is_camified_like_the_eager_model(tmp_path, capsys):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    src, out = tmp_path / "resnet18.onnx", tmp_path / "cam.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 128, 128), str(src), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],  # "logits" clashes on purpose
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    assert main(["export", str(src), "-o", str(out), "--top-k", "3"]) == 0  # size from the model
    assert "found gemm head" in capsys.readouterr().err

    runtime = Model(out, providers=["cpu"])
    assert runtime.input_size == (128, 128) and runtime.info.cam.feature_size == (4, 4)
    images = np.random.default_rng(0).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    got = runtime.run(images)

    layers = find_cam_layers(model)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    logits, feat = eager_features(model, layers, x)
    logits, feat = logits.numpy(), feat.numpy()
    assert np.abs(got["logits"] - logits).max() < 1e-4 * np.ptp(logits)
    assert (got["class_ids"] == np.argsort(-logits, 1)[:, :3]).all()
    weight = model.fc.weight.detach().numpy()
    want = np.einsum("bkc,bchw->bkhw", weight[got["class_ids"]], feat)
    span = want.max((2, 3)) - want.min((2, 3))
    assert (np.abs(got["cams"] - want).max((2, 3)) / span).max() < 1e-4
