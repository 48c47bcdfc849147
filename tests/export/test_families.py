"""Every supported torchvision family exports, and ONNX Runtime matches the eager model: the
logits, and CAMs computed the way the CAM paper's code does (forward hook + FC weights)."""
import numpy as np
import onnx
import pytest
import torch
import torchvision

from edge_cam.errors import EdgeCamError
from edge_cam.metadata import IMAGENET_MEAN, IMAGENET_STD
from edge_cam.model import Model
from edge_cam_export import export_module, find_cam_layers
from edge_cam_export.graph.eager import reference
from edge_cam_export.graph.verify import Report, maps_error, sample_images

# One member of each family (the smallest), the paper's hook point for it written out by hand,
# and an optional op between that hook and the pooled map (DenseNet applies ReLU after `features`).
FAMILIES = {
    "resnet18": ("layer4", "fc", None),
    "resnext50_32x4d": ("layer4", "fc", None),
    "wide_resnet50_2": ("layer4", "fc", None),
    "googlenet": ("inception5b", "fc", None),
    "mobilenet_v2": ("features", "classifier.1", None),
    "efficientnet_b0": ("features", "classifier.1", None),
    "densenet121": ("features", "classifier", torch.relu),
    "shufflenet_v2_x0_5": ("conv5", "fc", None),
    "mnasnet0_5": ("layers", "classifier.1", None),
    "regnet_y_400mf": ("trunk_output", "fc", None),
    "squeezenet1_1": ("features", "classifier.1", None),
}
SIZE = (64, 64)
MEAN, STD = IMAGENET_MEAN, IMAGENET_STD


def build(name, num_classes=10):
    torch.manual_seed(0)
    kwargs = {"init_weights": True} if name == "googlenet" else {}
    # Random weights, eval mode. (Calibrating BatchNorm on sample images instead gives logits in
    # the hundreds, where float32 itself — torch against float64 — is 1e-4 of a map's range off.)
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs).eval()


def paper_reference(model, name, images):
    """Independent of the exporter's own detection: hook the layer named in FAMILIES."""
    hook, classifier, post = FAMILIES[name]
    feats = []
    h = model.get_submodule(hook).register_forward_hook(lambda m, i, o: feats.append(o))
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model(x)
    h.remove()
    f = feats[-1] if post is None else post(feats[-1])
    w = model.get_submodule(classifier).weight.detach()
    w = w.reshape(w.shape[0], w.shape[1])
    return logits.numpy(), torch.einsum("kc,bchw->bkhw", w, f).numpy()


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_exports_and_matches_the_eager_reference(name, tmp_path, monkeypatch):
    model = build(name)
    in_place = [getattr(m, "inplace", None) for m in model.modules()]
    ceil_mode = [getattr(m, "ceil_mode", None) for m in model.modules()]
    path = str(tmp_path / f"{name}.onnx")
    traces = []
    trace = torch.export.export
    monkeypatch.setattr(torch.export, "export", lambda *a, **k: traces.append(a) or trace(*a, **k))
    result = export_module(model, path, input_size=SIZE, top_k=3, quiet=True, verify_batches=(1, 3))
    assert all(r.ok for r in result.reports)
    runtime = Model(path, providers=["CPUExecutionProvider"])
    # Every family takes any size, traced once: the smallest size asked for already gives a map of
    # 2x2 or more (cam_graph.smallest_side; DenseNet's is 1x1 up to 60 pixels), so torch.export has
    # no 1x1 axis to refuse and retry, and GoogLeNet's ceil-mode pooling runs in floor mode while
    # traced (cam_graph.floor_pooling; else torch's strategies fail and the size is fixed). The export
    # checked the graph at another size, 96x128, where the two modes' sizes differ.
    assert runtime.dynamic_size
    assert len(traces) == 1
    assert [getattr(m, "ceil_mode", None) for m in model.modules()] == ceil_mode
    assert not any("forward" in vars(m) for m in model.modules())
    # and the -inf padding that stands in for the ceiling became the pools' own (onnx_passes.pool_padding)
    assert "Pad" not in {n.op_type for n in onnx.load(path).graph.node}
    # the export ran the in-place activations out of place (cam_graph.out_of_place), and gives them back
    assert [getattr(m, "inplace", None) for m in model.modules()] == in_place
    assert result.info.cam.classifier == FAMILIES[name][1]
    for batch in (1, 3):
        images = sample_images(batch, SIZE, seed=7 + batch)
        out = runtime.run(images)
        logits_ref, cams_ref = paper_reference(model, name, images)
        span = np.ptp(logits_ref)
        assert np.abs(out["logits"] - logits_ref).max() <= 1e-4 * span
        assert out["cams"].shape[:2] == (batch, 3)
        for b in range(batch):
            # The top-K are the K largest eager logits, best first (ties may come in either order).
            top = np.sort(logits_ref[b])[::-1][:3]
            np.testing.assert_allclose(logits_ref[b][out["class_ids"][b]], top, rtol=0, atol=1e-4 * span)
            for k, c in enumerate(out["class_ids"][b]):
                ref = cams_ref[b, c]
                assert np.abs(out["cams"][b, k] - ref).max() <= 1e-4 * np.ptp(ref), (b, k)


@pytest.mark.parametrize("name", ["vgg11", "alexnet"])
def test_networks_without_global_pooling_are_refused_with_the_reason(name):
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None)
    with pytest.raises(EdgeCamError) as e:
        find_cam_layers(model)
    assert "\n" not in str(e.value) and "fixed grid" in str(e.value)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v3_large", "convnext_tiny", "convnext_small"])
def test_non_affine_heads_get_gradcam(name):
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None)
    layers = find_cam_layers(model)
    assert layers.method == "gradcam" and layers.hook_module == "features"


def _all_variants():
    families = ("resnet", "resnext", "wide_resnet", "googlenet", "mobilenet_v2", "efficientnet_b",
                "densenet", "shufflenet_v2", "mnasnet", "regnet_", "squeezenet")
    return [n for n in torchvision.models.list_models(module=torchvision.models)
            if n.startswith(families)]


@pytest.mark.parametrize("name", _all_variants())
def test_every_variant_of_the_families_is_detected(name):
    if name.startswith("regnet") and not name.endswith(("400mf", "800mf", "1_6gf")):
        pytest.skip("large RegNets cannot be built on the meta device; the small ones share their code")
    device = "cpu" if name.startswith("regnet") else "meta"
    with torch.device(device):
        model = torchvision.models.get_model(name, weights=None)
    layers = find_cam_layers(model)
    assert layers.weight.shape[0] == 1000
    assert layers.hook_module in {"layer4", "inception5b", "features", "conv5", "layers", "trunk_output"}


class _SeenInPlace(torch.nn.Module):
    """Reads the input of its in-place ReLU afterwards: the mutation is part of what it computes."""

    def __init__(self):
        super().__init__()
        self.conv, self.act = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(inplace=True)
        self.pool, self.fc = torch.nn.AdaptiveAvgPool2d(1), torch.nn.Linear(8, 4)

    def forward(self, x):
        x = self.conv(x)
        self.act(x)  # x itself is now relu(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def test_an_in_place_activation_whose_input_is_read_again_stays_in_place(tmp_path):
    """The export runs in-place activations out of place (torch.export is twice as fast so), except
    where another node reads the mutated input: there the mutation is part of the answer."""
    torch.manual_seed(0)
    seen = _SeenInPlace().eval()
    path = str(tmp_path / "seen.onnx")
    assert all(r.ok for r in export_module(seen, path, input_size=SIZE, quiet=True, verify_batches=(2,)).reports)
    images = sample_images(2, SIZE, seed=3)
    logits = Model(path).run(images)["logits"]
    expected, _ = reference(seen, None, images, MEAN, STD)  # the eager model, mutation and all
    assert seen.act.inplace and np.abs(logits - expected).max() <= 1e-4 * np.ptp(expected)


def test_maps_of_another_size_fail_the_check_instead_of_crashing_it():
    """What a graph whose pooling rounds its sizes otherwise than the eager model's gives (the
    export then keeps it as .failed.onnx and says so in one sentence)."""
    error = maps_error(np.zeros((1, 3, 2, 3), np.float32), np.ones((1, 3, 3, 4), np.float32))
    assert error == np.inf
    assert not Report("the eager model", 1, 1, 0.0, error, True).ok
