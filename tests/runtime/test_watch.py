import json

import numpy as np
import pytest

from edge_cam.errors import EdgeCamError
from edge_cam.watch import Target, WatchList, load_groups

LABELS = ["tabby", "tiger cat", "Persian cat", "crane", "crane", "water bottle", "beer bottle", "car wheel"]
IMAGENET = [f"class {i}" for i in range(1000)]


def test_entries_resolve_labels_ids_and_user_groups(tmp_path):
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"cats": ["Tabby", 1, "persian_cat"], "Bottles": [6, 5]}))
    w = WatchList.parse(["WATER_BOTTLE", "7", "cats", "bottles", "tabby"], LABELS, str(groups))
    assert [(t.name, t.class_ids, t.group) for t in w.targets] == [
        ("water bottle", (5,), False), ("car wheel", (7,), False), ("cats", (0, 1, 2), True),
        ("Bottles", (5, 6), True), ("tabby", (0,), False)]
    assert w.class_ids.tolist() == [0, 1, 2, 5, 6, 7] and w.class_ids.dtype == np.int64


@pytest.mark.parametrize("entry, says", [
    ("tabbby", "'tabbby' is not a class label, class id or group of this model; did you mean 'tabby'"),
    ("8", "class id 8 is outside this model's classes 0-7"),
    ("-1", "class id -1 is outside"),
    ("crane", "'crane' names classes 3 and 4; give the id"),
    ("dog", "'dog' is not a class label"),  # the ImageNet groups are for 1000-class models only
])
def test_bad_entries_are_one_sentence_naming_the_entry(entry, says):
    with pytest.raises(EdgeCamError, match="^classes: ") as e:
        WatchList.parse([entry], LABELS)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_bad_group_files(tmp_path):
    f = tmp_path / "g.json"
    f.write_text(json.dumps({"pets": ["tabby", "unicorn"]}))
    with pytest.raises(EdgeCamError, match=r"group 'pets' of .*g.json: 'unicorn' is not a class label"):
        WatchList.parse(["pets"], LABELS, str(f))
    f.write_text(json.dumps({"pets": []}))
    with pytest.raises(EdgeCamError, match="non-empty list"):
        WatchList.parse(["pets"], LABELS, str(f))
    f.write_text(json.dumps({"Tabby": [1]}))
    with pytest.raises(EdgeCamError, match="both a class label and a group"):
        WatchList.parse(["tabby"], LABELS, str(f))
    with pytest.raises(EdgeCamError, match="groups_file: cannot read"):
        WatchList.parse(["tabby"], LABELS, str(tmp_path / "missing.json"))
    with pytest.raises(EdgeCamError, match="watch list is empty"):
        WatchList.parse([], LABELS)


def test_imagenet_groups_are_shipped_and_apply_to_1000_classes():
    g = load_groups()
    assert 20 <= len(g) <= 40 and all(v == sorted(set(v)) and 0 <= v[0] and v[-1] < 1000 for v in g.values())
    assert g["cat"] == [281, 282, 283, 284, 285] and len(g["dog"]) == 118 and 898 in g["bottle"]
    assert set(g["car"]) <= set(g["vehicle"]) and 817 in g["car"]  # sports car
    w = WatchList.parse(["dog", "car", "Model_T"], IMAGENET[:661] + ["Model T"] + IMAGENET[662:])
    assert [t.name for t in w.targets] == ["dog", "car", "Model T"] and w.targets[0].class_ids == tuple(range(151, 269))
    unlabelled = WatchList.parse(["bird", "3"], [], num_classes=1000)
    assert unlabelled.targets[1].name == "3" and unlabelled.targets[0].group


def test_group_score_is_the_probability_of_any_member_and_its_map_the_cam_of_the_group_logit():
    """A linear head: logits = W·GAP(F) + b, CAM_c = W_c·F. The group map must be the CAM of the group
    logit log Σ exp z_m, i.e. (∂z_G/∂g)·F with g = GAP(F), and its score P(any member)."""
    rng = np.random.default_rng(0)
    k, h, wd, n = 16, 5, 7, 8
    feats = rng.normal(size=(k, h, wd))
    weights, bias = rng.normal(size=(n, k)), rng.normal(size=n)
    logits = weights @ feats.mean(axis=(1, 2)) + bias
    cams = np.einsum("ck,khw->chw", weights, feats)
    w = WatchList((Target("cats", (0, 1, 2), True), Target("water bottle", (5,), False)), tuple(LABELS), n)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    out = w.watch(logits, np.arange(n), cams.astype(np.float32))
    by = {o.name: o for o in out}
    assert by["cats"].score == pytest.approx(p[:3].sum()) and by["water bottle"].score == pytest.approx(p[5])
    assert [o.name for o in out] == sorted(by, key=lambda s: -by[s].score)
    # the gradient of z_G = logsumexp(z[G]) with respect to g, by finite differences
    g = feats.mean(axis=(1, 2))

    def z_group(gv):
        z = weights[:3] @ gv + bias[:3]
        return np.log(np.exp(z).sum())
    eps = 1e-6
    grad = np.array([(z_group(g + eps * e) - z_group(g - eps * e)) / (2 * eps) for e in np.eye(k)])
    np.testing.assert_allclose(by["cats"].cam, np.einsum("k,khw->hw", grad, feats), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(by["water bottle"].cam, cams[5], rtol=1e-5)  # one member: its own CAM
    assert by["cats"].class_id == int(np.argmax(logits[:3])) and by["cats"].label == LABELS[by["cats"].class_id]
    np.testing.assert_allclose(w.scores(logits), [p[:3].sum(), p[5]])


def test_min_score_drops_targets_and_needs_no_maps_for_them():
    w = WatchList.parse(["tabby", "beer bottle"], LABELS)
    logits = np.zeros(len(LABELS))
    logits[0] = 10.0  # tabby ≈ 1, beer bottle ≈ 0
    cam = np.ones((1, 3, 3), np.float32)
    (only,) = w.watch(logits, [0], cam, min_score=0.5)  # no map for class 6: not needed
    assert only.name == "tabby" and only.score > 0.99
    assert w.watch(logits, [0], cam, min_score=1.01) == []
    with pytest.raises(ValueError, match="class_ids: no map for class 6 of 'beer bottle'"):
        w.watch(logits, [0], cam, min_score=0.0)
    with pytest.raises(ValueError, match="logits: expected 8"):
        w.watch(logits[:5], [0], cam)
    # repeated ids (top-K maps and query maps concatenated) are fine
    assert len(w.watch(logits, [6, 0, 0], np.ones((3, 3, 3), np.float32))) == 2
