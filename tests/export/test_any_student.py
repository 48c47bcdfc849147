"""The real cascade with "any student": the real MobileNetV2 CAM teacher (../shared/data weights)
localises the cat, and the real Coral MobileNetV1 (a foreign uint8 TFLite classifier, described,
not exported by edge-cam) classifies the CAM crop."""
import pytest

from edge_cam.cascade import Cascade
from edge_cam.model import Model
from edge_cam.source import read_image

pytest.importorskip("ai_edge_litert", reason="the tflite extra (ai-edge-litert) is not installed")

CATS = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def teacher(mobilenet_v2_path):
    return Model(mobilenet_v2_path)


@pytest.fixture(scope="module")
def coral(shared_data):
    coral = shared_data / "models" / "coral"
    return Model(coral / "mobilenet_v1_0.25_128_quant.tflite",
                 describe={"scale": 1, "mean": 128, "std": 128, "label_offset": 1,
                           "labels": str(coral / "imagenet_labels.txt")})


def test_coral_student_classifies_the_teachers_cam_crop_of_the_cat(teacher, coral, shared_data):
    result = Cascade(teacher, coral).process(read_image(str(shared_data / "images" / "cat.bmp")))
    assert result.teacher.class_id == 285 and result.rois
    roi = result.rois[0]
    assert roi.crop.image.shape == (128, 128, 3)
    # Both speak ImageNet class ids: the label offset of the 1001-class student is taken out.
    assert roi.student.class_id in CATS, roi.student
    assert roi.student.label == teacher.info.label(roi.student.class_id)
    assert result.to_event()["rois"][0]["student"] == roi.student.to_dict()


def test_tflite_teacher_and_tflite_student_through_the_same_model_object(shared_data, coral, mobilenet_v2_tflite_path):
    """The whole cascade in LiteRT: edge-cam's own .tflite teacher (signature, edge_cam metadata,
    int32 class_ids, batch 1) and the Coral student."""
    teacher = Model(mobilenet_v2_tflite_path, threads=2)
    assert teacher.backend == "litert" and teacher.has_cam and teacher.info.cam.feature_size == (7, 7)
    images = [read_image(str(shared_data / "images" / name)) for name in ("cat.bmp", "hot_dog.jpg")]
    preds = teacher.predict_batch(images)  # a fixed batch of 1 in the file: item by item
    assert [p.class_id for p in preds] == [285, 934] and preds[0].class_ids.dtype.name == "int64"
    assert preds[0].cams.shape == (5, 7, 7)
    result = Cascade(teacher, coral).process(images[0])
    assert result.rois[0].student.class_id in CATS
