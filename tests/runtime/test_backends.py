"""edge_cam.backends: one protocol for ONNX Runtime and LiteRT, chosen by the file's suffix."""
import logging

import numpy as np
import pytest

from edge_cam.backends import Tensor, open_backend
from edge_cam.errors import EdgeCamError


def _fixed_batch_onnx(path):
    """A graph whose input is [1, 2, 2, 3] uint8: the sum of each image's pixels."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceSum", ["f"], ["total"], keepdims=0, axes=[1, 2, 3])]
    graph = helper.make_graph(nodes, "fixed", [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 2, 2, 3])],
                              [helper.make_tensor_value_info("total", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_onnx_backend_meets_the_protocol(teacher_path):
    b = open_backend(teacher_path, providers="cpu", threads=1)
    assert b.name == "onnxruntime" and b.providers == ["CPUExecutionProvider"]
    x = b.inputs[0]
    assert isinstance(x, Tensor) and x.dtype == np.uint8 and x.shape[0] == -1 and x.shape[3] == 3
    assert {"logits", "class_ids", "scores", "cams"} <= {o.name for o in b.outputs}
    assert "edge_cam.input" in b.props
    images = np.random.default_rng(0).integers(0, 256, (3, *x.shape[1:]), np.uint8)
    logits, = b.run(["logits"], images)
    assert logits.shape[0] == 3


def test_a_graph_with_its_batch_fixed_at_one_takes_any_batch(tmp_path):
    _fixed_batch_onnx(tmp_path / "fixed.onnx")
    b = open_backend(tmp_path / "fixed.onnx")
    images = np.arange(3 * 12, dtype=np.uint8).reshape(3, 2, 2, 3)
    total, = b.run(["total"], images)
    np.testing.assert_array_equal(total, images.reshape(3, -1).sum(axis=1).astype(np.float32))


def test_the_suffix_picks_the_backend(tmp_path):
    (tmp_path / "m.tflite").write_bytes(b"not a model at all")
    (tmp_path / "m.onnx").write_bytes(b"not a model at all")
    pytest.importorskip("ai_edge_litert", reason="the tflite extra (ai-edge-litert) is not installed")
    with pytest.raises(EdgeCamError, match="not a TFLite model"):
        open_backend(tmp_path / "m.tflite")
    with pytest.raises(EdgeCamError, match="not a readable ONNX model"):
        open_backend(tmp_path / "m.onnx")


def test_litert_says_once_that_providers_are_for_onnx(shared_data, caplog):
    pytest.importorskip("ai_edge_litert", reason="the tflite extra (ai-edge-litert) is not installed")
    coral = shared_data / "models" / "coral" / "mobilenet_v1_0.25_128_quant.tflite"
    with caplog.at_level(logging.WARNING, logger="edge_cam"):
        for providers in ("auto", "cpu", ["CPUExecutionProvider"]):
            b = open_backend(coral, providers=providers, threads=1)
        assert not caplog.records
        b = open_backend(coral, providers=["cuda", "cpu"], threads=1)
    assert [r.getMessage() for r in caplog.records] == [
        "LiteRT runs mobilenet_v1_0.25_128_quant.tflite on the CPU; providers apply to .onnx models only."]
    assert b.name == "litert" and b.providers == ["LiteRT CPU"]
    x = b.inputs[0]
    assert x.shape == (1, 128, 128, 3) and x.quant == (0.0078125, 128)
    scores, = b.run([b.outputs[0].name], np.zeros((2, 128, 128, 3), np.uint8))  # fixed batch 1: one by one
    assert scores.shape == (2, 1001) and scores.dtype == np.float32
