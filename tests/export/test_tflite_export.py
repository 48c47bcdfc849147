"""`edge-cam export --format tflite`: the same CamGraph through litert-torch, checked against the
eager model and the ONNX export, with the edge_cam metadata carried in the .tflite."""
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from edge_cam import cli
from edge_cam.backends.litert import read_metadata
from edge_cam.errors import EdgeCamError
from edge_cam.model import Model
from edge_cam.source import list_images, read_image
from edge_cam_export import export, export_module
from edge_cam_export.graph.verify import TOLERANCE as CAM_TOLERANCE
from edge_cam_export.graph.verify import agreement, sample_images

pytest.importorskip("litert_torch", reason="TFLite export needs the tflite-export extra")


def test_resnet18_tflite_matches_eager_and_onnx_runtime(tmp_path):
    torch.manual_seed(0)
    # Random weights in eval mode, as the family tests use them (default BatchNorm statistics).
    net = torchvision.models.get_model("resnet18", weights=None, num_classes=10).eval()
    out = str(tmp_path / "r18.tflite")
    result = export_module(net, out, input_size=(96, 96), top_k=3, format="tflite", quiet=True)
    check = result.tflite
    assert check.ok and check.seconds > 0
    assert all(a.cam_error <= CAM_TOLERANCE and a.same_classes for a in check.onnx)
    assert all(r.cam_error <= CAM_TOLERANCE and r.top1_agree for r in check.eager)
    assert not list(tmp_path.glob("*.onnx"))  # the ONNX reference is not left behind

    m = Model(out)  # the runtime's own LiteRT path reads it as a self-describing teacher
    assert m.backend == "litert" and m.has_cam and m.info.input.size == (96, 96)
    assert m.info.cam.feature_layer == "layer4" and m.info.cam.feature_size == (3, 3)
    x = m.session.inputs[0]
    assert x.dtype == np.uint8 and x.shape == (1, 96, 96, 3)
    assert {o.name for o in m.session.outputs} == {"logits", "class_ids", "scores", "cams"}
    outs = m.run(sample_images(3, (96, 96), seed=4))  # a batch runs item by item
    assert outs["cams"].shape == (3, 3, 3, 3) and outs["class_ids"].dtype == np.int64


def test_metadata_round_trip_and_info(tmp_path, capsys):
    out = tmp_path / "tiny.tflite"
    # -o's suffix picks the format; no --format needed.
    assert cli.main(["export", "custom_models:tiny_gap", "--input-size", "64", "--labels",
                     str(_labels(tmp_path, 4)), "-o", str(out)]) == 0
    props = read_metadata(out)
    assert json.loads(props["edge_cam.input"])["batch"] == 1
    source = json.loads(props["edge_cam.source"])
    assert source["format"] == "tflite" and source["converter"].startswith("litert-torch ")
    assert json.loads(props["edge_cam.labels"]) == ["a", "b", "c", "d"]
    assert json.loads(props["edge_cam.cam"])["feature_size"] == [16, 16]
    capsys.readouterr()
    assert cli.main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "edge_cam.source" in text and '"format": "tflite"' in text and "CAM teacher" in text


def _labels(folder, n):
    path = folder / "labels.txt"
    path.write_text("\n".join("abcdefgh"[:n]) + "\n")
    return path


class LogCumSumExp(nn.Module):
    def forward(self, x):
        return torch.logcumsumexp(x, 2)


class FoldUnfold(nn.Module):
    def forward(self, x):
        return nn.functional.fold(nn.functional.unfold(x, 1), x.shape[-2:], 1)


# ONNX has both; litert-torch 0.10.0 has no lowering for the first, and lowers the second to a
# scatter that LiteRT's kernel then refuses to prepare.
@pytest.mark.parametrize("op,words,kept", [(LogCumSumExp, "litert-torch could not convert", []),
                                           (FoldUnfold, "does not run in LiteRT", ["odd.tflite.failed.tflite"])])
def test_a_model_that_does_not_lower_or_run_fails_with_one_sentence(tmp_path, op, words, kept):
    from custom_models import TinyGap
    torch.manual_seed(0)
    net = TinyGap().eval()
    net.body = nn.Sequential(net.body, op())
    with pytest.raises(EdgeCamError) as e:
        export_module(net, str(tmp_path / "odd.tflite"), input_size=(32, 32), format="tflite", quiet=True)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == kept  # no reference ONNX, no partial file


def test_agreement_allows_swaps_between_tied_classes_only():
    ort = {"logits": np.array([[3.0, 5.0, 5.0, 1.0]], np.float32), "class_ids": np.array([[1, 2]])}
    tied = {"logits": ort["logits"], "class_ids": np.array([[2, 1]])}
    other = {"logits": ort["logits"], "class_ids": np.array([[1, 0]])}
    assert agreement(tied, ort).ok and not agreement(other, ort).ok


def test_missing_litert_torch_and_onnx_input_are_one_sentence(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # as if not installed
    assert cli.main(["export", "custom_models:tiny_gap", "-o", str(tmp_path / "x.tflite")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "edge-cam: exporting to TFLite needs litert-torch: pip install 'edge-cam[tflite-export]'."
    assert cli.main(["export", str(tmp_path / "m.onnx"), "--format", "tflite", "-o", str(tmp_path / "x.tflite")]) == 2
    assert "--format tflite converts torch models" in capsys.readouterr().err


def test_int8_tflite_keeps_the_cam_head_float_and_reports_drift(tmp_path):
    cal = tmp_path / "cal"
    cal.mkdir()
    for i, im in enumerate(sample_images(24, (64, 64), seed=5)):
        cv2.imwrite(str(cal / f"{i}.png"), im)
    out = str(tmp_path / "q.tflite")
    result = export("custom_models:tiny_gap", out, input_size=(64, 64), quantize="int8", min_agreement=0.0,
                    calibration=str(cal), format="tflite", quiet=True, classes=[1])  # a baked class, too
    d = result.drift["held_out"]  # random weights on synthetic pictures: the gate is off (min_agreement 0)
    assert d["images"] == 8 and result.drift["calibration"]["images"] == 16 and d["box_iou_median"] > 0.5
    assert not (tmp_path / "q.tflite.fp32.tflite").exists()
    q = Model(out)
    outputs = {o.name: o for o in q.session.outputs}
    assert outputs["cams"].dtype == np.float32 and outputs["cams"].quant is None  # head in float
    assert outputs["query_cams"].quant is None and q.baked.tolist() == [1]  # the baked maps' head too
    from ai_edge_litert.schema_py_generated import TensorType
    from ai_edge_litert.tools import flatbuffer_utils
    tensors = flatbuffer_utils.read_model(out).subgraphs[0].tensors
    assert any(t.type == TensorType.INT8 for t in tensors)  # the backbone is quantised
    assert q.has_cam and q.predict(np.zeros((40, 50, 3), np.uint8)).cams.shape == (4, 16, 16)


def test_real_mobilenet_v2_tflite_matches_onnx_runtime_on_photos(mobilenet_v2_tflite_path, mobilenet_v2_path,
                                                                shared_data):
    check = json.loads((Path(mobilenet_v2_tflite_path).parent / "tflite_check.json").read_text())
    assert check["ok"] and all(e <= CAM_TOLERANCE for e in check["cam_error_vs_onnx"])
    tfl, ort = Model(mobilenet_v2_tflite_path), Model(mobilenet_v2_path)
    photos = list_images([str(shared_data / "images")])
    assert len(photos) >= 9
    for path in photos:
        x = tfl.prepare(read_image(path))[0][None]
        a = agreement(tfl.run(x), ort.run(x))
        assert a.ok, f"{path}: {a}"
    pred = tfl.predict(read_image(str(shared_data / "images" / "cat.bmp")))
    assert (pred.class_id, pred.label) == (285, "Egyptian cat")
