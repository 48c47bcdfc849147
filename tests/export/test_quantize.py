"""int8 export: the backbone quantised, the CAM head left in float, drift reported."""
import cv2
import numpy as np
import onnx
import pytest
import torch

from edge_cam.errors import EdgeCamError
from edge_cam.model import Model
from edge_cam_export import export
from edge_cam_export.graph.verify import sample_images
from edge_cam_export.quantise.precision import feature_tensor, head_nodes


def _calibration(tmp_path, n=24, size=(64, 64)):
    cal = tmp_path / "cal"
    cal.mkdir()
    for i, im in enumerate(sample_images(n, size, seed=5)):
        cv2.imwrite(str(cal / f"{i}.png"), im)
    return str(cal)


def test_int8_keeps_the_cam_head_float_and_reports_drift(tmp_path):
    """Random weights on synthetic pictures are near ties everywhere: the gate is off here
    (min_agreement 0); tests/export/test_int8_real.py holds a real network to it."""
    out = str(tmp_path / "q.onnx")
    result = export("custom_models:tiny_gap", out, input_size=(64, 64), quantize="int8",
                    calibration=_calibration(tmp_path), quiet=True, min_agreement=0.0)
    cal, held = result.drift["calibration"], result.drift["held_out"]
    assert (cal["images"], held["images"]) == (16, 8)  # one in three held out
    assert 0 <= held["top1_agreement"] <= 1 and held["box_iou_median"] > 0.5
    assert result.drift["kept_float"] == [] and result.drift["int8_mac_share"] == 1.0
    q = onnx.load(out)
    ops = [n.op_type for n in q.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    keep = set(head_nodes(q))
    assert keep and not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in q.graph.node
                            if n.name in keep)
    # the normalisation's mean comes full size: no 3-vector broadcast channels-last (its std is in
    # the first convolution's weights, onnx_passes.fold_scale)
    normalised = {i for n in q.graph.node if n.op_type in ("Sub", "Div") for i in n.input}
    # (float ones: a dynamic-size graph also subtracts and divides int64 scalars for the map's shape)
    assert sorted(list(i.dims) for i in q.graph.initializer
                  if i.name in normalised and i.data_type == onnx.TensorProto.FLOAT) == [[1, 3, 64, 64]]
    m = Model(out)  # metadata carried over: a self-describing int8 teacher
    assert m.has_cam and m.info.input.size == (64, 64)
    assert m.class_query and not m.dynamic_size  # the full-size normalisation fixes the size
    pred = m.predict(np.zeros((40, 50, 3), np.uint8))
    assert pred.cams.shape[1:] == (16, 16)
    assert feature_tensor(q)


def test_keep_float_layers_stay_out_of_quantisation(tmp_path):
    cal = _calibration(tmp_path)
    out = str(tmp_path / "q.onnx")
    # conv 0 is fused into its BatchNorm, so its nodes carry body.1's name
    result = export("custom_models:tiny_gap", out, input_size=(64, 64), quantize="int8", calibration=cal,
                    keep_float=("body.1", "body.2"), quiet=True, min_agreement=0.0)
    q = onnx.load(out)
    producer = {o: n for n in q.graph.node for o in n.output}
    first_conv = next(n for n in q.graph.node if n.op_type == "Conv")
    # the first conv takes its float weight directly: no DequantizeLinear in front of it
    assert producer.get(first_conv.input[1]) is None or producer[first_conv.input[1]].op_type != "DequantizeLinear"
    assert any(n.op_type == "Conv" and producer.get(n.input[1]) is not None
               and producer[n.input[1]].op_type == "DequantizeLinear" for n in q.graph.node)
    assert result.drift["held_out"]["top1_in_top5"] >= 0.9


def test_keep_float_names_a_missing_layer(tmp_path):
    cal = _calibration(tmp_path, 4)
    with pytest.raises(EdgeCamError, match="no_such_layer"):
        export("custom_models:tiny_gap", str(tmp_path / "q.onnx"), input_size=(64, 64), quantize="int8",
               calibration=cal, keep_float=("no_such_layer",), quiet=True)


def test_fp16_halves_the_weights_keeps_float32_outputs_and_reports_drift(tmp_path):
    out = str(tmp_path / "h.onnx")
    fp32 = str(tmp_path / "f.onnx")
    torch.manual_seed(0)
    export("custom_models:tiny_gap", fp32, input_size=(64, 64), quiet=True)
    torch.manual_seed(0)  # the same weights again
    result = export("custom_models:tiny_gap", out, input_size=(64, 64), precision="fp16", quiet=True)
    h = onnx.load(out)
    big = [i for i in h.graph.initializer if len(i.dims) == 4 and i.data_type != onnx.TensorProto.INT64]
    assert big and all(i.data_type == onnx.TensorProto.FLOAT16 for i in big)
    assert {o.name: o.type.tensor_type.elem_type for o in h.graph.output}["cams"] == onnx.TensorProto.FLOAT
    assert result.drift["top1_agreement"] >= 0.9 and result.drift["cam_correlation_median"] > 0.999
    m = Model(out)
    assert m.has_cam and m.info.input.size == (64, 64)  # metadata carried over
    im = sample_images(1, (64, 64), seed=9)[0]
    a, b = Model(fp32).predict(im, "RGB"), m.predict(im, "RGB")
    assert b.cams.dtype == np.float32 and a.class_id == b.class_id
    assert np.abs(a.cams[0] - b.cams[0]).max() <= 2e-2 * np.ptp(a.cams[0])


def test_fp16_and_int8_together_is_a_clear_error(tmp_path):
    with pytest.raises(EdgeCamError, match="one of"):
        export("custom_models:tiny_gap", str(tmp_path / "x.onnx"), input_size=(64, 64), quantize="int8",
               calibration=str(tmp_path), precision="fp16", quiet=True)
