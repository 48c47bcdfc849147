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


def test_second_session_turns_spinning_off_in_both(teacher_path, student_path):
    a = Model(teacher_path)
    b = Model(student_path)
    assert not a.spinning and not b.spinning
    assert Model(student_path, spinning=True).spinning
    a.predict(np.zeros((8, 8, 3), np.uint8))  # still usable after its session was rebuilt


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


def test_missing_providers_fall_back_to_the_cpu_with_one_line(teacher_path, capfd):
    m = Model(teacher_path, providers=["tensorrt"], tensorrt={"trt_fp16_enable": True})
    assert m.session.get_providers() == ["CPUExecutionProvider"]
    err = capfd.readouterr().err
    assert "TensorrtExecutionProvider is not in this onnxruntime" in err and "CUDAExecutionProvider" in err
    assert Model(teacher_path, providers="cpu").session.get_providers() == ["CPUExecutionProvider"]
    m = Model(teacher_path, providers=["xnnpack", "cpu"])
    assert m.session.get_providers()[-1] == "CPUExecutionProvider"
