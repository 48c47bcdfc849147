"""`edge-cam export` from the command line: a user's module, overrides, and every bad input."""
import os
import pathlib
import sys

import numpy as np
import onnx
import pytest
import torch
from in_process import edge_cam as cli

from edge_cam.model import Model

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "runtime"))
from faults import one_sentence  # the runtime tests' helper: exit 2, one line, no traceback


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    labels = d / "labels.txt"
    labels.write_text("ant\nbee\ncat\ndog\n")
    out = d / "tiny.onnx"
    proc = cli("export", "custom_models:tiny_gap", "-o", out, "--labels", labels, "--input-size", "48", "64",
               "--top-k", "2", "--num-classes", "4")
    assert proc.returncode == 0, proc.stderr
    assert "[4/4] verifying" in proc.stderr and "CAM error" in proc.stderr
    return out


def test_users_module_exports_with_labels_and_shapes(tiny):
    m = Model(tiny)
    assert m.info.labels == ["ant", "bee", "cat", "dog"]
    assert m.info.input.size == (48, 64)
    assert m.info.cam.feature_layer == "body" and m.info.cam.classifier == "head.2"
    assert m.info.cam.feature_size == (12, 16) and m.info.cam.stride == 4
    pred = m.predict(np.zeros((30, 40, 3), np.uint8))
    assert pred.cams.shape == (2, 12, 16) and pred.label in m.info.labels
    info = cli("info", tiny)
    assert info.returncode == 0 and "CAM teacher" in info.stdout and "edge_cam.cam" in info.stdout


def test_overrides_and_layer_listing(tmp_path):
    listing = cli("export", "custom_models:tiny_gap", "--list-layers")
    assert listing.returncode == 0 and "body.5" in listing.stdout.split()
    out = tmp_path / "o.onnx"
    proc = cli("export", "custom_models:tiny_gap", "-o", out, "--input-size", "32",
               "--feature-layer", "body.4", "--classifier", "head.2", "--exporter", "torchscript")
    assert proc.returncode == 0, proc.stderr
    assert Model(out).info.cam.feature_layer == "body.4"  # the BatchNorm before the last ReLU
    bad = cli("export", "custom_models:tiny_gap", "-o", out, "--feature-layer", "nope", "--classifier", "head.2")
    assert "is not a layer" in one_sentence(bad)
    bad = cli("export", "custom_models:tiny_gap", "-o", out, "--feature-layer", "body.2", "--classifier", "head.2")
    assert "channels" in one_sentence(bad)


@pytest.mark.parametrize("spec,words", [
    ("torchvision:vgg11", "fixed grid"),
    ("torchvision:alexnet", "fixed grid"),
    ("custom_models:group_norm_head", "GroupNorm"),
    ("torchvision:not_a_model", "no model"),
    ("no_such_package.mod:fn", "cannot import"),
    ("resnet18", "should be"),
])
def test_unsupported_models_exit_2_with_one_sentence(tmp_path, spec, words):
    line = one_sentence(cli("export", spec, "-o", tmp_path / "x.onnx", "--input-size", "64"))
    assert words in line
    assert not (tmp_path / "x.onnx").exists()


def test_bad_weights_exit_2(tmp_path):
    missing = cli("export", "torchvision:resnet18", "-o", tmp_path / "x.onnx", "--weights", tmp_path / "none.pt")
    assert "does not exist" in one_sentence(missing)
    wrong = tmp_path / "wrong.pt"
    torch.save(torch.nn.Linear(3, 3).state_dict(), wrong)
    assert "do not fit" in one_sentence(cli("export", "torchvision:resnet18", "-o", tmp_path / "x.onnx",
                                                   "--weights", wrong))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    assert "cannot read weights" in one_sentence(cli("export", "torchvision:resnet18", "-o",
                                                            tmp_path / "x.onnx", "--weights", garbage))


def test_wrapped_and_dataparallel_checkpoints_load(tmp_path):
    from custom_models import TinyGap
    state = {"state_dict": {"module." + k: v for k, v in TinyGap().state_dict().items()}}
    ckpt = tmp_path / "ckpt.pt"
    torch.save(state, ckpt)
    proc = cli("export", "custom_models:tiny_gap", "-o", tmp_path / "w.onnx", "--weights", ckpt, "--input-size", "32")
    assert proc.returncode == 0, proc.stderr


def test_non_cam_and_corrupt_onnx_are_refused(tiny, tmp_path):
    image = tmp_path / "a.png"
    import cv2
    cv2.imwrite(str(image), np.zeros((20, 20, 3), np.uint8))
    stripped = onnx.load(str(tiny))
    del stripped.metadata_props[:]
    onnx.save(stripped, str(tmp_path / "plain.onnx"))
    assert "no edge_cam metadata" in one_sentence(cli("localize", tmp_path / "plain.onnx", image))
    student = tmp_path / "student.onnx"
    assert cli("export", "custom_models:tiny_gap", "-o", student, "--no-cam", "--input-size", "32").returncode == 0
    assert "no CAM output" in one_sentence(cli("localize", student, image))
    voc = tmp_path / "voc"  # eval reads the labelled set first (a wrong folder is found at once), then the model
    voc.mkdir()
    cv2.imwrite(str(voc / "a.png"), np.zeros((20, 20, 3), np.uint8))
    (voc / "a.xml").write_text("<annotation><filename>a.png</filename><object><name>x</name><bndbox><xmin>1</xmin>"
                               "<ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    assert "no CAM output" in one_sentence(cli("eval", student, "--voc", voc))
    assert "no CAM output" in one_sentence(cli("run", "--teacher", student, "--source", image))
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x01garbage" * 10)
    assert "not a readable ONNX model" in one_sentence(cli("localize", tmp_path / "bad.onnx", image))
    assert "does not exist" in one_sentence(cli("localize", tmp_path / "missing.onnx", image))
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(pathlib.Path(tiny).read_bytes()[:2000])
    assert "not a readable ONNX model" in one_sentence(cli("info", truncated))
