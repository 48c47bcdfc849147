"""The motion gate (edge_cam/gate.py) on real footage: the shared lane camera (car-detection.mp4:
three cars pass, the empty lane between them is still) judged by a real classifier, the Coral
MobileNetV2 from ../shared/data through LiteRT; and held frames on the bundled models and clip.

The CAM teacher of the benchmark (benchmarks/motion_gate.py) needs torch to export; here the
question is the schedule's, so the Cascade runs with a teacher that records the frames it ran on,
and the answer it holds between runs is the Coral model's on that frame: is a car in view
(P(car group) at the car student's min score, 0.015)? The teacher's answer on every frame is the
reference, as in cascade_eval."""
import json
from importlib import resources

import cv2
import numpy as np
import pytest
from test_rerun import FakeTeacher

from edge_cam.cascade import Cascade
from edge_cam.gate import MotionGate
from edge_cam.model import Model
from edge_cam.source import open_source

MIN_SCORE = 0.015  # P(car) ≤ 0.008 on the empty lane, ≥ 0.012 with a car in it (Coral, measured)
# The teacher at most once in 3 frames while the lane moves, as the fixed cadence it is held to
# (measured: 61 teacher runs and 98.9% confident agreement, against 126 and 97.8% for every 3).
GATE = MotionGate(0.005, 3)
SIZE = (384, 216)  # half the video's 768x432: the test holds every frame


@pytest.fixture(scope="module")
def lane(shared_data):
    """The car video's frames (halved) and the Coral model's P(car group) on each."""
    pytest.importorskip("ai_edge_litert", reason="the tflite extra (ai-edge-litert) is not installed")
    coral = shared_data / "models" / "coral"
    model = Model(str(coral / "mobilenet_v2_1.0_224_quant.tflite"), threads=1, describe={
        "scale": 1, "mean": 128, "std": 128, "label_offset": 1, "resize": "stretch",
        "labels": str(coral / "imagenet_labels.txt")})
    car = json.loads(resources.files("edge_cam.data").joinpath("imagenet_groups.json").read_text())["car"]
    frames, p_car = [], []
    with open_source(str(shared_data / "videos" / "car-detection.mp4")) as source:
        for f in source:
            if f.image is not None:
                frames.append(cv2.resize(f.image, SIZE, interpolation=cv2.INTER_AREA))
                p_car.append(float(model.predict(frames[-1]).logits[car].sum()))
    assert len(frames) == 377
    return frames, np.asarray(p_car)


def schedule(frames, every: int, gate: MotionGate | None):
    """The cascade over the frames: for each, why the teacher ran ("" if not), whether it was held,
    and the frame whose answer it shows (the teacher's latest run)."""
    cascade = Cascade(FakeTeacher(), every=every, gate=gate)  # type: ignore[arg-type]
    reasons, held, shown, last = [], [], [], 0
    for i, image in enumerate(frames):
        r = cascade.process(image)
        last = i if r.teacher_ran else last
        reasons.append(r.reason if r.teacher_ran else "")
        held.append(r.held)
        shown.append(last)
    return reasons, np.asarray(held), np.asarray(shown)


def agreement(p_car, shown) -> tuple[float, int]:
    """Confident agreement of the held answers with the answer on every frame, and confident frames."""
    answer = p_car >= MIN_SCORE
    sure = (p_car >= 2 * MIN_SCORE) | (p_car < MIN_SCORE / 2)
    return float((answer[shown] == answer)[sure].mean()), int(sure.sum())


def test_the_gate_runs_the_teacher_as_a_car_arrives_and_holds_the_empty_lane(lane):
    frames, p_car = lane
    reasons, held, _ = schedule(frames, 30, GATE)
    car = p_car >= MIN_SCORE
    arrivals = [i for i in range(1, len(car)) if car[i] and not car[max(0, i - 10):i].any()]
    assert len(arrivals) >= 3  # three cars pass
    for i in arrivals:  # the teacher ran for the motion at most a few frames before the car showed
        assert "motion" in reasons[max(0, i - 8):i + 1], (i, reasons[i - 8:i + 1])
    # The empty lane between the first two cars: nothing moves, every frame is held but the cadence's.
    still = range(arrivals[0] + 60, arrivals[1] - 20)
    assert len(still) > 20
    assert all(held[i] or reasons[i] == "every" for i in still), [reasons[i] for i in still if not held[i]]


def test_the_gate_matches_the_fixed_cadence_with_fewer_teacher_runs(lane):
    frames, p_car = lane
    fixed_reasons, _, fixed_shown = schedule(frames, GATE.every, None)
    fixed, sure = agreement(p_car, fixed_shown)
    gate_reasons, held, gate_shown = schedule(frames, 30, GATE)
    gated, _ = agreement(p_car, gate_shown)
    fixed_runs, gate_runs = sum(map(bool, fixed_reasons)), sum(map(bool, gate_reasons))
    assert sure > 250
    assert gated >= fixed and gate_runs < 0.6 * fixed_runs, (gated, fixed, gate_runs, fixed_runs)
    assert held.sum() > len(frames) / 3  # the still lane is most of the video
    # The test tells a gate from none: a gate that never fires (no frame moves a whole scene) is
    # every 30 alone, and misses the cars.
    _, _, blind_shown = schedule(frames, 30, MotionGate(1.0, GATE.every))
    assert agreement(p_car, blind_shown)[0] < fixed - 0.05


def test_a_held_frame_repeats_the_previous_answer_and_runs_nothing(teacher_path, student_path, demo_data):
    student = Model(student_path, threads=1)
    runs = []  # the student's batches
    predict = student.predict_batch

    def counted(frames, **kw):
        runs.append(len(kw["prepared"]))
        return predict(frames, **kw)

    student.predict_batch = counted  # type: ignore[method-assign]
    # The clip's shapes move 0.1-0.4% of the scene a frame, and on some frames nothing does.
    cascade = Cascade(Model(teacher_path, threads=1), student, every=30, gate=MotionGate(0.002, 5))
    previous, held = None, 0
    with open_source(demo_data("demo_clip.mp4")) as source:
        for f in source:
            if f.index is not None and f.index >= 200:
                break
            before = len(runs)
            r = cascade.process(f)
            if r.held:
                held += 1
                assert previous is not None and not r.teacher_ran and len(runs) == before
                assert [(x.box, x.watch, x.student, x.crop) for x in r.rois] == \
                    [(x.box, x.watch, x.student, x.crop) for x in previous.rois]
                event = r.to_event()
                assert event["held"] is True and event["rois"] == previous.to_event()["rois"]
                assert event["timing_ms"]["crop"] == event["timing_ms"]["student"] == 0
            else:
                assert "held" not in r.to_event() and (len(runs) == before + 1) == bool(r.rois)
            previous = r
    assert held > 20
