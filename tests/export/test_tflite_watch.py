"""A watch list baked into a TFLite teacher (`export --format tflite --classes ...`): LiteRT's
graph has one fixed signature and takes no class query, so the watched classes' maps are outputs
of every run, checked against the eager model at export and used by the cascade's watch lists."""
import json

import numpy as np
import pytest
import torch

from edge_cam import cli
from edge_cam.backends.litert import read_metadata
from edge_cam.cascade import Cascade
from edge_cam.errors import EdgeCamError
from edge_cam.model import Model
from edge_cam.source import open_source
from edge_cam.watch import WatchList
from edge_cam_export import export, export_module
from edge_cam_export.graph.eager import reference
from edge_cam_export.graph.heads import find_cam_layers
from edge_cam_export.graph.verify import TOLERANCE as CAM_TOLERANCE
from edge_cam_export.graph.verify import maps_error, sample_images

pytest.importorskip("litert_torch", reason="TFLite export needs the tflite-export extra")

LABELS = ["apple", "bee", "cow", "duck", "eel", "fox", "goat", "hen"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An 8-class GAP net exported twice to TFLite: plain, and with classes 'eel' and 6 baked in."""
    import custom_models
    folder = tmp_path_factory.mktemp("tflite_watch")
    torch.manual_seed(3)
    net = custom_models.tiny_gap(8).eval()
    plain, baked = str(folder / "plain.tflite"), str(folder / "baked.tflite")
    export_module(net, plain, input_size=(64, 64), labels=LABELS, top_k=2, format="tflite", quiet=True)
    result = export_module(net, baked, input_size=(64, 64), labels=LABELS, top_k=2, format="tflite",
                           quiet=True, classes=["eel", 6])
    return net, plain, baked, result


def test_baked_classes_are_mapped_on_every_run_as_the_eager_model_maps_them(tiny):
    net, _, path, result = tiny
    assert result.tflite.ok and result.info.cam.baked_classes == (4, 6)
    # Checked at export against the eager W_c · F of the baked classes, and against ONNX Runtime's.
    assert any("queried classes" in r.source for r in result.tflite.eager)
    assert json.loads(read_metadata(path)["edge_cam.cam"])["baked_classes"] == [4, 6]
    m = Model(path)
    assert not m.class_query and m.baked.tolist() == [4, 6] and m.top_k == 2
    assert {"query_cams", "query_scores"} <= {o.name for o in m.session.outputs}

    images = sample_images(6, (64, 64), seed=11)
    layers = find_cam_layers(net)
    logits, cams = reference(net, layers, images, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                             np.tile([6, 4, 6], (6, 1)))
    preds = m.predict_batch(list(images), "RGB", classes=[6, 4, 6])  # any order, repeats allowed
    got = np.stack([p.query_cams for p in preds])
    assert maps_error(got, cams) <= CAM_TOLERANCE
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(np.stack([q.query_scores for q in preds]), p[:, [6, 4, 6]], atol=1e-5)
    # The point: the baked maps do not depend on the rank. On most of these images a baked class
    # is outside the top-2, where a graph without baked classes has no map for it.
    outside = sum(c not in q.class_ids for q in preds for c in (4, 6))
    assert outside >= 6


def test_a_watch_list_outside_what_the_teacher_maps_is_refused_before_any_frame(tiny):
    _, plain, baked, _ = tiny
    m, b = Model(plain), Model(baked)
    eel = WatchList.parse(["eel"], LABELS)
    with pytest.raises(EdgeCamError, match=r"plain.tflite takes no class queries and maps eel only while in its "
                                           r"top-2; re-export it .* with --classes naming the classes to watch"):
        Cascade(m, watch=eel)
    with pytest.raises(EdgeCamError, match=r"maps apple, bee only while in its top-2 \(baked in: eel, goat\)"):
        b.require_maps([0, 4, 1, 6])
    cascade = Cascade(b, watch=WatchList.parse(["eel", "goat"], LABELS))
    frames = sample_images(4, (48, 80), seed=2)
    results = [cascade.process(f, color="RGB") for f in frames]
    assert all(r.teacher_ran for r in results)
    assert {roi.watch for r in results for roi in r.rois} <= {"eel", "goat"}
    assert any(r.rois for r in results)
    # Per frame, a class in the top-2 of a graph without baked classes still maps (older teachers).
    top = m.predict(frames[0], "RGB")
    assert m.predict(frames[0], "RGB", classes=[top.class_id]).query_cams.shape[0] == 1


def test_the_command_line_bakes_names_and_groups_and_refuses_what_it_cannot(tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"birds": ["duck", "hen"]}))
    out = tmp_path / "t.tflite"
    base = ["export", "custom_models:tiny_gap", "--num-classes", "8", "--input-size", "64", "--labels",
            str(labels), "--top-k", "2"]
    assert cli.main([*base, "--classes", "birds", "fox", "--groups", str(groups), "-o", str(out)]) == 0
    assert "baking the maps of 3 classes: duck, fox, hen" in capsys.readouterr().err
    assert Model(str(out)).info.cam.baked_classes == (3, 5, 7)
    assert cli.main([*base, "--classes", "wolf", "-o", str(tmp_path / "w.tflite")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the tracing step's progress line
    assert last.startswith("edge-cam: --classes: 'wolf' is not a class label")
    assert cli.main([*base, "--classes", "fox", "-o", str(tmp_path / "t.onnx")]) == 2
    assert "baking a watch list is for TFLite teachers; an ONNX teacher maps any class" in capsys.readouterr().err
    assert cli.main([*base, "--groups", str(groups), "-o", str(out)]) == 2
    assert "--groups names groups for --classes" in capsys.readouterr().err
    assert not (tmp_path / "w.tflite").exists() and not (tmp_path / "t.onnx").exists()


def test_a_real_teacher_watches_cars_on_the_lane_from_tflite_as_from_onnx(shared_data, mobilenet_v2_path, tmp_path):
    """MobileNetV2 (real ImageNet weights) with the car group baked in, at the lane camera's
    288x512: P(car) and the car map of the TFLite teacher are the ONNX teacher's class query's (the
    shared ONNX export, its input size dynamic, told to stretch the frame to the same size)."""
    tfl_path = str(tmp_path / "car.tflite")
    export("torchvision:mobilenet_v2", tfl_path, weights=str(shared_data / "models" / "mobilenet_v2_imagenet.pt"),
           resize="stretch", input_size=(288, 512), format="tflite", classes=["car"], quiet=True)
    tfl, ort = Model(tfl_path), Model(mobilenet_v2_path, resize="stretch", input_size=(288, 512))
    watch = WatchList.parse(["car"], tfl.info.labels)
    assert len(watch.class_ids) >= 8 and tfl.baked.tolist() == watch.class_ids.tolist()
    with open_source(str(shared_data / "videos" / "car-detection.mp4")) as source:
        frames = {f.index: f.image for f in source if f.index in (0, 80, 192)}  # empty lane, a car, two cars
    assert len(frames) == 3
    p_car = {}
    for i, frame in frames.items():
        a, b = (m.predict(frame, classes=watch.class_ids) for m in (tfl, ort))
        p_car[i] = watch.scores(a.logits)[0]
        assert abs(p_car[i] - watch.scores(b.logits)[0]) < 1e-3
        assert maps_error(a.query_cams[None], b.query_cams[None]) <= 1e-3
    assert p_car[0] < 0.005 < p_car[80] and p_car[192] > 0.005  # as the ONNX teacher's (issue 10)
    cascade = Cascade(tfl, watch=watch, min_score=0.015)
    assert not cascade.process(frames[0]).rois
