import logging
import os

import numpy as np
import pytest

from edge_cam.errors import EdgeCamError
from edge_cam.model import Model


def test_teacher_loads_and_predicts_any_frame(teacher_path):
    m = Model(teacher_path)
    assert m.has_cam and len(m.info.labels) == 10
    h, w = m.info.cam.feature_size
    for frame in (np.zeros((240, 320, 3), np.uint8), np.zeros((1, 1), np.uint8),
                  np.zeros((3000, 4000, 4), np.uint8), np.zeros((50, 60, 3), np.uint16)):
        p = m.predict(frame)
        k = len(p.class_ids)
        assert p.cams.shape == (k, h, w) and p.scores.shape == (k,)
        assert np.all(np.diff(p.scores) <= 0) and abs(float(p.logits.sum())) < 1e9
        assert p.resize.frame_size == frame.shape[:2]
        assert set(p.timing_ms) == {"preprocess", "model"}


def test_batch_equals_one_by_one(teacher_path, demo_data):
    import cv2
    m = Model(teacher_path)
    cap = cv2.VideoCapture(demo_data("demo_clip.mp4"))
    frames = [cap.read()[1] for _ in range(3)]
    cap.release()
    batch = m.predict_batch(frames)
    for f, b in zip(frames, batch):
        one = m.predict(f)
        np.testing.assert_array_equal(one.class_ids, b.class_ids)
        np.testing.assert_allclose(one.cams, b.cams, rtol=1e-4, atol=1e-4 * np.ptp(one.cams))


def _spinning(m: Model) -> str:
    return m.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")


def test_spinning_is_explicit_and_off_by_default(teacher_path, student_path):
    a = Model(teacher_path)
    assert not a.spinning and _spinning(a) == "0"
    b = Model(student_path, spinning=True)
    assert b.spinning and _spinning(b) == "1"
    assert _spinning(a) == "0"  # a second model never reopens the first one
    a.predict(np.zeros((8, 8, 3), np.uint8))


def test_session_options_are_used_and_their_own_thread_settings_win(teacher_path):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
    opts.enable_profiling = True
    m = Model(teacher_path, threads=2, spinning=False, session_options=opts)
    got = m.session.get_session_options()
    assert got.intra_op_num_threads == 1 and _spinning(m) == "1" and got.enable_profiling
    os.remove(m.session.end_profiling())
    m = Model(teacher_path, threads=2, session_options=ort.SessionOptions())  # defaults left: ours apply
    got = m.session.get_session_options()
    assert (got.intra_op_num_threads, got.inter_op_num_threads, _spinning(m)) == (2, 1, "0")


def test_student_is_a_plain_classifier(student_path):
    m = Model(student_path)
    assert not m.has_cam and m.predict(np.zeros((10, 10, 3), np.uint8)).cams is None


def test_bad_models_raise_one_sentence(tmp_path):
    with pytest.raises(EdgeCamError, match="does not exist"):
        Model(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(EdgeCamError, match="not a readable ONNX model"):
        Model(tmp_path / "bad.onnx")
    with pytest.raises(EdgeCamError, match="unknown execution provider"):
        Model(tmp_path / "bad.onnx", providers=["warp-drive"])


def test_missing_providers_fall_back_to_the_cpu_with_one_line(teacher_path, caplog):
    with caplog.at_level(logging.WARNING, logger="edge_cam"):
        m = Model(teacher_path, providers=["tensorrt"], tensorrt={"trt_fp16_enable": True})
    assert m.providers == m.session.get_providers() == ["CPUExecutionProvider"]
    lines = [r.getMessage() for r in caplog.records if r.name == "edge_cam"]
    assert any("TensorrtExecutionProvider is not in this onnxruntime" in line for line in lines)
    assert any("CUDAExecutionProvider" in line for line in lines)
    assert Model(teacher_path, providers="cpu").providers == ["CPUExecutionProvider"]
    m = Model(teacher_path, providers=["xnnpack", "cpu"])
    assert m.providers[-1] == "CPUExecutionProvider"
