"""TFLite through LiteRT behind Model, edge_cam metadata in .tflite files, and foreign students
(the real Coral MobileNetV1 from ../shared/data, and a small float NCHW ONNX classifier)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge_cam.adapt import StudentSpec, foreign_input
from edge_cam.cli import main
from edge_cam.errors import EdgeCamError
from edge_cam.model import Model
from edge_cam.source import read_image

pytest.importorskip("ai_edge_litert", reason="the tflite extra (ai-edge-litert) is not installed")
from ai_edge_litert.interpreter import Interpreter

from edge_cam.backends.litert import read_metadata, write_metadata

CATS = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def coral(shared_data):
    return str(shared_data / "models" / "coral" / "mobilenet_v1_0.25_128_quant.tflite")


@pytest.fixture(scope="module")
def coral_spec(shared_data):
    # Its input is uint8 with real = (q - 128) / 128: pixels p seen as (p - 128) / 128 quantise
    # back to q = p exactly, the raw pixels the Coral examples feed.
    return {"scale": 1, "mean": 128, "std": 128, "label_offset": 1, "resize": "crop",
            "labels": str(shared_data / "models" / "coral" / "imagenet_labels.txt")}


@pytest.fixture(scope="module")
def cat(shared_data):
    return read_image(str(shared_data / "images" / "cat.bmp"))


def test_coral_student_sees_the_cat_in_a_centre_crop(coral, coral_spec, cat):
    m = Model(coral, describe=coral_spec, threads=1)
    assert (m.backend, m.input_size, m.spec.layout, m.has_cam) == ("litert", (128, 128), "NHWC", False)
    assert len(m.info.labels) == 1000 and m.info.labels[0].startswith("tench")  # "background" dropped
    p = m.predict(cat)
    assert p.class_id in CATS and "cat" in p.label
    assert p.logits.shape == (1000,) and p.cams is None
    assert 0 < p.score <= 1 and np.all(np.diff(p.scores) <= 0)  # already probabilities: no softmax


def test_coral_through_model_equals_a_hand_written_interpreter_call(coral, coral_spec, cat):
    m = Model(coral, describe=coral_spec, threads=1)
    pixels, _ = m.prepare(cat)
    assert np.array_equal(foreign_input(pixels[None], m.spec, m.session.inputs[0]), pixels[None])
    it = Interpreter(model_path=coral, num_threads=1)
    it.allocate_tensors()
    x, y = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(x["index"], pixels[None])
    it.invoke()
    scale, zero = y["quantization"]
    probs = (it.get_tensor(y["index"])[0].astype(np.float32) - zero) * np.float32(scale)
    ids = np.argsort(-probs[1:], kind="stable")[:5]
    p = m.predict(cat)
    assert np.array_equal(p.class_ids, ids)
    assert np.array_equal(p.scores, probs[1:][ids])  # exactly: same bytes in, same dequantisation
    assert np.array_equal(p.logits, probs[1:])


def test_a_batch_equals_one_by_one(coral, coral_spec, cat):
    # The Coral graph has a fixed batch of 1 (its Reshape to [1, 1001]): the batch runs item by item.
    m = Model(coral, describe=coral_spec, threads=1)
    frames = [cat, cat[:, ::-1].copy(), cat[::2, ::2].copy()]
    batch = m.predict_batch(frames)
    assert m.session._batchable is False
    for f, b in zip(frames, batch):
        one = m.predict(f)
        assert np.array_equal(one.class_ids, b.class_ids) and np.array_equal(one.scores, b.scores)


def test_metadata_round_trip_keeps_the_model(coral, coral_spec, cat, tmp_path):
    src = tmp_path / "coral.tflite"
    shutil.copy(coral, src)
    assert read_metadata(src) == {}
    props = {"edge_cam.format_version": "1", "edge_cam.labels": json.dumps(["a", "b é"]),
             "edge_cam.input": json.dumps({"size": [128, 128], "color": "RGB"})}
    dst = tmp_path / "tagged.tflite"
    write_metadata(src, dst, props)
    assert read_metadata(dst) == props
    again = {"edge_cam.format_version": "1", "edge_cam.input": json.dumps({"size": [128, 128]})}
    write_metadata(dst, dst, again)  # replaces, in place
    assert read_metadata(dst) == again
    from ai_edge_litert import schema_py_generated as schema
    model = schema.Model.GetRootAs(dst.read_bytes(), 0)
    names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
    assert names.count(b"edge_cam") == 1 and b"min_runtime_version" in names  # others kept
    before = Model(src, describe=coral_spec).predict(cat)
    after = Model(dst, describe=coral_spec).predict(cat)
    assert np.array_equal(before.scores, after.scores) and np.array_equal(before.class_ids, after.class_ids)
    # With edge_cam metadata but without the teacher's outputs, it is not an edge-cam model.
    with pytest.raises(EdgeCamError, match="lacks the outputs"):
        Model(dst)


def _tiny_onnx(path, nchw=True, size=16):
    """A float classifier: GAP over the normalised image, then 3 → 4 classes (size None: dynamic)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    w = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]], np.float32)
    b = np.array([0, 0, 0, -3], np.float32)
    hw = [size, size] if size else ["H", "W"]
    shape = ["N", 3, *hw] if nchw else ["N", *hw, 3]
    nodes = [] if nchw else [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2])]
    nodes += [helper.make_node("GlobalAveragePool", ["x" if nchw else "xt"], ["g"]),
              helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "w", "b"], ["scores"], transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 4 if size else "C"])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return w, b


@pytest.mark.parametrize("nchw", [True, False])
def test_foreign_onnx_float_student(tmp_path, nchw):
    path = tmp_path / "tiny.onnx"
    w, b = _tiny_onnx(path, nchw)
    spec = {"size": 16, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "labels": ["r", "g", "b", "dark"]}
    m = Model(path, describe=spec, threads=1)
    assert m.spec.layout == ("NCHW" if nchw else "NHWC") and m.info.input.mean == (0.5, 0.5, 0.5)
    rgb = np.zeros((40, 30, 3), np.uint8)
    rgb[..., 0], rgb[..., 1] = 200, 60
    p = m.predict(rgb, color="RGB")
    x = (rgb[0, 0].astype(np.float32) / 255 - 0.5) / 0.25
    logits = w @ x + b
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(p.logits, logits, rtol=1e-5)
    np.testing.assert_allclose(p.scores, np.sort(probs)[::-1], rtol=1e-5)  # softmax applied to logits
    assert p.label == "r" and p.class_ids.tolist() == np.argsort(-probs).tolist()
    # The same model described as BGR sees the channels swapped: blue wins.
    assert Model(path, describe={**spec, "color": "BGR"}).predict(rgb, color="RGB").label == "b"
    two = m.predict_batch([rgb, rgb[..., ::-1].copy()], color="RGB")
    assert [q.label for q in two] == ["r", "b"]


def test_foreign_model_needs_a_description(coral, tmp_path):
    _tiny_onnx(tmp_path / "t.onnx", size=None)
    for path in (coral, tmp_path / "t.onnx"):
        with pytest.raises(EdgeCamError, match="--student-spec") as e:
            Model(path)
        assert "\n" not in str(e.value)
    with pytest.raises(EdgeCamError, match="dynamic input size"):
        Model(tmp_path / "t.onnx", describe={})
    # Its class axis is dynamic too: one blank run counts the classes, so the labels are checked.
    m = Model(tmp_path / "t.onnx", describe={"size": [24, 32], "labels": ["r", "g", "b", "dark"]})
    red = np.zeros((5, 5, 3), np.uint8)
    red[..., 0] = 255
    assert m.input_size == (24, 32) and m.predict(red, color="RGB").label == "r"
    with pytest.raises(EdgeCamError, match="3 names for 4 outputs"):
        Model(tmp_path / "t.onnx", describe={"size": 24, "labels": ["r", "g", "b"]})


@pytest.mark.parametrize("spec,match", [
    ({"colour": "RGB"}, "unknown student description keys"),
    ({"color": "YUV"}, "color 'YUV' is not valid"),
    ({"std": [1, 0, 1]}, "std"),
    ({"mean": [1, 2]}, "malformed"),
    ({"label_offset": 1, "labels": ["x"] * 10}, "10 names for 1001 outputs"),
    ({"layout": "NCHW"}, r"takes \[1, 128, 128, 3\], not a 3-channel NCHW image"),
    ({"size": 96}, "not 96x96 images"),
])
def test_bad_descriptions_are_one_sentence(coral, spec, match):
    with pytest.raises(EdgeCamError, match=match) as e:
        Model(coral, describe=spec)
    assert "\n" not in str(e.value)


def test_unreadable_tflite_files(tmp_path, coral):
    (tmp_path / "junk.tflite").write_bytes(b"not a model at all")
    with pytest.raises(EdgeCamError, match="not a TFLite model"):
        Model(tmp_path / "junk.tflite", describe={})
    data = open(coral, "rb").read()
    (tmp_path / "cut.tflite").write_bytes(data[:4096])
    with pytest.raises(EdgeCamError, match="not a readable TFLite model") as e:
        Model(tmp_path / "cut.tflite", describe={})
    assert "\n" not in str(e.value)
    with pytest.raises(EdgeCamError, match="does not exist"):
        Model(tmp_path / "missing.tflite")


def test_without_ai_edge_litert_the_message_says_what_to_install(coral):
    # Only the import is simulated; everything else is the real code path.
    code = ("import sys; sys.modules['ai_edge_litert'] = None\nfrom edge_cam.cli import main\n"
            f"sys.exit(main(['info', r'{coral}']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "edge-cam: running .tflite models needs ai-edge-litert: pip install 'edge-cam[tflite]'.\n"


def test_cli_info_and_run_with_a_described_student(coral, coral_spec, teacher_path, shared_data, tmp_path, capsys):
    assert main(["info", coral]) == 0
    out = capsys.readouterr().out
    assert "uint8 (scale 0.0078125, zero point 128)" in out and "[1, 1001]" in out
    assert "no edge_cam metadata" in out
    spec = tmp_path / "coral.json"
    spec.write_text(json.dumps(coral_spec))
    events = tmp_path / "events.jsonl"
    cat = str(shared_data / "images" / "cat.bmp")
    assert main(["run", "--teacher", teacher_path, "--student", coral, "--student-spec", str(spec),
                 "--source", cat, "--events", str(events), "--quiet"]) == 0
    event = json.loads(events.read_text().splitlines()[0])
    student = event["rois"][0]["student"]
    assert 0 <= student["class_id"] < 1000 and student["label"] != str(student["class_id"])
    capsys.readouterr()
    assert main(["run", "--teacher", teacher_path, "--student", coral, "--source", cat, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edge-cam: ") and "--student-spec" in err
    assert main(["run", "--teacher", teacher_path, "--student-spec", str(spec), "--source", cat]) == 2
    assert capsys.readouterr().err == "edge-cam: --student-spec describes the --student model; give --student too.\n"


def test_spec_files_resolve_labels_beside_them_and_inline_json_works(tmp_path):
    (tmp_path / "names.txt").write_text("background\ncat\n\ndog\n")
    (tmp_path / "s.json").write_text('{"size": 64, "mean": 127.5, "labels": "names.txt", "label_offset": 1}')
    spec = StudentSpec.load(str(tmp_path / "s.json"))
    assert spec.labels == ("background", "cat", "dog") and spec.size == (64, 64) and spec.mean == (127.5,) * 3
    assert StudentSpec.load('{"color": "bgr", "softmax": false}') == StudentSpec(color="BGR", softmax=False)
    with pytest.raises(EdgeCamError, match="not valid JSON"):
        StudentSpec.load("{size: 3}")
    with pytest.raises(EdgeCamError, match="does not exist"):
        StudentSpec.load(str(tmp_path / "nope.json"))


def test_litert_native_greetings_are_dropped_and_other_lines_kept(coral, coral_spec, cat, capfd):
    """LiteRT writes "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to file descriptor 2
    at each interpreter's first invoke: on a board that is a line per model in every log."""
    from edge_cam.backends.litert import native_noise_filtered
    capfd.readouterr()
    Model(coral, describe=coral_spec, threads=1).predict(cat)
    assert capfd.readouterr().err == ""
    with native_noise_filtered():  # what native code writes that is not a known greeting gets through
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"I0000 00:00:1796294025.342505   27345 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"a real problem\n")
    assert capfd.readouterr().err == "a real problem\n"
