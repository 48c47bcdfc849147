"""Grad-CAM folded into the graph for heads that are not affine after GAP, against autograd."""
import numpy as np
import pytest
import torch
import torchvision

from edge_cam.model import Model
from edge_cam_export import export_module, find_cam_layers
from edge_cam_export.verify import gradcam_reference, sample_images

SIZE = (96, 96)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def normalise(images):
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def build(name, calibrate_bn=True):
    """Random weights, with BatchNorm statistics set on sample images: at torchvision's init
    MobileNetV3's activations vanish (maps of 1e-9), where float32 noise is the whole map."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=20)
    if not calibrate_bn:
        return model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(normalise(sample_images(8, SIZE, seed=1)))
    return model.eval()


@pytest.mark.parametrize("name,method", [("mobilenet_v3_small", "gradcam"), ("mobilenet_v3_large", "gradcam"),
                                         ("convnext_tiny", "gradcam"), ("efficientnet_v2_s", "cam")])
def test_gradcam_heads_match_autograd(name, method, tmp_path):
    model = build(name, calibrate_bn=method == "gradcam")
    path = str(tmp_path / f"{name}.onnx")
    result = export_module(model, path, input_size=SIZE, top_k=3, quiet=True, verify_batches=(1, 3))
    assert result.info.cam.method == method and all(r.ok for r in result.reports)
    m = Model(path)
    images = sample_images(3, SIZE, seed=11)
    out = m.run(images)
    layers = find_cam_layers(model)
    logits, ref = gradcam_reference(model, layers, normalise(images), out["class_ids"])
    np.testing.assert_array_equal(out["class_ids"], np.argsort(-logits, axis=1)[:, :3])
    for b in range(3):
        for k in range(3):
            r = np.corrcoef(out["cams"][b, k].ravel(), ref[b, k].ravel())[0, 1]
            assert r >= 0.9999, (b, k, r)


def test_affine_head_gradcam_is_exactly_cam():
    """For GAP → Linear, Grad-CAM's α is W[c]: the closed form reduces to CAM."""
    from edge_cam_export.gradcam import GradHead, head_chain
    model = torchvision.models.resnet18(num_classes=10).eval()
    layers = find_cam_layers(model)
    gap = next(n for n in layers.graph.graph.nodes if n.target == "avgpool")
    head = GradHead(layers.graph, layers.feature_node, gap, head_chain(layers.graph, gap, layers.logits_node))
    feat = torch.randn(2, 512, 3, 3)
    _, ids, alpha = head(feat, 4)
    torch.testing.assert_close(alpha, model.fc.weight[ids], rtol=0, atol=0)
