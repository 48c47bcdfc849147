"""The real ImageNet MobileNetV2 from ../shared/data: classes, and CAM boxes on 200 raccoon photos."""
import numpy as np
import pytest
import torch

from edge_cam.localize import HeatMap, boxes_from_heat
from edge_cam.measure.evaluate import hit, read_voc_dir
from edge_cam.metadata import IMAGENET_FUSE_TOP, IMAGENET_MEAN, IMAGENET_STD, IMAGENET_THRESHOLD
from edge_cam.model import Model
from edge_cam.source import read_image
from edge_cam_export.graph.eager import eager_features
from edge_cam_export.graph.heads import find_cam_layers
from edge_cam_export.graph.models import build_model


@pytest.fixture(scope="module")
def mobilenet(shipped_mobilenet_v2_path):
    return shipped_mobilenet_v2_path


@pytest.mark.parametrize("resize,image,class_id,label", [
    (None, "cat.bmp", 281, "tabby"), (None, "hot_dog.jpg", 934, "hotdog"),
    ("crop", "cat.bmp", 285, "Egyptian cat"), ("crop", "hot_dog.jpg", 934, "hotdog")])
def test_real_photos_get_their_class(mobilenet, shared_data, resize, image, class_id, label):
    """With export's defaults an ImageNet model sees the whole frame letterboxed, its aspect kept
    (stretched, hot_dog.jpg reads "burrito"); the weights' own centre crop agrees on these."""
    model = Model(mobilenet, resize=resize)
    c = model.info.cam
    assert model.info.input.resize == resize or (resize is None and model.info.input.resize == "letterbox")
    assert (c.threshold, c.fuse_top, c.box_mode) == (IMAGENET_THRESHOLD, IMAGENET_FUSE_TOP, "largest")
    pred = model.predict(read_image(str(shared_data / "images" / image)))
    assert (pred.class_id, pred.label) == (class_id, label)


def eager_box(model, layers, image, size=224):
    """The paper's reference code, in torch: hook the features, CAM = W_c · F, upsample to the
    whole image, keep ≥ 20% of the max, box the largest connected component."""
    import cv2
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    x = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    t = torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255
    t = (t - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    logits, feat = eager_features(model, layers, t)
    c = int(logits.argmax())
    cam = torch.einsum("c,chw->hw", layers.weight[c], feat[0]).numpy()
    h, w = image.shape[:2]
    up = cv2.resize(cam, (w, h), interpolation=cv2.INTER_LINEAR)
    up = (up - up.min()) / (up.max() - up.min())
    n, _, stats, _ = cv2.connectedComponentsWithStats((up >= 0.2).astype(np.uint8), connectivity=8)
    i = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    from edge_cam.localize import Box
    bx, by, bw, bh = stats[i, :4]
    return Box(bx, by, bx + bw, by + bh), c


def test_raccoon_corloc_with_the_papers_rule(mobilenet, shared_data):
    """GT-unknown CorLoc@0.5: the top-1 class's CAM, the whole photo resized to 224x224."""
    model = Model(mobilenet, resize="stretch")
    torch_model = build_model("torchvision:mobilenet_v2")
    torch_model.load_state_dict(torch.load(shared_data / "models" / "mobilenet_v2_imagenet.pt", weights_only=True))
    layers = find_cam_layers(torch_model)
    annotations = read_voc_dir(str(shared_data / "raccoon" / "annotations"), str(shared_data / "raccoon" / "images"))
    assert len(annotations) == 200
    ours, reference, agree, same_class = [], [], [], []
    for a in annotations:
        image = read_image(a.image)
        assert image.shape[:2] == (a.height, a.width)
        pred = model.predict(image)
        box = boxes_from_heat(HeatMap.from_cam(pred.cams[0], pred.resize), 0.2)[0]
        ref_box, ref_class = eager_box(torch_model, layers, image)
        ours.append(hit(box, a.boxes))
        reference.append(hit(ref_box, a.boxes))
        same_class.append(ref_class == pred.class_id)
        agree.append(box.iou(ref_box))
    corloc, ref_corloc = float(np.mean(ours)), float(np.mean(reference))
    print(f"raccoon CorLoc@0.5: edge-cam {corloc:.3f}, eager full-resolution reference {ref_corloc:.3f}")
    assert corloc >= 0.65
    assert abs(corloc - ref_corloc) <= 0.02
    assert np.mean(same_class) >= 0.98
    # The runtime boxes at 224x224 are the reference's full-resolution boxes.
    assert np.median(agree) >= 0.97 and np.mean(np.asarray(agree) >= 0.9) >= 0.95
