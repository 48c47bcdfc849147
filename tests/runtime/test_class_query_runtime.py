"""Class queries and the input size on the runtime side, with a teacher exported before either
existed (the bundled demo teacher: one image input, a fixed size) and the size rule alone."""
import numpy as np
import pytest

from edge_cam.errors import EdgeCamError
from edge_cam.model import Model
from edge_cam.sizing import InputSize


def test_an_older_teacher_maps_its_top_k_classes_on_request(teacher_path):
    m = Model(teacher_path)
    assert not m.class_query and not m.dynamic_size
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    plain = m.predict(frame)
    asked = m.predict(frame, classes=[int(plain.class_ids[1]), plain.class_id])
    np.testing.assert_array_equal(asked.query_ids, plain.class_ids[[1, 0]])
    np.testing.assert_array_equal(asked.query_cams, plain.cams[[1, 0]])
    np.testing.assert_array_equal(asked.query_scores, plain.scores[[1, 0]])
    assert plain.query_ids is None and plain.query_cams is None and plain.query_scores is None
    np.testing.assert_array_equal(asked.cam_of(plain.class_id), plain.cams[0])
    outside = next(c for c in range(len(plain.logits)) if c not in plain.class_ids)
    assert plain.cam_of(outside) is None
    with pytest.raises(EdgeCamError, match=r"takes no class queries and class \d+ is not among its top-\d+ here; re-export"):
        m.predict(frame, classes=[outside])


@pytest.mark.parametrize("classes,match", [([10], r"classes: 10 is not a class of .*; give ids from 0 to 9"),
                                           ([-1], r"classes: -1 is not a class"),
                                           (["cat"], r"classes \['cat'\] should be class ids")])
def test_bad_class_ids_name_the_parameter(teacher_path, classes, match):
    with pytest.raises(EdgeCamError, match=match):
        Model(teacher_path).predict(np.zeros((32, 32, 3), np.uint8), classes=classes)


def test_a_plain_classifier_maps_no_classes(student_path):
    with pytest.raises(EdgeCamError, match="classes: .* plain classifier without CAMs"):
        Model(student_path).predict(np.zeros((32, 32, 3), np.uint8), classes=[0])


def test_a_fixed_size_graph_refuses_another_size(teacher_path):
    trained = Model(teacher_path).input_size
    assert Model(teacher_path, input_size=trained).input_size == trained
    for size in ((trained[0] * 2, trained[1]), 2 * max(trained)):
        with pytest.raises(EdgeCamError, match=r"exported with a fixed input size of \d+x\d+, so input_size cannot"):
            Model(teacher_path, input_size=size)


def test_the_long_side_keeps_the_frame_aspect_in_whole_strides():
    rule = InputSize(640, (224, 224), 32, dynamic=True)
    assert rule.size == (640, 640)  # before any frame: the trained aspect
    assert rule.for_frame(480, 640) == (480, 640)
    assert rule.for_frame(720, 1280) == (352, 640) and rule.size == (352, 640)  # 360 → 11 strides
    assert rule.for_frame(1000, 10) == (640, 32)  # never below one stride (and 32 pixels)
    assert InputSize((256, 448), (224, 224), 32, dynamic=True).for_frame(10, 10) == (256, 448)
    assert InputSize(None, (224, 224), 32, dynamic=False).for_frame(480, 640) == (224, 224)


@pytest.mark.parametrize("size,match", [(16, "too small"), ((0, 64), "too small"), ("big", "is not valid"),
                                        ((1, 2, 3), "is not valid")])
def test_bad_sizes_are_one_sentence(size, match):
    with pytest.raises(EdgeCamError, match=match):
        InputSize(size, (224, 224), 32, dynamic=True)
