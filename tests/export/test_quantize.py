"""int8 export: the backbone quantised, the CAM head left in float, drift reported."""
import cv2
import numpy as np
import onnx

from edge_cam.model import Model
from edge_cam_export import export
from edge_cam_export.quantize import feature_tensor, head_nodes
from edge_cam_export.verify import sample_images


def test_int8_keeps_the_cam_head_float_and_reports_drift(tmp_path):
    cal = tmp_path / "cal"
    cal.mkdir()
    for i, im in enumerate(sample_images(24, (64, 64), seed=5)):
        cv2.imwrite(str(cal / f"{i}.png"), im)
    out = str(tmp_path / "q.onnx")
    result = export("custom_models:tiny_gap", out, input_size=(64, 64), quantize="int8", calibration=str(cal),
                    quiet=True)
    d = result.drift
    assert d["images"] == 24 and 0 <= d["top1_agreement"] <= 1 and d["box_iou_median"] > 0.5
    q = onnx.load(out)
    ops = [n.op_type for n in q.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    keep = set(head_nodes(q))
    assert keep and not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in q.graph.node
                            if n.name in keep)
    m = Model(out)  # metadata carried over: a self-describing int8 teacher
    assert m.has_cam and m.info.input.size == (64, 64)
    pred = m.predict(np.zeros((40, 50, 3), np.uint8))
    assert pred.cams.shape[1:] == (16, 16)
    assert feature_tensor(q)
