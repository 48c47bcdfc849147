"""`edge-cam export model.onnx`: CAM-ify an existing ONNX classifier without torch (edge_cam_export.graph.surgery).

Real model: PaddleOCR's text-direction classifier (MobileNetV3, GAP → MatMul + Add, weights in
Constant nodes) from the rapidocr-onnxruntime wheel, fetched from PyPI into a cache outside the
repo. Small classifiers of each head shape are built with onnx.helper and checked against numpy.
"""
from __future__ import annotations

import math
import os
import pathlib
import subprocess
import sys
import zipfile

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edge_cam.cli import main  # noqa: E402
from edge_cam.localize import BoxRule  # noqa: E402
from edge_cam.model import Model  # noqa: E402
from edge_cam.source import list_images, read_image  # noqa: E402
from edge_cam_export.graph.surgery import cam_from_onnx  # noqa: E402

WHEEL = "rapidocr-onnxruntime==1.4.4"
MEMBER = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"
CACHE = pathlib.Path(os.environ.get("EDGE_CAM_TEST_CACHE", pathlib.Path.home() / ".cache" / "edge-cam-tests"))
PADDLE = dict(color="BGR", scale=1 / 255, mean=(0.5,) * 3, std=(0.5,) * 3, input_size=(48, 192))


@pytest.fixture(scope="session")
def paddle_cls() -> pathlib.Path:
    """The cls model, unzipped from the wheel (downloaded once into the cache)."""
    target = CACHE / pathlib.Path(MEMBER).name
    if not target.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-q", "-d", str(CACHE)],
                              capture_output=True, text=True)
        wheels = sorted(CACHE.glob("rapidocr_onnxruntime-1.4.4-*.whl"))
        if proc.returncode != 0 or not wheels:
            message = f"cannot download {WHEEL} from PyPI: {proc.stderr.strip()[-300:]}"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message)
            pytest.skip(message)
        with zipfile.ZipFile(wheels[0]) as z:
            target.write_bytes(z.read(MEMBER))
    return target


@pytest.fixture(scope="session")
def paddle_cam(paddle_cls, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("cls") / "cls_cam.onnx"
    labels = out.parent / "labels.txt"
    labels.write_text("0\n180\n")
    # Stretch: PaddleOCR keeps the ratio and pads right for lines narrower than 4:1 and stretches
    # wider ones; stretch agreed with it on all 240 rendered lines we tried, letterbox on 199.
    assert main(["export", str(paddle_cls), "-o", str(out), "--color", "BGR", "--scale", "1/255",
                 "--mean", "0.5", "0.5", "0.5", "--std", "0.5", "0.5", "0.5", "--input-size", "48", "192",
                 "--resize", "stretch", "--labels", str(labels), "--top-k", "2"]) == 0
    return out


def paddle_input(bgr: np.ndarray) -> np.ndarray:
    """PaddleOCR's own cls preprocessing (rapidocr_onnxruntime/ch_ppocr_cls/text_cls.py)."""
    h, w = bgr.shape[:2]
    rw = min(192, int(math.ceil(48 * w / h)))
    x = cv2.resize(bgr, (rw, 48)).astype(np.float32).transpose(2, 0, 1) / 255
    out = np.zeros((3, 48, 192), np.float32)
    out[:, :, :rw] = (x - 0.5) / 0.5
    return out[None]


def text_line(text: str, font: int, scale: float = 1.0) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A tight crop of one dark text line on white, as a detector would hand it over, with
    side margins; returns the image and the text's box."""
    (tw, th), base = cv2.getTextSize(text, font, scale, 2)
    h = int(round((th + base) * 1.25))
    w = max(4 * h, int(tw * 1.3))
    img = np.full((h, w, 3), 255, np.uint8)
    x, y = (w - tw) // 2, (h - th - base) // 2 + th
    cv2.putText(img, text, (x, y), font, scale, (0, 0, 0), 2, cv2.LINE_AA)
    return img, (x, y - th, x + tw, y + base)


def test_paddle_cls_matches_the_original_on_real_photos(paddle_cls, paddle_cam, shared_data, tmp_path):
    # The surgery's own verification on the shared photos...
    result = cam_from_onnx(str(paddle_cls), str(tmp_path / "v.onnx"), **PADDLE, resize_mode="stretch",
                           verify_images=str(shared_data / "images"))
    assert result.head.kind == "matmul" and result.head.num_classes == 2
    assert result.verification.images >= 2 and result.verification.ok
    assert result.verification.logit_error < 1e-4 and result.verification.cam_error < 1e-4
    # ...and independently: the original fed PaddleOCR's normalisation of the very same pixels.
    model = Model(paddle_cam, providers=["cpu"])
    sess = ort.InferenceSession(str(paddle_cls), providers=["CPUExecutionProvider"])
    paths = list_images([str(shared_data / "images")])[:6]
    batch = np.stack([model.prepare(read_image(p))[0] for p in paths])
    x = (batch[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) / 255 - 0.5) / 0.5
    orig = np.log(sess.run(None, {"x": x})[0])  # its output is softmax; compare log-probabilities
    ours = model.run(batch)
    log_probs = ours["logits"] - np.log(np.exp(ours["logits"]).sum(1, keepdims=True))
    assert np.abs(log_probs - orig).max() < 1e-4
    assert (ours["class_ids"][:, 0] == orig.argmax(1)).all()
    assert np.allclose(ours["scores"], np.exp(np.take_along_axis(orig, ours["class_ids"], 1)), atol=1e-5)
    assert ours["cams"].shape == (len(paths), 2, 1, 48)


@pytest.mark.parametrize("text", ["hello world", "Edge CAM text", "receipt total 42.50", "OCR direction"])
def test_paddle_cls_text_direction_and_box(paddle_cls, paddle_cam, text):
    sess = ort.InferenceSession(str(paddle_cls), providers=["CPUExecutionProvider"])
    model = Model(paddle_cam, providers=["cpu"])
    assert model.info.labels == ["0", "180"] and model.info.cam.feature_size == (1, 48)
    rule = BoxRule.for_model(model.info.cam)
    img, (tx1, _, tx2, _) = text_line(text, cv2.FONT_HERSHEY_SIMPLEX)
    w = img.shape[1]
    for rotated, (x1, x2) in ((False, (tx1, tx2)), (True, (w - tx2, w - tx1))):
        frame = cv2.rotate(img, cv2.ROTATE_180) if rotated else img
        original = sess.run(None, {"x": paddle_input(frame)})[0][0]
        assert original.argmax() == int(rotated)  # the real model reads our rendering correctly
        pred = model.predict(frame)
        assert pred.class_id == original.argmax() and pred.label == ("180" if rotated else "0")
        _, boxes = rule.localize(pred, 0)
        box = boxes[0]
        # The CAM has one row (48 columns), so only its horizontal extent says anything.
        overlap = max(0.0, min(box.x2, x2) - max(box.x1, x1))
        assert overlap / box.width > 0.7, (text, rotated, box, (x1, x2))
        assert x1 <= (box.x1 + box.x2) / 2 <= x2


# --- small classifiers built with onnx.helper, checked against numpy ------------------------------

RNG = np.random.default_rng(7)
CONV_W = RNG.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
CONV_B = RNG.normal(0, 0.1, 8).astype(np.float32)
FC_W = RNG.normal(0, 0.5, (5, 8)).astype(np.float32)  # (classes, channels)
FC_B = RNG.normal(0, 0.5, 5).astype(np.float32)
MEAN, STD = np.array([0.4, 0.5, 0.6], np.float32), np.array([0.2, 0.25, 0.3], np.float32)


def _init(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def tiny(head: str, path: pathlib.Path, layout: str = "NCHW", in_name: str = "x", out_name: str = "y",
         opset: int = 13, size: int | None = 32, batch: int | None = None) -> pathlib.Path:
    """3×32×32 → Conv 3×3/2 → Relu (F: 8×16×16) → the head under test → 5 classes; size None
    leaves H and W dynamic, batch None the batch."""
    shape = [batch, 3, size, size] if layout == "NCHW" else [batch, size, size, 3]
    nodes, inits = [], [_init("conv_w", CONV_W), _init("conv_b", CONV_B)]
    x = in_name
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["x_nchw"], perm=[0, 3, 1, 2]))
        x = "x_nchw"
    nodes += [helper.make_node("Conv", [x, "conv_w", "conv_b"], ["c"], kernel_shape=[3, 3], pads=[1] * 4,
                               strides=[2, 2]),
              helper.make_node("Relu", ["c"], ["F"])]
    if head == "gemm":  # torchvision: GAP → Flatten → Linear, Softmax appended
        inits += [_init("fc_w", FC_W), _init("fc_b", FC_B)]
        nodes += [helper.make_node("GlobalAveragePool", ["F"], ["g"]),
                  helper.make_node("Flatten", ["g"], ["flat"]),
                  helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["z"], transB=1),
                  helper.make_node("Softmax", ["z"], [out_name], axis=1)]
    elif head == "reducemean-matmul":  # ReduceMean(axes attr, keepdims=0) → MatMul + Add, Constant weights
        nodes += [helper.make_node("Constant", [], ["fc_w"], value=_init("w", FC_W.T.copy())),
                  helper.make_node("Constant", [], ["fc_b"], value=_init("b", FC_B)),
                  helper.make_node("ReduceMean", ["F"], ["g"], axes=[2, 3], keepdims=0),
                  helper.make_node("MatMul", ["g", "fc_w"], ["m"]),
                  helper.make_node("Add", ["m", "fc_b"], [out_name])]
    elif head == "reducemean18-gemm":  # opset 18: axes as an input, keepdims=1, Reshape, transB=0
        inits += [_init("axes", np.array([-2, -1], np.int64)), _init("to2d", np.array([0, -1], np.int64)),
                  _init("fc_w", FC_W.T.copy()), _init("fc_b", FC_B)]
        nodes += [helper.make_node("ReduceMean", ["F", "axes"], ["g"], keepdims=1),
                  helper.make_node("Reshape", ["g", "to2d"], ["flat"]),
                  helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], [out_name], transB=0)]
    elif head == "squeezenet":  # 1×1 Conv → Relu → GAP → Flatten: the pooling gives the logits
        inits += [_init("cls_w", FC_W[:, :, None, None]), _init("cls_b", FC_B)]
        nodes += [helper.make_node("Conv", ["F", "cls_w", "cls_b"], ["k"], kernel_shape=[1, 1]),
                  helper.make_node("Relu", ["k"], ["kr"]),
                  helper.make_node("GlobalAveragePool", ["kr"], ["g"]),
                  helper.make_node("Flatten", ["g"], ["z"]),
                  helper.make_node("Softmax", ["z"], [out_name], axis=1)]
    elif head == "conv-after-pool":  # GAP(keepdims) → 1×1 Conv as the classifier → Flatten
        inits += [_init("cls_w", FC_W[:, :, None, None]), _init("cls_b", FC_B)]
        nodes += [helper.make_node("GlobalAveragePool", ["F"], ["g"]),
                  helper.make_node("Conv", ["g", "cls_w", "cls_b"], ["k"], kernel_shape=[1, 1]),
                  helper.make_node("Flatten", ["k"], [out_name])]
    elif head == "no-gap":  # VGG-like: Conv → Flatten → Gemm
        inits += [_init("fc_w", RNG.normal(0, 0.1, (5, 8 * 16 * 16)).astype(np.float32))]
        nodes += [helper.make_node("Flatten", ["F"], ["flat"]),
                  helper.make_node("Gemm", ["flat", "fc_w"], [out_name], transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [batch, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def numpy_reference(images: np.ndarray, head: str) -> tuple[np.ndarray, np.ndarray]:
    """Logits and the CAM of every class, computed from the weights alone."""
    x = ((images.astype(np.float32) / 255 - MEAN) / STD).transpose(0, 3, 1, 2)
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    patches = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2]  # B,C,16,16,3,3
    feat = np.maximum(np.einsum("bchwij,ocij->bohw", patches, CONV_W) + CONV_B[None, :, None, None], 0)
    cams = np.einsum("kc,bchw->bkhw", FC_W, feat)  # CAM = W_c · F, no bias
    if head == "squeezenet":
        logits = np.maximum(cams + FC_B[None, :, None, None], 0).mean((2, 3))
    else:
        logits = feat.mean((2, 3)) @ FC_W.T + FC_B
    return logits, cams


@pytest.mark.parametrize("head", ["gemm", "reducemean-matmul", "reducemean18-gemm", "squeezenet",
                                  "conv-after-pool"])
def test_tiny_heads_against_numpy(head, tmp_path):
    opset = 18 if head == "reducemean18-gemm" else 13
    src = tiny(head, tmp_path / "src.onnx", opset=opset)
    out = tmp_path / "cam.onnx"
    result = cam_from_onnx(str(src), str(out), mean=MEAN, std=STD, top_k=3, input_size=(32, 32))
    assert result.verification.ok and result.dynamic_batch and result.head.feature == "F"
    assert result.info.cam.feature_size == (16, 16) and result.info.cam.stride == 2
    model = Model(out, providers=["cpu"])
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    got = model.run(images)
    logits, cams = numpy_reference(images, head)
    assert np.abs(got["logits"] - logits).max() < 1e-4 * np.ptp(logits)
    assert (got["class_ids"] == np.argsort(-logits, 1)[:, :3]).all()
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert np.allclose(got["scores"], np.take_along_axis(probs, got["class_ids"], 1), atol=1e-5)
    want = np.take_along_axis(cams, got["class_ids"][:, :, None, None], 1)
    assert got["cams"].shape == (3, 3, 16, 16)
    assert np.abs(got["cams"] - want).max() < 1e-4 * np.ptp(want)


def test_a_source_with_its_batch_fixed_at_1_takes_a_batch_image_by_image(tmp_path):
    src = tiny("gemm", tmp_path / "src.onnx", batch=1)
    out = tmp_path / "cam.onnx"
    result = cam_from_onnx(str(src), str(out), mean=MEAN, std=STD, top_k=3, input_size=(32, 32))
    assert result.verification.ok and not result.dynamic_batch
    images = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    model = Model(out, providers=["cpu"])
    got = model.run(images)
    logits, _ = numpy_reference(images, "gemm")
    assert got["logits"].shape == (3, 5) and got["cams"].shape == (3, 3, 16, 16)
    assert np.abs(got["logits"] - logits).max() < 1e-4 * np.ptp(logits)
    assert len(model.predict_batch(list(images), "RGB")) == 3


@pytest.mark.parametrize("head,batch", [("gemm", None), ("squeezenet", None), ("reducemean-matmul", 1)])
def test_queried_classes_get_their_maps_whatever_their_rank(head, batch, tmp_path):
    """The class_query input: W[c] · F of any class beside the top-K, in the same run; empty
    when nothing is asked, and per image on a source whose batch is fixed at 1."""
    src = tiny(head, tmp_path / "src.onnx", batch=batch)
    result = cam_from_onnx(str(src), str(tmp_path / "cam.onnx"), mean=MEAN, std=STD, top_k=2, input_size=(32, 32))
    assert result.info.cam.class_query and "queried maps" in result.verification.source
    model = Model(tmp_path / "cam.onnx", providers=["cpu"])
    assert model.class_query
    images = np.random.default_rng(3).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    logits, cams = numpy_reference(images, head)
    classes = [4, 0, 2, 4]  # repeats allowed
    got = model.run(images, classes=classes)
    assert got["query_cams"].shape == (3, 4, 16, 16) and got["query_scores"].shape == (3, 4)
    assert np.abs(got["query_cams"] - cams[:, classes]).max() < 1e-4 * np.ptp(cams)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert np.allclose(got["query_scores"], probs[:, classes], atol=1e-5)
    empty = model.run(images, classes=[])
    assert empty["query_cams"].shape == (3, 0, 16, 16) and empty["query_scores"].shape == (3, 0)
    pred = model.predict_batch(list(images), "RGB", classes=[int(np.argmin(logits[0]))])[0]
    assert pred.cam_of(int(np.argmin(logits[0]))) is not None and pred.rank_of(int(np.argmin(logits[0]))) is None


def test_bgr_nhwc_source_and_reserved_names(tmp_path):
    """A model that wants BGR NHWC floats in 0..255 with mean/std in BGR order, whose own tensors
    are called image and logits, and top-k above the number of classes (clamped)."""
    src = tiny("gemm", tmp_path / "src.onnx", layout="NHWC", in_name="image", out_name="logits")
    out = tmp_path / "cam.onnx"
    # In 0..255 units, in the model's (BGR) channel order: (p - 255*m) / (255*s) == (p/255 - m)/s.
    result = cam_from_onnx(str(src), str(out), color="BGR", layout="NHWC", scale=1.0,
                           mean=MEAN * 255, std=STD * 255, top_k=9, input_size=(32, 32))
    assert result.verification.ok
    assert np.allclose(result.info.input.mean, MEAN[::-1]) and np.allclose(result.info.input.std, STD[::-1])
    rgb = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    logits, cams = numpy_reference(rgb[..., ::-1], "gemm")  # the source model sees B, G, R
    got = Model(out, providers=["cpu"]).run(rgb)
    assert got["class_ids"].shape == (2, 5)
    assert np.abs(got["logits"] - logits).max() < 1e-4 * np.ptp(logits)
    want = np.take_along_axis(cams, got["class_ids"][:, :, None, None], 1)
    assert np.abs(got["cams"] - want).max() < 1e-4 * np.ptp(want)


@pytest.mark.parametrize("head", ["gemm", "reducemean-matmul"])
def test_the_result_runs_on_the_image_alone_in_a_bare_session(head, tmp_path):
    """class_query has a default (class 0), so any ONNX consumer can feed the image alone; the
    normalisation's divide sits in the first convolution's weights; a Gemm's W is stored once."""
    src = tiny(head, tmp_path / "src.onnx")
    out = tmp_path / "cam.onnx"
    cam_from_onnx(str(src), str(out), mean=MEAN, std=STD, top_k=3, input_size=(32, 32))
    m = onnx.load(out)
    assert not {"Div", "Mul"} & {n.op_type for n in m.graph.node}
    weights = [t.name for t in m.graph.initializer if list(t.dims) == [5, 8]]
    assert weights == (["fc_w"] if head == "gemm" else ["edge_cam/weight"])  # a MatMul stores W transposed
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]
    images = np.random.default_rng(4).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"image": images})))
    logits, cams = numpy_reference(images, head)
    assert np.abs(got["logits"] - logits).max() < 1e-4 * np.ptp(logits)
    want = np.take_along_axis(cams, got["class_ids"][:, :, None, None], 1)
    assert np.abs(got["cams"] - want).max() < 1e-4 * np.ptp(want)
    assert np.abs(got["query_cams"] - cams[:, :1]).max() < 1e-4 * np.ptp(cams)
    asked = sess.run(["query_cams"], {"image": images, "class_query": np.array([4, 2], np.int64)})[0]
    assert np.abs(asked - cams[:, [4, 2]]).max() < 1e-4 * np.ptp(cams)


@pytest.mark.workstation
def test_openvino_runs_the_result(tmp_path):
    ov = pytest.importorskip("openvino", reason="OpenVINO is not installed here (pip install openvino)")
    src = tiny("squeezenet", tmp_path / "src.onnx")
    out = tmp_path / "cam.onnx"
    cam_from_onnx(str(src), str(out), mean=MEAN, std=STD, top_k=3, input_size=(32, 32))
    compiled = ov.Core().compile_model(str(out), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert [i.get_any_name() for i in compiled.inputs] == ["image"]
    images = np.random.default_rng(5).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    result = compiled({"image": images})
    got = {o.get_any_name(): result[o] for o in compiled.outputs}
    logits, cams = numpy_reference(images, "squeezenet")
    assert (got["class_ids"][:, 0] == logits.argmax(1)).all()
    want = np.take_along_axis(cams, got["class_ids"][:, :, None, None], 1)
    assert np.abs(got["cams"] - want).max() < 1e-4 * np.ptp(want)
    assert got["query_cams"].shape == (3, 1, 16, 16)  # the default query, class 0
    assert np.abs(got["query_cams"] - cams[:, :1]).max() < 1e-4 * np.ptp(cams)


def test_result_works_with_info_and_localize(tmp_path, capsys):
    src = tiny("gemm", tmp_path / "src.onnx")
    out = tmp_path / "cam.onnx"
    assert main(["export", str(src), "-o", str(out), "--input-size", "32", "--top-k", "2"]) == 0
    err = capsys.readouterr().err
    assert "found gemm head" in err and "top-1 agrees" in err
    assert main(["info", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "CAM teacher" in shown and "class_query int64            [-1]  optional (has a default)" in shown
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.random.default_rng(3).integers(0, 256, (60, 80, 3), dtype=np.uint8))
    assert main(["localize", str(out), str(img)]) == 0
    assert '"boxes": [{' in capsys.readouterr().out


def _fails(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("edge-cam: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_errors_are_one_sentence(tmp_path, capsys):
    out = str(tmp_path / "o.onnx")
    err = _fails(["export", str(tiny("no-gap", tmp_path / "vgg.onnx")), "-o", out, "--input-size", "32"], capsys)
    assert "no GlobalAveragePool/ReduceMean over H,W" in err and "Relu 'F' comes before Gemm" in err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not protobuf" * 10)
    assert "not a readable ONNX model" in _fails(["export", str(bad), "-o", out], capsys)
    assert "does not exist" in _fails(["export", str(tmp_path / "missing.onnx"), "-o", out], capsys)
    src = str(tiny("gemm", tmp_path / "src.onnx", size=None))
    assert "dynamic" in _fails(["export", src, "-o", out], capsys)  # H,W unknown and no --input-size
    assert "contradicts" in _fails(["export", str(tiny("gemm", tmp_path / "s32.onnx")), "-o", out,
                                    "--input-size", "48"], capsys)
    assert "torch models only" in _fails(["export", src, "-o", out, "--weights", "w.pt"], capsys)
    assert "2 labels" in _fails(["export", src, "-o", out, "--input-size", "32",
                                 "--labels", str(_labels(tmp_path, 2))], capsys)
    assert not os.path.exists(out)


def _labels(tmp_path, n):
    p = tmp_path / "labels.txt"
    p.write_text("".join(f"c{i}\n" for i in range(n)))
    return p


def test_without_onnx_says_how_to_get_it(tmp_path):
    src = tiny("gemm", tmp_path / "src.onnx")
    code = ("import sys; sys.modules['onnx'] = None\nfrom edge_cam.cli import main\n"
            f"sys.exit(main(['export', r'{src}', '-o', r'{tmp_path / 'o.onnx'}']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "pip install 'edge-cam[onnx]'" in proc.stderr
