"""The exported teacher in runtimes that know nothing of edge-cam: a bare ONNX Runtime session fed
the image alone, and OpenVINO's runtime (CPU), on real photos with the real MobileNetV2."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edge_cam.model import Model
from edge_cam.source import read_image
from edge_cam_export.graph.onnx_passes import DEFAULT_QUERY
from edge_cam_export.graph.verify import maps_error

PHOTOS = ("cat.bmp", "hot_dog.jpg", "owl.jpg", "parrot.jpg", "pets.jpg", "sunflower.bmp")


def _batch(model: Model, shared_data) -> np.ndarray:
    """The photos as the runtime prepares them: its own resize and uint8 RGB layout."""
    return np.stack([model.prepare(read_image(str(shared_data / "images" / name)))[0] for name in PHOTOS])


def test_a_bare_onnxruntime_session_runs_the_teacher_on_the_image_alone(mobilenet_v2_path, shared_data):
    sess = ort.InferenceSession(mobilenet_v2_path, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]  # class_query has a default
    assert [i.name for i in sess.get_overridable_initializers()] == ["class_query"]
    model = Model(mobilenet_v2_path, providers=["cpu"])
    assert model.class_query  # the runtime still finds, and feeds, the query input
    batch = _batch(model, shared_data)
    names = [o.name for o in sess.get_outputs()]
    bare = dict(zip(names, sess.run(None, {"image": batch})))
    ours = model.run(batch, classes=list(DEFAULT_QUERY))
    for name in ("logits", "class_ids", "scores", "cams", "query_cams", "query_scores"):
        np.testing.assert_array_equal(bare[name], ours[name], err_msg=name)
    assert bare["query_cams"].shape == (len(PHOTOS), 1, 7, 7)  # the default: class 0's map
    # Fed, the query is the caller's, of any length, empty included.
    fed = dict(zip(names, sess.run(None, {"image": batch, "class_query": np.array([281, 7, 999], np.int64)})))
    np.testing.assert_array_equal(fed["query_cams"], model.run(batch, classes=[281, 7, 999])["query_cams"])
    empty = sess.run(["query_cams", "query_scores"], {"image": batch, "class_query": np.zeros(0, np.int64)})
    assert empty[0].shape == (len(PHOTOS), 0, 7, 7) and empty[1].shape == (len(PHOTOS), 0)
    graph = onnx.load(mobilenet_v2_path).graph
    assert [list(t.dims) for t in graph.initializer].count([1000, 1280]) == 1  # W once, for logits and maps
    assert "Div" not in {n.op_type for n in graph.node}  # std is in the first convolution's weights


def test_openvino_gives_the_same_top1_and_maps(mobilenet_v2_path, shared_data):
    ov = pytest.importorskip("openvino", reason="OpenVINO is not installed here (pip install openvino; "
                                                "it has no wheel for every platform)")
    # float32, as ONNX Runtime: on a CPU with bf16 (AMX, AVX512-BF16) OpenVINO's default is bf16.
    compiled = ov.Core().compile_model(mobilenet_v2_path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    # OpenVINO reads class_query's default as a constant: the image is its only input.
    assert [i.get_any_name() for i in compiled.inputs] == ["image"]
    model = Model(mobilenet_v2_path, providers=["cpu"])
    for size in (None, (256, 448)):  # the trained size, and another: the height and width are dynamic
        if size is not None:
            model = Model(mobilenet_v2_path, providers=["cpu"], input_size=size)
        batch = _batch(model, shared_data)
        result = compiled({"image": batch})
        got = {o.get_any_name(): result[o] for o in compiled.outputs}
        ours = model.run(batch, classes=list(DEFAULT_QUERY))
        np.testing.assert_array_equal(got["class_ids"][:, 0], ours["class_ids"][:, 0])
        assert got["cams"].shape == ours["cams"].shape
        assert maps_error(got["cams"], ours["cams"]) < 1e-3
        assert maps_error(got["query_cams"], ours["query_cams"]) < 1e-3
        np.testing.assert_allclose(got["scores"], ours["scores"], atol=1e-4)
        np.testing.assert_allclose(got["query_scores"], ours["query_scores"], atol=1e-4)


def test_a_teacher_whose_query_is_required_still_runs_in_the_runtime(mobilenet_v2_path, shared_data, tmp_path):
    """Teachers exported before the default: class_query is a plain input, which the runtime feeds."""
    m = onnx.load(mobilenet_v2_path)
    m.graph.initializer.remove(next(t for t in m.graph.initializer if t.name == "class_query"))
    older = str(tmp_path / "older.onnx")
    onnx.save(m, older)
    sess = ort.InferenceSession(older, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image", "class_query"]
    model, now = Model(older, providers=["cpu"]), Model(mobilenet_v2_path, providers=["cpu"])
    assert model.class_query and not any(t.optional for t in model.session.inputs)
    batch = _batch(model, shared_data)
    for classes in (None, [3, 281]):
        a, b = model.run(batch, classes=classes), now.run(batch, classes=classes)
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
