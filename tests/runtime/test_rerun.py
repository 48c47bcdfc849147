"""When does the cascade run the teacher? A table of frame sequences through Cascade.process with a
fake teacher that counts its calls: no ONNX file, so every case is about the decision alone."""
from dataclasses import dataclass

import numpy as np
import pytest

from edge_cam.cascade import Cascade
from edge_cam.errors import EdgeCamError
from edge_cam.metadata import CamSpec
from edge_cam.model import Prediction
from edge_cam.preprocess import Resize

SIZE = (32, 32)


@dataclass
class FakeInfo:
    cam: CamSpec


class FakeTeacher:
    """Answers every frame with one hot CAM cell; counts how often it was asked."""
    has_cam = True
    path = "fake.onnx"
    input_size = SIZE

    def __init__(self):
        self.info = FakeInfo(CamSpec(method="cam", feature_layer="f", classifier="c", stride=8, feature_size=(4, 4)))
        self.calls = 0

    def prepare(self, image, order="BGR"):
        h, w = image.shape[:2]
        return np.zeros((*SIZE, 3), np.uint8), Resize((h, w), SIZE, SIZE[1] / w, SIZE[0] / h)

    def predict_batch(self, frames, color="BGR", prepared=(), classes=None):
        self.calls += len(prepared)
        cam = np.zeros((1, 4, 4), np.float32)
        cam[0, 1, 1] = 1.0
        logits = np.zeros(10, np.float32)
        logits[3] = 3.0  # class 3 at p = 0.69, each other class at 0.03
        query = None if classes is None else np.asarray(classes, np.int64)
        return [Prediction(np.array([3]), np.array([0.69], np.float32), ["three"], logits, cam, where,
                           {"model": 1.0}, query, None if query is None else np.repeat(cam, len(query), 0))
                for _, where in prepared]


def grey(level, shape=(48, 64)):
    return np.full((*shape, 3), level, np.uint8)


SCENE, OTHER = grey(100), grey(160)
SMALL = grey(100, (24, 32))

CASES = [  # (name, every, change, frames, expected reasons: "" where the map is reused)
    ("first frame always", 5, None, [SCENE], ["first"]),
    ("every N", 3, None, [SCENE] * 7, ["first", "", "", "every", "", "", "every"]),
    ("every 1 is every frame", 1, None, [SCENE] * 3, ["first", "every", "every"]),
    ("no change detection without --change", 100, None, [SCENE, OTHER, SCENE], ["first", "", ""]),
    ("scene change", 100, 12.0, [SCENE, SCENE, OTHER, OTHER], ["first", "", "change", ""]),
    ("change below the threshold", 100, 80.0, [SCENE, OTHER, OTHER], ["first", "", ""]),
    ("frame size changed", 100, None, [SCENE, SMALL, SMALL], ["first", "resize", ""]),
]


@pytest.mark.parametrize("name,every,change,frames,expected", CASES, ids=[c[0] for c in CASES])
def test_teacher_reruns_exactly_when_it_should(name, every, change, frames, expected):
    teacher = FakeTeacher()
    cascade = Cascade(teacher, every=every, change=change)  # type: ignore[arg-type]
    results = [cascade.process(f) for f in frames]
    assert [r.reason if r.teacher_ran else "" for r in results] == expected
    assert teacher.calls == sum(bool(e) for e in expected)
    assert all(r.rois for r in results)  # a reused map still gives the stream its ROI


def test_streams_keep_their_own_state_and_reset_forgets_it():
    teacher = FakeTeacher()
    cascade = Cascade(teacher, every=10)  # type: ignore[arg-type]
    assert cascade.process(SCENE, stream=0).reason == "first"
    assert cascade.process(SCENE, stream=1).reason == "first"  # a second stream has its own first frame
    assert not cascade.process(SCENE, stream=0).teacher_ran
    assert [cascade.process(SCENE, stream=1).frame for _ in range(2)] == [1, 2]
    cascade.reset()
    assert cascade.process(SCENE, stream=0).reason == "first"


@pytest.mark.parametrize("kw,word", [({"every": 0}, "every"), ({"change": 0.0}, "change"),
                                      ({"change": float("nan")}, "change"), ({"max_rois": 0}, "max_rois")])
def test_bad_settings_name_the_parameter(kw, word):
    with pytest.raises(EdgeCamError, match=f"^{word} must"):
        Cascade(FakeTeacher(), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("entries,min_score,rois", [
    (["3"], 0.5, 1), (["3"], 0.9, 0), (["4"], 0.0, 1), (["4"], 0.1, 0),
    (["4", "5", "6", "7"], 0.1, 0),  # four classes, each at 0.03
    (["four"], 0.1, 1),  # the same four as one group: P(any of them) = 0.12
])
def test_a_watch_list_below_its_min_score_makes_no_roi(entries, min_score, rois, tmp_path):
    from edge_cam.watch import WatchList
    groups = tmp_path / "groups.json"
    groups.write_text('{"four": [4, 5, 6, 7]}')
    watch = WatchList.parse(entries, [str(i) for i in range(10)], groups_file=str(groups))
    cascade = Cascade(FakeTeacher(), every=1, watch=watch, min_score=min_score)  # type: ignore[arg-type]
    result = cascade.process(SCENE)
    assert len(result.rois) == rois and (result.heat is None) == (rois == 0)
    event = result.to_event()
    assert len(event["rois"]) == rois
    if rois:  # the event names what was watched: the class, or the group of several
        assert event["rois"][0]["watch"] == entries[0]


THIRD = grey(220)
GATE_CASES = [  # (name, every, gate every, frames, expected: the reason, "held", or "" (the last map, nothing held))
    ("a still scene is held", 100, 2, [SCENE] * 4, ["first", "held", "held", "held"]),
    ("motion runs the teacher", 100, 2, [SCENE, SCENE, OTHER, OTHER], ["first", "held", "motion", "held"]),
    ("at most once in gate-every frames while moving", 100, 3, [SCENE, SCENE, SCENE, OTHER, THIRD, SCENE, SCENE],
     ["first", "held", "held", "motion", "", "", "settled"]),
    ("the cadence still holds", 3, 2, [SCENE] * 5, ["first", "held", "held", "every", "held"]),
    ("motion seen by nobody: the teacher once the scene rests", 100, 5, [SCENE, OTHER, OTHER, OTHER],
     ["first", "", "settled", "held"]),
]


@pytest.mark.parametrize("name,every,gate_every,frames,expected", GATE_CASES, ids=[c[0] for c in GATE_CASES])
def test_the_motion_gate_runs_the_teacher_or_holds(name, every, gate_every, frames, expected):
    from edge_cam.gate import MotionGate
    teacher = FakeTeacher()
    cascade = Cascade(teacher, every=every, gate=MotionGate(0.5, gate_every))  # type: ignore[arg-type]
    results = [cascade.process(f) for f in frames]
    assert [r.reason if r.teacher_ran else "held" if r.held else "" for r in results] == expected
    assert teacher.calls == sum(e not in ("", "held") for e in expected)
    assert all(r.rois for r in results) and results[0].motion is None and all(r.motion is not None for r in results[1:])
